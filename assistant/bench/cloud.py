"""What each cloud adapter adds to a turn, over a local server speaking the provider's protocol.

The servers are the test suite's fakes (``tests/fakes``: real websocket and HTTP servers on
127.0.0.1 with a known delay of their own), so this runs from a source checkout only. Each figure
is the time from the moment the adapter is asked (end of turn, a text piece handed over) to the
moment its answer exists (final transcript, first audio), less the fake server's own delay: the
adapter's share of the turn's latency. Printed per adapter: median and worst of ``runs`` turns.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import numpy as np

from assistant.engines.base import Transcript
from assistant.environment import temporarily

ROOT = Path(__file__).resolve().parents[2]
KEY = "bench-key-0123456789abcdef"
RATE = 16_000
FRAME = 512


def _fakes(module: str) -> Any:
    """A module of the test suite's fake servers (they live with the tests, not the app)."""
    if not (ROOT / "tests" / "fakes").is_dir():
        raise RuntimeError("the fake provider servers come with the source checkout (tests/fakes)")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(f"tests.fakes.{module}")


def _speech(seconds: float) -> np.ndarray:
    """Noise loud enough for the fakes to hear speech in it."""
    rng = np.random.default_rng(7)
    return (rng.standard_normal(int(seconds * RATE)) * 3000).astype(np.int16)


def _tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE))
    return (0.3 * 32767 * np.sin(2 * np.pi * 440.0 * t / RATE)).astype(np.int16)


async def _push(session: Any, pcm: np.ndarray) -> None:
    for i in range(0, len(pcm), FRAME):
        await session.push(pcm[i : i + FRAME])


class _Finals:
    """Every final a session's ``transcripts()`` yields, read in the background."""

    def __init__(self, session: Any) -> None:
        self.items: list[Transcript] = []
        self._more = asyncio.Event()
        self.task = asyncio.create_task(self._run(session))

    async def _run(self, session: Any) -> None:
        async for item in session.transcripts():
            if item.is_final:
                self.items.append(item)
                self._more.set()

    async def wait(self, count: int) -> Transcript:
        async with asyncio.timeout(30):
            while len(self.items) < count:
                self._more.clear()
                await self._more.wait()
        return self.items[-1]


async def deepgram(runs: int) -> list[float]:
    """``end_turn`` (Finalize) → final transcript, less the server's answer delay."""
    from assistant.engines.deepgram import DeepgramSTT

    fake = _fakes("deepgram_server").FakeDeepgram
    added: list[float] = []
    with temporarily({"DEEPGRAM_API_KEY": KEY}):
        async with fake(key=KEY, endpointing=None, utterance_end=None) as server:
            session = await DeepgramSTT(server.url).open("en")
            finals = _Finals(session)
            for n in range(1, runs + 1):
                await session.clear()
                await _push(session, _speech(0.5))
                await asyncio.sleep(0.1)  # the audio has gone out: the end of turn alone
                started = time.monotonic()
                await session.end_turn()
                final = await finals.wait(n)
                added.append(final.at - started - server.finalize_delay)
            await session.aclose()
    return added


async def assemblyai(runs: int) -> list[float]:
    """``end_turn`` (ForceEndpoint) → formatted final, less the server's own delays."""
    from assistant.engines.assemblyai import AssemblyAISTT

    fake = _fakes("assemblyai_server").FakeAssemblyAI
    added: list[float] = []
    with temporarily({"ASSEMBLYAI_API_KEY": KEY}):
        async with fake(key=KEY, force_delay=0.02, format_delay=0.05) as server:
            session = await AssemblyAISTT(server.url).open("en")
            finals = _Finals(session)
            for n in range(1, runs + 1):
                await _push(session, _speech(0.3))
                await asyncio.sleep(0.35)  # the audio has gone out: the end of turn alone
                started = time.monotonic()
                await session.end_turn()
                final = await finals.wait(n)
                added.append(final.at - started - server.force_delay - server.format_delay)
                await session.clear()
            await session.aclose()
    return added


