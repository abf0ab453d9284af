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
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.fakes.contexts import AudioPart, Context, FakeContextServer

VOICES = [
    {"voice_id": "11111111-aaaa", "name": "Ava", "language": "en", "gender": "female"},
    {"voice_id": "22222222-bbbb", "name": "Bernd", "language": "de", "accent": "german"},
]


@dataclass
class FakeAsync(FakeContextServer):
    PATH = "/text_to_speech/websocket/ws"
    TEXT = "transcript"

    key: str = "async-test-key"
    audio_output_type: bool = False
    idle_timeout: float = 30.0

    inits: list[dict[str, Any]] = field(default_factory=list)
    idle_closes: int = 0
    voice_requests: list[dict[str, str]] = field(default_factory=list)
    _http: ThreadingHTTPServer | None = None

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._voices_handler())
        run = self._http.serve_forever
        threading.Thread(target=run, args=(0.05,), daemon=True).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._http is not None
        self._http.shutdown()
        self._http.server_close()
        await super().__aexit__(*exc)

    @property
    def voices_url(self) -> str:
        assert self._http is not None
        return f"http://127.0.0.1:{self._http.server_address[1]}/voices"

    # ------------------------------------------------------------------------------- handshake

    def _authorized(self, request: Request) -> bool:
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.path).query))
        key = query.get("api_key") or request.headers.get("x-api-key")
        version = query.get("version") or request.headers.get("version")
        return key == self.key and version == "v1"

    def _refusal(self, connection: ServerConnection, status: int) -> Response:
        return connection.respond(status, json.dumps({"detail": f"fake error {status}"}))

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
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
        if not await self._accepted(ws):
            return
        with contextlib.suppress(ConnectionClosed):
            raw = await asyncio.wait_for(ws.recv(), 5.0)
            init = json.loads(raw)
            if not {"model_id", "voice", "output_format"} <= set(init):
                await ws.send(json.dumps({"error": "the first message must configure the voice"}))
                await ws.close(1008, "invalid init")
                return
            self.inits.append(init)
            await self.serve_contexts(ws)

    async def _next_message(self, ws: ServerConnection) -> str | bytes | None:
        try:
            return await asyncio.wait_for(ws.recv(), self.idle_timeout)
        except TimeoutError:
            self.idle_closes += 1
            await ws.close(1000, "inactivity timeout")
            return None

    def _receive(self, ctx: Context, msg: dict[str, Any]) -> None:
        if ctx.done:
            return
        ctx.add(msg.get("transcript") or "")
        if msg.get("force") or msg.get("close_context"):
            ctx.flush()
        if msg.get("close_context"):
            ctx.close()

    def audio_message(self, cid: str, part: AudioPart) -> dict[str, Any]:
        audio = base64.b64encode(part.pcm).decode()
        if self.audio_output_type:
            return {"type": "audioOutput", "audio": audio}
        return {"audio": audio, "context_id": cid}

    def final_message(self, cid: str) -> dict[str, Any]:
        return {"final": True, "context_id": cid}
