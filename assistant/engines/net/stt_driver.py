"""The one driver of the streaming STT providers (AssemblyAI, Deepgram, OpenAI Realtime).

``StreamingSession`` is an ``STTSession`` that runs a provider's ``SttWire`` (no I/O) over a
``ReconnectingSocket``: audio and turn ends go into the wire, the messages it produces go into
the socket's outbox, every server message goes back into the wire, and its events become
``Transcript``s (or fail the turn a caller waits for). It arms one timer for the wire's next
deadline. ``PrewarmedSTT`` is the engine side: it opens a session at warm-up so that the first
turn pays no handshake, and hands it to the next ``open``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import KW_ONLY, dataclass, field
from typing import ClassVar

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from assistant import secrets
from assistant.engines.base import PCM, EngineError, Transcript
from assistant.engines.net import stt_protocol as stt
from assistant.engines.net.messages import Outgoing
from assistant.engines.net.pacing import RealtimePacer
from assistant.engines.net.retry import Policy
from assistant.engines.net.websocket import ReconnectingSocket, closed_error, connect

log = logging.getLogger(__name__)


class StreamingSession:
    """One streaming transcription session; see the module docstring."""

    def __init__(
        self,
        wire: stt.SttWire,
        *,
        key: str,
        policy: Policy,
        pacer: RealtimePacer | None = None,
    ) -> None:
        self.key = key
        self.policy = policy
        self.sample_rate = wire.sample_rate
        self._wire = wire
        self._loop = asyncio.get_running_loop()
        self._transcripts: asyncio.Queue[Transcript | EngineError | None] = asyncio.Queue()
        self._waiters: dict[int, asyncio.Future[None]] = {}
        self._finished = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._closed = False
        self._socket = ReconnectingSocket(
            wire.service,
            connect=self._connect,
            policy=policy,
            on_message=self._on_message,
            handshake=self._handshake,
            on_sent=self._on_sent,
            on_drop=self._on_drop,
            on_reconnect=self._on_reconnect,
            on_failure=self._on_failure,
            pacer=pacer,
            keepalive=wire.keepalive,
        )

    @property
    def language(self) -> str:
        return self._wire.language

    @property
    def usable(self) -> bool:
        """Connected (or reconnecting) and not closed: a pre-warmed session can be handed out."""
        return self._socket.failure is None and not self._closed

    @property
    def connections(self) -> int:
        """Connections opened so far (reconnects included)."""
        return self._socket.connections

    async def start(self) -> None:
        """Connect and let the server start the session; raises ``EngineError``."""
        await self._socket.ensure()

    def reconfigure(self, language: str) -> bool:
        """Switch to ``language`` on this connection; False when a new session is needed."""
        if not self._wire.reconfigure(language):
            return False
        self._pump()
        return True

    # ---------------------------------------------------------------------------- STTSession

    async def push(self, pcm: PCM) -> None:
        self._check()
        self._wire.audio(pcm, self._loop.time())
        self._pump()

    async def end_turn(self) -> None:
        self._check()
        turn = self._wire.end_turn(self._loop.time())
        waiter = None
        if self._wire.awaits_final:
            waiter = self._waiters[turn] = self._loop.create_future()
        self._pump()
        if waiter is not None:
            try:
                await asyncio.shield(waiter)
            finally:
                self._waiters.pop(turn, None)

    async def clear(self) -> None:
        self._socket.drop_audio()
        self._wire.clear(self._loop.time())
        if self._socket.failure is None:
            self._pump()

    async def transcripts(self) -> AsyncIterator[Transcript]:
        """Partials and finals until the session closes; raises the error that ended it."""
        while (item := await self._transcripts.get()) is not None:
            if isinstance(item, EngineError):
                raise item
            yield item

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._cancel_timer()
        await self._socket.close(self._wire.goodbye(), self._finished)
        self._fail_waiters(self._wire.service.error(": the transcription session was closed."))
        self._transcripts.put_nowait(None)

    # ------------------------------------------------------------------------------ socket

    async def _connect(self) -> ClientConnection:
        wire = self._wire
        return await connect(wire.service, wire.url(), wire.headers(self.key), self.policy)

    async def _handshake(self, ws: ClientConnection) -> None:
        """Send the wire's opening messages; if the server speaks first, wait for it."""
        wire = self._wire
        try:
            for item in wire.start():
                await ws.send(item.data)
            if not wire.greets:
                return
            async with asyncio.timeout(self.policy.first_message_timeout):
                while True:
                    wire.receive(await ws.recv(), self._loop.time())
                    events = wire.events_received()
                    for event in events:
                        if isinstance(event, stt.Failed):
                            raise event.error
                        self._dispatch(event)
                    if any(isinstance(event, stt.Ready) for event in events):
                        return
        except TimeoutError:
            waited = self.policy.first_message_timeout
            raise wire.service.error(f"did not start the session within {waited:g} s.") from None
        except ConnectionClosed as exc:
            raise closed_error(wire.service, exc) from None

    def _on_message(self, raw: str | bytes) -> None:
        self._wire.receive(raw, self._loop.time())
        self._pump()

    def _on_sent(self, item: Outgoing) -> None:
        self._wire.sent(item, self._loop.time())
        self._arm()

    def _on_drop(self, error: EngineError) -> None:
        if self._wire.dropped(error, self._loop.time()):
            self._socket.drop_audio()
        self._pump()

    def _on_reconnect(self) -> list[Outgoing]:
        items = self._wire.reconnected(self._loop.time())
        self._pump()
        return items

    def _on_failure(self, error: EngineError) -> None:
        self._cancel_timer()
        self._fail_waiters(error)
        self._transcripts.put_nowait(error)

    # ---------------------------------------------------------------------------- plumbing

    def _pump(self) -> None:
        """Send what the wire wants sent, act on its events, and arm its next deadline."""
        wire, socket = self._wire, self._socket
        for item in wire.data_to_send():
            if socket.failure is None:
                socket.send(item)
        for event in wire.events_received():
            self._dispatch(event)
        self._arm()

    def _dispatch(self, event: stt.SttEvent) -> None:
        match event:
            case stt.Partial(text, start, end):
                self._transcripts.put_nowait(Transcript(text, False, start, end))
            case stt.Final(text, start, end, language, turn):
                final = Transcript(text, True, start, end, end_of_turn=True, language=language)
                self._transcripts.put_nowait(final)
                waiter = self._waiters.get(turn)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
            case stt.TurnFailed(error, turn):
                waiter = self._waiters.get(turn)
                if waiter is not None and not waiter.done():
                    waiter.set_exception(error)
            case stt.Finished():
                self._finished.set()
            case stt.Failed(error):
                self._socket.abort(error)

    def _arm(self) -> None:
        at = self._wire.deadline()
        if at == self._timer_at:
            return
        self._cancel_timer()
        if at is not None:
            self._timer_at = at
            self._timer = self._loop.call_at(at, self._expire)

    def _expire(self) -> None:
        self._timer = self._timer_at = None
        self._wire.expire(self._loop.time())
        self._pump()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None

    def _fail_waiters(self, error: EngineError) -> None:
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(error)

    def _check(self) -> None:
        if self._socket.failure is not None:
            raise self._socket.failure
        if self._closed:
            raise self._wire.service.error(": the transcription session was closed.")


