"""Speech to text with AssemblyAI Streaming v3 (``wss://streaming.assemblyai.com/v3/ws``).

Wire rules (``AssemblyAIWire``, no I/O): 16 kHz s16le audio in binary messages of 50–1000 ms
(the capture path's 32 ms frames are batched to ~100 ms, a short last one padded), never faster
than real time (audio pushed faster — ``parley talk --pace fast`` — is paced by the driver, at
most one second ahead of the clock), ``speech_model`` always set. The server speaks first
(``Begin``). ``Turn`` messages carry the turn's whole transcript so far and map to partials; with
``format_turns=true`` the end of a turn comes twice (raw, then formatted): the formatted one
answers the turn, the raw one only if the formatted one is late. The server does its own
endpointing; push-to-talk release sends ``ForceEndpoint``; ``Terminate`` → ``Termination`` ends
the session. Turn numbers start again at 0 on each connection.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from dataclasses import KW_ONLY, dataclass
from typing import Any

from assistant.config import Settings
from assistant.engines.net.errors import Service
from assistant.engines.net.messages import Message, Outgoing, flag, integer, items, number, text
from assistant.engines.net.pacing import RealtimePacer
from assistant.engines.net.stt_driver import PrewarmedSTT
from assistant.engines.net.stt_protocol import EndpointedWire
from assistant.engines.net.urls import with_query

log = logging.getLogger(__name__)

ENGINE = "assemblyai"
SERVICE = Service.of(ENGINE)
ENGLISH_MODEL = "universal-streaming-english"
MULTILINGUAL_MODEL = "universal-streaming-multilingual"
#: What the multilingual streaming model understands (English is served by the English model).
MULTILINGUAL_LANGUAGES = frozenset({"es", "fr", "de", "it", "pt"})


def speech_model(language: str, configured: str = "") -> str:
    """The configured model, else the English model for English, the multilingual one otherwise."""
    if configured:
        return configured
    base = language.lower().split("-")[0].split("_")[0]
    if base in ("en", ""):
        return ENGLISH_MODEL
    if base not in MULTILINGUAL_LANGUAGES:
        log.warning("AssemblyAI streams no %r; using its multilingual model", language)
    return MULTILINGUAL_MODEL


def stream_url(endpoint: str, model: str, *, format_turns: bool = True) -> str:
    params = {
        "sample_rate": "16000",
        "encoding": "pcm_s16le",
        "speech_model": model,
        "format_turns": "true" if format_turns else "false",
    }
    if model == MULTILINGUAL_MODEL:
        params["language_detection"] = "true"
    return with_query(endpoint, params)


class AssemblyAIWire(EndpointedWire):
    """AssemblyAI Streaming v3's messages and turn rules."""

    service = SERVICE
    END_TURN = Outgoing.json({"type": "ForceEndpoint"})
    GOODBYE = Outgoing.json({"type": "Terminate"})
    READY, FINISHED = "Begin", "Termination"
    MIN_SECONDS = 0.05

    def __init__(
        self,
        endpoint: str,
        language: str,
        *,
        model: str = "",
        format_turns: bool = True,
        format_timeout: float = 1.0,
        final_timeout: float = 2.0,
    ) -> None:
        url = stream_url(endpoint, speech_model(language, model), format_turns=format_turns)
        super().__init__(url, language, batch_seconds=0.1, final_timeout=final_timeout)
        self._format_turns = format_turns
        self._format_timeout = format_timeout
        self._answered: set[int] = set()
        self._discard: set[int] = set()
        self._open_turn: int | None = None
        #: Raw ends waiting for their formatted twin: turn order → (text, start, end, language).
        self._raw_ends: dict[int, tuple[str, float, float, str | None]] = {}

    def headers(self, key: str) -> dict[str, str]:
        return {"Authorization": key}  # no "Bearer"

    def _on_message(self, kind: str | None, msg: Message, now: float) -> bool:
        if kind == "Turn":
            self._on_turn(msg, now)
        return kind == "Turn"

    def _on_turn(self, msg: Message, now: float) -> None:
        order = integer(msg.get("turn_order"))
        transcript = text(msg, "transcript").strip()
        start, end = _span(msg.get("words"))
        if order in self._answered:
            return  # the second end of an answered turn
        if order in self._discard:
            if flag(msg, "end_of_turn"):
                self._answered.add(order)
                self._discard.discard(order)
            return
        if not flag(msg, "end_of_turn"):
            if transcript:
                self._open_turn = order
                self._partial(transcript, start, end)
            return
        language = text(msg, "language_code") or None
        if flag(msg, "turn_is_formatted") or not self._format_turns:
            self._answer(order, transcript, start, end, language)
            return
        # The raw end of the turn: its formatted twin normally follows within a few hundred ms.
        if transcript:
            self._partial(transcript, start, end)
        if order not in self._raw_ends:
            self._raw_ends[order] = (transcript, start, end, language)
            self._deadlines[("format", order)] = now + self._format_timeout

    def _answer(
        self, order: int, transcript: str, start: float, end: float, language: str | None
    ) -> None:
        if order in self._answered:
            return
        self._answered.add(order)
        self._raw_ends.pop(order, None)
        self._deadlines.pop(("format", order), None)
        if self._open_turn == order:
            self._open_turn = None
        self._final(transcript, start, end, language)

    def _on_deadline(self, key: Hashable, now: float) -> None:
        if isinstance(key, tuple) and key[0] == "format":
            raw = self._raw_ends.get(key[1])
            if raw is not None:
                self._answer(key[1], *raw)
            return
        super()._on_deadline(key, now)

    def _abandon_turn(self) -> None:
        if self._open_turn is not None:
            self._discard.add(self._open_turn)
            self._open_turn = None
            if not self.end_requested:
                self._out.append(self.END_TURN)

    def _new_connection(self) -> None:
        for order in self._raw_ends:
            self._deadlines.pop(("format", order), None)
        self._raw_ends.clear()
        self._answered.clear()
        self._discard.clear()
        self._open_turn = None


def _span(words: Any) -> tuple[float, float]:
    """Start and end (s) of a turn's words, when the server sent them."""
    found = items(words)
    if not found:
        return 0.0, 0.0
    first, last = found[0], found[-1]
    if not isinstance(first, dict) or not isinstance(last, dict):
        return 0.0, 0.0
    return number(first.get("start")) / 1000.0, number(last.get("end")) / 1000.0


@dataclass(eq=False)
class AssemblyAISTT(PrewarmedSTT):
    """The ``SpeechToText`` engine "assemblyai"."""

    name = ENGINE
    provider = ENGINE
    provides_endpointing = True

    _: KW_ONLY
    model: str = ""
    format_turns: bool = True
    #: How long the raw end of a turn waits for its formatted twin.
    format_timeout: float = 1.0
    final_timeout: float = 2.0
    #: How far audio may run ahead of real time.
    burst: float = 1.0

    def _wire(self, language: str) -> AssemblyAIWire:
        return AssemblyAIWire(
            self.endpoint,
            language,
            model=self.model,
            format_turns=self.format_turns,
            format_timeout=self.format_timeout,
            final_timeout=self.final_timeout,
        )

    def _pacer(self) -> RealtimePacer:
        return RealtimePacer(self.burst)


def make_stt(settings: Settings) -> AssemblyAISTT:
    provider = settings.provider(ENGINE)
    return AssemblyAISTT(
        settings.endpoint(ENGINE), language=settings.language, model=provider.model
    )
