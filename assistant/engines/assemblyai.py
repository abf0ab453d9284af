"""Speech to text with AssemblyAI Streaming v3 (``wss://streaming.assemblyai.com/v3/ws``).

Wire rules this adapter follows: 16 kHz s16le audio in binary messages of 50–1000 ms (the
capture path's 32 ms frames are batched to ~100 ms), never faster than real time (audio pushed
faster — ``parley talk --pace fast`` — is paced here, at most one second ahead of the clock),
``speech_model`` always set. ``Turn`` messages carry the turn's whole transcript so far and map
to partials; with ``format_turns=true`` the end of a turn comes twice (raw, then formatted): the
formatted one answers the turn, the raw one only if the formatted one is late. The server does
its own endpointing; push-to-talk release sends ``ForceEndpoint``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from assistant import secrets
from assistant.config import Settings
from assistant.engines.base import EngineError
from assistant.engines.wsutil import (
    ConnectPolicy,
    Message,
    Outgoing,
    PrewarmedSTT,
    RealtimePacer,
    StreamingSTTSession,
    closed_error,
    connect,
    parse_json,
    server_error_text,
    with_query,
)

log = logging.getLogger(__name__)

ENGINE = "assemblyai"
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


class AssemblyAISTT(PrewarmedSTT["AssemblyAISession"]):
    """The ``SpeechToText`` engine "assemblyai"."""

    name = ENGINE
    provides_endpointing = True

    def __init__(
        self,
        endpoint: str,
        *,
        language: str = "en",
        model: str = "",
        format_turns: bool = True,
        format_timeout: float = 1.0,
        final_timeout: float = 2.0,
        burst: float = 1.0,
        policy: ConnectPolicy | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.language = language
        self.model = model
        self.format_turns = format_turns
        self.format_timeout = format_timeout
        self.final_timeout = final_timeout
        self.burst = burst
        self.policy = policy or ConnectPolicy()

    def _new_session(self, language: str) -> AssemblyAISession:
        return AssemblyAISession(self, language)


class AssemblyAISession(StreamingSTTSession):
    END_TURN = json.dumps({"type": "ForceEndpoint"})
    GOODBYE = json.dumps({"type": "Terminate"})
    MIN_SECONDS = 0.05

    def __init__(self, engine: AssemblyAISTT, language: str) -> None:
        self._key = secrets.require_key(ENGINE)
        self._url = stream_url(
            engine.endpoint, speech_model(language, engine.model), format_turns=engine.format_turns
        )
        self._format_turns = engine.format_turns
        self._format_timeout = engine.format_timeout
        super().__init__(
            ENGINE,
            open_connection=self._open_connection,
            policy=engine.policy,
            batch_seconds=0.1,
            final_timeout=engine.final_timeout,
            pacer=RealtimePacer(engine.burst),
        )
        self._answered: set[int] = set()
        self._discard: set[int] = set()
        self._open_turn: int | None = None
        self._late_format: dict[int, asyncio.TimerHandle] = {}

    async def _open_connection(self) -> ClientConnection:
        return await connect(ENGINE, self._url, {"Authorization": self._key}, self.policy)

    async def _handshake(self, ws: ClientConnection) -> None:
        """The server speaks first: ``Begin`` (or an error and a close)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.policy.first_message_timeout
        while True:
            try:
                raw = await asyncio.wait_for(ws.recv(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                waited = self.policy.first_message_timeout
                raise EngineError(
                    f"AssemblyAI did not start the session within {waited:g} s.", engine=ENGINE
                ) from None
            except ConnectionClosed as exc:
                raise closed_error(ENGINE, exc) from None
            msg = parse_json(ENGINE, raw)
            if msg is None:
                continue
            if msg.get("type") == "Begin":
                log.debug("AssemblyAI session began (expires at %s)", msg.get("expires_at"))
                return
            if (text := server_error_text(msg)) is not None:
                log.warning("AssemblyAI reported: %s", text)

    # -------------------------------------------------------------------------------- messages

    def _on_json(self, msg: Message) -> None:
        kind = msg.get("type")
        if kind == "Turn":
            self._on_turn(msg)
        elif kind == "Termination":
            self._finished.set()
        elif kind == "Begin":
            pass
        elif (text := server_error_text(msg)) is not None:
            log.warning("AssemblyAI reported: %s", text)
        else:
            log.debug("AssemblyAI message %r ignored", kind)

    def _on_turn(self, msg: Message) -> None:
        order = _int(msg.get("turn_order"))
        text = str(msg.get("transcript") or "").strip()
        start, end = _span(msg.get("words"))
        if order in self._answered:
            return  # the second end of an answered turn
        if order in self._discard:
            if msg.get("end_of_turn"):
                self._answered.add(order)
                self._discard.discard(order)
            return
        if not msg.get("end_of_turn"):
            if text:
                self._open_turn = order
                self._partial(text, start, end)
            return
        language = msg.get("language_code") if isinstance(msg.get("language_code"), str) else None
        if msg.get("turn_is_formatted") or not self._format_turns:
            self._answer(order, text, start, end, language)
            return
        # The raw end of the turn: its formatted twin normally follows within a few hundred ms.
        if text:
            self._partial(text, start, end)
        if order not in self._late_format:
            loop = asyncio.get_running_loop()
            self._late_format[order] = loop.call_later(
                self._format_timeout, self._answer, order, text, start, end, language
            )

    def _answer(
        self, order: int, text: str, start: float, end: float, language: str | None
    ) -> None:
        if order in self._answered:
            return
        self._answered.add(order)
        timer = self._late_format.pop(order, None)
        if timer is not None:
            timer.cancel()
        if self._open_turn == order:
            self._open_turn = None
        self._final(text, start, end, language)

    # ------------------------------------------------------------------------------- turn state

    def _abandon_turn(self) -> None:
        if self._open_turn is not None:
            self._discard.add(self._open_turn)
            self._open_turn = None
            if not self.end_requested:
                self._socket.send(Outgoing(self.END_TURN))

    def _on_new_connection(self) -> None:
        # Turn numbers start again at 0 on a new connection.
        for timer in self._late_format.values():
            timer.cancel()
        self._late_format.clear()
        self._answered.clear()
        self._discard.clear()
        self._open_turn = None

    async def aclose(self) -> None:
        for timer in self._late_format.values():
            timer.cancel()
        self._late_format.clear()
        await super().aclose()


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def _span(words: Any) -> tuple[float, float]:
    """Start and end (s) of a turn's words, when the server sent them."""
    if not isinstance(words, list) or not words:
        return 0.0, 0.0
    try:
        return float(words[0]["start"]) / 1000.0, float(words[-1]["end"]) / 1000.0
    except (KeyError, TypeError, ValueError):
        return 0.0, 0.0


def make_stt(settings: Settings) -> AssemblyAISTT:
    provider = settings.provider(ENGINE)
    return AssemblyAISTT(
        settings.endpoint(ENGINE), language=settings.language, model=provider.model
    )
