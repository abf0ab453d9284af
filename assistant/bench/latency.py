"""Voice-to-voice latency of the real engines, through ``parley talk``'s path at real-time pace.

Utterances in English, Spanish, German and French are spoken by the offline voices, plus real
human recordings from the test data; each is run push-to-talk and hands-free through the same
session, capture and player code as the app. Prints per-stage figures, WER, underruns, peak RSS
and event-loop stalls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import psutil

from assistant.app import EngineSet
from assistant.app.turn_taking import make_vad
from assistant.audio.wav import resample, write_wav
from assistant.bench.loopmon import LoopMonitor
from assistant.bench.textnorm import word_error_rate
from assistant.config import Settings
from assistant.events import AppEvent, ErrorEvent
from assistant.talk import run_talk

ROOT = Path(__file__).resolve().parents[2]
REAL_SPEECH = ROOT / "tests" / "data" / "speech"

SYNTHESIZED: tuple[tuple[str, str], ...] = (
    ("en", "What is the capital of France?"),
    ("en", "Give me one tip for sleeping better."),
    ("en", "How many legs does a spider have?"),
    ("es", "¿Cuál es la capital de España?"),
    ("es", "Dime algo interesante sobre la luna."),
    ("de", "Was ist die Hauptstadt von Deutschland?"),
    ("de", "Erzähl mir etwas über Katzen."),
    ("fr", "Quelle est la capitale de l'Italie ?"),
    ("fr", "Donne-moi une idée de dîner rapide."),
)

STAGES = ("stt_final", "llm_first_token", "first_text_to_tts", "tts_first_audio", "voice_to_voice")


@dataclass(slots=True)
class Utterance:
    path: Path
    language: str
    reference: str
    real: bool


@dataclass(slots=True)
class ModeResult:
    stages: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    refs: dict[str, list[str]] = field(default_factory=dict)
    hyps: dict[str, list[str]] = field(default_factory=dict)
    real_refs: list[str] = field(default_factory=list)
    real_hyps: list[str] = field(default_factory=list)
    underruns: int = 0
    failures: list[str] = field(default_factory=list)
    turns: int = 0


async def synthesize(directory: Path, quick: bool) -> list[Utterance]:
    """The utterances spoken by the project's own offline voices (Piper, Pico), 16 kHz WAVs."""
    from assistant.engines.local.tts import LocalTTS

    chosen = SYNTHESIZED
    if quick:
        seen: set[str] = set()
        chosen = tuple(u for u in SYNTHESIZED if not (u[0] in seen or seen.add(u[0])))  # type: ignore[func-returns-value]
    tts = LocalTTS()
    out = []
    for i, (language, text) in enumerate(chosen):

        async def one(text: str = text) -> AsyncIterator[str]:
            yield text

        chunks = [c async for c in tts.stream(one(), voice=None, language=language)]
        pcm = resample(np.concatenate([c.pcm for c in chunks]), chunks[0].sample_rate, 16_000)
        silence = np.zeros(int(0.4 * 16_000), np.int16)
        wav = directory / f"{language}-{i}.wav"
        write_wav(wav, np.concatenate([silence, pcm, silence[: int(0.25 * 16_000)]]), 16_000)
        out.append(Utterance(wav, language, text, real=False))
    tts.close()
    return out


def real_recordings(quick: bool) -> list[Utterance]:
    """Real read speech with reference transcripts (tests/data/speech/transcripts.json)."""
    index = REAL_SPEECH / "transcripts.json"
    if not index.exists():
        return []
    entries = json.loads(index.read_text(encoding="utf-8"))
    out = [
        Utterance(REAL_SPEECH / e["file"], e.get("language", "en"), e["text"], real=True)
        for e in entries
        if (REAL_SPEECH / e["file"]).exists()
    ]
    return out[:2] if quick else out


