"""The three engine protocols every provider implements, and the types they exchange.

Audio crossing these interfaces is mono signed 16-bit PCM in a numpy ``int16`` array, with its
sample rate carried alongside. Engines never touch the player or the session: they turn audio
into text, text into text, or text into audio, and report failures by raising ``EngineError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from assistant.emitter import Emitter
from assistant.types import PCM as PCM  # engines speak PCM; re-exported for adapters

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------- errors


class EngineError(Exception):
    """An engine failed. ``retryable`` tells a fallback chain whether another try may help.

    Messages must be actionable and must never contain secrets (API keys, auth headers).
    """

    def __init__(
        self,
        message: str,
        *,
        engine: str = "",
        retryable: bool = True,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.engine = engine
        self.retryable = retryable
        self.retry_after = retry_after


class MissingKeyError(EngineError):
    """A provider needs an API key that is not set."""

    def __init__(self, provider: str, env_var: str) -> None:
        super().__init__(
            f"{provider}: no API key. Set it in Settings → API keys → {provider} (stored in the "
            f"OS keyring) or in the {env_var} environment variable.",
            engine=provider,
            retryable=False,
        )


class KeyUnreadableError(EngineError):
    """A provider's API key may be stored, but the OS keyring could not be read (it is locked,
    it failed, or it did not answer)."""

    def __init__(self, provider: str, env_var: str, problem: str) -> None:
        super().__init__(
            f"{provider}: {problem}, so its API key cannot be read. Unlock the keyring and try "
            f"again, or set the {env_var} environment variable.",
            engine=provider,
            retryable=False,
        )


class EngineUnavailable(EngineError):
    """An engine cannot run here (missing model, missing binary, unreachable server)."""


# ---------------------------------------------------------------------------------- speech to text


@dataclass(frozen=True, slots=True)
class Transcript:
    """A transcript of the current user utterance.

    ``is_final`` marks the settled text of one utterance; partials replace each other (each
    carries the whole utterance so far, not a delta). ``end_of_turn`` is set by engines that do
    their own endpointing when they decide the user's turn is over.
    """

    text: str
    is_final: bool
    start: float = 0.0  # seconds of audio since the session opened
    end: float = 0.0
    end_of_turn: bool = False
    language: str | None = None
    at: float = field(default_factory=time.monotonic)


@runtime_checkable
class STTSession(Protocol):
    """A streaming transcription session, open for as long as the conversation listens."""

    @property
    def sample_rate(self) -> int:
        """The rate ``push`` expects (the capture path resamples to it)."""
        ...

    async def push(self, pcm: PCM) -> None:
        """Feed audio of the current utterance. Must return quickly (no inference inline)."""
        ...

    async def end_turn(self) -> None:
        """The user stopped talking (PTT release or VAD end): produce the final transcript."""
        ...

    async def clear(self) -> None:
        """Drop the audio of the current utterance without transcribing it."""
        ...

    def transcripts(self) -> AsyncIterator[Transcript]:
        """Partial and final transcripts, in order, until the session closes."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Checkpoints(Protocol):
    """An STT session that can transcribe the open utterance so far without ending it."""

    async def checkpoint(self) -> str | None:
        """The transcript of the current utterance up to now, as good as a final would be.

        The utterance stays open (more audio may follow). A final asked for with no audio
        pushed since would say the same, so a caller who knows nothing was said since may use
        this text as the final. None: the session cannot tell before the final (which, for
        one, finds the language spoken).
        """
        ...


@runtime_checkable
class SpeechToText(Protocol):
    name: str
    #: True when the engine decides by itself where a turn ends (cloud VAD / turn models).
    provides_endpointing: bool

    async def open(self, language: str) -> STTSession: ...

    async def warm_up(self) -> None:
        """Load models / open connections ahead of the first turn. Idempotent."""
        ...


@runtime_checkable
class SkipsFailedEngines(Protocol):
    """A chain of recognizers that can be told its active one keeps dropping after opening."""

    def failed_after_open(self, exc: BaseException) -> None:
        """Skip the active engine from now on (it is probed in the background)."""
        ...


# ----------------------------------------------------------------------------------- language model


Role = Literal["system", "user", "assistant", "tool"]


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text as produced by the model


@dataclass(slots=True)
class Message:
    role: Role
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None

    def to_openai(self) -> dict[str, Any]:
        """The Chat Completions wire form of this message."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in self.tool_calls
            ]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str
    parameters: Mapping[str, Any]  # JSON Schema

    def to_openai(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": dict(self.parameters),
            },
        }

    def to_realtime(self) -> dict[str, Any]:
        """The flat function form speech-to-speech sessions take (OpenAI Realtime, AssemblyAI's
        Voice Agent): ``to_openai``'s function without its wrapper."""
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": dict(self.parameters),
        }


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A fragment of a streamed tool call; fragments with the same index belong together."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Finished:
    reason: str  # stop | length | tool_calls | content_filter


LLMEvent = TextDelta | ToolCallDelta | Usage | Finished


@dataclass(frozen=True, slots=True)
class ChatRequest:
    messages: Sequence[Message]
    tools: Sequence[ToolSpec] = ()
    response_format: Mapping[str, Any] | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    #: The answer is words for a listener, never a JSON object: an engine that can constrain
    #: its sampling (the embedded model's server) keeps "{" out of it; others ignore this.
    plain_text: bool = False


