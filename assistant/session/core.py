"""What every kind of conversation shares, whoever answers: ``SessionCore``.

``Session`` (speech to text, language model, text to speech) and ``SpeechSession`` (one
speech-to-speech engine) differ in who answers a turn, not in how the app drives them: both
publish ``SessionEvent``s, report a ``State``, take captured frames and the talk key, detect
turns with a strategy from ``assistant.turns``, keep their background tasks, and mark when a
reply starts to be heard. That part lives here, once.

A subclass sets ``_detection`` (from its ``_make_detection``) before any frame or key arrives,
handles frames in ``_feed`` (with ``_meter`` and ``_listen`` for the level and the pre-roll) and
turn events in ``_on_turn_event``, stops a reply its own way (``_interrupt``), and says what
state its parts are in (``_derive_state``) and whether anything is under way (``_busy``);
``_sync`` publishes both. Its constructor takes the parts every session shares as
``**options: Unpack[SessionOptions]`` and hands them on.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, Literal, Protocol, TypedDict

from assistant.audio.player import Player
from assistant.audio.vad import VoiceActivityDetector
from assistant.clock import SYSTEM_CLOCK, Clock
from assistant.config import Settings
from assistant.emitter import Emitter
from assistant.events import (
    ErrorEvent,
    MicLevel,
    Notice,
    SessionEvent,
    Source,
    State,
    StateChanged,
)
from assistant.history import Conversation
from assistant.session.recorder import Offload, TurnRecorder
from assistant.tools import ToolRegistry
from assistant.turns import EndOfTurnModel, TurnDetection, TurnEvent
from assistant.types import AudioFrame, AudioLook

log = logging.getLogger(__name__)

#: Seconds between two ``MicLevel`` events at the most.
LEVEL_INTERVAL = 0.05


class SessionOptions(TypedDict, total=False):
    """What any session may be given beside its engines, player and conversation; each left
    out takes ``SessionCore``'s default."""

    settings: Settings | None
    vad: VoiceActivityDetector | None
    tools: ToolRegistry | None
    turn_model: EndOfTurnModel | None
    clock: Clock
    offload: Offload


class HeardReply(Protocol):
    """A reply as the player's callbacks and ``interrupt`` see it."""

    @property
    def turn_id(self) -> int: ...

    @property
    def finished(self) -> bool: ...

    def playback_started(self, at: float) -> None: ...

    def playback_finished(self, position: float, cut: bool) -> None: ...


