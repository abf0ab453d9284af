"""The engines a conversation runs on: one speech-to-text, one language model and one
text-to-speech chain (``EngineSet``), or one speech-to-speech engine (``AgentEngineSet``), as
``Settings.pipeline`` says (``build_engine_set``).

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

from assistant import secrets
from assistant.app import messages
from assistant.config import Settings
from assistant.engines.base import (
    EngineError,
    LanguageModel,
    MissingKeyError,
    SpeechToText,
    TextToSpeech,
    close_engine,
)
from assistant.engines.registry import build_engines, build_llm, build_stt, build_tts, make_s2s
from assistant.engines.s2s import SpeechToSpeech
from assistant.events import AppEvent, ErrorEvent, Loading, Source

log = logging.getLogger(__name__)

Engines = tuple[SpeechToText, LanguageModel, TextToSpeech]
#: The names the user sees for the three kinds, in the set's order (also ``Loading.component``).
KINDS = ("speech recognition", "language model", "speech synthesis")
KIND_SOURCES = dict(zip(KINDS, (Source.STT, Source.LLM, Source.TTS), strict=True))


#: Engine names that run on this computer and read no provider settings or keys.
OFFLINE = frozenset({"local", "fake"})
#: Engines that cannot work without their provider's API key (named like the provider).
KEYED = frozenset(secrets.ENV_VARS) - {"openai_compatible"}


def engine_keys(settings: Settings) -> dict[str, tuple[object, ...]]:
    """For each kind, the settings whose change needs a new engine of that kind.

    The language model does not depend on the language (the prompt says which to answer in),
    so changing the language never restarts the offline model's server.
    """
    providers = tuple(sorted((k, v.url, v.model, v.voice) for k, v in settings.providers.items()))

    def chain(name: str) -> tuple[object, ...]:
        # A cloud engine reads its provider's settings, and falls back to an offline one.
        return (name,) if name in OFFLINE else (name, settings.fallback_to_local, providers)

    local_llm = settings.llm == "local" or (
        settings.llm not in OFFLINE and settings.fallback_to_local
    )
    return {
        KINDS[0]: (*chain(settings.stt), settings.language, settings.detect_language),
        KINDS[1]: (*chain(settings.llm), settings.local_llm_model if local_llm else ""),
        KINDS[2]: (*chain(settings.tts), settings.language),
    }


def _agent_key(settings: Settings) -> tuple[object, ...]:
    """The settings a speech-to-speech engine is built from (nothing in the chained pipeline).

    The voice and the language are not among them: each conversation's session states them,
    so changing either only opens a new session.
    """
    if settings.pipeline != "s2s":
        return ("chained",)
    s2s = settings.s2s
    providers = tuple(sorted((k, v.url, v.model, v.voice) for k, v in settings.providers.items()))
    return ("s2s", s2s.engine, s2s.model, providers)


def changed_kinds(old: Settings, new: Settings, *, keys_changed: bool = False) -> frozenset[str]:
    """The kinds of engine a change of settings needs rebuilt. ``keys_changed``: an API key was
    stored or removed, which only engines of a cloud provider read."""
    if _agent_key(old) != _agent_key(new) or (keys_changed and new.pipeline == "s2s"):
        return frozenset(KINDS)  # a speech-to-speech engine is built whole
    before, after = engine_keys(old), engine_keys(new)
    names = dict(zip(KINDS, (new.stt, new.llm, new.tts), strict=True))
    return frozenset(
        kind
        for kind in KINDS
        if before[kind] != after[kind] or (keys_changed and names[kind] not in OFFLINE)
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

    def rebuilt(self, settings: Settings, kinds: frozenset[str]) -> EngineSet:
        """A set with new engines of ``kinds`` (built from ``settings``) and this set's others.

        Release this set with ``release(kinds)`` afterwards: the engines it keeps now belong to
        the new set. Raises like ``build`` when an engine cannot be constructed.
        """
        return EngineSet(
            build_stt(settings) if KINDS[0] in kinds else self.stt,
            build_llm(settings) if KINDS[1] in kinds else self.llm,
            build_tts(settings) if KINDS[2] in kinds else self.tts,
            owned=self.owned,
        )

    async def release(self, kinds: frozenset[str]) -> None:
        """Give up this set after ``rebuilt(..., kinds)``: unhook its progress reporting and
        close only the engines of ``kinds`` (the others live on in the new set)."""
        for detach in self._detach:
            detach()
        self._detach.clear()
        if self.owned:
            for kind, engine in zip(KINDS, self, strict=True):
                if kind in kinds:
                    await close_engine(engine)

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
        # Keys are read beside the warm-up: a locked or slow keyring holds up neither.
        warming.append(self._set_aside_keyless(emit))
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

    async def _set_aside_keyless(self, emit: Callable[[AppEvent], None]) -> bool:
        """A cloud engine without a usable API key cannot answer: the chain goes straight to the
        next engine (no failing first request), and the user hears of it now, not at the first
        question. A key the keyring could not give (locked, failing, silent) is told apart from
        a missing one. The keyring is read off the event loop. Engines lent by a caller were
        built with their keys (or without on purpose): they are not checked."""
        if not self.owned:
            return True
        keyed = [
            (kind, engine, index, str(getattr(member, "name", "")))
            for kind, engine in zip(KINDS, self, strict=True)
            for index, member in enumerate(members(engine))
            if str(getattr(member, "name", "")) in KEYED
        ]
        problems = await asyncio.gather(*(_key_problem(provider) for *_, provider in keyed))
        for (kind, engine, index, provider), problem in zip(keyed, problems, strict=True):
            if problem is None:
                continue
            set_aside = getattr(engine, "set_aside", None)
            if len(members(engine)) > 1 and callable(set_aside):
                set_aside(index, problem)  # the chain says which engine takes over
            elif isinstance(problem, MissingKeyError):
                name = secrets.DISPLAY_NAMES.get(provider, provider)
                emit(ErrorEvent(messages.missing_key(kind, name), Source.SETTINGS))
            else:
                emit(ErrorEvent(str(problem), Source.SETTINGS))
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


async def _key_problem(provider: str) -> EngineError | None:
    """Why ``provider``'s key cannot be used (None: it can)."""
    try:
        await secrets.arequire_key(provider)
    except EngineError as problem:  # MissingKeyError or KeyUnreadableError
        return problem
    return None


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


