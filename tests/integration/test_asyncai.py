"""The Async TTS adapter against a local server speaking Async's websocket API."""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from assistant.config import Settings
from assistant.engines.asyncai import (
    DEFAULT_VOICE,
    INITIAL_RATE,
    AsyncTTS,
    default_voices,
    make_tts,
)
from assistant.engines.base import EngineError, MissingKeyError
from assistant.spoken import SpokenText
from tests import cloud, tts_checks
from tests.fakes.async_server import FakeAsync
from tests.fakes.contexts import RATE
from tests.tts_checks import PIECES, speak

KEY = "async-test-key-0123456789"
key_env, server = cloud.served("ASYNC_API_KEY", KEY, lambda key: FakeAsync(key=key))


@pytest.fixture
async def tts(server: FakeAsync) -> AsyncIterator[AsyncTTS]:
    engine = AsyncTTS(server.url, policy=cloud.FAST, voices_url=server.voices_url)
    yield engine
    await engine.aclose()


# ------------------------------------------------------------------------------------ protocol


async def test_reply_is_one_context_of_forced_pieces(server: FakeAsync, tts: AsyncTTS) -> None:
    chunks = await speak(tts)
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(server.requests[0].path).query))
    assert query == {"api_key": KEY, "version": "v1"}
    assert server.inits == [
        {
            "model_id": "async_flash_v1.5",
            "voice": {"mode": "id", "id": DEFAULT_VOICE},
            "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000},
            "language": "en",
        }
    ]
    (context,) = server.contexts()
    sent = [m for m in server.received if (m.get("transcript") or "").strip()]
    assert [m["transcript"] for m in sent] == [p + " " for p in PIECES]
    assert all(m["force"] is True and m["context_id"] == context for m in sent)
    assert server.received[-1] == {"context_id": context, "close_context": True, "transcript": ""}
    assert server.finals == [context]
    assert sum(len(c.pcm) for c in chunks) == cloud.expected_samples(PIECES, server)
    assert all(c.sample_rate == RATE for c in chunks)
    assert [c.piece for c in chunks] == sorted(c.piece for c in chunks)
    assert [c.text for c in chunks if c.last] == list(PIECES)
    spoken = SpokenText()
    for c in chunks:
        spoken.add(c)
    assert spoken.heard(spoken.audio_seconds) == " ".join(PIECES)
    assert spoken.heard(0.0) == ""


async def test_pieces_are_placed_by_their_length(server: FakeAsync) -> None:
    tts = AsyncTTS(server.url, policy=cloud.FAST)
    tts.chars_per_second = server.chars_per_second  # as if learnt from earlier replies
    chunks = await speak(tts)
    await tts.aclose()
    per_piece = [sum(len(c.pcm) for c in chunks if c.piece == i) for i in range(len(PIECES))]
    expected = [cloud.expected_samples([p], server) for p in PIECES]
    for got, want in zip(per_piece, expected, strict=True):
        assert abs(got - want) <= 0.35 * want, (per_piece, expected)  # an estimate


async def test_speaking_rate_is_learnt(server: FakeAsync, tts: AsyncTTS) -> None:
    assert tts.chars_per_second == INITIAL_RATE
    await speak(tts, ["A reply that is long enough to measure how fast this voice speaks."])
    assert tts.chars_per_second > INITIAL_RATE  # the fake speaks 40 characters a second


async def test_older_audio_messages_without_context(server: FakeAsync, tts: AsyncTTS) -> None:
    server.audio_output_type = True
    chunks = await speak(tts)
    assert sum(len(c.pcm) for c in chunks) == cloud.expected_samples(PIECES, server)


async def test_voice_and_language_choose_the_socket(server: FakeAsync, tts: AsyncTTS) -> None:
    await speak(tts, ["Hallo."], voice="async:22222222-bbbb", language="de")
    await speak(tts, ["Hi."], voice="piper:en_US-amy")  # another engine's voice: the default
    assert [(i["voice"]["id"], i["language"]) for i in server.inits] == [
        ("22222222-bbbb", "de"),
        (DEFAULT_VOICE, "en"),
    ]


async def test_socket_is_reused_and_kept_alive(server: FakeAsync) -> None:
    server.idle_timeout = 1.0
    tts = AsyncTTS(server.url, policy=cloud.FAST, keepalive_interval=0.1)
    await tts.warm_up()
    # Idle (only keep-alives flow) for as long as the server takes to hear twelve of them: well
    # past its idle timeout, counted in messages rather than measured.
    await cloud.eventually(lambda: server.received.count({"transcript": " "}) >= 12)
    await speak(tts, ["Still here."])
    await tts.aclose()
    assert server.connections == 1 and server.idle_closes == 0


async def test_idle_socket_closed_by_the_server_is_reopened(server: FakeAsync) -> None:
    server.idle_timeout = 0.2
    tts = AsyncTTS(server.url, policy=cloud.FAST, keepalive_interval=60.0)
    await speak(tts, ["One."])
    await cloud.eventually(lambda: server.idle_closes == 1)
    chunks = await speak(tts, ["Two."])
    await tts.aclose()
    assert server.idle_closes == 1 and server.connections == 2
    assert sum(len(c.pcm) for c in chunks) == cloud.expected_samples(["Two."], server)


