"""The shared faults over every cloud adapter, each against its fake server.

Each case asserts what the user gets: an ``EngineError`` with one clear line and the right
``retryable`` (so a fallback chain can act), the reconnect and backoff behaviour (the waits the
policy asked for are recorded, never slept through or timed), and no key anywhere (the fixtures
check every log record). Adapters: AssemblyAI, Deepgram and OpenAI transcription (streaming
STT), ElevenLabs and Async (multi-context TTS), OpenAI speech (HTTP PCM), OpenAI chat, Claude
and AssemblyAI's LLM Gateway (language models), and OpenAI Realtime and AssemblyAI's Voice
Agent (speech to speech).
"""

from __future__ import annotations

import asyncio
import traceback
from contextlib import AsyncExitStack
from typing import Any

import pytest

from assistant.engines.base import EngineError
from assistant.engines.fake import FakeTTS
from assistant.engines.fallback import FallbackTTS
from assistant.engines.net.errors import RateLimited
from assistant.engines.s2s import AgentSetup
from tests.cloud import texts, until
from tests.conformance.adapters import PIECES, Run

pytestmark = pytest.mark.timeout(60)


def expected(adapter: Any, fake: Any) -> str:
    """What an undisturbed use gives: the first turn's text, the pieces, or the reply."""
    if adapter.kind in ("llm", "s2s"):
        return str(adapter.expected(fake))
    return {"stt": getattr(adapter, "first", ""), "tts": " ".join(PIECES)}[adapter.kind]


def complete(run: Run, adapter: Any, fake: Any) -> None:
    """``run`` gave the user everything an undisturbed use gives (every sample of speech)."""
    assert run.error is None and run.output == expected(adapter, fake)
    if adapter.kind == "tts":
        assert sum(len(c.pcm) for c in run.chunks) == adapter.samples(fake)


def clear(error: EngineError | None, canary: str, *phrases: str) -> EngineError:
    """``error`` is one line, names its engine, holds ``phrases`` and no key."""
    assert error is not None, "expected an error"
    message = str(error)
    assert "\n" not in message and error.engine
    assert canary not in "".join(traceback.format_exception(error))
    for phrase in phrases:
        assert phrase in message, message
    return error


async def use(adapter: Any, engine: Any, stack: AsyncExitStack) -> Run:
    stack.push_async_callback(engine.aclose)
    return await adapter.use(engine)


