"""Every cloud adapter behind one small interface, against its local fake server, so that the
shared faults can run over all of them.

An ``Adapter`` builds its engine on the fake (with the conformance ``Policy``), uses it once the
way the conversation does (``use``: one turn, one reply or one completion), interrupts it
mid-stream (``cancel``), and arranges each fault on its fake. ``Run`` is what the user got.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from assistant.config import Settings
from assistant.engines.assemblyai import AssemblyAISTT
from assistant.engines.asyncai import AsyncTTS
from assistant.engines.base import EngineError, LLMEvent, SpeechChunk, TextDelta, Transcript
from assistant.engines.deepgram import DeepgramSTT
from assistant.engines.elevenlabs import ElevenLabsTTS
from assistant.engines.net.retry import Backoff, Policy
from assistant.engines.openai.factories import make_llm
from assistant.engines.openai.realtime import OpenAIRealtimeSTT
from assistant.engines.openai.speech import OpenAISpeechTTS
from tests.fakes.assemblyai_server import FakeAssemblyAI
from tests.fakes.async_server import FakeAsync
from tests.fakes.contexts import synthesize_parts
from tests.fakes.deepgram_server import FakeDeepgram
from tests.fakes.elevenlabs_server import FakeElevenLabs
from tests.fakes.openai_server import FakeOpenAIServer, HttpFault, speech_pcm

PIECES = ("Hello there.", "How are you today?", "Fine, thanks.")
RNG = np.random.default_rng(5)


class Sleeps(list[float]):
    """The waits the policy asked for, recorded instead of slept through."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)
        await asyncio.sleep(0)


def policy(sleeps: Sleeps) -> Policy:
    return Policy(
        open_timeout=2.0,
        first_message_timeout=0.5,
        stall_timeout=0.5,
        attempts=3,
        backoff=Backoff(base=0.02, cap=0.08),
        max_retry_after=1.0,
        reconnects=3,
        stable_after=0.3,
        quick_failures=3,
        close_timeout=0.5,
        sleep=sleeps,
    )


@dataclass
class Run:
    """What one use gave the user."""

    output: str = ""
    error: EngineError | None = None
    #: Output existed before the error (then no fallback engine may take over).
    produced: bool = False
    chunks: list[SpeechChunk] = field(default_factory=list)


