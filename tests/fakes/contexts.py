"""What the fake multi-context TTS servers (ElevenLabs, Async) share.

Speech is a tone burst per word (``assistant.engines.fake.synthesize_words``), streamed in
``chunk_ms`` parts after ``first_audio_delay``, at ``realtime_factor`` × real time, with the
alignment of the characters each part starts. A ``Context`` buffers a context's text and
synthesizes it when told; its audio messages and its final message are the provider's. Faults on
request: a stalled synthesis, malformed messages before each audio message, the socket dropped
after ``drop_after_audio`` audio messages (once), plus those of ``FakeWebsocketServer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from assistant.engines.fake import synthesize_words
from tests.fakes.base import FakeWebsocketServer

RATE = 24_000


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
class FakeContextServer(FakeWebsocketServer):
    #: The key of a message's text.
    TEXT: ClassVar[str] = "text"

    first_audio_delay: float = 0.03
    chars_per_second: float = 40.0
    realtime_factor: float = 0.05
    chunk_ms: int = 100
    stall: bool = False
    garbage: bool = False
    #: Drop the socket after this many audio messages (once), as ``drop_code`` says.
    drop_after_audio: int | None = None

    finals: list[str] = field(default_factory=list)
    #: context → monotonic time its first text arrived / its first audio was sent
    first_text: dict[str, float] = field(default_factory=dict)
    first_audio: dict[str, float] = field(default_factory=dict)
    _sent_audio: int = 0

    def contexts(self) -> list[str]:
        seen: list[str] = []
        for m in self.received:
            if m.get("context_id") and m["context_id"] not in seen:
                seen.append(m["context_id"])
        return seen

    def texts(self, context: str) -> list[str]:
        """The non-blank texts sent for ``context``."""
        return [m[self.TEXT] for m in self.received if m.get("context_id") == context
                and isinstance(m.get(self.TEXT), str) and m[self.TEXT].strip()]  # fmt: skip

    async def send_audio(self, ws: ServerConnection, cid: str, part: AudioPart) -> bool:
        """Send one audio message; False when the socket was dropped instead."""
        if self.drop_after_audio is not None and self._sent_audio >= self.drop_after_audio:
            self.drop_after_audio = None
            await self.drop(ws)
            return False
        if self.garbage:
            await ws.send("{oops")
        await ws.send(self.outgoing(self.audio_message(cid, part)))
        self._sent_audio += 1
        self.first_audio.setdefault(cid, time.monotonic())
        return True

    async def serve_contexts(self, ws: ServerConnection) -> None:
        """Keep each message in ``received`` and hand it to its context (made on its first
        message) until the socket ends; a message without a context is the socket's own
        (``_socket_message``). A closed socket ends it quietly; the contexts' synthesis stops with
        it."""
        contexts: dict[str, Context] = {}
        try:
            while (raw := await self._next_message(ws)) is not None:
                msg = json.loads(raw)
                self.received.append(msg)
                if await self._socket_message(ws, msg, contexts):
                    return
                cid = msg.get("context_id")
                if not cid:
                    continue  # not for a context (a keep-alive, say)
                ctx = contexts.get(cid)
                if ctx is None:
                    if await self._context_refused(ws, contexts):
                        return
                    ctx = contexts[cid] = Context(self, ws, cid)
                self._receive(ctx, msg)
        except ConnectionClosed:
            pass
        finally:
            for ctx in contexts.values():
                ctx.task.cancel()

    async def _next_message(self, ws: ServerConnection) -> str | bytes | None:
        """The next message from the client; None once the server ended the socket."""
        return await ws.recv()

    async def _socket_message(
        self, ws: ServerConnection, msg: dict[str, Any], contexts: dict[str, Context]
    ) -> bool:
        """Act on a message meant for the socket as a whole; True when it ended the socket."""
        return False

    async def _context_refused(self, ws: ServerConnection, contexts: dict[str, Context]) -> bool:
        """Whether a new context is refused (and the socket ended) given the open ``contexts``."""
        return False

    def _receive(self, ctx: Context, msg: dict[str, Any]) -> None:
        """Act on a message for ``ctx``: buffer its text, flush or close it."""
        raise NotImplementedError

    def audio_message(self, cid: str, part: AudioPart) -> dict[str, Any]:
        raise NotImplementedError

    def final_message(self, cid: str) -> dict[str, Any]:
        raise NotImplementedError


class Context:
    """One context of a socket: text buffered until ``flush``, then spoken, then final."""

    def __init__(self, server: FakeContextServer, ws: ServerConnection, cid: str) -> None:
        self.server = server
        self.ws = ws
        self.cid = cid
        self.buffer = ""
        self.jobs: asyncio.Queue[str | None] = asyncio.Queue()
        self.done = False
        self.task = asyncio.create_task(self._run())

    def add(self, text: str) -> None:
        if text.strip():
            self.server.first_text.setdefault(self.cid, time.monotonic())
        self.buffer += text

    def flush(self) -> None:
        if self.buffer.strip():
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
            await self.ws.send(json.dumps(server.final_message(self.cid)))
            server.finals.append(self.cid)
