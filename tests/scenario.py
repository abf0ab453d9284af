"""Turn-taking scenarios in virtual time: a declarative script drives a real ``Session``.

A script says what the user does and when, in seconds from the start::

    Stage(mode="vad", script=[Speech(0.5, 2.5), Speech(3.1, 3.3), Do(4.0, Session.interrupt)])

The session, its tracker, replies, recorder and the text splitter are the real ones. The
engines are the scripted fakes with set latencies, all on one ``ManualClock``; the player is a
``ClockedPlayer`` rendered by that clock; the VAD says "speech" exactly where the script does.
A ten-second conversation runs in milliseconds, and every mark is exact up to the 32 ms frame.
The engines are closed when the stage ends.

``Speech`` is what the microphone hears (speech-like noise); ``Key`` holds the talk key (and
speaks while it is held); ``Do`` calls something on the session at a moment.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from assistant.audio.player import ClockedPlayer
from assistant.clock import ManualClock
from assistant.config import Settings
from assistant.engines.base import close_engine
from assistant.engines.fake import FakeLLM, FakeSTT, FakeTTS
from assistant.engines.fake_agent import FakeSpeechAgent
from assistant.events import SessionEvent, State, StateChanged, TurnFinished
from assistant.history import HistoryStore, TurnRecord
from assistant.session import Session
from assistant.session.s2s import SpeechSession
from assistant.tools import ToolRegistry
from assistant.turns import EndOfTurnModel
from assistant.types import FRAME_SAMPLES, FRAME_SECONDS, PCM, AudioFrame

T0 = 1000.0


@dataclass(frozen=True)
class Speech:
    """The user speaks from ``start`` to ``end`` (seconds)."""

    start: float
    end: float


@dataclass(frozen=True)
class Key:
    """The talk key is held from ``start`` to ``end``, and the user speaks meanwhile."""

    start: float
    end: float


@dataclass(frozen=True)
class Do:
    """Call ``action(session)`` at ``at`` seconds."""

    at: float
    action: Callable[[Session], object]


Step = Speech | Key | Do


class ScriptVAD:
    """Speech probability 1.0 while the script's speech is on, else 0.0. A look between two
    frames asks ``speaking_now`` (the stage's script at the look's latest samples)."""

    def __init__(self) -> None:
        self.speaking = False
        self.speaking_now: Callable[[], bool] = lambda: False

    def process(self, pcm: object) -> float:
        return 1.0 if self.speaking else 0.0

    def look(self, pcm: object, fresh: int) -> float:
        return 1.0 if self.speaking_now() else 0.0

    def reset(self) -> None:
        pass


class ScriptedTurnModel:
    """An audio end-of-turn model that hears every pause as ``probability`` finished."""

    def __init__(self, probability: float) -> None:
        self.probability = probability
        self.calls: list[int] = []

    def end_probability(self, pcm16k: np.ndarray) -> float:
        self.calls.append(len(pcm16k))
        return self.probability


async def inline(function: Callable[..., Any], *args: Any) -> Any:
    """Blocking work run on the loop: virtual time has no threads."""
    return function(*args)


@dataclass
class Stage:
    """One conversation on virtual time. Use as ``async with Stage(...) as stage``."""

    tmp_path: Path
    mode: str = "ptt"
    script: Sequence[Step] = ()
    settings: Settings = field(default_factory=Settings)
    stt: FakeSTT | None = None
    llm: FakeLLM | None = None
    tts: FakeTTS | None = None
    tools: ToolRegistry | None = None
    turn_model: EndOfTurnModel | None = None
    #: Engines used instead of the fakes (None in a place keeps that fake).
    engines: tuple[Any, Any, Any] | None = None
    #: A speech-to-speech engine: the stage runs a ``SpeechSession`` on it instead.
    agent: FakeSpeechAgent | None = None
    #: Virtual time; made before the stage when engines built for a test need it too.
    clock: ManualClock = field(default_factory=lambda: ManualClock(T0))
    #: The recognizer's version of each microphone frame (``AudioFrame.speech``), as an echo
    #: canceller's linear stage gives it; None: frames have none.
    heard: Callable[[PCM], PCM] | None = None

    def __post_init__(self) -> None:
        s = self.settings
        s.turn_mode = self.mode  # type: ignore[assignment]
        s.vad.end_silence_ms = 300
        s.vad.min_speech_ms = 100
        s.interruption.min_duration_ms = 400
        s.interruption.resume_timeout_ms = 500
        self.stt = self.stt or FakeSTT()
        self.llm = self.llm or FakeLLM(ttft=0.05, tokens_per_second=200)
        self.tts = self.tts or FakeTTS(first_audio_delay=0.02, chars_per_second=40)
        for engine in (self.stt, self.llm, self.tts):
            engine.clock = self.clock
        given = self.engines or (None, None, None)
        stt, llm, tts = (
            cast(Any, g or d) for g, d in zip(given, (self.stt, self.llm, self.tts), strict=True)
        )
        self.vad = ScriptVAD()
        self.vad.speaking_now = lambda: self.speaking_at(self.now - 0.005)
        self.player = ClockedPlayer(self.clock)
        if self.tools is not None:
            self.tools.offload = inline  # tools run on the loop, in virtual time
        self.store = HistoryStore(self.tmp_path / "history")
        conversation, _ = self.store.latest()
        self.session: Any
        shared: dict[str, Any] = dict(
            player=self.player,
            conversation=conversation,
            settings=s,
            vad=self.vad,
            tools=self.tools,
            turn_model=self.turn_model,
            clock=self.clock,
            offload=inline,
        )
        if self.agent is not None:
            self.agent.clock = self.clock
            self.session = SpeechSession(engine=self.agent, **shared)
        else:
            self.session = Session(stt=stt, llm=llm, tts=tts, **shared)
        self.log: list[tuple[float, SessionEvent]] = []
        self.session.subscribe(lambda e: self.log.append((self.clock.now() - T0, e)))
        self._rng = np.random.default_rng(0)
        self._frames = 0
        self._queue: list[tuple[float, int, Callable[[], object]]] = []
        self._order = itertools.count()
        self._speech: list[Speech | Key] = []
        for step in self.script:
            self.add(step)

    async def __aenter__(self) -> Stage:
        await self.session.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()
        if isinstance(self.session, Session):
            for engine in (self.session.stt, self.session.llm, self.session.tts):
                await close_engine(engine)  # a fallback chain stops probing

    # ------------------------------------------------------------------------------ script

    def add(self, step: Step) -> None:
        """Add a step to the script (times are absolute, from the start)."""
        if isinstance(step, Do):
            self._at(step.at, lambda: step.action(self.session))
            return
        if isinstance(step, Key):
            self._at(step.start, self.session.press_to_talk)
            self._at(step.end, self.session.release_to_talk)
        self._speech.append(step)

    def _at(self, t: float, action: Callable[[], object]) -> None:
        heapq.heappush(self._queue, (t, next(self._order), action))

    def speaking_at(self, t: float) -> bool:
        return any(s.start <= t < s.end for s in self._speech)

    @property
    def now(self) -> float:
        """Seconds since the start."""
        return self.clock.now() - T0

    async def run_to(self, t: float) -> None:
        """Let the conversation run until ``t`` seconds: frames, key presses, actions."""
        while True:
            next_frame = (self._frames + 1) * FRAME_SECONDS
            next_action = self._queue[0][0] if self._queue else float("inf")
            when = min(next_frame, next_action)
            if when > t:
                break
            await self.clock.advance_to(T0 + when)
            if next_action <= next_frame:
                _, _, action = heapq.heappop(self._queue)
                action()
                continue
            await self._feed_frame()
        await self.clock.advance_to(T0 + t)

    async def run_until(
        self, predicate: Callable[[], bool], *, limit: float = 60.0, step: float = 0.1
    ) -> float:
        """Run until ``predicate()`` holds (checked every ``step`` s); returns the time."""
        while not predicate():
            if self.now >= limit:
                raise AssertionError(f"not reached by {limit} s; states: {self.states()}")
            await self.run_to(self.now + step)
        return self.now

    async def _feed_frame(self) -> None:
        start = self._frames * FRAME_SECONDS
        speech = self.speaking_at(start + FRAME_SECONDS / 2)
        self.vad.speaking = speech
        scale = 4000 if speech else 30
        pcm = (self._rng.standard_normal(FRAME_SAMPLES) * scale).astype(np.int16)
        self._frames += 1
        heard = None if self.heard is None else self.heard(pcm)
        await self.session.feed(AudioFrame(pcm, self.clock.now(), start, speech=heard))

    # ----------------------------------------------------------------------------- results

    def events(self, kind: type | None = None) -> list[Any]:
        return [e for _, e in self.log if kind is None or isinstance(e, kind)]

    def times(self, kind: type) -> list[float]:
        """When (seconds from the start) each event of ``kind`` was emitted."""
        return [t for t, e in self.log if isinstance(e, kind)]

    def states(self) -> list[str]:
        return [e.state.value for e in self.events(StateChanged)]

    def state_at(self, t: float) -> State:
        state = State.IDLE
        for when, e in self.log:
            if isinstance(e, StateChanged) and when <= t:
                state = e.state
        return state

    def finished(self) -> list[TurnRecord]:
        return [e.turn for e in self.events(TurnFinished)]

    def played(self, start: float, end: float) -> np.ndarray:
        """What the device played between two moments (seconds from the start)."""
        rec = self.player.recorded()
        rate = self.player.rate
        origin = self.player.started_at - T0
        a = max(0, round((start - origin) * rate))
        b = max(a, round((end - origin) * rate))
        return rec[a:b]

    def audible(self, start: float, end: float, level: int = 100) -> bool:
        chunk = self.played(start, end)
        return bool(len(chunk)) and int(np.abs(chunk).max()) > level

    def first_sound_after(self, t: float, level: int = 100) -> float | None:
        rec = self.player.recorded()
        rate = self.player.rate
        origin = self.player.started_at - T0
        a = max(0, round((t - origin) * rate))
        loud = np.flatnonzero(np.abs(rec[a:]) > level)
        return origin + (a + int(loud[0])) / rate if len(loud) else None
