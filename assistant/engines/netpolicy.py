"""Connection policy shared by the cloud adapters: retry delays, deadlines, websocket plumbing.

Provider-neutral and small. Adapters decide *what* is worth retrying; this module decides *how
long* to wait (exponential backoff with jitter, or what the server asked for with
``retry-after``), bounds how many retries a request or a reconnect loop may take, reads the
first item of a stream under a deadline, and opens websockets with a logger that cannot leak
credentials (the websocket library logs handshake headers, ``Authorization`` included, at DEBUG).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from assistant import secrets

#: Close codes that reconnecting will not cure: the two ends disagree (protocol error,
#: unsupported or invalid data, policy violation such as a bad key, message too big, missing
#: extension). Anything else (normal end, going away, abnormal drop, server error, restart, try
#: again later) is worth a reconnect.
FATAL_CLOSE_CODES = frozenset({1002, 1003, 1007, 1008, 1009, 1010})


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: attempt ``n`` waits up to ``base * factor**n`` (capped).

    ``jitter`` is the fraction of that delay that is randomized, so that many clients dropped at
    once do not all come back at the same instant.
    """

    base: float = 0.25
    factor: float = 2.0
    cap: float = 8.0
    jitter: float = 0.5

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap, self.base * self.factor ** max(0, attempt))
        floor = ceiling * (1.0 - self.jitter)
        return floor + (ceiling - floor) * random.random()


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked us to wait: ``retry-after-ms``, or ``retry-after`` as seconds or
    an HTTP date. None when absent or unreadable."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(slots=True)
class RetryBudget:
    """Bounds the retries of one request: how many, and how long they may wait in total.

    ``next_delay`` returns how long to sleep before the next attempt, or None when the budget
    does not allow one (too many attempts, or the wait would overrun ``max_wait``).
    """

    max_retries: int = 3
    max_wait: float = 10.0
    backoff: Backoff = field(default_factory=Backoff)
    retries: int = 0
    waited: float = 0.0

    def next_delay(self, server_asked: float | None = None) -> float | None:
        if self.retries >= self.max_retries:
            return None
        delay = self.backoff.delay(self.retries)
        if server_asked is not None:
            # Honour the server's figure, plus a little jitter so retries do not stampede.
            delay = server_asked + random.uniform(0.0, min(0.25, 0.1 * server_asked + 0.05))
        if self.waited + delay > self.max_wait:
            return None
        self.retries += 1
        self.waited += delay
        return delay


class Reconnector:
    """Paces a reconnect loop: backoff between consecutive failures, and a limit on them."""

    def __init__(self, backoff: Backoff | None = None, max_attempts: int = 6) -> None:
        self.backoff = backoff or Backoff()
        self.max_attempts = max_attempts
        self.attempts = 0

    def connected(self) -> None:
        """A connection worked: the next failure starts from the shortest delay again."""
        self.attempts = 0

    @property
    def exhausted(self) -> bool:
        return self.attempts >= self.max_attempts

    async def wait(self, server_asked: float | None = None) -> bool:
        """Sleep before the next attempt; False (without sleeping) when out of attempts."""
        if self.exhausted:
            return False
        delay = self.backoff.delay(self.attempts)
        if server_asked is not None:
            delay = max(delay, server_asked)
        self.attempts += 1
        await asyncio.sleep(delay)
        return True


async def next_within[T](iterator: AsyncIterator[T], seconds: float) -> T | None:
    """The next item of ``iterator`` within ``seconds`` (TimeoutError otherwise), or None
    at its end. For first-byte deadlines, where a stalled server must not hang a turn."""
    async with asyncio.timeout(seconds):
        return await anext(iterator, None)


def is_fatal_close(code: int | None) -> bool:
    """Whether a websocket closed with ``code`` is not worth reconnecting to."""
    return code is not None and code in FATAL_CLOSE_CODES


def handshake_rejection(exc: BaseException) -> tuple[int, float | None] | None:
    """(HTTP status, retry-after) when a websocket handshake was refused with a status."""
    if isinstance(exc, InvalidStatus):
        response = exc.response
        headers = {k.lower(): v for k, v in response.headers.raw_items()}
        return response.status_code, retry_after(headers)
    return None


class RedactingLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger that formats each message and scrubs every known API key out of it."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = " ".join(str(a) for a in (msg, *args))
        kwargs.pop("stacklevel", None)
        self.logger.log(level, secrets.redact(text), stacklevel=2, **kwargs)


def redacting_logger(name: str) -> RedactingLogger:
    return RedactingLogger(logging.getLogger(name), {})


async def open_websocket(
    url: str,
    headers: Mapping[str, str],
    *,
    open_timeout: float = 10.0,
    logger_name: str = __name__,
    max_size: int | None = 4 * 1024 * 1024,
) -> ClientConnection:
    """Open a websocket for streaming audio: no compression (latency over bytes), keepalive
    pings, and handshake logging that never shows credentials."""
    return await connect(
        url,
        additional_headers=dict(headers),
        open_timeout=open_timeout,
        compression=None,
        max_size=max_size,
        ping_interval=20,
        ping_timeout=20,
        close_timeout=2,
        logger=redacting_logger(logger_name),
    )
