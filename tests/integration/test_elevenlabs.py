"""The ElevenLabs multi-context TTS adapter against a local server speaking its wire protocol."""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from assistant.config import Settings
from assistant.engines.base import EngineError, MissingKeyError
from assistant.engines.elevenlabs import DEFAULT_VOICE, ElevenLabsTTS, make_tts, premade_voices
from assistant.spoken import SpokenText
from tests import cloud, tts_checks
from tests.fakes.contexts import RATE
from tests.fakes.elevenlabs_server import FakeElevenLabs
from tests.tts_checks import PIECES, speak

KEY = "el-test-key-0123456789"
key_env, server = cloud.served("ELEVENLABS_API_KEY", KEY, lambda key: FakeElevenLabs(key=key))


@pytest.fixture
async def tts(server: FakeElevenLabs) -> AsyncIterator[ElevenLabsTTS]:
    engine = ElevenLabsTTS(server.url, policy=cloud.FAST)
    yield engine
    await engine.aclose()


# ------------------------------------------------------------------------------------ protocol


async def test_reply_is_one_context_of_flushed_pieces(
    server: FakeElevenLabs, tts: ElevenLabsTTS
) -> None:
    chunks = await speak(tts)
    request = server.requests[0]
    parts = urllib.parse.urlsplit(request.path)
    assert parts.path == f"/v1/text-to-speech/{DEFAULT_VOICE}/multi-stream-input"
    query = dict(urllib.parse.parse_qsl(parts.query))
    assert query["model_id"] == "eleven_flash_v2_5" and query["output_format"] == "pcm_24000"
    assert request.headers["xi-api-key"] == KEY and KEY not in request.path
    (context,) = server.contexts()
    first = server.received[0]
    assert first["text"] == " " and "voice_settings" in first and first["context_id"] == context
    sent = [m for m in server.received if m.get("text", "").strip()]
    assert [m["text"] for m in sent] == [p + " " for p in PIECES]
    assert all(m["flush"] for m in sent)
    assert server.received[-1] == {"context_id": context, "close_context": True}
    assert server.finals == [context]
    # Audio: every sample the server sent, in piece order, each piece closed once.
    assert sum(len(c.pcm) for c in chunks) == cloud.expected_samples(PIECES, server)
    assert all(c.sample_rate == RATE for c in chunks)
    assert [c.piece for c in chunks] == sorted(c.piece for c in chunks)
    assert [c.piece for c in chunks if c.last] == [0, 1, 2]
    assert all(c.text == PIECES[c.piece] for c in chunks)


@pytest.mark.parametrize(
    ("duration_key", "alignment_keys", "context_key"),
    [
        ("charDurationsMs", ("normalizedAlignment",), "contextId"),
        ("charsDurationsMs", ("normalizedAlignment",), "context_id"),
        ("charsDurationsMs", ("alignment", "normalizedAlignment"), "contextId"),
    ],
)
async def test_alignment_places_words_on_the_audio(
    server: FakeElevenLabs,
    tts: ElevenLabsTTS,
    duration_key: str,
    alignment_keys: tuple[str, ...],
    context_key: str,
) -> None:
    server.duration_key = duration_key
    server.alignment_keys = alignment_keys
    server.context_key = context_key
    chunks = await speak(tts)
    assert any(c.alignment for c in chunks)
    for c in chunks:
        for offset, ms in c.alignment:
            assert 0 <= offset < len(c.text)
            assert 0 <= ms <= c.duration * 1000 + 1
    # The words heard at a position are the words whose audio has been played.
    spoken = SpokenText()
    for c in chunks:
        spoken.add(c)
    first_piece = sum(len(c.pcm) for c in chunks if c.piece == 0) / RATE
    assert spoken.heard(first_piece) == "Hello there."
    assert spoken.heard(first_piece + 0.2) == "Hello there. How"
    assert spoken.heard(spoken.audio_seconds) == " ".join(PIECES)


