"""The far end of an echo canceller: what the speaker played, and when.

``ReferenceTap`` sits on an output's render path (``BufferedPlayer.taps``). The rendering
thread hands it every block exactly as the device gets it (after resampling, after a pause or a
clear took effect) with the monotonic time its first sample is played; the tap only copies the
block into a queue under a lock. The loop takes the queued blocks (``take``) and lays them on a
``ReferenceTimeline``: 16 kHz samples on the monotonic time axis, from which the echo canceller
reads the far end of any 10 ms of microphone audio by time.

Sample accounting: within a run of blocks that follow each other (each starts where the last
ended, within ``JUMP`` seconds; a single block off by more is taken as a glitch in its time),
sample ``i`` of the run is played at the run's start plus ``i / rate`` plus a slowly tracked
correction, so callback jitter never shifts the samples and a device clock that drifts against
the monotonic clock is followed. Two blocks in a row that do not follow (a stall, a new
device), or a first block, start a new run at their own time. Times with no block read as
silence: nothing was played then.

Reading by time follows the correction, so what is read moves by a sample or two against the
samples played as the device's reported times wobble (a sound server's by a few tenths of a
millisecond). An adaptive linear filter needs the far end exactly as played: ``locate`` gives
the place in the run that plays at a time, and ``read_run`` reads on from there by sample count.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import numpy as np
import numpy.typing as npt
import soxr

from assistant.types import CAPTURE_RATE

Float32 = npt.NDArray[np.float32]

#: A block starting further than this from where the previous one ended starts a new run.
JUMP = 0.02
#: Share of the timing error of each block taken into the run's correction.
SLEW = 0.02


class ReferenceTap:
    """A render-path tap: the rendering thread puts blocks in, the loop takes them out.

    At most ``max_seconds`` are kept; older blocks are dropped (and counted) when the loop does
    not take them, e.g. while no microphone is capturing.
    """

    def __init__(self, max_seconds: float = 2.0) -> None:
        self._max = max_seconds
        self._lock = threading.Lock()
        self._blocks: deque[tuple[Float32, int, float]] = deque()
        self._queued = 0.0
        #: Blocks dropped because nobody took them in time.
        self.dropped = 0

    def rendered(self, block: Float32, rate: int, played_at: float) -> None:
        """Rendering thread: ``block`` (mono float32 at ``rate``) is played from ``played_at``."""
        copy = np.array(block, dtype=np.float32, copy=True)
        seconds = len(copy) / rate
        with self._lock:
            self._blocks.append((copy, rate, played_at))
            self._queued += seconds
            while self._queued > self._max and len(self._blocks) > 1:
                old, old_rate, _ = self._blocks.popleft()
                self._queued -= len(old) / old_rate
                self.dropped += 1

    def take(self) -> list[tuple[Float32, int, float]]:
        """Loop thread: every block rendered since the last call, oldest first."""
        with self._lock:
            blocks = list(self._blocks)
            self._blocks.clear()
            self._queued = 0.0
        return blocks


class ReferenceTimeline:
    """Played audio at 16 kHz on the monotonic time axis (see the module docstring)."""

    def __init__(self) -> None:
        #: (play time, samples, run, index of the first sample in its run) of each piece.
        self._pieces: deque[tuple[float, Float32, int, int]] = deque()
        self._rate = 0
        self._resampler: Any = None
        self._run_start = 0.0  # play time of the run's first sample
        self._run_in = 0  # samples of the run received, at the device rate
        self._run_out = 0  # samples of the run produced, at 16 kHz
        self._correction = 0.0
        self._known_until = float("-inf")
        self._jump: float | None = None
        #: Runs started (1 for an uninterrupted output).
        self.runs = 0

    @property
    def known_until(self) -> float:
        """Play time just after the newest sample that can be read; -inf before any."""
        return self._known_until

    def _expected(self) -> float:
        """Where the next block of the current run should start playing."""
        if self._rate == 0:
            return float("-inf")
        return self._run_start + self._run_in / self._rate + self._correction

    def add(self, block: Float32, rate: int, played_at: float) -> None:
        """A rendered block (mono float32 at ``rate``) whose first sample plays at ``played_at``."""
        if len(block) == 0:
            return
        expected = self._expected()
        error = played_at - expected
        if rate != self._rate or self._rate == 0:
            self._new_run(rate, played_at)
        elif abs(error) > JUMP:
            # A jump counts when the next block confirms it (a real gap or a new device);
            # a single odd time is ignored and the run goes on by sample count.
            candidate = self._jump
            self._jump = error
            if candidate is not None and abs(candidate - error) <= JUMP / 2:
                self._new_run(rate, played_at)
        else:
            self._jump = None
            self._correction += SLEW * error
        self._run_in += len(block)
        x = np.asarray(block, dtype=np.float32)
        y = self._resampler.resample_chunk(x) if self._resampler is not None else x.copy()
        self._emit(y)

    def read(self, t: float, n: int) -> Float32:
        """``n`` samples at 16 kHz played from ``t`` on; silence where nothing was played."""
        out = np.zeros(n, dtype=np.float32)
        for start_t, x, _, _ in self._pieces:
            _lay(out, x, round((start_t - t) * CAPTURE_RATE))
        return out

    @property
    def run_samples(self) -> int:
        """16 kHz samples of the current run that can be read (``read_run``) so far."""
        return self._run_out

    def locate(self, t: float) -> tuple[int, int]:
        """The current run and the index (16 kHz samples from its start) of the sample it plays
        at ``t`` (by the run's times as now corrected)."""
        start = self._run_start + self._correction
        return self.runs, round((t - start) * CAPTURE_RATE)

    def read_run(self, run: int, index: int, n: int) -> Float32:
        """``n`` samples of run ``run`` from its sample ``index`` on, exactly as played;
        silence where it has none (not played yet, forgotten, or another run)."""
        out = np.zeros(n, dtype=np.float32)
        for _, x, piece_run, first in self._pieces:
            if piece_run == run:
                _lay(out, x, first - index)
        return out

    def forget_before(self, t: float) -> None:
        """Drop what was played entirely before ``t`` (it will not be read again)."""
        self._pieces = deque(p for p in self._pieces if p[0] + len(p[1]) / CAPTURE_RATE > t)

    def _new_run(self, rate: int, played_at: float) -> None:
        if self._resampler is not None:  # the previous run's last samples, at their own times
            self._emit(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))
        self._rate = rate
        self._resampler = (
            None if rate == CAPTURE_RATE else soxr.ResampleStream(rate, CAPTURE_RATE, 1, "float32")
        )
        self._run_start = played_at
        self._run_in = self._run_out = 0
        self._correction = 0.0
        self._jump = None
        self.runs += 1

    def _emit(self, y: Float32) -> None:
        if len(y) == 0:
            return
        start = self._run_start + self._run_out / CAPTURE_RATE + self._correction
        self._pieces.append((start, np.asarray(y, dtype=np.float32), self.runs, self._run_out))
        self._run_out += len(y)
        self._known_until = max(self._known_until, start + len(y) / CAPTURE_RATE)


def _lay(out: Float32, x: Float32, start: int) -> None:
    """Copy the samples ``x`` into ``out`` from its index ``start`` on (which may be negative),
    as far as they overlap."""
    a, b = max(0, start), min(len(out), start + len(x))
    if a < b:
        out[a:b] = x[a - start : b - start]