class RssSampler:
    """Peak resident memory of this process plus its children (llama-server)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.2):
            total = 0
            for p in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
            self.peak = max(self.peak, total)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def run(quick: bool) -> int:
    settings = Settings()
    with tempfile.TemporaryDirectory(prefix="parley-latency-") as tmp:
        utterances = await synthesize(Path(tmp), quick) + real_recordings(quick)
        engine_set = EngineSet.build(settings)
        engines = (engine_set.stt, engine_set.llm, engine_set.tts)
        print("loading engines…", flush=True)
        started = time.monotonic()
        problems: list[str] = []

        def note(event: AppEvent) -> None:
            if isinstance(event, ErrorEvent):
                problems.append(event.message)

        if not await engine_set.warm_up(note):
            print(f"parley bench latency: {problems[0]}", flush=True)
            await engine_set.aclose()
            return 1
        print(f"engines ready in {time.monotonic() - started:.1f} s", flush=True)
        vad = make_vad(settings)
        results: dict[str, ModeResult] = {"ptt": ModeResult(), "vad": ModeResult()}
        monitor = LoopMonitor()
        with RssSampler() as rss:
            # One unmeasured turn so caches and prompt processing are warm.
            await run_talk(utterances[0].path, settings=settings, engines=engines, vad=vad)
            monitor.start()
            for mode in ("ptt", "vad"):
                for utt in utterances:
                    await _one(utt, mode, settings, engines, vad, results[mode])
            await monitor.stop()
        await engine_set.aclose()
    _print(results, rss.peak, monitor, len(utterances))
    return 0


async def _one(
    utt: Utterance,
    mode: Literal["ptt", "vad"],
    base: Settings,
    engines: Any,
    vad: Any,
    out: ModeResult,
) -> None:
    settings = Settings(language=utt.language, turn_mode=mode)
    settings.vad = base.vad
    try:
        result = await run_talk(
            utt.path, settings=settings, engines=engines, vad=vad, pace="realtime"
        )
    except Exception as exc:
        out.failures.append(f"{utt.path.name} ({mode}): {exc}")
        return
    out.underruns += result.underruns
    out.failures.extend(f"{utt.path.name} ({mode}): {e}" for e in result.errors)
    if not result.turns:
        out.failures.append(f"{utt.path.name} ({mode}): no turn")
        return
    turn = result.turns[0]
    out.turns += 1
    for stage in STAGES:
        value = turn.timeline.get("stages_ms", {}).get(stage)
        if value is not None:
            out.stages[stage].append(float(value))
    hypothesis = " ".join(t.user_text for t in result.turns)
    if utt.real:
        out.real_refs.append(utt.reference)
        out.real_hyps.append(hypothesis)
    else:
        out.refs.setdefault(utt.language, []).append(utt.reference)
        out.hyps.setdefault(utt.language, []).append(hypothesis)
    print(
        f"  [{mode}] {utt.path.name}: “{hypothesis}” → {turn.timeline.get('voice_to_voice_ms')} ms",
        flush=True,
    )


def _pct(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q):7.0f}" if values else "      -"


def _print(results: dict[str, ModeResult], peak_rss: int, monitor: LoopMonitor, n: int) -> None:
    print()
    print(f"parley bench latency — {n} utterances per mode, real-time pace, local engines")
    header = f"{'mode':<12}{'turns':>6}" + "".join(f"{s + ' p50/p90':>28}" for s in STAGES)
    print(header)
    for mode, r in results.items():
        cells = "".join(
            f"{_pct(r.stages[s], 50)} /{_pct(r.stages[s], 90)} ms".rjust(28) for s in STAGES
        )
        print(f"{'push-to-talk' if mode == 'ptt' else 'hands-free':<12}{r.turns:>6}{cells}")
    print()
    for mode, r in results.items():
        wers = ", ".join(
            f"{lang} {word_error_rate(r.refs[lang], r.hyps[lang], lang) * 100:.1f}%"
            for lang in sorted(r.refs)
        )
        real = "no real recordings found"
        if r.real_refs:
            real_wer = word_error_rate(r.real_refs, r.real_hyps) * 100
            real = f"{real_wer:.1f}% on {len(r.real_refs)} real English recordings"
        print(f"WER {mode}: synthesized {wers}; {real}")
        print(f"underruns {mode}: {r.underruns}")
        for failure in r.failures:
            print(f"FAILED {mode}: {failure}")
    print(f"peak RSS (Parley + llama-server): {peak_rss / 2**30:.2f} GiB")
    print(f"event-loop stall p99: {monitor.percentile(99):.1f} ms (worst {monitor.worst:.1f} ms)")


def main(quick: bool = False) -> int:
    return asyncio.run(run(quick))
