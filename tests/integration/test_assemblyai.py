"""The AssemblyAI streaming adapter against a local server speaking Streaming v3."""

from __future__ import annotations

import asyncio
import itertools
import logging
import statistics
from pathlib import Path

import pytest

from assistant.config import Settings
from assistant.engines import assemblyai
from assistant.engines.assemblyai import (
    ENGLISH_MODEL,
    AssemblyAISTT,
    make_stt,
)
from assistant.engines.base import EngineError, MissingKeyError
from assistant.engines.fake import FakeLLM, FakeTTS
from assistant.engines.net.pacing import RealtimePacer
from assistant.engines.net.stt_driver import StreamingSession
from tests import cloud
from tests.fakes.assemblyai_server import FakeAssemblyAI

KEY = "aai-test-key-0123456789"
key_env, server = cloud.served("ASSEMBLYAI_API_KEY", KEY, lambda key: FakeAssemblyAI(key=key))


def engine(server: FakeAssemblyAI, **kwargs: object) -> AssemblyAISTT:
    options: dict[str, object] = {"policy": cloud.FAST, "format_timeout": 0.3, "final_timeout": 1.0}
    options.update(kwargs)
    return AssemblyAISTT(server.url, **options)  # type: ignore[arg-type]


async def one_turn(
    server: FakeAssemblyAI, **kwargs: object
) -> tuple[cloud.Collector, StreamingSession]:
    collector, session = await cloud.spoken_turn(engine(server, **kwargs), 0.6, pause=0.1)
    return collector, session


# ------------------------------------------------------------------------------------ protocol


async def test_request_carries_documented_parameters(server: FakeAssemblyAI) -> None:
    session = await engine(server).open("en")
    await session.aclose()
    assert server.query() == {
        "sample_rate": "16000",
        "encoding": "pcm_s16le",
        "speech_model": ENGLISH_MODEL,
        "format_turns": "true",
    }
    assert server.requests[0].headers["Authorization"] == KEY  # no "Bearer"
    assert {"type": "Terminate"} in server.controls


async def test_formatted_end_answers_the_turn_once(server: FakeAssemblyAI) -> None:
    collector, session = await one_turn(server)
    await asyncio.sleep(0.4)  # long enough for a second answer, were there one
    await session.aclose()
    finals = collector.finals
    assert [t.text for t in finals] == ["What time is it?"]
    assert finals[0].end_of_turn
    partials = [t for t in collector.items if not t.is_final]
    assert partials and all(not t.end_of_turn for t in partials)
    # Partials carry the whole turn so far, growing.
    assert all(b.text.startswith(a.text) for a, b in itertools.pairwise(partials))
    assert {"type": "ForceEndpoint"} in server.controls


async def test_formatted_end_sent_twice_still_answers_once(server: FakeAssemblyAI) -> None:
    server.formatted_twice = True
    collector, session = await one_turn(server)
    await asyncio.sleep(0.3)
    await session.aclose()
    assert len(server.ends_sent) == 3  # raw + formatted twice
    assert [t.text for t in collector.finals] == ["What time is it?"]


async def test_missing_formatted_end_falls_back_to_raw(server: FakeAssemblyAI) -> None:
    server.format_delay = None
    collector, session = await one_turn(server, format_timeout=0.2)
    await session.aclose()
    assert [t.text for t in collector.finals] == ["what time is it"]
    assert len(server.ends_sent) == 1  # only the raw end existed


async def test_a_late_formatted_end_is_waited_for(server: FakeAssemblyAI) -> None:
    """The raw end stands in only once ``format_timeout`` passed: a slow formatted end still
    answers the turn (the deadline itself is tested in virtual time in tests/wire)."""
    server.format_delay = 0.5  # slower than a healthy server, well inside format_timeout
    collector, session = await one_turn(server, format_timeout=15.0)
    await session.aclose()
    assert [t.text for t in collector.finals] == ["What time is it?"]
    assert len(server.ends_sent) == 2  # raw, then formatted


async def test_server_endpointing_ends_the_turn(server: FakeAssemblyAI) -> None:
    server.end_silence = 0.3
    session, collector = await cloud.listening(engine(server))
    await cloud.push(session, cloud.speech(0.5))
    await cloud.push(session, cloud.silence(0.5))  # no end_turn: the server decides
    finals = await collector.wait_finals()
    await session.aclose()
    assert [t.text for t in finals] == ["What time is it?"]
    assert finals[0].end_of_turn
    assert {"type": "ForceEndpoint"} not in server.controls


