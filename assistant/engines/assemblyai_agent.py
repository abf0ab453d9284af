"""AssemblyAI's Voice Agent API as a speech-to-speech engine: one websocket doing speech
recognition, the model, the voice, turn detection, barge-in and tools.

Wire rules (``VoiceAgentWire``, no I/O):

- ``wss://agents.assemblyai.com/v1/ws`` with ``Authorization: Bearer`` and the AssemblyAI key.
  A new session starts with ``session.update`` (system prompt, greeting, voice, tools in the
  flat form, 24 kHz PCM both ways, turn detection: the VAD threshold, ``min_silence`` = the
  silence that ends a turn, ``interrupt_response``) and is ready at ``session.ready``, whose
  ``session_id`` is kept. Earlier turns have no message of their own: they go into the system
  prompt. Audio goes in ``input.audio`` messages of 50 ms, only once the session is ready.
- The service always ends turns itself. When Parley does (push-to-talk, or its own
  hands-free detection), only the utterance's audio is sent, and at its end ``commit`` sends
  silence a little longer than ``min_silence`` so that the service ends the turn there.
- Barge-in: the service stops its reply itself (``transcript.agent`` with ``interrupted``,
  ``reply.done`` ``interrupted``); no message says how much was played, so an interruption
  updates the system prompt with the words the user heard of the reply.
- Tools: ``tool.call`` (arguments as an object) is answered with ``tool.result`` (the result
  as a JSON string) once ``reply.done`` came; a result for an interrupted reply is dropped. The
  agent answers on by itself. Typed text becomes ``reply.create`` with instructions.
- A connection that drops without ``session.ended`` is resumed (``session.resume`` with the
  session id, within 30 s); a refused resume (``session_not_found``, ``session_forbidden``,
  ``session_expired``) starts a new session, with the turns so far in its prompt.
- ``session.error`` with ``UNAUTHORIZED``/``FORBIDDEN`` ends the session (either case); other
  codes are logged and the socket stays open. Unknown messages are ignored.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Unpack

from assistant.config import Settings
from assistant.engines import s2s
from assistant.engines.base import Message, ToolCall
from assistant.engines.net.agent_driver import AgentEngine, AgentWire, WireTimeouts
from assistant.engines.net.errors import Service
from assistant.engines.net.messages import Message as Json
from assistant.engines.net.messages import Outgoing, decode_pcm, flag, number, parse_json, text
from assistant.engines.net.pacing import RealtimePacer
from assistant.engines.net.redact import scrub
from assistant.engines.net.retry import Backoff, Policy
from assistant.engines.net.wire import Failed, Finished, Ready

log = logging.getLogger(__name__)

NAME = "assemblyai-agent"
#: Whose endpoint it is (``PARLEY_ASSEMBLYAI_AGENT_URL``) and whose key it uses.
ENDPOINT = "assemblyai_agent"
PROVIDER = "assemblyai"
SERVICE = Service(NAME, "AssemblyAI Voice Agent", PROVIDER)
DEFAULT_VOICE = "ivy"
#: Silence sent after an utterance beyond ``min_silence``, so the service surely ends the turn.
TAIL_MARGIN_MS = 150
_KEY_CODES = ("unauthorized", "forbidden")
_RESUME_REFUSED = ("session_not_found", "session_forbidden", "session_expired")
DEFAULT_POLICY = Policy(open_timeout=10.0, backoff=Backoff(base=0.25, cap=5.0), reconnects=6)


class VoiceAgentWire(AgentWire):
    """The Voice Agent session's messages and rules; see the module docstring."""

    service = SERVICE
    greets = True
    batch_ms = 50

    def __init__(self, url: str, setup: s2s.AgentSetup, **timeouts: Unpack[WireTimeouts]) -> None:
        super().__init__(url, setup, **timeouts)
        self.session_id: str | None = None
        self._resuming = False
        self._note = ""  # what the user heard of an interrupted reply
        self._interrupted: set[str] = set()
        self._carry: dict[str, bytearray] = {}

    # ---------------------------------------------------------------------------- connection

    def headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def start(self) -> list[Outgoing]:
        self._carry.clear()
        self._resuming = self.session_id is not None
        if self._resuming:
            return [Outgoing.json({"type": "session.resume", "session_id": self.session_id})]
        return [Outgoing.json({"type": "session.update", "session": self._session()})]

    def _session(self) -> Json:
        setup = self.setup
        fmt = {"encoding": "audio/pcm", "sample_rate": self.rate}
        detection = {
            "vad_threshold": setup.vad_threshold,
            "min_silence": setup.end_silence_ms,
            "max_silence": max(3000, setup.end_silence_ms),
            "interrupt_response": True,
        }
        session: Json = {
            "system_prompt": self._prompt(),
            "input": {"format": fmt, "turn_detection": detection},
            "output": {"voice": setup.voice or DEFAULT_VOICE, "format": fmt},
            "tools": [{**t.to_realtime(), "execution_mode": "interactive"} for t in setup.tools],
        }
        if setup.greeting and not self.history:
            session["greeting"] = setup.greeting
        return session

    def _prompt(self) -> str:
        """The instructions, the conversation so far, and what was heard of a cut reply."""
        parts = [self.setup.instructions]
        lines = [_line(m) for m in self.history]
        lines = [line for line in lines if line]
        if lines:
            parts.append("The conversation so far:\n" + "\n".join(lines))
        if self._note:
            parts.append(self._note)
        return "\n\n".join(p for p in parts if p)

    # ------------------------------------------------------------------------------ messages

    def audio_message(self, audio: str) -> str:
        return json.dumps({"type": "input.audio", "audio": audio})

    def commit_messages(self, seconds: float) -> list[Outgoing]:
        """Silence past ``min_silence``: the service ends the turn and answers."""
        tail = self.setup.end_silence_ms + TAIL_MARGIN_MS
        step = self.batch_ms * self.rate // 1000
        silence = Outgoing(
            self.audio_message(base64.b64encode(bytes(2 * step)).decode("ascii")), step / self.rate
        )
        return [silence] * -(-tail * self.rate // 1000 // step)

    def say_messages(self, text: str) -> list[Outgoing]:
        instructions = f"The user typed this message instead of speaking; answer it: {text}"
        return [Outgoing.json({"type": "reply.create", "instructions": instructions})]

    def interrupt_messages(
        self, reply: str, heard: Sequence[s2s.Heard], heard_text: str
    ) -> list[Outgoing]:
        self._interrupted.add(reply)
        said = heard_text.strip()
        self._note = (
            f"Your last reply was interrupted; the user heard only: «{said}». Nothing after "
            "that was said."
            if said
            else "Your last reply was interrupted before the user heard any of it."
        )
        return [
            Outgoing.json({"type": "session.update", "session": {"system_prompt": self._prompt()}})
        ]

    def result_messages(self, reply: str, results: Sequence[tuple[str, str]]) -> list[Outgoing]:
        if reply in self._interrupted:
            return []  # the service dropped that reply: its results would answer nothing
        return [
            Outgoing.json({"type": "tool.result", "call_id": call, "result": _json_string(result)})
            for call, result in results
        ]

    def remember(self, messages: Sequence[Message]) -> None:
        super().remember(messages)
        self._note = ""  # a new turn: the cut reply is history now

    # -------------------------------------------------------------------------------- events

    def receive(self, raw: str | bytes, now: float) -> None:
        event = parse_json(self.service.label, raw)
        if event is None:
            return
        kind = text(event, "type")
        reply = text(event, "reply_id") or self._reply or ""
        if kind == "session.ready":
            self._on_ready(event)
        elif kind == "reply.audio":
            pcm = decode_pcm(
                self.service, event.get("data"), self._carry.setdefault(reply, bytearray())
            )
            if len(pcm):
                self._got_output(now)
                self._events.append(s2s.ReplyAudio(reply, reply, pcm, self.rate))
        elif kind == "transcript.agent.delta":
            delta = text(event, "delta")
            if delta:
                self._got_output(now)
                at = number(event.get("start_ms"), -1.0)
                self._events.append(
                    s2s.ReplyText(reply, reply, delta, at / 1000 if at >= 0 else None)
                )
        elif kind == "transcript.agent":
            self._events.append(s2s.ReplyTextDone(reply, reply, text(event, "text")))
            if flag(event, "interrupted"):
                self._interrupted.add(reply)
        elif kind == "reply.started":
            if reply:
                self._reply_started(reply, now)
        elif kind == "reply.done":
            interrupted = text(event, "status") == "interrupted" or reply in self._interrupted
            self._reply_done(reply, "cancelled" if interrupted else "completed")
        elif kind == "reply.error":
            message = text(event, "message") or text(event, "code") or "no details"
            self._reply_done(
                reply, "failed", self.service.error(f"could not answer: {scrub(message)[:200]}.")
            )
        elif kind == "tool.call":
            self._on_call(event, reply)
        elif kind == "input.speech.started":
            self._events.append(s2s.SpeechStarted())
        elif kind == "input.speech.stopped":
            self._events.append(s2s.SpeechStopped())
        elif kind == "transcript.user.delta":
            self._events.append(s2s.UserText(text(event, "text").strip(), final=False))
        elif kind == "transcript.user":
            self._events.append(s2s.UserText(text(event, "text").strip(), final=True))
        elif kind == "session.error":
            self._on_error(event)
        elif kind == "session.ended":
            self._events.append(Finished())
        else:
            log.debug("AssemblyAI Voice Agent: %s", kind or "a message without a type")

    def _on_ready(self, event: Json) -> None:
        session_id = text(event, "session_id")
        if self._resuming:
            log.info("AssemblyAI Voice Agent: the session was resumed")
        self._resuming = False
        if session_id:
            self.session_id = session_id
        self._events.append(Ready())

    def _on_call(self, event: Json, reply: str) -> None:
        call_id, name = text(event, "call_id"), text(event, "name")
        if not call_id or not name:
            log.warning("AssemblyAI Voice Agent: a tool call without an id or a name was skipped")
            return
        arguments = event.get("arguments")
        if isinstance(arguments, dict):
            encoded = json.dumps(arguments)
        else:
            encoded = arguments if isinstance(arguments, str) else "{}"
        self._events.append(s2s.ToolRequest(reply, ToolCall(call_id, name, encoded)))

    def _on_error(self, event: Json) -> None:
        code = text(event, "code")
        message = scrub(text(event, "message") or code or "no details")[:300]
        lowered = code.lower()
        if lowered in _KEY_CODES:
            self._events.append(Failed(self.service.key_rejected(code)))
        elif lowered in _RESUME_REFUSED and self._resuming:
            # The service forgot the session: the next connection starts a new one.
            self.session_id = None
            self._resuming = False
            self._events.append(
                Failed(
                    self.service.error(
                        f"could not resume the session ({code}); starting a new one."
                    )
                )
            )
        elif lowered == "session_expired":
            self._events.append(
                Failed(
                    self.service.error(": the session reached its maximum length.", retryable=False)
                )
            )
        else:
            log.warning("AssemblyAI Voice Agent reported %s: %s", code or "an error", message)


def _json_string(result: str) -> str:
    """A tool result as the JSON string ``tool.result`` carries."""
    try:
        json.loads(result)
    except (ValueError, RecursionError):
        return json.dumps(result)
    return result


def _line(message: Message) -> str:
    if message.role == "user" and message.content.strip():
        return f"User: {message.content.strip()}"
    if message.role == "assistant" and message.content.strip():
        return f"You: {message.content.strip()}"
    if message.role == "tool" and message.content.strip():
        return f"(A tool returned: {message.content.strip()})"
    return ""


@dataclass(eq=False)
class AssemblyAIVoiceAgent(AgentEngine):
    """Speech to speech with AssemblyAI's Voice Agent API."""

    name = NAME
    provider = PROVIDER

    _: KW_ONLY
    policy: Policy = DEFAULT_POLICY
    #: Audio may run this far ahead of real time.
    burst: float = 1.0

    def _wire(self, setup: s2s.AgentSetup) -> VoiceAgentWire:
        return VoiceAgentWire(self.endpoint, setup, **self._timeouts())

    def _pacer(self) -> RealtimePacer:
        return RealtimePacer(self.burst)


def make_s2s(settings: Settings) -> AssemblyAIVoiceAgent:
    """The Voice Agent API; ``PARLEY_ASSEMBLYAI_AGENT_URL`` (a full websocket URL) overrides."""
    return AssemblyAIVoiceAgent(settings.endpoint(ENDPOINT))