@runtime_checkable
class LanguageModel(Protocol):
    name: str

    def stream(self, request: ChatRequest) -> AsyncIterator[LLMEvent]:
        """Stream one completion. Cancelling the consuming task (or ``aclose``) stops it."""
        ...

    async def warm_up(self) -> None: ...


@runtime_checkable
class Prefillable(Protocol):
    """A language model that can read a prompt ahead of the request (a prompt cache)."""

    async def prefill(self, request: ChatRequest) -> None:
        """Process ``request``'s prompt without generating; the next ``stream`` reuses it."""
        ...


@runtime_checkable
class ScoresEndOfTurn(Protocol):
    """A language model that can read whether the user's words so far finish a sentence."""

    async def end_of_turn_probability(self, request: ChatRequest) -> float | None:
        """The probability (0–1) that ``request``'s last message, the user's words so far,
        ends where it stops, read from the model's next-token distribution with the rest of
        the conversation as context. None when the model cannot tell now (not running, or the
        active member of a chain lacks the ability). Never raises for a model that is down."""
        ...


@runtime_checkable
class NeedsToolRouter(Protocol):
    """A language model that picks tools reliably only under a JSON-schema grammar.

    When ``needs_tool_router`` is true its tools are never offered natively: a constrained
    routing call chooses them (``assistant.tools.router``). Models without the attribute get
    native ``tools``.
    """

    needs_tool_router: bool


# ---------------------------------------------------------------------------------- text to speech


@dataclass(frozen=True, slots=True)
class SpeechChunk:
    """Synthesized audio for (part of) one text piece.

    ``piece`` is the index of the text piece (in the order given to ``stream``) that this audio
    speaks; ``text`` is that piece's text. ``last`` marks the final chunk of a piece. Engines that
    know word timings may fill ``alignment`` with (character offset within the piece, start ms
    within this piece's audio) pairs.
    """

    pcm: PCM
    sample_rate: int
    piece: int
    text: str
    last: bool = False
    alignment: tuple[tuple[int, float], ...] = ()

    @property
    def duration(self) -> float:
        return len(self.pcm) / self.sample_rate


@dataclass(frozen=True, slots=True)
class Voice:
    id: str
    name: str
    language: str  # BCP-47-ish: "en-US", "de", ...
    engine: str
    sample_rate: int
    description: str = ""


@runtime_checkable
class TextToSpeech(Protocol):
    name: str

    def stream(
        self, pieces: AsyncIterable[str], *, voice: str | None, language: str
    ) -> AsyncIterator[SpeechChunk]:
        """Speak text pieces as they arrive; yield audio as soon as it exists.

        Cancellation (task cancel / ``aclose``) must stop within one chunk.
        """
        ...

    def voices(self, language: str | None = None) -> list[Voice]: ...

    async def warm_up(self) -> None: ...


# ------------------------------------------------------------------------------- capabilities

EngineKind = Literal["stt", "llm", "tts"]


@dataclass(frozen=True, slots=True)
class FellBack:
    """``failed`` stopped working; ``replacement`` of the same kind is used meanwhile."""

    kind: EngineKind
    failed: str
    replacement: str
    reason: str


@dataclass(frozen=True, slots=True)
class Recovered:
    """``name`` works again and is used from now on."""

    kind: EngineKind
    name: str


@dataclass(frozen=True, slots=True)
class EngineAnnouncement:
    """An engine's own news for the user (a local server crashed, restarts, gave up).

    ``failure``: something stopped working (shown as an error), else a notice.
    """

    kind: EngineKind
    message: str
    failure: bool = False


EngineNotice = FellBack | Recovered | EngineAnnouncement


@runtime_checkable
class Closeable(Protocol):
    """An engine holding something to release (a server, a model thread, connections)."""

    async def aclose(self) -> None: ...


async def close_engine(engine: object) -> None:
    """Release ``engine`` if it holds anything; a failure is logged, never raised."""
    if isinstance(engine, Closeable):
        try:
            await engine.aclose()
        except Exception as exc:
            log.debug("closing %s: %s", getattr(engine, "name", engine), exc)


@runtime_checkable
class ReportsNotices(Protocol):
    """An engine that has news for the user: a fallback chain switching between its members
    (and passing on its members' news), a local server that crashed and restarts."""

    notices: Emitter[EngineNotice]


# ------------------------------------------------------------------------------------ helpers


async def queued[T](queue: asyncio.Queue[T | EngineError | None]) -> AsyncIterator[T]:
    """A session's output queue as an iterator: items until None (closed); an ``EngineError``
    in it (the session failed) is raised."""
    while (item := await queue.get()) is not None:
        if isinstance(item, EngineError):
            raise item
        yield item


@contextlib.asynccontextmanager
async def closing_stream[T](stream: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Close an engine's stream as soon as its consumer is done, finished or cancelled.

    Stopping iteration early does not close an async generator by itself; this makes an
    interruption reach the engine (HTTP response, websocket context, synthesis) at once.
    """
    try:
        yield stream
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
