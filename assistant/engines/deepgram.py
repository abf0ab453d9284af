"""Speech to text with Deepgram's live transcription (``wss://api.deepgram.com/v1/listen``).

Wire rules (``DeepgramWire``, no I/O): interim results become partials (the turn's settled
``is_final`` segments plus the current interim); a turn ends on ``speech_final`` or
``UtteranceEnd`` (the server's endpointing) with all its ``is_final`` segments joined.
Push-to-talk release sends ``Finalize``, whose ``from_finalize`` result ends the turn.
``KeepAlive`` goes out whenever no audio has flowed for a few seconds (Deepgram closes idle
sockets after about ten), ``CloseStream`` → ``Metadata`` on close. Timestamps start again at 0
on each connection.
"""

from __future__ import annotations

import logging
from dataclasses import KW_ONLY, dataclass
from typing import Any

from assistant.config import Settings
from assistant.engines.net.errors import Service
from assistant.engines.net.messages import (
    Message,
    Outgoing,
    flag,
    items,
    number,
    obj,
    text,
)
from assistant.engines.net.stt_driver import PrewarmedSTT
from assistant.engines.net.stt_protocol import EndpointedWire
from assistant.engines.net.urls import with_query

log = logging.getLogger(__name__)

ENGINE = "deepgram"
SERVICE = Service.of(ENGINE)
DEFAULT_MODEL = "nova-3"
KEEPALIVE = Outgoing.json({"type": "KeepAlive"})


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


class DeepgramWire(EndpointedWire):
    """Deepgram live transcription's messages and turn rules."""

    service = SERVICE
    END_TURN = Outgoing.json({"type": "Finalize"})
    GOODBYE = Outgoing.json({"type": "CloseStream"})
    FINISHED = "Metadata"

    def __init__(
        self,
        endpoint: str,
        language: str,
        *,
        model: str = DEFAULT_MODEL,
        final_timeout: float = 2.0,
        keepalive_interval: float = 4.0,
    ) -> None:
        url = listen_url(endpoint, model, language)
        super().__init__(url, language, batch_seconds=0.06, final_timeout=final_timeout)
        self.keepalive = (keepalive_interval, KEEPALIVE)
        self._segments: list[str] = []
        self._span = (0.0, 0.0)
        #: Seconds of audio sent on this connection; results ending before ``_ignore_before``
        #: belong to audio the session dropped.
        self._sent_seconds = 0.0
        self._ignore_before = 0.0

    def headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Token {key}"}

    def sent(self, item: Outgoing, now: float) -> None:
        super().sent(item, now)
        self._sent_seconds += item.audio

    def _on_message(self, kind: str | None, msg: Message, now: float) -> bool:
        if kind == "Results":
            self._on_results(msg)
        elif kind == "UtteranceEnd" and self._segments:
            self._end_turn()
        return kind in ("Results", "UtteranceEnd", "SpeechStarted")

    def _on_results(self, msg: Message) -> None:
        start, duration = number(msg.get("start")), number(msg.get("duration"))
        if start + duration <= self._ignore_before + 1e-3:
            return
        said = _transcript(msg)
        if not said and _unreadable_transcript(msg):
            self._unreadable("a transcript that is not text")
        if self._segments or said:
            first = self._span[0] if self._segments else start
            self._span = (first, start + duration)
        if not flag(msg, "is_final"):
            self._partial(" ".join([*self._segments, said]), *self._span)
            return
        if said:
            self._segments.append(said)
        if flag(msg, "from_finalize") and self.end_requested:
            self._end_turn()
        elif flag(msg, "speech_final") and self._segments:
            self._end_turn()
        elif self._segments:
            self._partial(" ".join(self._segments), *self._span)

    def _end_turn(self) -> None:
        said = " ".join(self._segments)
        self._segments.clear()
        self._final(said, *self._span)

    def clear(self, now: float) -> None:
        super().clear(now)
        self._segments.clear()

    def _abandon_turn(self) -> None:
        # Results for audio sent so far are ignored; Finalize flushes them out now.
        self._segments.clear()
        self._ignore_before = self._sent_seconds
        if not self.end_requested:
            self._out.append(self.END_TURN)

    def _new_connection(self) -> None:
        self._segments.clear()
        self._sent_seconds = 0.0
        self._ignore_before = 0.0


def _transcript(msg: Message) -> str:
    alternatives = items(obj(msg, "channel").get("alternatives"))
    first: Any = alternatives[0] if alternatives else None
    return text(first, "transcript").strip() if isinstance(first, dict) else ""


def _unreadable_transcript(msg: Message) -> bool:
    """The result carries a transcript field that is there but not text."""
    alternatives = items(obj(msg, "channel").get("alternatives"))
    first: Any = alternatives[0] if alternatives else None
    value = first.get("transcript") if isinstance(first, dict) else None
    return value is not None and not isinstance(value, str)


@dataclass(eq=False)
class DeepgramSTT(PrewarmedSTT):
    """The ``SpeechToText`` engine "deepgram"."""

    name = ENGINE
    provider = ENGINE
    provides_endpointing = True

    _: KW_ONLY
    model: str = DEFAULT_MODEL
    final_timeout: float = 2.0
    #: ``KeepAlive`` after this long without audio.
    keepalive_interval: float = 4.0

    def _wire(self, language: str) -> DeepgramWire:
        return DeepgramWire(
            self.endpoint,
            language,
            model=self.model,
            final_timeout=self.final_timeout,
            keepalive_interval=self.keepalive_interval,
        )


def make_stt(settings: Settings) -> DeepgramSTT:
    provider = settings.provider(ENGINE)
    return DeepgramSTT(
        settings.endpoint(ENGINE), language=settings.language, model=provider.model or DEFAULT_MODEL
    )
