"""Websocket plumbing shared by the streaming cloud adapters (AssemblyAI, Deepgram, ElevenLabs,
Async). Each adapter keeps only its URL, its messages and their meaning; the rest is here.

- ``connect``: open a socket with auth headers, retrying transient failures (5xx, network errors,
  429 with its ``retry-after``) with exponential backoff and jitter; a rejected key or a refused
  request becomes a non-retryable ``EngineError`` at once. ``close_error`` and ``status_error``
  turn close codes and HTTP statuses into actionable messages.
- ``LiveSocket`` and ``StreamingSTTSession``: a long-lived STT socket with an ordered outbox
  (audio batched, and paced to real time where the provider demands it), a keep-alive, and
  reconnection after a drop that re-sends the current turn's audio; turns ended on request with
  a deadline for the server's answer.
- ``ContextSocket`` and ``speak``: one TTS socket carrying the replies of a voice as contexts,
  messages routed to the context they name (others dropped); ``PieceTracker`` cuts a context's
  audio into per-piece ``SpeechChunk``s, by character alignment or by estimate.
- ``VoiceCache``: a provider's voice list, fetched off the loop and cached.

Keys never reach a log line or an exception text: the websocket library's own debug log goes
through a scrubbing adapter and every message from a server passes ``secrets.redact``.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import collections
import contextlib
import email.utils
import json
import logging
import random
import re
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Mapping,
)
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)

from assistant.engines.base import (
    PCM,
    EngineError,
    EngineUnavailable,
    SpeechChunk,
    Transcript,
    Voice,
)
from assistant.secrets import DISPLAY_NAMES, ENV_VARS, redact

log = logging.getLogger(__name__)

Message = dict[str, Any]

# ------------------------------------------------------------------------------------ redaction

_SECRET_HEADER = re.compile(
    r"^([<>] )?(authorization|xi-api-key|x-api-key|api-key):.*$", re.I | re.M
)
_SECRET_QUERY = re.compile(r"((?:api_key|token|key)=)[^&\s'\"]+", re.I)


def scrub(text: str) -> str:
    """``text`` without known keys, auth header values or key query parameters."""
    text = redact(text)
    text = _SECRET_HEADER.sub(lambda m: f"{m.group(1) or ''}{m.group(2)}: [redacted]", text)
    return _SECRET_QUERY.sub(r"\1[redacted]", text)


class _ScrubbingLogger(logging.LoggerAdapter):
    """Formats eagerly and scrubs, so header lines and URLs logged at DEBUG never carry a key."""

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        text = str(msg) % args if args else str(msg)
        if kwargs.pop("exc_info", None):
            text += "\n" + traceback.format_exc()
        kwargs.pop("stack_info", None)
        self.logger.log(level, "%s", scrub(text), **kwargs)


_WS_LOG = _ScrubbingLogger(logging.getLogger("assistant.engines.ws.wire"), {})


def display(engine: str) -> str:
    return DISPLAY_NAMES.get(engine, engine)


def _where_to_set(engine: str) -> str:
    env = ENV_VARS.get(engine)
    where = f"Settings → API keys → {display(engine)}"
    return f"{where} or the {env} environment variable" if env else where


def host_of(url: str) -> str:
    """Scheme, host and path of ``url`` without its query (which may hold a key), for messages."""
    parts = urllib.parse.urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


def with_query(url: str, params: Mapping[str, str]) -> str:
    """``url`` with ``params`` added to (or replacing those in) its query string."""
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    query.update(params)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def http_base(ws_url: str) -> str:
    """The HTTP(S) origin of a websocket endpoint: wss://host/x → https://host."""
    parts = urllib.parse.urlsplit(ws_url)
    scheme = {"wss": "https", "ws": "http"}.get(parts.scheme, parts.scheme)
    return f"{scheme}://{parts.netloc}"


# -------------------------------------------------------------------------------------- policy


@dataclass(frozen=True, slots=True)
class ConnectPolicy:
    """How hard to try, and how long to wait, when talking to one provider."""

    open_timeout: float = 5.0
    #: The first message a server owes us (a session start, the first audio of a reply).
    first_message_timeout: float = 8.0
    #: Silence from the server while it owes us something, mid-stream.
    stall_timeout: float = 8.0
    #: Connection attempts per connect (the first try included).
    attempts: int = 3
    backoff_base: float = 0.25
    backoff_max: float = 4.0
    #: A 429's retry-after is honoured up to this long; a longer one fails at once.
    max_retry_after: float = 5.0
    #: Reconnects after a dropped streaming session before giving up.
    reconnects: int = 3
    close_timeout: float = 1.0

    def backoff(self, attempt: int) -> float:
        """Delay before retry ``attempt`` (1-based): doubling, capped, with jitter (50–100 %)."""
        cap = min(self.backoff_max, self.backoff_base * 2 ** max(0, attempt - 1))
        return random.uniform(cap / 2, cap)


def _retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after") if headers is not None else None
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


