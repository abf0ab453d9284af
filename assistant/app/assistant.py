"""``Assistant``: Parley put together, once, for the window, ``parley talk`` and the benchmarks.

It owns the settings, the history store and the current conversation, the engine set, the tools
(``ToolBox``: built-ins, alarms, notes, MCP servers, structured extraction), the audio input and
output chains and the session, and rebuilds the parts a change of settings or a lost device
needs. Everything that happens goes out on one stream, ``events``
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

from assistant import config, history_export
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
from assistant.app.devices import DeviceLister, DeviceWatch
from assistant.app.echo import EchoControl
from assistant.app.engines import (
    KINDS,
    AgentEngineSet,
    Engines,
    EngineSet,
    build_engine_set,
    close_engine,
)
from assistant.app.notify import Notifier, desktop_notify
from assistant.app.tools import ToolBox
from assistant.app.turn_taking import TurnModelFactory, VadFactory, make_turn_model, make_vad
from assistant.app.voice import list_voices, speak_sample
from assistant.audio import alsa_messages, devices
from assistant.audio.devices import DeviceList, Kind
from assistant.audio.frames import AudioFrame
from assistant.audio.player import Player
from assistant.clock import SYSTEM_CLOCK, Clock
from assistant.config import Settings, TurnMode
from assistant.emitter import Emitter
from assistant.engines.base import TextToSpeech, Voice
from assistant.engines.registry import make_tts
from assistant.events import (
    Activity,
    AppEvent,
    AudioStatus,
    ConversationLoaded,
    ConversationsChanged,
    DevicesChanged,
    Doing,
    ErrorEvent,
    Notice,
    Ready,
    SessionEvent,
    SettingsApplied,
    Source,
    State,
    StateChanged,
    TurnFinished,
    TurnModeChanged,
)
from assistant.history import Conversation, ConversationSummary, HistoryStore, estimate_tokens
from assistant.session import Session
from assistant.session.core import SessionOptions
from assistant.session.recorder import Offload
from assistant.session.s2s import SpeechSession
from assistant.tasks import cancel_and_wait
from assistant.tools import ToolRegistry
from assistant.tools.alarms import Alarm, alarm_line
from assistant.tools.mcp import ServerStatus
from assistant.types import AudioLook

log = logging.getLogger(__name__)

ALL_KINDS = frozenset(KINDS)
#: Typed messages this long are accepted with a word that the offline model needs a while to
#: read them: it reads about 70 tokens a second on two cores (a 5,000-character message took
#: 18.6 s before the first word of the answer).
LONG_MESSAGE_CHARS = 2000
OFFLINE_READING_TOKENS_PER_SECOND = 70.0
#: Deleted conversations are kept this long (in the history's ``deleted/`` folder) before they
#: are removed for good at a start.
KEEP_DELETED_SECONDS = 30 * 24 * 3600

EngineFactory = Callable[[Settings], EngineSet | AgentEngineSet | Engines]


class Assistant:
    """One conversation's machinery, from microphone to speaker, and the commands to drive it.

    ``settings``: None loads the saved ones (a notice follows at ``start`` if the file was
    unusable). The factories replace the engines, the speaker, the microphone and the hands-free
    detectors (tests and headless callers use virtual ones); engines a factory returns are owned
    and closed here unless it returns an ``EngineSet`` with ``owned=False``. ``persist=False``
    never writes the settings file. The sound devices are watched (a device plugged in later is
    used at once) when the real microphone and speaker are used, or through ``device_lister``.
    ``clock`` and ``offload`` are the conversation's time and its way to run blocking work
    (virtual time and inline work in tests that script time).
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
        tools_dir: Path | None = None,
        notifier: Notifier | None = None,
        persist: bool = True,
        device_lister: DeviceLister | None = None,
        clock: Clock = SYSTEM_CLOCK,
        offload: Offload = asyncio.to_thread,
    ) -> None:
        #: Everything that happens, in order: ``assistant.events.AppEvent``s.
        self.events: Emitter[AppEvent] = Emitter("assistant")
        self._startup_notice: str | None = None
        if settings is None:
            settings, self._startup_notice = app_settings.load()
        self._settings = settings
        self._history_dir = history_dir or config.data_dir() / "conversations"
        self._engine_factory: EngineFactory = engine_factory or build_engine_set
        self._vad_factory = vad_factory or make_vad
        self._turn_model_factory = turn_model_factory or make_turn_model
        # Timers and notes live beside the conversations (in the data directory, or beside a
        # history directory of the caller's).
        if tools_dir is None:
            tools_dir = history_dir / "tools" if history_dir is not None else config.data_dir()
        #: The tools the language model may call, the same in every front end (a fixed
        #: ``tools`` registry replaces the built-in ones).
        self.toolbox = ToolBox(
            settings, tools_dir, emit=self._emit, on_alarm=self._on_alarm, registry=tools
        )
        self._notify: Notifier = notifier or desktop_notify
        self._tools_started: asyncio.Task[None] | None = None
        self._persist = persist
        self._clock = clock
        self._offload = offload
        #: Echo cancellation and noise suppression of the microphone.
        self.echo = EchoControl(emit=self._emit, on_change=self._echo_changed)
        self._input = AudioInput(
            source_factory or default_source,
            sink=self._feed,
            emit=self._emit,
            on_change=self._audio_changed,
            on_end=self._input_ended,
            echo=self.echo,
            look=self._look,
        )
        self._output = AudioOutput(
            player_factory or default_player,
            emit=self._emit,
            on_change=self._audio_changed,
            on_lost=self._output_lost,
            clock=clock,
        )
        self._store: HistoryStore | None = None
        self._conversation: Conversation | None = None
        self._engines: EngineSet | AgentEngineSet | None = None
        self._session: Session | SpeechSession | None = None
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
        self._devices = DeviceWatch(self._devices_changed, lister=device_lister)
        self._device_task: asyncio.Task[Any] | None = None
        self._watch_devices = device_lister is not None or (
            player_factory is None and source_factory is None
        )

    # ------------------------------------------------------------------------------ properties

    @property
    def settings(self) -> Settings:
        """The settings in force (edit a copy and pass it to ``apply_settings``)."""
        return self._settings

    @property
    def session(self) -> Session | SpeechSession | None:
        return self._session

    @property
    def tools(self) -> ToolRegistry:
        """Every tool the language model may be offered (built-in and from MCP servers)."""
        return self.toolbox.registry

    def tool_servers(self) -> list[ServerStatus]:
        """The MCP servers and how each is doing."""
        return self.toolbox.server_statuses()

    @property
    def conversation(self) -> Conversation | None:
        return self._conversation

    @property
    def engines(self) -> EngineSet | AgentEngineSet | None:
        return self._engines

    @property
    def tts(self) -> TextToSpeech | None:
        """The chained pipeline's voice (None with a speech-to-speech engine)."""
        return self._engines.tts if isinstance(self._engines, EngineSet) else None

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
    def microphone_silent(self) -> bool:
        """The microphone captures but sends only silence (withheld by the OS, or muted)."""
        return self._input.silent

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
        alsa_messages.quiet()
        if self._watch_devices:
            self._devices.start()
        if self._startup_notice:
            self._emit(Notice(self._startup_notice, Source.SETTINGS))
        self._conversation = self._load_conversation()
        self._tools_started = asyncio.ensure_future(self.toolbox.start())
        await self._open(rebuild=ALL_KINDS)

    async def close(self) -> None:
        """Stop capture and playback, end the session and release the engines."""
        if self._closed:
            return
        self._closed = True
        for task in [self._warm_task, *self._tasks]:
            if task is not None and not task.done():
                task.cancel()
        await self._devices.stop()
        await self._input.stop()
        await self._close_session()
        await self._close_engines()
        await self.toolbox.close()
        alsa_messages.summarize()

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

    def confirm(self, accept: bool) -> bool:
        """Answer the assistant's "Shall I go ahead?" as a click on yes (True) or no (False);
        False when no question is open (a speech-to-speech engine asks and hears its own)."""
        return isinstance(self._session, Session) and self._session.confirm(accept)

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
        text = text.strip()
        if len(text) >= LONG_MESSAGE_CHARS and self._settings.llm == "local":
            seconds = estimate_tokens(text) / OFFLINE_READING_TOKENS_PER_SECOND
            self._emit(Notice(messages.long_message(len(text), seconds), Source.TALK))
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
        self._switch_conversation(conversation)

    # ------------------------------------------------------------------ past conversations

    @property
    def conversation_id(self) -> str:
        """The current conversation's id in the history ("" before ``start``)."""
        return self._conversation.id if self._conversation is not None else ""

    def conversations(self, query: str = "") -> list[ConversationSummary]:
        """Past conversations, the most recent first, those matching ``query`` (every word, in
        the title or in what was said). The current one is listed even while it is empty."""
        if self._store is None:
            return []
        try:
            found = self._store.summaries()
            current = self.conversation_id
            if current and all(c.id != current for c in found):
                summary = self._store.summary(current)
                found = ([summary] if summary is not None else []) + found
        except OSError as exc:
            self._emit(ErrorEvent(messages.history_unreadable(exc), Source.HISTORY))
            return []
        return [c for c in found if c.matches(query)] if query.strip() else found

    def open_conversation(self, conversation_id: str) -> bool:
        """Continue a past conversation: it becomes the current one (the reply in progress, if
        any, is stopped). False, with a message, when it cannot be opened."""
        if self._store is None:
            return False
        if conversation_id == self.conversation_id:
            return True
        try:
            conversation, report = self._store.open(conversation_id)
        except (OSError, ValueError) as exc:
            self._emit(ErrorEvent(messages.conversation_not_opened(exc), Source.HISTORY))
            return False
        self._switch_conversation(conversation)
        if report.notice:
            self._emit(Notice(report.notice, Source.HISTORY))
        return True

    def rename_conversation(self, conversation_id: str, title: str) -> bool:
        """Name a conversation (an empty title names it by its first question again)."""
        if self._store is None:
            return False
        try:
            self._store.rename(conversation_id, title)
        except (OSError, ValueError) as exc:
            self._emit(ErrorEvent(messages.conversation_not_renamed(exc), Source.HISTORY))
            return False
        self._emit(ConversationsChanged())
        return True

    def delete_conversation(self, conversation_id: str) -> ConversationSummary | None:
        """Delete a conversation, undoably (``restore_conversation``); deleting the current one
        starts a new one. Returns what was deleted, or None (with a message) on failure."""
        if self._store is None:
            return None
        try:
            summary = self._store.existing_summary(conversation_id)
            if conversation_id == self.conversation_id:
                self.new_conversation()
                if conversation_id == self.conversation_id:
                    return None  # no new conversation could be started: keep this one
            self._store.delete(conversation_id)
        except (OSError, ValueError) as exc:
            self._emit(ErrorEvent(messages.conversation_not_deleted(exc), Source.HISTORY))
            return None
        self._emit(ConversationsChanged())
        return summary

    def restore_conversation(self, conversation_id: str) -> bool:
        """Undo ``delete_conversation``."""
        if self._store is None:
            return False
        try:
            self._store.restore(conversation_id)
        except (OSError, ValueError) as exc:
            self._emit(ErrorEvent(messages.conversation_not_restored(exc), Source.HISTORY))
            return False
        self._emit(ConversationsChanged())
        return True

    def export_conversation(self, conversation_id: str, path: Path) -> bool:
        """Write a conversation to ``path``: Markdown for ``.md``, JSON with the timelines for
        ``.json``. False, with a message, when it cannot be written."""
        if self._store is None:
            return False
        try:
            summary = self._store.existing_summary(conversation_id)
            if conversation_id == self.conversation_id and self._conversation is not None:
                turns = list(self._conversation.turns)
            else:
                turns = self._store.load(summary.path)[0].turns
            history_export.write(path, summary.id, summary.title, turns, summary.created)
        except (OSError, ValueError) as exc:
            self._emit(ErrorEvent(messages.conversation_not_exported(path, exc), Source.HISTORY))
            return False
        return True

    def _switch_conversation(self, conversation: Conversation) -> None:
        previous = self._conversation
        # A turn still in flight would be written to the previous conversation.
        settled = self._state in (State.IDLE, State.LISTENING)
        self._conversation = conversation
        if self._session is not None:
            self._session.new_conversation(conversation)
        self._emit(ConversationLoaded(tuple(conversation.turns), conversation_id=conversation.id))
        self._emit(ConversationsChanged())
        if settled and previous is not None and not previous.turns and self._store is not None:
            # An empty conversation left behind is not worth keeping or listing.
            with contextlib.suppress(OSError):
                if previous.path.parent == self._store.directory:
                    if len(previous.path.read_bytes().splitlines()) <= 1:
                        previous.path.unlink()

    async def apply_settings(self, settings: Settings, *, keys_changed: bool = False) -> None:
        """Use ``settings`` from now on and save them; rebuild only what the change needs.

        The conversation is kept. ``keys_changed``: an API key was stored or removed, so engines
        that read keys when built are rebuilt.
        """
        old, self._settings = self._settings, copy.deepcopy(settings)
        self._save()
        change = app_settings.compare(old, self._settings, keys_changed=keys_changed)
        await self.toolbox.apply(self._settings)
        if self._session is not None:
            self._session.tools = self.toolbox.offered()
        if isinstance(self._session, Session) and isinstance(self._engines, EngineSet):
            self._session.structured = self.toolbox.extractor(self._engines.llm)
        if change.reconfigure_echo and not change.reopen_session:
            self.echo.configure(self._settings)
        if change.reopen_session:
            if change.rebuild:
                self._emit(Activity(Doing.SWITCHING, ", ".join(sorted(change.rebuild))))
            await self._reopen(rebuild=change.rebuild, restart_input=change.restart_input)
        elif change.restart_input:
            await self._input.stop()
            await self._input.start(self._settings)
        if change.turn_mode_changed:
            self._switch_session_mode(self._settings.turn_mode)
            self._emit(TurnModeChanged(self._settings.turn_mode))
        self._emit(SettingsApplied(copy.deepcopy(self._settings)))
        self._emit(Notice(messages.SETTINGS_APPLIED, Source.SETTINGS))

    async def restart_audio(self) -> None:
        """Try the microphone and speaker again (after plugging a device in): the devices are
        looked for anew once the old streams are closed."""
        self._output.retry()
        await self._reopen(rebuild=frozenset(), restart_input=True, rescan=True)

    @property
    def devices(self) -> DeviceList:
        """The microphones and speakers found by the latest look (see ``refresh_devices``)."""
        return self._devices.current

    async def refresh_devices(self) -> DeviceList:
        """Look for sound devices now (a device that just appeared is then used, as when the
        periodic look finds it)."""
        return await self._devices.refresh()

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

    def _make_session(
        self, engines: EngineSet | AgentEngineSet, player: Player
    ) -> Session | SpeechSession:
        """The one place a session is built (a ``SpeechSession`` for a speech-to-speech
        engine)."""
        assert self._conversation is not None
        hands_free = self._settings.turn_mode == "vad"
        # Push-to-talk listens for pauses too when it prepares replies while the key is held
        # (chained engines only).
        voice_activity = hands_free or (
            isinstance(engines, EngineSet)
            and self._settings.push_to_talk.speculative_silence_ms > 0
        )
        options = SessionOptions(
            settings=self._settings,
            vad=self._vad_factory(self._settings) if voice_activity else None,
            tools=self.toolbox.offered(),
            turn_model=self._turn_model_factory(self._settings) if hands_free else None,
            clock=self._clock,
            offload=self._offload,
        )
        session: Session | SpeechSession
        if isinstance(engines, AgentEngineSet):
            session = SpeechSession(
                engine=engines.s2s, player=player, conversation=self._conversation, **options
            )
        else:
            session = Session(
                stt=engines.stt,
                llm=engines.llm,
                tts=engines.tts,
                player=player,
                conversation=self._conversation,
                structured=self.toolbox.extractor(engines.llm),
                **options,
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
        else:
            with contextlib.suppress(OSError):
                self._store.purge_deleted(KEEP_DELETED_SECONDS)
        self._conversation = conversation  # before the event: listeners ask which it is
        self._emit(ConversationLoaded(tuple(conversation.turns), conversation_id=conversation.id))
        if report is not None and report.notice:
            self._emit(Notice(report.notice, Source.HISTORY))
        return conversation

    async def _open(self, *, rebuild: frozenset[str]) -> None:
        """A new session on the engines, building anew those of the kinds in ``rebuild``."""
        self._set_ready(False)
        if rebuild or self._engines is None:
            try:
                await self._build_engines(rebuild)
                self._failure = None
            except Exception as exc:
                log.exception("building the engines failed")
                self._failure = messages.engines_unusable(exc)
                self._emit(ErrorEvent(self._failure, Source.SETTINGS))
                return
        assert self._engines is not None
        player = await self._output.open(self._settings)
        self.echo.configure(self._settings)
        self.echo.attach_output(player)
        session = self._make_session(self._engines, player)
        self._unsubscribe = session.subscribe(self._on_session_event)
        self._session = session
        if isinstance(session, Session):
            # The exact prompt of the first turn, read while the engines load.
            session.read_ahead()
        self._warm_task = asyncio.ensure_future(self._warm_and_start(session, bool(rebuild)))

    async def _build_engines(self, kinds: frozenset[str]) -> None:
        """Replace the engines of ``kinds``; the others keep running (a custom factory builds
        the three together)."""
        old = self._engines
        chained = self._settings.pipeline != "s2s"
        default = self._engine_factory == build_engine_set
        if isinstance(old, EngineSet) and chained and default and kinds != ALL_KINDS:
            self._engines = old.rebuilt(self._settings, kinds)
            await old.release(kinds)
            return
        await self._close_engines()
        built = self._engine_factory(self._settings)
        self._engines = built if isinstance(built, AgentEngineSet) else EngineSet.of(built)

    async def _warm_and_start(self, session: Session | SpeechSession, rebuilt: bool) -> None:
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
        if self._tools_started is not None:
            # The MCP servers start beside the engines; each has its own time limit.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._tools_started)
        if not self._input.running:
            await self._input.start(self._settings)
        self._set_ready(True)

    async def _reopen(
        self,
        *,
        rebuild: frozenset[str],
        restart_input: bool = False,
        rescan: bool = False,
        lost: Player | None = None,
    ) -> None:
        """A new session (and output) in place of the current one. With ``lost`` (a player
        whose device went away), nothing is done if that player was replaced meanwhile: a
        reopen that got in first (Retry) already did the work, and a second one would cut off
        the turn the user has started since."""
        assert self._reopen_lock is not None
        async with self._reopen_lock:
            if lost is not None and self._output.current is not lost:
                return
            self._output.replacing()
            if restart_input:
                await self._input.stop()
            await self._close_session()
            if rescan and self._watch_devices:
                # No stream of ours is open now: PortAudio may start over and find new devices.
                await asyncio.to_thread(devices.rescan)
            await self._open(rebuild=rebuild)
            if self._warm_task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await self._warm_task

    async def _close_session(self) -> None:
        task, self._warm_task = self._warm_task, None
        if task is not None and not task.done():
            await cancel_and_wait(task)
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

    def _look(self, look: AudioLook) -> None:
        session = self._session
        if session is not None and self._listening:
            session.look(look)

    def _input_ended(self) -> None:
        """The source is gone (a file ran out, a device vanished): end an open turn."""
        session = self._session
        if session is None:
            return
        if self._talk_held:
            self.release_to_talk()
        session.end_of_input()

    def _devices_changed(self, old: DeviceList, new: DeviceList) -> None:
        """Use a device that just appeared when it is wanted: nothing works without one, or it
        is the chosen one and the system default stands in for it."""
        self._emit(DevicesChanged(new))
        wanted: list[tuple[Kind, str]] = []
        chains: tuple[tuple[Kind, AudioInput | AudioOutput, str], ...] = (
            ("input", self._input, self._settings.input_device),
            ("output", self._output, self._settings.output_device),
        )
        for kind, chain, key in chains:
            if not new.has(kind, key):
                continue
            appeared = not old.has(kind, key)
            if not chain.ok or (chain.substituted and appeared):
                found = new.choices(kind)
                wanted.append((kind, (new.label(kind, key) if key else None) or found[0].label))
        busy = self._device_task is not None and not self._device_task.done()
        if not wanted or busy or self._closed or self._ready_event is None:
            return
        self._device_task = self.spawn(self._use_new_devices(wanted), Source.AUDIO)

    async def _use_new_devices(self, wanted: list[tuple[Kind, str]]) -> None:
        await self.wait_idle()  # never cut a reply short for it
        await self.restart_audio()
        for kind, label in wanted:
            ok = self._input.ok if kind == "input" else self._output.ok
            if ok:
                self._emit(Notice(messages.devices_back(kind, label), Source.DEVICES))

    def _on_alarm(self, alarm: Alarm) -> None:
        """A timer or reminder fell due: chime and speak it, and show a desktop notification."""
        line = alarm_line(alarm, self._settings.language)
        if alarm.late:
            line = f"{line} ({messages.ALARM_LATE})"
        if isinstance(self._session, Session):
            self._session.announce(line)
        else:  # no voice of Parley's own to say it with: shown instead
            self._emit(Notice(line, Source.TOOLS))
        self._notify("Parley", line)

    def _output_lost(self, player: Player) -> None:
        if not self._closed:
            # The device is tried once more (a silent player takes over if it cannot be opened,
            # or if it keeps failing) until Retry.
            self.spawn(self._reopen(rebuild=frozenset(), lost=player), Source.AUDIO_OUTPUT)

    # ---------------------------------------------------------------------------------- events

    def _emit(self, event: AppEvent) -> None:
        self.events.emit(event)

    def _on_session_event(self, event: SessionEvent) -> None:
        if not isinstance(event, StateChanged):
            self._emit(event)
            if isinstance(event, TurnFinished):
                self._emit(ConversationsChanged())
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
        self._emit(
            AudioStatus(self._input.ok, self._output.ok, microphone_silent=self._input.silent)
        )

    def _echo_changed(self) -> None:
        if self._session is not None:
            self._session.set_echo_uncertain(self.echo.uncertain)

    def _save(self) -> None:
        if self._persist:
            problem = app_settings.save(self._settings)
            if problem is not None:
                self._emit(ErrorEvent(problem, Source.SETTINGS))
