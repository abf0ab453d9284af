"""One websocket to a provider that outlives its connections.

- ``connect``: open a socket with its auth headers. Transient failures (HTTP 5xx, 429 within the
  policy's patience, network errors) are retried under the policy's budget; a rejected key or a
  refused request fails at once (``errors``).
- ``ReconnectingSocket``: an ordered outbox (paced to real time where the provider demands it),
  a reader handing each message on, and a keep-alive while nothing else flows. After a drop it
  either reconnects at once (``on_reconnect`` given: a streaming STT session, whose current turn
  goes out again) or on the next ``ensure`` (a TTS socket opened per reply). Reconnecting backs
  off; ``reconnects`` failed attempts in a row, or ``quick_failures`` connections in a row that a
  server accepted and dropped at once, end it with a clear error (``on_failure``), so a fallback
  engine can take over instead of the socket reconnecting without end.

The websocket library logs handshakes (headers included) at DEBUG through ``ScrubbingLogger``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidStatus,
    InvalidURI,
    WebSocketException,
)

from assistant.engines.base import EngineError
from assistant.engines.net.errors import (
    RateLimited,
    ServerFailed,
    Service,
    Unreachable,
    close_error,
    http_error,
    invalid_url,
    unreachable,
)
from assistant.engines.net.messages import Outgoing
from assistant.engines.net.pacing import RealtimePacer
from assistant.engines.net.redact import ScrubbingLogger
from assistant.engines.net.retry import Policy, QuickFailures, RetryBudget

log = logging.getLogger(__name__)
_WIRE_LOG = ScrubbingLogger(logging.getLogger("assistant.engines.net.wire"), {})
#: Larger server messages are refused (no provider sends more than a few hundred KB).
MAX_MESSAGE = 16 * 1024 * 1024


def closed_error(service: Service, exc: ConnectionClosed) -> EngineError:
    frame = exc.rcvd or exc.sent
    return close_error(service, frame.code if frame else 1006, frame.reason if frame else "")


def connect_budget(policy: Policy) -> RetryBudget:
    """The retries of one connection: any transient failure, ``attempts`` tries in all."""
    kinds = dict.fromkeys((RateLimited, ServerFailed, Unreachable), policy.attempts)
    return RetryBudget(
        policy.backoff,
        max_retries=policy.attempts - 1,
        limits=kinds,
        max_wait=float("inf"),
        max_retry_after=policy.max_retry_after,
    )


async def connect(
    service: Service, url: str, headers: Mapping[str, str], policy: Policy
) -> ClientConnection:
    """Open a websocket to ``url``, retrying transient failures; raises ``EngineError``."""
    budget = connect_budget(policy)
    while True:
        try:
            return await ws_connect(
                url,
                additional_headers=dict(headers),
                open_timeout=policy.open_timeout,
                close_timeout=policy.close_timeout,
                max_size=MAX_MESSAGE,
                compression=None,
                logger=_WIRE_LOG,
            )
        except InvalidStatus as exc:
            response = exc.response
            body = bytes(response.body or b"")
            error = http_error(
                service, response.status_code, headers=response.headers, body=body, url=url
            )
        except InvalidURI:
            raise invalid_url(service, url, "ws:// or wss://") from None
        except (OSError, TimeoutError, EOFError, WebSocketException) as exc:
            error = unreachable(service, url, exc)
        delay = budget.next_delay(error)
        if delay is None:
            raise error from None
        log.info("%s Retrying in %.2f s.", error, delay)
        await policy.sleep(delay)


class ReconnectingSocket:
    """A provider's websocket that survives drops; see the module docstring.

    Callbacks (all called on the event loop, none may block):
    ``on_message(raw)`` for each message; ``on_sent(item)`` after an item left;
    ``on_drop(error)`` when a connection dropped; ``on_reconnect()`` → the items to send first on
    a new connection (its presence makes the socket reconnect at once); ``on_failure(error)``
    once, when reconnecting gave up. ``handshake(ws)`` runs on each new connection before
    anything else is sent.
    """

    def __init__(
        self,
        service: Service,
        *,
        connect: Callable[[], Awaitable[ClientConnection]],
        policy: Policy,
        on_message: Callable[[str | bytes], None],
        handshake: Callable[[ClientConnection], Awaitable[None]] | None = None,
        on_sent: Callable[[Outgoing], None] | None = None,
        on_drop: Callable[[EngineError], None] | None = None,
        on_reconnect: Callable[[], list[Outgoing]] | None = None,
        on_failure: Callable[[EngineError], None] | None = None,
        pacer: RealtimePacer | None = None,
        keepalive: tuple[float, Outgoing] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.policy = policy
        #: Why the socket gave up for good (eager mode only).
        self.failure: EngineError | None = None
        #: Why the last connection ended.
        self.dropped: EngineError | None = None
        #: Connections opened so far (reconnects included).
        self.connections = 0
        self._connect = connect
        self._handshake = handshake
        self._on_message = on_message
        self._on_sent = on_sent
        self._on_drop = on_drop
        self._on_reconnect = on_reconnect
        self._on_failure = on_failure
        self._pacer = pacer
        self._keepalive = keepalive
        self._now = clock
        self._outbox: collections.deque[Outgoing] = collections.deque()
        self._wake = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._runner: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._closing = False
        self._quick = QuickFailures(policy.stable_after, policy.quick_failures)
        self.last_sent = clock()

    @property
    def connected(self) -> bool:
        ws, runner = self._ws, self._runner
        return ws is not None and ws.close_code is None and runner is not None and not runner.done()

    async def ensure(self) -> None:
        """Connect and shake hands unless connected; raises ``EngineError`` when that fails."""
        if self.failure is not None:
            raise self.failure
        async with self._lock:
            if self.connected:
                return
            await self._stop_runner()
            await self._close_ws()
            self._outbox.clear()
            self._ws = await self._open()
            self.dropped = None
            self._runner = asyncio.create_task(self._run(), name=f"{self.service.engine}-socket")

    async def _open(self) -> ClientConnection:
        ws = await self._connect()
        try:
            if self._handshake is not None:
                await self._handshake(ws)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), self.policy.close_timeout)
            if isinstance(exc, ConnectionClosed):
                raise closed_error(self.service, exc) from None
            raise
        self.connections += 1
        self.last_sent = self._now()
        return ws

    # ------------------------------------------------------------------------------ outbox

    def send(self, item: Outgoing) -> None:
        """Queue ``item``; it goes out after everything queued before it."""
        if self.failure is not None:
            raise self.failure
        if self._on_reconnect is None and not self.connected:
            ws = self._ws
            if self.dropped is None and ws is not None and ws.close_code is not None:
                self.dropped = close_error(self.service, ws.close_code, ws.close_reason or "")
            raise self.dropped or self.service.error("is not connected.")
        self._outbox.append(item)
        self._wake.set()

    def drop_audio(self) -> None:
        """Forget the audio queued after the last control message (the current turn's; an
        earlier turn still waiting behind the pacer keeps its audio)."""
        items = list(self._outbox)
        keep = max((i + 1 for i, item in enumerate(items) if not item.audio), default=0)
        self._outbox.clear()
        self._outbox.extend(items[:keep])

    # ------------------------------------------------------------------------------ running

    async def _run(self) -> None:
        while True:
            opened = self._now()
            error = await self._serve()
            if self._closing:
                return
            # A socket used per reply may close while idle; one that streams must not.
            log.log(logging.INFO if self._on_reconnect is None else logging.WARNING, "%s", error)
            if self._on_drop is not None:
                self._on_drop(error)
            if self._on_reconnect is None:  # reconnected by the next ``ensure``
                self.dropped = error
                self._outbox.clear()
                return
            if self._quick.record(self._now() - opened) and error.retryable:
                self._fail(self._gave_up(error))
                return
            error_after = await self._reconnect(error)
            if self._closing:
                return
            if error_after is not None:
                self._fail(error_after)
                return
            if self._pacer is not None:
                self._pacer.reset()
            self._outbox.extendleft(reversed(self._on_reconnect()))
            self._wake.set()
            log.info("%s reconnected", self.service.label)

    async def _reconnect(self, error: EngineError) -> EngineError | None:
        """Open a new connection, with backoff; None on success, else why it failed."""
        failures = 0
        while error.retryable and failures < self.policy.reconnects:
            failures += 1
            await self.policy.sleep(self.policy.backoff.delay(self._quick.count + failures))
            if self._closing:
                return None
            try:
                ws = await self._open()
            except EngineError as exc:
                error = exc
                log.warning("%s: reconnecting failed: %s", self.service.label, exc)
                continue
            await self._close_ws()
            self._ws = ws
            return None
        return error

    def _gave_up(self, error: EngineError) -> EngineError:
        count, lasted = self._quick.count, self.policy.stable_after
        return self.service.error(
            f"dropped the connection right after accepting it, {count} times in a row "
            f"(each within {lasted:g} s; last: {error}). Try again later, or choose another "
            "engine in Settings.",
            retryable=False,
        )

    async def _serve(self) -> EngineError:
        ws = self._ws
        assert ws is not None
        tasks = [asyncio.create_task(self._read(ws)), asyncio.create_task(self._write(ws))]
        if self._keepalive is not None:
            tasks.append(asyncio.create_task(self._keep_alive(ws, *self._keepalive)))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            error = None if task.cancelled() else task.exception()
            if isinstance(error, EngineError):
                return error
        return close_error(self.service, ws.close_code, ws.close_reason or "")

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                try:
                    self._on_message(raw)
                except Exception:  # a mapping bug must not kill the session
                    _WIRE_LOG.exception("%s: a server message could not be handled", self.service)
        except ConnectionClosed as exc:
            raise closed_error(self.service, exc) from None

    async def _write(self, ws: ClientConnection) -> None:
        while True:
            if not self._outbox:
                self._wake.clear()
                await self._wake.wait()
                continue
            item = self._outbox[0]
            if item.audio and self._pacer is not None:
                wait = self._pacer.delay(item.audio)
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue  # the outbox may have changed meanwhile
            self._outbox.popleft()
            try:
                await ws.send(item.data)
            except ConnectionClosed as exc:
                self._outbox.appendleft(item)
                raise closed_error(self.service, exc) from None
            if item.audio and self._pacer is not None:
                self._pacer.book(item.audio)
            self.last_sent = self._now()
            if self._on_sent is not None:
                self._on_sent(item)

    async def _keep_alive(self, ws: ClientConnection, interval: float, item: Outgoing) -> None:
        while True:
            await asyncio.sleep(max(0.05, self.last_sent + interval - self._now()))
            if self._now() - self.last_sent >= interval and not self._outbox:
                with contextlib.suppress(ConnectionClosed):
                    await ws.send(item.data)
                self.last_sent = self._now()

    def _fail(self, error: EngineError) -> None:
        if self.failure is None:
            self.failure = error
            self._outbox.clear()
            if self._on_failure is not None:
                self._on_failure(error)

    def abort(self, error: EngineError) -> None:
        """Give up for good with ``error`` (the server said the session cannot go on)."""
        self._fail(error)
        runner = self._runner
        if runner is not None and runner is not asyncio.current_task():
            runner.cancel()

    # ------------------------------------------------------------------------------ closing

    async def close(
        self, goodbye: Outgoing | None = None, done: asyncio.Event | None = None
    ) -> None:
        """Send ``goodbye``, wait (briefly) for ``done`` or the server's close, then close."""
        if self._closing:
            return
        self._closing = True
        self._outbox.clear()
        ws = self._ws
        if ws is not None and goodbye is not None and self.failure is None and self.connected:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(goodbye.data)
                waiters: list[asyncio.Future[object]] = [asyncio.ensure_future(ws.wait_closed())]
                if done is not None:
                    waiters.append(asyncio.ensure_future(done.wait()))
                await asyncio.wait(
                    waiters, timeout=self.policy.close_timeout, return_when=asyncio.FIRST_COMPLETED
                )
                for waiter in waiters:
                    waiter.cancel()
        await self._stop_runner()
        await self._close_ws()

    async def _stop_runner(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)

    async def _close_ws(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), self.policy.close_timeout)
