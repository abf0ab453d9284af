"""OpenAI speech to text over the Realtime API's transcription websocket.

Wire rules (``RealtimeWire``, no I/O): the capture path pushes 16 kHz audio; it is resampled to
the 24 kHz the service expects and sent as base64 ``input_audio_buffer.append`` messages of
~100 ms. Every connection starts with ``session.update`` (transcription model, language,
``turn_detection: null``) and is ready at ``session.updated``. The client decides where a turn
ends: ``end_turn`` commits the buffer and waits for that item's transcription, whose deltas are
reported as growing partials on the way; less than 100 ms of audio is not committed (the service
refuses it) and gives an empty final. Items are matched to commits in order.

The socket is opened ahead of the first turn (at warm-up or ``open``) and kept; a dropped socket
is reopened with backoff (``net.websocket``). An utterance whose audio went down with it fails
with an ``EngineError`` so the user can say it again; a server's ``invalid_api_key`` ends the
session.
"""

from __future__ import annotations

import base64
import collections
import json
import logging
import urllib.parse
from collections.abc import Hashable
from dataclasses import KW_ONLY, dataclass
from typing import Any

import numpy as np
import soxr

from assistant.config import Settings
from assistant.engines.base import PCM, EngineError
from assistant.engines.net.errors import Service
from assistant.engines.net.messages import Message, Outgoing, obj, parse_json, text
from assistant.engines.net.redact import scrub
from assistant.engines.net.retry import Backoff, Policy
from assistant.engines.net.stt_driver import PrewarmedSTT
from assistant.engines.net.stt_protocol import Failed, Final, Partial, Ready, SttWire, TurnFailed
from assistant.engines.net.urls import with_query

log = logging.getLogger(__name__)

PROVIDER = "openai"
SERVICE = Service.of(PROVIDER, "OpenAI transcription")
DEFAULT_MODEL = "gpt-4o-transcribe"
INPUT_RATE = 16_000  # what the capture path pushes
WIRE_RATE = 24_000  # what the service takes
_BYTES_PER_MS = WIRE_RATE * 2 // 1000
#: The service refuses to commit less than 100 ms of audio.
_MIN_COMMIT_BYTES = 100 * _BYTES_PER_MS
_TRANSCRIPTION = "conversation.item.input_audio_transcription"
COMMIT = Outgoing.json({"type": "input_audio_buffer.commit"})
CLEAR = Outgoing.json({"type": "input_audio_buffer.clear"})
#: Realtime sessions reconnect sooner than the streaming defaults, and open within 10 s.
DEFAULT_POLICY = Policy(open_timeout=10.0, backoff=Backoff(base=0.25, cap=5.0), reconnects=6)


@dataclass(slots=True)
class _Pending:
    """A committed utterance waiting for its transcription."""

    turn: int
    start: float
    end: float
    commit_sent: bool = False
    item_id: str | None = None
    text: str = ""


