"""Engine names → engine objects, wrapped in fallback chains.

The names are the ones used by ``--stt/--llm/--tts`` and ``--s2s``, and in settings. Each name
points at a factory ``make_<kind>(settings) -> engine`` in the provider's module, imported only
when used so that a missing optional dependency affects only its own engine. Cloud engines that
fail before producing output fall back to the local engine of the same kind when the settings
allow.
"""

from __future__ import annotations

import dataclasses
import importlib

from assistant.config import Settings
from assistant.engines.base import LanguageModel, SpeechToText, TextToSpeech
from assistant.engines.fallback import FallbackLLM, FallbackSTT, FallbackTTS
from assistant.engines.s2s import SpeechToSpeech

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
    "anthropic": "assistant.engines.claude:make_llm",
    "assemblyai-gateway": "assistant.engines.assemblyai_gateway:make_llm",
    "fake": "assistant.engines.fake:make_llm",
}
TTS_FACTORIES: dict[str, str] = {
    "local": "assistant.engines.local.factories:make_tts",
    "openai": "assistant.engines.openai.speech:make_tts",
    "elevenlabs": "assistant.engines.elevenlabs:make_tts",
    "async": "assistant.engines.asyncai:make_tts",
    "fake": "assistant.engines.fake:make_tts",
}
#: Speech-to-speech engines (``--s2s``; ``Settings.pipeline == "s2s"``). They have no fallback
#: chain: a provider that hears and speaks cannot hand a turn to another midway.
S2S_FACTORIES: dict[str, str] = {
    "openai-realtime": "assistant.engines.openai.agent:make_s2s",
    "assemblyai-agent": "assistant.engines.assemblyai_agent:make_s2s",
    "fake": "assistant.engines.fake_agent:make_s2s",
}
_OFFLINE = ("local", "fake")


class UnknownEngineError(ValueError):
    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        super().__init__(f"unknown {kind} engine {name!r} (choose from: {', '.join(known)})")


@dataclasses.dataclass(frozen=True, slots=True)
class _Kind[E]:
    """One kind of engine: its name in messages and its table of factories."""

    label: str
    factories: dict[str, str]

    def make(self, name: str, settings: Settings) -> E:
        target = self.factories.get(name)
        if target is None:
            raise UnknownEngineError(self.label, name, sorted(self.factories))
        module_name, _, attr = target.partition(":")
        module = importlib.import_module(module_name)
        engine: E = getattr(module, attr)(settings)
        return engine

    def chain(self, name: str, settings: Settings) -> list[E]:
        """The engine and the engines it falls back to, in order."""
        return [
            self.make(n, settings) for n in chain_names(name, settings, self.factories, self.label)
        ]


_STT: _Kind[SpeechToText] = _Kind("speech-to-text", STT_FACTORIES)
_LLM: _Kind[LanguageModel] = _Kind("language model", LLM_FACTORIES)
_TTS: _Kind[TextToSpeech] = _Kind("text-to-speech", TTS_FACTORIES)
_S2S: _Kind[SpeechToSpeech] = _Kind("speech-to-speech", S2S_FACTORIES)


def make_stt(name: str, settings: Settings) -> SpeechToText:
    return _STT.make(name, settings)


def make_llm(name: str, settings: Settings) -> LanguageModel:
    return _LLM.make(name, settings)


def make_tts(name: str, settings: Settings) -> TextToSpeech:
    return _TTS.make(name, settings)


def make_s2s(name: str, settings: Settings) -> SpeechToSpeech:
    return _S2S.make(name, settings)


def chain_names(name: str, settings: Settings, table: dict[str, str], kind: str) -> list[str]:
    """The engine and the engines it falls back to, in order."""
    if name not in table:
        raise UnknownEngineError(kind, name, sorted(table))
    names = [name]
    if settings.fallback_to_local and name not in _OFFLINE:
        names.append("local")
    return names


def build_stt(settings: Settings) -> FallbackSTT:
    return FallbackSTT(_STT.chain(settings.stt, settings))


def build_llm(settings: Settings) -> FallbackLLM:
    return FallbackLLM(_LLM.chain(settings.llm, settings))


def build_tts(settings: Settings) -> FallbackTTS:
    return FallbackTTS(_TTS.chain(settings.tts, settings))


def build_engines(
    settings: Settings,
    *,
    stt: str | None = None,
    llm: str | None = None,
    tts: str | None = None,
) -> tuple[FallbackSTT, FallbackLLM, FallbackTTS]:
    """The three engine chains for the given names (default: the settings' choices)."""
    chosen = dataclasses.replace(
        settings, stt=stt or settings.stt, llm=llm or settings.llm, tts=tts or settings.tts
    )
    return build_stt(chosen), build_llm(chosen), build_tts(chosen)
