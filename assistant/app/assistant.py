"""``Assistant``: Parley put together, once, for the window, ``parley talk`` and the benchmarks.

It owns the settings, the history store and the current conversation, the engine set, the tool
registry, the audio input and output chains and the session, and rebuilds the parts a change of
settings or a lost device needs. Everything that happens goes out on one stream, ``events``
(``assistant.events.AppEvent``): the session's events and the app's own (loading, ready, audio
status, conversation loaded, turn mode, settings applied). Commands are plain methods; those
that cannot act yet say why on the stream and return False. No Qt here: a window is a view of
the stream plus calls to these methods, and a headless caller can do everything a window can.

All methods run on the asyncio loop's thread; listeners are called there too.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from assistant import config
from assistant.app import messages
from assistant.app import settings as app_settings
from assistant.app.audio import (
    AudioInput,
    AudioOutput,
    PlayerFactory,
    SourceFactory,
    default_player,
    default_source,
)
from assistant.app.echo import EchoControl
from assistant.app.engines import Engines, EngineSet, close_engine
from assistant.app.turn_taking import TurnModelFactory, VadFactory, make_turn_model, make_vad
from assistant.app.voice import list_voices, speak_sample
from assistant.audio.frames import AudioFrame
from assistant.audio.player import Player
from assistant.config import Settings, TurnMode
from assistant.emitter import Emitter
from assistant.engines.base import TextToSpeech, Voice
from assistant.engines.registry import make_tts
from assistant.events import (
    AppEvent,
    AudioStatus,
    ConversationLoaded,
    ErrorEvent,
    Notice,
    Ready,
    SessionEvent,
    SettingsApplied,
    Source,
    State,
    StateChanged,
    TurnModeChanged,
)
from assistant.history import Conversation, HistoryStore
from assistant.session import Session
from assistant.tools import ToolRegistry, default_tools

log = logging.getLogger(__name__)

EngineFactory = Callable[[Settings], EngineSet | Engines]


class Assistant:
    """One conversation's machinery, from microphone to speaker, and the commands to drive it.

    ``settings``: None loads the saved ones (a notice follows at ``start`` if the file was
    unusable). The factories replace the engines, the speaker, the microphone and the hands-free
    detectors (tests and headless callers use virtual ones); engines a factory returns are owned
    and closed here unless it returns an ``EngineSet`` with ``owned=False``. ``persist=False``
    never writes the settings file.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        history_dir: Path | None = None,
        engine_factory: EngineFactory | None = None,
        player_factory: PlayerFactory | None = None,
        source_factory: SourceFactory | None = None,
        vad_factory: VadFactory | None = None,
        turn_model_factory: TurnModelFactory | None = None,
        tools: ToolRegistry | None = None,
        persist: bool = True,
    ) -> None:
        #: Everything that happens, in order: ``assistant.events.AppEvent``s.
        self.events: Emitter[AppEvent] = Emitter("assistant")
        self._startup_notice: str | None = None
        if settings is None:
            settings, self._startup_notice = app_settings.load()
        self._settings = settings
        self._history_dir = history_dir or config.data_dir() / "conversations"
        self._engine_factory: EngineFactory = engine_factory or EngineSet.build
        self._vad_factory = vad_factory or make_vad
        self._turn_model_factory = turn_model_factory or make_turn_model
        #: The tools the language model may call (the same in every front end), offered to
        #: every language model that returns real tool calls (``EngineSet.calls_tools``).
        self.tools = tools if tools is not None else default_tools()
        self._persist = persist
        #: Echo cancellation and noise suppression of the microphone.
        self.echo = EchoControl(emit=self._emit, on_change=self._echo_changed)
        self._input = AudioInput(
            source_factory or default_source,
            sink=self._feed,
            emit=self._emit,
            on_change=self._audio_changed,
            on_end=self._input_ended,
            echo=self.echo,
        )
        self._output = AudioOutput(
            player_factory or default_player,
            emit=self._emit,
            on_change=self._audio_changed,
            on_lost=self._output_lost,
        )
        self._store: HistoryStore | None = None
        self._conversation: Conversation | None = None
        self._engines: EngineSet | None = None
        self._session: Session | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._warm_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ready = False
        self._listening = False
        self._talk_held = False
        self._state = State.IDLE
        self._closed = False
        #: Why nothing can work until the settings change (engines that cannot be built).
        self._failure: str | None = None
        self._ready_event: asyncio.Event | None = None
        self._reopen_lock: asyncio.Lock | None = None

    # ------------------------------------------------------------------------------ properties

    @property
    def settings(self) -> Settings:
        """The settings in force (edit a copy and pass it to ``apply_settings``)."""
        return self._settings

    @property
    def session(self) -> Session | None:
        return self._session

    @property
    def conversation(self) -> Conversation | None:
        return self._conversation

    @property
    def engines(self) -> EngineSet | None:
        return self._engines

    @property
    def tts(self) -> TextToSpeech | None:
        return self._engines.tts if self._engines else None

    @property
    def ready(self) -> bool:
        """Engines warmed up and the session started (typed messages work from here on)."""
        return self._ready

    @property
    def can_talk(self) -> bool:
        """Ready, listening, and a microphone is capturing."""
        return self._ready and self._listening and self._input.ok

    @property
    def microphone_ok(self) -> bool:
        return self._input.ok

    @property
    def speaker_ok(self) -> bool:
        return self._output.ok

    @property
    def state(self) -> State:
        return self._state

    @property
    def turn_mode(self) -> TurnMode:
        return self._settings.turn_mode

    # ------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Load the conversation, build the engines and start warming them in the background.

        Returns quickly: a window is usable at once, and ``Ready(True)`` follows. ``Ready(True)``
        comes after the microphone has started and before its first frame reaches the
        conversation, so a listener may press the talk key for a turn that starts with it.
        """
        self._ready_event = asyncio.Event()
        self._reopen_lock = asyncio.Lock()
        if self._startup_notice:
            self._emit(Notice(self._startup_notice, Source.SETTINGS))
        self._conversation = self._load_conversation()
        await self._open(rebuild_engines=True)

    async def close(self) -> None:
        """Stop capture and playback, end the session and release the engines."""
        if self._closed:
            return
        self._closed = True
        for task in [self._warm_task, *self._tasks]:
            if task is not None and not task.done():
                task.cancel()
        await self._input.stop()
        await self._close_session()
        await self._close_engines()

    async def wait_ready(self, timeout: float | None = None) -> None:
        if self._ready_event is None:
            raise RuntimeError("the assistant has not been started")
        await asyncio.wait_for(self._ready_event.wait(), timeout)

    async def wait_idle(self, timeout: float | None = None) -> None:
        """Until no user speech, reply or playback is in progress."""
        if self._session is not None:
            await self._session.wait_idle(timeout)

    async def wait_input_ended(self) -> None:
        """Until the audio source has ended by itself (a file source ran out)."""
        await self._input.wait_ended()

    # -------------------------------------------------------------------------------- commands

    def press_to_talk(self) -> bool:
        """Talk key down; False (with a message saying why) when talking is not possible yet."""
        session = self._session
        if self._failure is not None:
            self._emit(ErrorEvent(self._failure, Source.SETTINGS))
            return False
        if session is None or not self._ready:
            self._emit(Notice(messages.NOT_READY, Source.TALK))
            return False
        if not self._input.ok:
            self._emit(ErrorEvent(messages.NO_MICROPHONE, Source.AUDIO_INPUT))
            return False
        if not self._listening:
            self._emit(ErrorEvent(messages.NOT_LISTENING, Source.STT))
            return False
        session.press_to_talk()
        self._talk_held = True
        return True

    def release_to_talk(self) -> None:
        self._talk_held = False
        if self._session is not None:
            self._session.release_to_talk()

    def interrupt(self) -> None:
        """Stop the reply now (what was heard stays in the conversation)."""
        if self._session is not None:
            self._session.interrupt(reason="user")

    def submit_text(self, text: str) -> bool:
        """A typed message; False if it could not be sent yet (the caller keeps the text)."""
        if not text.strip():
            return False
        if self._failure is not None:
            self._emit(ErrorEvent(self._failure, Source.SETTINGS))
            return False
        if self._session is None or not self._ready:
            self._emit(Notice(messages.NOT_READY_TO_SEND, Source.TALK))
            return False
        self._session.submit_text(text)
        return True

    def set_turn_mode(self, mode: TurnMode) -> None:
        """Push-to-talk or hands-free (voice activity decides when you are done); saved."""
        if mode not in ("ptt", "vad"):
            raise ValueError(f"unknown turn mode {mode!r}")
        changed = self._settings.turn_mode != mode
        self._switch_session_mode(mode)
        self._settings.turn_mode = mode
        if changed:
            self._save()
        self._emit(TurnModeChanged(mode))

    def new_conversation(self) -> None:
        """Start over; the previous conversation stays on disk."""
        if self._store is None:
            return
        try:
            conversation = self._store.new()
        except OSError as exc:
            self._emit(ErrorEvent(messages.new_conversation_failed(exc), Source.HISTORY))
            return
        self._conversation = conversation
        if self._session is not None:
            self._session.new_conversation(conversation)
        self._emit(ConversationLoaded(()))

    async def apply_settings(self, settings: Settings, *, keys_changed: bool = False) -> None:
        """Use ``settings`` from now on and save them; rebuild only what the change needs.

        The conversation is kept. ``keys_changed``: an API key was stored or removed, so engines
        that read keys when built are rebuilt.
        """
        old, self._settings = self._settings, copy.deepcopy(settings)
        self._save()
        change = app_settings.compare(old, self._settings, keys_changed=keys_changed)
        if change.reconfigure_echo and not change.reopen_session:
            self.echo.configure(self._settings)
        if change.reopen_session:
            await self._reopen(
                rebuild_engines=change.rebuild_engines, restart_input=change.restart_input
            )
        elif change.restart_input:
            await self._input.stop()
            await self._input.start(self._settings)
        if change.turn_mode_changed:
            self._switch_session_mode(self._settings.turn_mode)
            self._emit(TurnModeChanged(self._settings.turn_mode))
        self._emit(SettingsApplied(copy.deepcopy(self._settings)))
        self._emit(Notice(messages.SETTINGS_APPLIED, Source.SETTINGS))

    async def restart_audio(self) -> None:
        """Try the microphone and speaker again (after plugging a device in)."""
        await self._reopen(rebuild_engines=False, restart_input=True)

    def voices(self, engine: str, language: str) -> list[Voice]:
        """Voices for a picker: the offline catalog for ``local``, else the engine's own list."""
        return list_voices(engine, language, self._settings, self.tts)

    async def preview_voice(self, voice: str, language: str, engine: str | None = None) -> float:
        """Speak a sample sentence in ``voice`` through the TTS and a player of its own.

        Returns the seconds of audio played. Raises EngineError when the engine cannot speak.
        """
        engine = engine or self._settings.tts
        current = self.tts if self._settings.tts == engine else None
        tts = current or make_tts(engine, self._settings)
        player = await self._output.open_quietly(self._settings)
        try:
            return await speak_sample(tts, player, voice, language)
        finally:
            if current is None:
                await close_engine(tts)

    def spawn(
        self, coro: Coroutine[Any, Any, Any], source: Source = Source.NONE
    ) -> asyncio.Task[Any]:
        """Run ``coro`` in the background; an exception becomes an ``ErrorEvent``, not a crash."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if t.cancelled():
                return
            exc = t.exception()
            if exc is not None:
                log.error("background task failed", exc_info=exc)
                self._emit(ErrorEvent(messages.describe(exc), source))

        task.add_done_callback(done)
        return task

    # ------------------------------------------------------------------------ the conversation

    def _make_session(self, engines: EngineSet, player: Player) -> Session:
        """The one place a Session is built."""
        assert self._conversation is not None
        hands_free = self._settings.turn_mode == "vad"
        # Push-to-talk listens for pauses too when it prepares replies while the key is held.
        voice_activity = hands_free or self._settings.push_to_talk.speculative_silence_ms > 0
        session = Session(
            stt=engines.stt,
            llm=engines.llm,
            tts=engines.tts,
            player=player,
            conversation=self._conversation,
            settings=self._settings,
            vad=self._vad_factory(self._settings) if voice_activity else None,
            tools=self.tools if engines.calls_tools else None,
            turn_model=self._turn_model_factory(self._settings) if hands_free else None,
        )
        session.set_echo_uncertain(self.echo.uncertain)
        return session

    def _switch_session_mode(self, mode: TurnMode) -> None:
        """Switch the running session's turn detection; hands-free parts are made when first
        needed (loading them costs time and memory push-to-talk does not need)."""
        session = self._session
        if session is None:
            return
        if mode == "vad" and session.vad is None:
            session.vad = self._vad_factory(self._settings)
        if mode == "vad" and session.turn_model is None:
            session.turn_model = self._turn_model_factory(self._settings)
        session.set_turn_mode(mode)

    def _load_conversation(self) -> Conversation:
        try:
            self._store = HistoryStore(self._history_dir)
            conversation, report = self._store.latest()
        except OSError as exc:
            self._emit(
                ErrorEvent(messages.history_unavailable(self._history_dir, exc), Source.HISTORY)
            )
            conversation = Conversation(self._history_dir / "unsaved.jsonl", "unsaved", [])
            report = None
        self._emit(ConversationLoaded(tuple(conversation.turns)))
        if report is not None and report.notice:
            self._emit(Notice(report.notice, Source.HISTORY))
        return conversation

    async def _open(self, *, rebuild_engines: bool) -> None:
        self._set_ready(False)
        if rebuild_engines or self._engines is None:
            await self._close_engines()
            try:
                self._engines = EngineSet.of(self._engine_factory(self._settings))
                self._failure = None
            except Exception as exc:
                log.exception("building the engines failed")
                self._failure = messages.engines_unusable(exc)
                self._emit(ErrorEvent(self._failure, Source.SETTINGS))
                return
        player = await self._output.open(self._settings)
        self.echo.configure(self._settings)
        self.echo.attach_output(player)
        session = self._make_session(self._engines, player)
        self._unsubscribe = session.subscribe(self._on_session_event)
        self._session = session
        self._warm_task = asyncio.ensure_future(self._warm_and_start(session, rebuild_engines))

    async def _warm_and_start(self, session: Session, rebuilt: bool) -> None:
        assert self._engines is not None
        await self._engines.warm_up(self._emit, announce=rebuilt)
        if self._session is not session:
            return
        try:
            await session.start()
            self._listening = True
        except Exception as exc:
            log.warning("the session could not start listening: %s", exc)
            self._listening = False
            self._emit(ErrorEvent(messages.not_listening(exc), Source.STT))
        if not self._input.running:
            await self._input.start(self._settings)
        self._set_ready(True)

    async def _reopen(self, *, rebuild_engines: bool, restart_input: bool = False) -> None:
        assert self._reopen_lock is not None
        async with self._reopen_lock:
            if restart_input:
                await self._input.stop()
            await self._close_session()
            await self._open(rebuild_engines=rebuild_engines)
            if self._warm_task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await self._warm_task

    async def _close_session(self) -> None:
        task, self._warm_task = self._warm_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        session, self._session = self._session, None
        self._listening = False
        self._talk_held = False
        self.echo.detach_output()
        if session is not None:
            # Still subscribed while closing, so a reply cut off here reaches the views too.
            with contextlib.suppress(Exception):
                await session.close()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._set_state(State.IDLE)

    async def _close_engines(self) -> None:
        engines, self._engines = self._engines, None
        if engines is not None:
            await engines.aclose()

    # ----------------------------------------------------------------------------------- audio

    async def _feed(self, frame: AudioFrame) -> None:
        session = self._session
        if session is not None and self._listening:
            await session.feed(frame)

    def _input_ended(self) -> None:
        """The source is gone (a file ran out, a device vanished): end an open turn."""
        session = self._session
        if session is None:
            return
        if self._talk_held:
            self.release_to_talk()
        session.end_of_input()

    def _output_lost(self) -> None:
        if not self._closed:
            # A silent player takes over until Retry.
            self.spawn(self._reopen(rebuild_engines=False), Source.AUDIO_OUTPUT)

    # ---------------------------------------------------------------------------------- events

    def _emit(self, event: AppEvent) -> None:
        self.events.emit(event)

    def _on_session_event(self, event: SessionEvent) -> None:
        if not isinstance(event, StateChanged):
            self._emit(event)
        elif event.state is not self._state:
            self._state = event.state
            self._emit(event)

    def _set_state(self, state: State) -> None:
        if state is not self._state:
            previous, self._state = self._state, state
            self._emit(StateChanged(state, previous))

    def _set_ready(self, ready: bool) -> None:
        if ready == self._ready:
            return
        self._ready = ready
        if self._ready_event is not None:
            if ready:
                self._ready_event.set()
            else:
                self._ready_event.clear()
        self._emit(Ready(ready))

    def _audio_changed(self) -> None:
        self._emit(AudioStatus(self._input.ok, self._output.ok))

    def _echo_changed(self) -> None:
        if self._session is not None:
            self._session.set_echo_uncertain(self.echo.uncertain)

    def _save(self) -> None:
        if self._persist:
            problem = app_settings.save(self._settings)
            if problem is not None:
                self._emit(ErrorEvent(problem, Source.SETTINGS))
