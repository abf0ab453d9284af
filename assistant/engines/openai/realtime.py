"""OpenAI speech to text over the Realtime API's transcription websocket.

The socket is opened ahead of the first turn (at warm-up or ``open``) and kept, so a turn only
streams audio and a commit. The capture path pushes 16 kHz audio; it is resampled to the 24 kHz
the service expects and sent as base64 in ~100 ms batches. The client decides where a turn ends
(``turn_detection: null``): ``end_turn`` commits the buffer and waits for that item's
transcription, whose deltas are reported as growing partial transcripts on the way. A dropped
socket is reopened with backoff; an utterance whose audio went down with it fails with an
``EngineError`` so the user can say it again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
import urllib.parse
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import soxr
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidURI

from assistant import secrets
from assistant.config import Settings
from assistant.engines.base import PCM, EngineError, Transcript
from assistant.engines.netpolicy import (
    Backoff,
    Reconnector,
    handshake_rejection,
    is_fatal_close,
    open_websocket,
)

log = logging.getLogger(__name__)

PROVIDER = "openai"
DEFAULT_MODEL = "gpt-4o-transcribe"
INPUT_RATE = 16_000  # what the capture path pushes
WIRE_RATE = 24_000  # what the service takes
_BYTES_PER_MS = WIRE_RATE * 2 // 1000
#: The service refuses to commit less than 100 ms of audio.
_MIN_COMMIT_BYTES = 100 * _BYTES_PER_MS
#: A connection that lived this long counts as healthy: the next drop starts backoff afresh.
_STABLE_SECONDS = 10.0
_TRANSCRIPTION = "conversation.item.input_audio_transcription"
_KEY_HINT = (
    f"Set a valid key in Settings → API keys → OpenAI or in the {secrets.ENV_VARS[PROVIDER]} "
    "environment variable."
)


def _error(message: str, *, retryable: bool = True) -> EngineError:
    return EngineError(
        secrets.redact(f"OpenAI transcription: {message}"), engine=PROVIDER, retryable=retryable
    )


class OpenAIRealtimeSTT:
    """Streaming transcription with OpenAI's Realtime API (client-side turn ends)."""

    name = PROVIDER
    provides_endpointing = False

    def __init__(
        self,
        url: str,
        *,
        model: str = DEFAULT_MODEL,
        language: str = "en",
        connect_timeout: float = 10.0,
        final_timeout: float = 15.0,
        batch_ms: int = 100,
        backoff: Backoff | None = None,
        max_reconnects: int = 6,
    ) -> None:
        self.url = url
        self.model = model
        self.language = language
        self.connect_timeout = connect_timeout
        self.final_timeout = final_timeout
        self.batch_bytes = max(1, batch_ms) * _BYTES_PER_MS
        self.backoff = backoff or Backoff(base=0.25, cap=5.0)
        self.max_reconnects = max_reconnects
        self._warm: RealtimeTranscription | None = None

    async def warm_up(self) -> None:
        """Open the socket now so the first turn pays no handshake (best effort)."""
        if self._warm is not None and self._warm.usable:
            return
        key = secrets.get_key(PROVIDER)
        if not key:
            return  # ``open`` reports the missing key
        session = RealtimeTranscription(self, key, self.language)
        try:
            await session.connect()
        except EngineError as exc:
            log.warning("%s", exc)
            return
        self._warm = session

    async def aclose(self) -> None:
        """Close a pre-warmed socket that was never used."""
        session, self._warm = self._warm, None
        if session is not None:
            await session.aclose()

    async def open(self, language: str) -> RealtimeTranscription:
        key = secrets.require_key(PROVIDER)
        session, self._warm = self._warm, None
        if session is not None:
            if session.usable and session.uses_key(key):
                await session.set_language(language)
                return session
            await session.aclose()
        session = RealtimeTranscription(self, key, language)
        await session.connect()
        return session


