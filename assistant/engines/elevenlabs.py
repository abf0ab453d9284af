"""Text to speech with ElevenLabs' multi-context websocket (``/multi-stream-input``).

One socket per voice, opened ahead of the first reply and reused across replies; each reply is
one context on it. Wire rules (``ElevenLabsWire``, no I/O): a context opens with a single space
and the voice settings; text pieces go out as they arrive, each ending with a space and flushed
so speech starts without waiting for the server's buffer to fill; the end of the reply closes the
context, whose ``isFinal`` ends the stream. A barge-in closes just that context: the socket stays
open for the next reply. The server's character alignment (of the text as sent, else the
normalized one) places each piece on the audio timeline, so an interrupted reply keeps exactly
the words that were played. Responses name their context as ``contextId`` or ``context_id``.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection

from assistant import secrets
from assistant.config import Settings
from assistant.engines.base import Voice
from assistant.engines.net.errors import Service
from assistant.engines.net.http import HttpClient
from assistant.engines.net.messages import Message, flag, server_error_text, text
from assistant.engines.net.tts_driver import MultiContextTTS, TtsSocket
from assistant.engines.net.tts_protocol import ContextEvent, alignment_in, context_of
from assistant.engines.net.urls import http_base, with_query
from assistant.engines.net.voices import VoiceCache
from assistant.engines.net.websocket import connect
from assistant.engines.pieces import PieceTracker

ENGINE = "elevenlabs"
SERVICE = Service.of(ENGINE)
DEFAULT_MODEL = "eleven_flash_v2_5"
SAMPLE_RATE = 24_000
VOICE_SETTINGS = {"stability": 0.5, "similarity_boost": 0.8}
#: "George", one of the premade voices every account has.
DEFAULT_VOICE = "JBFqnCBsd6RMkjVDRZzb"
#: Premade voices, listed when the account's voice list cannot be fetched.
PREMADE_VOICES = (
    ("JBFqnCBsd6RMkjVDRZzb", "George", "en-GB", "warm, British"),
    ("21m00Tcm4TlvDq8ikWAM", "Rachel", "en-US", "calm, American"),
    ("EXAVITQu4vr4xnSDxMaL", "Sarah", "en-US", "soft, American"),
    ("pNInz6obpgDQGcFmaJgB", "Adam", "en-US", "deep, American"),
    ("onwK4e9ZLuTAKqWW03F9", "Daniel", "en-GB", "authoritative, British"),
    ("XrExE9yKIg1WjnnlVkGX", "Matilda", "en-US", "warm, American"),
)
#: Where a message's alignment may be, best first: the text as sent matches the pieces
#: character for character.
ALIGNMENT_KEYS = ("alignment", "normalizedAlignment", "normalized_alignment")


def stream_url(endpoint: str, voice_id: str, model: str) -> str:
    base = endpoint.rstrip("/").removesuffix("/v1")
    return with_query(
        f"{base}/v1/text-to-speech/{voice_id}/multi-stream-input",
        {"model_id": model, "output_format": f"pcm_{SAMPLE_RATE}", "inactivity_timeout": "180"},
    )


def alignment_of(msg: Message) -> tuple[list[str] | None, list[float] | None]:
    """Characters and their start times (ms, within this message's audio), if the message has
    a usable alignment."""
    return alignment_in(msg, ALIGNMENT_KEYS)


class ElevenLabsWire:
    """ElevenLabs' multi-context messages."""

    service = SERVICE

    def greeting(self) -> list[Message]:
        return []

    def opening(self, context: str, text: str) -> list[Message]:
        init = {"text": " ", "voice_settings": VOICE_SETTINGS, "context_id": context}
        return [init, self.text(context, text)]

    def text(self, context: str, text: str) -> Message:
        return {"text": text, "context_id": context, "flush": True}

    def closing(self, context: str) -> Message:
        return {"context_id": context, "close_context": True}

    def keepalive(self, context: str) -> Message | None:
        # Empty text keeps a context alive without ending it (multi-context sockets only).
        return {"context_id": context, "text": ""}

    def goodbye(self) -> Message | None:
        return {"close_socket": True}

    def context_of(self, msg: Message) -> str | None:
        return context_of(msg)

    def read(self, msg: Message) -> ContextEvent:
        if (error := server_error_text(msg)) is not None:
            return ContextEvent(error=error)
        chars, starts = alignment_of(msg)
        return ContextEvent(text(msg, "audio"), chars, starts, flag(msg, "isFinal", "is_final"))


@dataclass(eq=False)
class ElevenLabsTTS(MultiContextTTS):
    """The ``TextToSpeech`` engine "elevenlabs"."""

    name = ENGINE
    sample_rate = SAMPLE_RATE
    default_voice_id = DEFAULT_VOICE

    keeps_contexts_alive = True

    _: KW_ONLY
    model: str = DEFAULT_MODEL

    def __post_init__(self) -> None:
        self._http = HttpClient(SERVICE, self.policy)
        self.voice_cache = VoiceCache(SERVICE.label, self._fetch_voices, premade_voices)

    def _open_socket(self, slot: tuple[str, ...]) -> TtsSocket:
        url = stream_url(self.endpoint, slot[0], self.model)

        async def open_connection() -> ClientConnection:
            headers = {"xi-api-key": await secrets.arequire_key(ENGINE)}
            return await connect(SERVICE, url, headers, self.policy)

        return TtsSocket(ElevenLabsWire(), connect=open_connection, policy=self.policy)

    def _tracker(self) -> PieceTracker:
        return PieceTracker(SAMPLE_RATE)

    async def warm_up(self) -> None:
        """Open the default voice's socket, and fetch the voice list in the background."""
        self.voice_cache.prefetch()
        await super().warm_up()

    # ---------------------------------------------------------------------------------- voices

    def voices(self, language: str | None = None) -> list[Voice]:
        """The account's voices (fetched once, then cached); premade ones until then. Every voice
        speaks every language of the multilingual model: ``language`` only orders the list."""
        voices = self.voice_cache.get()
        if language:
            base = language.lower().split("-")[0]
            voices.sort(key=lambda v: v.language.lower().split("-")[0] != base)
        return voices

    async def load_voices(self) -> list[Voice]:
        """Fetch the account's voices now (``GET /v1/voices``) and cache them."""
        return await self.voice_cache.load()

    async def _fetch_voices(self) -> list[Voice]:
        url = f"{http_base(self.endpoint)}/v1/voices"
        headers = {"xi-api-key": await secrets.arequire_key(ENGINE)}
        data = await self._http.request_json("GET", url, headers=headers)
        return [v for item in _items(data) if (v := _voice(item)) is not None]


def premade_voices() -> list[Voice]:
    return [
        Voice(f"{ENGINE}:{vid}", name, language, ENGINE, SAMPLE_RATE, description)
        for vid, name, language, description in PREMADE_VOICES
    ]


def _items(data: Any) -> list[Any]:
    voices = data.get("voices") if isinstance(data, dict) else None
    return voices if isinstance(voices, list) else []


def _voice(item: Any) -> Voice | None:
    if not isinstance(item, dict) or not isinstance(item.get("voice_id"), str):
        return None
    if not item["voice_id"]:
        return None
    found = item.get("labels")
    labels: dict[str, Any] = found if isinstance(found, dict) else {}
    verified = item.get("verified_languages")
    language = labels.get("language") or ""
    if not language and isinstance(verified, list) and verified and isinstance(verified[0], dict):
        language = verified[0].get("language") or ""
    traits = ("description", "accent", "gender")
    described = ", ".join(str(labels[k]) for k in traits if labels.get(k))
    return Voice(
        f"{ENGINE}:{item['voice_id']}",
        str(item.get("name") or item["voice_id"]),
        str(language or "en"),
        ENGINE,
        SAMPLE_RATE,
        described or str(item.get("category") or ""),
    )


def make_tts(settings: Settings) -> ElevenLabsTTS:
    provider = settings.provider(ENGINE)
    model = provider.model or DEFAULT_MODEL
    return ElevenLabsTTS(settings.endpoint(ENGINE), voice=provider.voice, model=model)
