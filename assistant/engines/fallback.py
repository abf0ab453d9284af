"""Fallback chains: when an engine fails before producing output, the next one of its kind runs.

A failure after output has started is not retried elsewhere (the user has already heard part of
the reply); it propagates so the session can tell the user and keep what was heard, and later
turns go to the next engine as after any failure. Only real output counts: a language model's
usage report or finish reason before its first word is not an answer.

A chain remembers failures. An engine that failed is skipped on later turns (a dead cloud
service must not cost every turn its timeout) and probed in the background, with growing
pauses, until it answers again; the switch away and the switch back are each reported once.
A rate limit with a short ``retry-after`` (at most ``SHORT_RETRY_AFTER`` seconds) from the
engine the user chose is waited out once before falling back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence

from assistant.clock import SYSTEM_CLOCK, Clock
from assistant.emitter import Emitter
from assistant.engines.base import (
    ChatRequest,
    EngineError,
    EngineKind,
    EngineNotice,
    FellBack,
    LanguageModel,
    LLMEvent,
    Message,
    NeedsToolRouter,
    Recovered,
    ReportsNotices,
    ScoresEndOfTurn,
    SpeechChunk,
    SpeechToText,
    STTSession,
    TextDelta,
    TextToSpeech,
    ToolCallDelta,
    Voice,
    close_engine,
    closing_stream,
)

log = logging.getLogger(__name__)

#: A rate limit asking for at most this many seconds is waited out once on the chosen engine.
SHORT_RETRY_AFTER = 2.0
#: Pauses between background probes of a failed engine (then the last one, repeated).
PROBE_DELAYS = (5.0, 15.0, 30.0, 60.0, 120.0)
#: A probe that takes longer than this counts as a failure.
PROBE_TIMEOUT = 10.0

_FAILURES = (EngineError, OSError, TimeoutError)


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


type _Engine = SpeechToText | LanguageModel | TextToSpeech


class _Chain[E: _Engine]:
    """The engines of one kind, in order (the first is the one the user chose), and their
    health; it takes its ``name`` from the first."""

    kind: EngineKind

    def __init__(self, engines: Sequence[E], clock: Clock = SYSTEM_CLOCK) -> None:
        if not engines:
            raise ValueError("a fallback chain needs at least one engine")
        self.engines = list(engines)
        self.name = self.engines[0].name
        self._names = [e.name for e in self.engines]
        self._clock = clock
        #: A switch to another engine, and back (each reported once).
        self.notices: Emitter[EngineNotice] = Emitter(f"{self.kind} fallback")
        self._down: set[int] = set()
        self._probes: dict[int, asyncio.Task[None]] = {}
        self._unsubscribe: list[Callable[[], None]] = []
        self._pass_on_notices(self.engines)

    def _pass_on_notices(self, engines: Sequence[object]) -> None:
        """Members' own news (a local server restarting) reaches the chain's listeners."""
        for engine in engines:
            if isinstance(engine, ReportsNotices):
                self._unsubscribe.append(engine.notices.subscribe(self.notices.emit))

    # ---------------------------------------------------------------------------- health

    def _order(self) -> list[int]:
        """Engines to try: the working ones in order, then (if all else fails) the failed ones."""
        up = [i for i in range(len(self._names)) if i not in self._down]
        return up + sorted(self._down)

    def _mark_down(self, index: int, exc: BaseException, nxt: int | None) -> None:
        if index in self._down:
            return
        self._down.add(index)
        failed, reason = self._names[index], _describe(exc)
        if nxt is not None:
            nxt_name = self._names[nxt]
            log.warning("%s engine %s failed (%s); using %s", self.kind, failed, reason, nxt_name)
            self.notices.emit(FellBack(self.kind, failed, nxt_name, reason))
        if len(self._names) > 1:
            self._probes[index] = asyncio.create_task(
                self._probe_until_up(index), name=f"probe-{failed}"
            )

    def _mark_up(self, index: int) -> None:
        if index not in self._down:
            return
        self._down.discard(index)
        probe = self._probes.pop(index, None)
        if probe is not None and probe is not asyncio.current_task():
            probe.cancel()
        name = self._names[index]
        log.info("%s engine %s works again", self.kind, name)
        self.notices.emit(Recovered(self.kind, name))

    async def _probe_until_up(self, index: int) -> None:
        for attempt in range(10_000):
            await self._clock.sleep(PROBE_DELAYS[min(attempt, len(PROBE_DELAYS) - 1)])
            try:
                async with asyncio.timeout(PROBE_TIMEOUT):
                    await self._probe(index)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("%s probe of %s failed: %s", self.kind, self._names[index], exc)
                continue
            self._probes.pop(index, None)
            self._mark_up(index)
            return

    async def _probe(self, index: int) -> None:
        raise NotImplementedError

    def set_aside(self, index: int, exc: BaseException) -> None:
        """Skip engine ``index`` from now on, as if it had failed with ``exc`` (it cannot work
        yet: it has no API key). The switch is reported and the engine probed as usual."""
        later = next((i for i in self._order() if i != index), None)
        self._mark_down(index, exc, later)

    @property
    def members(self) -> Sequence[E]:
        return self.engines

    async def warm_up(self) -> None:
        await _warm_all(self.engines)

    async def aclose(self) -> None:
        """Stop probing and release every engine of the chain."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        probes = list(self._probes.values())
        self._probes.clear()
        for probe in probes:
            probe.cancel()
        await asyncio.gather(*probes, return_exceptions=True)
        for engine in self.engines:
            await close_engine(engine)

    # ------------------------------------------------------------------------- attempts

    async def _short_wait(self, exc: BaseException, position: int, waited: bool) -> bool:
        """Wait out a short rate limit of the first engine tried, once. True if it waited."""
        retry_after = exc.retry_after if isinstance(exc, EngineError) else None
        if waited or position != 0 or retry_after is None or retry_after > SHORT_RETRY_AFTER:
            return False
        log.info("%s engine %s asked to wait %.1f s", self.kind, self._names[0], retry_after)
        await self._clock.sleep(retry_after)
        return True

    def _give_up(self, errors: list[str]) -> EngineError:
        if len(errors) == 1:
            return EngineError(errors[0], engine=self._names[0])
        joined = "; ".join(errors)
        return EngineError(f"every {self.kind} engine failed: {joined}", engine=self._names[-1])

    async def _attempts[T](
        self,
        run: Callable[[int, bool], AsyncIterator[T]],
        output: Callable[[T], bool] = lambda _item: True,
    ) -> AsyncIterator[T]:
        """Yield from ``run(index, first)`` for each engine in order until one succeeds.

        ``run`` must not be retried once it produced output (``output(item)``): that failure
        propagates, and the engine is skipped from then on like any failed one.
        """
        errors: list[str] = []
        order = self._order()
        for position, index in enumerate(order):
            waited = False
            while True:
                produced = False
                later = order[position + 1] if position + 1 < len(order) else None
                try:
                    async for item in run(index, position == 0):
                        produced = produced or output(item)
                        yield item
                    self._mark_up(index)
                    return
                except _FAILURES as exc:
                    if produced:
                        self._mark_down(index, exc, later)
                        raise
                    if await self._short_wait(exc, position, waited):
                        waited = True
                        continue
                    errors.append(f"{self._names[index]}: {_describe(exc)}")
                    self._mark_down(index, exc, later)
                    break
        raise self._give_up(errors)