def status_error(engine: str, status: int, headers: Any = None, body: bytes = b"") -> EngineError:
    """The error for an HTTP status refusing a handshake or a request."""
    name = display(engine)
    if status in (401, 403):
        return EngineError(
            f"{name} rejected the API key (HTTP {status}). Check it in {_where_to_set(engine)}.",
            engine=engine,
            retryable=False,
        )
    if status == 429:
        wait = _retry_after(headers)
        hint = f"; retry after {wait:.0f} s" if wait is not None else ""
        return EngineError(
            f"{name} is rate limiting requests (HTTP 429{hint}).",
            engine=engine,
            retryable=True,
            retry_after=wait,
        )
    detail = scrub(body[:300].decode("utf-8", "replace")).strip()
    detail = f": {detail}" if detail else ""
    if status >= 500:
        return EngineError(f"{name} had a server error (HTTP {status}){detail}", engine=engine)
    return EngineError(
        f"{name} refused the request (HTTP {status}){detail}", engine=engine, retryable=False
    )


def close_error(engine: str, code: int | None, reason: str) -> EngineError:
    """The error for a socket the server closed (or that broke) while we still needed it."""
    name = display(engine)
    reason = scrub(reason or "").strip()[:200]
    said = f": {reason}" if reason else ""
    lowered = reason.lower()
    about_key = any(w in lowered for w in ("auth", "api key", "api_key", "invalid key", "credent"))
    if code in (4001, 4003) or (code == 1008 and about_key):
        return EngineError(
            f"{name} rejected the API key (close code {code}{said}). "
            f"Check it in {_where_to_set(engine)}.",
            engine=engine,
            retryable=False,
        )
    if code in (1002, 1003, 1007, 1008, 1009, 3007) or (code is not None and 3000 <= code < 4000):
        return EngineError(
            f"{name} closed the connection (code {code}{said}).", engine=engine, retryable=False
        )
    return EngineError(f"{name} connection dropped (code {code}{said}).", engine=engine)


def closed_error(engine: str, exc: ConnectionClosed) -> EngineError:
    frame = exc.rcvd or exc.sent
    return close_error(engine, frame.code if frame else 1006, frame.reason if frame else "")


# ------------------------------------------------------------------------------------- connect


async def connect(
    engine: str, url: str, headers: Mapping[str, str], policy: ConnectPolicy
) -> ClientConnection:
    """Open a websocket to ``url``, retrying transient failures with backoff.

    Raises ``EngineError`` (non-retryable for a rejected key or a refused request) or
    ``EngineUnavailable`` when the server cannot be reached at all.
    """
    last: EngineError | None = None
    for attempt in range(1, policy.attempts + 1):
        wait: float | None
        try:
            return await ws_connect(
                url,
                additional_headers=dict(headers),
                open_timeout=policy.open_timeout,
                close_timeout=policy.close_timeout,
                max_size=None,
                compression=None,
                logger=_WS_LOG,
            )
        except InvalidStatus as exc:
            response = exc.response
            body = bytes(response.body or b"")
            last = status_error(engine, response.status_code, response.headers, body)
            if not last.retryable:
                raise last from None
            if last.retry_after is not None:
                wait = last.retry_after if last.retry_after <= policy.max_retry_after else None
            else:
                wait = policy.backoff(attempt)
        except InvalidURI:
            raise EngineError(
                f"{display(engine)}: the endpoint {host_of(url)!r} is not a websocket URL "
                "(ws:// or wss://).",
                engine=engine,
                retryable=False,
            ) from None
        except (OSError, TimeoutError, InvalidHandshake, EOFError) as exc:
            last = EngineUnavailable(
                f"{display(engine)} is unreachable at {host_of(url)} ({type(exc).__name__}: "
                f"{scrub(str(exc))[:200]}).",
                engine=engine,
            )
            wait = policy.backoff(attempt)
        if wait is None or attempt == policy.attempts:
            break
        log.info("%s: %s; retrying in %.2f s", engine, last, wait)
        await asyncio.sleep(wait)
    assert last is not None
    raise last from None


def parse_json(engine: str, raw: str | bytes) -> Message | None:
    """A server's JSON object, or None (logged) when the message is not one."""
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        log.warning(
            "%s sent a message that is not JSON (%d bytes); skipped", display(engine), len(raw)
        )
        return None
    if not isinstance(value, dict):
        log.warning("%s sent JSON that is not an object; skipped", display(engine))
        return None
    return value


def server_error_text(msg: Message) -> str | None:
    """The error a server reports in a message (``error`` / ``message`` fields), if any."""
    error = msg.get("error")
    if not error and msg.get("type") not in ("Error", "error"):
        return None
    if isinstance(error, dict):
        error = error.get("message") or json.dumps(error)
    text = str(error or msg.get("message") or msg.get("description") or "unknown error")
    return scrub(text)[:300]


def decode_pcm(b64: str, carry: bytearray) -> PCM:
    """Base64 s16le audio → int16 samples; an odd trailing byte waits in ``carry``."""
    data = bytes(carry) + base64.b64decode(b64)
    usable = len(data) & ~1
    carry[:] = data[usable:]
    return np.frombuffer(data[:usable], dtype="<i2").astype(np.int16)