async def test_socket_is_reused_across_replies(server: FakeElevenLabs, tts: ElevenLabsTTS) -> None:
    await tts.warm_up()
    assert server.connections == 1
    for _ in range(3):
        await speak(tts, ["One more."])
    assert server.connections == 1
    assert len(server.contexts()) == 3


async def test_barge_in_closes_only_the_context(server: FakeElevenLabs, tts: ElevenLabsTTS) -> None:
    server.realtime_factor = 1.0  # slow enough to be interrupted
    long_text = ["This reply goes on and on for quite a while, with many words to say."]
    stream = tts.stream(cloud.texts(long_text), voice=None, language="en")
    first = await anext(stream)
    assert len(first.pcm)
    await stream.aclose()  # the user barged in
    (interrupted,) = server.contexts()
    await cloud.eventually(
        lambda: {"context_id": interrupted, "close_context": True} in server.received
    )
    # The same socket speaks the next reply; late audio of the old context is not in it.
    chunks = await speak(tts, ["Yes?"])
    assert server.connections == 1
    assert sum(len(c.pcm) for c in chunks) == cloud.expected_samples(["Yes?"], server)
    assert {c.text for c in chunks} == {"Yes?"}


async def test_barge_in_through_a_fallback_chain(
    server: FakeElevenLabs, tts: ElevenLabsTTS
) -> None:
    """The session speaks through a fallback chain: closing it must reach the context too."""
    text = "A long reply that will be cut short by the user."
    await tts_checks.cut_short_through_a_chain(server, tts, text)
    await cloud.eventually(lambda: bool(server.closed_contexts))
    assert server.closed_contexts == server.contexts()
    assert server.connections == 1


async def test_context_keepalive_while_the_text_waits(server: FakeElevenLabs) -> None:
    tts = ElevenLabsTTS(server.url, policy=cloud.FAST, keepalive_interval=0.1)
    chunks = await speak(tts, ["Let me check.", "It is sunny."], delay=0.35)
    await tts.aclose()
    (context,) = server.contexts()
    assert {"context_id": context, "text": ""} in server.received
    assert sum(len(c.pcm) for c in chunks) == cloud.expected_samples(
        ["Let me check.", "It is sunny."], server
    )


async def test_empty_reply_sends_nothing(server: FakeElevenLabs, tts: ElevenLabsTTS) -> None:
    assert await speak(tts, []) == []
    assert server.received == []


# -------------------------------------------------------------------------------- resilience


