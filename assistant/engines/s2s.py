"""Speech to speech: one engine that hears the user and answers out loud.

The fourth engine kind, beside the chained three. A ``SpeechToSpeech`` engine opens an
``AgentSession`` for a conversation (``AgentSetup``: the instructions, the earlier turns, the
tools, the voice, who ends turns) and from then on takes the user's audio and gives back the
assistant's audio with both transcripts, as typed events (``AgentEvent``). The session that
runs it (``assistant.session.s2s``) keeps Parley's own guarantees around it: it plays the audio,
stops it on barge-in and tells the engine how much was heard (``interrupt``), runs the tools the
engine asks for through Parley's registry (``tool_results``), and records each turn.

Audio in is mono int16 at ``AgentSession.sample_rate`` (16 kHz, the capture rate); audio out is
mono int16 at the rate each ``ReplyAudio`` carries. Methods queue messages and return at once;
they raise ``EngineError`` when the session has failed for good (``events()`` raises it too).

Turns: with ``server_turns`` the provider decides where the user's turn ends and when speech
over a reply interrupts it (``SpeechStarted``/``SpeechStopped``; the reply it cancelled ends
``cancelled``); otherwise Parley does, and says so with ``commit`` (answer now) and ``clear``
(forget what was sent of this utterance).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from assistant.engines.base import PCM, EngineError, Message, ToolCall, ToolSpec


@dataclass(frozen=True, slots=True)
class AgentSetup:
    """What a speech-to-speech session starts with."""

    instructions: str
    language: str = "en"
    voice: str | None = None
    tools: Sequence[ToolSpec] = ()
    #: The conversation so far (user and assistant turns, tool calls and results; no system
    #: message): the provider's context starts from what was heard.
    history: Sequence[Message] = ()
    #: The provider ends the user's turns and detects barge-in itself.
    server_turns: bool = False
    #: Turn detection by meaning rather than silence, where the provider has it.
    semantic_turns: bool = False
    #: Silence that ends a turn, and the speech probability that counts as speech.
    end_silence_ms: int = 600
    vad_threshold: float = 0.5
    #: Audio kept from before speech was detected.
    prefix_ms: int = 300
    #: Spoken verbatim when the session starts (empty: no greeting).
    greeting: str = ""


# ---------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """The provider heard the user start talking (server turns)."""


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    """The provider decided the user stopped talking; ``lag`` seconds ago, where it says."""

    lag: float = 0.0


@dataclass(frozen=True, slots=True)
class UserText:
    """The user's words: a partial (replaced by the next) or the final transcript."""

    text: str
    final: bool


@dataclass(frozen=True, slots=True)
class ReplyStarted:
    reply: str


@dataclass(frozen=True, slots=True)
class ReplyAudio:
    """Audio of ``item`` (a part of a reply that truncation names) of ``reply``."""

    reply: str
    item: str
    pcm: PCM
    sample_rate: int


@dataclass(frozen=True, slots=True)
class ReplyText:
    """More of the transcript of ``item``'s audio. ``at``: where it starts in the item's
    audio (seconds), for providers that say."""

    reply: str
    item: str
    text: str
    at: float | None = None


@dataclass(frozen=True, slots=True)
class ReplyTextDone:
    """The whole transcript of ``item``'s audio (it replaces the deltas)."""

    reply: str
    item: str
    text: str


@dataclass(frozen=True, slots=True)
class ToolRequest:
    """The model calls a tool; answer with ``tool_results`` once the reply is done."""

    reply: str
    call: ToolCall


ReplyStatus = Literal["completed", "cancelled", "failed"]


@dataclass(frozen=True, slots=True)
class ReplyDone:
    """``reply`` ended: completed (tool requests, if any, await results), cancelled (barge-in),
    or failed (``error``; audio already received still plays)."""

    reply: str
    status: ReplyStatus
    error: EngineError | None = None


@dataclass(frozen=True, slots=True)
class SessionNotice:
    """Something the user may want to know (the session resumed after a drop, or restarted)."""

    message: str


AgentEvent = (
    SpeechStarted
    | SpeechStopped
    | UserText
    | ReplyStarted
    | ReplyAudio
    | ReplyText
    | ReplyTextDone
    | ToolRequest
    | ReplyDone
    | SessionNotice
)


@dataclass(frozen=True, slots=True)
class Heard:
    """How much of one reply item the user heard: ``heard`` of the ``duration`` seconds
    received so far (0: none of it; the item may still be growing)."""

    item: str
    heard: float
    duration: float


# -------------------------------------------------------------------------------- protocols


@runtime_checkable
class AgentSession(Protocol):
    """One conversation with a speech-to-speech engine; see the module docstring."""

    @property
    def sample_rate(self) -> int:
        """The rate ``push`` takes."""
        ...

    def push(self, pcm: PCM) -> None:
        """The user's audio (all of it with server turns; the utterance's otherwise)."""
        ...

    def commit(self) -> bool:
        """The user's turn ended (Parley's turn detection): answer now. False when there was
        too little audio to answer (no reply follows)."""
        ...

    def clear(self) -> None:
        """Forget the audio of the current utterance (it was a noise)."""
        ...

    def interrupt(self, reply: str, heard: Sequence[Heard], heard_text: str) -> None:
        """Playback of ``reply`` was stopped: cancel it and keep only what was heard in the
        provider's context."""
        ...

    def tool_results(self, reply: str, results: Sequence[tuple[str, str]]) -> None:
        """(call id, result) for every ``ToolRequest`` of ``reply``; the engine answers on."""
        ...

    def say(self, text: str) -> None:
        """A typed message from the user: answer it."""
        ...

    def remember(self, messages: Sequence[Message]) -> None:
        """A finished turn as it was heard; a session that must start over on a new connection
        starts from the turns given at the start and these."""
        ...

    def events(self) -> AsyncIterator[AgentEvent]:
        """Everything the engine reports, in order, until the session closes; raises the
        ``EngineError`` that ended it."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class SpeechToSpeech(Protocol):
    name: str

    async def open(self, setup: AgentSetup) -> AgentSession:
        """Start a session (raises ``EngineError``: no key, unreachable, refused)."""
        ...

    async def warm_up(self) -> None:
        """Check the key and open connections ahead of the first turn. Idempotent."""
        ...
