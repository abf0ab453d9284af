"""A local ElevenLabs server: the multi-context websocket TTS and ``GET /v1/voices``.

Speech streams as ``{"audio", "normalizedAlignment", "contextId"}`` messages (see
``contexts``). Text is buffered per context and synthesized on ``flush``; ``close_context`` drops
unflushed text, lets the flushed audio finish and answers ``isFinal``. What the spelling of keys
can be, it can be told to use: ``contextId`` or ``context_id``, ``charDurationsMs`` or
``charsDurationsMs``, with or without the ``alignment`` of the original text. Misbehaviour on
request: handshake statuses, a 1008 close for a wrong key, a stalled synthesis, every socket
closed right after it was accepted, a socket dropped after some audio, malformed messages, the
five-context limit.
"""

from __future__ import annotations

import base64
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from tests.fakes.base import json_response
from tests.fakes.contexts import AudioPart, Context, FakeContextServer

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
class FakeElevenLabs(FakeContextServer):
    key: str = "el-test-key"
    auth_by_close: bool = False
    context_key: str = "contextId"
    duration_key: str = "charDurationsMs"
    alignment_keys: tuple[str, ...] = ("normalizedAlignment",)
    max_contexts: int = 5

    audio_messages: dict[str, int] = field(default_factory=dict)
    closed_contexts: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------------------- handshake

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urllib.parse.urlsplit(request.path).path
        if path == "/v1/voices" and "Upgrade" not in request.headers:
            self.requests.append(request)
            if request.headers.get("xi-api-key") != self.key:
                return json_response(401, {"detail": {"status": "invalid_api_key"}})
            return json_response(200, {"voices": VOICES})
        return super()._process_request(connection, request)

    def _refusal(self, connection: ServerConnection, status: int) -> Response:
        return json_response(status, {"detail": {"message": f"fake error {status}"}})

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urllib.parse.urlsplit(request.path).path
        if request.headers.get("xi-api-key") != self.key and not self.auth_by_close:
            return json_response(401, {"detail": {"status": "invalid_api_key"}})
        if not path.startswith("/v1/text-to-speech/") or not path.endswith("/multi-stream-input"):
            return json_response(404, {"detail": "Not Found"})
        return None

    # ------------------------------------------------------------------------------- socket

    async def _handle(self, ws: ServerConnection) -> None:
        if await self._closed_for_key(ws, "xi-api-key", "invalid_api_key: Invalid API key"):
            return
        if not await self._accepted(ws):
            return
        await self.serve_contexts(ws)

    async def _socket_message(
        self, ws: ServerConnection, msg: dict[str, Any], contexts: dict[str, Context]
    ) -> bool:
        if not msg.get("close_socket"):
            return False
        for ctx in contexts.values():
            ctx.close()
        await ws.close(1000)
        return True

    async def _context_refused(self, ws: ServerConnection, contexts: dict[str, Context]) -> bool:
        if sum(1 for c in contexts.values() if not c.done) < self.max_contexts:
            return False
        await ws.close(1008, TOO_MANY_CONTEXTS)
        return True

    def _receive(self, ctx: Context, msg: dict[str, Any]) -> None:
        if ctx.done:
            return
        if msg.get("close_context"):
            self.closed_contexts.append(ctx.cid)
            ctx.buffer = ""  # unflushed text is dropped
            ctx.close()
            return
        text = msg.get("text")
        if text is None:
            return
        ctx.add(text)
        if msg.get("flush"):
            ctx.flush()

    def audio_message(self, cid: str, part: AudioPart) -> dict[str, Any]:
        self.audio_messages[cid] = self.audio_messages.get(cid, 0) + 1
        alignment = {"chars": part.chars, "charStartTimesMs": part.starts_ms,
                     self.duration_key: part.durations_ms}  # fmt: skip
        message: dict[str, Any] = {"audio": base64.b64encode(part.pcm).decode(), "isFinal": None}
        for key in self.alignment_keys:
            message[key] = alignment
        message[self.context_key] = cid
        return message

    def final_message(self, cid: str) -> dict[str, Any]:
        return {"isFinal": True, self.context_key: cid}
