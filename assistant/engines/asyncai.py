"""Text to speech with Async's websocket API (``wss://api.async.com/text_to_speech/websocket/ws``).

One socket per voice and language (the voice is chosen in the message that opens the socket),
opened ahead of the first reply and reused; each reply is one context on it. Pieces go out as they
arrive with ``force`` so speech starts at once; the end of the reply closes the context, whose
``final`` ends the stream; a barge-in closes just that context. A ``{"transcript": " "}`` keeps
an idle socket open. Async sends no timings, so each piece's share of the audio is estimated
from its length at a speaking rate learned from earlier replies.

The key travels in the URL's query, as the API requires; URLs are never logged, and the
websocket library's own log is scrubbed.
"""

from __future__ import annotations

import contextlib
import json
import logging
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

log = logging.getLogger(__name__)

ENGINE = "async"
API_VERSION = "v1"
DEFAULT_MODEL = "async_flash_v1.5"
SAMPLE_RATE = 24_000
#: The default voice of Async's streaming API.
DEFAULT_VOICE = "e0f39dc4-f691-4e78-bba5-5c636692cc04"
LANGUAGES = frozenset(
    "en fr es de it pt nl ar ru ro ja he hy tr hi zh".split()
)  # what the multilingual models speak
KEEPALIVE: Message = {"transcript": " "}
#: Speaking rate assumed before a reply has been measured (characters per second).
INITIAL_RATE = 15.0


def socket_url(endpoint: str, key: str) -> str:
    return with_query(endpoint, {"api_key": key, "version": API_VERSION})


def init_message(model: str, voice_id: str, language: str) -> Message:
    return {
        "model_id": model,
        "voice": {"mode": "id", "id": voice_id},
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": SAMPLE_RATE},
        "language": language,
    }


def async_language(language: str) -> str:
    base = language.lower().split("-")[0].split("_")[0] or "en"
    if base not in LANGUAGES:
        log.warning("Async speaks no %r; asking for it anyway", language)
    return base


class _Wire:
    engine = ENGINE

    def opening(self, context: str, text: str) -> list[Message]:
        return [self.text(context, text)]

    def text(self, context: str, text: str) -> Message:
        return {"transcript": text, "context_id": context, "force": True}

    def closing(self, context: str) -> Message:
        return {"context_id": context, "close_context": True, "transcript": ""}

    def keepalive(self, context: str) -> Message | None:
        return None  # the socket-wide keep-alive covers contexts too

    def read(self, msg: Message) -> WireEvent:
        if (error := server_error_text(msg)) is not None:
            return WireEvent(error=error)
        final = msg.get("final") is True or msg.get("isFinal") is True
        return WireEvent(str(msg.get("audio") or ""), final=final)


