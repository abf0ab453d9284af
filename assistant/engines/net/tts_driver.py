"""The one driver of the multi-context TTS providers (ElevenLabs, Async).

``TtsSocket`` is one socket per voice, shared by that voice's replies: each reply is a context
with a queue of its own messages (others are dropped), opened lazily and reopened when a reply
needs it after a drop (``ReconnectingSocket`` without background reconnects). ``speak`` speaks
one reply's text pieces as a context: until the first audio no further piece is read, so a
failure there leaves the pieces intact for a fallback engine, and a socket that drops in that
phase is reopened once and the text sent again; after that audio and text flow both ways with a
deadline for a server that goes quiet. Closing the stream early (barge-in) closes the context,
not the socket.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import ClassVar

from websockets.asyncio.client import ClientConnection

from assistant.engines.base import EngineError, SpeechChunk
from assistant.engines.net.messages import Message, Outgoing, parse_json, server_error_text
from assistant.engines.net.retry import Policy
from assistant.engines.net.tts_protocol import ContextReader, TtsWire
from assistant.engines.net.websocket import ReconnectingSocket
from assistant.engines.pieces import PieceTracker

log = logging.getLogger(__name__)


class SocketDropped(EngineError):
    """The shared TTS socket closed under a context that still needed it."""


class TtsSocket:
    """One TTS socket shared by the replies (contexts) of a voice; see the module docstring."""

    def __init__(
        self,
        wire: TtsWire,
        *,
        connect: Callable[[], Awaitable[ClientConnection]],
        policy: Policy,
        keepalive: tuple[float, Message] | None = None,
    ) -> None:
        self.wire = wire
        self._contexts: dict[str, asyncio.Queue[Message | EngineError]] = {}
        self._socket = ReconnectingSocket(
            wire.service,
            connect=connect,
            policy=policy,
            on_message=self._route,
            handshake=self._greet,
            on_drop=self._dropped,
            keepalive=(keepalive[0], Outgoing.json(keepalive[1])) if keepalive else None,
        )

    @property
    def connected(self) -> bool:
        return self._socket.connected

    async def ensure(self) -> None:
        """Connect unless connected (raises ``EngineError``)."""
        await self._socket.ensure()

    def attach(self, context: str) -> asyncio.Queue[Message | EngineError]:
        queue: asyncio.Queue[Message | EngineError] = asyncio.Queue()
        self._contexts[context] = queue
        return queue

    def detach(self, context: str) -> None:
        self._contexts.pop(context, None)

    def send(self, message: Message) -> None:
        """Queue ``message``; raises ``EngineError`` when the socket is down."""
        self._socket.send(Outgoing.json(message))

    def send_soon(self, message: Message) -> None:
        """Send if the socket is up; a failure is only logged (barge-in must not fail)."""
        try:
            self.send(message)
        except EngineError as exc:
            log.debug("%s: %s", self.wire.service.label, exc)

    async def aclose(self) -> None:
        goodbye = self.wire.goodbye()
        await self._socket.close(Outgoing.json(goodbye) if goodbye is not None else None)

    async def _greet(self, ws: ClientConnection) -> None:
        for message in self.wire.greeting():
            await ws.send(Outgoing.json(message).data)

    def _route(self, raw: str | bytes) -> None:
        msg = parse_json(self.wire.service.label, raw)
        if msg is None:
            return
        context = self.wire.context_of(msg)
        if context is None and len(self._contexts) == 1:
            context = next(iter(self._contexts))
        queue = self._contexts.get(context) if context is not None else None
        if queue is not None:
            queue.put_nowait(msg)
        elif (text := server_error_text(msg)) is not None:
            log.warning("%s reported: %s", self.wire.service.label, text)
        else:
            log.debug("%s: message for context %s dropped", self.wire.service.label, context)

    def _dropped(self, error: EngineError) -> None:
        dropped = SocketDropped(str(error), engine=error.engine, retryable=error.retryable)
        for queue in self._contexts.values():
            queue.put_nowait(dropped)


async def _next_piece(source: AsyncIterator[str]) -> str:
    return await anext(source)


async def speak(
    socket: TtsSocket,
    pieces: AsyncIterable[str],
    tracker: PieceTracker,
    policy: Policy,
    *,
    keepalive_interval: float | None = None,
) -> AsyncGenerator[SpeechChunk, None]:
    """Speak ``pieces`` as one context on ``socket``; see the module docstring."""
    wire = socket.wire
    service = wire.service
    await socket.ensure()
    source = aiter(pieces)
    try:
        first = await anext(source)
    except StopAsyncIteration:
        return
    context = uuid.uuid4().hex[:16]
    queue = socket.attach(context)
    reader = ContextReader(wire, tracker)
    closed = finished = False
    piece_task: asyncio.Task[str] | None = None
    msg_task: asyncio.Task[Message | EngineError] | None = None
    loop = asyncio.get_running_loop()

    def handle(item: Message | EngineError) -> tuple[list[SpeechChunk], bool]:
        if isinstance(item, EngineError):
            raise item
        return reader.receive(item)

    def send_opening(text: str) -> None:
        for message in wire.opening(context, text):
            socket.send(message)

    try:
        replayed = False
        try:
            send_opening(tracker.add(first))
        except EngineError as exc:  # the idle socket was closed under us: once more, afresh
            if not exc.retryable:
                raise
            replayed = True
            await socket.ensure()
            queue = socket.attach(context)
            send_opening(tracker.sent_text)
        sent_at = last_heard = loop.time()
        # Phase 1: the first audio.
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), policy.first_message_timeout)
            except TimeoutError:
                waited = policy.first_message_timeout
                raise service.error(f"sent no audio within {waited:g} s.") from None
            if isinstance(item, SocketDropped) and item.retryable and not replayed:
                replayed = True
                log.info("%s: socket dropped before the first audio; sending again", service.label)
                await socket.ensure()
                queue = socket.attach(context)
                send_opening(tracker.sent_text)
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
                    raise service.error(
                        f"stopped sending audio mid-reply (nothing for {policy.stall_timeout:g} s)."
                    )
                keep = wire.keepalive(context)
                if keep is not None:
                    socket.send(keep)
                sent_at = loop.time()
                continue
            if piece_task in done:
                try:
                    text = piece_task.result()
                except StopAsyncIteration:
                    piece_task = None
                    socket.send(wire.closing(context))
                    closed = True
                else:
                    piece_task = asyncio.create_task(_next_piece(source))
                    socket.send(wire.text(context, tracker.add(text)))
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


@dataclass(eq=False)
class MultiContextTTS:
    """What a multi-context TTS engine shares: a socket per voice (and whatever else the
    provider binds to a socket), opened ahead of the first reply, a reply per context.

    Subclasses give ``name``, ``default_voice_id``, ``_slot`` (what a socket serves),
    ``_open_socket(slot)`` and ``_tracker()``; ``_spoken(tracker)`` hears about each reply."""

    name: ClassVar[str]
    default_voice_id: ClassVar[str]
    #: Keep a context alive while its text waits (False: the socket's keep-alive covers it).
    keeps_contexts_alive: ClassVar[bool] = False

    endpoint: str
    _: KW_ONLY
    #: The configured voice ("<engine>:ID" or a bare id; empty: ``default_voice_id``).
    voice: str = ""
    model: str = ""
    language: str = "en"
    policy: Policy = field(default_factory=Policy)
    #: The keep-alive interval (of a waiting context, or of the socket).
    keepalive_interval: float = 10.0
    _sockets: dict[tuple[str, ...], TtsSocket] = field(default_factory=dict, init=False)

    def voice_id(self, voice: str | None) -> str:
        """The provider's id for ``voice`` ("<engine>:ID" or a bare id); other engines' voices
        and no voice at all mean the configured default."""
        for candidate in (voice, self.voice):
            if not candidate:
                continue
            engine, sep, key = candidate.partition(":")
            if not sep:
                return candidate
            if engine == self.name and key:
                return key
        return self.default_voice_id

    def socket(self, voice_id: str, language: str) -> TtsSocket:
        slot = self._slot(voice_id, language)
        found = self._sockets.get(slot)
        if found is None:
            found = self._sockets[slot] = self._open_socket(slot)
        return found

    async def stream(
        self, pieces: AsyncIterable[str], *, voice: str | None, language: str
    ) -> AsyncGenerator[SpeechChunk, None]:
        socket = self.socket(self.voice_id(voice), language or self.language)
        tracker = self._tracker()
        interval = self.keepalive_interval if self.keeps_contexts_alive else None
        chunks = speak(socket, pieces, tracker, self.policy, keepalive_interval=interval)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()
        self._spoken(tracker)

    async def warm_up(self) -> None:
        """Open the default voice's socket (the voice list is fetched in the background)."""
        await self.socket(self.voice_id(None), self.language).ensure()

    async def aclose(self) -> None:
        for socket in self._sockets.values():
            await socket.aclose()
        self._sockets.clear()

    def _slot(self, voice_id: str, language: str) -> tuple[str, ...]:
        return (voice_id,)

    def _open_socket(self, slot: tuple[str, ...]) -> TtsSocket:
        raise NotImplementedError

    def _tracker(self) -> PieceTracker:
        raise NotImplementedError

    def _spoken(self, tracker: PieceTracker) -> None:
        """A reply was spoken to its end."""