async def test_rejected_key_by_close(
    server: FakeElevenLabs, tts: ElevenLabsTTS, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.auth_by_close = True
    monkeypatch.setenv("ELEVENLABS_API_KEY", "wrong-key-abcdef")
    with pytest.raises(EngineError, match="rejected the API key") as caught:
        await speak(tts)
    assert not caught.value.retryable


async def test_missing_key(server: FakeElevenLabs, monkeypatch: pytest.MonkeyPatch) -> None:
    cloud.without_key("ELEVENLABS_API_KEY", monkeypatch)
    with pytest.raises(MissingKeyError, match="ELEVENLABS_API_KEY"):
        await speak(ElevenLabsTTS(server.url, policy=cloud.FAST))


async def test_rate_limit_and_server_errors_are_retried(server: FakeElevenLabs) -> None:
    server.handshake_faults = [(429, {"Retry-After": "0.2"}), (503, {})]
    await tts_checks.retried_after_faults(
        server, lambda policy: ElevenLabsTTS(server.url, policy=policy)
    )


async def test_persistent_server_error(server: FakeElevenLabs, tts: ElevenLabsTTS) -> None:
    server.handshake_faults = [(500, {})] * 5
    with pytest.raises(EngineError, match="HTTP 500"):
        await speak(tts)


@pytest.mark.parametrize("code", [1011, None], ids=["close-1011", "abort-1006"])
async def test_drop_mid_reply_fails_then_next_reply_reconnects(
    server: FakeElevenLabs, tts: ElevenLabsTTS, code: int | None
) -> None:
    error = await tts_checks.drop_mid_reply_then_reconnect(server, tts, code)
    assert error.retryable


async def test_stall_mid_reply_times_out(server: FakeElevenLabs, tts: ElevenLabsTTS) -> None:
    async def pieces() -> AsyncIterator[str]:
        yield "First part."
        await asyncio.sleep(0.3)
        server.stall = True
        yield "Second part."

    with pytest.raises(EngineError, match="stopped sending audio"):
        async for _ in tts.stream(pieces(), voice=None, language="en"):
            pass


async def test_malformed_messages_are_skipped(
    server: FakeElevenLabs, tts: ElevenLabsTTS, caplog: pytest.LogCaptureFixture
) -> None:
    await tts_checks.malformed_messages_skipped(server, tts, caplog)


# ------------------------------------------------------------------------------------ voices


async def test_voices_from_the_api_are_cached(server: FakeElevenLabs, tts: ElevenLabsTTS) -> None:
    voices = await tts.load_voices()
    assert [(v.id, v.name, v.language) for v in voices] == [
        ("elevenlabs:voiceAAAA", "Alice", "en"),
        ("elevenlabs:voiceBBBB", "Bruno", "de"),
    ]
    requests = len(server.requests)
    assert tts.voices("de")[0].id == "elevenlabs:voiceBBBB"
    assert len(server.requests) == requests
    assert urllib.parse.urlsplit(server.requests[0].path).path == "/v1/voices"


async def test_voices_on_the_loop_never_block(server: FakeElevenLabs, tts: ElevenLabsTTS) -> None:
    assert tts.voices() == premade_voices()  # at once, while the list loads
    await cloud.eventually(lambda: tts.voices() != premade_voices())
    assert {v.name for v in tts.voices()} == {"Alice", "Bruno"}


async def test_voices_fall_back_to_premade_on_a_rejected_key(
    server: FakeElevenLabs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ELEVENLABS_API_KEY", "wrong-key-abcdef")
    tts = ElevenLabsTTS(server.url, policy=cloud.FAST)
    with pytest.raises(EngineError, match="HTTP 401"):
        await tts.load_voices()
    assert tts.voices() == premade_voices()
    await tts.voice_cache.wait()  # the background fetch fails quietly and caches nothing
    assert tts.voices() == premade_voices()


# ------------------------------------------------------------------------------ end to end


async def test_talk_end_to_end(
    server: FakeElevenLabs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARLEY_ELEVENLABS_URL", server.url)
    texts = await tts_checks.talk_end_to_end(server, tmp_path, make_tts(Settings()))
    assert "".join(texts).split() == tts_checks.REPLY.split()


async def test_canary_key_never_leaks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    canary = cloud.canary_key("ELEVENLABS_API_KEY", monkeypatch, caplog)
    texts_seen: list[str] = []
    async with FakeElevenLabs(key=canary, drop_after_audio=0) as good:
        monkeypatch.setenv("PARLEY_ELEVENLABS_URL", good.url)
        tts = make_tts(Settings())
        texts_seen += await tts_checks.talk_and_list_voices(tmp_path, tts)
    for auth_by_close in (False, True):
        async with FakeElevenLabs(key="another-key", auth_by_close=auth_by_close) as bad:
            with pytest.raises(EngineError) as caught:
                await speak(ElevenLabsTTS(bad.url, policy=cloud.FAST))
            texts_seen.append(cloud.failure_text(caught.value))
            with pytest.raises(EngineError) as caught:
                await ElevenLabsTTS(bad.url, policy=cloud.FAST).load_voices()
            texts_seen.append(cloud.failure_text(caught.value))
    assert "xi-api-key: [redacted]" in caplog.text
    cloud.assert_unleaked(canary, caplog.text, texts_seen, tmp_path)
