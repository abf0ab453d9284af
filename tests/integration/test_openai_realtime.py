"""OpenAI Realtime transcription (STT) against a local websocket server speaking the real protocol,
and a whole headless conversation through both OpenAI adapters."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import numpy as np
import pytest

from assistant.config import Settings
from assistant.engines.base import EngineError, MissingKeyError, SpeechToText
from assistant.engines.net.retry import Backoff, Policy
from assistant.engines.net.stt_driver import StreamingSession
from assistant.engines.openai.realtime import OpenAIRealtimeSTT, make_stt
from tests import cloud
from tests.fakes.openai_server import FakeOpenAIServer

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


async def _failed_turn(session: StreamingSession) -> EngineError:
    """Half a second of a tone, and the turn's end, which must fail: the error."""
    await _say(session, _tone(0.5))
    with pytest.raises(EngineError) as caught:
        await asyncio.wait_for(session.end_turn(), cloud.PATIENCE)
    return caught.value


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
    await asyncio.wait_for(reader.task, cloud.PATIENCE)

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
    session, reader = await cloud.listening(stt)
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
    session, reader = await cloud.listening(stt)
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
    session, reader = await cloud.listening(stt)
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
    session, reader = await cloud.listening(stt)
    assert "could not transcribe" in str(await _failed_turn(session))
    await _say(session, _tone(0.5))
    await session.end_turn()
    await session.aclose()
    assert reader.final_texts() == ["", "second try"]
    assert server.ws_connections == 1


async def test_no_transcript_in_time_fails_the_turn(server: FakeOpenAIServer) -> None:
    server.realtime_faults.append("silent")
    stt = _fast(server, final_timeout=0.3)
    session, reader = await cloud.listening(stt)
    # The turn's own deadline ended the wait (the deadline is tested in virtual time in
    # tests/wire): the server never answered.
    assert "no transcript within 0.3 s" in str(await _failed_turn(session))
    await _say(session, _tone(0.5))
    await session.end_turn()  # the socket is fine: the next turn works
    await session.aclose()
    assert reader.final_texts() == ["hello there"]


async def test_close_1011_after_commit_fails_that_turn_then_reconnects(
    server: FakeOpenAIServer,
) -> None:
    server.realtime_faults.append("close_1011")
    server.transcripts.append("after the reconnect")
    stt = _fast(server, final_timeout=600.0)
    session, reader = await cloud.listening(stt)
    # Failed at once by the drop: waiting out the final timeout would never end here.
    error = await _failed_turn(session)
    assert "1011" in str(error) and error.retryable
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
    session, reader = await cloud.listening(stt)
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
    session, reader = await cloud.listening(stt)
    server.drop_realtime(1006)
    await cloud.eventually(lambda: session.connections == 2)
    await _say(session, _tone(0.5))
    await session.end_turn()
    await session.aclose()
    assert reader.final_texts() == ["hello there"]


async def test_audio_spoken_while_reconnecting_is_kept(server: FakeOpenAIServer) -> None:
    waits = cloud.HeldSleeps()
    stt = _fast(server, policy={"sleep": waits})
    session, reader = await cloud.listening(stt)
    server.drop_realtime(1011)
    await cloud.eventually(lambda: len(waits) == 1)  # down, and waiting to reconnect
    assert session.connections == 1
    await _say(session, _tone(0.5))  # nothing can be sent yet
    waits.release()
    await session.end_turn()  # waits for the socket, then sends it all
    await session.aclose()
    assert reader.final_texts() == ["hello there"]
    assert len(server.commits[0].audio) == pytest.approx(0.5 * 48_000, abs=16)


async def test_a_server_that_stays_down_ends_the_session_with_an_error(
    server: FakeOpenAIServer,
) -> None:
    stt = _fast(server, policy={"reconnects": 2})
    session, reader = await cloud.listening(stt)
    await asyncio.to_thread(server.stop)
    await asyncio.wait_for(reader.task, cloud.PATIENCE)
    assert isinstance(reader.error, EngineError)
    assert "could not reach" in str(reader.error)
    with pytest.raises(EngineError):
        await session.push(_tone(0.1))
    await session.aclose()


async def test_policy_close_is_not_retried(server: FakeOpenAIServer) -> None:
    sleeps = cloud.Sleeps()
    stt = _fast(server, policy={"sleep": sleeps})
    session, reader = await cloud.listening(stt)
    server.drop_realtime(1008)
    await asyncio.wait_for(reader.task, cloud.PATIENCE)
    assert isinstance(reader.error, EngineError) and not reader.error.retryable
    assert "1008" in str(reader.error)
    assert sleeps == [] and server.ws_connections == 1  # no reconnect was even scheduled
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
    sleeps = cloud.Sleeps()
    policy = Policy(backoff=Backoff(base=0.02, cap=0.05), sleep=sleeps)
    stt = OpenAIRealtimeSTT("ws://127.0.0.1:9/v1/realtime", policy=policy)
    with pytest.raises(EngineError) as caught:
        await asyncio.wait_for(stt.open("en"), cloud.PATIENCE)
    assert "could not reach" in str(caught.value) and caught.value.retryable
    # Its attempts, with short backoff waits between them, and then it gives up.
    assert len(sleeps) == policy.attempts - 1 and all(wait <= 0.05 for wait in sleeps)