async def test_barge_in_closes_only_the_context(server: FakeAsync, tts: AsyncTTS) -> None:
    server.realtime_factor = 1.0
    stream = tts.stream(
        cloud.texts(["This reply goes on and on for quite a while, with many words to say."]),
        voice=None,
        language="en",
    )
    first = await anext(stream)
    assert len(first.pcm)
    await stream.aclose()
    (interrupted,) = server.contexts()
    closing = {"context_id": interrupted, "close_context": True, "transcript": ""}
    await cloud.eventually(lambda: closing in server.received)
    chunks = await speak(tts, ["Yes?"])
    assert server.connections == 1
    assert sum(len(c.pcm) for c in chunks) == cloud.expected_samples(["Yes?"], server)


async def test_barge_in_through_a_fallback_chain(server: FakeAsync, tts: AsyncTTS) -> None:
    await tts_checks.cut_short_through_a_chain(
        server, tts, "A long reply that the user cuts short."
    )
    (context,) = server.contexts()
    closing = {"context_id": context, "close_context": True, "transcript": ""}
    await cloud.eventually(lambda: closing in server.received)
    assert server.connections == 1


# -------------------------------------------------------------------------------- resilience


async def test_missing_key(server: FakeAsync, monkeypatch: pytest.MonkeyPatch) -> None:
    cloud.without_key("ASYNC_API_KEY", monkeypatch)
    with pytest.raises(MissingKeyError, match="ASYNC_API_KEY"):
        await speak(AsyncTTS(server.url, policy=cloud.FAST))


async def test_rate_limit_and_server_errors_are_retried(server: FakeAsync) -> None:
    server.handshake_faults = [(429, {"Retry-After": "0.2"}), (500, {})]
    await tts_checks.retried_after_faults(
        server, lambda policy: AsyncTTS(server.url, policy=policy, voices_url=server.voices_url)
    )


async def test_drop_before_audio_is_replayed(server: FakeAsync, tts: AsyncTTS) -> None:
    server.drop_after_audio = 0
    chunks = await speak(tts)
    assert server.connections == 2 and len(server.inits) == 2
    assert sum(len(c.pcm) for c in chunks) == cloud.expected_samples(PIECES, server)


@pytest.mark.parametrize("code", [1011, None], ids=["close-1011", "abort-1006"])
async def test_drop_mid_reply_fails_then_next_reply_reconnects(
    server: FakeAsync, tts: AsyncTTS, code: int | None
) -> None:
    await tts_checks.drop_mid_reply_then_reconnect(server, tts, code)


async def test_malformed_messages_are_skipped(
    server: FakeAsync, tts: AsyncTTS, caplog: pytest.LogCaptureFixture
) -> None:
    await tts_checks.malformed_messages_skipped(server, tts, caplog)


# ------------------------------------------------------------------------------------ voices


async def test_voices_from_the_api(server: FakeAsync, tts: AsyncTTS) -> None:
    voices = await tts.load_voices()
    assert [(v.id, v.name, v.language) for v in voices] == [
        ("async:11111111-aaaa", "Ava", "en"),
        ("async:22222222-bbbb", "Bernd", "de"),
    ]
    assert [v.name for v in tts.voices("de")] == ["Bernd"]
    assert len(server.voice_requests) == 1  # cached
    assert server.voice_requests[0]["x-api-key"] == KEY
    assert server.voice_requests[0]["version"] == "v1"


async def test_voices_without_a_working_key(
    server: FakeAsync, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASYNC_API_KEY", "wrong-key-abcdef")
    tts = AsyncTTS(server.url, voices_url=server.voices_url)
    with pytest.raises(EngineError, match="HTTP 401"):
        await tts.load_voices()
    assert tts.voices() == default_voices()
    await tts.voice_cache.wait()


# ------------------------------------------------------------------------------ end to end


async def test_talk_end_to_end(
    server: FakeAsync, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARLEY_ASYNC_URL", server.url)
    texts = await tts_checks.talk_end_to_end(server, tmp_path, make_tts(Settings()))
    assert " ".join(t.strip() for t in texts).split() == tts_checks.REPLY.split()


async def test_canary_key_never_leaks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    canary = cloud.canary_key("ASYNC_API_KEY", monkeypatch, caplog)
    seen: list[str] = []
    async with FakeAsync(key=canary, drop_after_audio=0) as good:
        monkeypatch.setenv("PARLEY_ASYNC_URL", good.url)
        tts = make_tts(Settings())
        tts.voices_url = good.voices_url
        seen += await tts_checks.talk_and_list_voices(tmp_path, tts)
    async with FakeAsync(key="another-key") as bad:
        for attempt in (speak(AsyncTTS(bad.url, policy=cloud.FAST)),
                        AsyncTTS(bad.url, voices_url=bad.voices_url).load_voices()):  # fmt: skip
            with pytest.raises(EngineError) as caught:
                await attempt
            seen.append(cloud.failure_text(caught.value))
    # The handshake was logged, with the key scrubbed out of the URL.
    assert "api_key=[redacted]" in caplog.text
    cloud.assert_unleaked(canary, caplog.text, seen, tmp_path)
