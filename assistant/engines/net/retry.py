"""How long to wait and how often to try again: one policy for every cloud adapter.

- ``retry_after``: the one reader of a server's wait request — ``retry-after-ms``, then
  ``retry-after`` as seconds or as an HTTP date.
- ``Backoff``: exponential backoff with jitter. Retry ``n`` (1-based) waits between half and all
  of ``base * 2**(n-1)``, capped, so clients dropped together do not return together.
- ``RetryBudget``: the retries of one request — how many in all, how many of each kind of failure
  (``errors.RateLimited``, ``errors.ServerFailed``, ``errors.Unreachable``), how long they may
  wait in total, and how long a server's ``retry-after`` may be before failing at once is better.
- ``QuickFailures``: a server that accepts a connection and drops it at once is not cured by
  backoff (each handshake succeeds); after a few such connections in a row, give up.
- ``Policy``: the deadlines and budgets of one provider, with the clock the drivers sleep on.

Nothing here does I/O; the drivers sleep on ``Policy.sleep`` (tests swap it to record waits).
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from assistant.engines.base import EngineError


def retry_after(headers: Any, now: Callable[[], float] = time.time) -> float | None:
    """Seconds the server asked us to wait, or None when it did not say (or said nonsense).

    ``headers`` is any case-insensitive mapping (httpx, websockets) or a plain dict."""
    if headers is None:
        return None
    ms = _header(headers, "retry-after-ms")
    if ms:
        seconds = _seconds(ms)
        if seconds is not None:
            return seconds / 1000.0
    value = _header(headers, "retry-after")
    if not value:
        return None
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now())


def _header(headers: Any, name: str) -> str:
    try:
        value = headers.get(name)
        if value is None and isinstance(headers, Mapping):
            value = next((v for k, v in headers.items() if str(k).lower() == name), None)
    except (AttributeError, TypeError):
        return ""
    return value.strip() if isinstance(value, str) else ""


def _seconds(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return max(0.0, value)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: retry ``attempt`` (1-based) waits up to
    ``base * 2**(attempt-1)``, capped at ``cap``; ``jitter`` is the randomized fraction."""

    base: float = 0.25
    cap: float = 4.0
    jitter: float = 0.5

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap, self.base * 2 ** max(0, attempt - 1))
        floor = ceiling * (1.0 - self.jitter)
        return floor + (ceiling - floor) * random.random()


@dataclass(slots=True)
class RetryBudget:
    """The retries one request may take.

    ``next_delay(error)`` says how long to wait before trying again, or None: the error is not
    retryable, its kind has no retries left (``limits``: error class → retries; kinds not named
    are not retried), all ``max_retries`` are spent, the server asked for longer than
    ``max_retry_after``, or the wait would overrun ``max_wait``.
    """

    backoff: Backoff = field(default_factory=Backoff)
    max_retries: int = 2
    limits: Mapping[type[EngineError], int] = field(default_factory=dict)
    max_wait: float = 10.0
    max_retry_after: float = 5.0
    retries: int = 0
    waited: float = 0.0
    _used: dict[type[EngineError], int] = field(default_factory=dict)

    def next_delay(self, error: EngineError) -> float | None:
        if not error.retryable or self.retries >= self.max_retries:
            return None
        kind = next((k for k in self.limits if isinstance(error, k)), None)
        if kind is None or self._used.get(kind, 0) >= self.limits[kind]:
            return None
        asked = error.retry_after
        if asked is not None:
            if asked > self.max_retry_after:
                return None
            # The server's figure, plus a little jitter so retries do not stampede.
            delay = asked + random.uniform(0.0, min(0.25, 0.1 * asked + 0.05))
        else:
            delay = self.backoff.delay(self.retries + 1)
        if self.waited + delay > self.max_wait:
            return None
        self.retries += 1
        self.waited += delay
        self._used[kind] = self._used.get(kind, 0) + 1
        return delay


@dataclass(slots=True)
class QuickFailures:
    """Counts connections in a row that were dropped within ``stable_after`` seconds of opening.

    ``record(lived)`` returns True when ``limit`` such quick failures have happened in a row:
    the server accepts and then drops, and reconnecting again will not help. A connection that
    lived long enough resets the count."""

    stable_after: float = 5.0
    limit: int = 3
    count: int = 0

    def record(self, lived: float) -> bool:
        self.count = self.count + 1 if lived < self.stable_after else 0
        return self.count >= self.limit

    def reset(self) -> None:
        self.count = 0


async def _sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


@dataclass(frozen=True, slots=True)
class Policy:
    """Deadlines and retry budgets of one provider's connections."""

    open_timeout: float = 5.0
    #: The first message a server owes us (a session start, the first audio of a reply).
    first_message_timeout: float = 8.0
    #: Silence from the server while it owes us something, mid-stream.
    stall_timeout: float = 8.0
    #: Connection attempts per connect (the first try included).
    attempts: int = 3
    backoff: Backoff = field(default_factory=Backoff)
    #: A 429's retry-after is honoured up to this long; a longer one fails at once.
    max_retry_after: float = 5.0
    #: Reconnects in a row after a dropped streaming session before giving up.
    reconnects: int = 3
    #: A connection that lives shorter than this counts as a quick failure …
    stable_after: float = 5.0
    #: … and this many in a row end the reconnecting.
    quick_failures: int = 3
    close_timeout: float = 1.0
    #: What the drivers wait with (a test records the waits instead of sleeping through them).
    sleep: Callable[[float], Awaitable[None]] = _sleep
