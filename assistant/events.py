"""Typed events the session emits for user interfaces, the CLI, logs and tests."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from assistant.audio.devices import DeviceList
from assistant.config import Settings, TurnMode
from assistant.history import TurnRecord
from assistant.tools.mcp import ServerStatus


class State(StrEnum):
    IDLE = "idle"
    LISTENING = "listening"
    USER_SPEAKING = "user_speaking"
    THINKING = "thinking"
    SPEAKING = "speaking"
    INTERRUPTED = "interrupted"


class Source(StrEnum):
    """What an error or a notice is about (what the user can act on)."""

    NONE = ""
    STT = "stt"
    LLM = "llm"
    TTS = "tts"
    #: A speech-to-speech engine (it hears, thinks and speaks).
    S2S = "s2s"
    TOOLS = "tools"
    AUDIO = "audio"
    AUDIO_INPUT = "audio-input"
    AUDIO_OUTPUT = "audio-output"
    HISTORY = "history"
    SETTINGS = "settings"
    TALK = "talk"
    #: A sound device came or went.
    DEVICES = "devices"


def _now() -> float:
    return time.monotonic()


@dataclass(frozen=True, slots=True)
class StateChanged:
    state: State
    previous: State
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class UserSpeechStarted:
    turn_id: int
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class PartialTranscript:
    turn_id: int
    text: str
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class FinalTranscript:
    turn_id: int
    text: str
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class AssistantText:
    """The assistant's reply so far: ``spoken`` has been played, ``generated`` includes it."""

    turn_id: int
    spoken: str
    generated: str
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class ToolCalled:
    turn_id: int
    name: str
    arguments: str
    result: str
    #: The tool's user-facing name, for "used calculator".
    title: str = ""
    #: How long it ran.
    ms: float | None = None
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class FillerSpoken:
    """A short line said while a slow tool runs ("One moment."). It is heard, but it is not
    part of the answer: show it lighter; it never reaches the history's text or the model."""

    turn_id: int
    text: str
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class ConfirmationRequested:
    """The reply asked whether to run a tool that changes something; a spoken "yes"/"no" or
    ``Session.confirm(bool)`` answers it (show yes/no chips)."""

    turn_id: int
    tool: str
    title: str
    arguments: str
    #: The question as spoken.
    prompt: str
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class ConfirmationResolved:
    """The pending confirmation is over: ``accepted`` True (it runs now), False (declined,
    nothing changed), or None (the user said something else; the action was dropped)."""

    tool: str
    accepted: bool | None
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class Announcement:
    """The assistant speaks on its own (a timer or a reminder fired); not a conversation turn."""

    turn_id: int
    text: str
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class StructuredExtracted:
    """The object extracted from a turn beside its reply (or why there is none)."""

    turn_id: int
    data: dict[str, Any] | None
    error: str | None = None
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class PlaybackPaused:
    """Possible interruption (noise, "mhm"): playback paused, may resume."""

    turn_id: int
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class PlaybackResumed:
    turn_id: int
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class TimelineUpdated:
    turn_id: int
    timeline: dict[str, Any]
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class TurnFinished:
    """A turn is over and durably stored."""

    turn: TurnRecord
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class TurnWithdrawn:
    """A reply was dropped before any of it was heard because the user went on talking; its
    words carry over into the next turn's transcript."""

    turn_id: int
    user_text: str
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class PauseJudged:
    """The user paused mid-turn and Parley weighed whether they were done.

    ``waiting``: they seem unfinished, so Parley waits up to ``wait_ms`` of silence for more
    (the window says so) until they speak again or the turn ends. ``ending``: they are done and
    the turn ends now. Neither: the usual silence ends it. ``silence_ms`` is how long the pause
    had lasted at the verdict; the rest is what it rested on (None: not available): how
    finished the words sounded, how likely the language model read the sentence to end there,
    whether it stops on a word a sentence cannot end on, and the transcript.
    """

    turn_id: int
    ending: bool
    waiting: bool
    wait_ms: float | None
    silence_ms: float
    sound: float | None = None
    reading: float | None = None
    trailing: bool = False
    text: str | None = None
    #: How long the language model took to read the words (ms; None: not asked).
    reading_ms: float | None = None
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """Something failed; ``message`` says what the user can do about it."""

    message: str
    source: Source = Source.NONE
    turn_id: int | None = None
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class Notice:
    """Something worth telling the user that is not a failure (a fallback, a restart)."""

    message: str
    source: Source = Source.NONE
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class Loading:
    """Progress of loading an engine (models, voices, server start)."""

    component: str
    fraction: float  # 0..1; 1 = ready
    message: str = ""
    at: float = field(default_factory=_now)