async def test_rejected_key(
    adapter: Any, fake: Any, canary: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(adapter.env, f"{canary}-wrong")
    async with AsyncExitStack() as stack:
        run = await use(adapter, adapter.engine(fake), stack)
    error = clear(run.error, canary, adapter.REJECTED, adapter.env, "Settings")
    assert not error.retryable and not run.produced
    assert adapter.connections(fake) == 1  # no pointless retries
    assert adapter.sleeps == []


async def test_rate_limit_with_retry_after(adapter: Any, fake: Any, canary: str) -> None:
    adapter.rate_limit(fake, 0.3)
    async with AsyncExitStack() as stack:
        run = await use(adapter, adapter.engine(fake), stack)
    if adapter.kind == "llm":  # a completion is not retried here: the fallback chain decides
        error = clear(run.error, canary, "rate limiting requests (HTTP 429; retry after 0.3 s)")
        assert isinstance(error, RateLimited) and error.retryable and error.retry_after == 0.3
        assert adapter.connections(fake) == 1 and adapter.sleeps == []
        return
    complete(run, adapter, fake)
    assert adapter.connections(fake) == adapter.per_use + 1
    assert len(adapter.sleeps) == 1 and 0.3 <= adapter.sleeps[0] <= 0.38  # as the server asked


async def test_rate_limit_beyond_patience_fails_at_once(
    adapter: Any, fake: Any, canary: str
) -> None:
    adapter.rate_limit(fake, 30)
    async with AsyncExitStack() as stack:
        run = await use(adapter, adapter.engine(fake), stack)
    error = clear(run.error, canary, "HTTP 429", "30 s")
    assert error.retryable and error.retry_after == 30 and not run.produced
    assert adapter.connections(fake) == 1 and adapter.sleeps == []


async def test_dropped_mid_turn(adapter: Any, fake: Any, canary: str) -> None:
    adapter.drop_mid_turn(fake)
    async with AsyncExitStack() as stack:
        engine = adapter.engine(fake)
        run = await use(adapter, engine, stack)
        if adapter.name in ("assemblyai", "deepgram"):
            # The session reconnects and sends the turn's audio again: nothing is lost.
            assert run.error is None and run.output == adapter.first
            assert adapter.connections(fake) == 2 and len(adapter.sleeps) == 1
            return
        phrase = {
            "openai transcription": "1011: internal server error). Please say that again",
            "elevenlabs": "connection dropped (code 1011",
            "async": "connection dropped (code 1011",
            "openai speech": "broke off mid-sentence",
            "openai chat": "broke off",
            "anthropic": "broke off",
            "assemblyai gateway": "broke off",
            "openai realtime": "connection dropped (code 1011",
            "assemblyai agent": "connection dropped (code 1006",
        }[adapter.name]
        clear(run.error, canary, phrase)
        assert run.error is not None and run.error.retryable
        assert run.produced == (adapter.kind != "stt")  # audio or text had been handed on
        again = await adapter.use(engine)  # and the next turn works
    if adapter.kind == "stt":
        assert again.error is None and again.output == adapter.second
    else:
        complete(again, adapter, fake)
    if adapter.name in ("elevenlabs", "async"):
        assert adapter.connections(fake) == 2  # the next reply reconnected


async def test_dropped_before_first_output(adapter: Any, fake: Any, canary: str) -> None:
    adapter.drop_before_output(fake)
    async with AsyncExitStack() as stack:
        run = await use(adapter, adapter.engine(fake), stack)
    if adapter.name == "openai transcription":  # the commit is lost with the socket
        error = clear(run.error, canary, "dropped", "Please say that again")
        assert error.retryable and not run.produced
        return
    # Nothing was heard yet: the request or the text goes out again on a new connection.
    complete(run, adapter, fake)
    assert adapter.connections(fake) == adapter.per_use + 1


async def test_stall(
    adapter: Any, fake: Any, canary: str, caplog: pytest.LogCaptureFixture
) -> None:
    adapter.stall(fake)
    async with AsyncExitStack() as stack:
        engine = adapter.engine(fake)
        run = await use(adapter, engine, stack)
        if adapter.name == "deepgram":  # an unanswered Finalize: the last partial stands
            assert run.error is None and run.output and adapter.first.startswith(run.output)
            assert "gave no final transcript" in caplog.text
            return
        phrase = {
            "assemblyai": "did not start the session within 0.5 s",
            "openai transcription": "no transcript within 0.5 s",
            "elevenlabs": "sent no audio within 0.5 s",
            "async": "sent no audio within 0.5 s",
            "openai speech": "no audio from",
            "openai chat": "no answer from",
            "anthropic": "no answer from",
            "assemblyai gateway": "no answer from",
            "openai realtime": "no reply within 0.5 s",
            "assemblyai agent": "no reply within 0.5 s",
        }[adapter.name]
        error = clear(run.error, canary, phrase)
        assert error.retryable and not run.produced
        if adapter.kind == "tts":  # nothing was spoken: a fallback voice speaks every piece
            chain = FallbackTTS([engine, FakeTTS(first_audio_delay=0.0)])
            stack.push_async_callback(chain.aclose)
            chunks = [c async for c in chain.stream(texts(PIECES), voice=None, language="en")]
            assert [c.text for c in chunks if c.last] == list(PIECES)


async def test_accept_then_close(adapter: Any, fake: Any, canary: str) -> None:
    adapter.accept_then_close(fake)
    async with AsyncExitStack() as stack:
        engine = adapter.engine(fake)
        stack.push_async_callback(engine.aclose)
        if adapter.kind in ("stt", "s2s"):
            # The session starts, then reconnects with backoff and gives up: not without end.
            if adapter.kind == "stt":
                session = await engine.open("en")
                first = anext(session.transcripts())
            else:
                session = await engine.open(AgentSetup("Be brief."))
                first = anext(session.events())
            stack.push_async_callback(session.aclose)
            with pytest.raises(EngineError) as caught:
                await asyncio.wait_for(first, 10.0)
            error = clear(caught.value, canary, "right after accepting it, 3 times in a row")
            assert not error.retryable
            assert adapter.connections(fake) == 3
            assert len(adapter.sleeps) == 2 and adapter.sleeps[0] <= 0.04 <= adapter.sleeps[1]
            return
        run = await adapter.use(engine)
    if adapter.name in ("elevenlabs", "async"):
        clear(run.error, canary, "connection dropped")  # sent again once, then left to fallback
    else:  # a request hung up on before any answer is sent again once
        clear(run.error, canary, "could not reach")
    assert run.error is not None and run.error.retryable and not run.produced
    # Async's socket fails in its greeting, before any text was sent: nothing to send again.
    assert adapter.connections(fake) == (1 if adapter.name == "async" else 2)


async def test_barge_in_mid_stream(adapter: Any, fake: Any, canary: str) -> None:
    async with AsyncExitStack() as stack:
        engine = adapter.engine(fake)
        stack.push_async_callback(engine.aclose)
        if adapter.kind == "stt":
            # The interrupted utterance is dropped; only the next one is transcribed.
            run = await adapter.use(engine, cancel_first=True)
            assert run.error is None and run.output == adapter.second
            return
        await adapter.cancel(engine, fake)
        await until(lambda: adapter.cancelled(fake))
        assert adapter.cancelled(fake)  # the server heard of it at once
        run = await adapter.use(engine)  # and the next reply goes through
    complete(run, adapter, fake)
