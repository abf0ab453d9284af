"""The Deepgram live-transcription adapter against a local server speaking its wire protocol."""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
import traceback
import uuid
from pathlib import Path

import pytest

from assistant.config import Settings
from assistant.engines.base import EngineError, MissingKeyError
from assistant.engines.deepgram import DeepgramSTT, make_stt
from assistant.engines.fake import FakeLLM, FakeTTS
from assistant.talk import run_talk
from tests.cloud import FAST, Collector, espeak_wav, files_containing, push, served, silence, speech
from tests.fakes.deepgram_server import FakeDeepgram

KEY = "dg-test-key-0123456789"
key_env, server = served("DEEPGRAM_API_KEY", KEY, lambda key: FakeDeepgram(key=key))


def engine(server: FakeDeepgram, **kwargs: object) -> DeepgramSTT:
    options: dict[str, object] = {"policy": FAST, "final_timeout": 1.0}
    options.update(kwargs)
    return DeepgramSTT(server.url, **options)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ protocol


async def test_request_carries_documented_parameters(server: FakeDeepgram) -> None:
    session = await engine(server).open("en")
    await session.aclose()
    assert server.query() == {
        "model": "nova-3",
        "language": "en-US",
        "encoding": "linear16",
        "sample_rate": "16000",
        "channels": "1",
        "interim_results": "true",
        "punctuate": "true",
        "smart_format": "true",
        "vad_events": "true",
        "endpointing": "300",
        "utterance_end_ms": "1000",
    }
    assert server.requests[0].headers["Authorization"] == f"Token {KEY}"
    assert server.count("CloseStream") == 1


async def test_finalize_ends_the_turn_with_all_segments(server: FakeDeepgram) -> None:
    server.endpointing = server.utterance_end = None
    session = await engine(server).open("en")
    collector = Collector(session)
    await push(session, speech(1.1))  # two is_final segments and an interim tail
    await session.end_turn()
    finals = await collector.wait_finals()
    await asyncio.sleep(0.2)
    await session.aclose()
    assert [t.text for t in collector.finals] == ["What time is it?"]
    assert finals[0].end_of_turn
    partials = [t.text for t in collector.items if not t.is_final]
    assert partials[0] == "What"
    assert "What time is it?" in partials  # segments accumulate into the partial
    assert server.count("Finalize") == 1


async def test_speech_final_ends_the_turn_once(server: FakeDeepgram) -> None:
    session = await engine(server).open("en")
    collector = Collector(session)
    await push(session, speech(0.9))
    await push(session, silence(1.2))  # speech_final at 0.3 s, UtteranceEnd at 1.0 s
    await asyncio.sleep(0.1)
    await session.aclose()
    assert [t.text for t in collector.finals] == ["What time is it?"]
    assert server.count("Finalize") == 0


async def test_utterance_end_ends_the_turn(server: FakeDeepgram) -> None:
    server.endpointing = None  # no speech_final: only UtteranceEnd
    session = await engine(server).open("en")
    collector = Collector(session)
    await push(session, speech(0.9))
    await push(session, silence(1.1))
    finals = await collector.wait_finals()
    await session.aclose()
    assert [t.text for t in finals] == ["What time is it?"]


async def test_two_turns(server: FakeDeepgram) -> None:
    server.endpointing = server.utterance_end = None
    session = await engine(server).open("en")
    collector = Collector(session)
    for _ in range(2):
        await session.clear()
        await push(session, speech(0.8))
        await session.end_turn()
        await collector.wait_finals(len(collector.finals) + 1)
    await session.aclose()
    assert [t.text for t in collector.finals] == ["What time is it?", "Thank you."]


async def test_keepalive_holds_an_idle_socket(server: FakeDeepgram) -> None:
    server.idle_timeout = 0.4
    session = await engine(server, keepalive_interval=0.15).open("en")
    await asyncio.sleep(1.0)
    await session.aclose()
    assert server.idle_closes == 0
    assert server.count("KeepAlive") >= 4
    assert server.connections == 1


async def test_idle_close_without_keepalive_reconnects(server: FakeDeepgram) -> None:
    server.idle_timeout = 0.3
    server.endpointing = server.utterance_end = None
    session = await engine(server, keepalive_interval=60.0).open("en")
    collector = Collector(session)
    await asyncio.sleep(0.6)  # the server closes the idle socket with 1011
    await push(session, speech(0.8))
    await session.end_turn()
    finals = await collector.wait_finals()
    await session.aclose()
    assert server.idle_closes >= 1 and server.connections >= 2
    assert [t.text for t in finals] == ["What time is it?"]


async def test_unanswered_finalize_falls_back_to_the_partial(server: FakeDeepgram) -> None:
    server.endpointing = server.utterance_end = None
    server.answer_finalize = False  # the server stalls
    session = await engine(server, final_timeout=0.3).open("en")
    collector = Collector(session)
    await push(session, speech(1.1))
    started = time.monotonic()
    await session.end_turn()
    finals = await collector.wait_finals()
    await session.aclose()
    assert time.monotonic() - started >= 0.3
    assert [t.text for t in finals] == ["What time is it?"]


