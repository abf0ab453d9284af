"""Per-engine figures (``parley bench engines``): what the tests prove without a clock, timed.

- **Offline voices** (Piper, SVOX Pico, eSpeak NG): first audio and real-time factor of a short
  sentence; the event loop's lateness while a long text is synthesized on the worker thread
  (an engine that holds the GIL shows here); after a reply is closed mid-text, how long
  ``aclose`` took and when the synthesis worker was free again.
- **Smart Turn**: the time one end-of-turn check takes on 5 s of speech.
- **Cloud adapters** (``assistant.bench.cloud``): each adapter's added latency over a local
  server speaking its protocol.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np

from assistant.bench.loopmon import LoopMonitor

ROOT = Path(__file__).resolve().parents[2]
SHORT = "The quick brown fox jumps over the lazy dog near the river."
#: (voice, language, a text long enough to take a while).
VOICES: tuple[tuple[str | None, str, str], ...] = (
    (None, "en", "This is a long answer that keeps going for quite a while, and then some. " * 6),
    ("pico:de-DE", "de", "Das ist ein sehr langer Satz über das Wetter von morgen. " * 20),
    ("espeak:fr", "fr", "Ceci est une phrase assez longue sur le temps de demain. " * 60),
)


async def _pieces(*texts: str) -> AsyncIterator[str]:
    for text in texts:
        yield text


async def _voice(voice: str | None, language: str, long_text: str) -> str:
    from assistant.engines.local.tts import LocalTTS

    tts = LocalTTS()
    try:
        await tts.warm_up(voice=voice, language=language)
        start = time.perf_counter()
        first = 0.0
        audio = 0.0
        async for chunk in tts.stream(_pieces(SHORT), voice=voice, language=language):
            if not first:
                first = time.perf_counter() - start
            audio += chunk.duration
        rtf = (time.perf_counter() - start) / audio if audio else float("nan")

        monitor = LoopMonitor()
        monitor.start()
        async for _ in tts.stream(_pieces(long_text), voice=voice, language=language):
            pass
        await monitor.stop()

        stream = tts.stream(_pieces(long_text), voice=voice, language=language)
        await anext(stream)
        start = time.perf_counter()
        await stream.aclose()
        closed = time.perf_counter() - start
        await asyncio.get_running_loop().run_in_executor(tts._worker, lambda: None)
        free = time.perf_counter() - start
    finally:
        tts.close()
    return (
        f"  {voice or 'piper (default)':<16}{first * 1000:>9.0f}ms{rtf:>7.3f}"
        f"{monitor.percentile(95):>9.1f}ms{monitor.worst:>8.1f}ms"
        f"{closed * 1000:>9.1f}ms{free * 1000:>9.1f}ms"
    )


def voices() -> int:
    print("offline voices", flush=True)
    print(
        f"  {'voice':<16}{'first audio':>11}{'RTF':>7}{'lag p95':>11}{'worst':>10}"
        f"{'aclose':>11}{'stopped':>11}"
    )
    failed = 0
    for voice, language, text in VOICES:
        try:
            print(asyncio.run(_voice(voice, language, text)), flush=True)
        except Exception as exc:
            print(f"  {voice or 'piper (default)':<16} failed: {exc}", flush=True)
            failed = 1
    print(
        "  first audio and RTF: a 12-word sentence; lag: the event loop's lateness during a long"
        " text; aclose / stopped: closing a reply mid-text, and the worker free again"
    )
    return failed


def smart_turn(calls: int = 20) -> int:
    from assistant.audio.smart_turn import SmartTurn, smart_turn_available
    from assistant.audio.wav import read_wav

    print("Smart Turn", flush=True)
    if not smart_turn_available():
        print("  not installed")
        return 0
    model = SmartTurn()
    model.load()
    pcm, _ = read_wav(ROOT / "tests" / "data" / "speech" / "librivox_austen_0890.wav")
    noise = np.random.default_rng(7).normal(0.0, 20.0, int(0.2 * 16_000)).astype(np.int16)
    pcm = np.concatenate([pcm, noise])
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        model.end_probability(pcm)
        times.append(time.perf_counter() - start)
    median = statistics.median(times) * 1000
    print(f"  one check on 5 s of speech: median {median:.0f} ms, best {min(times) * 1000:.0f} ms")
    return 0


def main(quick: bool = False) -> int:
    from assistant.bench.cloud import report

    print("parley bench engines", flush=True)
    failed = voices()
    print()
    failed |= smart_turn(5 if quick else 20)
    print()
    failed |= report(3 if quick else 10)
    return failed
