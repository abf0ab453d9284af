"""A local stand-in for OpenAI's Realtime API as a conversation (speech to speech), for tests.

It speaks the real wire protocol, in the GA dialect or the beta one (``dialect``): event names
(``response.output_audio.delta`` / ``response.audio.delta`` …), the ``session.update`` shape
each accepts (the other is refused as the service refuses it), ``conversation.item.added`` /
``.created``, the function name in ``arguments.done`` (GA only). A turn ends on the client's
``input_audio_buffer.commit`` (less than 100 ms is refused) or, with ``server_vad``, on its own
energy detector's silence; the user's words are the next of ``transcripts``. ``response.create``
answers with ``reply`` as audio deltas (a tone, 40 ms per character, word by word, faster than
real time) and transcript deltas, or with a function call when ``tool_call`` is set and the
model has no result yet (the follow-up says the result). Barge-in: ``speech_started`` cancels a
reply under ``interrupt_response``; ``response.cancel`` ends it ``cancelled``;
``conversation.item.truncate`` keeps the item's audio and transcript up to ``audio_end_ms``
(``truncations``, ``context()``) and refuses a point past its audio. Faults: refused
handshakes, ``accept_then_close``, and per reply ``reply_faults`` ("drop_before_output",
"drop_mid_reply", "silent").
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.fakes.base import FakeWebsocketServer, drop, json_response

RATE = 24_000
REPLY = "Sure. Here is a short spoken answer."
ReplyFault = Literal["drop_before_output", "drop_mid_reply", "silent"]


def tone(text: str) -> bytes:
    """The fake's voice for ``text``: a tone, 40 ms per character."""
    samples = max(RATE // 50, int(len(text) * 0.04 * RATE))
    t = np.arange(samples)
    freq = 220.0 + sum(map(ord, text)) % 200
    return (0.3 * 32767 * np.sin(2 * np.pi * freq * t / RATE)).astype("<i2").tobytes()


@dataclass
class AssistantItem:
    id: str
    words: list[tuple[str, int]] = field(default_factory=list)  # (word, audio end in ms)
    audio_ms: int = 0
    kind: str = "message"

    @property
    def transcript(self) -> str:
        return "".join(w for w, _ in self.words).strip()


class FakeRealtimeAgent(FakeWebsocketServer):
    PATH = "/v1/realtime"

    def __init__(self, key: str = "sk-test-key", dialect: Literal["ga", "beta"] = "ga") -> None:
        super().__init__(key=key)
        self.dialect = dialect
        self.reply = REPLY
        self.transcripts: deque[str] = deque()
        self.default_transcript = "What is the tallest mountain in the world?"
        self.tool_call: tuple[str, str] | None = None
        self.word_delay = 0.01
        self.reply_faults: deque[ReplyFault] = deque()
        self.session_updates: list[dict[str, Any]] = []
        #: The conversation as the model sees it: items in order.
        self.items: list[dict[str, Any]] = []
        self.responses: list[str] = []
        self.cancels = 0
        self.truncations: list[tuple[str, int]] = []
        self.deleted: list[str] = []
        self.commits = 0
        self._ids = itertools.count(1)
        self._assistant: dict[str, AssistantItem] = {}

    # ------------------------------------------------------------------------------ results

    def context(self) -> list[tuple[str, str]]:
        """(role, text) of each message item, the assistant's as truncated."""
        out = []
        for item in self.items:
            if item.get("type") != "message":
                continue
            if item["role"] == "assistant" and item["id"] in self._assistant:
                out.append(("assistant", self._assistant[item["id"]].transcript))
            else:
                parts = item.get("content", [])
                out.append(
                    (
                        item["role"],
                        " ".join(str(p.get("text") or p.get("transcript") or "") for p in parts),
                    )
                )
        return out

    # -------------------------------------------------------------------------------- wire

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Authorization") != f"Bearer {self.key}":
            error = {
                "type": "invalid_request_error",
                "code": "invalid_api_key",
                "message": "Incorrect API key provided.",
            }
            return json_response(401, {"error": error})
        if self.dialect == "beta" and request.headers.get("OpenAI-Beta") is None:
            pass  # servers that speak beta take clients without the header too
        return None

    def _refusal(self, connection: ServerConnection, status: int) -> Response:
        body = json.dumps({"error": {"message": f"fake error {status}", "code": "fake"}}).encode()
        return Response(status, "fake", Headers({"Content-Type": "application/json"}), body)

    def _name(self, ga: str, beta: str) -> str:
        return ga if self.dialect == "ga" else beta

    async def _handle(self, ws: ServerConnection) -> None:
        state = _Connection(ws)
        try:
            await self._send(ws, {"type": "session.created", "session": {"id": "sess_fake"}})
            await self.serve_events(ws, lambda event: self._on(state, event))
        except ConnectionClosed:
            pass  # gone before its session was created
        finally:
            state.end()

    async def _send(self, ws: ServerConnection, event: dict[str, Any]) -> None:
        await ws.send(json.dumps({"event_id": f"event_{next(self._ids)}", **event}))

    async def _error(
        self, ws: ServerConnection, code: str, message: str, param: str | None = None
    ) -> None:
        error = {"type": "invalid_request_error", "code": code, "message": message, "param": param}
        await self._send(ws, {"type": "error", "error": error})

    async def _on(self, state: _Connection, event: dict[str, Any]) -> bool:
        ws, kind = state.ws, event.get("type")
        if kind == "session.update":
            return await self._update(state, event.get("session", {}))
        if kind == "input_audio_buffer.append":
            data = base64.b64decode(event["audio"])
            state.buffer += data
            if state.server_vad is not None:
                await self._detect(state, data)
        elif kind == "input_audio_buffer.clear":
            state.buffer.clear()
            await self._send(ws, {"type": "input_audio_buffer.cleared"})
        elif kind == "input_audio_buffer.commit":
            if len(state.buffer) < RATE * 2 // 10:
                ms = len(state.buffer) / 48
                await self._error(
                    ws,
                    "input_audio_buffer_commit_empty",
                    "buffer too small. Expected at least 100ms of audio, "
                    f"but buffer only has {ms:.2f}ms of audio.",
                )
            else:
                await self._commit(state)
        elif kind == "conversation.item.create":
            item = {"id": f"item_{next(self._ids)}", **event.get("item", {})}
            self.items.append(item)
            await self._send(
                ws,
                {
                    "type": self._name("conversation.item.added", "conversation.item.created"),
                    "item": item,
                },
            )
        elif kind == "response.create":
            await self._respond(state)
        elif kind == "response.cancel":
            if state.reply is None or state.reply.done():
                await self._error(
                    ws,
                    "response_cancel_not_active",
                    "Cancellation failed: no active response found.",
                )
            else:
                self.cancels += 1
                state.reply.cancel()
        elif kind == "conversation.item.truncate":
            await self._truncate(ws, event)
        elif kind == "conversation.item.delete":
            item_id = event.get("item_id")
            self.items = [i for i in self.items if i["id"] != item_id]
            self.deleted.append(str(item_id))
            await self._send(ws, {"type": "conversation.item.deleted", "item_id": item_id})
        else:
            await self._error(ws, "unknown_event", f"Invalid value: '{kind}'.", "type")
        return True

    async def _update(self, state: _Connection, session: dict[str, Any]) -> bool:
        ws = state.ws
        if self.dialect == "beta" and "type" in session:
            await self._error(
                ws, "unknown_parameter", "Unknown parameter: 'session.type'.", "session.type"
            )
            return True
        if self.dialect == "ga" and (
            "input_audio_format" in session or session.get("type") != "realtime"
        ):
            await self._error(
                ws,
                "unknown_parameter",
                "Unknown parameter: 'session.input_audio_format'.",
                "session.input_audio_format",
            )
            return True
        self.session_updates.append(session)
        if self.dialect == "ga":
            detection = session.get("audio", {}).get("input", {}).get("turn_detection")
        else:
            detection = session.get("turn_detection")
        state.server_vad = detection
        state.tools = bool(session.get("tools"))
        await self._send(ws, {"type": "session.updated", "session": session})
        return await self._accepted(ws)

    # ------------------------------------------------------------------------------ turns

    async def _detect(self, state: _Connection, data: bytes) -> None:
        """Energy-based turn detection on 20 ms frames, as ``server_vad`` does it."""
        detection = state.server_vad or {}
        samples = np.frombuffer(data[: len(data) & ~1], dtype="<i2").astype(np.float64)
        for frame in np.array_split(samples, max(1, len(samples) // (RATE // 50))):
            state.heard_ms += 1000 * len(frame) / RATE
            loud = len(frame) and np.sqrt(np.mean(frame**2)) > 500
            if loud:
                state.silent_ms = 0.0
                if not state.speaking:
                    state.speaking = True
                    await self._send(
                        state.ws,
                        {
                            "type": "input_audio_buffer.speech_started",
                            "audio_start_ms": int(state.heard_ms),
                            "item_id": "pending",
                        },
                    )
                    if (
                        detection.get("interrupt_response", True)
                        and state.reply
                        and not state.reply.done()
                    ):
                        state.reply.cancel()
            elif state.speaking:
                state.silent_ms += 1000 * len(frame) / RATE
                if state.silent_ms >= detection.get("silence_duration_ms", 500):
                    state.speaking = False
                    end = int(state.heard_ms - state.silent_ms)
                    await self._send(
                        state.ws, {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": end}
                    )
                    await self._commit(state)
                    if detection.get("create_response", True):
                        await self._respond(state)

    async def _commit(self, state: _Connection) -> None:
        self.commits += 1
        item_id = f"item_{next(self._ids)}"
        state.buffer.clear()
        text = self.transcripts.popleft() if self.transcripts else self.default_transcript
        item = {
            "id": item_id,
            "type": "message",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": text}],
        }
        self.items.append(item)
        await self._send(state.ws, {"type": "input_audio_buffer.committed", "item_id": item_id})
        await self._send(
            state.ws,
            {
                "type": self._name("conversation.item.added", "conversation.item.created"),
                "item": item,
            },
        )
        event = "conversation.item.input_audio_transcription"
        for i, word in enumerate(text.split(" ")):
            await self._send(
                state.ws,
                {
                    "type": f"{event}.delta",
                    "item_id": item_id,
                    "delta": word if not i else f" {word}",
                },
            )
        await self._send(
            state.ws, {"type": f"{event}.completed", "item_id": item_id, "transcript": text}
        )

    async def _respond(self, state: _Connection) -> None:
        if state.reply is not None and not state.reply.done():
            await self._error(
                state.ws,
                "conversation_already_has_active_response",
                "Conversation already has an active response in progress.",
            )
            return
        fault = self.reply_faults.popleft() if self.reply_faults else None
        if fault == "drop_before_output":
            await drop(state.ws, None)
            return
        response_id = f"resp_{next(self._ids)}"
        self.responses.append(response_id)
        state.reply = asyncio.create_task(self._reply(state, response_id, fault))

    async def _reply(self, state: _Connection, response_id: str, fault: ReplyFault | None) -> None:
        ws = state.ws
        status, reason = "completed", None
        await self._send(
            ws,
            {"type": "response.created", "response": {"id": response_id, "status": "in_progress"}},
        )
        await self._send(
            ws,
            {
                "type": "rate_limits.updated",
                "rate_limits": [
                    {"name": "tokens", "limit": 1000, "remaining": 990, "reset_seconds": 1}
                ],
            },
        )
        if fault == "silent":
            await asyncio.Event().wait()
        try:
            if self._calling(state):
                await self._call(ws, response_id)
            else:
                await self._speak(ws, response_id, fault)
        except asyncio.CancelledError:
            status, reason = "cancelled", "client_cancelled"
        except ConnectionClosed:
            return
        details = {"type": status, "reason": reason} if reason else None
        response: dict[str, Any] = {
            "id": response_id,
            "status": status,
            "status_details": details,
            "output": [],
        }
        try:
            await self._send(ws, {"type": "response.done", "response": response})
        except ConnectionClosed:
            pass

    def _calling(self, state: _Connection) -> bool:
        if self.tool_call is None or not state.tools:
            return False
        last_user = max(
            (i for i, item in enumerate(self.items) if item.get("role") == "user"), default=-1
        )
        return not any(
            item.get("type") == "function_call_output" for item in self.items[last_user + 1 :]
        )

    async def _call(self, ws: ServerConnection, response_id: str) -> None:
        assert self.tool_call is not None
        name, arguments = self.tool_call
        item = {
            "id": f"item_{next(self._ids)}",
            "type": "function_call",
            "call_id": "call_fake1",
            "name": name,
            "arguments": "",
        }
        self.items.append(item)
        await self._send(
            ws, {"type": "response.output_item.added", "response_id": response_id, "item": item}
        )
        half = len(arguments) // 2
        for part in (arguments[:half], arguments[half:]):
            await self._send(
                ws,
                {
                    "type": "response.function_call_arguments.delta",
                    "response_id": response_id,
                    "item_id": item["id"],
                    "call_id": "call_fake1",
                    "delta": part,
                },
            )
        done = {
            "type": "response.function_call_arguments.done",
            "response_id": response_id,
            "item_id": item["id"],
            "call_id": "call_fake1",
            "arguments": arguments,
        }
        if self.dialect == "ga":
            done["name"] = name
        await self._send(ws, done)
        item["arguments"] = arguments

    async def _speak(
        self, ws: ServerConnection, response_id: str, fault: ReplyFault | None
    ) -> None:
        last = self.items[-1] if self.items else {}
        answer = last.get("type") == "function_call_output"
        text = f"The answer is {last['output']}." if answer else self.reply
        item_id = f"item_{next(self._ids)}"
        spoken = AssistantItem(item_id)
        self._assistant[item_id] = spoken
        self.items.append({"id": item_id, "type": "message", "role": "assistant", "content": []})
        ids = {
            "response_id": response_id,
            "item_id": item_id,
            "output_index": 0,
            "content_index": 0,
        }
        await self._send(
            ws,
            {
                "type": "response.output_item.added",
                "response_id": response_id,
                "item": {"id": item_id, "type": "message", "role": "assistant"},
            },
        )
        audio_event = self._name("response.output_audio.delta", "response.audio.delta")
        text_event = self._name("response.output_audio_transcript", "response.audio_transcript")
        for n, word in enumerate(re.findall(r"\s*\S+", text)):
            if fault == "drop_mid_reply" and n == 2:
                await drop(ws, 1011)
                raise ConnectionClosed(None, None)
            audio = tone(word)
            spoken.audio_ms += len(audio) * 1000 // (2 * RATE)
            spoken.words.append((word, spoken.audio_ms))
            await self._send(ws, {"type": f"{text_event}.delta", **ids, "delta": word})
            half = len(audio) // 2 + 1  # odd: a sample split across two deltas
            for part in (audio[:half], audio[half:]):
                await self._send(
                    ws, {"type": audio_event, **ids, "delta": base64.b64encode(part).decode()}
                )
            if self.word_delay:
                await asyncio.sleep(self.word_delay)
        await self._send(ws, {"type": f"{text_event}.done", **ids, "transcript": text})
        await self._send(
            ws, {"type": self._name("response.output_audio.done", "response.audio.done"), **ids}
        )
        output_done = {"type": "response.output_item.done", "response_id": response_id}
        await self._send(
            ws, {**output_done, "item": {"id": item_id, "type": "message", "status": "completed"}}
        )

    async def _truncate(self, ws: ServerConnection, event: dict[str, Any]) -> None:
        item_id, end = event.get("item_id"), event.get("audio_end_ms")
        spoken = self._assistant.get(str(item_id))
        if spoken is None:
            await self._error(
                ws, "invalid_value", f"Only model output audio messages can be truncated: {item_id}"
            )
            return
        if not isinstance(end, int) or end < 0 or end > spoken.audio_ms:
            await self._error(
                ws, "invalid_value", f"Audio content of {spoken.audio_ms}ms is shorter than {end}ms"
            )
            return
        self.truncations.append((str(item_id), end))
        spoken.words = [(w, t) for w, t in spoken.words if t <= end]
        spoken.audio_ms = end
        await self._send(
            ws,
            {
                "type": "conversation.item.truncated",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": end,
            },
        )


@dataclass
class AgentConnection:
    """A client's connection to a speech-to-speech agent: the reply being spoken, and whether
    the user is speaking (for how long they have been silent)."""

    ws: ServerConnection
    reply: asyncio.Task[None] | None = None
    speaking: bool = False
    silent_ms: float = 0.0

    def end(self) -> None:
        """The connection is gone: the reply being made stops."""
        if self.reply is not None:
            self.reply.cancel()


@dataclass
class _Connection(AgentConnection):
    buffer: bytearray = field(default_factory=bytearray)
    server_vad: dict[str, Any] | None = None
    tools: bool = False
    heard_ms: float = 0.0