class AsyncTTS:
    """The ``TextToSpeech`` engine "async"."""

    name = ENGINE
    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        endpoint: str,
        *,
        voice: str = "",
        model: str = "",
        language: str = "en",
        policy: ConnectPolicy | None = None,
        keepalive_interval: float = 10.0,
        voices_url: str = "",
    ) -> None:
        self.endpoint = endpoint
        self.default_voice = voice
        self.model = model or DEFAULT_MODEL
        self.language = language
        self.policy = policy or ConnectPolicy()
        self.keepalive_interval = keepalive_interval
        self.voices_url = voices_url or f"{http_base(endpoint)}/voices"
        self.chars_per_second = INITIAL_RATE
        self.voice_cache = VoiceCache(ENGINE, self._fetch_voices, default_voices)
        self._sockets: dict[tuple[str, str], ContextSocket] = {}

    def voice_id(self, voice: str | None) -> str:
        """Async's id for ``voice`` ("async:ID" or a bare id); other engines' voices and no voice
        at all mean the configured default."""
        for candidate in (voice, self.default_voice):
            if not candidate:
                continue
            engine, sep, key = candidate.partition(":")
            if not sep:
                return candidate
            if engine == ENGINE and key:
                return key
        return DEFAULT_VOICE

    def socket(self, voice_id: str, language: str) -> ContextSocket:
        slot = (voice_id, async_language(language))
        found = self._sockets.get(slot)
        if found is None:
            init = init_message(self.model, *slot)

            async def open_connection() -> ClientConnection:
                url = socket_url(self.endpoint, secrets.require_key(ENGINE))
                return await connect(ENGINE, url, {}, self.policy)

            async def after_connect(ws: ClientConnection) -> None:
                await ws.send(json.dumps(init))

            found = ContextSocket(
                ENGINE,
                open_connection=open_connection,
                context_of=context_of,
                after_connect=after_connect,
                keepalive=(self.keepalive_interval, KEEPALIVE),
            )
            self._sockets[slot] = found
        return found

    async def stream(
        self, pieces: AsyncIterable[str], *, voice: str | None, language: str
    ) -> AsyncGenerator[SpeechChunk, None]:
        socket = self.socket(self.voice_id(voice), language or self.language)
        tracker = PieceTracker(SAMPLE_RATE, self.chars_per_second)
        async with contextlib.aclosing(
            speak(socket, _Wire(), pieces, tracker, self.policy)
        ) as chunks:
            async for chunk in chunks:
                yield chunk
        self._learn_rate(tracker)

    def _learn_rate(self, tracker: PieceTracker) -> None:
        """Follow the voice's speaking rate, so the next reply's pieces are placed better."""
        chars = sum(len(t) for t in tracker.texts)
        if tracker.audio_seconds >= 1.0 and chars:
            measured = chars / tracker.audio_seconds
            self.chars_per_second = 0.7 * self.chars_per_second + 0.3 * measured

    async def warm_up(self) -> None:
        """Open the default voice's socket, and fetch the voice list in the background."""
        self.voice_cache.prefetch()
        await self.socket(self.voice_id(None), self.language).ensure()

    async def aclose(self) -> None:
        for socket in self._sockets.values():
            await socket.aclose()
        self._sockets.clear()

    # ---------------------------------------------------------------------------------- voices

    def voices(self, language: str | None = None) -> list[Voice]:
        """The account's voices (``POST /voices``, fetched once, then cached); the default voice
        until then. With ``language``, voices of that language (all, when none match)."""
        voices = self.voice_cache.get()
        if language:
            base = language.lower().split("-")[0]
            matching = [v for v in voices if v.language.lower().split("-")[0] == base]
            return matching or voices
        return voices

    async def load_voices(self) -> list[Voice]:
        return await self.voice_cache.load()

    async def _fetch_voices(self) -> list[Voice]:
        headers = {
            "x-api-key": secrets.require_key(ENGINE),
            "version": API_VERSION,
            "Content-Type": "application/json",
        }
        data = await fetch_json(ENGINE, self.voices_url, headers=headers, method="POST", body=b"{}")
        items = data.get("voices") if isinstance(data, dict) else data
        return [v for item in items or [] if (v := _voice(item)) is not None]


def default_voices() -> list[Voice]:
    voice = Voice(
        f"{ENGINE}:{DEFAULT_VOICE}", "Default", "en", ENGINE, SAMPLE_RATE, "default voice"
    )
    return [voice]


def _voice(item: Any) -> Voice | None:
    if not isinstance(item, dict):
        return None
    vid = item.get("voice_id") or item.get("id")
    if not vid:
        return None
    language = item.get("language") or ""
    if not language and isinstance(item.get("languages"), list) and item["languages"]:
        language = item["languages"][0]
    traits = [str(item[k]) for k in ("gender", "accent", "style") if isinstance(item.get(k), str)]
    return Voice(
        f"{ENGINE}:{vid}",
        str(item.get("name") or vid),
        str(language or "en"),
        ENGINE,
        SAMPLE_RATE,
        ", ".join(traits) or str(item.get("description") or ""),
    )


def make_tts(settings: Settings) -> AsyncTTS:
    provider = settings.provider(ENGINE)
    return AsyncTTS(
        settings.endpoint(ENGINE),
        voice=provider.voice,
        model=provider.model,
        language=settings.language,
    )
