"""The one driver of the streaming STT providers (AssemblyAI, Deepgram, OpenAI Realtime).

``StreamingSession`` is an ``STTSession`` that runs a provider's ``SttWire`` (no I/O) with the
shared ``net.wire.WireDriver``: audio and turn ends go into the wire, and its events become
``Transcript``s (or fail the turn a caller waits for). ``PrewarmedSTT`` is the engine side: it
opens a session at warm-up so that the first turn pays no handshake, and hands it to the next
``open``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import KW_ONLY, dataclass, field
from typing import ClassVar

from assistant import secrets
from assistant.engines.base import PCM, EngineError, Transcript, queued
from assistant.engines.net import stt_protocol as stt
from assistant.engines.net.pacing import RealtimePacer
from assistant.engines.net.retry import Policy
from assistant.engines.net.wire import WireDriver

log = logging.getLogger(__name__)


class StreamingSession(WireDriver[stt.Partial | stt.Final | stt.TurnFailed]):
    """One streaming transcription session; see the module docstring."""

    what = "the transcription session"

    def __init__(
        self,
        wire: stt.SttWire,
        *,
        key: str,
        policy: Policy,
        pacer: RealtimePacer | None = None,
    ) -> None:
        super().__init__(wire, key=key, policy=policy, pacer=pacer)
        self.sample_rate = wire.sample_rate
        self._stt = wire
        self._transcripts: asyncio.Queue[Transcript | EngineError | None] = asyncio.Queue()
        self._waiters: dict[int, asyncio.Future[None]] = {}

    @property
    def language(self) -> str:
        return self._stt.language

    def reconfigure(self, language: str) -> bool:
        """Switch to ``language`` on this connection; False when a new session is needed."""
        if not self._stt.reconfigure(language):
            return False
        self._pump()
        return True

    # ---------------------------------------------------------------------------- STTSession

    async def push(self, pcm: PCM) -> None:
        self._check()
        self._stt.audio(pcm, self._loop.time())
        self._pump()

    async def end_turn(self) -> None:
        self._check()
        turn = self._stt.end_turn(self._loop.time())
        waiter = None
        if self._stt.awaits_final:
            waiter = self._waiters[turn] = self._loop.create_future()
        self._pump()
        if waiter is not None:
            try:
                await asyncio.shield(waiter)
            finally:
                self._waiters.pop(turn, None)

    async def clear(self) -> None:
        self._socket.drop_audio()
        self._stt.clear(self._loop.time())
        if self._socket.failure is None:
            self._pump()

    def transcripts(self) -> AsyncIterator[Transcript]:
        """Partials and finals until the session closes; raises the error that ended it."""
        return queued(self._transcripts)

    async def aclose(self) -> None:
        if self._closed:
            return
        await self._close_socket()
        self._fail_waiters(self._stt.service.error(": the transcription session was closed."))
        self._transcripts.put_nowait(None)

    # ---------------------------------------------------------------------------- events

    def _failed(self, error: EngineError) -> None:
        self._fail_waiters(error)
        self._transcripts.put_nowait(error)

    def _dispatch(self, event: stt.Partial | stt.Final | stt.TurnFailed) -> None:
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

    def _fail_waiters(self, error: EngineError) -> None:
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(error)


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
        key = await secrets.arequire_key(self.provider)
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
            try:
                key = await secrets.arequire_key(self.provider)
            except EngineError:
                return  # ``open`` reports the missing or unreadable key
            try:
                self._warm = await self._session(self.language, key)
            except EngineError as exc:
                log.warning("%s", exc)
            return
        key = await secrets.arequire_key(self.provider)
        self._warm = await self._session(self.language, key)

    async def aclose(self) -> None:
        """Close a pre-warmed session that was never used."""
        warm, self._warm = self._warm, None
        if warm is not None:
            await warm.aclose()
