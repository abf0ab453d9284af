"""The sans-I/O side of a streaming speech-to-text session.

A provider's wire rules are a ``net.wire.Wire`` (no sockets, no tasks, no clock of its own):
besides what every wire does, the driver calls ``audio``, ``end_turn`` and ``clear``.
``stt_driver.StreamingSession`` runs one over a ``ReconnectingSocket``; tests feed one tables of
messages without any socket.

Events: ``Ready`` (the server started the session), ``Partial`` (the turn so far),
``Final`` (a turn's settled text; ``turn`` is ``end_turn``'s number when it answers one),
``TurnFailed`` (that turn will have no transcript), ``Finished`` (the server acknowledged the
goodbye) and ``Failed`` (the session cannot go on).

``EndpointedWire`` is what the providers that find turn ends themselves share (AssemblyAI,
Deepgram): audio batched into messages of a minimum length, partials carrying the whole turn so
far, a turn ended on request with a deadline for the server's answer (after which the last
partial stands — or, when the server has said nothing at all since the request, the connection is
taken for stalled and fails), a turn abandoned on ``clear``, and the turn's audio sent again after
a reconnect. A turn that ends without words after the server sent transcripts Parley cannot read
(a provider calls ``_unreadable``) fails the session with that reason rather than passing for
silence.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np

from assistant.engines.base import PCM, EngineError
from assistant.engines.net.messages import Message, Outgoing, parse_json, server_error_text
from assistant.engines.net.wire import Failed, Finished, Ready, Wire

log = logging.getLogger(__name__)
_NO_AUDIO: PCM = np.zeros(0, dtype=np.int16)

__all__ = [
    "EndpointedWire",
    "Failed",
    "Final",
    "Finished",
    "Partial",
    "Ready",
    "SttEvent",
    "SttWire",
    "TurnFailed",
]


@dataclass(frozen=True, slots=True)
class Partial:
    text: str
    start: float = 0.0
    end: float = 0.0


@dataclass(frozen=True, slots=True)
class Final:
    text: str
    start: float = 0.0
    end: float = 0.0
    language: str | None = None
    #: The ``end_turn`` this answers (-1: a turn the server ended by itself).
    turn: int = -1


@dataclass(frozen=True, slots=True)
class TurnFailed:
    error: EngineError
    turn: int = -1


SttEvent = Ready | Partial | Final | TurnFailed | Finished | Failed


class SttWire(Wire[Partial | Final | TurnFailed]):
    """The interface a streaming STT provider implements."""

    #: The rate ``audio`` takes.
    sample_rate = 16_000
    #: ``end_turn`` returns only once that turn's final is out (the client decides turn ends).
    awaits_final = False
    language = ""

    def __init__(self) -> None:
        super().__init__()
        self._turns = 0

    def reconfigure(self, language: str) -> bool:
        """Switch the open session to ``language``; False when only a new session can."""
        return language == self.language

    # ------------------------------------------------------------------------------ turns

    def audio(self, pcm: PCM, now: float) -> None:
        raise NotImplementedError

    def end_turn(self, now: float) -> int:
        """The user stopped talking; returns the turn's number (``Final.turn``)."""
        raise NotImplementedError

    def clear(self, now: float) -> None:
        """Drop the current utterance (the driver forgets its queued audio)."""
        raise NotImplementedError