async def test_two_turns_in_one_session(server: FakeAssemblyAI) -> None:
    collector, session = await one_turn(server)
    await session.clear()
    await cloud.push(session, cloud.speech(0.4))
    await session.end_turn()
    finals = await collector.wait_finals(2)
    await session.aclose()
    assert [t.text for t in finals] == ["What time is it?", "Thank you."]


async def test_end_turn_without_audio_gives_an_empty_final(server: FakeAssemblyAI) -> None:
    session, collector = await cloud.listening(engine(server))
    await session.end_turn()
    finals = await collector.wait_finals()
    await session.aclose()
    assert finals[0].text == ""
    assert {"type": "ForceEndpoint"} not in server.controls


async def test_audio_is_batched_and_paced_to_real_time(
    server: FakeAssemblyAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Audio runs at most ``burst`` seconds ahead of the pacer's clock, and pushing it never
    waits for the network: here the clock moves only when the test moves it."""
    now = [0.0]
    monkeypatch.setattr(
        assemblyai, "RealtimePacer", lambda burst: RealtimePacer(burst, clock=lambda: now[0])
    )
    server.realtime_tolerance = 600.0  # the pacer's clock runs ahead of the server's here
    session, collector = await cloud.listening(engine(server, burst=0.5))
    # 1.5 s of audio and the turn's end, pushed at once while the clock stands still.
    await asyncio.wait_for(cloud.push(session, cloud.speech(1.5)), cloud.PATIENCE)
    await cloud.push(session, cloud.silence(0.03))  # a short remainder: padded to 50 ms at the end
    await session.end_turn()
    for t in (0.0, 0.5, 1.0):
        now[0] = t
        # Within one 0.1 s message of the burst allowance, and never beyond it.
        await cloud.eventually(lambda t=t: server.audio_seconds >= t + 0.4 - 1e-6)
        assert server.audio_seconds <= t + 0.5 + 1e-6
    assert not collector.finals
    now[0] = 1.5
    finals = await collector.wait_finals()
    await session.aclose()
    assert not server.errors, server.errors
    assert [t.text for t in finals] == ["What time is it?"]
    assert all(0.05 <= d <= 1.0 for d in server.message_durations)
    assert statistics.median(server.message_durations) >= 0.09
    assert server.audio_seconds == pytest.approx(1.5 + 0.05, abs=0.001)


async def test_next_turn_keeps_the_audio_still_queued_for_the_last(server: FakeAssemblyAI) -> None:
    session, collector = await cloud.listening(engine(server, burst=0.3))
    await cloud.push(session, cloud.speech(0.9))  # mostly still waiting for the pacer...
    await session.end_turn()
    await session.clear()  # ...when the next utterance starts
    await cloud.push(session, cloud.speech(0.4))
    await session.end_turn()
    finals = await collector.wait_finals(2)
    await session.aclose()
    assert [t.text for t in finals] == ["What time is it?", "Thank you."]
    assert server.audio_seconds == pytest.approx(1.3, abs=0.07)


async def test_clear_discards_a_noise_turn(server: FakeAssemblyAI) -> None:
    session, collector = await cloud.listening(engine(server))
    await cloud.push(session, cloud.speech(0.4))  # a false interruption, say
    await collector.wait_items()
    await session.clear()
    await asyncio.sleep(0.2)
    await cloud.push(session, cloud.speech(0.4))
    await session.end_turn()
    finals = await collector.wait_finals()
    await asyncio.sleep(0.2)
    await session.aclose()
    # The abandoned turn was forced to an end and its text swallowed; the next turn answers.
    assert [t.text for t in collector.finals] == ["Thank you."]
    assert finals[0].text == "Thank you."


# -------------------------------------------------------------------------------- resilience


async def test_rejected_key_by_close_1008(
    server: FakeAssemblyAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.auth_by_close = True
    monkeypatch.setenv("ASSEMBLYAI_API_KEY", "wrong-key-abcdef")
    with pytest.raises(EngineError) as caught:
        await engine(server).open("en")
    assert not caught.value.retryable
    assert "rejected the API key" in str(caught.value)


async def test_missing_key_names_where_to_set_it(monkeypatch: pytest.MonkeyPatch) -> None:
    cloud.without_key("ASSEMBLYAI_API_KEY", monkeypatch)
    with pytest.raises(MissingKeyError, match="ASSEMBLYAI_API_KEY"):
        await AssemblyAISTT("ws://127.0.0.1:9/v3/ws", policy=cloud.FAST).open("en")


async def test_server_errors_are_retried_with_backoff(server: FakeAssemblyAI) -> None:
    server.handshake_faults = [(500, {}), (503, {})]
    session = await engine(server).open("en")
    await session.aclose()
    assert len(server.requests) == 3


async def test_persistent_server_error_fails(server: FakeAssemblyAI) -> None:
    server.handshake_faults = [(500, {})] * 5
    with pytest.raises(EngineError, match="HTTP 500"):
        await engine(server).open("en")
    assert len(server.requests) == cloud.FAST.attempts


async def test_unreachable_server_is_unavailable(key_env: str) -> None:
    with pytest.raises(EngineError, match="unreachable"):
        await AssemblyAISTT("ws://127.0.0.1:9/v3/ws", policy=cloud.FAST).open("en")


@pytest.mark.parametrize("code", [1011, None], ids=["close-1011", "abort-1006"])
async def test_dropped_connection_reconnects_and_resends_the_turn(
    server: FakeAssemblyAI, code: int | None
) -> None:
    await cloud.turn_survives_a_drop(server, engine(server), code, after=0.3, seconds=0.6)


async def test_reconnect_gives_up_after_repeated_failures(server: FakeAssemblyAI) -> None:
    server.drop_after_audio = 0.2
    session, collector = await cloud.listening(engine(server))
    server.handshake_faults = [(500, {})] * 50
    await cloud.push(session, cloud.speech(0.4))
    await asyncio.wait_for(collector.task, 5.0)
    assert isinstance(collector.error, EngineError)
    with pytest.raises(EngineError):
        await session.push(cloud.speech(0.1))
    await session.aclose()


async def test_malformed_messages_are_skipped(
    server: FakeAssemblyAI, caplog: pytest.LogCaptureFixture
) -> None:
    server.garbage = True
    with caplog.at_level(logging.WARNING, logger="assistant.engines.net.messages"):
        collector, session = await one_turn(server)
    await session.aclose()
    assert [t.text for t in collector.finals] == ["What time is it?"]
    assert "not JSON" in caplog.text


# ----------------------------------------------------------------------------- end to end


async def test_talk_end_to_end(
    server: FakeAssemblyAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARLEY_ASSEMBLYAI_URL", server.url)
    settings = Settings()
    stt = make_stt(settings)
    assert stt.endpoint == server.url
    llm = FakeLLM(reply=lambda request: "It is noon.", ttft=0.02)
    tts = FakeTTS(first_audio_delay=0.01, chars_per_second=60)
    result = await cloud.talk(
        tmp_path, (stt, llm, tts), settings=settings, pace="realtime", output=False
    )
    assert not result.errors, result.errors
    assert [t.user_text for t in result.turns] == ["What time is it?"]
    assert result.turns[0].assistant_text == "It is noon."
    assert not server.errors


async def test_canary_key_never_leaks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    canary = cloud.canary_key("ASSEMBLYAI_API_KEY", monkeypatch, caplog)
    texts: list[str] = []
    async with FakeAssemblyAI(key=canary) as good:
        monkeypatch.setenv("PARLEY_ASSEMBLYAI_URL", good.url)
        good.drop_after_audio = 0.3  # a reconnect too
        result = await cloud.talk(
            tmp_path, (make_stt(Settings()), FakeLLM(ttft=0.01), FakeTTS(first_audio_delay=0.0))
        )
        texts += result.errors + result.notices
        assert result.turns
    for auth_by_close in (False, True):
        async with FakeAssemblyAI(key="another-key", auth_by_close=auth_by_close) as bad:
            with pytest.raises(EngineError) as caught:
                await AssemblyAISTT(bad.url, policy=cloud.FAST).open("en")
            texts.append(cloud.failure_text(caught.value))
    # The wire log did record the handshake, with the key scrubbed from it.
    assert "Authorization: [redacted]" in caplog.text
    cloud.assert_unleaked(canary, caplog.text, texts, tmp_path)
