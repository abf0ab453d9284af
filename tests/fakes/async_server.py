"""A local Async (async.com) TTS server: the websocket API and ``POST /voices``.

The socket takes the key and version from its query (``api_key``, ``version``), or from the older
``x-api-key`` / ``version`` headers, then expects the init message (model, voice, output format).
Text is buffered per context and synthesized (tone bursts, see ``elevenlabs_server``) on ``force``
and on ``close_context``, which answers ``final`` once the audio is out. Audio goes out as
``{"audio", "context_id"}`` or, when told, as the older ``{"type": "audioOutput", "audio"}`` without
a context. A socket that hears nothing for ``idle_timeout`` is closed. Misbehaviour on request:
handshake statuses, a stalled synthesis, every socket closed right after it was accepted, a socket
dropped after some audio, malformed messages. The voice list is a plain HTTP server of its own (the
websocket library serves only GET requests without a body).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.fakes.elevenlabs_server import RATE, synthesize_parts
from tests.fakes.faults import drop

_server_log = logging.getLogger("tests.fakes.async_server")
_server_log.propagate = False
_server_log.setLevel(logging.CRITICAL)

VOICES = [
    {"voice_id": "11111111-aaaa", "name": "Ava", "language": "en", "gender": "female"},
    {"voice_id": "22222222-bbbb", "name": "Bernd", "language": "de", "accent": "german"},
]


@dataclass
class FakeAsync:
    key: str = "async-test-key"
    handshake_faults: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    first_audio_delay: float = 0.03
    chars_per_second: float = 40.0
    realtime_factor: float = 0.05
    chunk_ms: int = 100
    audio_output_type: bool = False
    idle_timeout: float = 30.0
    stall: bool = False
    garbage: bool = False
    drop_after_audio: int | None = None
    drop_code: int | None = 1011
    #: Close every socket right after accepting it (as ``drop_code`` says).
    accept_then_close: bool = False

    requests: list[Request] = field(default_factory=list)
    inits: list[dict[str, Any]] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    connections: int = 0
    idle_closes: int = 0
    finals: list[str] = field(default_factory=list)
    first_text: dict[str, float] = field(default_factory=dict)
    first_audio: dict[str, float] = field(default_factory=dict)
    voice_requests: list[dict[str, str]] = field(default_factory=list)
    _server: Server | None = None
    _http: ThreadingHTTPServer | None = None
    _sent_audio: int = 0

    async def __aenter__(self) -> FakeAsync:
        self._server = await serve(
            self._handle, "127.0.0.1", 0, process_request=self._process_request, logger=_server_log
        )
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._voices_handler())
        run = self._http.serve_forever
        threading.Thread(target=run, args=(0.05,), daemon=True).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None and self._http is not None
        self._http.shutdown()
        self._http.server_close()
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2.0)

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/text_to_speech/websocket/ws"

    @property
    def voices_url(self) -> str:
        assert self._http is not None
        return f"http://127.0.0.1:{self._http.server_address[1]}/voices"

    def contexts(self) -> list[str]:
        seen: list[str] = []
        for m in self.received:
            if m.get("context_id") and m["context_id"] not in seen:
                seen.append(m["context_id"])
        return seen

    def texts(self, context: str) -> list[str]:
        found = []
        for m in self.received:
            if m.get("context_id") == context and (m.get("transcript") or "").strip():
                found.append(m["transcript"])
        return found

    # ------------------------------------------------------------------------------- handshake

    def _authorized(self, request: Request) -> bool:
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.path).query))
        key = query.get("api_key") or request.headers.get("x-api-key")
        version = query.get("version") or request.headers.get("version")
        return key == self.key and version == "v1"

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.requests.append(request)
        if self.handshake_faults:
            status, headers = self.handshake_faults.pop(0)
            response = connection.respond(status, json.dumps({"detail": f"fake error {status}"}))
            for name, value in headers.items():
                response.headers[name] = value
            return response
        if not self._authorized(request):
            return connection.respond(401, json.dumps({"detail": "Invalid API key"}))
        return None

    def _voices_handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                fake.voice_requests.append({k.lower(): v for k, v in self.headers.items()})
                ok = (
                    self.headers.get("x-api-key") == fake.key
                    and self.headers.get("version") == "v1"
                )
                body = json.dumps({"voices": VOICES} if ok else {"detail": "Invalid API key"})
                self.send_response(200 if ok else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

        return Handler

    # ------------------------------------------------------------------------------- socket

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        if self.accept_then_close:
            await drop(ws, self.drop_code)
            return
        contexts: dict[str, _Context] = {}
        try:
            raw = await asyncio.wait_for(ws.recv(), 5.0)
            init = json.loads(raw)
            if not {"model_id", "voice", "output_format"} <= set(init):
                await ws.send(json.dumps({"error": "the first message must configure the voice"}))
                await ws.close(1008, "invalid init")
                return
            self.inits.append(init)
            while True:
                try:
                    raw = await asyncio.wait_for(ws.recv(), self.idle_timeout)
                except TimeoutError:
                    self.idle_closes += 1
                    await ws.close(1000, "inactivity timeout")
                    return
                msg = json.loads(raw)
                self.received.append(msg)
                cid = msg.get("context_id")
                if not cid:
                    continue  # a keep-alive
                ctx = contexts.get(cid)
                if ctx is None:
                    ctx = contexts[cid] = _Context(self, ws, cid)
                ctx.receive(msg)
        except ConnectionClosed:
            pass
        finally:
            for ctx in contexts.values():
                ctx.task.cancel()

    async def send_audio(self, ws: ServerConnection, cid: str, pcm: bytes) -> bool:
        if self.drop_after_audio is not None and self._sent_audio >= self.drop_after_audio:
            self.drop_after_audio = None
            await drop(ws, self.drop_code)
            return False
        audio = base64.b64encode(pcm).decode()
        if self.audio_output_type:
            message: dict[str, Any] = {"type": "audioOutput", "audio": audio}
        else:
            message = {"audio": audio, "context_id": cid}
        if self.garbage:
            await ws.send("{oops")
        await ws.send(json.dumps(message))
        self._sent_audio += 1
        self.first_audio.setdefault(cid, time.monotonic())
        return True


class _Context:
    def __init__(self, server: FakeAsync, ws: ServerConnection, cid: str) -> None:
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
        text = msg.get("transcript") or ""
        if text.strip():
            self.server.first_text.setdefault(self.cid, time.monotonic())
        self.buffer += text
        if (msg.get("force") or msg.get("close_context")) and self.buffer.strip():
            self.jobs.put_nowait(self.buffer)
            self.buffer = ""
        if msg.get("close_context"):
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
                    if not await server.send_audio(self.ws, self.cid, part.pcm):
                        return
                    await asyncio.sleep(len(part.pcm) / 2 / RATE * server.realtime_factor)
            await self.ws.send(json.dumps({"final": True, "context_id": self.cid}))
            server.finals.append(self.cid)
