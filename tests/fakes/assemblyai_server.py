"""A local AssemblyAI Streaming v3 server (``/v3/ws``) speaking the real wire protocol, for tests.

It "recognizes" scripted text: while audio above a speech level arrives, the next turn's words are
revealed at ``words_per_second`` as cumulative ``Turn`` partials. A turn ends after ``end_silence``
seconds of silence (its own endpointing) or on ``ForceEndpoint``: first the raw end
(``turn_is_formatted: false``), then the formatted one ``format_delay`` later. It enforces the rules
a real server enforces with an ``Error`` and close 3007: audio messages of 50–1000 ms, and audio no
faster than real time. It can be told to misbehave: handshake statuses (401/429/500), a 1008 close
for a wrong key, a stalled ``Begin``, every session closed right after ``Begin``, a connection
dropped after some audio, malformed messages, a formatted end sent twice or never. Each connection
recognizes the script from its start, so audio sent again after a reconnect gives the same text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.fakes.listening import FakeListeningServer, ListeningSession, duration, level


@dataclass
class Turn:
    formatted: str
    raw: str


DEFAULT_SCRIPT = (Turn("What time is it?", "what time is it"), Turn("Thank you.", "thank you"))


@dataclass
class FakeAssemblyAI(FakeListeningServer):
    PATH = "/v3/ws"

    key: str = "aai-test-key"
    script: tuple[Turn, ...] = DEFAULT_SCRIPT
    #: A wrong key is refused with close 1008 after the upgrade (else HTTP 401 at the handshake).
    auth_by_close: bool = False
    stall_begin: bool = False
    #: Silence after speech that ends a turn (the server's own endpointing); None: never.
    end_silence: float | None = 0.8
    #: Delay of the raw end of turn after ForceEndpoint.
    force_delay: float = 0.02
    #: Delay of the formatted end after the raw one; None: never sent.
    format_delay: float | None = 0.05
    formatted_twice: bool = False
    realtime_tolerance: float = 1.3

    message_durations: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: monotonic times: ForceEndpoint received, and each end-of-turn message sent.
    force_received: list[float] = field(default_factory=list)
    ends_sent: list[float] = field(default_factory=list)

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Authorization") != self.key and not self.auth_by_close:
            return connection.respond(401, "Unauthorized\n")
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.path).query))
        if not query.get("speech_model"):
            return connection.respond(400, "speech_model is required\n")
        return None

    # ------------------------------------------------------------------------------- session

    async def _handle(self, ws: ServerConnection) -> None:
        reason = "Unauthorized connection: Invalid API key"
        if await self._closed_for_key(ws, "Authorization", reason):
            return
        if self.stall_begin:
            await ws.wait_closed()
            return
        session = _Session(self, ws)
        begin = {"type": "Begin", "id": "fake-session", "expires_at": 1_900_000_000}
        await ws.send(json.dumps(begin))
        if not await self._accepted(ws):
            return
        await session.serve()


class _Session(ListeningSession[FakeAssemblyAI]):
    def __init__(self, server: FakeAssemblyAI, ws: ServerConnection) -> None:
        super().__init__(server, ws)
        self.started = time.monotonic()
        self.turn_order = 0
        self.turn: Turn | None = None

    async def _not_json(self, message: str) -> bool:
        await self._violation("Invalid JSON message", 3007)
        return False

    async def _control(self, msg: dict[str, Any]) -> bool:
        server = self.server
        kind = msg.get("type")
        if kind == "ForceEndpoint":
            server.force_received.append(time.monotonic())
            await asyncio.sleep(server.force_delay)
            await self._end_turn(forced=True)
        elif kind == "Terminate":
            await self.ws.send(
                json.dumps(
                    {
                        "type": "Termination",
                        "audio_duration_seconds": round(self.audio, 2),
                        "session_duration_seconds": round(time.monotonic() - self.started, 2),
                    }
                )
            )
            await self.ws.close(1000)
            return False
        return True

    async def _violation(self, text: str, code: int) -> None:
        self.server.errors.append(text)
        await self.ws.send(json.dumps({"type": "Error", "error": text}))
        await self.ws.close(code, text)

    async def _audio(self, data: bytes) -> bool:
        server = self.server
        seconds = duration(data)
        server.message_durations.append(seconds)
        if seconds < 0.05 - 1e-9 or seconds > 1.0 + 1e-9:
            await self._violation(f"Input duration violation: {seconds * 1000:.0f} ms", 3007)
            return False
        self.hear(seconds)
        if self.audio > time.monotonic() - self.started + server.realtime_tolerance:
            await self._violation("Audio sent faster than real time", 3007)
            return False
        if await self.dropped("Internal server error"):
            return False
        if level(data) >= server.speech_rms:
            if self.turn is None:
                self.turn = server.script[self.turn_order % len(server.script)]
            self.speech += seconds
            self.silence = 0.0
            await self._partial()
        elif self.turn is not None:
            self.silence += seconds
            if server.end_silence is not None and self.silence >= server.end_silence:
                await self._end_turn(forced=False)
        return True

    def _words(self, text: str, count: int | None = None) -> list[dict[str, Any]]:
        words = text.split()[:count]
        step = 1000.0 / self.server.words_per_second
        return [
            {"start": int(i * step), "end": int((i + 0.8) * step), "text": w, "confidence": 0.9,
             "word_is_final": True}
            for i, w in enumerate(words)
        ]  # fmt: skip

    async def _garbage(self) -> None:
        """With ``garbage``: a non-JSON message and a JSON array before every Turn."""
        if self.server.garbage:
            await self.ws.send("{not json")
            await self.ws.send("[1, 2]")

    async def _partial(self) -> None:
        assert self.turn is not None
        words = self.turn.raw.split()
        shown = min(len(words), max(1, int(self.speech * self.server.words_per_second)))
        await self._garbage()
        await self.ws.send(json.dumps(self._turn_message(" ".join(words[:shown]), False, False)))

    def _turn_message(self, text: str, end: bool, formatted: bool) -> dict[str, Any]:
        return {
            "type": "Turn",
            "turn_order": self.turn_order,
            "turn_is_formatted": formatted,
            "end_of_turn": end,
            "transcript": text,
            "end_of_turn_confidence": 0.9 if end else 0.1,
            "words": self._words(text),
        }

    async def _end_turn(self, *, forced: bool) -> None:
        server = self.server
        turn, self.turn = self.turn, None
        if turn is None and not forced:
            return
        raw = turn.raw if turn is not None else ""
        formatted = turn.formatted if turn is not None else ""
        await self._garbage()
        await self.ws.send(json.dumps(self._turn_message(raw, True, False)))
        server.ends_sent.append(time.monotonic())
        if server.format_delay is not None:
            message = self._turn_message(formatted, True, True)
            self.tasks.append(asyncio.create_task(self._send_formatted(message)))
        self.turn_order += 1
        self.speech = self.silence = 0.0

    async def _send_formatted(self, message: dict[str, Any]) -> None:
        assert self.server.format_delay is not None
        await asyncio.sleep(self.server.format_delay)
        for _ in range(2 if self.server.formatted_twice else 1):
            with contextlib.suppress(ConnectionClosed):
                await self.ws.send(json.dumps(message))
                self.server.ends_sent.append(time.monotonic())
