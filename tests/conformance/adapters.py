"""Every cloud adapter behind one small interface, against its local fake server, so that the
shared faults can run over all of them.

An adapter builds its engine on the fake (with the conformance ``Policy``, whose waits are
recorded), uses it once the way the conversation does (``use``: one turn, one reply or one
completion), interrupts it mid-stream (``cancel``), and arranges each fault on its fake:
``rate_limit``, ``drop_mid_turn``, ``drop_before_output``, ``stall``, ``accept_then_close``.
``Run`` is what the user got.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from assistant.config import Settings
from assistant.engines import s2s
from assistant.engines.assemblyai import AssemblyAISTT
from assistant.engines.assemblyai_agent import AssemblyAIVoiceAgent
from assistant.engines.assemblyai_gateway import GatewayLLM
from assistant.engines.asyncai import AsyncTTS
from assistant.engines.base import ChatRequest, EngineError, Message, SpeechChunk, TextDelta
from assistant.engines.claude import ClaudeLLM
from assistant.engines.deepgram import DeepgramSTT
from assistant.engines.elevenlabs import ElevenLabsTTS
from assistant.engines.net.retry import Backoff, Policy
from assistant.engines.openai.agent import OpenAIRealtimeAgent
from assistant.engines.openai.factories import KeyedChatLLM, make_llm
from assistant.engines.openai.realtime import OpenAIRealtimeSTT
from assistant.engines.openai.speech import OpenAISpeechTTS
from tests.cloud import (
    Collector,
    Sleeps,
    expected_samples,
    fast,
    push,
    silence,
    speech,
    texts,
    until,
)
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.assemblyai_server import FakeAssemblyAI
from tests.fakes.async_server import FakeAsync
from tests.fakes.deepgram_server import FakeDeepgram
from tests.fakes.elevenlabs_server import FakeElevenLabs
from tests.fakes.gateway_server import FakeGateway
from tests.fakes.http_server import FakeHttpServer
from tests.fakes.openai_server import FakeOpenAIServer, HttpFault, speech_pcm
from tests.fakes.realtime_agent_server import FakeRealtimeAgent
from tests.fakes.voice_agent_server import FakeVoiceAgent

PIECES = ("Hello there.", "How are you today?", "Fine, thanks.")
HELLO = ChatRequest([Message("user", "Hi")])


@dataclass
class Run:
    """What one use gave the user."""

    output: str = ""
    error: EngineError | None = None
    #: Output existed before the error (then no fallback engine may take over).
    produced: bool = False
    chunks: list[SpeechChunk] = field(default_factory=list)


class Adapter:
    kind: ClassVar[str]
    name: ClassVar[str]
    env: ClassVar[str]
    #: Connections (or requests) an undisturbed use makes.
    per_use: ClassVar[int] = 1
    #: How the error for a rejected key names the rejection.
    REJECTED: ClassVar[str] = "rejected the API key (HTTP 401)"
    #: (fake attribute, value) pairs that arrange a fault (else the adapter's method does).
    MID_TURN: ClassVar[tuple[tuple[str, Any], ...]] = ()
    BEFORE_OUTPUT: ClassVar[tuple[tuple[str, Any], ...]] = ()
    STALL: ClassVar[tuple[tuple[str, Any], ...]] = ()

    def __init__(self, sleeps: Sleeps) -> None:
        self.sleeps = sleeps
        self.policy: Policy = fast(
            backoff=Backoff(base=0.02, cap=0.08), stable_after=0.3, sleep=sleeps
        )

    def drop_mid_turn(self, fake: Any) -> None:
        _set(fake, self.MID_TURN)

    def drop_before_output(self, fake: Any) -> None:
        _set(fake, self.BEFORE_OUTPUT)

    def stall(self, fake: Any) -> None:
        _set(fake, self.STALL)


def _set(fake: Any, values: tuple[tuple[str, Any], ...]) -> None:
    for name, value in values:
        setattr(fake, name, value)


class WebsocketFake:
    """The faults every websocket fake arranges the same way."""

    FAKE: ClassVar[Callable[..., Any]]

    @contextlib.asynccontextmanager
    async def serve(self, key: str) -> AsyncIterator[Any]:
        async with self.FAKE(key=key) as fake:
            yield fake

    def connections(self, fake: Any) -> int:
        return len(fake.requests)

    def rate_limit(self, fake: Any, seconds: float) -> None:
        fake.handshake_faults = [(429, {"Retry-After": f"{seconds:g}"})]

    def accept_then_close(self, fake: Any) -> None:
        fake.accept_then_close = True


class OpenAIFake:
    """The OpenAI fake runs in a thread of its own; it is stopped off the event loop."""

    @contextlib.asynccontextmanager
    async def serve(self, key: str) -> AsyncIterator[FakeOpenAIServer]:
        fake = FakeOpenAIServer(api_key=key).start()
        try:
            yield fake
        finally:
            await asyncio.to_thread(fake.stop)


# ---------------------------------------------------------------------------------------- STT


class SttAdapter(Adapter):
    kind = "stt"
    #: What the fake transcribes for the first and the second turn.
    first: ClassVar[str] = "What time is it?"
    second: ClassVar[str] = "Thank you."
    #: The client ends turns (no partial comes before ``end_turn``).
    client_ends_turns: ClassVar[bool] = False

    async def use(self, engine: Any, *, cancel_first: bool = False) -> Run:
        """One push-to-talk turn (after a cancelled one when ``cancel_first``)."""
        try:
            session = await engine.open("en")
        except EngineError as exc:
            return Run(error=exc)
        collector = Collector(session)
        run = Run()
        try:
            if cancel_first:
                await push(session, speech(0.4))
                await until(lambda: bool(collector.items) or self.client_ends_turns, 3.0)
                await session.clear()
                await asyncio.sleep(0.2)
            await push(session, speech(0.6))
            await push(session, silence(0.1))
            await session.end_turn()
            await until(lambda: bool(collector.finals) or collector.error is not None)
        except EngineError as exc:
            run.error = exc
        finally:
            await session.aclose()
            await asyncio.wait_for(collector.task, 5.0)
        run.output = " | ".join(collector.final_texts())
        run.produced = bool(collector.items)
        run.error = run.error or collector.error
        return run


class AssemblyAI(WebsocketFake, SttAdapter):
    name = "assemblyai"
    env = "ASSEMBLYAI_API_KEY"
    FAKE = FakeAssemblyAI
    MID_TURN = (("drop_after_audio", 0.3),)
    BEFORE_OUTPUT = (("drop_after_audio", 0.05),)
    STALL = (("stall_begin", True),)

    def engine(self, fake: FakeAssemblyAI) -> AssemblyAISTT:
        return AssemblyAISTT(fake.url, policy=self.policy, format_timeout=0.3, final_timeout=1.0)


class Deepgram(WebsocketFake, SttAdapter):
    name = "deepgram"
    env = "DEEPGRAM_API_KEY"
    FAKE = staticmethod(lambda key: FakeDeepgram(key=key, endpointing=None, utterance_end=None))
    MID_TURN = (("drop_after_audio", 0.3),)
    BEFORE_OUTPUT = (("drop_after_audio", 0.05),)
    STALL = (("answer_finalize", False),)

    def engine(self, fake: FakeDeepgram) -> DeepgramSTT:
        return DeepgramSTT(fake.url, policy=self.policy, final_timeout=0.5)


class OpenAITranscription(OpenAIFake, SttAdapter):
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


class SpeechAdapter(Adapter):
    kind = "tts"

    def samples(self, fake: Any) -> int:
        """Every sample the fake synthesizes for the pieces."""
        return expected_samples(PIECES, fake)

    async def use(self, engine: Any) -> Run:
        run = Run()
        try:
            async for chunk in engine.stream(texts(PIECES), voice=None, language="en"):
                run.chunks.append(chunk)
        except EngineError as exc:
            run.error = exc
        run.produced = any(len(c.pcm) for c in run.chunks)
        run.output = " ".join(c.text for c in run.chunks if c.last)
        return run

    async def cancel(self, engine: Any, fake: Any) -> None:
        """Close the stream after its first audio, as a barge-in does."""
        stream = engine.stream(texts(PIECES), voice=None, language="en")
        assert len((await anext(stream)).pcm)
        await stream.aclose()


class ElevenLabs(WebsocketFake, SpeechAdapter):
    name = "elevenlabs"
    env = "ELEVENLABS_API_KEY"
    FAKE = FakeElevenLabs
    MID_TURN = (("drop_after_audio", 3),)
    BEFORE_OUTPUT = (("drop_after_audio", 0),)
    STALL = (("stall", True),)

    def engine(self, fake: FakeElevenLabs) -> ElevenLabsTTS:
        return ElevenLabsTTS(fake.url, policy=self.policy)

    def cancelled(self, fake: FakeElevenLabs) -> bool:
        return fake.closed_contexts == fake.contexts()[:1] and fake.connections == 1


class Async(WebsocketFake, SpeechAdapter):
    name = "async"
    env = "ASYNC_API_KEY"
    FAKE = FakeAsync
    MID_TURN = (("drop_after_audio", 3),)
    BEFORE_OUTPUT = (("drop_after_audio", 0),)
    STALL = (("stall", True),)

    def engine(self, fake: FakeAsync) -> AsyncTTS:
        return AsyncTTS(fake.url, policy=self.policy, voices_url=fake.voices_url)

    def cancelled(self, fake: FakeAsync) -> bool:
        closing = {"context_id": fake.contexts()[0], "close_context": True, "transcript": ""}
        return closing in fake.received and fake.connections == 1


class HttpFaults:
    """The faults of an HTTP request to the OpenAI fake, queued on ``faults(fake)``."""

    def faults(self, fake: FakeOpenAIServer) -> Any:
        raise NotImplementedError

    def rate_limit(self, fake: FakeOpenAIServer, seconds: float) -> None:
        self.faults(fake).append(HttpFault(429, {"retry-after": f"{seconds:g}"}))

    def drop_before_output(self, fake: FakeOpenAIServer) -> None:
        self.faults(fake).append(HttpFault(hangup=True))

    def stall(self, fake: FakeOpenAIServer) -> None:
        self.faults(fake).append(HttpFault(stall="headers"))

    def accept_then_close(self, fake: FakeOpenAIServer) -> None:
        self.faults(fake).extend([HttpFault(hangup=True)] * 3)


class OpenAISpeech(HttpFaults, OpenAIFake, SpeechAdapter):
    name = "openai speech"
    env = "OPENAI_API_KEY"
    per_use = len(PIECES)  # one request per piece

    def engine(self, fake: FakeOpenAIServer) -> OpenAISpeechTTS:
        return OpenAISpeechTTS(fake.http_url, policy=self.policy)

    def faults(self, fake: FakeOpenAIServer) -> Any:
        return fake.speech_faults

    def samples(self, fake: FakeOpenAIServer) -> int:
        return sum(len(speech_pcm(piece)) // 2 for piece in PIECES)

    def connections(self, fake: FakeOpenAIServer) -> int:
        return len(fake.speech_requests) + fake.unauthorized

    def drop_mid_turn(self, fake: FakeOpenAIServer) -> None:
        fake.speech_faults.append(HttpFault(cut_after=10_001))

    async def cancel(self, engine: Any, fake: FakeOpenAIServer) -> None:
        fake.speech_faults.append(HttpFault(stall="rest"))  # the first audio, then nothing
        await super().cancel(engine, fake)
        await until(lambda: fake.speech_hangups == 1)

    def cancelled(self, fake: FakeOpenAIServer) -> bool:
        return fake.speech_hangups == 1


# --------------------------------------------------------------------------------------- chat


class LlmAdapter(Adapter):
    """A language model: one completion, and one closed after its first words."""

    kind = "llm"

    def expected(self, fake: Any) -> str:
        return str(getattr(fake, "chat_reply", None) or fake.reply)

    async def use(self, engine: Any) -> Run:
        run = Run()
        try:
            async for event in engine.stream(HELLO):
                if isinstance(event, TextDelta):
                    run.output += event.text
        except EngineError as exc:
            run.error = exc
        run.produced = bool(run.output)
        return run

    async def _cancel(self, engine: Any) -> None:
        stream = engine.stream(HELLO)
        async for event in stream:
            if isinstance(event, TextDelta) and event.text.strip():
                break
        await stream.aclose()


class OpenAIChat(HttpFaults, OpenAIFake, LlmAdapter):
    name = "openai chat"
    env = "OPENAI_API_KEY"

    def engine(self, fake: FakeOpenAIServer) -> Any:
        llm = make_llm(Settings())
        llm.timeout_first_token = 0.5  # the stall deadline, short for the test
        return llm

    def faults(self, fake: FakeOpenAIServer) -> Any:
        return fake.chat_faults

    def connections(self, fake: FakeOpenAIServer) -> int:
        return len(fake.chat_requests) + fake.unauthorized

    def drop_mid_turn(self, fake: FakeOpenAIServer) -> None:
        fake.chat_faults.append(HttpFault(cut_after=3))

    async def cancel(self, engine: Any, fake: FakeOpenAIServer) -> None:
        fake.chat_word_delay = 0.02
        await self._cancel(engine)
        await until(lambda: fake.chat_hangups == 1)
        fake.chat_word_delay = 0.0

    def cancelled(self, fake: FakeOpenAIServer) -> bool:
        return fake.chat_hangups == 1


#: The first-answer deadline of the language models whose fake shares the test's loop: short for
#: the stall, with room for a busy machine in the other cases.
STALL_DEADLINE = 2.0


class HttpFake:
    """A fake HTTP provider served in the test's loop, its faults one per request."""

    FAKE: ClassVar[Callable[..., Any]]
    #: Events or chunks after which ``drop_mid_turn`` cuts the answer (words were sent).
    CUT_AFTER: ClassVar[int] = 5

    @contextlib.asynccontextmanager
    async def serve(self, key: str) -> AsyncIterator[Any]:
        async with self.FAKE(key=key) as fake:
            yield fake

    def faults(self, fake: FakeHttpServer) -> Any:
        return fake.faults

    def connections(self, fake: FakeHttpServer) -> int:
        return len(fake.requests)

    def drop_mid_turn(self, fake: FakeHttpServer) -> None:
        fake.faults.append(HttpFault(cut_after=self.CUT_AFTER))

    async def cancel(self, engine: Any, fake: Any) -> None:
        fake.word_delay = 0.02
        await self._cancel(engine)  # type: ignore[attr-defined]
        await until(lambda: fake.hangups == 1)
        fake.word_delay = 0.0

    def cancelled(self, fake: FakeHttpServer) -> bool:
        return fake.hangups == 1