async def fetch_json(
    engine: str,
    url: str,
    *,
    headers: Mapping[str, str],
    method: str = "GET",
    body: bytes | None = None,
    timeout: float = 5.0,
) -> Any:
    """One small HTTP request (voice lists), off the event loop."""

    def run() -> Any:
        request = urllib.request.Request(url, data=body, headers=dict(headers), method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise status_error(engine, exc.code, exc.headers, exc.read()) from None
        except (OSError, ValueError) as exc:
            raise EngineUnavailable(
                f"{display(engine)}: {host_of(url)} failed "
                f"({type(exc).__name__}: {scrub(str(exc))[:200]})",
                engine=engine,
            ) from None

    return await asyncio.to_thread(run)


# ---------------------------------------------------------------------------------- live socket


class RealtimePacer:
    """Lets audio run at most ``burst`` seconds ahead of the wall clock."""

    def __init__(self, burst: float = 1.0) -> None:
        self.burst = burst
        self._clock = 0.0  # wall time at which the audio sent so far would have finished playing

    def delay(self, seconds: float) -> float:
        now = time.monotonic()
        return max(0.0, max(self._clock, now) + seconds - self.burst - now)

    def book(self, seconds: float) -> None:
        self._clock = max(self._clock, time.monotonic()) + seconds

    def reset(self) -> None:
        self._clock = 0.0


@dataclass(frozen=True, slots=True)
class Outgoing:
    data: str | bytes
    #: Seconds of audio in ``data`` (0 for control messages).
    audio: float = 0.0


class LiveSocket:
    """A streaming session's socket that survives drops.

    The owner queues messages with ``send``; they go out in order. After a retryable drop the
    socket reconnects (backoff, at most ``policy.reconnects`` times in a row), runs ``handshake``
    on the new connection and puts ``on_reconnect()``'s messages at the head of the outbox. A
    fatal error is passed to ``on_failure`` once and kept in ``failure``.
    """

    def __init__(
        self,
        engine: str,
        *,
        open_connection: Callable[[], Awaitable[ClientConnection]],
        handshake: Callable[[ClientConnection], Awaitable[None]],
        on_message: Callable[[str | bytes], None],
        on_reconnect: Callable[[], list[Outgoing]],
        on_failure: Callable[[EngineError], None],
        on_sent: Callable[[Outgoing], None] | None = None,
        policy: ConnectPolicy,
        pacer: RealtimePacer | None = None,
        keepalive: tuple[float, str] | None = None,
    ) -> None:
        self.engine = engine
        self.policy = policy
        self.failure: EngineError | None = None
        self._open = open_connection
        self._handshake = handshake
        self._on_message = on_message
        self._on_reconnect = on_reconnect
        self._on_failure = on_failure
        self._on_sent = on_sent
        self._pacer = pacer
        self._keepalive = keepalive
        self._outbox: collections.deque[Outgoing] = collections.deque()
        self._wake = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.last_sent = time.monotonic()

    async def start(self) -> None:
        """Connect and shake hands; raises ``EngineError`` when that fails."""
        self._ws = await self._connect_once()
        self._task = asyncio.create_task(self._run(), name=f"{self.engine}-socket")

    async def _connect_once(self) -> ClientConnection:
        ws = await self._open()
        try:
            await self._handshake(ws)
        except BaseException:
            await ws.close()
            raise
        return ws

    # -------------------------------------------------------------------------------- outbox

    def send(self, item: Outgoing) -> None:
        if self.failure is not None:
            raise self.failure
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
        failures = 0
        while True:
            ws = self._ws
            assert ws is not None
            served_from = time.monotonic()
            error = await self._serve(ws)
            if self._closing:
                return
            if error is None:  # the server closed cleanly while we still listened
                error = close_error(self.engine, ws.close_code, ws.close_reason or "")
            if time.monotonic() - served_from > 10.0:
                failures = 0  # a connection that held for a while earns a fresh budget
            log.warning("%s: %s", self.engine, error)
            reconnected = False
            while error.retryable and failures < self.policy.reconnects:
                failures += 1
                await asyncio.sleep(self.policy.backoff(failures))
                if self._closing:
                    return
                try:
                    self._ws = await self._connect_once()
                except EngineError as exc:
                    error = exc
                    log.warning("%s: reconnecting failed: %s", self.engine, exc)
                    continue
                reconnected = True
                break
            if not reconnected:
                self._fail(error)
                return
            if self._pacer is not None:
                self._pacer.reset()
            self._outbox.extendleft(reversed(self._on_reconnect()))
            self._wake.set()
            log.info("%s: reconnected", self.engine)

    async def _serve(self, ws: ClientConnection) -> EngineError | None:
        tasks = [
            asyncio.create_task(self._read(ws)),
            asyncio.create_task(self._write(ws)),
        ]
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
        return None

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                try:
                    self._on_message(raw)
                except Exception:  # a mapping bug must not kill the session
                    log.exception("%s: a server message could not be handled", self.engine)
        except ConnectionClosed as exc:
            if not self._closing:
                raise closed_error(self.engine, exc) from None

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
                raise closed_error(self.engine, exc) from None
            if item.audio and self._pacer is not None:
                self._pacer.book(item.audio)
            self.last_sent = time.monotonic()
            if self._on_sent is not None:
                self._on_sent(item)

    async def _keep_alive(self, ws: ClientConnection, interval: float, message: str) -> None:
        while True:
            await asyncio.sleep(max(0.05, self.last_sent + interval - time.monotonic()))
            if time.monotonic() - self.last_sent >= interval and not self._outbox:
                with contextlib.suppress(ConnectionClosed):
                    await ws.send(message)
                self.last_sent = time.monotonic()

    def _fail(self, error: EngineError) -> None:
        if self.failure is None:
            self.failure = error
            self._outbox.clear()
            self._on_failure(error)

    # -------------------------------------------------------------------------------- closing

    async def close(self, goodbye: str | None = None, done: asyncio.Event | None = None) -> None:
        """Send ``goodbye``, wait (briefly) for ``done`` or the server's close, then close."""
        if self._closing:
            return
        self._closing = True
        self._outbox.clear()
        ws = self._ws
        if ws is not None and goodbye is not None and self.failure is None:
            try:
                await ws.send(goodbye)
                waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(ws.wait_closed())]
                if done is not None:
                    waiters.append(asyncio.ensure_future(done.wait()))
                await asyncio.wait(
                    waiters, timeout=self.policy.close_timeout, return_when=asyncio.FIRST_COMPLETED
                )
                for waiter in waiters:
                    waiter.cancel()
            except ConnectionClosed:
                pass
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), self.policy.close_timeout)
        if self._ws is not None and self._ws is not ws:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), self.policy.close_timeout)