# -------------------------------------------------------------------------------- resilience


async def test_missing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEEPGRAM_API_KEY", raising=False)
    monkeypatch.setattr("assistant.secrets._backend_usable", lambda: False)
    with pytest.raises(MissingKeyError, match="DEEPGRAM_API_KEY"):
        await DeepgramSTT("ws://127.0.0.1:9/v1/listen", policy=FAST).open("en")


async def test_rate_limit_then_success(server: FakeDeepgram) -> None:
    server.handshake_faults = [(429, {"Retry-After": "0.2"}), (500, {})]
    started = time.monotonic()
    session = await engine(server).open("en")
    await session.aclose()
    assert time.monotonic() - started >= 0.2
    assert len(server.requests) == 3


async def test_persistent_server_error(server: FakeDeepgram) -> None:
    server.handshake_faults = [(502, {})] * 5
    with pytest.raises(EngineError, match="HTTP 502"):
        await engine(server).open("en")


@pytest.mark.parametrize("code", [1011, None], ids=["close-1011", "abort-1006"])
async def test_dropped_connection_reconnects(server: FakeDeepgram, code: int | None) -> None:
    server.endpointing = server.utterance_end = None
    server.drop_after_audio = 0.4
    server.drop_code = code
    session = await engine(server).open("en")
    collector = Collector(session)
    await push(session, speech(0.9))
    await session.end_turn()
    finals = await collector.wait_finals()
    await session.aclose()
    assert server.connections == 2
    assert collector.error is None
    assert [t.text for t in finals] == ["What time is it?"]


async def test_malformed_messages_are_skipped(
    server: FakeDeepgram, caplog: pytest.LogCaptureFixture
) -> None:
    server.garbage = True
    server.endpointing = server.utterance_end = None
    with caplog.at_level(logging.WARNING, logger="assistant.engines.net.messages"):
        session = await engine(server).open("en")
        collector = Collector(session)
        await push(session, speech(0.9))
        await session.end_turn()
        finals = await collector.wait_finals()
        await session.aclose()
    assert [t.text for t in finals] == ["What time is it?"]
    assert "not JSON" in caplog.text


# ----------------------------------------------------------------------------- end to end


async def test_talk_end_to_end(
    server: FakeDeepgram, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.endpointing = server.utterance_end = None  # push-to-talk release ends the turn
    monkeypatch.setenv("PARLEY_DEEPGRAM_URL", server.url)
    settings = Settings()
    result = await run_talk(
        espeak_wav(tmp_path, "What time is it?"),
        settings=settings,
        pace="fast",
        engines=(
            make_stt(settings),
            FakeLLM(reply=lambda request: "It is noon.", ttft=0.02),
            FakeTTS(first_audio_delay=0.01),
        ),
        history_dir=tmp_path / "history",
        idle_timeout=20,
    )
    assert not result.errors, result.errors
    assert [t.user_text for t in result.turns] == ["What time is it?"]
    assert result.turns[0].assistant_text == "It is noon."
    assert server.count("Finalize") == 1


async def test_canary_key_never_leaks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    monkeypatch.setenv("DEEPGRAM_API_KEY", canary)
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    async with FakeDeepgram(key=canary, drop_after_audio=0.3) as good:
        monkeypatch.setenv("PARLEY_DEEPGRAM_URL", good.url)
        result = await run_talk(
            espeak_wav(tmp_path, "What time is it?"),
            settings=Settings(),
            pace="fast",
            engines=(make_stt(Settings()), FakeLLM(ttft=0.01), FakeTTS(first_audio_delay=0.0)),
            history_dir=tmp_path / "history",
            output_path=tmp_path / "out.wav",
            idle_timeout=20,
        )
        texts += result.errors + result.notices
        assert result.turns
    async with FakeDeepgram(key="another-key") as bad:
        with pytest.raises(EngineError) as caught:
            await DeepgramSTT(bad.url, policy=FAST).open("en")
        texts.append("".join(traceback.format_exception(caught.value)))
    assert "Authorization: Token [redacted]" in caplog.text
    assert canary not in caplog.text
    assert all(canary not in t for t in texts)
    assert files_containing(tmp_path, canary) == []


# ---------------------------------------------------------------------------------- latency


async def test_added_latency_over_the_server(server: FakeDeepgram) -> None:
    """Finalize → final transcript, less the fake server's own delay."""
    server.endpointing = server.utterance_end = None
    session = await engine(server).open("en")
    collector = Collector(session)
    added: list[float] = []
    for n in range(1, 6):
        await session.clear()
        await push(session, speech(0.5))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await session.end_turn()
        finals = await collector.wait_finals(n)
        added.append(finals[-1].at - started - server.finalize_delay)
    await session.aclose()
    median = statistics.median(added)
    print(
        f"\ndeepgram added latency: median {median * 1000:.1f} ms, max {max(added) * 1000:.1f} ms"
    )
    assert median < 0.05
