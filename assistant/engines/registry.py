"""Engine names → engine objects, wrapped in fallback chains.

The names are the ones used by ``--stt/--llm/--tts`` and in settings. Cloud engines that fail
before producing output fall back to the local engine of the same kind when the settings allow.
"""

from __future__ import annotations

from collections.abc import Callable

from assistant.config import Settings
from assistant.engines.base import LanguageModel, SpeechToText, TextToSpeech
from assistant.engines.fallback import FallbackListener, FallbackLLM, FallbackSTT, FallbackTTS

STT_ENGINES = ("local", "fake")
LLM_ENGINES = ("local", "fake")
TTS_ENGINES = ("local", "fake")


class UnknownEngineError(ValueError):
    def __init__(self, kind: str, name: str, known: tuple[str, ...]) -> None:
        super().__init__(f"unknown {kind} engine {name!r} (choose from: {', '.join(known)})")


def _stt(name: str, settings: Settings) -> SpeechToText:
    if name == "fake":
        from assistant.engines.fake import FakeSTT

        return FakeSTT()
    if name == "local":
        from assistant.engines.local.stt import LocalSTT

        return LocalSTT()
    raise UnknownEngineError("speech-to-text", name, STT_ENGINES)


def _llm(name: str, settings: Settings) -> LanguageModel:
    if name == "fake":
        from assistant.engines.fake import FakeLLM

        return FakeLLM()
    if name == "local":
        from assistant.engines.local.llama_server import LocalLLM

        return LocalLLM(model=settings.local_llm_model)
    raise UnknownEngineError("language model", name, LLM_ENGINES)


def _tts(name: str, settings: Settings) -> TextToSpeech:
    if name == "fake":
        from assistant.engines.fake import FakeTTS

        return FakeTTS()
    if name == "local":
        from assistant.engines.local.tts import LocalTTS

        return LocalTTS()
    raise UnknownEngineError("text-to-speech", name, TTS_ENGINES)


def _chain_names(name: str, settings: Settings, known: tuple[str, ...], kind: str) -> list[str]:
    if name not in known:
        raise UnknownEngineError(kind, name, known)
    names = [name]
    if settings.fallback_to_local and name not in ("local", "fake"):
        names.append("local")
    return names


def build_engines(
    settings: Settings,
    on_fallback: FallbackListener | None = None,
    *,
    stt: str | None = None,
    llm: str | None = None,
    tts: str | None = None,
) -> tuple[FallbackSTT, FallbackLLM, FallbackTTS]:
    """The three engine chains for the given names (default: the settings' choices)."""

    def build[T](kind: str, name: str, known: tuple[str, ...], make: Callable[[str, Settings], T]) -> list[T]:
        return [make(n, settings) for n in _chain_names(name, settings, known, kind)]

    return (
        FallbackSTT(build("speech-to-text", stt or settings.stt, STT_ENGINES, _stt), on_fallback),
        FallbackLLM(build("language model", llm or settings.llm, LLM_ENGINES, _llm), on_fallback),
        FallbackTTS(build("text-to-speech", tts or settings.tts, TTS_ENGINES, _tts), on_fallback),
    )