class EndpointedWire(SttWire):
    """Shared rules of servers that end turns themselves and answer a turn-end request."""

    #: Sent to end the turn now (``ForceEndpoint``, ``Finalize``), and on closing.
    END_TURN = Outgoing("")
    GOODBYE: Outgoing | None = None
    #: The ``type`` of the message that starts the session (a server that greets) and of the
    #: one that acknowledges the goodbye.
    READY: str | None = None
    FINISHED: str | None = None
    #: Messages must hold at least this much audio.
    MIN_SECONDS = 0.0
    #: Audio kept for sending again after a reconnect.
    MAX_RESEND_SECONDS = 60.0

    def __init__(
        self, url: str, language: str, *, batch_seconds: float, final_timeout: float
    ) -> None:
        super().__init__()
        self._url = url
        self.language = language
        self.greets = self.READY is not None
        self._pending: PCM = _NO_AUDIO
        self._batch_samples = max(1, round(batch_seconds * self.sample_rate))
        self._final_timeout = final_timeout
        self._turn_audio: collections.deque[Outgoing] = collections.deque()
        self._resend_seconds = 0.0
        self._turn_seconds = 0.0
        self._end_requested = False
        self._end_sent = False
        #: The server has sent something since the turn's end was requested.
        self._heard_since_end = False
        #: What the server sent this turn that could not be read (empty: nothing).
        self._unreadable_part = ""
        self._partial_text = ""

    @property
    def end_requested(self) -> bool:
        return self._end_requested

    def url(self) -> str:
        return self._url

    def goodbye(self) -> Outgoing | None:
        return self.GOODBYE

    def receive(self, raw: str | bytes, now: float) -> None:
        self._heard_since_end = True
        msg = parse_json(self.service.label, raw)
        if msg is None:
            return
        kind = msg.get("type")
        kind = kind if isinstance(kind, str) else None
        if kind is not None and kind == self.READY:
            self._events.append(Ready())
        elif kind is not None and kind == self.FINISHED:
            self._events.append(Finished())
        elif self._on_message(kind, msg, now):
            pass
        elif (error := server_error_text(msg)) is not None:
            log.warning("%s reported: %s", self.service.label, error)
        else:
            log.debug("%s message %r ignored", self.service.label, kind)

    def audio(self, pcm: PCM, now: float) -> None:
        self._pending = np.concatenate([self._pending, np.asarray(pcm, dtype=np.int16)])
        self._turn_seconds += len(pcm) / self.sample_rate
        while len(self._pending) >= self._batch_samples:
            self._send_audio(self._pending[: self._batch_samples])
            self._pending = self._pending[self._batch_samples :]

    def end_turn(self, now: float) -> int:
        self._turns += 1
        if len(self._pending):
            short = round(self.MIN_SECONDS * self.sample_rate) - len(self._pending)
            if short > 0:  # pad with silence: the server refuses shorter messages
                self._pending = np.concatenate([self._pending, np.zeros(short, dtype=np.int16)])
            self._send_audio(self._pending)
            self._pending = _NO_AUDIO
        self._end_requested = True
        if self._turn_seconds == 0.0 and not self._partial_text:
            self._final("", 0.0, 0.0)  # nothing was said: nothing to ask the server
            return self._turns
        self._end_sent = False
        self._out.append(self.END_TURN)
        return self._turns

    def clear(self, now: float) -> None:
        self._pending = _NO_AUDIO
        if self._partial_text and not self._end_requested:
            self._abandon_turn()
        self._forget_turn_audio()
        self._turn_seconds = 0.0
        self._partial_text = ""

    def sent(self, item: Outgoing, now: float) -> None:
        if item.audio:
            self._turn_audio.append(item)
            self._resend_seconds += item.audio
            while self._resend_seconds > self.MAX_RESEND_SECONDS:
                self._resend_seconds -= self._turn_audio.popleft().audio
        elif item == self.END_TURN and self._end_requested:
            self._end_sent = True
            self._heard_since_end = False
            self._deadlines["final"] = now + self._final_timeout

    def reconnected(self, now: float) -> list[Outgoing]:
        self._new_connection()
        items = list(self._turn_audio)
        self._forget_turn_audio()
        if self._end_requested and self._end_sent:
            self._deadlines.pop("final", None)
            items.append(self.END_TURN)
        return items

    # ------------------------------------------------------------------------ for providers

    def _on_message(self, kind: str | None, msg: Message, now: float) -> bool:
        """Act on a message of type ``kind``; False when the type means nothing here."""
        return False

    def _new_connection(self) -> None:
        """Reset what a server forgets with its connection (turn numbers, timestamps)."""

    def _abandon_turn(self) -> None:
        """Make the server finish the turn in progress and ignore its result."""

    def _unreadable(self, what: str) -> None:
        """The server sent ``what`` (a transcript that is not text, say) this turn."""
        if not self._unreadable_part:
            log.warning("%s sent %s; ignored", self.service.label, what)
        self._unreadable_part = what

    def _partial(self, text: str, start: float, end: float) -> None:
        text = text.strip()
        if text and text != self._partial_text:
            self._partial_text = text
            self._events.append(Partial(text, start, end))

    def _final(self, text: str, start: float, end: float, language: str | None = None) -> None:
        """The turn is over: emit its text once. Server-decided ends without words are dropped."""
        requested = self._end_requested
        self._end_requested = self._end_sent = False
        self._deadlines.pop("final", None)
        self._partial_text = ""
        self._forget_turn_audio()
        self._turn_seconds = 0.0
        text = text.strip()
        unreadable, self._unreadable_part = self._unreadable_part, ""
        if not text and unreadable:
            self._events.append(
                Failed(self.service.error(f"sent {unreadable}, so the turn has no transcript."))
            )
            return
        if not text and not requested:
            return
        self._events.append(Final(text, start, end, language, self._turns if requested else -1))

    def _forget_turn_audio(self) -> None:
        self._turn_audio.clear()
        self._resend_seconds = 0.0

    def _send_audio(self, pcm: PCM) -> None:
        self._out.append(Outgoing(pcm.astype("<i2").tobytes(), len(pcm) / self.sample_rate))

    def _on_deadline(self, key: Hashable, now: float) -> None:
        if key != "final" or not self._end_requested:
            return
        if not self._partial_text and not self._heard_since_end:
            # Not a word, not a message since the request: the connection is stalled, and the
            # turn would silently come out empty. Fail it, so the session reconnects or moves on.
            waited = self._final_timeout
            self._events.append(
                Failed(
                    self.service.error(
                        f"sent nothing within {waited:g} s of the turn's end; the connection "
                        "seems stalled."
                    )
                )
            )
            return
        log.warning(
            "%s gave no final transcript within %.1f s of the turn's end; using the last partial",
            self.service.label,
            self._final_timeout,
        )
        text = self._partial_text
        self._abandon_turn()
        self._final(text, 0.0, 0.0)