# ------------------------------------------------------------------------------- context socket


class ContextSocket:
    """One TTS socket shared by the replies (contexts) of a voice, opened lazily, reopened after
    a drop. Each attached context gets a queue of its messages; a drop puts an ``EngineError``
    in every attached queue."""

    def __init__(
        self,
        engine: str,
        *,
        open_connection: Callable[[], Awaitable[ClientConnection]],
        context_of: Callable[[Message], str | None],
        after_connect: Callable[[ClientConnection], Awaitable[None]] | None = None,
        keepalive: tuple[float, Message] | None = None,
    ) -> None:
        self.engine = engine
        self._open = open_connection
        self._context_of = context_of
        self._after_connect = after_connect
        self._keepalive = keepalive
        self._ws: ClientConnection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()
        self._contexts: dict[str, asyncio.Queue[Message | EngineError]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self.last_sent = time.monotonic()

    @property
    def connected(self) -> bool:
        ws = self._ws
        return ws is not None and ws.close_code is None and not any(t.done() for t in self._tasks)

    async def ensure(self) -> None:
        """Connect unless connected (raises ``EngineError``)."""
        async with self._lock:
            if self.connected:
                return
            await self._drop_connection()
            ws = await self._open()
            try:
                if self._after_connect is not None:
                    await self._after_connect(ws)
            except BaseException:
                await ws.close()
                raise
            self._ws = ws
            self.last_sent = time.monotonic()
            self._tasks = [asyncio.create_task(self._read(ws), name=f"{self.engine}-reader")]
            if self._keepalive is not None:
                self._tasks.append(asyncio.create_task(self._keep_alive(ws, *self._keepalive)))

    def attach(self, context_id: str) -> asyncio.Queue[Message | EngineError]:
        queue: asyncio.Queue[Message | EngineError] = asyncio.Queue()
        self._contexts[context_id] = queue
        return queue

    def detach(self, context_id: str) -> None:
        self._contexts.pop(context_id, None)

    async def send(self, message: Message) -> None:
        ws = self._ws
        if ws is None:
            raise EngineError(f"{display(self.engine)} is not connected.", engine=self.engine)
        try:
            await ws.send(json.dumps(message))
        except ConnectionClosed as exc:
            raise closed_error(self.engine, exc) from None
        self.last_sent = time.monotonic()

    def send_soon(self, message: Message) -> None:
        """Send without waiting (barge-in must not block the caller); failures are only logged."""

        async def run() -> None:
            try:
                await self.send(message)
            except EngineError as exc:
                log.debug("%s: %s", self.engine, exc)

        task = asyncio.ensure_future(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _read(self, ws: ClientConnection) -> None:
        error: EngineError
        try:
            async for raw in ws:
                msg = parse_json(self.engine, raw)
                if msg is None:
                    continue
                context = self._context_of(msg)
                if context is None and len(self._contexts) == 1:
                    context = next(iter(self._contexts))
                queue = self._contexts.get(context) if context is not None else None
                if queue is not None:
                    queue.put_nowait(msg)
                elif (text := server_error_text(msg)) is not None:
                    log.warning("%s reported: %s", self.engine, text)
                else:
                    log.debug("%s: message for context %s dropped", self.engine, context)
            error = close_error(self.engine, ws.close_code, ws.close_reason or "")
        except ConnectionClosed as exc:
            error = closed_error(self.engine, exc)
        log.info("%s: socket closed (%s)", self.engine, error)
        dropped = SocketDropped(str(error), engine=self.engine, retryable=error.retryable)
        for queue in self._contexts.values():
            queue.put_nowait(dropped)

    async def _keep_alive(self, ws: ClientConnection, interval: float, message: Message) -> None:
        while ws.close_code is None:
            await asyncio.sleep(max(0.05, self.last_sent + interval - time.monotonic()))
            if time.monotonic() - self.last_sent >= interval:
                with contextlib.suppress(EngineError):
                    await self.send(message)

    async def _drop_connection(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 1.0)

    async def aclose(self, goodbye: Message | None = None) -> None:
        if goodbye is not None and self.connected:
            with contextlib.suppress(EngineError):
                await self.send(goodbye)
        for task in list(self._background):
            task.cancel()
        async with self._lock:
            await self._drop_connection()


# ---------------------------------------------------------------------------- streaming STT


class StreamingSTTSession:
    """What the websocket STT sessions share: audio batching, the transcript queue, turn ends
    requested by the session (with a deadline), and re-sending a turn's audio after a reconnect.

    Subclasses give the wire details: ``END_TURN`` / ``GOODBYE`` messages, ``_handshake``,
    ``_on_json`` (mapping server messages to ``_partial`` / ``_final`` calls),
    ``_on_new_connection`` and ``_abandon_turn``.
    """

    sample_rate = 16_000
    END_TURN = ""
    GOODBYE = ""
    #: Messages must hold at least this much audio.
    MIN_SECONDS = 0.0
    #: Audio kept for re-sending after a reconnect.
    MAX_RESEND_SECONDS = 60.0

    def __init__(
        self,
        engine: str,
        *,
        open_connection: Callable[[], Awaitable[ClientConnection]],
        policy: ConnectPolicy,
        batch_seconds: float,
        final_timeout: float,
        pacer: RealtimePacer | None = None,
        keepalive: tuple[float, str] | None = None,
    ) -> None:
        self.engine = engine
        self.policy = policy
        self._events: asyncio.Queue[Transcript | EngineError | None] = asyncio.Queue()
        self._pending: PCM = np.zeros(0, dtype=np.int16)
        self._batch_samples = max(1, round(batch_seconds * self.sample_rate))
        self._final_timeout = final_timeout
        self._turn_audio: collections.deque[Outgoing] = collections.deque()
        self._turn_seconds = 0.0
        self._end_requested = False
        self._end_sent = False
        self._end_timer: asyncio.TimerHandle | None = None
        self._partial_text = ""
        self._closed = False
        #: Set by subclasses when the server acknowledged the goodbye.
        self._finished = asyncio.Event()
        self._socket = LiveSocket(
            engine,
            open_connection=open_connection,
            handshake=self._handshake,
            on_message=self._dispatch,
            on_reconnect=self._resend,
            on_failure=self._failed,
            on_sent=self._sent,
            policy=policy,
            pacer=pacer,
            keepalive=keepalive,
        )

    @property
    def usable(self) -> bool:
        """Connected (or reconnecting) and not closed: a pre-warmed session can be handed out."""
        return self._socket.failure is None and not self._closed

    async def start(self) -> None:
        await self._socket.start()

    # ------------------------------------------------------------------------ STTSession API

    async def push(self, pcm: PCM) -> None:
        self._check()
        self._pending = np.concatenate([self._pending, np.asarray(pcm, dtype=np.int16)])
        self._turn_seconds += len(pcm) / self.sample_rate
        while len(self._pending) >= self._batch_samples:
            self._send_audio(self._pending[: self._batch_samples])
            self._pending = self._pending[self._batch_samples :]

    async def end_turn(self) -> None:
        self._check()
        if len(self._pending):
            short = round(self.MIN_SECONDS * self.sample_rate) - len(self._pending)
            if short > 0:  # pad with silence: the server refuses shorter messages
                self._pending = np.concatenate([self._pending, np.zeros(short, dtype=np.int16)])
            self._send_audio(self._pending)
            self._pending = np.zeros(0, dtype=np.int16)
        self._end_requested = True
        if self._turn_seconds == 0.0 and not self._partial_text:
            self._final("", 0.0, 0.0)  # nothing was said: nothing to ask the server
            return
        self._end_sent = False
        self._socket.send(Outgoing(self.END_TURN))

    async def clear(self) -> None:
        self._pending = np.zeros(0, dtype=np.int16)
        self._socket.drop_audio()
        if self._partial_text and not self._end_requested and self._socket.failure is None:
            self._abandon_turn()
        self._turn_audio.clear()
        self._turn_seconds = 0.0
        self._partial_text = ""

    async def transcripts(self) -> AsyncIterator[Transcript]:
        while True:
            item = await self._events.get()
            if item is None:
                return
            if isinstance(item, EngineError):
                raise item
            yield item

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._cancel_end_timer()
        await self._socket.close(self.GOODBYE, self._finished)
        self._events.put_nowait(None)

    # ---------------------------------------------------------------------------- for subclasses

    async def _handshake(self, ws: ClientConnection) -> None:
        return None

    def _on_json(self, msg: Message) -> None:
        raise NotImplementedError

    def _on_new_connection(self) -> None:
        """Reset what a server forgets with its connection (turn numbers, segments)."""

    def _abandon_turn(self) -> None:
        """Make the server finish the turn in progress and ignore its result."""

    def _partial(self, text: str, start: float, end: float) -> None:
        text = text.strip()
        if text and text != self._partial_text:
            self._partial_text = text
            self._events.put_nowait(Transcript(text, is_final=False, start=start, end=end))

    def _final(self, text: str, start: float, end: float, language: str | None = None) -> None:
        """The turn is over: emit its text once. Server-decided ends without words are dropped."""
        requested = self._end_requested
        self._end_requested = self._end_sent = False
        self._cancel_end_timer()
        self._partial_text = ""
        self._turn_audio.clear()
        self._turn_seconds = 0.0
        text = text.strip()
        if not text and not requested:
            return
        final = Transcript(text, True, start, end, end_of_turn=True, language=language)
        self._events.put_nowait(final)

    @property
    def end_requested(self) -> bool:
        return self._end_requested

    # ---------------------------------------------------------------------------- internals

    def _check(self) -> None:
        if self._socket.failure is not None:
            raise self._socket.failure
        if self._closed:
            closed = f"{display(self.engine)}: the transcription was closed."
            raise EngineError(closed, engine=self.engine)

    def _send_audio(self, pcm: PCM) -> None:
        self._socket.send(Outgoing(pcm.astype("<i2").tobytes(), len(pcm) / self.sample_rate))

    def _dispatch(self, raw: str | bytes) -> None:
        msg = parse_json(self.engine, raw)
        if msg is not None:
            self._on_json(msg)

    def _sent(self, item: Outgoing) -> None:
        if item.audio:
            self._turn_audio.append(item)
            while sum(i.audio for i in self._turn_audio) > self.MAX_RESEND_SECONDS:
                self._turn_audio.popleft()
        elif item.data == self.END_TURN and self._end_requested:
            # The deadline runs from when the request left, not from when it was queued
            # (paced audio ahead of it may take a while).
            self._end_sent = True
            self._cancel_end_timer()
            loop = asyncio.get_running_loop()
            self._end_timer = loop.call_later(self._final_timeout, self._end_timed_out)

    def _resend(self) -> list[Outgoing]:
        self._on_new_connection()
        items = list(self._turn_audio)
        self._turn_audio.clear()
        if self._end_requested and self._end_sent:
            self._cancel_end_timer()
            items.append(Outgoing(self.END_TURN))
        return items

    def _end_timed_out(self) -> None:
        self._end_timer = None
        if not self._end_requested:
            return
        log.warning(
            "%s gave no final transcript within %.1f s of the turn's end; using the last partial",
            self.engine,
            self._final_timeout,
        )
        text = self._partial_text
        self._abandon_turn()
        self._final(text, 0.0, 0.0)

    def _cancel_end_timer(self) -> None:
        if self._end_timer is not None:
            self._end_timer.cancel()
            self._end_timer = None

    def _failed(self, error: EngineError) -> None:
        self._cancel_end_timer()
        self._events.put_nowait(error)


# ------------------------------------------------------------------------------ TTS contexts


class SocketDropped(EngineError):
    """The shared TTS socket closed under a context that still needed it."""


@dataclass(slots=True)
class WireEvent:
    """One server message of a TTS context, decoded."""

    audio: str = ""  # base64 PCM
    chars: list[str] | None = None
    starts_ms: list[float] | None = None
    final: bool = False
    error: str | None = None


class TtsWire(Protocol):
    """The provider-specific messages of a multi-context TTS socket."""

    engine: str

    def opening(self, context: str, text: str) -> list[Message]: ...
    def text(self, context: str, text: str) -> Message: ...
    def closing(self, context: str) -> Message: ...
    def keepalive(self, context: str) -> Message | None: ...
    def read(self, msg: Message) -> WireEvent: ...


class PieceTracker:
    """Cuts a context's audio stream into per-piece ``SpeechChunk``s.

    With character alignment, each character is located in the text sent so far, and the audio
    is split where the next piece's first character starts. Without it, a piece is given the
    audio its length suggests at ``chars_per_second``, but never audio before the next piece
    was even sent.
    """

    def __init__(self, rate: int, chars_per_second: float = 15.0) -> None:
        self.rate = rate
        self.chars_per_second = chars_per_second
        self.texts: list[str] = []
        self._sent = ""
        self._starts: list[int] = []
        self._cursor = 0
        self._current = 0
        self._in_current = 0.0
        self.audio_seconds = 0.0

    def add(self, text: str) -> str:
        """Record the next piece; returns its wire form (ending with one space)."""
        wire = text.rstrip() + " "
        self._starts.append(len(self._sent))
        self.texts.append(text)
        self._sent += wire
        return wire

    @property
    def sent_text(self) -> str:
        return self._sent

    def audio(
        self, pcm: PCM, chars: list[str] | None = None, starts_ms: list[float] | None = None
    ) -> list[SpeechChunk]:
        self.audio_seconds += len(pcm) / self.rate
        if chars and starts_ms and len(chars) == len(starts_ms):
            return self._aligned(pcm, chars, starts_ms)
        return self._estimated(pcm)

    def finish(self) -> list[SpeechChunk]:
        """Closing marks for the current piece and any that got no audio."""
        empty = np.zeros(0, dtype=np.int16)
        out = [self._chunk(i, empty, (), True) for i in range(self._current, len(self.texts))]
        self._current = len(self.texts)
        return out

    # ----------------------------------------------------------------------------------- internals

    def _chunk(
        self, piece: int, pcm: PCM, alignment: tuple[tuple[int, float], ...], last: bool
    ) -> SpeechChunk:
        return SpeechChunk(pcm, self.rate, piece, self.texts[piece], last, alignment)

    def _advance(self, to: int) -> list[SpeechChunk]:
        """Pieces before ``to`` are complete (the ones skipped got no audio of their own)."""
        empty = np.zeros(0, dtype=np.int16)
        out = [self._chunk(i, empty, (), True) for i in range(self._current + 1, to)]
        self._current, self._in_current = to, 0.0
        return out

    def _locate(self, ch: str) -> int:
        sent, cursor = self._sent, self._cursor
        if ch.isspace():  # a space belongs with what precedes it, never opens a piece
            if cursor < len(sent) and sent[cursor].isspace():
                self._cursor += 1
                return cursor
            return max(0, cursor - 1)
        while cursor < len(sent) and sent[cursor].isspace():
            cursor += 1
        found = sent.find(ch, cursor, cursor + 8)  # normalization may have changed a little
        pos = found if found >= 0 else min(cursor, max(0, len(sent) - 1))
        self._cursor = min(len(sent), pos + 1)
        return pos

    def _aligned(self, pcm: PCM, chars: list[str], starts_ms: list[float]) -> list[SpeechChunk]:
        last_piece = len(self.texts) - 1
        # (piece, offset in piece or -1 for a space, ms in this audio)
        marks: list[tuple[int, int, float]] = []
        for ch, ms in zip(chars, starts_ms, strict=True):
            pos = self._locate(ch)
            piece = min(last_piece, max(self._current, bisect.bisect_right(self._starts, pos) - 1))
            if marks and piece < marks[-1][0]:
                piece = marks[-1][0]
            offset = -1 if ch.isspace() else pos - self._starts[piece]
            marks.append((piece, offset, float(ms)))
        out: list[SpeechChunk] = []
        seg_start_ms, seg_start = 0.0, 0
        align: list[tuple[int, float]] = []
        for piece, offset, ms in marks:
            if piece != self._current:
                cut = min(len(pcm), max(seg_start, round(ms * self.rate / 1000.0)))
                out.append(self._chunk(self._current, pcm[seg_start:cut], tuple(align), True))
                out += self._advance(piece)
                seg_start, seg_start_ms, align = cut, cut * 1000.0 / self.rate, []
            if 0 <= offset < len(self.texts[piece]):
                align.append((offset, max(0.0, ms - seg_start_ms)))
        rest = pcm[seg_start:]
        out.append(self._chunk(self._current, rest, tuple(align), False))
        self._in_current += len(rest) / self.rate
        return out

    def _estimated(self, pcm: PCM) -> list[SpeechChunk]:
        out: list[SpeechChunk] = []
        while True:
            expected = max(0.3, len(self.texts[self._current]) / self.chars_per_second)
            room = round((expected - self._in_current) * self.rate)
            if self._current + 1 < len(self.texts) and len(pcm) > max(0, room):
                take = max(0, room)
                out.append(self._chunk(self._current, pcm[:take], (), True))
                out += self._advance(self._current + 1)
                pcm = pcm[take:]
                continue
            out.append(self._chunk(self._current, pcm, (), False))
            self._in_current += len(pcm) / self.rate
            return out


async def _next_piece(source: AsyncIterator[str]) -> str:
    return await anext(source)


async def speak(
    socket: ContextSocket,
    wire: TtsWire,
    pieces: AsyncIterable[str],
    tracker: PieceTracker,
    policy: ConnectPolicy,
    *,
    keepalive_interval: float | None = None,
) -> AsyncGenerator[SpeechChunk, None]:
    """Speak ``pieces`` as one context on ``socket``.

    Until the first audio arrives no further piece is read, so a failure there leaves the
    pieces intact for a fallback engine; a socket that drops in that phase is reopened once and
    the text sent again. Closing the generator early (barge-in) closes the context, not the socket.
    """
    name = display(wire.engine)
    await socket.ensure()
    source = aiter(pieces)
    try:
        first = await anext(source)
    except StopAsyncIteration:
        return
    context = uuid.uuid4().hex[:16]
    queue = socket.attach(context)
    carry = bytearray()
    closed = finished = False
    piece_task: asyncio.Task[str] | None = None
    msg_task: asyncio.Task[Message | EngineError] | None = None
    loop = asyncio.get_running_loop()

    def handle(item: Message | EngineError) -> tuple[list[SpeechChunk], bool]:
        if isinstance(item, EngineError):
            raise item
        event = wire.read(item)
        if event.error is not None:
            raise EngineError(f"{name} reported an error: {event.error}", engine=wire.engine)
        chunks: list[SpeechChunk] = []
        if event.audio:
            pcm = decode_pcm(event.audio, carry)
            if len(pcm):
                chunks = tracker.audio(pcm, event.chars, event.starts_ms)
        if event.final:
            chunks += tracker.finish()
        return chunks, event.final

    async def send_opening(text: str) -> None:
        for message in wire.opening(context, text):
            await socket.send(message)

    try:
        replayed = False
        try:
            await send_opening(tracker.add(first))
        except EngineError as exc:  # the idle socket was closed under us: once more, afresh
            if not exc.retryable:
                raise
            replayed = True
            await socket.ensure()
            queue = socket.attach(context)
            await send_opening(tracker.sent_text)
        sent_at = last_heard = loop.time()
        # Phase 1: the first audio.
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), policy.first_message_timeout)
            except TimeoutError:
                raise EngineError(
                    f"{name} sent no audio within {policy.first_message_timeout:g} s.",
                    engine=wire.engine,
                ) from None
            if isinstance(item, SocketDropped) and item.retryable and not replayed:
                replayed = True
                log.info("%s: socket dropped before the first audio; sending again", wire.engine)
                await socket.ensure()
                queue = socket.attach(context)
                await send_opening(tracker.sent_text)
                continue
            chunks, final = handle(item)
            last_heard = loop.time()
            for chunk in chunks:
                yield chunk
            if final:
                finished = True
                return
            if any(len(c.pcm) for c in chunks):
                break
        # Phase 2: more text as it comes, audio as it comes.
        piece_task = asyncio.create_task(_next_piece(source))
        msg_task = asyncio.create_task(queue.get())
        last_audio = last_heard
        while True:
            waiting = closed or sent_at > last_audio
            deadline = max(last_heard, sent_at) + policy.stall_timeout if waiting else None
            ping = None
            if keepalive_interval is not None and not closed:
                ping = sent_at + keepalive_interval
            wake = min((t for t in (deadline, ping) if t is not None), default=None)
            tasks = {t for t in (piece_task, msg_task) if t is not None}
            done, _ = await asyncio.wait(
                tasks,
                timeout=None if wake is None else max(0.0, wake - loop.time()),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not done:
                if deadline is not None and loop.time() >= deadline:
                    raise EngineError(
                        f"{name} stopped sending audio mid-reply "
                        f"(nothing for {policy.stall_timeout:g} s).",
                        engine=wire.engine,
                    )
                keep = wire.keepalive(context)
                if keep is not None:
                    await socket.send(keep)
                sent_at = loop.time()
                continue
            if piece_task in done:
                try:
                    text = piece_task.result()
                except StopAsyncIteration:
                    piece_task = None
                    await socket.send(wire.closing(context))
                    closed = True
                else:
                    piece_task = asyncio.create_task(_next_piece(source))
                    await socket.send(wire.text(context, tracker.add(text)))
                sent_at = loop.time()
            if msg_task in done:
                chunks, final = handle(msg_task.result())
                last_heard = loop.time()
                if any(len(c.pcm) for c in chunks):
                    last_audio = last_heard
                msg_task = asyncio.create_task(queue.get())
                for chunk in chunks:
                    yield chunk
                if final:
                    finished = True
                    return
    finally:
        for task in (piece_task, msg_task):
            if task is not None:
                task.cancel()
        socket.detach(context)
        if not finished and not closed and socket.connected:
            socket.send_soon(wire.closing(context))


# ------------------------------------------------------------------------------------ voices


class VoiceCache:
    """A provider's voice list, fetched once and cached; ``fallback`` until it is known.

    ``get`` never blocks a running event loop: there it returns the fallback list and fetches in
    the background. Without a loop (a command-line listing) it fetches at once. After a failed
    fetch, listings show the fallback for ``retry_after`` seconds before trying again.
    """

    def __init__(
        self,
        engine: str,
        fetch: Callable[[], Awaitable[list[Voice]]],
        fallback: Callable[[], list[Voice]],
        retry_after: float = 30.0,
    ) -> None:
        self.engine = engine
        self._fetch = fetch
        self._fallback = fallback
        self._retry_after = retry_after
        self._voices: list[Voice] | None = None
        self._task: asyncio.Task[None] | None = None
        self._retry_at = 0.0

    async def load(self) -> list[Voice]:
        """Fetch now (raises ``EngineError``) and cache."""
        self._voices = await self._fetch() or self._fallback()
        return self._voices

    def get(self) -> list[Voice]:
        if self._voices is not None:
            return list(self._voices)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            try:
                return list(asyncio.run(self.load()))
            except EngineError as exc:
                log.warning("%s voices: %s; listing the built-in ones", display(self.engine), exc)
                return self._fallback()
        self.prefetch()
        return self._fallback()

    def prefetch(self) -> None:
        """Start a background fetch unless one ran (or failed) lately."""
        task = self._task
        if self._voices is None and (
            task is None or (task.done() and time.monotonic() >= self._retry_at)
        ):
            self._task = asyncio.get_running_loop().create_task(self._load_quietly())

    async def wait(self) -> None:
        """Let a background fetch finish (for callers that can wait)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _load_quietly(self) -> None:
        try:
            await self.load()
        except EngineError as exc:
            log.info("%s voices not fetched: %s", display(self.engine), exc)
            self._retry_at = time.monotonic() + self._retry_after


class PrewarmedSTT[S: StreamingSTTSession]:
    """A streaming STT engine that opens its session ahead of the first turn.

    ``warm_up`` checks the key and connects; the next ``open`` in the same language takes that
    session, so no turn pays the handshake.
    """

    language: str
    _warm: tuple[str, S] | None = None

    def _new_session(self, language: str) -> S:
        raise NotImplementedError

    async def open(self, language: str) -> S:
        warm, self._warm = self._warm, None
        if warm is not None:
            if warm[0] == language and warm[1].usable:
                return warm[1]
            await warm[1].aclose()
        session = self._new_session(language)
        await session.start()
        return session

    async def warm_up(self) -> None:
        """Check the key and open the session ahead of time (the next ``open`` takes it)."""
        if self._warm is None:
            session = self._new_session(self.language)
            await session.start()
            self._warm = (self.language, session)


def context_of(message: dict[str, Any]) -> str | None:
    """The context a multi-context TTS message belongs to (both spellings of the key occur)."""
    context = message.get("contextId") or message.get("context_id")
    return str(context) if context else None