#: The name the user sees for a speech-to-speech engine (also ``Loading.component``).
S2S_KIND = "speech to speech"


@dataclass(eq=False)
class AgentEngineSet:
    """One speech-to-speech engine: it hears, answers and speaks (``Settings.pipeline`` is
    ``"s2s"``). Tools go to it natively."""

    s2s: SpeechToSpeech
    owned: bool = True
    calls_tools = True

    async def warm_up(self, emit: Callable[[AppEvent], None], *, announce: bool = True) -> bool:
        """Check the engine (its key); ``Loading`` progress and an ``ErrorEvent`` as for the
        chained set."""
        if announce:
            emit(Loading(S2S_KIND, 0.0, f"Loading {S2S_KIND}…"))
        try:
            await self.s2s.warm_up()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("warming up %s failed: %s", S2S_KIND, exc)
            emit(Loading(S2S_KIND, 1.0, f"{S2S_KIND} failed"))
            emit(ErrorEvent(messages.engine_not_loaded(S2S_KIND, exc), Source.S2S))
            return False
        emit(Loading(S2S_KIND, 1.0, "Speech to speech ready"))
        return True

    async def aclose(self) -> None:
        if self.owned:
            await close_engine(self.s2s)


def build_engine_set(settings: Settings) -> EngineSet | AgentEngineSet:
    """The engines the settings name: the chained set, or the speech-to-speech engine."""
    if settings.pipeline == "s2s":
        return AgentEngineSet(make_s2s(settings.s2s.engine, settings))
    return EngineSet.build(settings)
