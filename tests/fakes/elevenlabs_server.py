"""A local ElevenLabs server: the multi-context websocket TTS and ``GET /v1/voices``.

Speech is a tone burst per word (``assistant.engines.fake.synthesize_words``), streamed in
``chunk_ms`` pieces as ``{"audio", "normalizedAlignment", "contextId"}`` messages after
``first_audio_delay``, at ``realtime_factor`` × real time. Text is buffered per context and
synthesized on ``flush``; ``close_context`` drops unflushed text, lets the flushed audio finish and
answers ``isFinal``. What the spelling of keys can be, it can be told to use: ``contextId`` or
``context_id``, ``charDurationsMs`` or ``charsDurationsMs``, with or without the ``alignment`` of
the original text. Misbehaviour on request: handshake statuses, a 1008 close for a wrong key, a
stalled synthesis, every socket closed right after it was accepted, a socket dropped after some
audio, malformed messages, the five-context limit.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from assistant.engines.fake import synthesize_words
from tests.fakes.faults import drop

RATE = 24_000
_server_log = logging.getLogger("tests.fakes.elevenlabs_server")
_server_log.propagate = False
_server_log.setLevel(logging.CRITICAL)
TOO_MANY_CONTEXTS = (
    "max_active_conversations: Maximum simultaneous contexts per WebSocket connection exceeded (5)."
)

VOICES = [
    {"voice_id": "voiceAAAA", "name": "Alice", "category": "premade",
     "labels": {"accent": "british", "gender": "female", "language": "en"}},
    {"voice_id": "voiceBBBB", "name": "Bruno", "category": "cloned",
     "labels": {"gender": "male"}, "verified_languages": [{"language": "de"}]},
]  # fmt: skip


@dataclass
class AudioPart:
    """One synthesized message: PCM and the alignment of the characters starting in it."""

    pcm: bytes
    chars: list[str]
    starts_ms: list[float]
    durations_ms: list[float]


def synthesize_parts(text: str, chars_per_second: float, chunk_ms: int) -> list[AudioPart]:
    """``text`` as tone bursts, cut into ``chunk_ms`` parts with per-part character alignment."""
    pcm, words = synthesize_words(text, RATE, chars_per_second)
    total = len(pcm) / RATE
    # A word's characters start evenly through its tone (80 % of its span); spaces at its end.
    starts = [0.0] * len(text)
    ends = [t for _, t in words[1:]] + [total]
    for (offset, t0), t1 in zip(words, ends, strict=True):
        length = len(text[offset:].split(maxsplit=1)[0])
        tone = 0.8 * (t1 - t0)
        for k in range(length):
            starts[offset + k] = t0 + tone * k / length
        j = offset + length
        while j < len(text) and text[j].isspace():
            starts[j] = t0 + tone
            j += 1
    step = max(1, RATE * chunk_ms // 1000)
    parts = []
    for begin in range(0, max(1, len(pcm)), step):
        t0, t1 = begin / RATE, (begin + step) / RATE
        final = begin + step >= len(pcm)
        idx = [i for i, s in enumerate(starts) if t0 <= s and (s < t1 or final)]
        durations = [(starts[i + 1] if i + 1 < len(starts) else total) - starts[i] for i in idx]
        parts.append(
            AudioPart(
                pcm[begin : begin + step].astype("<i2").tobytes(),
                [text[i] for i in idx],
                [round((starts[i] - t0) * 1000.0, 1) for i in idx],
                [round(d * 1000.0, 1) for d in durations],
            )
        )
    return parts


@dataclass
class FakeElevenLabs:
    key: str = "el-test-key"
    handshake_faults: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    auth_by_close: bool = False
    first_audio_delay: float = 0.03
    chars_per_second: float = 40.0
    realtime_factor: float = 0.05
    chunk_ms: int = 100
    context_key: str = "contextId"
    duration_key: str = "charDurationsMs"
    alignment_keys: tuple[str, ...] = ("normalizedAlignment",)
    stall: bool = False
    garbage: bool = False
    #: Drop the socket after this many audio messages (once): close code, or None = abort.
    drop_after_audio: int | None = None
    drop_code: int | None = 1011
    #: Close every socket right after accepting it (as ``drop_code`` says).
    accept_then_close: bool = False
    max_contexts: int = 5

    requests: list[Request] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    connections: int = 0
    audio_messages: dict[str, int] = field(default_factory=dict)
    finals: list[str] = field(default_factory=list)
    closed_contexts: list[str] = field(default_factory=list)
    #: context → monotonic time its first text arrived / its first audio was sent
    first_text: dict[str, float] = field(default_factory=dict)
    first_audio: dict[str, float] = field(default_factory=dict)
    _server: Server | None = None
    _sent_audio: int = 0

    async def __aenter__(self) -> FakeElevenLabs:
        self._server = await serve(
            self._handle, "127.0.0.1", 0, process_request=self._process_request, logger=_server_log
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2.0)

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    def texts(self, context: str) -> list[str]:
        return [m["text"] for m in self.received if m.get("context_id") == context and m.get("text")
                and m["text"].strip()]  # fmt: skip

    def contexts(self) -> list[str]:
        seen: list[str] = []
        for m in self.received:
            if m.get("context_id") and m["context_id"] not in seen:
                seen.append(m["context_id"])
        return seen

    # ------------------------------------------------------------------------------- handshake

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.requests.append(request)
        path = urllib.parse.urlsplit(request.path).path
        if path == "/v1/voices" and "Upgrade" not in request.headers:
            if request.headers.get("xi-api-key") != self.key:
                return _json_response(401, {"detail": {"status": "invalid_api_key"}})
            return _json_response(200, {"voices": VOICES})
        if self.handshake_faults:
            status, headers = self.handshake_faults.pop(0)
            response = _json_response(status, {"detail": {"message": f"fake error {status}"}})
            for name, value in headers.items():
                response.headers[name] = value
            return response
        if request.headers.get("xi-api-key") != self.key and not self.auth_by_close:
            return _json_response(401, {"detail": {"status": "invalid_api_key"}})
        if not path.startswith("/v1/text-to-speech/") or not path.endswith("/multi-stream-input"):
            return _json_response(404, {"detail": "Not Found"})
        return None

    # ------------------------------------------------------------------------------- socket

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        assert ws.request is not None
        if ws.request.headers.get("xi-api-key") != self.key:
            await ws.close(1008, "invalid_api_key: Invalid API key")
            return
        if self.accept_then_close:
            await drop(ws, self.drop_code)
            return
        contexts: dict[str, _Context] = {}
        try:
            async for raw in ws:
                msg = json.loads(raw)
                self.received.append(msg)
                if msg.get("close_socket"):
                    for open_context in contexts.values():
                        open_context.close()
                    await ws.close(1000)
                    return
                cid = msg.get("context_id")
                if not cid:
                    continue
                ctx = contexts.get(cid)
                if ctx is None:
                    if sum(1 for c in contexts.values() if not c.done) >= self.max_contexts:
                        await ws.close(1008, TOO_MANY_CONTEXTS)
                        return
                    ctx = contexts[cid] = _Context(self, ws, cid)
                ctx.receive(msg)
        except ConnectionClosed:
            pass
        finally:
            for ctx in contexts.values():
                ctx.task.cancel()

    async def send_audio(self, ws: ServerConnection, cid: str, part: AudioPart) -> bool:
        """Send one audio message; False when the socket was dropped instead."""
        if self.drop_after_audio is not None and self._sent_audio >= self.drop_after_audio:
            self.drop_after_audio = None
            await drop(ws, self.drop_code)
            return False
        alignment = {"chars": part.chars, "charStartTimesMs": part.starts_ms,
                     self.duration_key: part.durations_ms}  # fmt: skip
        message: dict[str, Any] = {"audio": base64.b64encode(part.pcm).decode(), "isFinal": None}
        for key in self.alignment_keys:
            message[key] = alignment
        message[self.context_key] = cid
        if self.garbage:
            await ws.send("{oops")
        await ws.send(json.dumps(message))
        self._sent_audio += 1
        self.audio_messages[cid] = self.audio_messages.get(cid, 0) + 1
        self.first_audio.setdefault(cid, time.monotonic())
        return True


class _Context:
    def __init__(self, server: FakeElevenLabs, ws: ServerConnection, cid: str) -> None:
        self.server = server
        self.ws = ws
        self.cid = cid
        self.buffer = ""
        self.jobs: asyncio.Queue[str | None] = asyncio.Queue()
        self.done = False
        self.task = asyncio.create_task(self._run())

    def receive(self, msg: dict[str, Any]) -> None:
        if self.done:
            return
        if msg.get("close_context"):
            self.server.closed_contexts.append(self.cid)
            self.buffer = ""  # unflushed text is dropped
            self.close()
            return
        text = msg.get("text")
        if text is None:
            return
        if text.strip():
            self.server.first_text.setdefault(self.cid, time.monotonic())
        self.buffer += text
        if msg.get("flush") and self.buffer.strip():
            self.jobs.put_nowait(self.buffer)
            self.buffer = ""

    def close(self) -> None:
        self.done = True
        self.jobs.put_nowait(None)

    async def _run(self) -> None:
        server = self.server
        with contextlib.suppress(ConnectionClosed):
            while (text := await self.jobs.get()) is not None:
                if server.stall:
                    await asyncio.Event().wait()
                await asyncio.sleep(server.first_audio_delay)
                for part in synthesize_parts(text, server.chars_per_second, server.chunk_ms):
                    if not await server.send_audio(self.ws, self.cid, part):
                        return
                    await asyncio.sleep(len(part.pcm) / 2 / RATE * server.realtime_factor)
            await self.ws.send(json.dumps({"isFinal": True, server.context_key: self.cid}))
            server.finals.append(self.cid)


def _json_response(status: int, body: dict[str, Any]) -> Response:
    data = json.dumps(body).encode()
    headers = Headers({"Content-Type": "application/json", "Content-Length": str(len(data))})
    return Response(status, "fake", headers, data)