class SessionCore[R: HeardReply](ABC):
    """See the module docstring. ``R``: the subclass's reply type."""

    _detection: TurnDetection

    def __init__(
        self,
        *,
        player: Player,
        conversation: Conversation,
        settings: Settings | None = None,
        vad: VoiceActivityDetector | None = None,
        tools: ToolRegistry | None = None,
        turn_model: EndOfTurnModel | None = None,
        clock: Clock = SYSTEM_CLOCK,
        offload: Offload = asyncio.to_thread,
    ) -> None:
        self.player = player
        self.settings = settings or Settings()
        self.vad = vad
        self.tools = tools
        self.clock = clock
        self._offload = offload
        self._emitter: Emitter[SessionEvent] = Emitter("session")
        self._conversation = conversation
        self._state = State.IDLE
        self._listening = False
        self._turn_model = turn_model
        self._preroll: deque[AudioFrame] = deque()
        self._level_at = float("-inf")
        self._reply: R | None = None
        self._finishing: list[R] = []
        self._recorder = TurnRecorder(self.emit, offload)
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Turns being written to the history: awaited on close, never cancelled.
        self._saving: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        player.on_playback_started.append(self._on_playback_started)
        player.on_playback_finished.append(self._on_playback_finished)

    # ------------------------------------------------------------------------------- events, state

    def subscribe(self, listener: Callable[[SessionEvent], None]) -> Callable[[], None]:
        return self._emitter.subscribe(listener)

    def emit(self, event: SessionEvent) -> None:
        self._emitter.emit(event)

    def events(self) -> AsyncIterator[SessionEvent]:
        """All events from now on, as an async iterator (for headless callers)."""
        return self._emitter.stream()

    def notice(self, message: str, source: Source = Source.NONE) -> None:
        self.emit(Notice(message, source))

    @property
    def state(self) -> State:
        return self._state

    @property
    def conversation(self) -> Conversation:
        return self._conversation

    def _sync(self) -> None:
        """Recompute the state (announcing a change) and whether the session is idle."""
        state = self._derive_state()
        if state is not self._state:
            previous, self._state = self._state, state
            self.emit(StateChanged(state, previous, at=self.clock.now()))
        if self._busy():
            self._idle.clear()
        else:
            self._idle.set()

    @abstractmethod
    def _derive_state(self) -> State:
        """The state the user sees now, from the subclass's parts."""

    @abstractmethod
    def _busy(self) -> bool:
        """User speech, a reply, playback or a history write is under way."""

    async def wait_idle(self, timeout: float | None = None) -> None:
        """Wait until no user speech, reply, playback or history write is in progress."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str = "") -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name or None)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------------------- turn strategy

    @property
    def turn_mode(self) -> Literal["ptt", "vad"]:
        return self._detection.mode

    @property
    def turn_model(self) -> EndOfTurnModel | None:
        return self._turn_model

    @turn_model.setter
    def turn_model(self, model: EndOfTurnModel | None) -> None:
        self._turn_model = model
        self._detection = self._make_detection(self._detection.mode)

    @abstractmethod
    def _make_detection(self, mode: Literal["ptt", "vad"]) -> TurnDetection: ...

    def _use_turn_mode(self, mode: Literal["ptt", "vad"]) -> None:
        """Detect turns the ``mode`` way from now on (and remember it in the settings); the
        open turn, if any, must have been ended first."""
        self.settings.turn_mode = mode
        self._detection = self._make_detection(mode)
        if self.vad is not None:
            self.vad.reset()

    @abstractmethod
    def _on_turn_event(self, event: TurnEvent, *, explicit: bool) -> None: ...

    def press_to_talk(self) -> None:
        """Talk key down. While the assistant talks, this interrupts it at once."""
        event = self._detection.press(self.clock.now())
        if event is not None:
            self._on_turn_event(event, explicit=True)

    def release_to_talk(self) -> None:
        event = self._detection.release(self.clock.now())
        if event is not None:
            self._on_turn_event(event, explicit=True)

    # --------------------------------------------------------------------------------------- audio

    async def feed(self, frame: AudioFrame) -> None:
        """One captured frame: level meter, turn detection, and the engine while the user talks.

        Never raises: a failure is reported and the next frame is handled as usual.
        """
        try:
            await self._feed(frame)
        except Exception as exc:
            log.exception("handling an audio frame failed")
            self.emit(ErrorEvent(f"Audio processing failed: {exc}", Source.AUDIO))

    @abstractmethod
    async def _feed(self, frame: AudioFrame) -> None: ...

    def look(self, look: AudioLook) -> None:
        """A look at the audio between two frames (see ``AudioLook``). By default it is not
        used: the frames carry the same audio a moment later."""
        return None

    def _meter(self, frame: AudioFrame) -> None:
        """Publish the microphone's level, at most once per ``LEVEL_INTERVAL``."""
        if frame.t - self._level_at >= LEVEL_INTERVAL:
            self._level_at = frame.t
            self.emit(MicLevel(frame.rms, at=frame.t))

    def _listen(self, frame: AudioFrame) -> float:
        """Keep ``frame`` in the pre-roll (the latest ``_preroll_frames()``) and return its
        speech probability: the VAD's while turn detection needs it, else 0.0."""
        probability = 0.0
        if self.vad is not None and self._detection.needs_vad:
            probability = self.vad.process(frame.pcm)
        self._preroll.append(frame)
        while len(self._preroll) > self._preroll_frames():
            self._preroll.popleft()
        return probability

    @abstractmethod
    def _preroll_frames(self) -> int:
        """How many frames before a turn's start it keeps (its first words' onset)."""

    async def run(self, frames: AsyncIterator[AudioFrame]) -> None:
        """Feed every frame of a source (a microphone or a WAV file) until it ends."""
        async for frame in frames:
            await self.feed(frame)

    def _on_playback_started(self, turn_id: int, at: float) -> None:
        reply = self._reply
        if reply is not None and reply.turn_id == turn_id:
            reply.playback_started(at)
            self._sync()

    def _on_playback_finished(self, turn_id: int, position: float, interrupted: bool) -> None:
        # Only the reply in flight waits for the verdict: one that has ended (and may still be
        # being written to the history) stopped waiting when it ended.
        reply = self._reply
        if reply is not None and reply.turn_id == turn_id:
            reply.playback_finished(position, interrupted)

    # -------------------------------------------------------------------------------- interruption

    def interrupt(self, reason: str = "user") -> None:
        """Stop the reply in flight now, whoever produces it, and keep only what was heard of
        it (``reason`` is logged; ``"barge_in"`` may let a subclass withdraw a reply nobody has
        heard). Nothing happens when no reply is in flight."""
        reply = self._reply
        if reply is None or reply.finished:
            return
        self._interrupt(reply, reason)
        self._sync()

    @abstractmethod
    def _interrupt(self, reply: R, reason: str) -> None:
        """Stop ``reply`` (in flight, not finished) the subclass's way."""

    # ------------------------------------------------------------------------------------ history

    def _save_turn(self, reply: R, write: Callable[[], Awaitable[None]]) -> None:
        """``reply`` has ended: ``write()`` stores its turn in the background. Until that is done
        the reply counts as under way (``_finishing``); the write is awaited on close, never
        cancelled."""
        self._finishing.append(reply)
        task = asyncio.create_task(self._saved(reply, write), name=f"record-{reply.turn_id}")
        self._saving.add(task)
        task.add_done_callback(self._saving.discard)
        self._sync()

    async def _saved(self, reply: R, write: Callable[[], Awaitable[None]]) -> None:
        try:
            await write()
        finally:
            self._finishing.remove(reply)
            self._sync()
