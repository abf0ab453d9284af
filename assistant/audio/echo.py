"""Echo cancellation and noise suppression for the microphone: WebRTC's audio processing.

``EchoCanceller`` runs WebRTC's AEC3 echo canceller (plus noise suppression and a high-pass
filter) from the ``livekit`` package on the capture path, on the loop thread, in 10 ms chunks of
16 kHz audio. Its far end is ``tap``, a ``ReferenceTap`` the output's render path feeds with what
the device is handed, when it is played.

Alignment: the microphone's samples carry the monotonic time they were captured, the tap's
samples the time they were played (both from PortAudio's timestamps, see
``assistant.audio.timing``). Before the 10 ms of microphone audio captured until ``C`` are
processed, the far end played until ``C + LEAD`` is fed, one 10 ms chunk of far end for each
chunk of microphone audio. So the render stream runs a fixed ``LEAD`` ahead of the capture
stream, echo always arrives after its reference, and what is left for AEC3's own delay estimator
is the acoustic path plus any error in the timestamps (it tolerates hundreds of ms). Far end
that is not played yet when it is needed holds the microphone audio back until it is (or until
it is clear that nothing is playing: then the far end is silence).

Each stretch of playback is checked: when the far end starts after ``REPLY_GAP`` seconds of
silence (a new reply), or the output's timing broke while it played (an underrun: the render
tap's blocks stopped following each other), the echo path may have moved (a sound server's
latency changes after an underrun, and between replies). AEC3 keeps the path it learned and,
on a path that moved, goes on trusting it for seconds while the echo passes through. So the
echo is uncertain again until the stretch has shown it cancelled; if it has not after
``RECHECK_SECONDS``, the processor is replaced by a fresh one, which starts from its cautious
initial state and converges within about a second. The near end's own sound in a stretch (a
user who talks over the start of a reply, or over one that resumed after an underrun) is louder
than any echo the room gave back for as loud a far end: it is left out of the check, or it would
pass for echo that is not cancelled and throw away a processor that cancels it.

Once the far end has been silent for ``PASS_AFTER`` seconds (the longest echo path and its
reverberation), the microphone's audio passes unchanged; the processor still hears it. AEC3's
suppressor goes on thinning speech for a while after the echo is gone, and a user who talked
over a reply (which has paused for them) is understood better without it (the same recordings
over a reply paused 200 ms in: 16 % of words wrong processed throughout, 12 % passed unchanged
once the echo was gone; 3 % with no echo at all). Not with noise suppression on: it would come
and go.

The recognizer's version: AEC3's suppressor, which silences the echo for voice activity
detection, also thins a user who talks over the reply (double talk), most of all the first
words of an interruption. So beside AEC3 a filter of its own (``LinearEchoFilter``: a linear
path after a learned loudspeaker polynomial) learns the echo path from the same aligned far end,
only while the microphone holds nothing but echo (AEC3 removed most of what it heard); once it
cancels the echo by ``LINEAR_KNOWN_DB``, its output (the echo reduced, the voice untouched) is
what the recognizer hears while the far end may still echo (``process_with_speech``), chunk by
chunk where it holds less than the microphone: a chunk that comes out of the filter louder than
it went in holds more of what the filter got wrong than of the echo it took (early in its
convergence the estimate of an echo that is not there, 10-15 dB over the microphone in the
pauses of a reply; or a path that has just moved), and both hold the same voice sample for
sample, so there the recognizer hears the microphone. Turn-taking still judges AEC3's output.
Each stretch of playback shows the figure again (the path may have moved), in fewer chunks for a
filter that was heard through the stretch before; between stretches the filter does not run,
and the next one finds its far-end past silent. After an underrun, the path it learned is moved
to where the output resumed (``REALIGN_CHUNKS``) rather than learned again. Not with noise
suppression on: the user asked for the suppressed audio.

Where the microphone hears none of the far end (headphones the output's name does not give
away, a speaker it does not reach), a stretch of playback settles as "no echo", and the
recognizer hears the microphone unprocessed for the rest of it: AEC3 does not know that there
is no echo for seconds, and its suppressor takes 13 dB and more off the first words of a user
who talks over a reply meanwhile (the first interruptions of a session lost their first word:
"Another cold-hearted" for "Unless to be rather cold-hearted"). Turn-taking still judges AEC3's
output, and the next stretch is judged again.

Latency: AEC3 hands back what it took 128 samples (8 ms) later (it works in 4 ms blocks;
noise suppression adds its own delay). Every other version of the microphone (passed as it is,
the linear filter's output and what is measured against AEC3's output) is made as late
(``Apm.latency``, measured once per configuration), so the one stream turn-taking and the
recognizer hear never skips or repeats samples where it changes from one version to another
(it did: 8 ms cut out of a word where the echo had died away, and the recognizer heard "0
forward" for "go forward").

Convergence: ``uncertain`` is True from the start, and from the start of each stretch, until
the echo return loss is known: the far end has been playing for ``SETTLE_SECONDS`` of the
stretch (``RECHECK_SECONDS`` for a processor that had settled before) and the median echo
return loss enhancement over what the microphone heard of it reached ``KNOWN_ERLE_DB``, or the
microphone heard nothing above its noise. Only chunks in
which the microphone heard something clearly above its own noise count (digital silence and
noise tell nothing: the echo may not have arrived yet, or there is a pause in it). Barge-in is
stricter while it is uncertain.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from assistant.audio.linear_echo import LinearEchoFilter
from assistant.audio.reference import ReferenceTap, ReferenceTimeline
from assistant.types import CAPTURE_RATE

log = logging.getLogger(__name__)

Float32 = npt.NDArray[np.float32]
Float64 = npt.NDArray[np.float64]
Int16 = npt.NDArray[np.int16]

#: Samples in one chunk the processor takes (10 ms).
CHUNK = CAPTURE_RATE // 100
CHUNK_SECONDS = CHUNK / CAPTURE_RATE
#: How far ahead of the microphone the far end is fed (seconds).
LEAD = 0.01
#: Far end this late (past its play time) is taken to be silence: nothing is playing.
GRACE = 0.06
#: A microphone stream whose times jump by more than this is re-anchored.
NEAR_JUMP = 0.05
#: Far-end silence after which playback starts a new stretch (its echo is checked again).
REPLY_GAP = 1.5
#: Far-end playing time before the echo return loss counts as known (for a fresh processor)...
#: AEC3 cancels most of the echo well within a second, but for a while its suppressor still
#: lets the start of a word through after a pause in the far end (8-13 dB taken, not 40-50): a
#: few 10 ms chunks loud enough to pause a reply. Over a fresh processor's first reply in the
#: bench's 12 rooms (1,152 spoken replies), 6 of 7 such frames came between 1.0 and 1.35 s.
SETTLE_SECONDS = 1.5
#: ...and before a processor that had settled is known to cancel a new stretch's echo too.
RECHECK_SECONDS = 0.5
#: Echo cancelled this well (median) is known: a converged canceller removes 30-60 dB; one whose
#: echo path moved a little removes 10-20 dB, and what it lets through is heard as words.
KNOWN_ERLE_DB = 20.0
#: Far-end silence after which the microphone passes unchanged (the echo has died away).
PASS_AFTER = 0.6
#: Far end louder than this (mean square, full scale 1.0) within ``ECHO_WINDOW`` may echo.
FAR_ACTIVE = 1e-5
ECHO_WINDOW = 40  # chunks (400 ms: the longest echo path plus a reverberation tail)
#: Quieter microphone chunks do not count in the measurement...
NEAR_FLOOR = 1e-8
#: ...nor chunks less than this far above the microphone's noise (power ratio, 10 dB).
ABOVE_NOISE = 10.0
#: Measured chunks a stretch needs before its echo is judged.
MIN_MEASURED = 20
#: Where the microphone heard none of the far end when the processor last settled, sound
#: above its noise is the near end's own, not echo; where it heard an echo, sound louder than
#: ``NEAR_END_MARGIN`` times the loudest echo it heard then (for the far end's loudest chunk of
#: the last ``ECHO_WINDOW``) is. For at most ``NEAR_END_SECONDS`` of a stretch (see
#: ``EchoCanceller._near_end``).
NEAR_END_SECONDS = 2.0
NEAR_END_MARGIN = 4.0  # 6 dB
#: The loudest echo is taken as this percentile of the chunks' echo return loss when the
#: processor settled (not the very loudest: a near end may have been in one or two of them).
LOUDEST_ECHO_PERCENTILE = 5.0
#: Chunks after such a chunk that are the near end's too (its quieter syllables and its tail).
NEAR_END_HOLD = 30
#: The linear filter learns from chunks in which AEC3 left at most this share of the power the
#: microphone heard (13 dB removed: echo alone; a talking user keeps most of theirs), or no
#: more than the microphone's own noise (a quiet echo is less than 13 dB above it)...
ECHO_ONLY_SHARE = 0.05
NOISE_LEFT = 2.0
#: ...and its output reaches the recognizer once it removes this much of the echo (median dB).
#: Less than AEC3 needs: the recognizer hears words through a residue 10 dB down.
LINEAR_KNOWN_DB = 10.0
#: The linear filter's far end is read on by sample count (see ``_linear_far``); when that place
#: is this far (samples: 20 ms) from where the devices' times put it, a stream slipped (lost
#: audio): it is placed again and the filter learns the path again. Far more than the times'
#: wobble (through PulseAudio the microphone's moved by up to 3 ms within a second); a smaller
#: slip is a moved path, which the filter learns or is found out for (``LINEAR_MOVED``).
LINEAR_SLIP = 320
#: When the output starts a new run (an underrun), its first block's reported time places the
#: linear filter's far end up to a millisecond off (the times settle later, by then the place is
#: fixed by sample count): the path it learned is then off by as much, which undoes the
#: cancellation above a few hundred Hz. It finds how far from the echo in the first
#: ``REALIGN_CHUNKS`` chunks of echo alone (by AEC3) that follow each other, without learning from
#: them, and moves the path by as much (up to ``REALIGN_MAX`` samples either way; a bigger slip
#: is ``LINEAR_SLIP``'s). It gives up after ``REALIGN_PATIENCE`` chunks of far end.
REALIGN_CHUNKS = 30
REALIGN_MAX = 40
REALIGN_PATIENCE = 300
#: The echo and the filter's estimate of it must correlate this well at the best shift.
REALIGN_CORRELATION = 0.5
#: Where the recognizer's version changes from the linear filter's output to the microphone's
#: chunk or back, it fades over the chunk (see ``EchoCanceller._quieter``): no click.
_FADE_IN = (np.arange(CHUNK, dtype=np.float64) + 0.5) / CHUNK
#: What the far end keeps of the audio played before what AEC3 was last fed (seconds): the
#: linear filter's place may be a little behind it.
FAR_KEPT = 0.05
#: The filter's learning chunks its echo return loss enhancement is the median over (the last
#: third of a second of them: it follows the filter as it converges). Each stretch of playback
#: starts the figure again, as for AEC3: the path may have moved between replies.
LINEAR_MEASURED = 30
#: Learning chunks a new stretch's figure needs before the recognizer hears the filter: fewer
#: for a filter that was heard through the stretch before (it has only to show that the path
#: has not moved; with its far-end past silent, it cancels from the echo's first chunk).
LINEAR_JUDGED = MIN_MEASURED
LINEAR_JUDGED_AGAIN = 10
#: Once known, the filter stays known until its ERLE falls this far below ``LINEAR_KNOWN_DB``
#: (the recognizer's audio does not switch back and forth around the bound).
LINEAR_KNOWN_HYSTERESIS_DB = 4.0
#: A chunk the known filter cancels this much worse than its median holds more than echo.
DOUBLE_TALK_MARGIN_DB = 6.0
#: Of the last ``LINEAR_CHECKED`` chunks of echo alone (by AEC3), this many came out of the
#: known filter louder than they went in: it learned a path that has moved since. (A voice
#: cannot do that: it only adds to both sides.)
LINEAR_CHECKED = 100
LINEAR_MOVED = 50


class AudioProcessor(Protocol):
    """A stage on the capture path, on 16 kHz float32 samples (see ``MicrophoneCapture``).

    ``latency``: seconds by which what it returns sounds later than the samples it stands in
    for (its filters' delay; not the samples it holds back, which come later anyway)."""

    @property
    def latency(self) -> float: ...

    def process(self, samples: Float32, end_time: float) -> Float32:
        """Take the next samples of the stream (the last one captured at ``end_time``) and
        return the processed stream's next samples: sample for sample, possibly later."""
        ...


@runtime_checkable
class SpeechProcessor(AudioProcessor, Protocol):
    """A processor that also gives the recognizer's version of what it returns."""

    def process_with_speech(
        self, samples: Float32, end_time: float
    ) -> tuple[Float32, Float32 | None]:
        """``process``, with the recognizer's version of the same samples beside (sample for
        sample); None when it is the processed audio itself."""
        ...


class Apm(Protocol):
    """The audio processing module: 10 ms int16 chunks at 16 kHz, processed in place.

    ``latency``: how many samples later than its input its output is (its filters' delay)."""

    latency: int

    def reverse(self, chunk: Int16) -> None: ...

    def near(self, chunk: Int16) -> None: ...

    def set_delay_ms(self, ms: int) -> None: ...


def processing_available() -> bool:
    """The WebRTC audio processing wheel can be loaded on this machine."""
    try:
        from livekit import rtc  # noqa: F401
    except Exception:
        return False
    return True


class LiveKitApm:
    """``livekit.rtc.AudioProcessingModule`` over reusable buffers (no allocation per chunk)."""

    def __init__(self, *, echo_cancellation: bool, noise_suppression: bool) -> None:
        from livekit import rtc

        self._apm = rtc.AudioProcessingModule(
            echo_cancellation=echo_cancellation,
            noise_suppression=noise_suppression,
            high_pass_filter=True,
            auto_gain_control=False,
        )
        self._reverse_bytes = bytearray(CHUNK * 2)
        self._near_bytes = bytearray(CHUNK * 2)
        self._reverse_view: Int16 = np.frombuffer(self._reverse_bytes, dtype=np.int16)
        self._near_view: Int16 = np.frombuffer(self._near_bytes, dtype=np.int16)
        self._reverse_frame = rtc.AudioFrame(self._reverse_bytes, CAPTURE_RATE, 1, CHUNK)
        self._near_frame = rtc.AudioFrame(self._near_bytes, CAPTURE_RATE, 1, CHUNK)
        #: Set by ``_livekit_apm`` (measured once per configuration).
        self.latency = 0

    def reverse(self, chunk: Int16) -> None:
        self._reverse_view[:] = chunk
        self._apm.process_reverse_stream(self._reverse_frame)

    def near(self, chunk: Int16) -> None:
        self._near_view[:] = chunk
        self._apm.process_stream(self._near_frame)
        chunk[:] = self._near_view

    def set_delay_ms(self, ms: int) -> None:
        self._apm.set_stream_delay_ms(ms)


ApmFactory = Callable[[bool, bool], Apm]

#: The longest processing delay looked for when measuring one (samples; 30 ms).
LATENCY_SEARCHED = 480


@functools.cache
def _latency_of(echo_cancellation: bool, noise_suppression: bool) -> int:
    """How many samples WebRTC's processing delays the microphone's audio, measured once per
    configuration on a processor of its own: AEC3 works in 4 ms blocks and returns what it
    took 128 samples (8 ms) later at 16 kHz; noise suppression adds its own overlap. The
    canceller delays every other version of the microphone by as much, or switching between
    them would skip or repeat those samples in the middle of a word."""
    apm = LiveKitApm(echo_cancellation=echo_cancellation, noise_suppression=noise_suppression)
    probe = (np.random.default_rng(0).standard_normal(60 * CHUNK) * 3000.0).astype(np.int16)
    out = np.empty_like(probe)
    silence = np.zeros(CHUNK, np.int16)
    try:
        for k in range(0, len(probe), CHUNK):
            chunk = probe[k : k + CHUNK].copy()
            apm.reverse(silence)
            apm.near(chunk)
            out[k : k + CHUNK] = chunk
    except RuntimeError as exc:  # a refused chunk: the canceller still works, a little off
        log.warning("could not measure the audio processing's delay: %s", exc)
        return 0
    x, y = probe.astype(np.float64), out.astype(np.float64)
    tail = slice(LATENCY_SEARCHED, len(y))  # past the start, where the filters settle
    scores = [
        float(np.dot(y[tail], x[tail.start - lag : tail.stop - lag]))
        for lag in range(LATENCY_SEARCHED + 1)
    ]
    lag = int(np.argmax(scores))
    match = scores[lag] / (float(np.linalg.norm(y[tail]) * np.linalg.norm(x[tail])) + 1e-9)
    if match < 0.5:
        log.warning("could not measure the audio processing's delay (match %.2f)", match)
        return 0
    return lag


def _livekit_apm(echo_cancellation: bool, noise_suppression: bool) -> Apm:
    apm = LiveKitApm(echo_cancellation=echo_cancellation, noise_suppression=noise_suppression)
    apm.latency = _latency_of(echo_cancellation, noise_suppression)
    return apm


@dataclass(slots=True)
class EchoStats:
    """What the canceller measured since it was (re)created."""

    #: Seconds of microphone audio processed.
    processed_seconds: float = 0.0
    #: Seconds of it during which the far end was playing (echo possible).
    far_end_seconds: float = 0.0
    #: Median echo return loss enhancement over the last second of far end (dB), if any.
    erle_db: float | None = None
    #: Median echo return loss (far end over microphone, dB) over the same stretch.
    erl_db: float | None = None
    #: Processing time spent (seconds of CPU on the loop thread).
    cpu_seconds: float = 0.0
    #: Chunks held back because the far end they need was not played yet.
    held: int = 0
    #: Chunks passed through unprocessed because the processor failed.
    failures: int = 0
    #: Processors started: one per stretch of playback (see the module docstring).
    restarts: int = 0
    #: The linear filter's median echo return loss enhancement over its last learning chunks.
    linear_erle_db: float | None = None
    #: Seconds of microphone audio the recognizer heard from the linear filter.
    linear_seconds: float = 0.0
    #: Times the linear filter's far end was placed again after a slip (see ``LINEAR_SLIP``).
    linear_slips: int = 0
    #: Times the linear filter's path was moved to a new run of the output (see
    #: ``REALIGN_CHUNKS``), and by how many samples the last time.
    linear_realigned: int = 0
    linear_realigned_by: int = 0
    #: Seconds of them in which it heard the microphone's chunk instead, which held less.
    linear_passed_seconds: float = 0.0


@dataclass(slots=True)
class _Realignment:
    """Chunks gathered to align the linear filter's path on a new run of the output (see
    ``REALIGN_CHUNKS``): the microphone's chunks of echo alone in a row, the filter's
    estimates of their echo, and the chunks of far end waited through."""

    heard: list[Float64] = field(default_factory=list)
    estimates: list[Float64] = field(default_factory=list)
    waited: int = 0


class _Late:
    """A stream of samples made ``by`` samples later: what goes in comes out ``by`` samples
    after it (silence first)."""

    def __init__(self, by: int) -> None:
        self._held: Float32 = np.zeros(by, np.float32)

    def push(self, x: Float32) -> Float32:
        if not len(self._held):
            return x
        joined = np.concatenate((self._held, x))
        self._held = joined[len(x) :].copy()
        return joined[: len(x)]


class _NearClock:
    """Capture time of each sample of the microphone stream, smoothed against callback jitter."""

    def __init__(self) -> None:
        self._t0: float | None = None
        self._correction = 0.0
        self._jump: float | None = None

    def update(self, index_end: int, end_time: float) -> bool:
        """The sample before ``index_end`` was captured at ``end_time``; True if re-anchored."""
        if self._t0 is None:
            self._t0, self._correction = end_time - index_end / CAPTURE_RATE, 0.0
            return True
        error = end_time - self.time_of(index_end)
        if abs(error) > NEAR_JUMP:
            # Re-anchored when the next update confirms the jump; one odd time is ignored.
            candidate, self._jump = self._jump, error
            if candidate is not None and abs(candidate - error) <= NEAR_JUMP / 2:
                self._t0, self._correction = end_time - index_end / CAPTURE_RATE, 0.0
                self._jump = None
                return True
            return False
        self._jump = None
        self._correction += 0.02 * error
        return False

    def time_of(self, index: int) -> float:
        assert self._t0 is not None
        return self._t0 + index / CAPTURE_RATE + self._correction


class EchoCanceller:
    """The microphone's audio processor (see the module docstring); runs on one thread.

    ``echo_cancellation=False`` leaves only noise suppression (no far end is needed then).
    ``now`` is the monotonic clock that tells a late far end from a silent one.
    """

    def __init__(
        self,
        *,
        echo_cancellation: bool = True,
        noise_suppression: bool = True,
        now: Callable[[], float] = time.monotonic,
        apm_factory: ApmFactory = _livekit_apm,
    ) -> None:
        self.echo_cancellation = echo_cancellation
        self.noise_suppression = noise_suppression
        self.tap = ReferenceTap()
        self._now = now
        self._apm_factory = apm_factory
        self.reset()

    def reset(self) -> None:
        """A new processor: the echo path changed (another device or sample rate)."""
        self._reference = ReferenceTimeline()
        self.tap.take()
        self._clock = _NearClock()
        self._pending: Float32 = np.zeros(0, dtype=np.float32)
        self._received = 0  # microphone samples taken in
        self._done = 0  # microphone samples processed and returned
        self._cursor: float | None = None  # play time of the next far-end chunk to feed
        self._far_recent: deque[float] = deque(maxlen=ECHO_WINDOW)
        self._quiet = float("inf")  # seconds of far end since it last played anything
        self._runs = 0  # the reference's runs when the far end was last fed
        self._broken = False  # the output's timing broke while it played
        self._noise = 1.0  # the microphone's noise power, tracked from below
        self._linear = LinearEchoFilter(CHUNK)
        self._linear_erle: deque[float] = deque(maxlen=LINEAR_MEASURED)
        self._linear_learned = 0  # chunks it learned from since the figure was forgotten
        self._linear_known = False
        self._linear_trusted = False  # it was heard through the last stretch
        self._linear_hushed = False  # its far-end past was made silent (see ``_linear_stage``)
        self._linear_passed = False  # the recognizer heard the microphone instead (``_quieter``)
        #: Per recent chunk of echo alone (by AEC3) while the filter was known: made louder.
        self._linear_worse: deque[bool] = deque(maxlen=LINEAR_CHECKED)
        #: Where the linear filter's far end goes on: (the reference's run, sample index in it).
        self._linear_place: tuple[int, int] | None = None
        #: While the linear filter is aligned again on a new run of the output.
        self._realign: _Realignment | None = None
        #: The loudest echo the microphone heard when the processor last settled on an echo,
        #: as a share of the far end's loudest chunk of the last ``ECHO_WINDOW`` (power).
        self._loudest_echo: float | None = None
        self.stats = EchoStats()
        self._latency = 0
        self._raw_late, self._far_late = _Late(0), _Late(0)
        self._restart()

    def _restart(self) -> None:
        """A fresh processor; the echo is unknown again."""
        self._apm: Apm = self._apm_factory(self.echo_cancellation, self.noise_suppression)
        if self._apm.latency != self._latency:
            # Every other version of the microphone is as late as the processor's output.
            self._latency = self._apm.latency
            self._raw_late = _Late(self._latency)
            self._far_late = _Late(self._latency)
        self._delay_ms = -1
        self._fresh = True  # it has not been through a whole stretch yet
        self._no_echo = False  # it settled where the microphone heard none of the far end
        self.stats.restarts += 1
        self._recheck()
        self._linear_trusted = False

    def _forget_linear_figure(self) -> None:
        """The linear filter is not known to cancel until it shows it again."""
        self._linear_erle.clear()
        self._linear_learned = 0
        self._linear_worse.clear()
        self._linear_known = False
        self.stats.linear_erle_db = None

    def _linear_starts_again(self, why: str, *, reset: bool = True) -> None:
        """The path the linear filter learned no longer lines up: it learns it from nothing
        (``reset``: it is told to forget it; it may have done so itself)."""
        log.info("the linear echo filter starts again: %s", why)
        if reset:
            self._linear.reset()
        self._realign = None
        self._forget_linear_figure()
        self._linear_trusted = False

    def _recheck(self) -> None:
        """A new stretch of playback: the echo is uncertain until it shows cancelled (by AEC3,
        and by the linear filter before the recognizer hears it)."""
        if self._linear_erle:
            log.info(
                "the linear echo stage learned from %d chunks of the last stretch (ERLE %s dB; %s)",
                self._linear_learned,
                _db(float(np.median(self._linear_erle))),
                "the recognizer heard it" if self._linear_known else "not heard",
            )
        self._linear_trusted = self._linear_known
        self._forget_linear_figure()
        self._erle: deque[float] = deque(maxlen=100)
        self._erl: deque[float] = deque(maxlen=100)
        self._settled = not self.echo_cancellation
        self._stretch_seconds = 0.0  # far-end seconds of the stretch
        self._heard = 0  # chunks of it in which the microphone heard anything
        self._near_end_seconds = 0.0  # far-end seconds of it the near end drowned the echo
        self._near_end_hold = 0  # chunks still to count as the near end's
        self._measured = 0  # chunks of it in which it heard something above its noise

    @property
    def _linear_runs(self) -> bool:
        """The linear filter runs beside AEC3 (not with noise suppression: see the module
        docstring)."""
        return self.echo_cancellation and not self.noise_suppression

    @property
    def _hears_no_echo(self) -> bool:
        """This stretch of playback showed that the microphone hears none of it."""
        return self._settled and self._no_echo

    @property
    def uncertain(self) -> bool:
        """The echo return loss is not known yet: speech heard may still be the speaker."""
        return not self._settled

    @property
    def latency(self) -> float:
        """See ``AudioProcessor.latency``: the processor's (``Apm.latency``)."""
        return self._latency / CAPTURE_RATE

    def process(self, samples: Float32, end_time: float) -> Float32:
        """See ``AudioProcessor.process``."""
        return self.process_with_speech(samples, end_time)[0]

    def process_with_speech(
        self, samples: Float32, end_time: float
    ) -> tuple[Float32, Float32 | None]:
        """See ``SpeechProcessor.process_with_speech``."""
        started = time.thread_time()
        x = np.asarray(samples, dtype=np.float32)
        self._received += len(x)
        self._clock.update(self._received, end_time)
        self._pending = np.concatenate((self._pending, x)) if len(self._pending) else x
        self._take_reference()
        out: list[Float32] = []
        speech: list[Float32 | None] = []
        count = len(self._pending) // CHUNK
        processed = 0
        for k in range(count):
            chunk = self._pending[k * CHUNK : (k + 1) * CHUNK]
            result = self._process_chunk(chunk, self._clock.time_of(self._done))
            if result is None:
                self.stats.held += 1
                break
            out.append(result[0])
            speech.append(result[1])
            self._done += CHUNK
            processed += 1
        self._pending = self._pending[processed * CHUNK :].copy()
        if self._cursor is not None:
            self._reference.forget_before(self._cursor - FAR_KEPT)
        self.stats.cpu_seconds += time.thread_time() - started
        if not out:
            return np.zeros(0, dtype=np.float32), None
        if all(s is None for s in speech):
            return np.concatenate(out), None
        heard = [o if s is None else s for o, s in zip(out, speech, strict=True)]
        return np.concatenate(out), np.concatenate(heard)

    # ----------------------------------------------------------------------------- internals

    def _take_reference(self) -> None:
        for block, rate, played_at in self.tap.take():
            self._reference.add(block, rate, played_at)

    def _process_chunk(
        self, chunk: Float32, captured_at: float
    ) -> tuple[Float32, Float32 | None] | None:
        """The chunk processed and the recognizer's version of it (None: the same), or None
        when the far end it needs is not played yet."""
        far_power = 0.0
        if self.echo_cancellation:
            if not self._linear_far_rendered(captured_at):
                return None
            fed = self._feed_far_end(captured_at)
            if fed is None:
                return None
            far_power = fed
            delay_ms = round(LEAD * 1000)
            if delay_ms != self._delay_ms:
                try:
                    self._apm.set_delay_ms(delay_ms)
                    self._delay_ms = delay_ms
                except RuntimeError:  # sometimes refused; AEC3 estimates the delay anyway
                    pass
        near = _to_int16(chunk)
        # The microphone as late as the processor's output (``Apm.latency``): what is measured
        # against that output, and what passes instead of it, follows on sample for sample.
        raw = self._raw_late.push(chunk)
        raw_power = _power(_to_int16(raw))
        try:
            self._apm.near(near)
        except RuntimeError as exc:
            self.stats.failures += 1
            if self.stats.failures == 1:
                log.warning("audio processing failed; passing the microphone through: %s", exc)
            self._linear_far(captured_at)  # its far end keeps in step
            return raw.copy(), None
        processed_power = _power(near)
        self._measure(raw_power, processed_power, far_power)
        speech = self._linear_stage(raw, captured_at, raw_power, processed_power)
        if speech is None:
            # The recognizer hears another version of this chunk: when the linear stage is
            # heard again, it starts from its own output, not a fade from the microphone.
            self._linear_passed = False
        if self.echo_cancellation and not self.noise_suppression:
            if self._quiet >= PASS_AFTER:
                return raw.copy(), None  # no echo left to remove (see the module docstring)
            if self._hears_no_echo:
                speech = raw.copy()  # nothing to remove: see the module docstring
        return near.astype(np.float32) * (1.0 / 32768.0), speech

    def _linear_far_rendered(self, captured_at: float) -> bool:
        """The far end the linear filter takes with the chunk captured from ``captured_at`` has
        been rendered, or it is too late to wait for it (then it reads as silence)."""
        place = self._linear_place
        if not self._linear_runs or place is None or place[0] != self._reference.runs:
            return True
        late = self._now() > captured_at + LEAD + CHUNK_SECONDS + GRACE
        return late or self._reference.run_samples >= place[1] + CHUNK

    def _linear_far(self, captured_at: float) -> Int16 | None:
        """The far end in step with the microphone chunk captured from ``captured_at`` (played
        ``LEAD`` later), for the linear filter; None when it does not run.

        AEC3 is fed the far end by time, and tolerates what the devices' reported times make
        of it: a sample or two of wobble, a sample dropped or doubled where the reference's
        correction moved. A linear filter does not, so its far end is read on from one place
        in the reference's run by sample count, one chunk per microphone chunk, through
        replies and the silences between them. It is placed by time at the start, when the
        output starts a new run, and when it slipped ``LINEAR_SLIP`` from where the times put
        it (audio was lost on one side): then the path it learned no longer lines up, and it
        learns it again."""
        if not self._linear_runs:
            return None
        run, index = self._reference.locate(captured_at + LEAD)
        place = self._linear_place
        if place is not None and place[0] == run and abs(place[1] - index) > LINEAR_SLIP:
            self.stats.linear_slips += 1
            if self._linear.updates:
                self._linear_starts_again("its far end slipped")
            place = None
        if place is None or place[0] != run:
            if place is not None and self._linear.updates:
                self._realign = _Realignment()
            place = (run, index)
        self._linear_place = (run, place[1] + CHUNK)
        far = self._reference.read_run(run, place[1], CHUNK)
        return _to_int16(self._far_late.push(far))  # as late as the microphone it goes with

    def _linear_stage(
        self, chunk: Float32, captured_at: float, raw: float, processed: float
    ) -> Float32 | None:
        """Run the linear filter on the raw chunk (see the module docstring); its output when
        the recognizer should hear it.

        It learns from a chunk only when AEC3 found nothing but echo in it and, once the filter
        is known to cancel, when the filter cancelled it about as well as it usually does: a
        user who starts talking over a reply is sometimes suppressed whole by AEC3 for a moment,
        but never looks like echo to a filter that has learned the echo. A filter that makes
        most of such chunks louder learned a path that moved: it starts again."""
        played = self._linear_far(captured_at)
        if played is None:
            return None
        if self._quiet >= PASS_AFTER:
            # The far end has been silent longer than the filter's memory: it would subtract
            # nothing and learn nothing. Listening between replies costs no filtering; the
            # next reply finds a silent past, not the end of the last one.
            if not self._linear_hushed:
                self._linear.hush()
                self._linear_hushed = True
            return None
        self._linear_hushed = False
        far = played.astype(np.float64) * (1.0 / 32768.0)
        resets = self._linear.resets
        out = self._linear.cancel(chunk.astype(np.float64), far)
        if self._linear.resets != resets:  # it diverged: the path it learned is gone
            self._linear_starts_again("it made the echo louder", reset=False)
        stats = self.stats
        aec3_echo_only = (
            not self._hears_no_echo  # then it is the near end AEC3 thinned
            and max(self._far_recent, default=0.0) >= FAR_ACTIVE
            and raw >= ABOVE_NOISE * self._noise
            and raw >= NEAR_FLOOR
            and processed <= max(ECHO_ONLY_SHARE * raw, NOISE_LEFT * self._noise)
        )
        erle_now = stats.linear_erle_db
        judged = LINEAR_JUDGED_AGAIN if self._linear_trusted else LINEAR_JUDGED
        if erle_now is None or len(self._linear_erle) < judged:
            self._linear_known = False
        elif erle_now >= LINEAR_KNOWN_DB:
            if not self._linear_known:
                log.info(
                    "the recognizer hears the linear echo stage after %.1f s of playback "
                    "(ERLE %s dB)",
                    self._stretch_seconds,
                    _db(erle_now),
                )
            self._linear_known = True
        elif erle_now < LINEAR_KNOWN_DB - LINEAR_KNOWN_HYSTERESIS_DB:
            self._linear_known = False
        known = self._linear_known
        if self._realign is not None:
            self._realign_linear(chunk, out, aec3_echo_only)
        if aec3_echo_only and self._realign is None:
            residual = float(out @ out) / len(out)
            erle = 10.0 * np.log10(raw / max(residual, 1e-12))
            typical = stats.linear_erle_db
            if not known or typical is None or erle >= typical - DOUBLE_TALK_MARGIN_DB:
                self._linear.learn()
                self._linear_learned += 1
                self._linear_erle.append(erle)
                if len(self._linear_erle) % 5 == 0:
                    stats.linear_erle_db = float(np.median(self._linear_erle))
            if known:
                self._linear_worse.append(erle < 0.0)
                if sum(self._linear_worse) >= LINEAR_MOVED:
                    self._linear_starts_again("it no longer cancels the echo")
        if not known:
            return None
        stats.linear_seconds += CHUNK_SECONDS
        return self._quieter(chunk, out)

    def _quieter(self, raw: Float32, out: Float64) -> Float32:
        """The recognizer's version of a chunk: the linear filter's output, or the microphone's
        chunk where that holds less (see the module docstring), faded from one to the other
        over the chunk where it changes."""
        mic = raw.astype(np.float64)
        passed = float(out @ out) > float(mic @ mic)
        before, self._linear_passed = self._linear_passed, passed
        if passed:
            self.stats.linear_passed_seconds += CHUNK_SECONDS
        if passed == before:
            return raw.copy() if passed else out.astype(np.float32)
        start, end = (out, mic) if passed else (mic, out)
        return (start + (end - start) * _FADE_IN).astype(np.float32)

    def _realign_linear(self, chunk: Float32, out: Float64, echo_only: bool) -> None:
        """Gather the next chunk for aligning the linear filter's path on a new run of the
        output (see ``REALIGN_CHUNKS``); once there are enough, move it."""
        gathered = self._realign
        assert gathered is not None
        if max(self._far_recent, default=0.0) >= FAR_ACTIVE:
            gathered.waited += 1
        if echo_only:
            near = chunk.astype(np.float64)
            gathered.heard.append(near)
            gathered.estimates.append(near - out)
        else:  # the chunks must follow each other: start again
            gathered.heard.clear()
            gathered.estimates.clear()
        if len(gathered.heard) >= REALIGN_CHUNKS:
            self._realign = None
            moved = _best_shift(np.concatenate(gathered.heard), np.concatenate(gathered.estimates))
            if moved:
                self._linear.shift(moved)
                self.stats.linear_realigned += 1
                self.stats.linear_realigned_by = moved
                log.info("the linear echo filter's path moved %+d samples with the output", moved)
        elif gathered.waited >= REALIGN_PATIENCE:
            self._realign = None

    def _feed_far_end(self, captured_at: float) -> float | None:
        """Feed the far end played until ``LEAD`` after the chunk captured from ``captured_at``
        ends; its mean power, or None if that is not known yet (the chunk must wait)."""
        target = captured_at + CHUNK_SECONDS + LEAD
        cursor = self._cursor
        if cursor is None or abs(cursor + CHUNK_SECONDS - target) > NEAR_JUMP:
            cursor = target - CHUNK_SECONDS  # start, or re-anchor after a jump
        power = 0.0
        while cursor + CHUNK_SECONDS <= target + 1e-9:
            end = cursor + CHUNK_SECONDS
            late = self._now() > end + GRACE
            if self._reference.known_until < end and not late:
                self._cursor = cursor
                return None
            far = _to_int16(self._reference.read(cursor, CHUNK))
            far_power = _power(far)
            self._begin_stretch(far_power)
            power = max(power, far_power)
            try:
                self._apm.reverse(far)
            except RuntimeError:
                self.stats.failures += 1
            cursor = end
        self._cursor = cursor
        return power

    def _begin_stretch(self, far_power: float) -> None:
        """Before a far-end chunk is fed: a fresh processor when it starts a new stretch of
        playback (after a long silence, or after the output's timing broke while playing)."""
        if self._reference.runs != self._runs:
            self._runs = self._reference.runs
            self._broken = self._broken or self._quiet < REPLY_GAP
        if far_power < FAR_ACTIVE:
            self._quiet += CHUNK_SECONDS
            return
        if self._broken or self._quiet >= REPLY_GAP:
            self._recheck()
        self._broken = False
        self._quiet = 0.0

    def _measure(self, raw: float, processed: float, far: float) -> None:
        stats = self.stats
        stats.processed_seconds += CHUNK_SECONDS
        if not self.echo_cancellation:
            return
        self._noise = min(raw, self._noise * 1.002) if raw >= NEAR_FLOOR else self._noise
        self._far_recent.append(far)
        if max(self._far_recent) < FAR_ACTIVE:
            return
        stats.far_end_seconds += CHUNK_SECONDS
        self._stretch_seconds += CHUNK_SECONDS
        # Digital silence and the microphone's own noise tell nothing: the echo may be on its
        # way, or the far end pausing between words.
        above_noise = raw >= ABOVE_NOISE * self._noise
        if raw < NEAR_FLOOR:
            pass
        elif self._near_end(raw, above_noise):
            self._near_end_seconds += CHUNK_SECONDS
        else:
            self._heard += 1
            self._erl.append(10.0 * np.log10(max(self._far_recent) / raw))
            if above_noise:
                self._erle.append(10.0 * np.log10(raw / max(processed, 1e-12)))
                self._measured += 1
        if self._settled and self._heard % 50:
            return  # the figures are only reported from here on: refresh them twice a second
        stats.erle_db = float(np.median(self._erle)) if self._erle else None
        stats.erl_db = float(np.median(self._erl)) if self._erl else None
        if self._settled or self._stretch_seconds < (
            SETTLE_SECONDS if self._fresh else RECHECK_SECONDS
        ):
            return
        # The microphone heard nothing above its noise while the far end played: no echo.
        weak = self._measured == 0 and self._heard >= MIN_MEASURED
        cancelled = (
            self._measured >= MIN_MEASURED
            and stats.erle_db is not None
            and stats.erle_db >= KNOWN_ERLE_DB
        )
        if weak or cancelled:
            self._settled = True
            self._fresh = False
            self._no_echo = weak
            if cancelled and self._erl:
                erl = float(np.percentile(self._erl, LOUDEST_ECHO_PERCENTILE))
                self._loudest_echo = 10.0 ** (-erl / 10.0)
            log.info(
                "echo cancellation settled after %.1f s of playback (ERLE %s dB, ERL %s dB)",
                self._stretch_seconds,
                _db(stats.erle_db),
                _db(stats.erl_db),
            )
        elif self._measured >= MIN_MEASURED and not self._fresh:
            # The echo path moved under the processor: it passes the echo through.
            log.info(
                "echo no longer cancelled (ERLE %s dB): a fresh processor learns the room",
                _db(stats.erle_db),
            )
            self._restart()

    def _near_end(self, raw: float, above_noise: bool) -> bool:
        """Whether the microphone's chunk (``raw`` its power; ``above_noise``: louder than
        ``ABOVE_NOISE`` times its noise) is the near end's own sound (the user, the tail of
        what they said, a door), not echo, while a processor that settled before checks a new
        stretch of playback; and the ``NEAR_END_HOLD`` chunks after such sound (its quieter
        syllables and its tail).

        Where the processor last settled with the microphone hearing none of the far end
        (headphones, or a speaker it does not reach), that is sound above its noise; where it
        settled on an echo, sound ``NEAR_END_MARGIN`` louder than the loudest echo it heard
        then for as loud a far end (the user talking over the start of a reply, or over one
        that resumed after an underrun). AEC3 leaves that in, as it should; counted as echo
        it would tell that the echo is no longer cancelled and throw away a processor that
        cancels it (and a fresh one mutes the user's next words while it learns, and the
        linear stage takes them for echo). For at most ``NEAR_END_SECONDS`` of a stretch:
        sound that goes on may be echo of a path that changed (a speaker the microphone now
        hears, the volume turned up), and is judged."""
        if self._fresh or self._near_end_seconds >= NEAR_END_SECONDS:
            return False
        if self._no_echo:
            louder = above_noise
        elif self._loudest_echo is not None:
            echo = self._loudest_echo * max(self._far_recent)
            louder = above_noise and raw > NEAR_END_MARGIN * echo
        else:
            return False
        if louder:
            self._near_end_hold = NEAR_END_HOLD
            return True
        if self._near_end_hold > 0:
            self._near_end_hold -= 1
            return True
        return False


def _best_shift(heard: Float64, estimate: Float64) -> int:
    """How many samples later than ``estimate`` the echo in ``heard`` comes (within
    ``REALIGN_MAX``), or 0 when they do not correlate well enough to tell."""
    m = REALIGN_MAX
    core = estimate[m : len(estimate) - m]
    # Index k of each: ``heard`` from sample k on against ``core``, the lag k - m.
    products = np.correlate(heard, core, "valid")
    energies = np.convolve(heard * heard, np.ones(len(core)), "valid") * float(core @ core)
    scores = np.divide(
        products, np.sqrt(energies), out=np.zeros_like(products), where=energies > 0.0
    )
    best = int(np.argmax(scores))
    return best - m if scores[best] >= REALIGN_CORRELATION else 0


def _to_int16(x: Float32) -> Int16:
    return np.clip(np.rint(x * 32768.0), -32768, 32767).astype(np.int16)


def _power(x: Int16) -> float:
    """Mean square, full scale 1.0."""
    y = x.astype(np.float32)
    return float(np.dot(y, y)) / (len(y) * 1073741824.0)


def _db(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f}"
