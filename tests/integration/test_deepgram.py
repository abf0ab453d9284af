"""The Deepgram live-transcription adapter against a local server speaking its wire protocol."""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from pathlib import Path

import pytest

from assistant.config import Settings
from assistant.engines.base import EngineError, MissingKeyError
from assistant.engines.deepgram import DeepgramSTT, DeepgramWire, make_stt
from assistant.engines.fake import FakeLLM, FakeTTS
from tests import cloud
from tests.fakes.deepgram_server import FakeDeepgram

KEY = "dg-test-key-0123456789"
key_env, server = cloud.served("DEEPGRAM_API_KEY", KEY, lambda key: FakeDeepgram(key=key))


def engine(server: FakeDeepgram, **kwargs: object) -> DeepgramSTT:
    options: dict[str, object] = {"policy": cloud.FAST, "final_timeout": 1.0}
    options.update(kwargs)
    return DeepgramSTT(server.url, **options)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ protocol


async def test_request_carries_documented_parameters(server: FakeDeepgram) -> None:
    session = await engine(server).open("en")
    await session.aclose()
    # The documented parameters, as the wire rules build them (see tests/wire).
    assert (
        server.requests[0].path
        == "/v1/listen?" + urllib.parse.urlsplit(DeepgramWire(server.url, "en").url()).query
    )
    assert server.requests[0].headers["Authorization"] == f"Token {KEY}"
    assert server.count("CloseStream") == 1


async def test_finalize_ends_the_turn_with_all_segments(server: FakeDeepgram) -> None:
    server.endpointing = server.utterance_end = None
    session, collector = await cloud.listening(engine(server))
    await cloud.push(session, cloud.speech(1.1))  # two is_final segments and an interim tail
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
    session, collector = await cloud.listening(engine(server))
    await cloud.push(session, cloud.speech(0.9))
    await cloud.push(session, cloud.silence(1.2))  # speech_final at 0.3 s, UtteranceEnd at 1.0 s
    await asyncio.sleep(0.1)
    await session.aclose()
    assert [t.text for t in collector.finals] == ["What time is it?"]
    assert server.count("Finalize") == 0


async def test_utterance_end_ends_the_turn(server: FakeDeepgram) -> None:
    server.endpointing = None  # no speech_final: only UtteranceEnd
    session, collector = await cloud.listening(engine(server))
    await cloud.push(session, cloud.speech(0.9))
    await cloud.push(session, cloud.silence(1.1))
    finals = await collector.wait_finals()
    await session.aclose()
    assert [t.text for t in finals] == ["What time is it?"]


async def test_two_turns(server: FakeDeepgram) -> None:
    server.endpointing = server.utterance_end = None
    session, collector = await cloud.listening(engine(server))
    for _ in range(2):
        await session.clear()
        await cloud.push(session, cloud.speech(0.8))
        await session.end_turn()
        await collector.wait_finals(len(collector.finals) + 1)
    await session.aclose()
    assert [t.text for t in collector.finals] == ["What time is it?", "Thank you."]


async def test_keepalive_holds_an_idle_socket(server: FakeDeepgram) -> None:
    server.idle_timeout = 1.0
    session = await engine(server, keepalive_interval=0.1).open("en")
    # Idle for as long as it takes the server to hear twelve keep-alives: well past its idle
    # timeout, counted in messages rather than measured.
    await cloud.eventually(lambda: server.count("KeepAlive") >= 12)
    await session.aclose()
    assert server.idle_closes == 0
    assert server.connections == 1


async def test_idle_close_without_keepalive_reconnects(server: FakeDeepgram) -> None:
    server.idle_timeout = 0.3
    server.endpointing = server.utterance_end = None
    session, collector = await cloud.listening(engine(server, keepalive_interval=60.0))
    await cloud.eventually(lambda: server.idle_closes >= 1)  # closed with 1011 for idling
    await cloud.push(session, cloud.speech(0.8))
    await session.end_turn()
    finals = await collector.wait_finals()
    await session.aclose()
    assert server.idle_closes >= 1 and server.connections >= 2
    assert [t.text for t in finals] == ["What time is it?"]


async def test_unanswered_finalize_falls_back_to_the_partial(server: FakeDeepgram) -> None:
    server.endpointing = server.utterance_end = None
    server.answer_finalize = False  # the server stalls
    session, collector = await cloud.listening(engine(server, final_timeout=0.3))
    await cloud.push(session, cloud.speech(1.1))
    await session.end_turn()
    finals = await collector.wait_finals()
    await session.aclose()
    assert [t.text for t in finals] == [collector.partials()[-1]] == ["What time is it?"]
    assert server.count("Finalize") == 1 and server.finals_sent == []  # the partial stood in


