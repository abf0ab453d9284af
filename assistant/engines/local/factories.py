"""Registry factories for the embedded engines (names ``local`` in settings and on the CLI)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from assistant.config import Settings

if TYPE_CHECKING:
    from assistant.engines.local.llm import LocalLLM
    from assistant.engines.local.stt import LocalSTT
    from assistant.engines.local.tts import LocalTTS


def make_stt(settings: Settings) -> LocalSTT:
    from assistant.engines.local.stt import LocalSTT
    from assistant.languages import whisper_codes

    return LocalSTT(
        language=settings.language,
        detect_language=settings.detect_language,
        languages=whisper_codes(settings) if settings.detect_language else None,
    )


def make_llm(settings: Settings) -> LocalLLM:
    from assistant.engines.base import Message
    from assistant.engines.local.llm import LocalLLM

    # The system prompt starts every request: read it in while the other engines load (the
    # session reads the rest, the tools, the language and the history, once it starts).
    warm = [Message("system", settings.system_prompt)]
    return LocalLLM(model=settings.local_llm_model, warm_prompt=warm)


def make_tts(settings: Settings) -> LocalTTS:
    from assistant.engines.local.tts import LocalTTS

    return LocalTTS(language=settings.language, voice=settings.voice or None)
