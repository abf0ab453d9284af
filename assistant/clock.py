"""Time, injected: everything that reads the time or waits takes a ``Clock``.

``LoopClock`` is the real one (monotonic seconds, the asyncio loop's timers). ``ManualClock``
is virtual time for tests: nothing moves until the test advances it, so a turn-taking scenario
of ten seconds runs in milliseconds and its marks are exact.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol


class Timer(Protocol):
    """A scheduled callback that can still be cancelled."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""
        ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` on the loop after ``delay`` seconds."""
        ...

    async def sleep(self, delay: float) -> None: ...


class LoopClock:
    """``time.monotonic`` and the running asyncio loop's timers."""

    def now(self) -> float:
        return time.monotonic()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_later(max(0.0, delay), callback)

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(max(0.0, delay))


#: The process-wide real clock.
SYSTEM_CLOCK: Clock = LoopClock()


def expiry(clock: Clock, delay: float) -> tuple[asyncio.Future[None], Timer]:
    """A future that ``clock`` resolves ``delay`` seconds from now, and the timer that will do
    it (cancel the timer once the future is no longer waited for). Needs a running loop."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def expire() -> None:
        if not future.done():
            future.set_result(None)

    return future, clock.call_later(delay, expire)


class _ManualTimer:
    __slots__ = ("callback", "cancelled", "due")

    def __init__(self, due: float, callback: Callable[[], None]) -> None:
        self.due = due
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """Virtual time. ``advance``/``advance_to`` run due timers in time order and let the loop
    settle after each, so coroutines woken by a timer can schedule the next one before time
    moves on. Work done in threads is not part of virtual time: keep it out of clocked tests.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._timers: list[tuple[float, int, _ManualTimer]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = _ManualTimer(self._now + max(0.0, delay), callback)
        heapq.heappush(self._timers, (timer.due, next(self._seq), timer))
        return timer

    async def sleep(self, delay: float) -> None:
        future, timer = expiry(self, delay)
        try:
            await future
        finally:
            timer.cancel()

    @property
    def next_due(self) -> float | None:
        """When the earliest pending timer fires (None if there is none)."""
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    async def settle(self) -> None:
        """Let every ready callback and woken task run until the loop has nothing left to do."""
        loop = asyncio.get_running_loop()
        for _ in range(10_000):
            await asyncio.sleep(0)
            ready = getattr(loop, "_ready", None)
            if ready is not None and not ready:
                # One more pass: a task finishing may have resolved another's future.
                await asyncio.sleep(0)
                if not loop._ready:  # type: ignore[attr-defined]
                    return
        raise RuntimeError("the event loop did not settle (a task keeps rescheduling itself)")

    async def advance_to(self, t: float) -> None:
        """Move time to ``t``, firing every timer due on the way, in order."""
        while True:
            await self.settle()
            due = self.next_due
            if due is None or due > t:
                break
            _, _, timer = heapq.heappop(self._timers)
            self._now = max(self._now, timer.due)
            timer.callback()
        self._now = max(self._now, t)

    async def advance(self, seconds: float) -> None:
        await self.advance_to(self._now + seconds)
