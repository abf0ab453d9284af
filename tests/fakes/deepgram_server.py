"""A local Deepgram live-transcription server (``/v1/listen``) speaking the real wire protocol.

It "recognizes" scripted text: while audio above a speech level arrives, words of the turn's text
are revealed at ``words_per_second`` as interim ``Results``; every ``segment_seconds`` of speech
the words so far become an ``is_final`` segment. After ``endpointing`` seconds of silence the rest
comes as a ``speech_final`` result, after ``utterance_end`` an ``UtteranceEnd``; ``Finalize``
answers a ``from_finalize`` result at once. A socket that gets neither audio nor a ``KeepAlive``
for ``idle_timeout`` is closed with 1011, as Deepgram does. Misbehaviour on request: handshake
statuses, every connection closed right after it was accepted, a connection dropped after some
audio, malformed messages, no answer to ``Finalize``.
Each connection recognizes the script from its start.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from tests.fakes.listening import FakeListeningServer, ListeningSession, duration, level

IDLE_REASON = (
    "Deepgram did not receive audio data or a text message within the timeout window. "
    "See https://dpgr.am/net0001"
)


@dataclass
class FakeDeepgram(FakeListeningServer):
    PATH = "/v1/listen"

    key: str = "dg-test-key"
    script: tuple[str, ...] = ("What time is it?", "Thank you.")
    segment_seconds: float = 0.4
    #: Silence that ends a turn with ``speech_final`` / with ``UtteranceEnd``; None: never.
    endpointing: float | None = 0.3
    utterance_end: float | None = 1.0
    finalize_delay: float = 0.02
    answer_finalize: bool = True
    idle_timeout: float = 10.0

    idle_closes: int = 0
    finalize_received: list[float] = field(default_factory=list)
    finals_sent: list[float] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(1 for c in self.controls if c.get("type") == kind)

    def _refusal(self, connection: ServerConnection, status: int) -> Response:
        return connection.respond(status, json.dumps({"err_msg": f"fake error {status}"}))

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Authorization") != f"Token {self.key}":
            return connection.respond(401, json.dumps({"err_code": "INVALID_AUTH"}))
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        if not await self._accepted(ws):
            return
        session = _Session(self, ws)
        session.tasks.append(asyncio.create_task(session.watch_idle()))
        await session.serve()


class _Session(ListeningSession[FakeDeepgram]):
    def __init__(self, server: FakeDeepgram, ws: ServerConnection) -> None:
        super().__init__(server, ws)
        self.turn = 0
        self.words: list[str] | None = None
        self.done = 0  # words already sent in is_final results
        self.segment_speech = 0.0
        self.segment_start = 0.0
        self.speech_final_sent = False

    async def watch_idle(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            if time.monotonic() - self.last_activity > self.server.idle_timeout:
                self.server.idle_closes += 1
                await self.ws.close(1011, IDLE_REASON)
                return

    async def _control(self, msg: dict[str, Any]) -> bool:
        kind = msg.get("type")
        if kind == "Finalize":
            self.server.finalize_received.append(time.monotonic())
            if self.server.answer_finalize:
                await asyncio.sleep(self.server.finalize_delay)
                await self._final(from_finalize=True)
        elif kind == "CloseStream":
            await self._send({"type": "Metadata", "request_id": "fake", "duration": self.audio,
                              "channels": 1})  # fmt: skip
            await self.ws.close(1000)
            return False
        return True

    async def _send(self, msg: dict[str, Any]) -> None:
        if self.server.garbage:
            await self.ws.send("<html>not json")
        await self.ws.send(self.server.outgoing(msg))

    async def _audio(self, data: bytes) -> bool:
        server = self.server
        seconds = duration(data)
        self.hear(seconds)
        if await self.dropped("NET-0000: internal error"):
            return False
        if level(data) >= server.speech_rms:
            if self.words is None:
                self.words = server.script[self.turn % len(server.script)].split()
                self.segment_start = self.audio - seconds
                await self._send({"type": "SpeechStarted", "timestamp": self.segment_start})
            self.speech += seconds
            self.segment_speech += seconds
            self.silence = 0.0
            self.speech_final_sent = False
            shown = min(len(self.words), max(1, int(self.speech * server.words_per_second)))
            if self.segment_speech >= server.segment_seconds and shown > self.done:
                await self._results(self.words[self.done : shown], is_final=True)
                self.done = shown
            else:
                await self._results(self.words[self.done : shown], is_final=False)
        elif self.words is not None:
            self.silence += seconds
            if server.endpointing is not None and self.silence >= server.endpointing:
                if not self.speech_final_sent:
                    await self._final(speech_final=True)
            if server.utterance_end is not None and self.silence >= server.utterance_end:
                if self.done < len(self.words):  # the tail settles before the utterance ends
                    await self._results(self.words[self.done :], is_final=True)
                    self.done = len(self.words)
                last_word_end = round(self.audio - self.silence, 3)
                await self._send({"type": "UtteranceEnd", "last_word_end": last_word_end})
                self._next_turn()
        return True

    async def _results(
        self, words: list[str], *, is_final: bool, speech_final: bool = False,
        from_finalize: bool = False,
    ) -> None:  # fmt: skip
        start = self.segment_start
        duration = max(0.0, self.audio - start)
        message = {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round(duration, 3),
            "start": round(start, 3),
            "is_final": is_final,
            "speech_final": speech_final,
            "from_finalize": from_finalize,
            "channel": {"alternatives": [{
                "transcript": " ".join(words),
                "confidence": 0.95,
                "words": [{"word": w.lower().strip("?.,!"), "punctuated_word": w,
                           "start": start, "end": start + duration, "confidence": 0.9}
                          for w in words],
            }]},
        }  # fmt: skip
        await self._send(message)
        if is_final:
            self.segment_start = self.audio
            self.segment_speech = 0.0
            if speech_final or from_finalize:
                self.server.finals_sent.append(time.monotonic())

    async def _final(self, *, speech_final: bool = False, from_finalize: bool = False) -> None:
        words = self.words or []
        rest = words[self.done :]
        await self._results(
            rest, is_final=True, speech_final=speech_final, from_finalize=from_finalize
        )
        self.done = len(words)
        self.speech_final_sent = True
        if from_finalize or self.server.utterance_end is None:
            self._next_turn()

    def _next_turn(self) -> None:
        if self.words is not None:
            self.turn += 1
        self.words = None
        self.done = 0
        self.speech = self.segment_speech = self.silence = 0.0
        self.speech_final_sent = False
