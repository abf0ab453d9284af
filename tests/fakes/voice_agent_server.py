"""A local stand-in for AssemblyAI's Voice Agent API (speech to speech on one websocket).

It speaks the real wire protocol: ``session.update`` first (flat tools, 24 kHz PCM, turn
detection with ``min_silence``) answered by ``session.ready {session_id}`` (later updates by
``session.updated {config}``: the config comes back under ``config``), ``input.audio`` only once
ready, its own energy detector ending turns after ``min_silence`` of silence
(``input.speech.started`` / ``stopped``, ``transcript.user.delta`` then ``transcript.user``), a
reply as ``reply.started``, ``reply.audio {data}`` faster than real time, ``transcript.agent``
(with ``transcript.agent.delta`` and its ``start_ms`` before it when ``agent_deltas``) and
``reply.done``. Speech over a reply interrupts it (``transcript.agent {interrupted: true}``,
``reply.done {status: "interrupted"}``). A tool call is ``tool.call`` (arguments as an object)
then ``reply.done``; after ``tool.result`` the agent answers by itself. ``reply.create`` answers
typed text. The greeting is spoken right after ``session.ready``. A wrong key gets
``session.error UNAUTHORIZED`` and close 1008. A connection that ends without ``session.end``
can be resumed (``session.resume``; ``refuse_resume`` answers ``session_not_found`` and close
1008). Faults: refused handshakes, ``accept_then_close``, and per reply ``reply_faults``
("drop_before_output", "drop_mid_reply", "silent").
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
from websockets.exceptions import ConnectionClosed

from tests.fakes.base import FakeWebsocketServer, drop
from tests.fakes.realtime_agent_server import RATE, AgentConnection, tone

REPLY = "Sure. Here is a short spoken answer."
ReplyFault = Literal["drop_before_output", "drop_mid_reply", "silent"]


@dataclass
class AgentSession:
    id: str
    config: dict[str, Any]
    #: Messages of the conversation, as the agent keeps them: (role, text).
    context: list[tuple[str, str]] = field(default_factory=list)
    pending_call: bool = False


@dataclass
class _Connection(AgentConnection):
    session: AgentSession | None = None
    speech_ms: float = 0.0
    partial_sent: bool = False


class FakeVoiceAgent(FakeWebsocketServer):
    PATH = "/v1/ws"

    def __init__(self, key: str = "aai-test-key") -> None:
        super().__init__(key=key)
        self.reply = REPLY
        self.transcripts: deque[str] = deque()
        self.default_transcript = "What is the tallest mountain in the world?"
        self.tool_call: tuple[str, dict[str, Any]] | None = None
        self.agent_deltas = True
        self.word_delay = 0.01
        self.refuse_resume = False
        self.reply_faults: deque[ReplyFault] = deque()
        self.session_updates: list[dict[str, Any]] = []
        self.resumes: list[str] = []
        self.tool_results: list[dict[str, Any]] = []
        self.sessions: dict[str, AgentSession] = {}
        self.replies = 0
        self.interruptions = 0
        self._ids = itertools.count(1)

    def prompts(self) -> list[str]:
        return [u["system_prompt"] for u in self.session_updates if "system_prompt" in u]

    # -------------------------------------------------------------------------------- wire

    async def _send(self, ws: ServerConnection, event: dict[str, Any]) -> None:
        await ws.send(json.dumps({**event, "timestamp": "2026-08-01T12:00:00Z"}))

    async def _handle(self, ws: ServerConnection) -> None:
        auth = ws.request.headers.get("Authorization") if ws.request else None
        if auth != f"Bearer {self.key}":
            await self._send(
                ws, {"type": "session.error", "code": "UNAUTHORIZED", "message": "Invalid API key"}
            )
            await ws.close(1008, "Unauthorized")
            return
        state = _Connection(ws)
        outcome = ""

        async def on_event(event: dict[str, Any]) -> bool:
            nonlocal outcome
            outcome = await self._on(state, event)
            return outcome not in ("end", "close")

        try:
            await self.serve_events(ws, on_event)
        finally:
            state.end()
            if outcome == "end" and state.session is not None:
                self.sessions.pop(state.session.id, None)

    async def _on(self, state: _Connection, event: dict[str, Any]) -> str:
        ws, kind = state.ws, event.get("type")
        if kind == "session.update":
            return await self._update(state, event.get("session", {}))
        if kind == "session.resume":
            return await self._resume(state, str(event.get("session_id")))
        if state.session is None:
            await self._send(
                ws,
                {
                    "type": "session.error",
                    "code": "invalid_format",
                    "message": f"{kind} before session.ready",
                },
            )
            return ""
        if kind == "input.audio":
            await self._hear(state, base64.b64decode(event["audio"]))
        elif kind == "tool.result":
            self.tool_results.append(event)
            state.session.pending_call = False
            state.session.context.append(("tool", str(event.get("result"))))
            self._start_reply(state, f"The answer is {json.loads(event['result'])}.")
        elif kind == "reply.create":
            state.session.context.append(("user", str(event.get("instructions"))))
            self._start_reply(state, self.reply)
        elif kind == "session.end":
            await self._send(
                ws,
                {
                    "type": "session.ended",
                    "session_duration_seconds": 1.0,
                    "audio_duration_seconds": None,
                },
            )
            await ws.close(1000)
            return "end"
        else:
            await self._send(
                ws,
                {
                    "type": "session.error",
                    "code": "invalid_format",
                    "message": f"unknown message type {kind}",
                },
            )
        return ""

    async def _update(self, state: _Connection, session: dict[str, Any]) -> str:
        ws = state.ws
        self.session_updates.append(session)
        if state.session is not None:
            for name in ("greeting",):
                if name in session:
                    await self._send(
                        ws,
                        {
                            "type": "session.error",
                            "code": "immutable_field",
                            "param": name,
                            "message": f"{name} cannot change",
                        },
                    )
                    return ""
            state.session.config.update(session)
            await self._send(ws, {"type": "session.updated", "config": state.session.config})
            return ""
        sid = f"sess_{next(self._ids)}"
        state.session = self.sessions[sid] = AgentSession(sid, dict(session))
        await self._send(ws, {"type": "session.ready", "session_id": sid})
        if not await self._accepted(ws):
            return "close"
        if session.get("greeting"):
            self._start_reply(state, str(session["greeting"]))
        return ""

    async def _resume(self, state: _Connection, sid: str) -> str:
        self.resumes.append(sid)
        session = self.sessions.get(sid)
        if session is None or self.refuse_resume:
            await self._send(
                state.ws,
                {
                    "type": "session.error",
                    "code": "session_not_found",
                    "message": "Session not found or expired.",
                },
            )
            await state.ws.close(1008, "session_not_found")
            return "close"
        state.session = session
        await self._send(state.ws, {"type": "session.ready", "session_id": sid})
        return "" if await self._accepted(state.ws) else "close"

    # ------------------------------------------------------------------------------ turns

    async def _hear(self, state: _Connection, data: bytes) -> None:
        """Energy-based turn detection on 20 ms frames with the session's ``min_silence``."""
        assert state.session is not None
        detection = state.session.config.get("input", {}).get("turn_detection", {})
        min_silence = detection.get("min_silence", 1000)
        samples = np.frombuffer(data[: len(data) & ~1], dtype="<i2").astype(np.float64)
        for frame in np.array_split(samples, max(1, len(samples) // (RATE // 50))):
            ms = 1000 * len(frame) / RATE
            loud = len(frame) and np.sqrt(np.mean(frame**2)) > 500
            if loud:
                state.silent_ms = 0.0
                state.speech_ms += ms
                if not state.speaking:
                    state.speaking, state.partial_sent = True, False
                    await self._send(state.ws, {"type": "input.speech.started"})
                    if state.reply is not None and not state.reply.done():
                        self.interruptions += 1
                        state.reply.cancel()
                if state.speech_ms > 300 and not state.partial_sent:
                    state.partial_sent = True
                    partial = (
                        self.transcripts[0] if self.transcripts else self.default_transcript
                    ).split(" ")[0]
                    await self._send(
                        state.ws,
                        {"type": "transcript.user.delta", "text": partial, "item_id": "item_u"},
                    )
            elif state.speaking:
                state.silent_ms += ms
                if state.silent_ms >= min_silence:
                    state.speaking, state.speech_ms = False, 0.0
                    await self._turn_ended(state)

    async def _turn_ended(self, state: _Connection) -> None:
        assert state.session is not None
        await self._send(state.ws, {"type": "input.speech.stopped"})
        text = self.transcripts.popleft() if self.transcripts else self.default_transcript
        await self._send(
            state.ws,
            {"type": "transcript.user", "text": text, "item_id": f"item_{next(self._ids)}"},
        )
        state.session.context.append(("user", text))
        fault = self.reply_faults.popleft() if self.reply_faults else None
        if fault == "drop_before_output":
            await drop(state.ws, None)
            return
        tools = {t.get("name") for t in state.session.config.get("tools", [])}
        if self.tool_call is not None and self.tool_call[0] in tools:
            self._start_reply(state, "", call=True)
        else:
            self._start_reply(state, self.reply, fault=fault)

    def _start_reply(
        self, state: _Connection, text: str, *, call: bool = False, fault: ReplyFault | None = None
    ) -> None:
        if state.reply is not None and not state.reply.done():
            state.reply.cancel()
        state.reply = asyncio.create_task(self._reply(state, text, call, fault))

    async def _reply(
        self, state: _Connection, text: str, call: bool, fault: ReplyFault | None
    ) -> None:
        assert state.session is not None
        ws, reply_id = state.ws, f"reply_{next(self._ids)}"
        self.replies += 1
        said: list[str] = []
        try:
            await self._send(
                ws,
                {
                    "type": "reply.started",
                    "reply_id": reply_id,
                    "item_id": f"item_{next(self._ids)}",
                },
            )
            if fault == "silent":
                await asyncio.Event().wait()
            if call:
                assert self.tool_call is not None
                name, arguments = self.tool_call
                state.session.pending_call = True
                await self._send(
                    ws,
                    {
                        "type": "tool.call",
                        "call_id": "call_fake1",
                        "name": name,
                        "arguments": arguments,
                    },
                )
                await self._send(
                    ws, {"type": "reply.done", "reply_id": reply_id, "status": "completed"}
                )
                return
            at = 0
            for n, word in enumerate(re.findall(r"\s*\S+", text)):
                if fault == "drop_mid_reply" and n == 2:
                    await drop(ws, None)
                    return
                audio = tone(word)
                if self.agent_deltas:
                    end = at + len(audio) * 1000 // (2 * RATE)
                    await self._send(
                        ws,
                        {
                            "type": "transcript.agent.delta",
                            "reply_id": reply_id,
                            "delta": word,
                            "start_ms": at,
                            "end_ms": end,
                        },
                    )
                    at = end
                await self._send(
                    ws,
                    {
                        "type": "reply.audio",
                        "reply_id": reply_id,
                        "data": base64.b64encode(audio).decode(),
                    },
                )
                said.append(word)
                if self.word_delay:
                    await asyncio.sleep(self.word_delay)
            await self._send(
                ws,
                {
                    "type": "transcript.agent",
                    "reply_id": reply_id,
                    "text": text,
                    "interrupted": False,
                },
            )
            state.session.context.append(("assistant", text))
            await self._send(
                ws, {"type": "reply.done", "reply_id": reply_id, "status": "completed"}
            )
        except asyncio.CancelledError:
            partial = "".join(said).strip()
            state.session.context.append(("assistant", partial))
            try:
                await self._send(
                    ws,
                    {
                        "type": "transcript.agent",
                        "reply_id": reply_id,
                        "text": partial,
                        "interrupted": True,
                    },
                )
                await self._send(
                    ws, {"type": "reply.done", "reply_id": reply_id, "status": "interrupted"}
                )
            except ConnectionClosed:
                pass
        except ConnectionClosed:
            pass
