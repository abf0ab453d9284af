"""Engine names → engine objects, wrapped in fallback chains.

The names are the ones used by ``--stt/--llm/--tts`` and in settings. Each name points at a
factory ``make_<kind>(settings) -> engine`` in the provider's module, imported only when used so
that a missing optional dependency affects only its own engine. Cloud engines that fail before
producing output fall back to the local engine of the same kind when the settings allow.
"""

from __future__ import annotations

import importlib
from typing import Any

from assistant.config import Settings
from assistant.engines.base import LanguageModel, SpeechToText, TextToSpeech
from assistant.engines.fallback import FallbackLLM, FallbackSTT, FallbackTTS

STT_FACTORIES: dict[str, str] = {
    "local": "assistant.engines.local.factories:make_stt",
    "openai": "assistant.engines.openai.realtime:make_stt",
    "assemblyai": "assistant.engines.assemblyai:make_stt",
    "deepgram": "assistant.engines.deepgram:make_stt",
    "fake": "assistant.engines.fake:make_stt",
}
LLM_FACTORIES: dict[str, str] = {
    "local": "assistant.engines.local.factories:make_llm",
    "openai": "assistant.engines.openai.factories:make_llm",
    "openai_compatible": "assistant.engines.openai.factories:make_compatible_llm",
    "fake": "assistant.engines.fake:make_llm",
}
TTS_FACTORIES: dict[str, str] = {
    "local": "assistant.engines.local.factories:make_tts",
    "openai": "assistant.engines.openai.speech:make_tts",
    "elevenlabs": "assistant.engines.elevenlabs:make_tts",
    "async": "assistant.engines.asyncai:make_tts",
    "fake": "assistant.engines.fake:make_tts",
}
_OFFLINE = ("local", "fake")


class UnknownEngineError(ValueError):
    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        super().__init__(f"unknown {kind} engine {name!r} (choose from: {', '.join(known)})")


def _make(kind: str, table: dict[str, str], name: str, settings: Settings) -> Any:
    target = table.get(name)
    if target is None:
        raise UnknownEngineError(kind, name, sorted(table))
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr)(settings)


def make_stt(name: str, settings: Settings) -> SpeechToText:
    engine: SpeechToText = _make("speech-to-text", STT_FACTORIES, name, settings)
    return engine


def make_llm(name: str, settings: Settings) -> LanguageModel:
    engine: LanguageModel = _make("language model", LLM_FACTORIES, name, settings)
    return engine


def make_tts(name: str, settings: Settings) -> TextToSpeech:
    engine: TextToSpeech = _make("text-to-speech", TTS_FACTORIES, name, settings)
    return engine


def chain_names(name: str, settings: Settings, table: dict[str, str], kind: str) -> list[str]:
    """The engine and the engines it falls back to, in order."""
    if name not in table:
        raise UnknownEngineError(kind, name, sorted(table))
    names = [name]
    if settings.fallback_to_local and name not in _OFFLINE:
        names.append("local")
    return names


def build_engines(
    settings: Settings,
    *,
    stt: str | None = None,
    llm: str | None = None,
    tts: str | None = None,
) -> tuple[FallbackSTT, FallbackLLM, FallbackTTS]:
    """The three engine chains for the given names (default: the settings' choices)."""
    stt_names = chain_names(stt or settings.stt, settings, STT_FACTORIES, "speech-to-text")
    llm_names = chain_names(llm or settings.llm, settings, LLM_FACTORIES, "language model")
    tts_names = chain_names(tts or settings.tts, settings, TTS_FACTORIES, "text-to-speech")
    return (
        FallbackSTT([make_stt(n, settings) for n in stt_names]),
        FallbackLLM([make_llm(n, settings) for n in llm_names]),
        FallbackTTS([make_tts(n, settings) for n in tts_names]),
    )
