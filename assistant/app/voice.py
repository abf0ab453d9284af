"""Choosing a voice: the voices an engine offers, and a sample sentence spoken in one of them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from assistant.audio.player import Player
from assistant.config import Settings
from assistant.engines.base import TextToSpeech, Voice
from assistant.engines.registry import make_tts

log = logging.getLogger(__name__)

#: What the voice preview says, by base language (English otherwise).
SAMPLE_SENTENCES: dict[str, str] = {
    "en": "Hello! This is how I sound. Shall we talk?",
    "de": "Hallo! So klinge ich. Wollen wir uns unterhalten?",
    "fr": "Bonjour ! Voici ma voix. On discute un peu ?",
    "es": "¡Hola! Así suena mi voz. ¿Hablamos?",
    "it": "Ciao! Questa è la mia voce. Parliamo un po'?",
    "pt": "Olá! Esta é a minha voz. Vamos conversar?",
    "nl": "Hallo! Zo klink ik. Zullen we praten?",
}


def sample_sentence(language: str) -> str:
    base = language.replace("_", "-").split("-", 1)[0].lower()
    return SAMPLE_SENTENCES.get(base, SAMPLE_SENTENCES["en"])


def list_voices(
    engine: str, language: str, settings: Settings, current: TextToSpeech | None
) -> list[Voice]:
    """Voices for a picker: the offline catalog for ``local``, else the engine's own list (from
    ``current`` when it is that engine, so no second connection is made)."""
    if engine == "local":
        try:
            from assistant.engines.local.voices import list_voices as offline_voices
        except ImportError:
            return []
        return offline_voices(language)
    if current is not None and getattr(current, "name", "") == engine:
        return current.voices(language)
    try:
        return make_tts(engine, settings).voices(language)
    except Exception as exc:  # a cloud engine without a key cannot list its voices
        log.info("cannot list the voices of %s: %s", engine, exc)
        return []


async def speak_sample(tts: TextToSpeech, player: Player, voice: str, language: str) -> float:
    """Speak the sample sentence for ``language`` through ``player`` and close it.

    Returns the seconds of audio played. Raises EngineError when the engine cannot speak.
    """
    text = sample_sentence(language)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def finished(_turn: int, _position: float, _interrupted: bool) -> None:
        if not done.done():
            done.set_result(None)

    player.on_playback_finished.append(finished)

    async def pieces() -> AsyncIterator[str]:
        yield text

    seconds = 0.0
    try:
        stream = tts.stream(pieces(), voice=voice or None, language=language)
        async with contextlib.aclosing(stream):  # type: ignore[type-var]
            async for chunk in stream:
                if len(chunk.pcm):
                    player.write(chunk.pcm, chunk.sample_rate, 1)
                    seconds += chunk.duration
        player.flush()
        if seconds > 0:
            await asyncio.wait_for(done, seconds + 10.0)
    finally:
        await player.close()
    return seconds
