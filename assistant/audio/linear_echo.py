"""The echo canceller for what the recognizer hears over a reply: a loudspeaker, then a room.

WebRTC's AEC3 (``assistant.audio.echo``) is a linear filter followed by a suppressor. The
suppressor is what makes echo-only audio silent enough for the voice activity detector, but in
double talk (the user talking over the reply) it also thins the user's words, most of all the
first syllables of an interruption: the recognizer then hears "I must" for "unless". AEC3 does
not expose its linear stage, so this module is one of its own: a partitioned-block
frequency-domain adaptive filter (overlap-save, normalised LMS, the gradient constrained; the
textbook MDF of Soo and Pang, as in SpeexDSP) that predicts the echo from the far end and
subtracts it. Its step is shared between the partitions in proportion to what each has learned
(improved proportionate NLMS, in its partitioned form): an echo path is a delay and a decaying
tail, so few partitions carry it, and they learn it in about half the time even steps take
(a 250 ms path: about 1 s of speech instead of 2.5 s, after a reply starts or the path moved).
Its output keeps the user's voice whole, with the echo reduced by 25-35 dB instead of gated.

A small loudspeaker is not linear: it compresses its peaks, and a linear filter leaves that
distortion behind, 15-20 dB under the echo, right where a user's first word over a reply falls.
So the filter is a Hammerstein model: the far end first goes through a memoryless polynomial
``x + a3 x^3 + a5 x^5`` (the loudspeaker), then the adaptive path (the room). The polynomial's
coefficients are fitted by least squares (recursive, forgetting over about a second) to what the
path leaves, given the path: on a soft-clipping loudspeaker that takes 8-12 dB more of the echo
(20 dB becomes 28-32 over a reply in ``parley bench echo``'s rooms); on a linear one they stay
near zero (and cost about 2 dB of 34). They are fitted directly rather than stepped towards:
the odd powers of speech are so alike its samples that steps in them also chase the path's own
errors, and run away.

It only learns while the far end is playing and the near end holds nothing but its echo: the
caller looks at each block's output (``cancel``) and then says whether to learn from it
(``learn``). A filter that learned while the user talked would cancel the user. When its
output is louder than its input (it has gone wrong: the echo path moved), it passes the input
and forgets what it learned.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Float64 = npt.NDArray[np.float64]
Float32 = npt.NDArray[np.float32]
Complex = npt.NDArray[np.complex64]

#: Normalised step size: how far one block moves the filter towards the echo path.
STEP = 1.0
#: Regularisation of the step's normalisation: a bin's power counts at least this share of
#: the mean bin's (a quiet bin does not take huge steps), and at least ``FLOOR`` (mean square
#: per bin, full scale 1.0).
RELATIVE_FLOOR = 0.01
FLOOR = 1e-10
#: A filter whose output carries this many times the energy of its input has diverged.
DIVERGED = 4.0
#: Per block: the energies compared to tell a diverged filter fade over about half a second.
DIVERGENCE_DECAY = 0.98
#: How the step is shared between partitions: -1 evenly (NLMS), towards 1 in proportion to
#: what each has learned (see ``LinearEchoFilter._shares``).
PROPORTIONATE = -0.5
#: Partitions constrained per block (see ``LinearEchoFilter.learn``).
CONSTRAINED = 4
#: The loudspeaker's polynomial: the odd powers of the far end beside the far end itself (a
#: loudspeaker's compression is odd: it treats a peak and a trough alike).
POWERS = (3, 5)
#: Per learned block: how much of the polynomial fit's evidence is kept (about a second).
POLYNOMIAL_MEMORY = 0.99
#: Blocks the path learns before the polynomial is fitted to what it leaves.
POLYNOMIAL_AFTER = 100
#: Blocks whose far end peaks under this (full scale 1.0) tell nothing of a loudspeaker's
#: distortion: the polynomial is not fitted on them.
POLYNOMIAL_PEAK = 0.1
#: Ridge of the fit, as a share of the error's energy: a power that would explain less than
#: about this share of what the path leaves stays near zero. (A tenth: on a linear loudspeaker
#: a hundredth lets the fit chase the path's own errors and costs 3 dB of the 34 the path takes;
#: on a soft clipping one, a whole share keeps 6 of the 13 dB the polynomial gains.)
POLYNOMIAL_RIDGE = 0.1
#: The largest coefficient the fit may give (a soft clip of full scale is near -1).
POLYNOMIAL_LIMIT = 2.0


class LinearEchoFilter:
    """See the module docstring. ``block`` samples a call; the echo path may be up to
    ``partitions`` blocks long (counted from the far-end sample it echoes); the loudspeaker's
    polynomial has the far end's ``powers`` (none: the filter is linear)."""

    def __init__(
        self, block: int = 160, partitions: int = 48, powers: tuple[int, ...] = POWERS
    ) -> None:
        self.block = block
        self.partitions = partitions
        bins = block + 1
        # Partition p of the filter answers the far end of p blocks ago. The spectra of the
        # path's input (the far end through the polynomial, with its coefficients as they were
        # when it came in: they move slowly) and their energies per bin, and the spectra of the
        # far end's ``powers`` (for fitting the polynomial), are kept in rings whose newest entry
        # is at ``_head``. Single precision: the filter removes 20-35 dB, far inside its 140 dB
        # of range.
        self._weights: Complex = np.zeros((partitions, bins), np.complex64)
        self._powers = powers
        self._input: Complex = np.zeros((partitions, bins), np.complex64)
        self._basis: Complex = np.zeros((len(powers), partitions, bins), np.complex64)
        self._previous_basis: Float32 = np.zeros((1 + len(powers), block), np.float32)
        self._coefficients: Float64 = np.zeros(len(powers))
        self._fit_matrix: Float64 = np.zeros((len(powers), len(powers)))
        self._fit_vector: Float64 = np.zeros(len(powers))
        self._fit_error = 0.0
        self._power: Float32 = np.zeros((partitions, bins), np.float32)
        self._head = 0
        self._ages = np.arange(partitions)
        self._turn = 0  # the next partitions to constrain
        self._zeros: Float32 = np.zeros(block, np.float32)
        self._near_energy = self._error_energy = 0.0
        #: The block ``learn`` learns from: its partitions' order in the ring, the path's input
        #: spectra in that order, the error, and whether its far end peaked over
        #: ``POLYNOMIAL_PEAK``.
        self._last: tuple[npt.NDArray[np.int64], Complex, Float64, bool] | None = None
        self.resets = 0
        #: Blocks learned from since the last reset (0: it knows no path).
        self.updates = 0

    @property
    def polynomial(self) -> tuple[float, ...]:
        """The loudspeaker's learned coefficients, of the far end's powers in order."""
        return tuple(float(c) for c in self._coefficients)

    def reset(self) -> None:
        """Forget the echo path (a new device, or a path that moved) and the loudspeaker."""
        self._weights[:] = 0
        self._coefficients[:] = 0.0
        self._fit_matrix[:] = 0.0
        self._fit_vector[:] = 0.0
        self._fit_error = 0.0
        self._near_energy = self._error_energy = 0.0
        self.resets += 1
        self.updates = 0

    def hush(self) -> None:
        """The far end has been silent longer than the filter's memory: its past is silence
        (what it learned of the path is kept)."""
        self._input[:] = 0
        self._basis[:] = 0
        self._power[:] = 0
        self._previous_basis[:] = 0
        self._last = None

    def shift(self, samples: int) -> None:
        """The echo now arrives ``samples`` later against the far end (earlier when negative)
        than the path learned says: move the path by as much. What is moved past either end
        of the filter is lost."""
        n, p = self.block, self.partitions
        taps = np.fft.irfft(self._weights, 2 * n, axis=1)[:, :n].reshape(-1)
        moved = np.zeros_like(taps)
        if samples >= 0:
            moved[samples:] = taps[: len(taps) - samples]
        else:
            moved[:samples] = taps[-samples:]
        full = np.zeros((p, 2 * n), np.float32)
        full[:, :n] = moved.reshape(p, n)
        self._weights[:] = np.fft.rfft(full, axis=1)

    def process(self, near: npt.ArrayLike, far: npt.ArrayLike, adapt: float) -> Float64:
        """``cancel``, then ``learn`` at ``adapt`` unless it is 0."""
        out = self.cancel(near, far)
        if adapt > 0.0:
            self.learn(adapt)
        return out

    def cancel(self, near: npt.ArrayLike, far: npt.ArrayLike) -> Float64:
        """The near end's next ``block`` samples with the echo of ``far`` (the far end's
        samples played in step with them) taken out."""
        heard: Float64 = np.asarray(near, dtype=np.float64)
        n = self.block
        played = np.asarray(far, dtype=np.float64)
        basis = np.empty((1 + len(self._powers), n), np.float32)
        basis[0] = played
        power, exponent = played, 1
        for row, wanted in enumerate(self._powers, start=1):
            while exponent < wanted:  # products: ``**`` takes several times as long
                power, exponent = power * played, exponent + 1
            basis[row] = power
        spectra = np.fft.rfft(np.concatenate((self._previous_basis, basis), axis=1), axis=1)
        self._previous_basis = basis
        head = self._head = (self._head - 1) % self.partitions
        self._basis[:, head] = spectra[1:]
        spectrum = spectra[0] + self._coefficients.astype(np.float32) @ spectra[1:]
        self._input[head] = spectrum
        self._power[head] = (spectrum.real**2 + spectrum.imag**2) / (2 * n)
        order = (head + self._ages) % self.partitions  # newest first
        aged = self._input[order]
        estimate = np.fft.irfft((aged * self._weights).sum(axis=0), 2 * n)[n:]
        error = heard - estimate
        # Diverged (or the path moved under it): over the last half second the estimate
        # added more than it removed. Start again from nothing.
        self._near_energy = self._near_energy * DIVERGENCE_DECAY + float(heard @ heard)
        self._error_energy = self._error_energy * DIVERGENCE_DECAY + float(error @ error)
        if self._error_energy > DIVERGED * self._near_energy + 1e-9:
            self.reset()
            self._last = None
            return heard.copy()
        loud = float(np.max(np.abs(played), initial=0.0)) > POLYNOMIAL_PEAK
        self._last = (order, aged, error, loud)
        return error

    def _shares(self) -> Float64:
        """Each partition's share of the step (they sum to the partitions' count): in
        proportion to what it has learned, plus an even part (IPNLMS). An echo path is a
        delay and a decaying tail: most partitions stay near zero, and the few that carry
        the echo learn it several times faster than with even steps."""
        energy = (self._weights.real**2 + self._weights.imag**2).sum(axis=1, dtype=np.float64)
        total = float(energy.sum())
        p = self.partitions
        if total <= 0.0:
            return np.ones(p)
        even = (1.0 - PROPORTIONATE) / 2.0
        return p * (even / p + (1.0 + PROPORTIONATE) / 2.0 * energy / total)

    def learn(self, rate: float = 1.0) -> None:
        """Learn from the block ``cancel`` just took, at ``rate`` of the full step (0 to 1)."""
        if self._last is None:
            return
        order, aged, error, loud = self._last
        self._last = None
        self.updates += 1
        n = self.block
        if self._powers and loud and self.updates > POLYNOMIAL_AFTER:
            self._fit_polynomial(order, error)
        shares = self._shares()
        # Normalised by the far end's power in each bin over the filter's whole memory, each
        # partition's weighted by its share of the step.
        power = shares @ self._power[order]
        power = power + (RELATIVE_FLOOR * float(power.mean()) + FLOOR)
        error_spectrum = np.fft.rfft(np.concatenate((self._zeros, error.astype(np.float32))))
        gain = ((STEP * rate / (2 * n)) * error_spectrum / power).astype(np.complex64)
        self._weights += np.conj(aged) * (shares[:, None].astype(np.float32) * gain)
        # The constraint: each partition is a filter of ``block`` taps, not a circular one of
        # twice as many (an unconstrained filter settles on a worse solution). A few
        # partitions a block, in turn, as SpeexDSP does: the drift in between is small.
        rows = (self._turn + np.arange(CONSTRAINED)) % self.partitions
        self._turn = (self._turn + CONSTRAINED) % self.partitions
        taps = np.fft.irfft(self._weights[rows], 2 * n, axis=1)
        taps[:, n:] = 0.0
        self._weights[rows] = np.fft.rfft(taps, axis=1)

    def _fit_polynomial(self, order: npt.NDArray[np.int64], error: Float64) -> None:
        """Fit the loudspeaker's coefficients again with the block ``cancel`` just took: by
        least squares, what each power of the far end through the path (``through``) explains
        of what the path left of the echo with no polynomial (the error plus what the present
        coefficients took: nearly, as the older blocks went in with their time's, and they
        move slowly)."""
        n = self.block
        through = np.fft.irfft((self._basis[:, order] * self._weights).sum(axis=1), 2 * n)[
            :, n:
        ].astype(np.float64)
        plain = error + self._coefficients @ through
        keep = POLYNOMIAL_MEMORY
        self._fit_matrix = keep * self._fit_matrix + through @ through.T
        self._fit_vector = keep * self._fit_vector + through @ plain
        self._fit_error = keep * self._fit_error + float(error @ error)
        ridge = POLYNOMIAL_RIDGE * self._fit_error + 1e-12
        identity = np.eye(len(self._powers))
        fitted = np.linalg.solve(self._fit_matrix + ridge * identity, self._fit_vector)
        self._coefficients = np.clip(fitted, -POLYNOMIAL_LIMIT, POLYNOMIAL_LIMIT)
