"""Text to speech with Async's websocket API (``wss://api.async.com/text_to_speech/websocket/ws``).

One socket per voice and language (the voice is chosen in the message that opens the socket),
opened ahead of the first reply and reused; each reply is one context on it. Wire rules
(``AsyncWire``, no I/O): pieces go out as they arrive with ``force`` so speech starts at once;
the end of the reply closes the context, whose ``final`` ends the stream; a barge-in closes just
that context. A ``{"transcript": " "}`` keeps an idle socket open. Older servers send
``{"type": "audioOutput"}`` without a context. Async sends no timings, so each piece's share of
the audio is estimated from its length at a speaking rate learned from earlier replies.

The key travels in the URL's query, as the API requires; URLs are never logged unscrubbed.
"""

from __future__ import annotations

import logging
from dataclasses import KW_ONLY, dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection

from assistant import secrets
from assistant.config import Settings
from assistant.engines.base import Voice
from assistant.engines.net.errors import Service
from assistant.engines.net.http import HttpClient
from assistant.engines.net.messages import Message, flag, items, server_error_text, text
from assistant.engines.net.tts_driver import MultiContextTTS, TtsSocket
from assistant.engines.net.tts_protocol import ContextEvent, context_of
from assistant.engines.net.urls import http_base, with_query
from assistant.engines.net.voices import VoiceCache
from assistant.engines.net.websocket import connect
from assistant.engines.pieces import PieceTracker

log = logging.getLogger(__name__)

ENGINE = "async"
SERVICE = Service.of(ENGINE)
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


class AsyncWire:
    """Async's multi-context messages; ``init`` configures a new socket's voice."""

    service = SERVICE

    def __init__(self, init: Message) -> None:
        self.init = init

    def greeting(self) -> list[Message]:
        return [self.init]

    def opening(self, context: str, text: str) -> list[Message]:
        return [self.text(context, text)]

    def text(self, context: str, text: str) -> Message:
        return {"transcript": text, "context_id": context, "force": True}

    def closing(self, context: str) -> Message:
        return {"context_id": context, "close_context": True, "transcript": ""}

    def keepalive(self, context: str) -> Message | None:
        return None  # the socket-wide keep-alive covers contexts too

    def goodbye(self) -> Message | None:
        return None

    def context_of(self, msg: Message) -> str | None:
        return context_of(msg)

    def read(self, msg: Message) -> ContextEvent:
        if (error := server_error_text(msg)) is not None:
            return ContextEvent(error=error)
        return ContextEvent(text(msg, "audio"), final=flag(msg, "final", "isFinal"))


@dataclass(eq=False)
class AsyncTTS(MultiContextTTS):
    """The ``TextToSpeech`` engine "async"."""

    name = ENGINE
    sample_rate = SAMPLE_RATE
    default_voice_id = DEFAULT_VOICE

    _: KW_ONLY
    model: str = DEFAULT_MODEL
    voices_url: str = ""

    def __post_init__(self) -> None:
        self.voices_url = self.voices_url or f"{http_base(self.endpoint)}/voices"
        self.chars_per_second = INITIAL_RATE
        self._http = HttpClient(SERVICE, self.policy)
        self.voice_cache = VoiceCache(SERVICE.label, self._fetch_voices, default_voices)

    def _slot(self, voice_id: str, language: str) -> tuple[str, ...]:
        return (voice_id, async_language(language))

    def _open_socket(self, slot: tuple[str, ...]) -> TtsSocket:
        async def open_connection() -> ClientConnection:
            url = socket_url(self.endpoint, await secrets.arequire_key(ENGINE))
            return await connect(SERVICE, url, {}, self.policy)

        wire = AsyncWire(init_message(self.model, *slot))
        return TtsSocket(
            wire,
            connect=open_connection,
            policy=self.policy,
            keepalive=(self.keepalive_interval, KEEPALIVE),
        )

    def _tracker(self) -> PieceTracker:
        return PieceTracker(SAMPLE_RATE, self.chars_per_second)

    def _spoken(self, tracker: PieceTracker) -> None:
        """Follow the voice's speaking rate, so the next reply's pieces are placed better."""
        chars = sum(len(t) for t in tracker.texts)
        if tracker.audio_seconds >= 1.0 and chars:
            measured = chars / tracker.audio_seconds
            self.chars_per_second = 0.7 * self.chars_per_second + 0.3 * measured

    async def warm_up(self) -> None:
        """Open the default voice's socket, and fetch the voice list in the background."""
        self.voice_cache.prefetch()
        await super().warm_up()

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
            "x-api-key": await secrets.arequire_key(ENGINE),
            "version": API_VERSION,
            "Content-Type": "application/json",
        }
        data = await self._http.request_json("POST", self.voices_url, headers=headers, body=b"{}")
        found = data.get("voices") if isinstance(data, dict) else data
        return [v for item in items(found) if (v := _voice(item)) is not None]


def default_voices() -> list[Voice]:
    voice = Voice(
        f"{ENGINE}:{DEFAULT_VOICE}", "Default", "en", ENGINE, SAMPLE_RATE, "default voice"
    )
    return [voice]


def _voice(item: Any) -> Voice | None:
    if not isinstance(item, dict):
        return None
    vid = item.get("voice_id") or item.get("id")
    if not isinstance(vid, str) or not vid:
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
        model=provider.model or DEFAULT_MODEL,
        language=settings.language,
    )
