"""One ``Assistant`` — the app as the window assembles it — driven the way a user drives it,
with a fault somewhere underneath.

A ``Rig`` talks (push-to-talk over speech-like audio), types, presses Retry, and records what the
user was shown: every event, and when it came. In *virtual* time (``virtual=True``) everything
runs on one ``ManualClock``: the scripted engines, the session's timers, the player, and the
rig's own waiting, so a deadline is exact and a minute of conversation takes milliseconds. In
real time (servers on sockets, device threads, keyring threads, child processes) the clock is
the system's. Either way ``now`` is the rig's clock, and ``fault()`` marks the moment the fault
was armed, from which the time to the message and the time to recovery are measured.

The invariants (``assistant.bench.invariants``) follow every rig from its start.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from assistant.app import Assistant, EngineSet
from assistant.audio.capture import MicrophoneCapture
from assistant.audio.player import ClockedPlayer, DevicePlayer, Player, VirtualPlayer
from assistant.audio.push import PushSource
from assistant.bench.invariants import Invariants
from assistant.clock import SYSTEM_CLOCK, Clock, ManualClock
from assistant.config import Settings
from assistant.engines.base import ChatRequest
from assistant.engines.fake import FakeLLM, FakeSTT, FakeTTS
from assistant.events import AppEvent, ErrorEvent, Notice, State, TurnFinished
from assistant.history import HistoryStore, TurnRecord
from assistant.types import FRAME_SAMPLES, FRAME_SECONDS, AudioFrame
from tests.faults.devices import SoundCard
from tests.scenario import T0, ScriptVAD, inline

#: Seconds of speech in one push-to-talk turn.
TALK_SECONDS = 0.64


def short_reply(request: ChatRequest) -> str:
    """A reply of about a second of speech that repeats the question's first words."""
    user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
    return f"You said {' '.join(user.split()[:3]).rstrip('?.!,')}. Here is my answer."


def fake_engines(clock: Clock = SYSTEM_CLOCK, name: str = "fake") -> tuple[Any, Any, Any]:
    """Quick scripted engines on ``clock``."""
    return (
        FakeSTT(clock=clock, final_delay=0.05, name=name),
        FakeLLM(short_reply, ttft=0.05, tokens_per_second=400, clock=clock, name=name),
        FakeTTS(
            first_audio_delay=0.02,
            chars_per_second=60,
            realtime_factor=0.0,
            clock=clock,
            name=name,
        ),
    )


@dataclass(frozen=True)
class Shown:
    """An error or a notice the user saw, and when (rig seconds)."""

    at: float
    event: ErrorEvent | Notice

    @property
    def line(self) -> str:
        kind = "error" if isinstance(self.event, ErrorEvent) else "notice"
        return f"{kind} [{self.event.source}] {self.event.message}"


