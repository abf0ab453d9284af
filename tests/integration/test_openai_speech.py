"""OpenAI speech (TTS) against a local server speaking the real protocol: chunked raw PCM."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, cast

import numpy as np
import pytest

from assistant.config import Settings
from assistant.engines.base import EngineError, MissingKeyError, SpeechChunk, TextToSpeech
from assistant.engines.net.retry import Backoff
from assistant.engines.openai.speech import DEFAULT_POLICY, VOICES, OpenAISpeechTTS, make_tts
from tests import cloud
from tests.fakes.openai_server import FakeOpenAIServer, HttpFault, speech_pcm

KEY = "sk-test-speech-0123456789"
server, openai_env = cloud.openai_served(KEY)


async def _pieces(*texts: str) -> AsyncIterator[str]:
    for text in texts:
        yield text


async def _collect(tts: TextToSpeech, *texts: str, voice: str | None = None) -> list[SpeechChunk]:
    return [c async for c in tts.stream(_pieces(*texts), voice=voice, language="en")]


def _audio(chunks: list[SpeechChunk], piece: int) -> bytes:
    parts = [c.pcm for c in chunks if c.piece == piece]
    return np.concatenate(parts).astype("<i2").tobytes() if parts else b""


def _fast(server: FakeOpenAIServer, **kwargs: Any) -> OpenAISpeechTTS:
    policy = dataclasses.replace(DEFAULT_POLICY, backoff=Backoff(base=0.02, cap=0.1))
    policy = dataclasses.replace(policy, **kwargs.pop("policy", {}))
    return OpenAISpeechTTS(server.http_url, policy=policy, **kwargs)


async def test_streams_pcm_split_at_odd_byte_boundaries(server: FakeOpenAIServer) -> None:
    tts = make_tts(Settings())
    assert isinstance(tts, TextToSpeech)
    await tts.warm_up()
    texts = ("Hello there.", "It is a quarter past nine, and the sun is out.")
    chunks = await _collect(tts, *texts)
    await tts.aclose()

    for i, text in enumerate(texts):
        # Reads of 4801, 1, 2047, 3 bytes: samples straddle reads and must be put back together.
        assert _audio(chunks, i) == speech_pcm(text)
        mine = [c for c in chunks if c.piece == i]
        assert len(mine) > 3 and all(c.text == text and c.sample_rate == 24_000 for c in mine)
        assert [c.last for c in mine] == [False] * (len(mine) - 1) + [True]
    bodies = [r.body for r in server.speech_requests]
    assert [b["input"] for b in bodies] == list(texts)
    assert all(b["model"] == "gpt-4o-mini-tts" and b["response_format"] == "pcm" for b in bodies)
    assert all(b["voice"] == "alloy" for b in bodies)
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in server.speech_requests)
    # Warm-up opened the only connection; both pieces reused it.
    assert server.model_requests == 1
    assert server.http_connections == 1
    assert tts.stats.connections_opened == 1 and tts.stats.last_reused


async def test_voice_choice_and_voice_list(server: FakeOpenAIServer) -> None:
    tts = _fast(server, voice="sage")
    await _collect(tts, "One.", voice="openai:coral")
    await _collect(tts, "Two.", voice="verse")
    await _collect(tts, "Three.", voice="piper:en_US-lessac-medium")  # another engine's voice
    await _collect(tts, "Four.", voice=None)
    await tts.aclose()
    assert [r.body["voice"] for r in server.speech_requests] == ["coral", "verse", "sage", "sage"]

    voices = tts.voices("de")
    assert [v.id for v in voices] == [f"openai:{v}" for v in VOICES]
    assert {v.language for v in voices} == {"de"} and {v.sample_rate for v in voices} == {24_000}
    assert {v.language for v in tts.voices()} == {"mul"}


async def test_blank_pieces_are_skipped_but_keep_their_index(server: FakeOpenAIServer) -> None:
    tts = _fast(server)
    chunks = await _collect(tts, "First.", "  ", "Third.")
    await tts.aclose()
    assert sorted({c.piece for c in chunks}) == [0, 2]
    assert len(server.speech_requests) == 2


async def test_unknown_voice_is_a_clear_error(server: FakeOpenAIServer) -> None:
    tts = _fast(server)
    with pytest.raises(EngineError) as caught:
        await _collect(tts, "Hello.", voice="bob")
    await tts.aclose()
    message = str(caught.value)
    assert "'bob'" in message and "coral" in message and not caught.value.retryable
    assert len(server.speech_requests) == 1  # not retried


async def test_rate_limit_is_retried_after_the_servers_delay(server: FakeOpenAIServer) -> None:
    for _ in range(2):
        server.speech_faults.append(HttpFault(429, {"retry-after": "0.2"}))
    sleeps = cloud.Sleeps()
    tts = _fast(server, policy={"sleep": sleeps})
    chunks = await _collect(tts, "Finally some audio.")
    await tts.aclose()
    assert _audio(chunks, 0) == speech_pcm("Finally some audio.")
    assert len(server.speech_requests) == 3
    # Both retry-after waits were honoured (each with a little jitter on top).
    assert len(sleeps) == 2 and all(0.2 <= wait <= 0.27 for wait in sleeps)


async def test_exhausted_quota_is_not_retried(server: FakeOpenAIServer) -> None:
    error = {"error": {"message": "You exceeded your current quota.", "code": "insufficient_quota"}}
    server.speech_faults.append(HttpFault(429, error=error))
    tts = _fast(server)
    with pytest.raises(EngineError) as caught:
        await _collect(tts, "Hello.")
    await tts.aclose()
    assert "quota" in str(caught.value) and not caught.value.retryable
    assert len(server.speech_requests) == 1


async def test_server_error_is_retried_once(server: FakeOpenAIServer) -> None:
    server.speech_faults.append(HttpFault(500))
    tts = _fast(server)
    chunks = await _collect(tts, "Second time lucky.")
    assert _audio(chunks, 0) == speech_pcm("Second time lucky.")
    assert len(server.speech_requests) == 2

    server.speech_faults.extend([HttpFault(503), HttpFault(500)])
    with pytest.raises(EngineError) as caught:
        await _collect(tts, "Not this time.")
    await tts.aclose()
    assert "500" in str(caught.value) and caught.value.retryable
    assert len(server.speech_requests) == 4


@pytest.mark.parametrize("stall", ["headers", "body"])
async def test_stalled_server_hits_the_first_byte_timeout(
    server: FakeOpenAIServer, stall: str
) -> None:
    server.speech_faults.append(HttpFault(stall=stall))  # type: ignore[arg-type]
    # Only the first-byte deadline is short: the server never answers, so nothing else ends
    # the wait (the safety net around it only catches a hang).
    tts = _fast(server, policy={"first_message_timeout": 0.4, "stall_timeout": 600.0})
    with pytest.raises(EngineError) as caught:
        await asyncio.wait_for(_collect(tts, "Hello."), cloud.PATIENCE)
    await tts.aclose()
    assert "no audio" in str(caught.value) and "within 0.4 s" in str(caught.value)
    assert caught.value.retryable
    assert len(server.speech_requests) == 1


async def test_socket_closed_mid_stream(server: FakeOpenAIServer) -> None:
    server.speech_faults.append(HttpFault(cut_after=10_001))
    text = "A long sentence that is cut short."
    tts = _fast(server)
    chunks: list[SpeechChunk] = []
    with pytest.raises(EngineError) as caught:
        async for chunk in tts.stream(_pieces(text), voice=None, language="en"):
            chunks.append(chunk)
    await tts.aclose()
    assert "broke off" in str(caught.value)
    got = _audio(chunks, 0)
    # What arrived before the cut was handed on, and it is exactly the start of the audio.
    assert 9_000 <= len(got) <= 10_001
    assert got == speech_pcm(text)[: len(got)]
    assert len(server.speech_requests) == 1  # audio had been produced: never retried


async def test_cancelling_mid_stream_hangs_up_at_once(server: FakeOpenAIServer) -> None:
    server.speech_faults.append(HttpFault(stall="rest"))  # the first audio, then nothing
    text = "This reply goes on and on. " * 6
    tts = _fast(server, policy={"stall_timeout": 600.0})
    first = asyncio.Event()
    received: list[SpeechChunk] = []

    async def consume() -> None:
        async for chunk in tts.stream(_pieces(text), voice=None, language="en"):
            received.append(chunk)
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), cloud.PATIENCE)
    task.cancel()
    # The server sends nothing more until it is hung up on: a cancel that waited for it (or for
    # the rest of the audio) would never finish.
    await asyncio.wait({task}, timeout=cloud.PATIENCE)
    assert task.cancelled()
    assert len(_audio(received, 0)) < len(speech_pcm(text)) // 2
    await cloud.eventually(lambda: server.speech_hangups == 1)

    # Closing the generator (what the session does on barge-in) hangs up the same way.
    server.speech_faults.append(HttpFault(stall="rest"))
    stream = tts.stream(_pieces(text), voice=None, language="en")
    await anext(stream)
    await asyncio.wait_for(cast(AsyncGenerator[SpeechChunk], stream).aclose(), cloud.PATIENCE)
    await cloud.eventually(lambda: server.speech_hangups == 2)

    # The pool is still healthy afterwards.
    chunks = await _collect(tts, "Still here.")
    await tts.aclose()
    assert _audio(chunks, 0) == speech_pcm("Still here.")


async def test_missing_key_fails_before_any_request(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    tts = make_tts(Settings())
    await tts.warm_up()  # quietly does nothing without a key
    with pytest.raises(MissingKeyError) as caught:
        await _collect(tts, "Hello.")
    assert "OpenAI" in str(caught.value) and "OPENAI_API_KEY" in str(caught.value)
    assert server.speech_requests == [] and server.model_requests == 0


async def test_unreachable_server_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = dataclasses.replace(DEFAULT_POLICY, backoff=Backoff(base=0.01, cap=0.02))
    tts = OpenAISpeechTTS("http://127.0.0.1:9/v1", policy=policy)
    await tts.warm_up()  # logs, does not raise
    with pytest.raises(EngineError) as caught:
        await _collect(tts, "Hello.")
    await tts.aclose()
    assert "could not reach" in str(caught.value) and caught.value.retryable