class Claude(HttpFake, HttpFaults, LlmAdapter):
    name = "anthropic"
    env = "ANTHROPIC_API_KEY"
    FAKE = FakeAnthropic

    def engine(self, fake: FakeAnthropic) -> ClaudeLLM:
        return ClaudeLLM(fake.url, timeout_first_token=STALL_DEADLINE)


class Gateway(HttpFake, HttpFaults, LlmAdapter):
    name = "assemblyai gateway"
    env = "ASSEMBLYAI_API_KEY"
    FAKE = FakeGateway
    CUT_AFTER = 3

    def engine(self, fake: FakeGateway) -> KeyedChatLLM:
        def build(key: str | None) -> GatewayLLM:
            llm = GatewayLLM(fake.url, key)
            llm.timeout_first_token = STALL_DEADLINE
            return llm

        return KeyedChatLLM("assemblyai", fake.url, "", required=True, build=build)


# ------------------------------------------------------------------------------ speech to speech


SPOKEN = speech(0.6)


class AgentAdapter(WebsocketFake, Adapter):
    """A speech-to-speech engine: one spoken turn answered, and one answer cut after its first
    audio (the engine told how much was heard)."""

    kind = "s2s"
    #: Milliseconds of the first audio the user heard before cutting in.
    heard_ms = 0

    def expected(self, fake: Any) -> str:
        return str(fake.reply)

    async def use(self, engine: Any) -> Run:
        run = Run()
        try:
            session = await engine.open(s2s.AgentSetup("Be brief."))
        except EngineError as exc:
            return Run(error=exc)
        try:
            for i in range(0, 16_000 * 6 // 10, 512):
                session.push(SPOKEN[i : i + 512])
            session.commit()
            async with asyncio.timeout(10):
                async for event in session.events():
                    if isinstance(event, s2s.ReplyAudio):
                        run.produced = True
                    elif isinstance(event, s2s.ReplyTextDone):
                        run.output = event.text
                    elif isinstance(event, s2s.ReplyDone):
                        run.error = event.error
                        break
        except EngineError as exc:
            run.error = exc
        finally:
            await session.aclose()
        return run

    def drop_mid_turn(self, fake: Any) -> None:
        fake.reply_faults.append("drop_mid_reply")

    def drop_before_output(self, fake: Any) -> None:
        fake.reply_faults.append("drop_before_output")

    def stall(self, fake: Any) -> None:
        fake.reply_faults.append("silent")

    async def cancel(self, engine: Any, fake: Any) -> None:
        fake.word_delay = 0.05
        session = await engine.open(s2s.AgentSetup("Be brief."))
        try:
            for i in range(0, 16_000 * 6 // 10, 512):
                session.push(SPOKEN[i : i + 512])
            session.commit()
            async for event in session.events():
                if isinstance(event, s2s.ReplyAudio):
                    duration = len(event.pcm) / event.sample_rate
                    self.heard_ms = int(duration * 500)  # half of it
                    heard = [s2s.Heard(event.item, self.heard_ms / 1000, duration)]
                    session.interrupt(event.reply, heard, "Sure.")
                    break
            await until(lambda: self.cancelled(fake))
        finally:
            await session.aclose()
            fake.word_delay = 0.0


class OpenAIRealtime(AgentAdapter):
    name = "openai realtime"
    env = "OPENAI_API_KEY"
    FAKE = FakeRealtimeAgent

    def engine(self, fake: FakeRealtimeAgent) -> OpenAIRealtimeAgent:
        return OpenAIRealtimeAgent(fake.url, policy=self.policy, reply_timeout=0.5)

    def cancelled(self, fake: FakeRealtimeAgent) -> bool:
        # The reply was cancelled and its item cut where the user stopped hearing it.
        return fake.cancels == 1 and [ms for _, ms in fake.truncations] == [self.heard_ms]


class AssemblyAIAgent(AgentAdapter):
    name = "assemblyai agent"
    env = "ASSEMBLYAI_API_KEY"
    FAKE = FakeVoiceAgent
    # Said in a session.error or only by the close that follows it: either names the key.
    REJECTED = "rejected the API key ("

    def engine(self, fake: FakeVoiceAgent) -> AssemblyAIVoiceAgent:
        return AssemblyAIVoiceAgent(fake.url, policy=self.policy, reply_timeout=0.5)

    def cancelled(self, fake: FakeVoiceAgent) -> bool:
        # No message says how much was played: the prompt says what was heard.
        return any("the user heard only: «Sure.»" in p for p in fake.prompts())


ADAPTERS: tuple[type[Any], ...] = (
    AssemblyAI,
    Deepgram,
    OpenAITranscription,
    ElevenLabs,
    Async,
    OpenAISpeech,
    OpenAIChat,
    Claude,
    Gateway,
    OpenAIRealtime,
    AssemblyAIAgent,
)