class Rig:
    """See the module docstring. Use as ``async with Rig(...) as rig``."""

    def __init__(
        self,
        directory: Path,
        *,
        engines: Callable[[Clock], EngineSet | tuple[Any, Any, Any]] | None = None,
        virtual: bool = True,
        settings: Settings | None = None,
        card: SoundCard | None = None,
        canaries: Sequence[str] = (),
        history_dir: Path | None = None,
        close_timeout: float = 0.2,
    ) -> None:
        self.directory = directory
        self.history_dir = history_dir or directory / "conversations"
        self.virtual = virtual
        self.clock: Clock = ManualClock(T0) if virtual else SYSTEM_CLOCK
        self.card = card
        self.settings = settings or Settings(stt="fake", llm="fake", tts="fake")
        self.invariants = Invariants(canaries)
        self.events: list[tuple[float, AppEvent]] = []
        self.fault_at: float | None = None
        self.microphone = PushSource()
        self.players: list[Player] = []
        self._close_timeout = close_timeout
        build = engines or fake_engines
        clock = self.clock
        self.app = Assistant(
            self.settings,
            history_dir=self.history_dir,
            engine_factory=lambda _s: build(clock),
            player_factory=self._player,
            source_factory=self._source,
            vad_factory=lambda _s: ScriptVAD(),
            turn_model_factory=lambda _s: None,
            persist=False,
            clock=clock,
            offload=inline if virtual else asyncio.to_thread,
        )
        self._stop_watching = self.invariants.watch(self.app)
        self.app.events.subscribe(lambda e: self.events.append((self.now, e)))
        self._frames = 0
        self._rng = np.random.default_rng(0)

    # ---------------------------------------------------------------------------- plumbing

    def _player(self, settings: Settings) -> Player:
        player: Player
        if self.card is not None:
            player = DevicePlayer(
                samplerate=24_000,
                blocksize=480,
                stream_factory=self.card.output_stream,
                close_timeout=self._close_timeout,
            )
        elif self.virtual:
            assert isinstance(self.clock, ManualClock)
            player = ClockedPlayer(self.clock)
        else:
            player = VirtualPlayer(pace="fast")
        self.players.append(player)
        return self.invariants.tap(player)

    def _source(self, settings: Settings) -> Any:
        if self.card is not None:
            return MicrophoneCapture(
                samplerate=16_000,
                stream_factory=self.card.input_stream,
                close_timeout=self._close_timeout,
            )
        self.microphone = PushSource()
        return self.microphone

    @property
    def now(self) -> float:
        """Seconds on the rig's clock (from the start, in virtual time)."""
        return self.clock.now() - (T0 if self.virtual else 0.0)

    async def __aenter__(self) -> Rig:
        await self.app.start()
        if not await self.until(lambda: self.app.ready, within=20.0):
            raise AssertionError(f"the assistant never became ready: {self.lines()}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.app.close()
        self._stop_watching()

    # ------------------------------------------------------------------------------- time

    async def step(self, seconds: float = FRAME_SECONDS) -> None:
        """Let ``seconds`` pass (virtual: exactly; real: at least)."""
        if isinstance(self.clock, ManualClock):
            await self.clock.advance(seconds)
            await asyncio.sleep(0)  # let real threads' callbacks in too
        else:
            await asyncio.sleep(seconds)

    async def until(self, predicate: Callable[[], object], *, within: float) -> bool:
        """Let time pass until ``predicate()`` holds; False if ``within`` seconds went by."""
        end = self.now + within
        while not predicate():
            if self.now >= end:
                return False
            await self.step(0.02 if not self.virtual else FRAME_SECONDS)
        return True

    def fault(self) -> None:
        """The fault acts from now on."""
        self.fault_at = self.now

    # ------------------------------------------------------------------------------- user

    def _frame(self, speech: bool) -> AudioFrame:
        scale = 3000 if speech else 20
        pcm = (self._rng.standard_normal(FRAME_SAMPLES) * scale).astype(np.int16)
        frame = AudioFrame(pcm, self.clock.now(), self._frames * FRAME_SECONDS)
        self._frames += 1
        return frame

    async def speak(self, seconds: float = TALK_SECONDS) -> None:
        """Speech-like sound into the microphone for ``seconds``."""
        if self.card is not None:
            self.card.talking = True
            await self.step(seconds)
            self.card.talking = False
            return
        for _ in range(round(seconds / FRAME_SECONDS)):
            if self.virtual:
                await self.step()
            with contextlib.suppress(RuntimeError):  # the microphone stopped meanwhile
                await asyncio.wait_for(self.microphone.push(self._frame(True)), 5.0)

    async def talk(self, seconds: float = TALK_SECONDS) -> bool:
        """Hold the talk key, speak, let go. False when the app said talking is not possible."""
        if not self.app.press_to_talk():
            return False
        await self.speak(seconds)
        self.app.release_to_talk()
        return True

    def send_text(self, text: str = "How do I boil an egg?") -> bool:
        """Type a message and send it."""
        return self.app.submit_text(text)

    async def turn(self, how: str = "talk", *, within: float = 10.0) -> TurnRecord | None:
        """One whole turn (``talk`` or ``type``), waited for until the app listens again; the
        turn, or None if it did not finish (it failed, or the app said it could not start)."""
        before = len(self.finished())
        started = await self.talk() if how == "talk" else self.send_text()
        if not started:
            return None
        await self.until(lambda: self.app.state is State.LISTENING, within=within)
        finished = self.finished()
        return finished[before] if len(finished) > before else None

    async def retry(self) -> None:
        """What the Retry button does."""
        await self.app.restart_audio()

    # ---------------------------------------------------------------------------- results

    def of[E](self, kind: type[E]) -> list[E]:
        return [e for _, e in self.events if isinstance(e, kind)]

    def finished(self) -> list[TurnRecord]:
        return [e.turn for e in self.of(TurnFinished)]

    def shown(self) -> list[Shown]:
        return [Shown(t, e) for t, e in self.events if isinstance(e, ErrorEvent | Notice)]

    def lines(self) -> list[str]:
        return [s.line for s in self.shown()]

    def reloaded_turns(self) -> int:
        """Turns in the conversation files on disk, read as the app reads them at its start."""
        if not self.history_dir.is_dir():
            return 0
        store = HistoryStore(self.history_dir)
        return sum(len(store.load(path)[0].turns) for path in store.conversations())
