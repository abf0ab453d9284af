"""OpenAI Realtime transcription (STT) against a local websocket server speaking the real protocol,
and a whole headless conversation through both OpenAI adapters."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import statistics
import subprocess
import time
import traceback
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from assistant.config import Settings
from assistant.engines.base import EngineError, MissingKeyError, SpeechToText
from assistant.engines.fake import FakeLLM
from assistant.engines.net.retry import Backoff, Policy
from assistant.engines.net.stt_driver import StreamingSession
from assistant.engines.openai.realtime import OpenAIRealtimeSTT, make_stt
from assistant.engines.openai.speech import make_tts
from assistant.talk import TalkResult, run_talk, write_timeline
from tests import cloud
from tests.fakes.openai_server import FakeOpenAIServer, speech_pcm

KEY = "sk-test-realtime-0123456789"
server, openai_env = cloud.openai_served(KEY)
RATE = 16_000
FRAME = 512


def _fast(server: FakeOpenAIServer, **kwargs: Any) -> OpenAIRealtimeSTT:
    policy = Policy(open_timeout=3.0, backoff=Backoff(base=0.02, cap=0.1), reconnects=6)
    policy = dataclasses.replace(policy, **kwargs.pop("policy", {}))
    return OpenAIRealtimeSTT(server.realtime_url, policy=policy, **kwargs)


def _tone(seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE))
    return (0.3 * 32767 * np.sin(2 * np.pi * freq * t / RATE)).astype(np.int16)


async def _say(session: StreamingSession, audio: np.ndarray) -> None:
    for start in range(0, len(audio), FRAME):
        await session.push(audio[start : start + FRAME])


async def test_partials_then_final_over_a_prewarmed_socket(server: FakeOpenAIServer) -> None:
    server.transcripts.append("what time is it")
    stt = make_stt(Settings())
    assert isinstance(stt, SpeechToText) and not stt.provides_endpointing
    await stt.warm_up()
    assert server.ws_connections == 1
    session = await stt.open("en")
    assert server.ws_connections == 1  # the warm socket was handed over: no new handshake
    assert session.sample_rate == 16_000
    reader = cloud.Collector(session)
    audio = _tone(1.0)
    await _say(session, audio)
    await session.end_turn()
    # ``end_turn`` returns once the final has been emitted.
    await cloud.eventually(lambda: reader.final_texts() == ["what time is it"])
    assert reader.partials() == ["what", "what time", "what time is", "what time is it"]
    final = next(t for t in reader.items if t.is_final)
    assert final.start == 0.0 and final.end == pytest.approx(1.0, abs=0.04)
    await session.aclose()
    await asyncio.wait_for(reader.task, 2)

    assert server.ws_connections == 1
    assert server.ws_paths[0] == "/v1/realtime?intent=transcription"
    update = server.session_updates[0]["session"]
    assert update["type"] == "transcription"
    audio_in = update["audio"]["input"]
    assert audio_in["format"] == {"type": "audio/pcm", "rate": 24000}
    assert audio_in["transcription"] == {"model": "gpt-4o-transcribe", "language": "en"}
    assert audio_in["turn_detection"] is None
    # About 100 ms per append message (the resampler's output comes in 15-30 ms bursts).
    assert all(4_800 <= n <= 7_400 for n in server.append_sizes[:-1])
    # The server got the same second of audio at 24 kHz: same length, same pitch.
    received = np.frombuffer(server.commits[0].audio, dtype="<i2")
    assert len(received) == pytest.approx(24_000, abs=8)
    spectrum = np.abs(np.fft.rfft(received.astype(np.float32)))
    assert np.argmax(spectrum) * 24_000 / len(received) == pytest.approx(440.0, abs=2.0)


async def test_language_of_open_reconfigures_the_warm_socket(server: FakeOpenAIServer) -> None:
    stt = _fast(server, language="en")
    await stt.warm_up()
    session = await stt.open("de-DE")
    await cloud.eventually(lambda: len(server.session_updates) == 2)
    await session.aclose()
    inputs = [u["session"]["audio"]["input"] for u in server.session_updates]
    languages = [i["transcription"]["language"] for i in inputs]
    assert languages == ["en", "de"]
    assert server.ws_connections == 1


async def test_clear_drops_the_uncommitted_audio(server: FakeOpenAIServer) -> None:
    stt = _fast(server)
    session = await stt.open("en")
    reader = cloud.Collector(session)
    await _say(session, _tone(0.5, 300.0))
    await session.clear()
    await _say(session, _tone(0.4))
    await session.end_turn()
    await session.aclose()
    assert server.cleared == 1
    assert len(server.commits[0].audio) == pytest.approx(0.4 * 48_000, abs=16)
    assert reader.final_texts() == ["hello there"]


async def test_a_click_is_not_committed(server: FakeOpenAIServer) -> None:
    stt = _fast(server)
    session = await stt.open("en")
    reader = cloud.Collector(session)
    await _say(session, _tone(0.05))
    await session.end_turn()
    await cloud.eventually(lambda: reader.final_texts() == [""])
    await session.aclose()
    assert server.commits == []


async def test_malformed_messages_are_skipped(
    server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.realtime_faults.append("malformed")
    server.transcripts.append("still understood")
    stt = _fast(server)
    session = await stt.open("en")
    reader = cloud.Collector(session)
    await _say(session, _tone(0.5))
    with caplog.at_level(logging.WARNING):
        await session.end_turn()
    await session.aclose()
    assert reader.final_texts() == ["still understood"]
    assert reader.error is None
    skipped = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) >= 3  # cut-off JSON, a bare array, undecodable bytes, no type


async def test_a_failed_item_fails_the_turn_and_the_next_one_works(
    server: FakeOpenAIServer,
) -> None:
    server.realtime_faults.append("fail")
    server.transcripts.extend(["lost", "second try"])
    stt = _fast(server)
    session = await stt.open("en")
    reader = cloud.Collector(session)
    await _say(session, _tone(0.5))
    with pytest.raises(EngineError) as caught:
        await session.end_turn()
    assert "could not transcribe" in str(caught.value)
    await _say(session, _tone(0.5))
    await session.end_turn()
    await session.aclose()
    assert reader.final_texts() == ["", "second try"]
    assert server.ws_connections == 1


async def test_no_transcript_in_time_fails_the_turn(server: FakeOpenAIServer) -> None:
    server.realtime_faults.append("silent")
    stt = _fast(server, final_timeout=0.3)
    session = await stt.open("en")
    reader = cloud.Collector(session)
    await _say(session, _tone(0.5))
    started = time.monotonic()
    with pytest.raises(EngineError) as caught:
        await session.end_turn()
    assert 0.25 < time.monotonic() - started < 1.5
    assert "no transcript" in str(caught.value)
    await _say(session, _tone(0.5))
    await session.end_turn()  # the socket is fine: the next turn works
    await session.aclose()
    assert reader.final_texts() == ["hello there"]


async def test_close_1011_after_commit_fails_that_turn_then_reconnects(
    server: FakeOpenAIServer,
) -> None:
    server.realtime_faults.append("close_1011")
    server.transcripts.append("after the reconnect")
    stt = _fast(server)
    session = await stt.open("en")
    reader = cloud.Collector(session)
    await _say(session, _tone(0.5))
    started = time.monotonic()
    with pytest.raises(EngineError) as caught:
        await session.end_turn()
    assert time.monotonic() - started < 1.0  # failed at once, not after the final timeout
    assert "1011" in str(caught.value) and caught.value.retryable
    await cloud.eventually(lambda: server.ws_connections == 2 and session.connections == 2)
    await _say(session, _tone(0.5))
    await session.end_turn()
    await session.aclose()
    assert reader.final_texts() == ["after the reconnect"]
    assert reader.error is None
    assert len(server.session_updates) == 2  # the new socket was configured again


async def test_drop_while_the_user_speaks_fails_that_utterance(server: FakeOpenAIServer) -> None:
    server.transcripts.append("a fresh start")
    stt = _fast(server)
    session = await stt.open("en")
    reader = cloud.Collector(session)
    await _say(session, _tone(0.3))
    await cloud.eventually(lambda: len(server.append_sizes) >= 2)
    server.drop_realtime(1011)
    await cloud.eventually(lambda: session.connections == 2)
    with pytest.raises(EngineError) as caught:
        await _say(session, _tone(0.1))
    assert "dropped" in str(caught.value)
    # The next utterance starts with a clear (as the conversation does) and goes through.
    await session.clear()
    await _say(session, _tone(0.5))
    await session.end_turn()
    await session.aclose()
    assert reader.final_texts() == ["a fresh start"]
    assert len(server.commits[0].audio) == pytest.approx(0.5 * 48_000, abs=16)


async def test_abrupt_drop_while_idle_is_invisible(server: FakeOpenAIServer) -> None:
    stt = _fast(server)
    session = await stt.open("en")
    reader = cloud.Collector(session)
    server.drop_realtime(1006)
    await cloud.eventually(lambda: session.connections == 2)
    await _say(session, _tone(0.5))
    await session.end_turn()
    await session.aclose()
    assert reader.final_texts() == ["hello there"]


async def test_audio_spoken_while_reconnecting_is_kept(server: FakeOpenAIServer) -> None:
    stt = _fast(server, policy={"backoff": Backoff(base=0.3, cap=0.3, jitter=0.0)})
    session = await stt.open("en")
    reader = cloud.Collector(session)
    server.drop_realtime(1011)
    await asyncio.sleep(0.05)  # down, and the reconnect waits 300 ms
    assert session.connections == 1
    await _say(session, _tone(0.5))  # nothing can be sent yet
    await session.end_turn()  # waits for the socket, then sends it all
    await session.aclose()
    assert reader.final_texts() == ["hello there"]
    assert len(server.commits[0].audio) == pytest.approx(0.5 * 48_000, abs=16)


async def test_a_server_that_stays_down_ends_the_session_with_an_error(
    server: FakeOpenAIServer,
) -> None:
    stt = _fast(server, policy={"reconnects": 2})
    session = await stt.open("en")
    reader = cloud.Collector(session)
    await asyncio.to_thread(server.stop)
    await asyncio.wait_for(reader.task, 5)
    assert isinstance(reader.error, EngineError)
    assert "could not reach" in str(reader.error)
    with pytest.raises(EngineError):
        await session.push(_tone(0.1))
    await session.aclose()


async def test_policy_close_is_not_retried(server: FakeOpenAIServer) -> None:
    stt = _fast(server)
    session = await stt.open("en")
    reader = cloud.Collector(session)
    server.drop_realtime(1008)
    await asyncio.wait_for(reader.task, 5)
    assert isinstance(reader.error, EngineError) and not reader.error.retryable
    assert "1008" in str(reader.error)
    await asyncio.sleep(0.2)
    assert server.ws_connections == 1
    await session.aclose()


async def test_rejected_key_at_the_handshake(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "sk-wrong-realtime-abcdef123456"
    monkeypatch.setenv("OPENAI_API_KEY", wrong)
    stt = _fast(server)
    await stt.warm_up()  # logs the problem, does not raise
    with pytest.raises(EngineError) as caught:
        await stt.open("en")
    message = str(caught.value)
    assert "OpenAI" in message and "401" in message and "OPENAI_API_KEY" in message
    assert not caught.value.retryable and wrong not in message
    assert server.unauthorized == 2  # one try each for warm-up and open: no retry loop


async def test_missing_key(server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    stt = make_stt(Settings())
    await stt.warm_up()
    with pytest.raises(MissingKeyError) as caught:
        await stt.open("en")
    assert "OpenAI" in str(caught.value) and "OPENAI_API_KEY" in str(caught.value)
    assert server.ws_connections == 0 and server.ws_paths == []


async def test_unreachable_server_fails_open_quickly() -> None:
    policy = Policy(backoff=Backoff(base=0.02, cap=0.05))
    stt = OpenAIRealtimeSTT("ws://127.0.0.1:9/v1/realtime", policy=policy)
    started = time.monotonic()
    with pytest.raises(EngineError) as caught:
        await stt.open("en")
    assert time.monotonic() - started < 2.0
    assert "could not reach" in str(caught.value) and caught.value.retryable


async def test_added_latency_from_commit_to_final(server: FakeOpenAIServer) -> None:
    server.transcribe_delay = 0.08
    server.delta_interval = 0.0
    stt = make_stt(Settings())
    await stt.warm_up()
    session = await stt.open("en")
    reader = cloud.Collector(session)
    added: list[float] = []
    for i in range(5):
        sent = sum(server.append_sizes)
        await _say(session, _tone(0.5))
        # Audio is pushed here far faster than a microphone gives it: let the whole batches go
        # out first, so that the end of the turn is measured alone.
        await cloud.eventually(lambda sent=sent: sum(server.append_sizes) - sent >= 0.3 * 48_000)
        called = time.monotonic()
        await session.end_turn()
        final = [t for t in reader.items if t.is_final][-1]
        commit = server.commits[i]
        assert commit.completed_at is not None
        server_time = commit.completed_at - commit.received_at
        added.append(((final.at - called) - server_time) * 1000.0)
    await session.aclose()
    median = statistics.median(added)
    print(f"\nOpenAI STT added latency, end_turn → final minus the server's own time: median "
          f"{median:.1f} ms, runs {[round(a, 1) for a in added]}")  # fmt: skip
    assert server.ws_connections == 1
    assert median < 60.0


# ------------------------------------------------------------------------------- end to end


def _speak_wav(path: Path, text: str) -> Path:
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    return path


def _talk_settings() -> Settings:
    settings = Settings()
    settings.turn_mode = "ptt"
    return settings


async def _talk(tmp_path: Path, name: str) -> tuple[TalkResult, Path, Path]:
    wav = _speak_wav(tmp_path / f"{name}.wav", "What time is it?")
    out = tmp_path / f"{name}-reply.wav"
    settings = _talk_settings()
    stt, tts = make_stt(settings), make_tts(settings)
    try:
        result = await run_talk(
            wav,
            settings=settings,
            output_path=out,
            pace="fast",
            engines=(stt, FakeLLM(ttft=0.05, tokens_per_second=200), tts),
            history_dir=tmp_path / f"{name}-history",
            idle_timeout=30,
        )
    finally:
        await stt.aclose()
        await tts.aclose()
    return result, wav, out


async def test_end_to_end_conversation_through_both_adapters(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    server.transcripts.append("What time is it?")
    result, wav, out = await _talk(tmp_path, "e2e")
    assert result.errors == []
    (turn,) = result.turns
    assert turn.user_text == "What time is it?"
    assert turn.assistant_text.startswith("You asked: What time is it.")
    marks = turn.timeline["marks_ms"]
    assert {"stt_final", "tts_first_audio", "playback_start"} <= set(marks)

    # Every spoken piece was synthesized by the server, and all of it reached the output.
    spoken = [r.body["input"] for r in server.speech_requests]
    assert " ".join(spoken) == turn.assistant_text
    expected = sum(len(speech_pcm(t)) for t in spoken) / 2 / 24_000
    reply, rate = sf.read(out, dtype="int16")
    assert len(reply) / rate == pytest.approx(expected, abs=0.1)
    assert np.abs(reply).max() > 1000
    # The whole utterance went up the socket at 24 kHz.
    duration = sf.info(wav).duration
    assert len(server.commits) == 1
    assert len(server.commits[0].audio) / 48_000 == pytest.approx(duration, abs=0.35)
    assert server.ws_connections == 1 and server.http_connections == 1


async def test_the_key_never_leaks(
    server: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    canary = f"sk-canary-{uuid.uuid4().hex}"
    monkeypatch.setenv("OPENAI_API_KEY", canary)
    server.api_key = canary
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []

    def keep(exc: BaseException) -> None:
        texts.append("".join(traceback.format_exception(exc)))

    # A whole conversation, with its timeline written out.
    server.transcripts.append("What time is it?")
    result, _, _ = await _talk(tmp_path, "ok")
    assert len(result.turns) == 1
    write_timeline(tmp_path / "timeline.json", result)
    texts += [json.dumps(result.timeline_json()), *result.errors, *result.notices]

    # Now the server rejects the key, and echoes it back in its error body.
    server.api_key = "sk-the-right-one-000000"
    tts = make_tts(_talk_settings())
    await tts.warm_up()
    with pytest.raises(EngineError) as tts_error:
        async for _chunk in tts.stream(_aiter(["Hello."]), voice=None, language="en"):
            pass
    await tts.aclose()
    keep(tts_error.value)
    stt = make_stt(_talk_settings())
    await stt.warm_up()
    with pytest.raises(EngineError) as stt_error:
        await stt.open("en")
    keep(stt_error.value)
    rejected, _, _ = await _talk(tmp_path, "rejected")  # the conversation reports it
    assert any("rejected the API key" in error for error in rejected.errors)
    texts += [*rejected.errors, *rejected.notices]
    assert server.unauthorized >= 4

    # A drop mid-utterance and a failed item produce errors too.
    server.api_key = canary
    server.realtime_faults.extend(["close_1011", "fail"])
    session = await make_stt(_talk_settings()).open("en")
    for _ in range(2):
        await _say(session, _tone(0.3))
        with pytest.raises(EngineError) as failed:
            await session.end_turn()
        keep(failed.value)
        await cloud.eventually(lambda: session.usable and session.connections >= 1)
        await session.clear()
    await session.aclose()

    texts.append(caplog.text)
    texts += [r.getMessage() for r in caplog.records]
    # The websocket handshake (Authorization header included) is logged at DEBUG: redacted.
    assert "Authorization: Bearer [redacted]" in caplog.text
    for text in texts:
        assert canary not in text
    _assert_not_in_files(tmp_path, canary.encode())


def _assert_not_in_files(root: Path, secret: bytes) -> None:
    files = [p for p in root.rglob("*") if p.is_file()]
    assert any(p.suffix == ".json" for p in files) and any(p.suffix == ".wav" for p in files)
    for path in files:
        assert secret not in path.read_bytes(), path


async def _aiter(items: list[str]) -> AsyncIterator[str]:
    for item in items:
        yield item
