"""A scripted speech-to-speech engine with set latencies, for tests and ``--s2s fake``.

It behaves like a provider on the outside: the user's words are the next scripted text (final
``transcript_delay`` after the turn ends), the answer starts ``first_audio_delay`` later and
comes as transcript deltas and tone bursts a word at a time, faster than real time; with
``server_turns`` it ends turns itself on ``end_silence_ms`` of quiet audio. A scripted
``tool_call`` is asked for before the answer, which then says the result. ``interrupt`` stops
the answer (``cancelled``) and is recorded, as are typed messages and remembered turns, so tests
can check what a provider would have been told; ``fail`` ends a session. Everything waits on
the injected clock.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from assistant.clock import SYSTEM_CLOCK, Clock
from assistant.engines import s2s
from assistant.engines.base import PCM, EngineError, Message, ToolCall, queued
from assistant.engines.fake import DEFAULT_UTTERANCES, synthesize_words

RATE = 24_000


@dataclass(slots=True)
class FakeSpeechAgent:
    script: Sequence[str] = DEFAULT_UTTERANCES
    reply: str = "Here is a short spoken answer for you."
    transcript_delay: float = 0.05
    first_audio_delay: float = 0.15
    chars_per_second: float = 16.0
    realtime_factor: float = 0.1
    #: (name, JSON arguments) asked for before each answer while set.
    tool_call: tuple[str, str] | None = None
    fail_on_open: EngineError | None = None
    #: Every session fails with this as soon as it opens (a server that accepts, then drops).
    drop_on_open: EngineError | None = None
    name: str = "fake"
    clock: Clock = SYSTEM_CLOCK
    sessions: list[FakeAgentSession] = field(default_factory=list)
    _turns: itertools.count[int] = field(default_factory=itertools.count)

    async def open(self, setup: s2s.AgentSetup) -> FakeAgentSession:
        if self.fail_on_open is not None:
            raise self.fail_on_open
        session = FakeAgentSession(self, setup)
        self.sessions.append(session)
        if self.drop_on_open is not None:
            session.fail(self.drop_on_open)
        return session

    async def warm_up(self) -> None:
        return None

    def next_text(self) -> str:
        return self.script[next(self._turns) % len(self.script)]


class FakeAgentSession:
    sample_rate = 16_000

    def __init__(self, engine: FakeSpeechAgent, setup: s2s.AgentSetup) -> None:
        self.engine = engine
        self.setup = setup
        self.remembered: list[Message] = []
        self.interrupts: list[tuple[str, tuple[s2s.Heard, ...], str]] = []
        self.typed: list[str] = []
        self.results: list[tuple[str, str]] = []
        self.closed = False
        self._queue: asyncio.Queue[s2s.AgentEvent | EngineError | None] = asyncio.Queue()
        self._audio = 0.0
        self._speaking = False
        self._quiet = 0.0
        self._replies = itertools.count(1)
        self._answer: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------------------- protocol

    def push(self, pcm: PCM) -> None:
        seconds = len(pcm) / self.sample_rate
        self._audio += seconds
        if not self.setup.server_turns:
            return
        loud = len(pcm) > 0 and float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) > 1000
        if loud:
            self._quiet = 0.0
            if not self._speaking:
                self._speaking = True
                self._put(s2s.SpeechStarted())
                if self._answer is not None and not self._answer.done():
                    self._answer.cancel()  # the provider's own barge-in
        elif self._speaking:
            self._quiet += seconds
            if self._quiet * 1000 >= self.setup.end_silence_ms:
                self._speaking = False
                self._put(s2s.SpeechStopped(lag=self._quiet))
                self._respond(self.engine.next_text())

    def commit(self) -> bool:
        heard, self._audio = self._audio, 0.0
        if heard < 0.1:
            return False
        self._respond(self.engine.next_text())
        return True

    def clear(self) -> None:
        self._audio = 0.0

    def interrupt(self, reply: str, heard: Sequence[s2s.Heard], heard_text: str) -> None:
        self.interrupts.append((reply, tuple(heard), heard_text))
        if self._answer is not None and not self._answer.done():
            self._answer.cancel()

    def tool_results(self, reply: str, results: Sequence[tuple[str, str]]) -> None:
        self.results.extend(results)
        answer = "The answer is " + ", ".join(r for _, r in results) + "."
        self._answer = asyncio.ensure_future(self._speak(answer, None))

    def say(self, text: str) -> None:
        self.typed.append(text)
        self._respond(None)

    def remember(self, messages: Sequence[Message]) -> None:
        self.remembered.extend(messages)

    def fail(self, error: EngineError) -> None:
        """End the session as a provider that went away for good would."""
        self._queue.put_nowait(error)

    def events(self) -> AsyncIterator[s2s.AgentEvent]:
        return queued(self._queue)

    async def aclose(self) -> None:
        self.closed = True
        if self._answer is not None:
            self._answer.cancel()
        self._queue.put_nowait(None)

    # ---------------------------------------------------------------------------- answers

    def _put(self, event: s2s.AgentEvent) -> None:
        if not self.closed:
            self._queue.put_nowait(event)

    def _respond(self, said: str | None) -> None:
        self._answer = asyncio.ensure_future(self._speak(self.engine.reply, said))

    async def _speak(self, text: str, said: str | None) -> None:
        engine, clock = self.engine, self.engine.clock
        reply = f"reply_{next(self._replies)}"
        item = f"{reply}_item"
        try:
            if said is not None:
                await clock.sleep(engine.transcript_delay)
                self._put(s2s.UserText(said, final=True))
            await clock.sleep(max(0.0, engine.first_audio_delay - engine.transcript_delay))
            self._put(s2s.ReplyStarted(reply))
            if engine.tool_call is not None and self.setup.tools and said is not None:
                name, arguments = engine.tool_call
                self._put(s2s.ToolRequest(reply, ToolCall(f"call_{reply}", name, arguments)))
                self._put(s2s.ReplyDone(reply, "completed"))
                return
            for word in re.findall(r"\s*\S+", text):
                pcm, _ = synthesize_words(word, RATE, engine.chars_per_second)
                self._put(s2s.ReplyText(reply, item, word))
                self._put(s2s.ReplyAudio(reply, item, pcm, RATE))
                await clock.sleep(engine.realtime_factor * len(pcm) / RATE)
            self._put(s2s.ReplyTextDone(reply, item, text))
            self._put(s2s.ReplyDone(reply, "completed"))
        except asyncio.CancelledError:
            self._put(s2s.ReplyDone(reply, "cancelled"))


def make_s2s(settings: object) -> FakeSpeechAgent:
    return FakeSpeechAgent()
