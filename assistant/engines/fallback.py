"""Fallback chains: when an engine fails before producing output, the next one of its kind runs.

A failure after output has started is not retried elsewhere (the user has already heard part of
the reply); it propagates so the session can tell the user and keep what was heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence

from assistant.engines.base import (
    ChatRequest,
    EngineError,
    LanguageModel,
    LLMEvent,
    NeedsToolRouter,
    SpeechChunk,
    SpeechToText,
    STTSession,
    TextToSpeech,
    Voice,
    closing_stream,
)

log = logging.getLogger(__name__)

#: (kind, failed engine, next engine, reason)
FallbackListener = Callable[[str, str, str, str], None]


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class _Chain:
    kind = ""

    def __init__(self, names: Sequence[str], on_fallback: FallbackListener | None) -> None:
        if not names:
            raise ValueError("a fallback chain needs at least one engine")
        self._names = list(names)
        self.on_fallback: list[FallbackListener] = [on_fallback] if on_fallback else []

    def _report(self, index: int, exc: BaseException) -> None:
        failed, nxt = self._names[index], self._names[index + 1]
        reason = _describe(exc)
        log.warning("%s engine %s failed (%s); falling back to %s", self.kind, failed, reason, nxt)
        for listener in self.on_fallback:
            listener(self.kind, failed, nxt, reason)

    def _give_up(self, errors: list[str]) -> EngineError:
        if len(errors) == 1:
            return EngineError(errors[0], engine=self._names[0])
        joined = "; ".join(errors)
        return EngineError(f"every {self.kind} engine failed: {joined}", engine=self._names[-1])


class FallbackLLM(_Chain):
    kind = "llm"

    def __init__(
        self, engines: Sequence[LanguageModel], on_fallback: FallbackListener | None = None
    ):
        super().__init__([e.name for e in engines], on_fallback)
        self.engines = list(engines)
        self.name = self.engines[0].name

    async def stream(self, request: ChatRequest) -> AsyncIterator[LLMEvent]:
        errors: list[str] = []
        for i, engine in enumerate(self.engines):
            produced = False
            try:
                async with closing_stream(engine.stream(request)) as events:
                    async for event in events:
                        produced = True
                        yield event
                return
            except (EngineError, OSError, TimeoutError) as exc:
                if produced:
                    raise
                errors.append(f"{engine.name}: {_describe(exc)}")
                if i + 1 < len(self.engines):
                    self._report(i, exc)
        raise self._give_up(errors)

    @property
    def needs_tool_router(self) -> bool:
        """Tools are offered the way the first engine (the one normally answering) needs."""
        first = self.engines[0]
        return isinstance(first, NeedsToolRouter) and first.needs_tool_router

    async def warm_up(self) -> None:
        await _warm_all(self.engines)

    async def prefill(self, request: ChatRequest) -> None:
        """Warm the first engine's prompt cache, when it has one (see ``LocalLLM.prefill``)."""
        prefill = getattr(self.engines[0], "prefill", None)
        if prefill is not None:
            await prefill(request)


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


class FallbackTTS(_Chain):
    kind = "tts"

    def __init__(
        self, engines: Sequence[TextToSpeech], on_fallback: FallbackListener | None = None
    ):
        super().__init__([e.name for e in engines], on_fallback)
        self.engines = list(engines)
        self.name = self.engines[0].name

    async def stream(
        self, pieces: AsyncIterable[str], *, voice: str | None, language: str
    ) -> AsyncIterator[SpeechChunk]:
        replayable = _ReplayablePieces(pieces)
        errors: list[str] = []
        for i, engine in enumerate(self.engines):
            produced = False
            # The chosen voice belongs to the first engine; the others use their default.
            engine_voice = voice if i == 0 else None
            try:
                stream = engine.stream(replayable.replay(), voice=engine_voice, language=language)
                async with closing_stream(stream) as chunks:
                    async for chunk in chunks:
                        produced = True
                        yield chunk
                return
            except (EngineError, OSError, TimeoutError) as exc:
                if produced:
                    raise
                errors.append(f"{engine.name}: {_describe(exc)}")
                if i + 1 < len(self.engines):
                    self._report(i, exc)
        raise self._give_up(errors)

    def voices(self, language: str | None = None) -> list[Voice]:
        return self.engines[0].voices(language)

    async def warm_up(self) -> None:
        await _warm_all(self.engines)


class FallbackSTT(_Chain):
    kind = "stt"

    def __init__(
        self, engines: Sequence[SpeechToText], on_fallback: FallbackListener | None = None
    ):
        super().__init__([e.name for e in engines], on_fallback)
        self.engines = list(engines)
        self.name = self.engines[0].name
        self.provides_endpointing = self.engines[0].provides_endpointing
        self.active: SpeechToText = self.engines[0]

    async def open(self, language: str) -> STTSession:
        errors: list[str] = []
        for i, engine in enumerate(self.engines):
            try:
                session = await engine.open(language)
            except (EngineError, OSError, TimeoutError) as exc:
                errors.append(f"{engine.name}: {_describe(exc)}")
                if i + 1 < len(self.engines):
                    self._report(i, exc)
                continue
            self.active = engine
            self.provides_endpointing = engine.provides_endpointing
            return session
        raise self._give_up(errors)

    async def warm_up(self) -> None:
        await _warm_all(self.engines)


async def _warm_all(engines: Sequence[SpeechToText | LanguageModel | TextToSpeech]) -> None:
    """Warm every engine of a chain concurrently; a failure here is reported when used."""
    results = await asyncio.gather(*(e.warm_up() for e in engines), return_exceptions=True)
    for engine, result in zip(engines, results, strict=True):
        if isinstance(result, BaseException):
            with contextlib.suppress(Exception):
                log.warning("warming up %s failed: %s", engine.name, _describe(result))
    first = results[0]
    if isinstance(first, BaseException) and len(engines) == 1:
        raise first