async def test_a_late_answer_to_finalize_is_waited_for(server: FakeDeepgram) -> None:
    """The fallback waits out ``final_timeout``: a slow server's answer still ends the turn.

    Half a second of speech shows only "What time" in the partials; only the server's answer to
    Finalize holds the rest, so a turn ended on the partial would read "What time"."""
    server.endpointing = server.utterance_end = None
    server.finalize_delay = 0.5  # slower than a healthy server, well inside final_timeout
    session, collector = await cloud.listening(engine(server, final_timeout=15.0))
    await cloud.push(session, cloud.speech(0.5))
    await cloud.eventually(lambda: bool(collector.partials()))
    await session.end_turn()
    finals = await collector.wait_finals()
    await session.aclose()
    assert collector.partials()[-1] == "What time"
    assert [t.text for t in finals] == ["What time is it?"]
    assert len(server.finals_sent) == 1


# -------------------------------------------------------------------------------- resilience


async def test_missing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    cloud.without_key("DEEPGRAM_API_KEY", monkeypatch)
    with pytest.raises(MissingKeyError, match="DEEPGRAM_API_KEY"):
        await DeepgramSTT("ws://127.0.0.1:9/v1/listen", policy=cloud.FAST).open("en")


async def test_rate_limit_then_success(server: FakeDeepgram) -> None:
    server.handshake_faults = [(429, {"Retry-After": "0.2"}), (500, {})]
    sleeps = cloud.Sleeps()
    session = await engine(server, policy=cloud.fast(sleep=sleeps)).open("en")
    await session.aclose()
    assert len(server.requests) == 3
    # The server's retry-after (plus a little jitter), then a backoff step.
    assert len(sleeps) == 2 and 0.2 <= sleeps[0] <= 0.27 and sleeps[1] <= 0.1


async def test_persistent_server_error(server: FakeDeepgram) -> None:
    server.handshake_faults = [(502, {})] * 5
    with pytest.raises(EngineError, match="HTTP 502"):
        await engine(server).open("en")


@pytest.mark.parametrize("code", [1011, None], ids=["close-1011", "abort-1006"])
async def test_dropped_connection_reconnects(server: FakeDeepgram, code: int | None) -> None:
    server.endpointing = server.utterance_end = None
    await cloud.turn_survives_a_drop(server, engine(server), code, after=0.4, seconds=0.9)


async def test_malformed_messages_are_skipped(
    server: FakeDeepgram, caplog: pytest.LogCaptureFixture
) -> None:
    server.garbage = True
    server.endpointing = server.utterance_end = None
    with caplog.at_level(logging.WARNING, logger="assistant.engines.net.messages"):
        collector, session = await cloud.spoken_turn(engine(server), 0.9)
        finals = collector.final_texts()
        await session.aclose()
    assert finals == ["What time is it?"]
    assert "not JSON" in caplog.text


# ----------------------------------------------------------------------------- end to end


async def test_talk_end_to_end(
    server: FakeDeepgram, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.endpointing = server.utterance_end = None  # push-to-talk release ends the turn
    monkeypatch.setenv("PARLEY_DEEPGRAM_URL", server.url)
    settings = Settings()
    result = await cloud.talk(
        tmp_path,
        (
            make_stt(settings),
            FakeLLM(reply=lambda request: "It is noon.", ttft=0.02),
            FakeTTS(first_audio_delay=0.01),
        ),
        settings=settings,
        output=False,
    )
    assert not result.errors, result.errors
    assert [t.user_text for t in result.turns] == ["What time is it?"]
    assert result.turns[0].assistant_text == "It is noon."
    assert server.count("Finalize") == 1


async def test_canary_key_never_leaks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    canary = cloud.canary_key("DEEPGRAM_API_KEY", monkeypatch, caplog)
    texts: list[str] = []
    async with FakeDeepgram(key=canary, drop_after_audio=0.3) as good:
        monkeypatch.setenv("PARLEY_DEEPGRAM_URL", good.url)
        result = await cloud.talk(
            tmp_path, (make_stt(Settings()), FakeLLM(ttft=0.01), FakeTTS(first_audio_delay=0.0))
        )
        texts += result.errors + result.notices
        assert result.turns
    async with FakeDeepgram(key="another-key") as bad:
        with pytest.raises(EngineError) as caught:
            await DeepgramSTT(bad.url, policy=cloud.FAST).open("en")
        texts.append(cloud.failure_text(caught.value))
    assert "Authorization: Token [redacted]" in caplog.text
    cloud.assert_unleaked(canary, caplog.text, texts, tmp_path)
