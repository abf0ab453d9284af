"""Speech to text with Deepgram's live transcription (``wss://api.deepgram.com/v1/listen``).

Interim results become partials (the turn's settled ``is_final`` segments plus the current
interim); a turn ends on ``speech_final`` or ``UtteranceEnd`` (the server's endpointing) with all
its ``is_final`` segments joined. Push-to-talk release sends ``Finalize``, whose ``from_finalize``
result ends the turn. ``KeepAlive`` goes out whenever no audio has flowed for a few seconds
(Deepgram closes idle sockets after about ten), ``CloseStream`` on close.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from websockets.asyncio.client import ClientConnection

from assistant import secrets
from assistant.config import Settings
from assistant.engines.wsutil import (
    ConnectPolicy,
    Message,
    Outgoing,
    PrewarmedSTT,
    StreamingSTTSession,
    connect,
    server_error_text,
    with_query,
)

log = logging.getLogger(__name__)

ENGINE = "deepgram"
DEFAULT_MODEL = "nova-3"
KEEPALIVE = json.dumps({"type": "KeepAlive"})


def deepgram_language(language: str) -> str:
    """Deepgram's code for ``language`` ("en" is served as US English)."""
    return "en-US" if language.lower() in ("", "en") else language


def listen_url(endpoint: str, model: str, language: str) -> str:
    return with_query(
        endpoint,
        {
            "model": model,
            "language": deepgram_language(language),
            "encoding": "linear16",
            "sample_rate": "16000",
            "channels": "1",
            "interim_results": "true",
            "punctuate": "true",
            "smart_format": "true",
            "vad_events": "true",
            "endpointing": "300",
            "utterance_end_ms": "1000",
        },
    )


class DeepgramSTT(PrewarmedSTT["DeepgramSession"]):
    """The ``SpeechToText`` engine "deepgram"."""

    name = ENGINE
    provides_endpointing = True

    def __init__(
        self,
        endpoint: str,
        *,
        language: str = "en",
        model: str = "",
        final_timeout: float = 2.0,
        keepalive_interval: float = 4.0,
        policy: ConnectPolicy | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.language = language
        self.model = model or DEFAULT_MODEL
        self.final_timeout = final_timeout
        self.keepalive_interval = keepalive_interval
        self.policy = policy or ConnectPolicy()

    def _new_session(self, language: str) -> DeepgramSession:
        return DeepgramSession(self, language)


class DeepgramSession(StreamingSTTSession):
    END_TURN = json.dumps({"type": "Finalize"})
    GOODBYE = json.dumps({"type": "CloseStream"})

    def __init__(self, engine: DeepgramSTT, language: str) -> None:
        self._key = secrets.require_key(ENGINE)
        self._url = listen_url(engine.endpoint, engine.model, language)
        super().__init__(
            ENGINE,
            open_connection=self._open_connection,
            policy=engine.policy,
            batch_seconds=0.06,
            final_timeout=engine.final_timeout,
            keepalive=(engine.keepalive_interval, KEEPALIVE),
        )
        self._segments: list[str] = []
        self._span = (0.0, 0.0)
        #: Seconds of audio sent on this connection; results ending before ``_ignore_before``
        #: belong to audio the session dropped.
        self._sent_seconds = 0.0
        self._ignore_before = 0.0

    async def _open_connection(self) -> ClientConnection:
        headers = {"Authorization": f"Token {self._key}"}
        return await connect(ENGINE, self._url, headers, self.policy)

    def _sent(self, item: Outgoing) -> None:
        super()._sent(item)
        self._sent_seconds += item.audio

    # -------------------------------------------------------------------------------- messages

    def _on_json(self, msg: Message) -> None:
        kind = msg.get("type")
        if kind == "Results":
            self._on_results(msg)
        elif kind == "UtteranceEnd":
            if self._segments:
                self._end_turn()
        elif kind == "Metadata":
            self._finished.set()
        elif kind == "SpeechStarted":
            pass
        elif (text := server_error_text(msg)) is not None:
            log.warning("Deepgram reported: %s", text)
        else:
            log.debug("Deepgram message %r ignored", kind)

    def _on_results(self, msg: Message) -> None:
        start, duration = _float(msg.get("start")), _float(msg.get("duration"))
        if start + duration <= self._ignore_before + 1e-3:
            return
        text = _transcript(msg)
        if self._segments or text:
            first = self._span[0] if self._segments else start
            self._span = (first, start + duration)
        if not msg.get("is_final"):
            self._partial(" ".join([*self._segments, text]), *self._span)
            return
        if text:
            self._segments.append(text)
        if msg.get("from_finalize") and self.end_requested:
            self._end_turn()
        elif msg.get("speech_final") and self._segments:
            self._end_turn()
        elif self._segments:
            self._partial(" ".join(self._segments), *self._span)

    def _end_turn(self) -> None:
        text = " ".join(self._segments)
        self._segments.clear()
        self._final(text, *self._span)

    # ------------------------------------------------------------------------------- turn state

    async def clear(self) -> None:
        await super().clear()
        self._segments.clear()

    def _abandon_turn(self) -> None:
        # Results for audio sent so far are ignored; Finalize flushes them out now.
        self._segments.clear()
        self._ignore_before = self._sent_seconds
        if not self.end_requested:
            self._socket.send(Outgoing(self.END_TURN))

    def _on_new_connection(self) -> None:
        # Timestamps start again at 0; the turn's audio is sent again.
        self._segments.clear()
        self._sent_seconds = 0.0
        self._ignore_before = 0.0


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _transcript(msg: Message) -> str:
    try:
        return str(msg["channel"]["alternatives"][0].get("transcript") or "").strip()
    except (KeyError, IndexError, TypeError, AttributeError):
        return ""


def make_stt(settings: Settings) -> DeepgramSTT:
    provider = settings.provider(ENGINE)
    return DeepgramSTT(settings.endpoint(ENGINE), language=settings.language, model=provider.model)
