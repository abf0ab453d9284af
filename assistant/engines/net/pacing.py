"""Pacing audio to real time, for servers that refuse audio sent faster than it plays."""

from __future__ import annotations

import time
from collections.abc import Callable


class RealtimePacer:
    """Lets audio run at most ``burst`` seconds ahead of the clock.

    ``delay(seconds)`` is how long to wait before sending that much more audio; ``book`` records
    audio sent; ``reset`` forgets the past (a new connection)."""

    def __init__(self, burst: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.burst = burst
        self._now = clock
        self._until = 0.0  # when the audio sent so far would have finished playing

    def delay(self, seconds: float) -> float:
        now = self._now()
        return max(0.0, max(self._until, now) + seconds - self.burst - now)

    def book(self, seconds: float) -> None:
        self._until = max(self._until, self._now()) + seconds

    def reset(self) -> None:
        self._until = 0.0