class Doing(StrEnum):
    """What a reply is waiting on, for a progress indicator."""

    #: The model is reading a long message before it can answer.
    READING = "reading"
    THINKING = "thinking"
    #: A tool the model asked for is running (``Activity.detail`` names it).
    TOOL = "tool"
    #: Engines are being changed or loaded after a change of settings, or a failed engine is
    #: being replaced by the next one (``Activity.detail`` says which).
    SWITCHING = "switching"


@dataclass(frozen=True, slots=True)
class Activity:
    """Parley is busy with something the user is waiting for, since ``since`` (monotonic)."""

    doing: Doing
    detail: str = ""
    turn_id: int | None = None
    since: float = field(default_factory=_now)
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class MicLevel:
    rms: float
    at: float = field(default_factory=_now)


SessionEvent = (
    StateChanged
    | UserSpeechStarted
    | PartialTranscript
    | FinalTranscript
    | AssistantText
    | ToolCalled
    | FillerSpoken
    | ConfirmationRequested
    | ConfirmationResolved
    | Announcement
    | StructuredExtracted
    | PlaybackPaused
    | PlaybackResumed
    | TimelineUpdated
    | TurnFinished
    | TurnWithdrawn
    | PauseJudged
    | ErrorEvent
    | Notice
    | Loading
    | Activity
    | MicLevel
)


# ----------------------------------------------------------------------------- the app's own


@dataclass(frozen=True, slots=True)
class Ready:
    """The engines are warm and the conversation is listening: typed messages work, and talking
    does too when a microphone is capturing. False while engines are (re)built or warming up."""

    ready: bool
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class AudioStatus:
    """Whether a microphone is capturing and whether replies reach a real output device."""

    microphone_ok: bool
    speaker_ok: bool
    at: float = field(default_factory=_now)
    #: The microphone captures but sends only silence (withheld by the OS, or muted).
    microphone_silent: bool = False


@dataclass(frozen=True, slots=True)
class DevicesChanged:
    """Microphones or speakers were connected or disconnected: what is there now."""

    devices: DeviceList
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class ConversationLoaded:
    """The current conversation was (re)placed: its past turns, oldest first (none when new)."""

    turns: tuple[TurnRecord, ...]
    at: float = field(default_factory=_now)
    #: Which conversation it is (``HistoryStore`` id; empty when it is not stored).
    conversation_id: str = ""


@dataclass(frozen=True, slots=True)
class ConversationsChanged:
    """The list of past conversations changed (renamed, deleted, restored, a turn added)."""

    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class TurnModeChanged:
    """Push-to-talk (``ptt``) or hands-free (``vad``) is now in force."""

    mode: TurnMode
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class SettingsApplied:
    """New settings are saved and in force (a copy: editing it changes nothing)."""

    settings: Settings
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class EchoStatus:
    """What the microphone's audio processing does now.

    ``cancelling``: the assistant's voice is cancelled from the microphone (echo
    cancellation runs and its far end is the speaker). ``settled``: its echo return loss is
    known (until then, talking over a reply needs words). ``noise_suppression``: background
    noise is suppressed. ``detail``: one line for a tooltip (why it is off, or how well it
    works).
    """

    cancelling: bool
    settled: bool
    noise_suppression: bool
    detail: str = ""
    at: float = field(default_factory=_now)


#: Everything ``assistant.app.Assistant`` publishes: the session's events and its own.
@dataclass(frozen=True, slots=True)
class ToolServers:
    """The MCP tool servers and how each is doing (for the Tools tab)."""

    statuses: tuple[ServerStatus, ...]
    at: float = field(default_factory=_now)


AppEvent = (
    SessionEvent
    | Ready
    | AudioStatus
    | DevicesChanged
    | ConversationLoaded
    | ConversationsChanged
    | TurnModeChanged
    | SettingsApplied
    | ToolServers
    | EchoStatus
)
