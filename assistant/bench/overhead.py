"""How much latency does the orchestration itself add to a turn?

Fake engines with known delays run many push-to-talk turns through the app as it is assembled
for the window (``Assistant``: capture chain, session, text splitter, player), with a program
as the microphone and a virtual device rendering as soon as audio exists. The added latency is
voice-to-voice minus the time the engines actually took (each fake engine measures its own),
broken down by hop; the loop monitor reports event-loop stalls.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from assistant.app import Assistant
from assistant.audio.frames import FRAME_SAMPLES, AudioFrame
from assistant.audio.player import VirtualPlayer
from assistant.audio.push import PushSource
from assistant.bench.loopmon import LoopMonitor
from assistant.config import Settings
from assistant.engines.fake import FakeLLM, FakeSTT, FakeTTS
from assistant.events import AppEvent, TurnFinished
from assistant.history import TurnRecord


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    stt_final: float
    llm_ttft: float
    tts_first_audio: float


SCENARIOS = (
    Scenario("zero-latency engines", 0.0, 0.0, 0.0),
    Scenario("fixed latencies (STT 100, LLM 200, TTS 80 ms)", 0.1, 0.2, 0.08),
)


def _speech_frames(seconds: float) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    n = int(seconds * 16_000 / FRAME_SAMPLES)
    return [(rng.standard_normal(FRAME_SAMPLES) * 3000).astype(np.int16) for _ in range(n)]


#: Hops of a turn: (label, from mark, to mark, engine delay list that the hop contains).
HOPS = (
    ("release→final", "speech_end", "stt_final", "stt"),
    ("final→request", "stt_final", "llm_request", None),
    ("request→token", "llm_request", "llm_first_token", "llm"),
    ("token→piece", "llm_first_token", "first_text_to_tts", None),
    ("piece→audio", "first_text_to_tts", "tts_first_audio", "tts"),
    ("audio→device", "tts_first_audio", "playback_start", None),
)


async def run_scenario(
    scenario: Scenario, turns: int
) -> tuple[list[float], dict[str, list[float]], LoopMonitor]:
    stt = FakeSTT(final_delay=scenario.stt_final)
    llm = FakeLLM(ttft=scenario.llm_ttft, tokens_per_second=0)
    tts = FakeTTS(first_audio_delay=scenario.tts_first_audio, realtime_factor=0.0)
    microphone = PushSource()
    added: list[float] = []
    hops: dict[str, list[float]] = {label: [] for label, *_ in HOPS}
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp:
        app = Assistant(
            Settings(),
            history_dir=Path(tmp),
            engine_factory=lambda _s: (stt, llm, tts),
            source_factory=lambda _s: microphone,
            player_factory=lambda _s: VirtualPlayer(pace="fast"),
            persist=False,
        )
        finished: asyncio.Queue[TurnRecord] = asyncio.Queue()

        def on_event(event: AppEvent) -> None:
            if isinstance(event, TurnFinished):
                finished.put_nowait(event.turn)

        app.events.subscribe(on_event)
        await app.start()
        await app.wait_ready(30)
        frames = _speech_frames(0.4)
        monitor = LoopMonitor()
        monitor.start()
        for _ in range(turns):
            app.press_to_talk()
            for i, pcm in enumerate(frames):
                await microphone.push(AudioFrame(pcm, time.monotonic(), i * FRAME_SAMPLES / 16_000))
            app.release_to_talk()
            record = await asyncio.wait_for(finished.get(), 30)
            v2v = record.timeline.get("voice_to_voice_ms")
            if isinstance(v2v, int | float):
                # Subtract what the engines really took (timers wake a little late), so only
                # the orchestration's own work remains.
                engines_ms = 1000.0 * (
                    stt.final_delays[-1] + llm.first_token_delays[-1] + tts.first_audio_delays[-1]
                )
                added.append(v2v - engines_ms)
                marks = record.timeline["marks_ms"]
                inside = {
                    "stt": stt.final_delays[-1],
                    "llm": llm.first_token_delays[-1],
                    "tts": tts.first_audio_delays[-1],
                }
                for label, start, end, engine in HOPS:
                    engine_ms = inside[engine] * 1000.0 if engine else 0.0
                    hops[label].append(marks[end] - marks[start] - engine_ms)
            await app.wait_idle(10)
        await monitor.stop()
        await app.close()
    return added, hops, monitor


def main(turns: int = 200) -> int:
    print(f"parley bench overhead: {turns} push-to-talk turns per scenario, fake engines")
    print(
        f"{'scenario':<48} {'added p50':>10} {'added p99':>10} {'stall p99':>10} {'stall max':>10}"
    )
    for scenario in SCENARIOS:
        added, hops, monitor = asyncio.run(run_scenario(scenario, turns))
        if not added:
            print(f"{scenario.name:<48} no turn produced audio")
            return 1
        a = np.array(added)
        print(
            f"{scenario.name:<48} {np.percentile(a, 50):>8.2f}ms {np.percentile(a, 99):>8.2f}ms "
            f"{monitor.percentile(99):>8.2f}ms {monitor.worst:>8.2f}ms"
        )
        detail = ", ".join(
            f"{label} {np.percentile(v, 50):.2f}/{np.percentile(v, 99):.2f}"
            for label, v in hops.items()
        )
        print(f"    by hop, p50/p99 ms: {detail}")
    print("added = voice-to-voice minus the time spent inside the engines; stall = loop lateness")
    return 0
