"""What every multi-context websocket TTS adapter (ElevenLabs, Async) must do against its fake:
retry a rate limit and a server error, fail a reply whose connection drops after output and
reconnect for the next one, skip malformed messages, be cut short through a fallback chain,
speak a whole ``parley talk`` reply, and list its voices after one.

Each check takes the running fake and the adapter under test; what differs between providers
(the faults' status codes, the environment variables, the wire details) stays in their tests."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from assistant.engines.asyncai import AsyncTTS
from assistant.engines.base import EngineError, SpeechChunk
from assistant.engines.elevenlabs import ElevenLabsTTS
from assistant.engines.fake import FakeLLM, FakeSTT, FakeTTS
from assistant.engines.fallback import FallbackTTS
from assistant.engines.net.retry import Policy
from assistant.engines.net.tts_driver import MultiContextTTS
from tests import cloud
from tests.fakes.contexts import RATE

PIECES = ("Hello there.", "How are you today?", "Fine, thanks.")
#: The reply ``talk_end_to_end`` has the fake LLM give.
REPLY = "It is noon. Anything else?"


async def speak(
    tts: MultiContextTTS,
    pieces: Sequence[str] = PIECES,
    *,
    voice: str | None = None,
    language: str = "en",
    delay: float = 0.0,
) -> list[SpeechChunk]:
    """Every chunk ``tts`` speaks for ``pieces``, handed over ``delay`` seconds apart."""
    texts = cloud.texts(pieces, delay)
    return [c async for c in tts.stream(texts, voice=voice, language=language)]


async def retried_after_faults(server: Any, make: Callable[[Policy], MultiContextTTS]) -> None:
    """With ``server.handshake_faults`` a 429 (retry-after 0.2 s) then a 5xx, the adapter
    ``make`` builds waits as told, backs off once, and the third handshake speaks."""
    sleeps = cloud.Sleeps()
    tts = make(cloud.fast(sleep=sleeps))
    chunks = await speak(tts, ["Hi."])
    await tts.aclose()
    assert len(server.requests) == 3
    # The server's retry-after (plus a little jitter), then a backoff step.
    assert len(sleeps) == 2 and 0.2 <= sleeps[0] <= 0.27 and sleeps[1] <= 0.1
    assert sum(len(c.pcm) for c in chunks) == cloud.expected_samples(["Hi."], server)


async def drop_mid_reply_then_reconnect(
    server: Any, tts: MultiContextTTS, code: int | None
) -> EngineError:
    """A connection dropped (with close ``code``, or aborted) after some audio fails the reply;
    the next reply opens a new connection and speaks in full. Returns the reply's error."""
    server.drop_after_audio = 3
    server.drop_code = code
    got: list[SpeechChunk] = []
    with pytest.raises(EngineError, match="connection dropped") as caught:
        async for chunk in tts.stream(cloud.texts(PIECES), voice=None, language="en"):
            got.append(chunk)
    assert sum(len(c.pcm) for c in got) > 0  # it failed after output
    chunks = await speak(tts, ["Back again."])
    assert server.connections == 2
    assert sum(len(c.pcm) for c in chunks) == cloud.expected_samples(["Back again."], server)
    return caught.value


async def malformed_messages_skipped(
    server: Any, tts: MultiContextTTS, caplog: pytest.LogCaptureFixture
) -> None:
    server.garbage = True
    with caplog.at_level(logging.WARNING, logger="assistant.engines.net.messages"):
        chunks = await speak(tts)
    assert sum(len(c.pcm) for c in chunks) == cloud.expected_samples(PIECES, server)
    assert "not JSON" in caplog.text


async def cut_short_through_a_chain(server: Any, tts: MultiContextTTS, text: str) -> None:
    """The session speaks ``text`` through a fallback chain whose first member is ``tts`` and
    closes the stream after its first audio (the user cut in); the caller checks that the close
    reached the server's context."""
    server.realtime_factor = 1.0
    chain = FallbackTTS([tts, FakeTTS()])
    # The chain's stream is an async generator, as the session's ``aclosing`` expects.
    stream = cast(
        AsyncGenerator[SpeechChunk, None],
        chain.stream(cloud.texts([text]), voice=None, language="en"),
    )
    assert len((await anext(stream)).pcm)
    await stream.aclose()


async def talk_end_to_end(server: Any, tmp_path: Path, tts: MultiContextTTS) -> list[str]:
    """``parley talk`` with ``tts`` (pointed at ``server``) speaking ``REPLY``: no error, the
    reply in the history, as much audio as the fake spoke. Returns the texts the fake got."""
    result = await cloud.talk(
        tmp_path, (FakeSTT(["What time is it?"]), FakeLLM(reply=lambda r: REPLY, ttft=0.02), tts)
    )
    await tts.aclose()
    assert not result.errors, result.errors
    assert [t.assistant_text for t in result.turns] == [REPLY]
    texts: list[str] = server.texts(server.contexts()[0])
    assert result.audio_seconds == pytest.approx(
        cloud.expected_samples([t.strip() for t in texts], server) / RATE, abs=0.05
    )
    return texts


async def talk_and_list_voices(tmp_path: Path, tts: AsyncTTS | ElevenLabsTTS) -> list[str]:
    """A whole ``parley talk`` spoken by ``tts``, then its voices listed and ``tts`` closed: both
    work. Returns every error and notice the user was shown."""
    result = await cloud.talk(tmp_path, (FakeSTT(), FakeLLM(ttft=0.01), tts))
    await tts.load_voices()
    await tts.aclose()
    assert result.turns and result.audio_seconds > 0
    return result.errors + result.notices
