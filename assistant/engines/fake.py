"""Scripted engines with set latencies, for tests, benchmarks and ``--stt/--llm/--tts fake``.

They behave like real streaming engines on the outside (partials while audio arrives, tokens at
a steady rate, audio chunks faster than real time) without any model, so the orchestration can
be tested and measured on its own.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import re
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from assistant.clock import SYSTEM_CLOCK, Clock
from assistant.engines.base import (
    PCM,
    ChatRequest,
    EngineError,
    Finished,
    LLMEvent,
    SpeechChunk,
    TextDelta,
    ToolCallDelta,
    Transcript,
    Usage,
    Voice,
    queued,
)

DEFAULT_UTTERANCES = (
    "What is a good name for a cat?",
    "Tell me something interesting about the moon.",
    "How do I boil an egg?",
)

# --------------------------------------------------------------------------------------------- STT


@dataclass(slots=True)
class FakeSTT:
    """Transcribes each utterance as the next scripted text.

    Partials reveal the text word by word as audio arrives (``words_per_second``); the final
    comes ``final_delay`` seconds after ``end_turn``. An utterance shorter than
    ``min_audio_seconds`` transcribes as empty, like a real engine on a click.
    """

    script: Sequence[str] = DEFAULT_UTTERANCES
    final_delay: float = 0.05
    words_per_second: float = 2.5
    min_audio_seconds: float = 0.15
    fail_on_open: EngineError | None = None
    #: The first final fails by breaking the transcript stream (as a crashed engine would).
    fail_first_final: EngineError | None = None
    name: str = "fake"
    provides_endpointing: bool = False
    #: Measured time from each ``end_turn`` to its final transcript (for benchmarks).
    final_delays: list[float] = field(default_factory=list)
    #: How many times the words so far were asked for without ending the utterance.
    checkpoints: int = 0
    #: Seconds of audio each ended utterance was given, in order.
    heard_seconds: list[float] = field(default_factory=list)
    #: Whose time the latencies are spent on (a manual clock in turn-taking tests).
    clock: Clock = SYSTEM_CLOCK
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    async def open(self, language: str) -> FakeSTTSession:
        if self.fail_on_open is not None:
            raise self.fail_on_open
        return FakeSTTSession(self)

    async def warm_up(self) -> None:
        return None

    def next_text(self) -> str:
        return self.script[next(self._counter) % len(self.script)] if self.script else ""


class FakeSTTSession:
    sample_rate = 16_000

    def __init__(self, engine: FakeSTT) -> None:
        self._engine = engine
        self._queue: asyncio.Queue[Transcript | EngineError | None] = asyncio.Queue()
        self._samples = 0
        self._text: str | None = None
        self._last_partial = ""
        self._offset = 0.0

    def _utterance_text(self) -> str:
        if self._text is None:
            self._text = self._engine.next_text()
        return self._text

    async def push(self, pcm: PCM) -> None:
        self._samples += len(pcm)
        seconds = self._samples / self.sample_rate
        if seconds < self._engine.min_audio_seconds:
            return
        words = self._utterance_text().split()
        shown = " ".join(words[: int(seconds * self._engine.words_per_second)])
        if shown and shown != self._last_partial:
            self._last_partial = shown
            await self._queue.put(
                Transcript(shown, is_final=False, start=self._offset, end=self._offset + seconds)
            )

    async def end_turn(self) -> None:
        started = self._engine.clock.now()
        seconds = self._samples / self.sample_rate
        long_enough = seconds >= self._engine.min_audio_seconds
        text = self._utterance_text() if long_enough else ""
        self._engine.heard_seconds.append(seconds)
        self._reset()
        await self._engine.clock.sleep(self._engine.final_delay)
        failure, self._engine.fail_first_final = self._engine.fail_first_final, None
        if failure is not None:
            await self._queue.put(failure)
            return
        final = Transcript(text, is_final=True, start=self._offset, end=self._offset + seconds)
        self._engine.final_delays.append(self._engine.clock.now() - started)
        await self._queue.put(final)
        self._offset += seconds

    async def checkpoint(self) -> str:
        """The words revealed so far (the whole text once enough audio came), after
        ``final_delay``; the utterance stays open."""
        self._engine.checkpoints += 1
        seconds = self._samples / self.sample_rate
        words = self._utterance_text().split() if seconds >= self._engine.min_audio_seconds else []
        await self._engine.clock.sleep(self._engine.final_delay)
        return " ".join(words[: int(seconds * self._engine.words_per_second)])

    async def clear(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._samples = 0
        self._text = None
        self._last_partial = ""

    def transcripts(self) -> AsyncIterator[Transcript]:
        return queued(self._queue)

    async def aclose(self) -> None:
        await self._queue.put(None)


# --------------------------------------------------------------------------------------------- LLM

_TOKEN = re.compile(r"\s*\S+")


def default_reply(request: ChatRequest) -> str:
    user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
    tool_results = [m.content for m in request.messages if m.role == "tool"]
    if tool_results and request.messages[-1].role == "tool":
        return f"The answer is {tool_results[-1]}. Anything else?"
    topic = user.rstrip("?.! ") or "that"
    return (
        f"You asked: {topic}. That is a good question, and I am glad you asked it. "
        "Here is a short answer with a few more words, so there is something to listen to."
    )


@dataclass(slots=True)
class FakeLLM:
    """Streams a scripted reply token by token after ``ttft`` seconds.

    ``tool_call`` = (name, arguments JSON): the first request answers with that call instead of
    text; the follow-up request (with the tool result) gets a text reply.
    """

    reply: Callable[[ChatRequest], str] = default_reply
    ttft: float = 0.1
    tokens_per_second: float = 60.0
    tool_call: tuple[str, str] | None = None
    fail_before_first_token: EngineError | None = None
    fail_after_tokens: int | None = None
    name: str = "fake"
    requests: list[ChatRequest] = field(default_factory=list)
    #: Measured time from each request to its first event (for benchmarks).
    first_token_delays: list[float] = field(default_factory=list)
    clock: Clock = SYSTEM_CLOCK

    async def stream(self, request: ChatRequest) -> AsyncIterator[LLMEvent]:
        started = self.clock.now()
        self.requests.append(request)
        await self.clock.sleep(self.ttft)
        self.first_token_delays.append(self.clock.now() - started)
        if self.fail_before_first_token is not None:
            raise self.fail_before_first_token
        delay = 1.0 / self.tokens_per_second if self.tokens_per_second > 0 else 0.0
        if self.tool_call and not any(m.role == "tool" for m in request.messages):
            name, args = self.tool_call
            yield ToolCallDelta(0, id="call_1", name=name, arguments="")
            half = len(args) // 2
            for fragment in (args[:half], args[half:]):
                await self.clock.sleep(delay)
                yield ToolCallDelta(0, arguments=fragment)
            yield Finished("tool_calls")
            return
        tokens = _TOKEN.findall(self.reply(request))
        for i, token in enumerate(tokens):
            if self.fail_after_tokens is not None and i >= self.fail_after_tokens:
                raise EngineError("the fake language model failed mid-reply", engine=self.name)
            yield TextDelta(token)
            if delay:
                await self.clock.sleep(delay)
        yield Usage(
            prompt_tokens=sum(len(m.content) // 4 for m in request.messages),
            completion_tokens=len(tokens),
        )
        yield Finished("stop")

    async def warm_up(self) -> None:
        return None


def sentence_ends(text: str) -> float:
    """A scripted reading: high after a question mark or a period, low otherwise."""
    return 0.95 if text.rstrip().endswith(("?", ".", "!")) else 0.05


@dataclass(slots=True)
class FakeReadingLLM(FakeLLM):
    """A ``FakeLLM`` that also reads whether the user's sentence ends (``ScoresEndOfTurn``):
    ``reading(text)`` after ``reading_delay`` seconds; each reading is logged with its time."""

    reading: Callable[[str], float | None] = sentence_ends
    reading_delay: float = 0.03
    readings: list[tuple[float, str]] = field(default_factory=list)

    async def end_of_turn_probability(self, request: ChatRequest) -> float | None:
        text = request.messages[-1].content if request.messages else ""
        self.readings.append((self.clock.now(), text))
        await self.clock.sleep(self.reading_delay)
        return self.reading(text)


# --------------------------------------------------------------------------------------------- TTS


@dataclass(slots=True)
class FakeTTS:
    """Speech-like audio (a tone burst per word) at ``chars_per_second``.

    Audio for a piece starts ``first_audio_delay`` after the piece arrives and is produced at
    ``realtime_factor`` × its duration, in ``chunk_ms`` chunks, with word alignment.
    """

    first_audio_delay: float = 0.05
    chars_per_second: float = 16.0
    realtime_factor: float = 0.1
    sample_rate: int = 24_000
    chunk_ms: int = 100
    fail_after_chunks: int | None = None
    name: str = "fake"
    #: Measured time from each reply's first piece to its first audio (for benchmarks).
    first_audio_delays: list[float] = field(default_factory=list)
    clock: Clock = SYSTEM_CLOCK

    async def stream(
        self, pieces: AsyncIterable[str], *, voice: str | None, language: str
    ) -> AsyncIterator[SpeechChunk]:
        produced = 0
        index = 0
        async for text in pieces:
            started = self.clock.now()
            await self.clock.sleep(self.first_audio_delay)
            pcm, alignment = synthesize_words(text, self.sample_rate, self.chars_per_second)
            if index == 0:
                self.first_audio_delays.append(self.clock.now() - started)
            step = max(1, self.sample_rate * self.chunk_ms // 1000)
            starts = range(0, max(1, len(pcm)), step)
            for start in starts:
                if self.fail_after_chunks is not None and produced >= self.fail_after_chunks:
                    raise EngineError("the fake speech engine failed mid-reply", engine=self.name)
                chunk = pcm[start : start + step]
                t0, t1 = start / self.sample_rate, (start + step) / self.sample_rate
                yield SpeechChunk(
                    chunk,
                    self.sample_rate,
                    piece=index,
                    text=text,
                    last=start + step >= len(pcm),
                    alignment=tuple((c, (t - t0) * 1000.0) for c, t in alignment if t0 <= t < t1),
                )
                produced += 1
                await self.clock.sleep(self.realtime_factor * len(chunk) / self.sample_rate)
            index += 1

    def voices(self, language: str | None = None) -> list[Voice]:
        return [Voice("fake:tone", "Tone", language or "en", self.name, self.sample_rate)]

    async def warm_up(self) -> None:
        return None


def synthesize_words(
    text: str, rate: int, chars_per_second: float
) -> tuple[PCM, list[tuple[int, float]]]:
    """A tone burst per word (pitch from the word), silence between; word start times."""
    parts: list[np.ndarray] = []
    alignment: list[tuple[int, float]] = []
    t = 0.0
    for match in re.finditer(r"\S+", text):
        word = match.group()
        seconds = max(0.12, (len(word) + 1) / chars_per_second)
        tone = int(seconds * rate * 0.8)
        gap = int(seconds * rate) - tone
        freq = 140.0 + (sum(map(ord, word)) % 12) * 15.0
        n = np.arange(tone, dtype=np.float32)
        envelope = np.sin(np.pi * n / max(1, tone)) ** 0.5
        wave = 0.3 * envelope * np.sin(2 * math.pi * freq * n / rate)
        alignment.append((match.start(), t))
        parts.append(wave)
        parts.append(np.zeros(gap, dtype=np.float32))
        t += (tone + gap) / rate
    if not parts:
        return np.zeros(0, dtype=np.int16), []
    audio = np.concatenate(parts)
    return (audio * 32767).astype(np.int16), alignment


# ------------------------------------------------------------------------------------- factories


def make_stt(settings: object) -> FakeSTT:
    # A checkpoint at a pause reveals only the words the pace allows so far: at the samples'
    # speaking pace, every word is in by the time the question ends, as with a real recognizer.
    return FakeSTT(words_per_second=4.0)


def make_llm(settings: object) -> FakeLLM:
    return FakeLLM()


def make_tts(settings: object) -> FakeTTS:
    return FakeTTS()