class RealtimeWire(SttWire):
    """The Realtime transcription session's messages and turn rules."""

    service = SERVICE
    sample_rate = INPUT_RATE
    awaits_final = True
    greets = True

    def __init__(
        self,
        url: str,
        language: str,
        *,
        model: str = DEFAULT_MODEL,
        final_timeout: float = 15.0,
        batch_ms: int = 100,
    ) -> None:
        super().__init__()
        self.language = language
        self._url = url
        self._model = model
        self._final_timeout = final_timeout
        self._batch_bytes = max(1, batch_ms) * _BYTES_PER_MS
        self._resampler = soxr.ResampleStream(INPUT_RATE, WIRE_RATE, 1, dtype="int16")
        self._batch = bytearray()  # resampled audio not yet queued
        self._queued = 0  # bytes of the current utterance queued for sending
        self._live = False  # audio of the current utterance went out on this connection
        self._samples = 0  # input samples of the current utterance
        self._offset = 0.0  # seconds of audio before the current utterance
        self._broken: EngineError | None = None  # the current utterance went down with a socket
        self._pending: collections.deque[_Pending] = collections.deque()

    # ---------------------------------------------------------------------------- connection

    def url(self) -> str:
        query = urllib.parse.urlsplit(self._url).query
        if any(name == "intent" for name, _ in urllib.parse.parse_qsl(query)):
            return self._url
        return with_query(self._url, {"intent": "transcription"})

    def headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def start(self) -> list[Outgoing]:
        return [self._session_update()]

    def _session_update(self) -> Outgoing:
        transcription: dict[str, Any] = {"model": self._model}
        language = self.language.split("-")[0].lower()
        if language and language != "auto":
            transcription["language"] = language
        session = {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": WIRE_RATE},
                    "transcription": transcription,
                    "turn_detection": None,  # the client ends turns (PTT or local VAD)
                }
            },
        }
        return Outgoing.json({"type": "session.update", "session": session})

    def reconfigure(self, language: str) -> bool:
        if language != self.language:
            self.language = language
            self._out.append(self._session_update())
        return True

    def dropped(self, error: EngineError, now: float) -> bool:
        lost = EngineError(
            f"{error} Please say that again.", engine=error.engine, retryable=error.retryable
        )
        while self._pending:
            pending = self._pending.popleft()
            self._deadlines.pop(("final", pending.turn), None)
            self._events.append(TurnFailed(lost, pending.turn))
        if self._live:
            self._broken = lost
        self._live = False
        return self._broken is not None

    def reconnected(self, now: float) -> list[Outgoing]:
        self._live = False
        return []

    # --------------------------------------------------------------------------------- audio

    def audio(self, pcm: PCM, now: float) -> None:
        if self._broken is not None:
            raise self._broken
        samples = np.ascontiguousarray(pcm, dtype=np.int16).reshape(-1)
        self._batch += self._resampler.resample_chunk(samples).tobytes()
        self._samples += len(samples)
        if len(self._batch) >= self._batch_bytes:
            self._queue_batch()

    def _queue_batch(self) -> None:
        if not self._batch:
            return
        data, self._batch = bytes(self._batch), bytearray()
        self._queued += len(data)
        audio = base64.b64encode(data).decode("ascii")
        message = json.dumps({"type": "input_audio_buffer.append", "audio": audio})
        self._out.append(Outgoing(message, len(data) / (WIRE_RATE * 2)))

    def end_turn(self, now: float) -> int:
        self._turns += 1
        turn = self._turns
        if self._broken is not None:
            error = self._broken
            self._reset_utterance()
            raise error
        self._batch += self._resampler.resample_chunk(np.zeros(0, np.int16), last=True).tobytes()
        self._resampler.clear()
        start = self._offset
        end = start + self._samples / INPUT_RATE
        if self._queued + len(self._batch) < _MIN_COMMIT_BYTES:
            # Too short to transcribe (a click); the service would refuse the commit.
            self._drop_uncommitted()
            self._reset_utterance()
            self._events.append(Final("", start, end, turn=turn))
            return turn
        self._queue_batch()
        self._out.append(COMMIT)
        self._pending.append(_Pending(turn, start, end))
        self._reset_utterance()
        return turn

    def clear(self, now: float) -> None:
        self._drop_uncommitted()
        self._reset_utterance()

    def _drop_uncommitted(self) -> None:
        self._resampler.clear()
        self._batch.clear()
        if self._queued:
            self._out.append(CLEAR)

    def _reset_utterance(self) -> None:
        self._offset += self._samples / INPUT_RATE
        self._samples = 0
        self._queued = 0
        self._broken = None
        self._batch.clear()
        self._resampler.clear()

    def sent(self, item: Outgoing, now: float) -> None:
        if item.audio:
            self._live = True
        elif item == COMMIT:
            self._live = False
            pending = next((p for p in self._pending if not p.commit_sent), None)
            if pending is not None:
                # The deadline runs from when the commit left, not from when it was queued.
                pending.commit_sent = True
                self._deadlines[("final", pending.turn)] = now + self._final_timeout
        elif item == CLEAR:
            self._live = False

    def _on_deadline(self, key: Hashable, now: float) -> None:
        if not isinstance(key, tuple):
            return
        pending = next((p for p in self._pending if p.turn == key[1]), None)
        if pending is not None:
            self._pending.remove(pending)
            error = self.service.error(
                f": no transcript within {self._final_timeout:g} s; please try again."
            )
            self._events.append(TurnFailed(error, pending.turn))

    # -------------------------------------------------------------------------------- events

    def receive(self, raw: str | bytes, now: float) -> None:
        event = parse_json(self.service.label, raw)
        if event is None:
            return
        kind = text(event, "type")
        if not kind:
            log.warning("OpenAI transcription: skipped a message without an event type")
        elif kind in ("session.updated", "transcription_session.updated"):
            self._events.append(Ready())
        elif kind == "input_audio_buffer.committed":
            self._pending_for(text(event, "item_id"), committed=True)
        elif kind == f"{_TRANSCRIPTION}.delta":
            self._on_delta(event)
        elif kind == f"{_TRANSCRIPTION}.completed":
            self._on_completed(event)
        elif kind == f"{_TRANSCRIPTION}.failed":
            self._on_failed(event)
        elif kind == "error":
            self._on_error(event)
        else:
            log.debug("OpenAI transcription: %s", kind)

    def _pending_for(self, item_id: str, *, committed: bool = False) -> _Pending | None:
        """The utterance an item belongs to. Items get their utterance when committed (in commit
        order); later events for an item nobody waits for any more (timed out) are ignored."""
        if item_id:
            for pending in self._pending:
                if pending.item_id == item_id:
                    return pending
        if committed or not item_id:
            for pending in self._pending:
                if pending.item_id is None:
                    pending.item_id = item_id or None
                    return pending
        log.debug("OpenAI transcription: event for unknown item %s", item_id)
        return None

    def _on_delta(self, event: Message) -> None:
        pending = self._pending_for(text(event, "item_id"))
        delta = text(event, "delta")
        if pending is None or not delta:
            return
        pending.text += delta
        self._events.append(Partial(pending.text.strip(), pending.start, pending.end))

    def _on_completed(self, event: Message) -> None:
        pending = self._pending_for(text(event, "item_id"))
        if pending is None:
            return
        transcript = event.get("transcript")
        said = (transcript if isinstance(transcript, str) else pending.text).strip()
        self._settle(pending, said)

    def _on_failed(self, event: Message) -> None:
        pending = self._pending_for(text(event, "item_id"))
        message = error_message(event)
        log.warning("OpenAI transcription: an utterance could not be transcribed: %s", message)
        if pending is not None:
            error = self.service.error(
                f": could not transcribe that ({message}); please say it again."
            )
            self._settle(pending, "", error)

    def _on_error(self, event: Message) -> None:
        code = text(obj(event, "error"), "code")
        message = error_message(event)
        log.warning("OpenAI transcription: the service reported an error: %s", message)
        if code == "invalid_api_key":
            self._events.append(Failed(self.service.key_rejected("invalid_api_key")))
            return
        # An error while a commit has no item yet is the commit's (e.g. too little audio).
        pending = next((p for p in self._pending if p.item_id is None and p.commit_sent), None)
        if pending is None:
            return
        if code == "input_audio_buffer_commit_empty":
            self._settle(pending, "")
        else:
            refused = self.service.error(f": the service refused the audio ({message}).")
            self._settle(pending, "", refused)

    def _settle(self, pending: _Pending, said: str, error: EngineError | None = None) -> None:
        if pending in self._pending:
            self._pending.remove(pending)
        self._deadlines.pop(("final", pending.turn), None)
        if error is not None:  # the turn's waiter fails; its (empty) final is still reported
            self._events.append(TurnFailed(error, pending.turn))
        self._events.append(Final(said, pending.start, pending.end, turn=pending.turn))