async def until(predicate: Callable[[], bool], seconds: float = 5.0) -> None:
    """Wait for ``predicate`` (a condition, not a measured time)."""
    for _ in range(int(seconds / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)


# ---------------------------------------------------------------------------------------- STT


def speech(seconds: float) -> np.ndarray:
    return (RNG.standard_normal(int(seconds * 16_000)) * 3000).astype(np.int16)


class SttAdapter:
    kind: ClassVar[str] = "stt"
    #: Connections (or requests) an undisturbed use makes.
    per_use: ClassVar[int] = 1
    name: ClassVar[str]
    env: ClassVar[str]
    #: What the fake transcribes for the first and the second turn.
    first: ClassVar[str]
    second: ClassVar[str]
    #: A turn the server ends by itself is answered without ``end_turn`` … this one ends it.
    client_ends_turns: ClassVar[bool] = False

    def __init__(self, sleeps: Sleeps) -> None:
        self.sleeps = sleeps
        self.policy = policy(sleeps)

    async def _say(self, session: Any, seconds: float) -> None:
        pcm = speech(seconds)
        for i in range(0, len(pcm), 512):
            await session.push(pcm[i : i + 512])

    async def use(self, engine: Any, *, cancel_first: bool = False) -> Run:
        """One push-to-talk turn (after a cancelled one when ``cancel_first``)."""
        try:
            session = await engine.open("en")
        except EngineError as exc:
            return Run(error=exc)
        items: list[Transcript] = []
        failure: list[EngineError] = []

        async def read() -> None:
            try:
                async for item in session.transcripts():
                    items.append(item)
            except EngineError as exc:
                failure.append(exc)

        reader = asyncio.create_task(read())
        run = Run()
        try:
            if cancel_first:
                await self._say(session, 0.4)
                await until(lambda: bool(items) or self.client_ends_turns, 3.0)
                await session.clear()
                await asyncio.sleep(0.2)
            await self._say(session, 0.6)
            await session.push(np.zeros(1600, dtype=np.int16))
            await session.end_turn()
            await until(lambda: any(t.is_final for t in items) or bool(failure))
        except EngineError as exc:
            run.error = exc
        finally:
            await session.aclose()
            await asyncio.wait_for(reader, 5.0)
        finals = [t.text for t in items if t.is_final]
        run.output = " | ".join(finals)
        run.produced = bool(items)
        run.error = run.error or (failure[0] if failure else None)
        return run


class AssemblyAI(SttAdapter):
    name = "assemblyai"
    env = "ASSEMBLYAI_API_KEY"
    first, second = "What time is it?", "Thank you."

    @contextlib.asynccontextmanager
    async def serve(self, key: str) -> AsyncIterator[FakeAssemblyAI]:
        async with FakeAssemblyAI(key=key) as fake:
            yield fake

    def engine(self, fake: FakeAssemblyAI) -> AssemblyAISTT:
        return AssemblyAISTT(fake.url, policy=self.policy, format_timeout=0.3, final_timeout=1.0)

    def connections(self, fake: FakeAssemblyAI) -> int:
        return len(fake.requests)

    def rate_limit(self, fake: FakeAssemblyAI, seconds: float) -> None:
        fake.handshake_faults = [(429, {"Retry-After": f"{seconds:g}"})]

    def drop_mid_turn(self, fake: FakeAssemblyAI) -> None:
        fake.drop_after_audio = 0.3

    def drop_before_output(self, fake: FakeAssemblyAI) -> None:
        fake.drop_after_audio = 0.05

    def stall(self, fake: FakeAssemblyAI) -> None:
        fake.stall_begin = True

    def accept_then_close(self, fake: FakeAssemblyAI) -> None:
        fake.accept_then_close = True


class Deepgram(SttAdapter):
    name = "deepgram"
    env = "DEEPGRAM_API_KEY"
    first, second = "What time is it?", "Thank you."

    @contextlib.asynccontextmanager
    async def serve(self, key: str) -> AsyncIterator[FakeDeepgram]:
        async with FakeDeepgram(key=key, endpointing=None, utterance_end=None) as fake:
            yield fake

    def engine(self, fake: FakeDeepgram) -> DeepgramSTT:
        return DeepgramSTT(fake.url, policy=self.policy, final_timeout=0.5)

    def connections(self, fake: FakeDeepgram) -> int:
        return len(fake.requests)

    def rate_limit(self, fake: FakeDeepgram, seconds: float) -> None:
        fake.handshake_faults = [(429, {"Retry-After": f"{seconds:g}"})]

    def drop_mid_turn(self, fake: FakeDeepgram) -> None:
        fake.drop_after_audio = 0.3

    def drop_before_output(self, fake: FakeDeepgram) -> None:
        fake.drop_after_audio = 0.05

    def stall(self, fake: FakeDeepgram) -> None:
        fake.answer_finalize = False

    def accept_then_close(self, fake: FakeDeepgram) -> None:
        fake.accept_then_close = True


class OpenAIServed:
    """The OpenAI fake runs in a thread of its own; it is stopped off the event loop."""

    @contextlib.asynccontextmanager
    async def serve(self, key: str) -> AsyncIterator[FakeOpenAIServer]:
        fake = FakeOpenAIServer(api_key=key).start()
        try:
            yield fake
        finally:
            await asyncio.to_thread(fake.stop)


class OpenAITranscription(OpenAIServed, SttAdapter):
    name = "openai transcription"
    env = "OPENAI_API_KEY"
    first = second = "hello there"
    client_ends_turns = True

    def engine(self, fake: FakeOpenAIServer) -> OpenAIRealtimeSTT:
        return OpenAIRealtimeSTT(fake.realtime_url, policy=self.policy, final_timeout=0.5)

    def connections(self, fake: FakeOpenAIServer) -> int:
        return len(fake.ws_paths)

    def rate_limit(self, fake: FakeOpenAIServer, seconds: float) -> None:
        fake.realtime_handshake_faults.append((429, {"retry-after": f"{seconds:g}"}))

    def drop_mid_turn(self, fake: FakeOpenAIServer) -> None:
        fake.realtime_faults.append("close_1011")

    def drop_before_output(self, fake: FakeOpenAIServer) -> None:
        fake.realtime_faults.append("drop")

    def stall(self, fake: FakeOpenAIServer) -> None:
        fake.realtime_faults.append("silent")

    def accept_then_close(self, fake: FakeOpenAIServer) -> None:
        fake.realtime_accept_then_close = True


# ---------------------------------------------------------------------------------------- TTS


async def texts(pieces: tuple[str, ...]) -> AsyncIterator[str]:
    for piece in pieces:
        yield piece


class SpeechAdapter:
    kind: ClassVar[str] = "tts"
    per_use: ClassVar[int] = 1
    name: ClassVar[str]
    env: ClassVar[str]

    def __init__(self, sleeps: Sleeps) -> None:
        self.sleeps = sleeps
        self.policy = policy(sleeps)

    def samples(self, fake: Any, pieces: tuple[str, ...] = PIECES) -> int:
        """Every sample the fake synthesizes for ``pieces``."""
        return sum(
            len(part.pcm) // 2
            for piece in pieces
            for part in synthesize_parts(piece + " ", fake.chars_per_second, fake.chunk_ms)
        )

    async def use(self, engine: Any, pieces: tuple[str, ...] = PIECES) -> Run:
        run = Run()
        try:
            async for chunk in engine.stream(texts(pieces), voice=None, language="en"):
                run.chunks.append(chunk)
        except EngineError as exc:
            run.error = exc
        run.produced = any(len(c.pcm) for c in run.chunks)
        run.output = " ".join(c.text for c in run.chunks if c.last)
        return run

    async def cancel(self, engine: Any, fake: Any) -> None:
        """Close the stream after its first audio, as a barge-in does."""
        stream = engine.stream(texts(PIECES), voice=None, language="en")
        first = await anext(stream)
        assert len(first.pcm)
        await stream.aclose()


class ElevenLabs(SpeechAdapter):
    name = "elevenlabs"
    env = "ELEVENLABS_API_KEY"

    @contextlib.asynccontextmanager
    async def serve(self, key: str) -> AsyncIterator[FakeElevenLabs]:
        async with FakeElevenLabs(key=key) as fake:
            yield fake

    def engine(self, fake: FakeElevenLabs) -> ElevenLabsTTS:
        return ElevenLabsTTS(fake.url, policy=self.policy)

    def connections(self, fake: FakeElevenLabs) -> int:
        return len(fake.requests)

    def cancelled(self, fake: FakeElevenLabs) -> bool:
        return fake.closed_contexts == fake.contexts()[:1] and fake.connections == 1

    def rate_limit(self, fake: FakeElevenLabs, seconds: float) -> None:
        fake.handshake_faults = [(429, {"Retry-After": f"{seconds:g}"})]

    def drop_mid_turn(self, fake: FakeElevenLabs) -> None:
        fake.drop_after_audio = 3

    def drop_before_output(self, fake: FakeElevenLabs) -> None:
        fake.drop_after_audio = 0

    def stall(self, fake: FakeElevenLabs) -> None:
        fake.stall = True

    def accept_then_close(self, fake: FakeElevenLabs) -> None:
        fake.accept_then_close = True


class Async(SpeechAdapter):
    name = "async"
    env = "ASYNC_API_KEY"

    @contextlib.asynccontextmanager
    async def serve(self, key: str) -> AsyncIterator[FakeAsync]:
        async with FakeAsync(key=key) as fake:
            yield fake

    def engine(self, fake: FakeAsync) -> AsyncTTS:
        return AsyncTTS(fake.url, policy=self.policy, voices_url=fake.voices_url)

    def connections(self, fake: FakeAsync) -> int:
        return len(fake.requests)

    def cancelled(self, fake: FakeAsync) -> bool:
        (context,) = fake.contexts()
        closing = {"context_id": context, "close_context": True, "transcript": ""}
        return closing in fake.received and fake.connections == 1

    def rate_limit(self, fake: FakeAsync, seconds: float) -> None:
        fake.handshake_faults = [(429, {"Retry-After": f"{seconds:g}"})]

    def drop_mid_turn(self, fake: FakeAsync) -> None:
        fake.drop_after_audio = 3

    def drop_before_output(self, fake: FakeAsync) -> None:
        fake.drop_after_audio = 0

    def stall(self, fake: FakeAsync) -> None:
        fake.stall = True

    def accept_then_close(self, fake: FakeAsync) -> None:
        fake.accept_then_close = True


class OpenAISpeech(OpenAIServed, SpeechAdapter):
    name = "openai speech"
    env = "OPENAI_API_KEY"
    per_use = len(PIECES)  # one request per piece

    def engine(self, fake: FakeOpenAIServer) -> OpenAISpeechTTS:
        return OpenAISpeechTTS(fake.http_url, policy=self.policy)

    def samples(self, fake: FakeOpenAIServer, pieces: tuple[str, ...] = PIECES) -> int:
        return sum(len(speech_pcm(piece)) // 2 for piece in pieces)

    def connections(self, fake: FakeOpenAIServer) -> int:
        return len(fake.speech_requests) + fake.unauthorized

    def cancelled(self, fake: FakeOpenAIServer) -> bool:
        return fake.speech_hangups == 1

    async def cancel(self, engine: Any, fake: FakeOpenAIServer) -> None:
        fake.chunk_delay = 0.01
        await super().cancel(engine, fake)
        await until(lambda: fake.speech_hangups == 1)
        fake.chunk_delay = 0.0

    def rate_limit(self, fake: FakeOpenAIServer, seconds: float) -> None:
        fake.speech_faults.append(HttpFault(429, {"retry-after": f"{seconds:g}"}))

    def drop_mid_turn(self, fake: FakeOpenAIServer) -> None:
        fake.speech_faults.append(HttpFault(cut_after=10_001))

    def drop_before_output(self, fake: FakeOpenAIServer) -> None:
        fake.speech_faults.append(HttpFault(hangup=True))

    def stall(self, fake: FakeOpenAIServer) -> None:
        fake.speech_faults.append(HttpFault(stall="headers"))

    def accept_then_close(self, fake: FakeOpenAIServer) -> None:
        fake.speech_faults.extend([HttpFault(hangup=True)] * 3)


# --------------------------------------------------------------------------------------- chat


class OpenAIChat(OpenAIServed):
    kind: ClassVar[str] = "llm"
    per_use: ClassVar[int] = 1
    name = "openai chat"
    env = "OPENAI_API_KEY"

    def __init__(self, sleeps: Sleeps) -> None:
        self.sleeps = sleeps

    def engine(self, fake: FakeOpenAIServer) -> Any:
        llm = make_llm(Settings())
        llm._current().timeout_first_token = 0.5  # the stall deadline, short for the test
        return llm

    def connections(self, fake: FakeOpenAIServer) -> int:
        return len(fake.chat_requests) + fake.unauthorized

    async def use(self, engine: Any) -> Run:
        from assistant.engines.base import ChatRequest, Message

        events: list[LLMEvent] = []
        run = Run()
        try:
            async for event in engine.stream(ChatRequest([Message("user", "Hi")])):
                events.append(event)
        except EngineError as exc:
            run.error = exc
        run.output = "".join(e.text for e in events if isinstance(e, TextDelta))
        run.produced = bool(run.output)
        return run

    async def cancel(self, engine: Any, fake: FakeOpenAIServer) -> None:
        from assistant.engines.base import ChatRequest, Message

        fake.chat_word_delay = 0.02
        stream = engine.stream(ChatRequest([Message("user", "Hi")]))
        async for event in stream:
            if isinstance(event, TextDelta) and event.text.strip():
                break
        await stream.aclose()
        await until(lambda: fake.chat_hangups == 1)
        fake.chat_word_delay = 0.0

    def cancelled(self, fake: FakeOpenAIServer) -> bool:
        return fake.chat_hangups == 1

    def rate_limit(self, fake: FakeOpenAIServer, seconds: float) -> None:
        fake.chat_faults.append(HttpFault(429, {"retry-after": f"{seconds:g}"}))

    def drop_mid_turn(self, fake: FakeOpenAIServer) -> None:
        fake.chat_faults.append(HttpFault(cut_after=3))

    def drop_before_output(self, fake: FakeOpenAIServer) -> None:
        fake.chat_faults.append(HttpFault(hangup=True))

    def stall(self, fake: FakeOpenAIServer) -> None:
        fake.chat_faults.append(HttpFault(stall="headers"))

    def accept_then_close(self, fake: FakeOpenAIServer) -> None:
        fake.chat_faults.extend([HttpFault(hangup=True)] * 3)


ADAPTERS: tuple[type[Any], ...] = (
    AssemblyAI,
    Deepgram,
    OpenAITranscription,
    ElevenLabs,
    Async,
    OpenAISpeech,
    OpenAIChat,
)
