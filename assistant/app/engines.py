"""The engine set: one speech-to-text, one language model and one text-to-speech chain.

Warming up reports progress as ``Loading`` events (engines may report from worker threads; the
events reach the loop first) and a failure as an ``ErrorEvent`` rather than an exception, so a
window stays usable while an engine is missing. ``aclose()`` releases what the set owns: engines
built for it, not engines a caller lent it.

This is the only module that asks engines what they can do beyond their protocols (progress
reporting, closing, real tool calls), and the only one that looks inside fallback chains.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from assistant.app import messages
from assistant.config import Settings
from assistant.engines.base import LanguageModel, SpeechToText, TextToSpeech, close_engine
from assistant.engines.registry import build_engines
from assistant.events import AppEvent, ErrorEvent, Loading, Source

log = logging.getLogger(__name__)

Engines = tuple[SpeechToText, LanguageModel, TextToSpeech]
#: The names the user sees for the three kinds, in the set's order (also ``Loading.component``).
KINDS = ("speech recognition", "language model", "speech synthesis")
KIND_SOURCES = dict(zip(KINDS, (Source.STT, Source.LLM, Source.TTS), strict=True))


def engine_key(settings: Settings) -> tuple[object, ...]:
    """The settings whose change needs new engines (and a new warm-up)."""
    providers = tuple(sorted((k, v.url, v.model, v.voice) for k, v in settings.providers.items()))
    return (
        settings.stt,
        settings.llm,
        settings.tts,
        settings.fallback_to_local,
        settings.language,
        settings.local_llm_model,
        providers,
    )


def members(engine: object) -> list[object]:
    """The engines inside a fallback chain (or the engine itself)."""
    inner = getattr(engine, "engines", None)
    return list(inner) if isinstance(inner, list) else [engine]


@dataclass(eq=False)
class EngineSet:
    """The three engines a conversation runs on (each usually a fallback chain)."""

    stt: SpeechToText
    llm: LanguageModel
    tts: TextToSpeech
    #: Close the engines in ``aclose()``; False for engines lent by a caller who closes them.
    owned: bool = True
    #: Where engines' own progress reports go (the latest ``warm_up``'s ``emit``).
    _progress_to: list[Callable[[AppEvent], None]] = field(
        default_factory=list, init=False, repr=False
    )
    #: Undoes each hook into an engine's progress reporting (run by ``aclose``).
    _detach: list[Callable[[], None]] = field(default_factory=list, init=False, repr=False)
    _progress_attached: bool = field(default=False, init=False, repr=False)

    @classmethod
    def build(cls, settings: Settings) -> EngineSet:
        """The engines the settings name, each in a fallback chain. Raises on an unknown name or
        an engine that cannot be constructed."""
        return cls(*build_engines(settings))

    @classmethod
    def of(cls, engines: EngineSet | Engines) -> EngineSet:
        return engines if isinstance(engines, EngineSet) else cls(*engines)

    def __iter__(self) -> Iterator[SpeechToText | LanguageModel | TextToSpeech]:
        return iter((self.stt, self.llm, self.tts))

    async def warm_up(self, emit: Callable[[AppEvent], None], *, announce: bool = True) -> bool:
        """Load every engine concurrently; True when all three are usable.

        ``emit`` receives ``Loading`` progress (a 0 at the start when ``announce``, always a 1 at
        the end) and, for an engine that fails, an ``ErrorEvent`` whose source is its kind.
        """
        self._attach_progress(emit)
        warming = [
            self._warm(kind, engine, emit, announce)
            for kind, engine in zip(KINDS, self, strict=True)
        ]
        results = await asyncio.gather(*warming)
        return all(results)

    async def _warm(
        self, kind: str, engine: object, emit: Callable[[AppEvent], None], announce: bool
    ) -> bool:
        if announce:
            emit(Loading(kind, 0.0, f"Loading {kind}…"))
        try:
            await engine.warm_up()  # type: ignore[attr-defined]
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("warming up %s failed: %s", kind, exc)
            emit(Loading(kind, 1.0, f"{kind} failed"))
            emit(ErrorEvent(messages.engine_not_loaded(kind, exc), KIND_SOURCES[kind]))
            return False
        emit(Loading(kind, 1.0, f"{kind.capitalize()} ready"))
        return True

    def _attach_progress(self, emit: Callable[[AppEvent], None]) -> None:
        """Route engines' own progress reports to ``emit`` (once per set, on the current loop)."""
        self._progress_to[:] = [emit]
        if self._progress_attached:
            return
        self._progress_attached = True
        loop = asyncio.get_running_loop()
        targets = self._progress_to

        for kind, engine in zip(KINDS, self, strict=True):

            def report(fraction: float, message: str, kind: str = kind) -> None:
                event = Loading(kind, float(fraction), message)
                for target in targets:
                    with contextlib.suppress(RuntimeError):  # the loop has closed
                        loop.call_soon_threadsafe(target, event)

            for member in members(engine):
                self._detach.extend(_hook_progress(member, report))

    async def aclose(self) -> None:
        """Release the engines (servers, models, connections) if the set owns them; lent ones
        are only unhooked from this set's progress reporting."""
        for detach in self._detach:
            detach()
        self._detach.clear()
        if self.owned:
            for engine in self:
                await close_engine(engine)


def _hook_progress(
    member: object, report: Callable[[float, str], None]
) -> list[Callable[[], None]]:
    """Hook ``report`` into an engine's progress reporting (a listener list or a single
    ``progress`` slot), if it has any; returns what undoes it."""
    callbacks = getattr(member, "on_progress", None)
    if isinstance(callbacks, list):
        listeners: list[object] = callbacks
        listeners.append(report)

        def remove() -> None:
            if report in listeners:
                listeners.remove(report)

        return [remove]
    if hasattr(member, "progress") and getattr(member, "progress", None) is None:
        with contextlib.suppress(AttributeError):
            member.progress = report

            def unhook() -> None:
                if getattr(member, "progress", None) is report:
                    member.progress = None

            return [unhook]
    return []
