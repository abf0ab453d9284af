"""Text to speech with ElevenLabs' multi-context websocket (``/multi-stream-input``).

One socket per voice, opened ahead of the first reply and reused across replies; each reply is
one context on it. Text pieces go out as they arrive (each ending with a space, each flushed so
speech starts without waiting for the server's buffer to fill); the end of the reply closes the
context, whose ``isFinal`` ends the stream. A barge-in closes just that context: the socket stays
open for the next reply. The server's character alignment places each piece on the audio
timeline, so an interrupted reply keeps exactly the words that were played.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable
from typing import Any

from websockets.asyncio.client import ClientConnection

from assistant import secrets
from assistant.config import Settings
from assistant.engines.base import SpeechChunk, Voice
from assistant.engines.wsutil import (
    ConnectPolicy,
    ContextSocket,
    Message,
    PieceTracker,
    VoiceCache,
    WireEvent,
    connect,
    context_of,
    fetch_json,
    http_base,
    server_error_text,
    speak,
    with_query,
)

ENGINE = "elevenlabs"
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


def stream_url(endpoint: str, voice_id: str, model: str) -> str:
    base = endpoint.rstrip("/").removesuffix("/v1")
    return with_query(
        f"{base}/v1/text-to-speech/{voice_id}/multi-stream-input",
        {"model_id": model, "output_format": f"pcm_{SAMPLE_RATE}", "inactivity_timeout": "180"},
    )


def alignment_of(msg: Message) -> tuple[list[str] | None, list[float] | None]:
    """Characters and their start times (ms, within this message's audio).

    The alignment of the text as sent is preferred over the normalized one (it matches the
    pieces character for character). Start times missing? They follow from the durations,
    whichever way the server spells that key.
    """
    for key in ("alignment", "normalizedAlignment", "normalized_alignment"):
        block = msg.get(key)
        if not isinstance(block, dict) or not block.get("chars"):
            continue
        chars = [str(c) for c in block["chars"]]
        starts = block.get("charStartTimesMs") or block.get("char_start_times_ms")
        if not starts:
            durations = block.get("charDurationsMs") or block.get("charsDurationsMs") or []
            starts, t = [], 0.0
            for d in durations:
                starts.append(t)
                t += float(d)
        try:
            times = [float(s) for s in starts]
        except (TypeError, ValueError):
            continue
        if len(times) == len(chars):
            return chars, times
    return None, None


class _Wire:
    engine = ENGINE

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

    def read(self, msg: Message) -> WireEvent:
        if (error := server_error_text(msg)) is not None:
            return WireEvent(error=error)
        chars, starts = alignment_of(msg)
        final = bool(msg.get("isFinal") or msg.get("is_final"))
        return WireEvent(str(msg.get("audio") or ""), chars, starts, final)


class ElevenLabsTTS:
    """The ``TextToSpeech`` engine "elevenlabs"."""

    name = ENGINE
    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        endpoint: str,
        *,
        voice: str = "",
        model: str = "",
        policy: ConnectPolicy | None = None,
        keepalive_interval: float = 10.0,
    ) -> None:
        self.endpoint = endpoint
        self.default_voice = voice
        self.model = model or DEFAULT_MODEL
        self.policy = policy or ConnectPolicy()
        self.keepalive_interval = keepalive_interval
        self._sockets: dict[str, ContextSocket] = {}
        self.voice_cache = VoiceCache(ENGINE, self._fetch_voices, premade_voices)

    def voice_id(self, voice: str | None) -> str:
        """ElevenLabs' id for ``voice`` ("elevenlabs:ID" or a bare id); other engines' voices
        and no voice at all mean the configured default."""
        for candidate in (voice, self.default_voice):
            if not candidate:
                continue
            engine, sep, key = candidate.partition(":")
            if not sep:
                return candidate
            if engine == ENGINE and key:
                return key
        return DEFAULT_VOICE

    def socket(self, voice_id: str) -> ContextSocket:
        found = self._sockets.get(voice_id)
        if found is None:
            url = stream_url(self.endpoint, voice_id, self.model)

            async def open_connection() -> ClientConnection:
                headers = {"xi-api-key": secrets.require_key(ENGINE)}
                return await connect(ENGINE, url, headers, self.policy)

            found = ContextSocket(ENGINE, open_connection=open_connection, context_of=context_of)
            self._sockets[voice_id] = found
        return found

    def stream(
        self, pieces: AsyncIterable[str], *, voice: str | None, language: str
    ) -> AsyncGenerator[SpeechChunk, None]:
        return speak(
            self.socket(self.voice_id(voice)),
            _Wire(),
            pieces,
            PieceTracker(SAMPLE_RATE),
            self.policy,
            keepalive_interval=self.keepalive_interval,
        )

    async def warm_up(self) -> None:
        """Open the default voice's socket, and fetch the voice list in the background."""
        self.voice_cache.prefetch()
        await self.socket(self.voice_id(None)).ensure()

    async def aclose(self) -> None:
        for socket in self._sockets.values():
            await socket.aclose({"close_socket": True})
        self._sockets.clear()

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
        data = await fetch_json(ENGINE, url, headers={"xi-api-key": secrets.require_key(ENGINE)})
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
    if not isinstance(item, dict) or not item.get("voice_id"):
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
    return ElevenLabsTTS(settings.endpoint(ENGINE), voice=provider.voice, model=provider.model)