@dataclass(eq=False)
class PrewarmedSTT:
    """A streaming STT engine whose session is opened ahead of the first turn.

    ``warm_up`` checks the key and connects; the next ``open`` takes that session when it can
    serve the language asked for (same key, same language or one the wire can switch to), so no
    turn pays the handshake. Subclasses say how to build the wire (``_wire``) and whose key it
    uses (``provider``)."""

    provider: ClassVar[str]
    #: Warm-up failures are logged instead of raised (``open`` reports them).
    quiet_warm_up: ClassVar[bool] = False

    endpoint: str
    _: KW_ONLY
    language: str = "en"
    policy: Policy = field(default_factory=Policy)
    _warm: StreamingSession | None = field(default=None, init=False, repr=False)

    def _wire(self, language: str) -> stt.SttWire:
        raise NotImplementedError

    def _pacer(self) -> RealtimePacer | None:
        return None

    async def _session(self, language: str, key: str) -> StreamingSession:
        session = StreamingSession(
            self._wire(language), key=key, policy=self.policy, pacer=self._pacer()
        )
        await session.start()
        return session

    async def open(self, language: str) -> StreamingSession:
        key = secrets.require_key(self.provider)
        warm, self._warm = self._warm, None
        if warm is not None:
            if warm.usable and warm.key == key and warm.reconfigure(language):
                return warm
            await warm.aclose()
        return await self._session(language, key)

    async def warm_up(self) -> None:
        """Check the key and open the session ahead of time (the next ``open`` takes it)."""
        if self._warm is not None and self._warm.usable:
            return
        if self.quiet_warm_up:
            key = secrets.get_key(self.provider)
            if not key:
                return  # ``open`` reports the missing key
            try:
                self._warm = await self._session(self.language, key)
            except EngineError as exc:
                log.warning("%s", exc)
            return
        self._warm = await self._session(self.language, secrets.require_key(self.provider))

    async def aclose(self) -> None:
        """Close a pre-warmed session that was never used."""
        warm, self._warm = self._warm, None
        if warm is not None:
            await warm.aclose()
