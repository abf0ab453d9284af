"""OpenAI's Realtime API as a speech-to-speech engine (``gpt-realtime``).

Wire rules (``RealtimeAgentWire``, no I/O):

- ``wss://…/v1/realtime?model=…`` with ``Authorization: Bearer``. Every connection starts with
  ``session.update`` (GA shape: ``type: "realtime"``, instructions, audio in and out as 24 kHz
  PCM, the input transcription model, the voice, the tools, turn detection: ``null`` when
  Parley ends turns, ``server_vad`` or ``semantic_vad`` with ``create_response`` and
  ``interrupt_response`` when the provider does), then one ``conversation.item.create`` per
  earlier message, so the model's context starts from what was heard. It is ready at
  ``session.updated``. A server that answers ``session.type`` with ``unknown_parameter`` speaks
  the beta dialect: the update is sent again flat (``modalities``, ``input_audio_format`` …).
- The user's audio goes in ``input_audio_buffer.append`` messages of 100 ms; Parley's end of
  turn is ``input_audio_buffer.commit`` + ``response.create`` (less than 100 ms is not
  committed: the service refuses it); a noise is ``input_audio_buffer.clear``; typed text is a
  user ``input_text`` item + ``response.create``; tool results are ``function_call_output``
  items + ``response.create`` (there is no automatic follow-up).
- Barge-in: ``response.cancel`` while the reply is in progress, then for each item of it
  ``conversation.item.truncate`` with ``audio_end_ms`` = what was played (never beyond the
  item's audio, which the service refuses), or ``conversation.item.delete`` for one not heard
  at all: the service then drops the unheard transcript too.
- Server events, GA and beta names alike (``response.output_audio.delta`` /
  ``response.audio.delta``, ``…output_audio_transcript…`` / ``…audio_transcript…``): audio and
  transcript deltas per item, the user's transcription (partials and final, unordered with
  the reply), ``speech_started``/``speech_stopped`` (with ``audio_end_ms`` the lag behind the
  audio sent), function calls (the name from ``.done`` or, in beta, from ``output_item.added``),
  ``response.done`` with its status. ``invalid_api_key`` and ``insufficient_quota`` end the
  session; other errors are logged.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any, Unpack

from assistant.config import Settings
from assistant.engines import s2s
from assistant.engines.base import Message, ToolCall
from assistant.engines.net.agent_driver import AgentEngine, AgentWire, WireTimeouts
from assistant.engines.net.errors import Service
from assistant.engines.net.messages import Message as Json
from assistant.engines.net.messages import (
    Outgoing,
    decode_pcm,
    integer,
    obj,
    parse_json,
    text,
)
from assistant.engines.net.redact import scrub
from assistant.engines.net.retry import Backoff, Policy
from assistant.engines.net.urls import with_query
from assistant.engines.net.wire import Failed, Ready
from assistant.engines.openai.realtime import error_message

log = logging.getLogger(__name__)

NAME = "openai-realtime"
#: Whose endpoint it is (``PARLEY_OPENAI_REALTIME_URL``) and whose key it uses.
ENDPOINT = "openai_realtime"
PROVIDER = "openai"
SERVICE = Service(NAME, "OpenAI Realtime", PROVIDER)
DEFAULT_MODEL = "gpt-realtime"
DEFAULT_VOICE = "marin"
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")
TRANSCRIPTION_MODEL = "gpt-4o-mini-transcribe"
#: The service refuses to commit less audio than this.
MIN_COMMIT_SECONDS = 0.1
DEFAULT_POLICY = Policy(open_timeout=10.0, backoff=Backoff(base=0.25, cap=5.0), reconnects=6)

_AUDIO = ("response.output_audio.delta", "response.audio.delta")
_TRANSCRIPT = ("response.output_audio_transcript.delta", "response.audio_transcript.delta")
_TEXT = ("response.output_text.delta", "response.text.delta")
_TRANSCRIPT_DONE = ("response.output_audio_transcript.done", "response.audio_transcript.done")
_USER = "conversation.item.input_audio_transcription"
_FATAL = {"invalid_api_key": "the API key was rejected", "insufficient_quota": "no quota left"}


class RealtimeAgentWire(AgentWire):
    """The Realtime conversation's messages and rules; see the module docstring."""

    service = SERVICE
    greets = True

    def __init__(
        self,
        url: str,
        setup: s2s.AgentSetup,
        *,
        model: str = DEFAULT_MODEL,
        **timeouts: Unpack[WireTimeouts],
    ) -> None:
        super().__init__(url, setup, **timeouts)
        self.model = model
        self.beta = False
        self._names: dict[str, str] = {}  # call id → tool name (beta sends it apart)
        self._partial = ""
        self._carry: dict[str, bytearray] = {}

    # ---------------------------------------------------------------------------- connection

    def url(self) -> str:
        query = urllib.parse.urlsplit(self._url).query
        if any(name == "model" for name, _ in urllib.parse.parse_qsl(query)):
            return self._url
        return with_query(self._url, {"model": self.model})

    def headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def start(self) -> list[Outgoing]:
        self._names.clear()
        self._carry.clear()
        return [self._session_update(), *self._seed()]

    def _session_update(self) -> Outgoing:
        setup = self.setup
        detection = self._turn_detection()
        tools = [t.to_realtime() for t in setup.tools]
        voice = setup.voice or DEFAULT_VOICE
        language = setup.language.split("-")[0].lower()
        transcription: dict[str, Any] = {"model": TRANSCRIPTION_MODEL}
        if language and language != "auto":
            transcription["language"] = language
        if self.beta:
            session: dict[str, Any] = {
                "modalities": ["audio", "text"],
                "instructions": setup.instructions,
                "voice": voice,
                "input_audio_format": "pcm16",
                "output_audio_format": "pcm16",
                "input_audio_transcription": transcription,
                "turn_detection": detection,
                "tools": tools,
            }
        else:
            fmt = {"type": "audio/pcm", "rate": self.rate}
            session = {
                "type": "realtime",
                "instructions": setup.instructions,
                "output_modalities": ["audio"],
                "audio": {
                    "input": {
                        "format": fmt,
                        "transcription": transcription,
                        "turn_detection": detection,
                    },
                    "output": {"format": fmt, "voice": voice},
                },
                "tools": tools,
            }
        if tools:
            session["tool_choice"] = "auto"
        return Outgoing.json({"type": "session.update", "session": session})

    def _turn_detection(self) -> Json | None:
        setup = self.setup
        if not setup.server_turns:
            return None  # Parley commits each turn and asks for the answer
        if setup.semantic_turns:
            return {
                "type": "semantic_vad",
                "eagerness": "auto",
                "create_response": True,
                "interrupt_response": True,
            }
        return {
            "type": "server_vad",
            "threshold": setup.vad_threshold,
            "prefix_padding_ms": setup.prefix_ms,
            "silence_duration_ms": setup.end_silence_ms,
            "create_response": True,
            "interrupt_response": True,
        }

    def _seed(self) -> list[Outgoing]:
        """The earlier turns as conversation items (the assistant's as the text heard)."""
        items: list[Outgoing] = []
        for message in self.history:
            for item in self._items(message):
                items.append(Outgoing.json({"type": "conversation.item.create", "item": item}))
        return items

    def _items(self, message: Message) -> list[Json]:
        if message.role == "user" and message.content.strip():
            return [
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": message.content}],
                }
            ]
        if message.role == "tool":
            return [
                {
                    "type": "function_call_output",
                    "call_id": message.tool_call_id or "",
                    "output": message.content,
                }
            ]
        if message.role != "assistant":
            return []
        out: list[Json] = [
            {
                "type": "function_call",
                "call_id": c.id,
                "name": c.name,
                "arguments": c.arguments or "{}",
            }
            for c in message.tool_calls
        ]
        if message.content.strip():
            kind = "text" if self.beta else "output_text"
            content = [{"type": kind, "text": message.content}]
            out.append({"type": "message", "role": "assistant", "content": content})
        return out

    # ------------------------------------------------------------------------------ messages

    def audio_message(self, audio: str) -> str:
        return json.dumps({"type": "input_audio_buffer.append", "audio": audio})

    def min_commit_seconds(self) -> float:
        return MIN_COMMIT_SECONDS

    def commit_messages(self, seconds: float) -> list[Outgoing]:
        return [
            Outgoing.json({"type": "input_audio_buffer.commit"}),
            Outgoing.json({"type": "response.create"}),
        ]

    def clear_messages(self) -> list[Outgoing]:
        return [Outgoing.json({"type": "input_audio_buffer.clear"})]

    def say_messages(self, text: str) -> list[Outgoing]:
        item = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
        }
        return [
            Outgoing.json({"type": "conversation.item.create", "item": item}),
            Outgoing.json({"type": "response.create"}),
        ]

    def cancel_messages(self, reply: str) -> list[Outgoing]:
        # An answer in progress blocks the next one ("conversation_already_has_active_response").
        return [Outgoing.json({"type": "response.cancel"})]

    def interrupt_messages(
        self, reply: str, heard: Sequence[s2s.Heard], heard_text: str
    ) -> list[Outgoing]:
        out: list[Outgoing] = []
        if reply and reply == self._reply:
            out.append(Outgoing.json({"type": "response.cancel"}))
        for item in heard:
            if item.heard <= 0.0:
                out.append(
                    Outgoing.json({"type": "conversation.item.delete", "item_id": item.item})
                )
            else:
                # Even an item played to its end so far: more of it may be on the way. Whole
                # milliseconds, never past the end of the item's audio.
                end_ms = min(int(item.heard * 1000), int(item.duration * 1000))
                truncate = {"type": "conversation.item.truncate", "item_id": item.item}
                out.append(Outgoing.json({**truncate, "content_index": 0, "audio_end_ms": end_ms}))
        return out

    def result_messages(self, reply: str, results: Sequence[tuple[str, str]]) -> list[Outgoing]:
        out = [
            Outgoing.json(
                {
                    "type": "conversation.item.create",
                    "item": {"type": "function_call_output", "call_id": c, "output": r},
                }
            )
            for c, r in results
        ]
        return [*out, Outgoing.json({"type": "response.create"})]

    # -------------------------------------------------------------------------------- events

    def receive(self, raw: str | bytes, now: float) -> None:
        event = parse_json(self.service.label, raw)
        if event is None:
            return
        kind = text(event, "type")
        if kind == "session.updated":
            self._events.append(Ready())
        elif kind in _AUDIO:
            self._on_audio(event, now)
        elif kind in _TRANSCRIPT or kind in _TEXT:
            delta = text(event, "delta")
            if delta:
                self._got_output(now)
                self._events.append(
                    s2s.ReplyText(self._reply_of(event), text(event, "item_id"), delta)
                )
        elif kind in _TRANSCRIPT_DONE:
            said = text(event, "transcript")
            self._events.append(
                s2s.ReplyTextDone(self._reply_of(event), text(event, "item_id"), said)
            )
        elif kind == "response.created":
            reply = text(obj(event, "response"), "id")
            if reply:
                self._reply_started(reply, now)
        elif kind == "response.output_item.added":
            item = obj(event, "item")
            if text(item, "type") == "function_call" and text(item, "call_id"):
                self._names[text(item, "call_id")] = text(item, "name")
        elif kind == "response.function_call_arguments.done":
            self._on_call(event)
        elif kind == "response.done":
            self._on_done(obj(event, "response"))
        elif kind == "input_audio_buffer.speech_started":
            self._events.append(s2s.SpeechStarted())
        elif kind == "input_audio_buffer.speech_stopped":
            end = integer(event.get("audio_end_ms"))
            lag = max(0.0, self.sent_seconds - end / 1000) if end >= 0 else 0.0
            self._events.append(s2s.SpeechStopped(lag))
        elif kind == f"{_USER}.delta":
            self._partial += text(event, "delta")
            self._events.append(s2s.UserText(self._partial.strip(), final=False))
        elif kind == f"{_USER}.completed":
            self._partial = ""
            self._events.append(s2s.UserText(text(event, "transcript").strip(), final=True))
        elif kind == f"{_USER}.failed":
            self._partial = ""
            log.warning("OpenAI Realtime could not transcribe the user: %s", error_message(event))
            self._events.append(s2s.UserText("", final=True))
        elif kind == "error":
            self._on_error(event)
        else:
            log.debug("OpenAI Realtime: %s", kind or "a message without a type")

    def _reply_of(self, event: Json) -> str:
        return text(event, "response_id") or self._reply or ""

    def _on_audio(self, event: Json, now: float) -> None:
        item = text(event, "item_id")
        pcm = decode_pcm(
            self.service, event.get("delta"), self._carry.setdefault(item, bytearray())
        )
        if len(pcm):
            self._got_output(now)
            self._events.append(s2s.ReplyAudio(self._reply_of(event), item, pcm, self.rate))

    def _on_call(self, event: Json) -> None:
        call_id = text(event, "call_id")
        name = text(event, "name") or self._names.get(call_id, "")
        if not call_id or not name:
            log.warning("OpenAI Realtime: a function call without an id or a name was skipped")
            return
        arguments = event.get("arguments")
        call = ToolCall(call_id, name, arguments if isinstance(arguments, str) else "{}")
        self._events.append(s2s.ToolRequest(self._reply_of(event), call))

    def _on_done(self, response: Json) -> None:
        reply = text(response, "id") or self._reply or ""
        status = text(response, "status")
        if status == "cancelled":
            self._reply_done(reply, "cancelled")
        elif status == "failed":
            details = obj(response, "status_details")
            message = (
                text(obj(details, "error"), "message") or text(details, "reason") or "no details"
            )
            self._reply_done(
                reply, "failed", self.service.error(f"could not answer: {scrub(message)[:200]}.")
            )
        else:  # completed, or incomplete (a token limit, a filter): what came is the answer
            self._reply_done(reply, "completed")

    def _on_error(self, event: Json) -> None:
        error = obj(event, "error")
        code, param, message = text(error, "code"), text(error, "param"), error_message(event)
        if code in _FATAL:
            cause = _FATAL[code]
            failure = (
                self.service.key_rejected(code)
                if code == "invalid_api_key"
                else self.service.error(f": {cause} ({code}).", retryable=False)
            )
            self._events.append(Failed(failure))
            return
        if not self.beta and (param == "session.type" or "session.type" in message):
            log.info("OpenAI Realtime: the server speaks the beta dialect; switching")
            self.beta = True
            self._out.append(self._session_update())
            return
        log.warning("OpenAI Realtime reported: %s", message)


@dataclass(eq=False)
class OpenAIRealtimeAgent(AgentEngine):
    """Speech to speech with OpenAI's Realtime API."""

    name = NAME
    provider = PROVIDER

    _: KW_ONLY
    model: str = DEFAULT_MODEL
    policy: Policy = DEFAULT_POLICY

    def _wire(self, setup: s2s.AgentSetup) -> RealtimeAgentWire:
        return RealtimeAgentWire(self.endpoint, setup, model=self.model, **self._timeouts())


def make_s2s(settings: Settings) -> OpenAIRealtimeAgent:
    """OpenAI Realtime; ``s2s.model`` picks the model, ``PARLEY_OPENAI_REALTIME_URL`` the URL."""
    return OpenAIRealtimeAgent(
        settings.endpoint(ENDPOINT), model=settings.s2s.model or DEFAULT_MODEL
    )
