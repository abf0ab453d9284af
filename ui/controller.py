"""The seam between the window and the engine: owns the session, engines, microphone and player.

Everything the session reports arrives on the asyncio loop — under qasync that is the Qt thread —
and is re-emitted here as Qt signals for the widgets. Commands from the widgets go the other way.
Audio callbacks never reach this object: capture and playback hand their data to the loop
themselves (``assistant.audio``), and only the loop calls in here.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, Literal

from PySide6.QtCore import QObject, Signal

from assistant import config
from assistant.audio.capture import AudioSource, MicrophoneCapture
from assistant.audio.player import DevicePlayer, Player, VirtualPlayer
from assistant.config import Settings, save_settings
from assistant.engines.base import EngineError, LanguageModel, SpeechToText, TextToSpeech, Voice
from assistant.engines.registry import build_engines, make_tts
from assistant.events import (
    AssistantText,
    ErrorEvent,
    FinalTranscript,
    Loading,
    MicLevel,
    Notice,
    PartialTranscript,
    PlaybackPaused,
    PlaybackResumed,
    SessionEvent,
    State,
    StateChanged,
    TimelineUpdated,
    ToolCalled,
    TurnFinished,
    TurnWithdrawn,
    UserSpeechStarted,
)
from assistant.history import Conversation, HistoryStore
from assistant.session import Session

log = logging.getLogger(__name__)

Engines = tuple[SpeechToText, LanguageModel, TextToSpeech]
EngineFactory = Callable[[Settings], Engines]
PlayerFactory = Callable[[Settings], Player]
SourceFactory = Callable[[Settings], AudioSource | None]

#: What the voice preview says, by base language (English otherwise).
SAMPLE_SENTENCES: dict[str, str] = {
    "en": "Hello! This is how I sound. Shall we talk?",
    "de": "Hallo! So klinge ich. Wollen wir uns unterhalten?",
    "fr": "Bonjour ! Voici ma voix. On discute un peu ?",
    "es": "¡Hola! Así suena mi voz. ¿Hablamos?",
    "it": "Ciao! Questa è la mia voce. Parliamo un po'?",
    "pt": "Olá! Esta é a minha voz. Vamos conversar?",
    "nl": "Hallo! Zo klink ik. Zullen we praten?",
}

NOT_READY = "Parley is still loading its engines; talking will work as soon as they are ready."


def default_engines(settings: Settings) -> Engines:
    return build_engines(settings)


def _device(name: str) -> int | str | None:
    name = name.strip()
    if not name:
        return None
    return int(name) if name.isdigit() else name


def default_player(settings: Settings) -> Player:
    return DevicePlayer(device=_device(settings.output_device))


def default_source(settings: Settings) -> AudioSource | None:
    return MicrophoneCapture(device=_device(settings.input_device))


def sample_sentence(language: str) -> str:
    base = language.replace("_", "-").split("-", 1)[0].lower()
    return SAMPLE_SENTENCES.get(base, SAMPLE_SENTENCES["en"])


def _engine_key(s: Settings) -> tuple[object, ...]:
    """The settings whose change needs new engines (and a new warm-up)."""
    providers = tuple(sorted((k, v.url, v.model, v.voice) for k, v in s.providers.items()))
    return (s.stt, s.llm, s.tts, s.fallback_to_local, s.language, s.local_llm_model, providers)


def _members(engine: object) -> list[object]:
    """The engines inside a fallback chain (or the engine itself)."""
    inner = getattr(engine, "engines", None)
    return list(inner) if isinstance(inner, list) else [engine]


class Controller(QObject):
    """Owns one conversation's machinery and turns its events into Qt signals.

    The factories exist so tests and headless tools can swap the real microphone, speaker and
    engines for virtual ones; by default they come from the settings.
    """

    stateChanged = Signal(str)  # a State value
    userSpeechStarted = Signal(int)
    partialTranscript = Signal(int, str)
    finalTranscript = Signal(int, str)
    assistantText = Signal(int, str, str)  # turn id, spoken so far, generated so far
    toolCalled = Signal(int, str, str, str)  # turn id, name, arguments, result
    playbackPaused = Signal(int)
    playbackResumed = Signal(int)
    timelineUpdated = Signal(int, object)  # turn id, timeline dict (assistant.timeline)
    turnFinished = Signal(object)  # TurnRecord
    turnWithdrawn = Signal(int, str)  # turn id, its words (they open the next turn)
    micLevel = Signal(float)
    error = Signal(str, str)  # message, source
    notice = Signal(str, str)  # message, source
    loading = Signal(str, float, str)  # component, fraction (1 = ready), message
    readyChanged = Signal(bool)
    audioChanged = Signal(bool, bool)  # microphone works, speaker works
    conversationLoaded = Signal(object)  # list[TurnRecord]
    turnModeChanged = Signal(str)
    settingsChanged = Signal(object)  # Settings

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        history_dir: Path | None = None,
        engine_factory: EngineFactory | None = None,
        player_factory: PlayerFactory | None = None,
        source_factory: SourceFactory | None = None,
        persist: bool = True,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._startup_notice: str | None = None
        if settings is None:
            try:
                loaded = config.load_settings()
                settings, self._startup_notice = loaded.settings, loaded.notice
            except OSError as exc:
                settings = Settings()
                self._startup_notice = f"Cannot read the settings file ({exc}); using the defaults."
        self._settings = settings
        self._history_dir = history_dir or config.data_dir() / "conversations"
        self._engine_factory = engine_factory or default_engines
        self._player_factory = player_factory or default_player
        self._source_factory = source_factory or default_source
        self._persist = persist
        self._store: HistoryStore | None = None
        self._conversation: Conversation | None = None
        self._engines: Engines | None = None
        self._player: Player | None = None
        self._session: Session | None = None
        self._source: AudioSource | None = None
        self._capture_task: asyncio.Task[None] | None = None
        self._warm_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._unsubscribe: Callable[[], None] | None = None
        self._ready = False
        self._listening = False
        self._mic_ok = False
        self._speaker_ok = False
        self._state = State.IDLE
        self._closed = False
        #: Why nothing can work until the settings change (engines that cannot be built).
        self._failure: str | None = None
        self._ready_event: asyncio.Event | None = None
        self._reopen_lock: asyncio.Lock | None = None

    # ------------------------------------------------------------------------------ properties

    @property
    def settings(self) -> Settings:
        """The settings in force (a copy is what the settings dialog edits)."""
        return self._settings

    @property
    def session(self) -> Session | None:
        return self._session

    @property
    def conversation(self) -> Conversation | None:
        return self._conversation

    @property
    def tts(self) -> TextToSpeech | None:
        return self._engines[2] if self._engines else None

    @property
    def ready(self) -> bool:
        """Engines warmed up and the session started (typed messages work from here on)."""
        return self._ready

    @property
    def can_talk(self) -> bool:
        """Ready, listening, and a microphone is capturing."""
        return self._ready and self._listening and self._mic_ok

    @property
    def microphone_ok(self) -> bool:
        return self._mic_ok

    @property
    def speaker_ok(self) -> bool:
        return self._speaker_ok

    @property
    def state(self) -> State:
        return self._state

    @property
    def turn_mode(self) -> Literal["ptt", "vad"]:
        return self._settings.turn_mode

    # ------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Load the conversation, build the engines and start warming them in the background.

        Returns quickly: the window is usable at once, and ``readyChanged(True)`` follows.
        """
        self._ready_event = asyncio.Event()
        self._reopen_lock = asyncio.Lock()
        if self._startup_notice:
            self.notice.emit(self._startup_notice, "settings")
        try:
            self._store = HistoryStore(self._history_dir)
            conversation, report = self._store.latest()
        except OSError as exc:
            self.error.emit(
                f"Cannot open the conversation history in {self._history_dir} ({exc}); "
                "this conversation will not be saved.",
                "history",
            )
            conversation, report = (
                Conversation(self._history_dir / "unsaved.jsonl", "unsaved", []),
                None,
            )
        self._conversation = conversation
        self.conversationLoaded.emit(list(conversation.turns))
        if report is not None and report.notice:
            self.notice.emit(report.notice, "history")
        await self._open(rebuild_engines=True)

    async def close(self) -> None:
        """Stop capture and playback, end the session and release the engines."""
        if self._closed:
            return
        self._closed = True
        for task in [self._warm_task, *self._tasks]:
            if task is not None and not task.done():
                task.cancel()
        await self._stop_capture()
        await self._close_session()
        await self._close_engines()

    async def wait_ready(self, timeout: float | None = None) -> None:
        if self._ready_event is None:
            raise RuntimeError("the controller has not been started")
        await asyncio.wait_for(self._ready_event.wait(), timeout)

    # ------------------------------------------------------------------------------- commands

    def press_to_talk(self) -> bool:
        """Talk key down; False (with a message saying why) when talking is not possible yet."""
        session = self._session
        if self._failure is not None:
            self.error.emit(self._failure, "settings")
            return False
        if session is None or not self._ready:
            self.notice.emit(NOT_READY, "talk")
            return False
        if not self._mic_ok:
            self.error.emit(
                "No microphone is capturing, so Parley cannot hear you. Connect one and choose "
                "Retry, or type your message below.",
                "audio-input",
            )
            return False
        if not self._listening:
            self.error.emit(
                "Speech recognition is not running; check the speech engine in Settings, or type "
                "your message below.",
                "stt",
            )
            return False
        session.press_to_talk()
        return True

    def release_to_talk(self) -> None:
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
            self.error.emit(self._failure, "settings")
            return False
        if self._session is None or not self._ready:
            self.notice.emit(
                "Parley is still loading its engines; send your message again in a moment.", "talk"
            )
            return False
        self._session.submit_text(text)
        return True

    def set_turn_mode(self, mode: Literal["ptt", "vad"]) -> None:
        """Push-to-talk or hands-free (voice activity decides when you are done)."""
        if mode not in ("ptt", "vad"):
            raise ValueError(f"unknown turn mode {mode!r}")
        changed = self._settings.turn_mode != mode
        session = self._session
        if session is not None:
            if mode == "vad" and session.vad is None:
                session.vad = self._make_vad()
            if mode == "vad" and session.turn_model is None:
                session.turn_model = self._make_turn_model()
            session.set_turn_mode(mode)
        self._settings.turn_mode = mode
        if changed:
            self._save()
        self.turnModeChanged.emit(mode)

    def new_conversation(self) -> None:
        """Start over; the previous conversation stays on disk."""
        if self._store is None:
            return
        try:
            conversation = self._store.new()
        except OSError as exc:
            self.error.emit(f"Cannot start a new conversation file: {exc}", "history")
            return
        self._conversation = conversation
        if self._session is not None:
            self._session.new_conversation(conversation)
        self.conversationLoaded.emit([])

    def apply_settings_soon(self, settings: Settings, *, keys_changed: bool = False) -> None:
        """``apply_settings`` from a Qt slot (fire and forget; failures become a banner)."""
        self.spawn(self.apply_settings(settings, keys_changed=keys_changed), "settings")

    async def apply_settings(self, settings: Settings, *, keys_changed: bool = False) -> None:
        """Use ``settings`` from now on and save them; rebuild only what the change needs.

        The conversation is kept. ``keys_changed``: an API key was stored or removed, so engines
        that read keys when built are rebuilt.
        """
        old, self._settings = self._settings, copy.deepcopy(settings)
        self._save()
        rebuild_engines = keys_changed or _engine_key(old) != _engine_key(self._settings)
        reopen = rebuild_engines or _session_relevant(old) != _session_relevant(self._settings)
        input_changed = old.input_device != self._settings.input_device
        if reopen:
            await self._reopen(rebuild_engines=rebuild_engines, restart_capture=input_changed)
        elif input_changed:
            await self._restart_capture()
        if old.turn_mode != self._settings.turn_mode:
            self.turnModeChanged.emit(self._settings.turn_mode)
        self.settingsChanged.emit(self._settings)
        self.notice.emit("Settings saved and applied.", "settings")

    async def restart_audio(self) -> None:
        """Try the microphone and speaker again (after plugging a device in)."""
        await self._reopen(rebuild_engines=False, restart_capture=True)

    def voices(self, engine: str, language: str) -> list[Voice]:
        """Voices for the picker: the offline catalog for ``local``, else the engine's own list."""
        if engine == "local":
            try:
                from assistant.engines.local.voices import list_voices
            except ImportError:
                return []
            return list_voices(language)
        tts = self.tts
        if tts is not None and getattr(tts, "name", "") == engine:
            return tts.voices(language)
        try:
            return make_tts(engine, self._settings).voices(language)
        except Exception as exc:  # a cloud engine without a key cannot list its voices
            log.info("cannot list the voices of %s: %s", engine, exc)
            return []

    async def preview_voice(self, voice: str, language: str, engine: str | None = None) -> float:
        """Speak a sample sentence in ``voice`` through the TTS and a player of its own.

        Returns the seconds of audio played. Raises EngineError when the engine cannot speak.
        """
        engine = engine or self._settings.tts
        tts = self.tts if self.tts is not None and self._settings.tts == engine else None
        if tts is None:
            tts = make_tts(engine, self._settings)
        text = sample_sentence(language)
        player = await self._open_player(self._settings, quiet=True)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def finished(_turn: int, _position: float, _interrupted: bool) -> None:
            if not done.done():
                done.set_result(None)

        player.on_playback_finished.append(finished)

        async def pieces() -> AsyncIterator[str]:
            yield text

        seconds = 0.0
        try:
            stream = tts.stream(pieces(), voice=voice or None, language=language)
            async with contextlib.aclosing(stream):  # type: ignore[type-var]
                async for chunk in stream:
                    if len(chunk.pcm):
                        player.write(chunk.pcm, chunk.sample_rate, 1)
                        seconds += chunk.duration
            player.flush()
            if seconds > 0:
                await asyncio.wait_for(done, seconds + 10.0)
        finally:
            await player.close()
        return seconds

    def spawn(self, coro: Coroutine[Any, Any, Any], source: str = "") -> asyncio.Task[Any]:
        """Run ``coro`` in the background; an exception becomes an error banner, not a crash."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if t.cancelled():
                return
            exc = t.exception()
            if exc is not None:
                log.error("background task failed", exc_info=exc)
                self.error.emit(_describe(exc), source)

        task.add_done_callback(done)
        return task

    # --------------------------------------------------------------------------- engine & audio

    async def _open(self, *, rebuild_engines: bool) -> None:
        self._set_ready(False)
        if rebuild_engines or self._engines is None:
            await self._close_engines()
            try:
                self._engines = self._engine_factory(self._settings)
                self._failure = None
            except Exception as exc:
                log.exception("building the engines failed")
                self._engines = None
                self._failure = (
                    f"Cannot set up the engines: {_describe(exc)} Choose other engines in Settings."
                )
                self.error.emit(self._failure, "settings")
                return
        stt, llm, tts = self._engines
        player = await self._open_player(self._settings)
        self._player = player
        listeners = getattr(player, "on_error", None)
        if isinstance(listeners, list):
            listeners.append(self._on_output_lost)
        assert self._conversation is not None
        session = Session(
            stt=stt,
            llm=llm,
            tts=tts,
            player=player,
            conversation=self._conversation,
            settings=self._settings,
            vad=self._make_vad() if self._settings.turn_mode == "vad" else None,
            turn_model=self._make_turn_model() if self._settings.turn_mode == "vad" else None,
        )
        self._unsubscribe = session.subscribe(self._on_event)
        self._session = session
        self._warm_task = asyncio.ensure_future(self._warm_and_start(session, rebuild_engines))

    async def _open_player(self, settings: Settings, *, quiet: bool = False) -> Player:
        """The configured output, or a silent virtual one (with a message) when it fails."""
        try:
            player = self._player_factory(settings)
            await player.start()
            if not quiet:
                self._set_audio(speaker=True)
            return player
        except Exception as exc:
            log.warning("audio output unavailable: %s", exc)
            # Nothing to hear: let replies "play" as fast as they are made, so text is not
            # held back by silent playback.
            virtual = VirtualPlayer(pace="fast")
            await virtual.start()
            if not quiet:
                self._set_audio(speaker=False)
                self.error.emit(_no_output_message(exc), "audio-output")
            return virtual

    def _make_vad(self) -> Any:
        from assistant.talk import make_vad

        return make_vad(self._settings)

    def _make_turn_model(self) -> Any:
        from assistant.talk import make_turn_model

        try:
            return make_turn_model(self._settings)
        except Exception as exc:  # optional: hands-free works without it, only less smartly
            log.warning("end-of-turn model unavailable: %s", exc)
            return None

    async def _warm_and_start(self, session: Session, rebuilt: bool) -> None:
        assert self._engines is not None
        kinds = ("speech recognition", "language model", "speech synthesis")
        await asyncio.gather(
            *(
                self._warm(kind, engine, announce=rebuilt)
                for kind, engine in zip(kinds, self._engines, strict=True)
            )
        )
        if self._session is not session:
            return
        try:
            await session.start()
            self._listening = True
        except Exception as exc:
            log.warning("the session could not start listening: %s", exc)
            self._listening = False
            self.error.emit(
                f"Speech recognition could not start: {_describe(exc)} You can still type.", "stt"
            )
        self._set_ready(True)
        if self._source is None:
            await self._start_capture()

    async def _warm(self, kind: str, engine: object, *, announce: bool) -> None:
        loop = asyncio.get_running_loop()

        def report(fraction: float, message: str) -> None:
            # Engines may report from worker threads: hop onto the loop first.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._on_loading, Loading(kind, float(fraction), message))

        for member in _members(engine):
            callbacks = getattr(member, "on_progress", None)
            if isinstance(callbacks, list):
                callbacks.append(report)
            elif hasattr(member, "progress") and getattr(member, "progress", None) is None:
                with contextlib.suppress(AttributeError):
                    member.progress = report
        if announce:
            self._on_loading(Loading(kind, 0.0, f"Loading {kind}…"))
        try:
            await engine.warm_up()  # type: ignore[attr-defined]
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("warming up %s failed: %s", kind, exc)
            self._on_loading(Loading(kind, 1.0, f"{kind} failed"))
            self.error.emit(f"The {kind} engine could not load: {_describe(exc)}", kind)
            return
        self._on_loading(Loading(kind, 1.0, f"{kind.capitalize()} ready"))

    async def _start_capture(self) -> None:
        try:
            source = self._source_factory(self._settings)
        except Exception as exc:
            source = None
            self.error.emit(_no_input_message(exc), "audio-input")
        if source is None:
            self._set_audio(mic=False)
            return
        source.on_error.append(self._on_input_lost)
        try:
            await source.start()
        except Exception as exc:
            log.warning("microphone unavailable: %s", exc)
            self._set_audio(mic=False)
            self.error.emit(_no_input_message(exc), "audio-input")
            return
        self._source = source
        self._set_audio(mic=True)
        self._capture_task = asyncio.ensure_future(self._capture(source))

    async def _capture(self, source: AudioSource) -> None:
        try:
            async for frame in source.frames():
                session = self._session
                if session is not None and self._listening:
                    await session.feed(frame)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("audio capture failed")
            self.error.emit(f"Audio input failed: {_describe(exc)}", "audio-input")
        session = self._session
        if session is not None:
            session.end_of_input()  # the microphone is gone: do not leave a turn hanging open
        if self._source is source:
            self._set_audio(mic=False)

    async def _stop_capture(self) -> None:
        source, self._source = self._source, None
        task, self._capture_task = self._capture_task, None
        if source is not None:
            with contextlib.suppress(Exception):
                await source.stop()
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def _restart_capture(self) -> None:
        await self._stop_capture()
        await self._start_capture()

    async def _reopen(self, *, rebuild_engines: bool, restart_capture: bool = False) -> None:
        assert self._reopen_lock is not None
        async with self._reopen_lock:
            if restart_capture:
                await self._stop_capture()
            await self._close_session()
            await self._open(rebuild_engines=rebuild_engines)
            if self._warm_task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await self._warm_task

    async def _close_session(self) -> None:
        if self._warm_task is not None and not self._warm_task.done():
            self._warm_task.cancel()
            with contextlib.suppress(BaseException):
                await self._warm_task
        session, self._session = self._session, None
        self._listening = False
        if session is not None:
            # Still subscribed while closing, so a reply cut off here reaches the view too.
            with contextlib.suppress(Exception):
                await session.close()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        elif self._player is not None:
            with contextlib.suppress(Exception):
                await self._player.close()
        self._player = None
        self._set_state(State.IDLE)

    async def _close_engines(self) -> None:
        engines, self._engines = self._engines, None
        if engines is None:
            return
        for engine in engines:
            for member in _members(engine):
                for name in ("aclose", "close"):
                    method = getattr(member, name, None)
                    if callable(method):
                        try:
                            result = method()
                            if inspect.isawaitable(result):
                                await result
                        except Exception as exc:
                            log.debug("closing %s: %s", member, exc)
                        break

    def _on_output_lost(self, message: str) -> None:
        self._set_audio(speaker=False)
        self.error.emit(
            f"{message} Replies continue as text; choose Retry after reconnecting.", "audio-output"
        )
        if not self._closed:
            self.spawn(self._reopen(rebuild_engines=False), "audio-output")

    def _on_input_lost(self, message: str) -> None:
        self._set_audio(mic=False)
        self.error.emit(
            f"{message} Choose Retry after reconnecting it, or type below.", "audio-input"
        )

    # --------------------------------------------------------------------------------- events

    def _on_event(self, event: SessionEvent) -> None:
        match event:
            case MicLevel():
                self.micLevel.emit(event.rms)
            case StateChanged():
                self._set_state(event.state)
            case UserSpeechStarted():
                self.userSpeechStarted.emit(event.turn_id)
            case PartialTranscript():
                self.partialTranscript.emit(event.turn_id, event.text)
            case FinalTranscript():
                self.finalTranscript.emit(event.turn_id, event.text)
            case AssistantText():
                self.assistantText.emit(event.turn_id, event.spoken, event.generated)
            case ToolCalled():
                self.toolCalled.emit(event.turn_id, event.name, event.arguments, event.result)
            case PlaybackPaused():
                self.playbackPaused.emit(event.turn_id)
            case PlaybackResumed():
                self.playbackResumed.emit(event.turn_id)
            case TimelineUpdated():
                self.timelineUpdated.emit(event.turn_id, event.timeline)
            case TurnFinished():
                self.turnFinished.emit(event.turn)
            case TurnWithdrawn():
                self.turnWithdrawn.emit(event.turn_id, event.user_text)
            case ErrorEvent():
                self.error.emit(event.message, event.source)
            case Notice():
                self.notice.emit(event.message, event.source)
            case Loading():
                self._on_loading(event)

    def _on_loading(self, event: Loading) -> None:
        self.loading.emit(event.component, event.fraction, event.message)

    def _set_state(self, state: State) -> None:
        if state is not self._state:
            self._state = state
            self.stateChanged.emit(state.value)

    def _set_ready(self, ready: bool) -> None:
        if ready == self._ready:
            return
        self._ready = ready
        if self._ready_event is not None:
            if ready:
                self._ready_event.set()
            else:
                self._ready_event.clear()
        self.readyChanged.emit(ready)

    def _set_audio(self, *, mic: bool | None = None, speaker: bool | None = None) -> None:
        if mic is not None:
            self._mic_ok = mic
        if speaker is not None:
            self._speaker_ok = speaker
        self.audioChanged.emit(self._mic_ok, self._speaker_ok)

    def _save(self) -> None:
        if not self._persist:
            return
        try:
            save_settings(self._settings)
        except OSError as exc:
            self.error.emit(f"Could not save the settings: {exc}", "settings")


def _session_relevant(s: Settings) -> tuple[object, ...]:
    """Settings a running session reads only when it is built."""
    return (
        s.output_device,
        s.vad,
        s.interruption,
        s.budgets,
        s.system_prompt,
        s.context_tokens,
        s.voice,
    )


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, EngineError | OSError | ValueError):
        text = f"{type(exc).__name__}: {text}"
    return text if text.endswith((".", "!", "?")) else text + "."


def _no_output_message(exc: BaseException) -> str:
    detail = str(exc).strip()
    if not detail.lower().startswith("no audio output device"):
        detail = f"No audio output device could be opened ({_describe(exc)})"
    return f"{detail} Replies are shown as text only until a speaker works (Retry)."


def _no_input_message(exc: BaseException) -> str:
    detail = str(exc).strip()
    if not detail.lower().startswith(("no audio input device", "cannot open audio input")):
        detail = f"No microphone could be opened ({_describe(exc)})"
    return f"{detail} You can still type messages."