class FallbackLLM(_Chain[LanguageModel]):
    kind: EngineKind = "llm"

    async def stream(self, request: ChatRequest) -> AsyncIterator[LLMEvent]:
        async def run(index: int, first: bool) -> AsyncIterator[LLMEvent]:
            async with closing_stream(self.engines[index].stream(request)) as events:
                async for event in events:
                    yield event

        async for event in self._attempts(run, _is_answer):
            yield event

    async def _probe(self, index: int) -> None:
        request = ChatRequest([Message("user", "Say OK.")], max_tokens=1)
        async with closing_stream(self.engines[index].stream(request)) as events:
            await anext(events, None)

    @property
    def needs_tool_router(self) -> bool:
        """Tools are offered the way the first engine (the one normally answering) needs."""
        first = self.engines[0]
        return isinstance(first, NeedsToolRouter) and first.needs_tool_router

    @property
    def continues_reply(self) -> bool:
        """As the first engine does (``assistant.tools.router.continues_reply``)."""
        return bool(getattr(self.engines[0], "continues_reply", False))

    async def prefill(self, request: ChatRequest) -> None:
        """Warm the first working engine's prompt cache, when it has one."""
        prefill = getattr(self.engines[self._order()[0]], "prefill", None)
        if prefill is not None:
            await prefill(request)

    async def end_of_turn_probability(self, request: ChatRequest) -> float | None:
        """The first working engine's reading of the user's words, when it can read them."""
        engine = self.engines[self._order()[0]]
        if not isinstance(engine, ScoresEndOfTurn):
            return None
        return await engine.end_of_turn_probability(request)