def error_message(event: Message) -> str:
    """The text of a Realtime ``error`` (or a failed item's), scrubbed and cut short."""
    info = event.get("error")
    if isinstance(info, dict):
        message = text(info, "message") or text(info, "code") or "no details"
    else:
        message = info if isinstance(info, str) and info else "no details"
    return scrub(message)[:300]


@dataclass(eq=False)
class OpenAIRealtimeSTT(PrewarmedSTT):
    """Streaming transcription with OpenAI's Realtime API (client-side turn ends)."""

    name = PROVIDER
    provider = PROVIDER
    provides_endpointing = False
    quiet_warm_up = True

    _: KW_ONLY
    model: str = DEFAULT_MODEL
    final_timeout: float = 15.0
    #: Audio per ``input_audio_buffer.append`` message.
    batch_ms: int = 100
    policy: Policy = DEFAULT_POLICY

    def _wire(self, language: str) -> RealtimeWire:
        return RealtimeWire(
            self.endpoint,
            language,
            model=self.model,
            final_timeout=self.final_timeout,
            batch_ms=self.batch_ms,
        )


# ------------------------------------------------------------------------------------- factory


def make_stt(settings: Settings) -> OpenAIRealtimeSTT:
    """OpenAI Realtime transcription; ``providers.openai_realtime`` may set url and model."""
    configured = settings.provider("openai_realtime")
    return OpenAIRealtimeSTT(
        settings.endpoint("openai_realtime"),
        model=configured.model or DEFAULT_MODEL,
        language=settings.language,
    )