async def openai_transcription(runs: int) -> list[float]:
    """``end_turn`` (commit) → final transcript, less the server's own transcription time."""
    from assistant.engines.openai.realtime import OpenAIRealtimeSTT

    server = _fakes("openai_server").FakeOpenAIServer(api_key=KEY).start()
    added: list[float] = []
    try:
        server.delta_interval = 0.0
        with temporarily({"OPENAI_API_KEY": KEY}):
            stt = OpenAIRealtimeSTT(server.realtime_url)
            await stt.warm_up()
            session = await stt.open("en")
            finals = _Finals(session)
            for n in range(runs):
                sent = sum(server.append_sizes)
                await _push(session, _tone(0.5))
                async with asyncio.timeout(30):  # the batches have gone out first
                    # The server runs on a thread of its own: there is nothing to await.
                    while sum(server.append_sizes) - sent < 0.3 * 48_000:  # noqa: ASYNC110
                        await asyncio.sleep(0.002)
                called = time.monotonic()
                await session.end_turn()
                final = await finals.wait(n + 1)
                commit = server.commits[n]
                added.append(final.at - called - (commit.completed_at - commit.received_at))
            await session.aclose()
            await stt.aclose()
    finally:
        await asyncio.to_thread(server.stop)
    return added


async def _first_audio(tts: Any, runs: int, server_delay: float) -> list[float]:
    """A piece handed over → its first audio, less the server's first-audio delay."""
    added: list[float] = []
    await tts.warm_up()
    for _ in range(runs):
        handed = 0.0

        async def one() -> AsyncIterator[str]:
            nonlocal handed
            handed = time.monotonic()
            yield "Quick test."

        stream = tts.stream(one(), voice=None, language="en")
        async with contextlib.aclosing(stream):
            await anext(stream)
            added.append(time.monotonic() - handed - server_delay)
            async for _ in stream:
                pass
    await tts.aclose()
    return added


async def elevenlabs(runs: int) -> list[float]:
    from assistant.engines.elevenlabs import ElevenLabsTTS

    fake = _fakes("elevenlabs_server").FakeElevenLabs
    with temporarily({"ELEVENLABS_API_KEY": KEY}):
        async with fake(key=KEY) as server:
            return await _first_audio(ElevenLabsTTS(server.url), runs, server.first_audio_delay)


async def async_tts(runs: int) -> list[float]:
    from assistant.engines.asyncai import AsyncTTS

    fake = _fakes("async_server").FakeAsync
    with temporarily({"ASYNC_API_KEY": KEY}):
        async with fake(key=KEY) as server:
            tts = AsyncTTS(server.url, voices_url=server.voices_url)
            return await _first_audio(tts, runs, server.first_audio_delay)


async def openai_speech(runs: int) -> list[float]:
    from assistant.engines.openai.speech import OpenAISpeechTTS

    server = _fakes("openai_server").FakeOpenAIServer(api_key=KEY).start()
    try:
        with temporarily({"OPENAI_API_KEY": KEY}):
            tts = OpenAISpeechTTS(server.http_url)
            return await _first_audio(tts, runs, server.first_byte_delay)
    finally:
        await asyncio.to_thread(server.stop)


#: (adapter, what is timed, measurement).
ADAPTERS: tuple[tuple[str, str, Callable[[int], Coroutine[Any, Any, list[float]]]], ...] = (
    ("deepgram", "end of turn → final", deepgram),
    ("assemblyai", "end of turn → final", assemblyai),
    ("openai transcription", "end of turn → final", openai_transcription),
    ("elevenlabs", "piece → first audio", elevenlabs),
    ("async", "piece → first audio", async_tts),
    ("openai speech", "piece → first audio", openai_speech),
)


def report(runs: int) -> int:
    """Print the section; 1 when an adapter could not be measured."""
    print(f"cloud adapters over local servers: added latency, {runs} runs each", flush=True)
    print(f"  {'adapter':<22}{'timed':<24}{'p50':>9}{'worst':>9}")
    failed = 0
    for name, what, measure in ADAPTERS:
        try:
            added = asyncio.run(measure(runs))
        except Exception as exc:  # one adapter's trouble must not hide the others' figures
            print(f"  {name:<22}{what:<24} failed: {exc}", flush=True)
            failed = 1
            continue
        ms = np.array(added) * 1000.0
        print(f"  {name:<22}{what:<24}{np.median(ms):>7.1f}ms{ms.max():>7.1f}ms", flush=True)
    print("  added = the adapter's own share: the fake server's known delay is subtracted")
    return failed