class _ReplayablePieces:
    """Lets a second engine re-read the text pieces the failed first engine already took."""

    def __init__(self, source: AsyncIterable[str]) -> None:
        self._source = aiter(source)
        self._seen: list[str] = []
        self._done = False

    async def replay(self) -> AsyncIterator[str]:
        i = 0
        while True:
            if i < len(self._seen):
                yield self._seen[i]
                i += 1
                continue
            if self._done:
                return
            try:
                piece = await anext(self._source)
            except StopAsyncIteration:
                self._done = True
                return
            self._seen.append(piece)


async def _one(text: str) -> AsyncIterator[str]:
    yield text


class FallbackTTS(_Chain[TextToSpeech]):
    kind: EngineKind = "tts"

    def __init__(self, engines: Sequence[TextToSpeech], clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__(engines, clock)
        self._language = "en"

    async def stream(
        self, pieces: AsyncIterable[str], *, voice: str | None, language: str
    ) -> AsyncIterator[SpeechChunk]:
        self._language = language
        replayable = _ReplayablePieces(pieces)

        async def run(index: int, first: bool) -> AsyncIterator[SpeechChunk]:
            # The chosen voice belongs to the first engine; the others use their default.
            engine_voice = voice if index == 0 else None
            stream = self.engines[index].stream(
                replayable.replay(), voice=engine_voice, language=language
            )
            async with closing_stream(stream) as chunks:
                async for chunk in chunks:
                    yield chunk

        async for chunk in self._attempts(run):
            yield chunk

    async def _probe(self, index: int) -> None:
        stream = self.engines[index].stream(_one("OK."), voice=None, language=self._language)
        async with closing_stream(stream) as chunks:
            await anext(chunks, None)

    def voices(self, language: str | None = None) -> list[Voice]:
        return self.engines[0].voices(language)


class FallbackSTT(_Chain[SpeechToText]):
    kind: EngineKind = "stt"

    def __init__(self, engines: Sequence[SpeechToText], clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__(engines, clock)
        self.provides_endpointing = self.engines[0].provides_endpointing
        self.active: SpeechToText = self.engines[0]
        self._language = "en"

    async def open(self, language: str) -> STTSession:
        self._language = language
        opened: list[STTSession] = []

        async def run(index: int, first: bool) -> AsyncIterator[None]:
            opened.append(await self.engines[index].open(language))
            self.active = self.engines[index]
            self.provides_endpointing = self.active.provides_endpointing
            yield None

        async for _ in self._attempts(run):
            pass
        return opened[-1]

    def failed_after_open(self, exc: BaseException) -> None:
        """The active engine's stream broke soon after it opened: skip it from now on."""
        index = self.engines.index(self.active)
        later = next((i for i in self._order() if i != index), None)
        self._mark_down(index, exc, later)

    async def _probe(self, index: int) -> None:
        session = await self.engines[index].open(self._language)
        await session.aclose()


def _is_answer(event: LLMEvent) -> bool:
    return isinstance(event, TextDelta | ToolCallDelta)


async def _warm_all(engines: Sequence[_Engine]) -> None:
    """Warm every engine of a chain concurrently; a failure here is reported when used."""
    results = await asyncio.gather(*(e.warm_up() for e in engines), return_exceptions=True)
    for engine, result in zip(engines, results, strict=True):
        if isinstance(result, BaseException):
            with contextlib.suppress(Exception):
                log.warning("warming up %s failed: %s", engine.name, _describe(result))
    first = results[0]
    if isinstance(first, BaseException) and len(engines) == 1:
        raise first