@dataclass(slots=True)
class _Pending:
    """A committed utterance waiting for its transcription."""

    done: asyncio.Future[str]
    start: float
    end: float
    item_id: str | None = None
    text: str = ""


class RealtimeTranscription:
    """One transcription session: a kept socket, reopened when it drops."""

    sample_rate = INPUT_RATE

    def __init__(self, engine: OpenAIRealtimeSTT, key: str, language: str) -> None:
        self._engine = engine
        self._key = key
        self.language = language
        self._queue: asyncio.Queue[Transcript | None] = asyncio.Queue()
        self._ws: ClientConnection | None = None
        self._ready = asyncio.Event()  # socket open and configured
        self._runner: asyncio.Task[None] | None = None
        self._fatal: EngineError | None = None
        self._closing = False
        self._resampler = soxr.ResampleStream(INPUT_RATE, WIRE_RATE, 1, dtype="int16")
        self._batch = bytearray()  # resampled audio not yet sent
        self._sent = 0  # bytes of the current utterance appended on the live socket
        self._samples = 0  # input samples of the current utterance
        self._broken: EngineError | None = None  # the current utterance was lost with a socket
        self._offset = 0.0  # seconds of audio before the current utterance
        self._pending: deque[_Pending] = deque()
        #: Sockets opened so far (reconnects included), for diagnostics.
        self.connections = 0

    def __repr__(self) -> str:
        return f"RealtimeTranscription(url={self._engine.url!r}, language={self.language!r})"

    @property
    def usable(self) -> bool:
        return (
            self._fatal is None
            and not self._closing
            and self._runner is not None
            and not self._runner.done()
        )

    def uses_key(self, key: str) -> bool:
        return key == self._key

    # ---------------------------------------------------------------------------- connection

    async def connect(self) -> None:
        """Open and configure the socket; EngineError when that fails or takes too long."""
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="openai-realtime")
        if await self._until_ready():
            return
        error = self._fatal or _error(
            f"could not connect to {self._engine.url} within {self._engine.connect_timeout:g} s. "
            "Check the network and the realtime URL in Settings."
        )
        await self.aclose()
        raise error

    async def _until_ready(self) -> bool:
        """Wait (up to the connect timeout) for a configured socket; False if none came."""
        if self._ready.is_set():
            return True
        ready = asyncio.ensure_future(self._ready.wait())
        waiters: set[asyncio.Future[Any]] = {ready}
        if self._runner is not None:
            waiters.add(self._runner)  # it ends when the session cannot go on
        try:
            await asyncio.wait(
                waiters, timeout=self._engine.connect_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            ready.cancel()
        return self._ready.is_set()

    def _url(self) -> str:
        parts = urllib.parse.urlsplit(self._engine.url)
        query = urllib.parse.parse_qsl(parts.query)
        if not any(k == "intent" for k, _ in query):
            query.append(("intent", "transcription"))
        return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))

    def _session_update(self) -> str:
        transcription: dict[str, Any] = {"model": self._engine.model}
        language = self.language.split("-")[0].lower()
        if language and language != "auto":
            transcription["language"] = language
        session = {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": WIRE_RATE},
                    "transcription": transcription,
                    "turn_detection": None,  # the client ends turns (PTT or local VAD)
                }
            },
        }
        return json.dumps({"type": "session.update", "session": session})

    async def set_language(self, language: str) -> None:
        if language == self.language:
            return
        self.language = language
        if self._ws is not None:
            with contextlib.suppress(ConnectionClosed):
                await self._ws.send(self._session_update())

    async def _run(self) -> None:
        """Keep a configured socket open until closed; reopen it with backoff when it drops."""
        # The first connection gets few retries: a fallback engine should not wait long.
        reconnect = Reconnector(self._engine.backoff, 2)
        try:
            while not self._closing and self._fatal is None:
                try:
                    ws = await open_websocket(
                        self._url(),
                        {"Authorization": f"Bearer {self._key}"},
                        open_timeout=self._engine.connect_timeout,
                        logger_name=__name__,
                    )
                except Exception as exc:
                    error, fatal, wait = self._connect_failure(exc)
                    log.warning("%s", error)
                    if fatal or not await reconnect.wait(wait):
                        self._fail(error)
                        return
                    continue
                self.connections += 1
                opened = time.monotonic()
                code, reason = await self._serve(ws)
                if self._closing or self._fatal is not None:
                    return
                self._dropped(code)
                if is_fatal_close(code):
                    message = f"the service ended the session (close {code}: {reason or '-'})."
                    self._fail(_error(message, retryable=False))
                    return
                if time.monotonic() - opened >= _STABLE_SECONDS:
                    reconnect.connected()
                reconnect.max_attempts = self._engine.max_reconnects
                if not await reconnect.wait():
                    self._fail(_error(f"the connection kept dropping (last close code {code})."))
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must end the session visibly, not hang it
            log.exception("OpenAI realtime connection failed")
            self._fail(_error(f"the connection failed ({type(exc).__name__})."))

    async def _serve(self, ws: ClientConnection) -> tuple[int, str]:
        """Configure the socket and read its events until it closes: (close code, reason)."""
        self._ws = ws
        try:
            await ws.send(self._session_update())
            async for message in ws:
                self._handle(message)
                if self._fatal is not None:
                    break
            return ws.close_code or 1006, ws.close_reason or ""
        except ConnectionClosed as exc:
            frame = exc.rcvd
            return (frame.code, frame.reason) if frame is not None else (1006, "")
        finally:
            self._ws = None
            self._ready.clear()
            if self._closing or self._fatal is not None:
                with contextlib.suppress(Exception):
                    await ws.close()

    def _connect_failure(self, exc: Exception) -> tuple[EngineError, bool, float | None]:
        """(error, fatal, retry-after) for a failed connection attempt."""
        url = self._engine.url
        rejected = handshake_rejection(exc)
        if rejected is not None:
            status, wait = rejected
            if status == 401:
                message = f"the API key was rejected (HTTP 401). {_KEY_HINT}"
                return _error(message, retryable=False), True, None
            if status == 403:
                message = "access refused (HTTP 403). Check that the key may use the Realtime API."
                return _error(message, retryable=False), True, None
            if status == 404:
                message = f"no realtime endpoint at {url} (HTTP 404). Check the URL in Settings."
                return _error(message, retryable=False), True, None
            if status == 429:
                return _error("rate limited (HTTP 429). Try again shortly."), False, wait
            message = f"the service refused the connection (HTTP {status})."
            return _error(message, retryable=status >= 500), status < 500, wait
        if isinstance(exc, InvalidURI | ValueError):
            return _error(f"{url} is not a valid websocket URL.", retryable=False), True, None
        if isinstance(exc, TimeoutError):
            return _error(f"no answer from {url} (timed out). Check the network."), False, None
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        message = f"could not reach {url} ({reason}). Check the network and the URL."
        return _error(message), False, None

    def _dropped(self, code: int) -> None:
        log.warning("OpenAI transcription: the connection closed (code %s); reconnecting", code)
        error = _error(f"the connection dropped (code {code}); please say that again.")
        self._fail_pending(error)
        if self._sent:
            self._broken = error
        self._sent = 0

    def _fail(self, error: EngineError) -> None:
        """The session cannot go on: every waiter and the transcript stream get ``error``."""
        if self._fatal is not None:
            return
        self._fatal = error
        self._fail_pending(error)
        self._queue.put_nowait(None)

    def _fail_pending(self, error: EngineError) -> None:
        while self._pending:
            pending = self._pending.popleft()
            if not pending.done.done():
                pending.done.set_exception(error)

    # ---------------------------------------------------------------------------------- audio

    async def push(self, pcm: PCM) -> None:
        if self._fatal is not None:
            raise self._fatal
        if self._broken is not None:
            raise self._broken
        if self._closing:
            return
        samples = np.ascontiguousarray(pcm, dtype=np.int16).reshape(-1)
        self._batch += self._resampler.resample_chunk(samples).tobytes()
        self._samples += len(samples)
        if len(self._batch) >= self._engine.batch_bytes:
            await self._flush()

    async def _flush(self) -> None:
        ws = self._ws
        if ws is None or not self._ready.is_set() or not self._batch:
            return  # kept until the socket is back
        data, self._batch = bytes(self._batch), bytearray()
        self._sent += len(data)
        audio = base64.b64encode(data).decode("ascii")
        try:
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
        except ConnectionClosed:
            self._broken = self._broken or _error(
                "the connection dropped mid-utterance; please say that again."
            )

    async def end_turn(self) -> None:
        """Commit the utterance and wait until its final transcript has been emitted."""
        if self._fatal is not None:
            raise self._fatal
        if self._broken is not None:
            error = self._broken
            self._reset_utterance()
            raise error
        self._batch += self._resampler.resample_chunk(np.zeros(0, np.int16), last=True).tobytes()
        self._resampler.clear()
        start = self._offset
        end = start + self._samples / INPUT_RATE
        if self._sent + len(self._batch) < _MIN_COMMIT_BYTES:
            # Too short to transcribe (a click); the service would refuse the commit.
            await self._drop_uncommitted()
            self._reset_utterance()
            await self._queue.put(Transcript("", is_final=True, start=start, end=end))
            return
        await self._wait_ready()
        await self._flush()
        ws = self._ws
        if self._broken is not None or ws is None:
            error = self._broken or _error("the connection dropped; please say that again.")
            self._reset_utterance()
            raise error
        pending = _Pending(asyncio.get_running_loop().create_future(), start, end)
        # Nobody may be waiting any more when a late failure arrives: mark it as seen.
        pending.done.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._pending.append(pending)
        self._reset_utterance()
        with contextlib.suppress(ConnectionClosed):  # a drop fails ``pending`` via the runner
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        try:
            async with asyncio.timeout(self._engine.final_timeout):
                await asyncio.shield(pending.done)
        except TimeoutError:
            with contextlib.suppress(ValueError):
                self._pending.remove(pending)
            raise _error(
                f"no transcript within {self._engine.final_timeout:g} s; please try again."
            ) from None

    async def _wait_ready(self) -> None:
        """An utterance begun while the socket was down waits here for it to come back."""
        if await self._until_ready():
            return
        self._reset_utterance()
        raise self._fatal or _error("the connection is down and did not come back in time.")

    async def clear(self) -> None:
        await self._drop_uncommitted()
        self._reset_utterance()

    async def _drop_uncommitted(self) -> None:
        self._resampler.clear()
        self._batch.clear()
        ws = self._ws
        if self._sent and ws is not None:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))

    def _reset_utterance(self) -> None:
        self._offset += self._samples / INPUT_RATE
        self._samples = 0
        self._sent = 0
        self._broken = None
        self._batch.clear()
        self._resampler.clear()

    # --------------------------------------------------------------------------------- events

    def _handle(self, raw: str | bytes) -> None:
        try:
            event = json.loads(raw)
        except ValueError:
            log.warning("OpenAI transcription: skipped a malformed message (%d bytes)", len(raw))
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            log.warning("OpenAI transcription: skipped a message without an event type")
            return
        kind = event["type"]
        try:
            if kind in ("session.updated", "transcription_session.updated"):
                self._ready.set()
            elif kind == "input_audio_buffer.committed":
                self._pending_for(_text(event.get("item_id")), committed=True)
            elif kind == f"{_TRANSCRIPTION}.delta":
                self._on_delta(event)
            elif kind == f"{_TRANSCRIPTION}.completed":
                self._on_completed(event)
            elif kind == f"{_TRANSCRIPTION}.failed":
                self._on_failed(event)
            elif kind == "error":
                self._on_error(event)
            else:
                log.debug("OpenAI transcription: %s", kind)
        except (TypeError, AttributeError, KeyError) as exc:
            log.warning("OpenAI transcription: skipped an unexpected %s event (%s)", kind, exc)

    def _pending_for(self, item_id: str, *, committed: bool = False) -> _Pending | None:
        """The utterance an item belongs to. Items get their utterance when committed (in commit
        order); later events for an item nobody waits for any more (timed out) are ignored."""
        if item_id:
            for pending in self._pending:
                if pending.item_id == item_id:
                    return pending
        if committed or not item_id:
            for pending in self._pending:
                if pending.item_id is None:
                    pending.item_id = item_id or None
                    return pending
        log.debug("OpenAI transcription: event for unknown item %s", item_id)
        return None

    def _on_delta(self, event: dict[str, Any]) -> None:
        pending = self._pending_for(_text(event.get("item_id")))
        delta = event.get("delta")
        if pending is None or not isinstance(delta, str) or not delta:
            return
        pending.text += delta
        self._queue.put_nowait(
            Transcript(pending.text.strip(), is_final=False, start=pending.start, end=pending.end)
        )

    def _on_completed(self, event: dict[str, Any]) -> None:
        pending = self._pending_for(_text(event.get("item_id")))
        if pending is None:
            return
        transcript = event.get("transcript")
        text = (transcript if isinstance(transcript, str) else pending.text).strip()
        self._settle(pending, text)

    def _on_failed(self, event: dict[str, Any]) -> None:
        pending = self._pending_for(_text(event.get("item_id")))
        message = _error_message(event)
        log.warning("OpenAI transcription: an utterance could not be transcribed: %s", message)
        if pending is not None:
            error = _error(f"could not transcribe that ({message}); please say it again.")
            self._settle(pending, "", error)

    def _on_error(self, event: dict[str, Any]) -> None:
        info = event.get("error")
        code = _text(info.get("code")) if isinstance(info, dict) else ""
        message = _error_message(event)
        log.warning("OpenAI transcription: the service reported an error: %s", message)
        if code == "invalid_api_key":
            self._fail(_error(f"the API key was rejected. {_KEY_HINT}", retryable=False))
            return
        # An error while a commit has no item yet is the commit's (e.g. too little audio).
        pending = next((p for p in self._pending if p.item_id is None), None)
        if pending is None:
            return
        if code == "input_audio_buffer_commit_empty":
            self._settle(pending, "")
        else:
            self._settle(pending, "", _error(f"the service refused the audio ({message})."))

    def _settle(self, pending: _Pending, text: str, error: EngineError | None = None) -> None:
        with contextlib.suppress(ValueError):
            self._pending.remove(pending)
        final = Transcript(text, is_final=True, start=pending.start, end=pending.end)
        self._queue.put_nowait(final)
        if pending.done.done():
            return
        if error is not None:
            pending.done.set_exception(error)
        else:
            pending.done.set_result(text)

    async def transcripts(self) -> AsyncIterator[Transcript]:
        while True:
            item = await self._queue.get()
            if item is None:
                if self._fatal is not None:
                    raise self._fatal
                return
            yield item

    async def aclose(self) -> None:
        if self._closing:
            return
        self._closing = True
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._runner
        self._fail_pending(_error("the transcription session was closed."))
        if self._fatal is None:
            self._queue.put_nowait(None)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _error_message(event: dict[str, Any]) -> str:
    info = event.get("error")
    if isinstance(info, dict):
        message = _text(info.get("message")) or _text(info.get("code")) or "no details"
    else:
        message = _text(info) or "no details"
    return secrets.redact(message)[:300]


# ------------------------------------------------------------------------------------- factory


def make_stt(settings: Settings) -> OpenAIRealtimeSTT:
    """OpenAI Realtime transcription; ``providers.openai_realtime`` may set url and model."""
    configured = settings.provider("openai_realtime")
    return OpenAIRealtimeSTT(
        settings.endpoint("openai_realtime"),
        model=configured.model or DEFAULT_MODEL,
        language=settings.language,
    )
