"""Voice-to-voice latency of the real engines, through ``parley talk``'s path at real-time pace.

Questions in English, Spanish, German and French are spoken by the offline voices, plus real
human recordings from the test data; each is run push-to-talk and hands-free through the same
session, capture and player code as the app. Prints per-stage figures for each mode, where the
time goes (marks from the end of speech), WER, output underruns, peak RSS, event-loop stalls,
the time from app start to ready and the first (cold) reply, how often a reply prepared ahead
was used or thrown away, barge-in onset → output silent, how many answers hold their expected
fact, and how well the spoken replies can be understood (transcribed back).

``compare``: the same turns with the speed levers off ("before") and on ("after"), alternating
turn by turn so a busy machine slows both alike; ratios are printed beside the figures.
``ablate``: "after" against "after" without one lever. ``curve``: hands-free turns over the
values of one dial (its latency; the cut-offs it causes are ``parley bench turns``' figures).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import psutil

from assistant.app.turn_taking import make_vad
from assistant.audio.wav import read_wav, resample
from assistant.bench.bargein import Trial
from assistant.bench.loopmon import LoopMonitor
from assistant.bench.speech import (
    BARGE_IN,
    LONG_ANSWER,
    QUESTIONS,
    Utterance,
    quick_set,
    real_recordings,
    synthesize,
)
from assistant.bench.textnorm import word_error_rate
from assistant.bench.variants import AFTER, BEFORE, Variant, build_engines, parse_curve
from assistant.config import Settings
from assistant.engines.base import LanguageModel, SpeechToText, TextToSpeech, close_engine
from assistant.events import AppEvent, Loading, Ready
from assistant.talk import TalkResult, run_talk
from assistant.timeline import MARKS, Mark

Mode = Literal["ptt", "vad"]
Engines = tuple[SpeechToText, LanguageModel, TextToSpeech]

STAGES = ("stt_final", "llm_first_token", "first_text_to_tts", "tts_first_audio", "voice_to_voice")
#: Marks on the way to the first sound, in ms from the end of speech ("where the time goes").
PATH = tuple(
    m.value for m in MARKS[MARKS.index(Mark.STT_FINAL) : MARKS.index(Mark.PLAYBACK_START) + 1]
)
MODE_NAMES = {"ptt": "push-to-talk", "vad": "hands-free"}
BARGE_IN_TRIALS = (2, 4)  # quick, full


@dataclass(slots=True)
class ModeResult:
    stages: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    marks: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in PATH})
    refs: dict[str, list[str]] = field(default_factory=dict)
    hyps: dict[str, list[str]] = field(default_factory=dict)
    real_refs: list[str] = field(default_factory=list)
    real_hyps: list[str] = field(default_factory=list)
    underruns: int = 0
    failures: list[str] = field(default_factory=list)
    turns: int = 0
    #: Turns whose reply was prepared before the turn ended and then played.
    speculated: int = 0
    #: Turns for which replies were prepared ahead and thrown away (and how many in all).
    dropped_turns: int = 0
    dropped: int = 0
    #: Prompt tokens of each reply's request, and those the model had not read ahead.
    prompt_tokens: list[float] = field(default_factory=list)
    unread_tokens: list[float] = field(default_factory=list)
    #: The routing calls' time of each reply that made them (a tool chosen before answering).
    router_ms: list[float] = field(default_factory=list)
    #: For each question with an expected fact: whether the answer held it.
    facts: list[bool] = field(default_factory=list)
    #: (what the reply said, what it sounded like: the recording of the turn).
    spoken: list[tuple[str, Path]] = field(default_factory=list)


@dataclass(slots=True)
class VariantResult:
    variant: Variant
    modes: dict[str, ModeResult] = field(default_factory=dict)
    ready_ms: float | None = None
    #: Each engine's own start (ms from app start), in the order they were ready.
    engines_ready_ms: dict[str, float] = field(default_factory=dict)
    cold_ms: float | None = None
    barge_ms: list[float] = field(default_factory=list)
    barge_failures: int = 0
    peak_rss: int = 0
    peak_server_rss: int = 0
    reply_wer: float | None = None


class RssSampler:
    """Peak resident memory of this process plus each mix's llama-server(s)."""

    def __init__(self, groups: dict[str, Callable[[], Iterable[int]]]) -> None:
        self.peaks = dict.fromkeys(groups, 0)
        #: The peak of the servers alone.
        self.server_peaks = dict.fromkeys(groups, 0)
        self._groups = groups
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.2):
            with contextlib.suppress(psutil.Error):
                own = me.memory_info().rss
            for name, pids in self._groups.items():
                servers = 0
                for pid in pids():
                    with contextlib.suppress(psutil.Error):
                        servers += psutil.Process(pid).memory_info().rss
                self.peaks[name] = max(self.peaks[name], own + servers)
                self.server_peaks[name] = max(self.server_peaks[name], servers)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _server_pids(engines: Engines) -> list[int]:
    server = getattr(engines[1], "server", None)
    pid = getattr(server, "pid", None)
    return [pid] if isinstance(pid, int) else []


# ------------------------------------------------------------------------------------- running


@dataclass(slots=True)
class Plan:
    variants: list[Variant]
    modes: tuple[Mode, ...] = ("ptt", "vad")
    quick: bool = False
    #: Measure cold start, barge-in and reply intelligibility (not for a dial curve).
    extras: bool = True
    #: Times each utterance is run per mode and mix (more samples on a noisy machine).
    repeat: int = 1


async def run(plan: Plan) -> int:
    with tempfile.TemporaryDirectory(prefix="parley-latency-") as tmp:
        directory = Path(tmp)
        questions = quick_set() if plan.quick else QUESTIONS
        print("speaking the questions…", flush=True)
        utterances = await synthesize(directory, questions) + real_recordings(plan.quick)
        long_answer, barge_in = await synthesize(
            directory, (LONG_ANSWER, BARGE_IN), lead=0.0, prefix="barge-in-"
        )
        vad = make_vad(Settings())
        engines = build_engines(plan.variants)
        results = {v.name: VariantResult(v) for v in plan.variants}
        monitor = LoopMonitor()
        groups: dict[str, Callable[[], Iterable[int]]] = {
            name: functools.partial(_server_pids, e) for name, e in engines.items()
        }
        try:
            with RssSampler(groups) as rss:
                for v in plan.variants:
                    print(f"starting [{v.name}] (cold)…", flush=True)
                    problems = await _cold_start(
                        v, engines[v.name], utterances[0], vad, results[v.name]
                    )
                    if problems:
                        print(f"parley bench latency: {problems[0]}", flush=True)
                        return 1
                # Every language's speech model, before any turn is timed.
                for stt, _llm, _tts in engines.values():
                    for language in sorted({u.language for u in utterances}):
                        await stt.warm_up(language)  # type: ignore[call-arg]
                monitor.start()
                for utt in [u for _ in range(plan.repeat) for u in utterances]:
                    for mode in plan.modes:
                        for v in plan.variants:
                            out = results[v.name].modes.setdefault(mode, ModeResult())
                            await _one(utt, mode, v, engines[v.name], vad, out, directory)
                if plan.extras:
                    trials = BARGE_IN_TRIALS[0 if plan.quick else 1]
                    for _ in range(trials):
                        for v in plan.variants:
                            await _barge_in(v, engines[v.name], vad, long_answer, barge_in,
                                            results[v.name])  # fmt: skip
                await monitor.stop()
            for name, peak in rss.peaks.items():
                results[name].peak_rss = peak
                results[name].peak_server_rss = rss.server_peaks[name]
        finally:
            for engine_set in engines.values():
                for engine in engine_set:
                    await close_engine(engine)
        if plan.extras:
            print("transcribing the spoken replies…", flush=True)
            await asyncio.to_thread(_reply_intelligibility, list(results.values()))
    _print(plan, list(results.values()), monitor, len(utterances))
    return 0


async def _cold_start(
    variant: Variant, engines: Engines, utt: Utterance, vad: Any, out: VariantResult
) -> list[str]:
    """App start → ready and the first reply, with engines nobody has warmed up yet (engines
    another mix shares are warm by then). Returns what went wrong, if the turn failed."""
    started = time.monotonic()
    ready: list[float] = []

    def note(event: AppEvent) -> None:
        if isinstance(event, Ready) and event.ready and not ready:
            ready.append(time.monotonic())
        elif isinstance(event, Loading) and event.fraction >= 1.0 and not ready:
            out.engines_ready_ms[event.component] = (time.monotonic() - started) * 1000.0

    result = await run_talk(
        utt.path,
        settings=variant.settings(utt.language, "ptt"),
        engines=engines,
        vad=vad,
        on_event=note,
        idle_timeout=300.0,
    )
    if ready:
        out.ready_ms = (ready[0] - started) * 1000.0
    if result.turns:
        out.cold_ms = result.turns[0].timeline.get("voice_to_voice_ms")
        for error in result.errors:
            print(f"  [{variant.name}] cold start: {error}", flush=True)
        return []
    return result.errors or ["the first turn gave no reply"]


async def _one(
    utt: Utterance,
    mode: Mode,
    variant: Variant,
    engines: Engines,
    vad: Any,
    out: ModeResult,
    directory: Path,
) -> None:
    settings = variant.settings(utt.language, mode)
    recording = directory / f"reply-{variant.name}-{mode}-{out.turns}-{utt.path.stem}.wav"
    try:
        result = await run_talk(
            utt.path,
            settings=settings,
            engines=engines,
            vad=vad,
            pace="realtime",
            output_path=recording,
        )
    except Exception as exc:
        out.failures.append(f"{utt.path.name} ({mode}): {exc}")
        return
    _collect(utt, mode, variant, result, out, recording)


def _collect(
    utt: Utterance,
    mode: Mode,
    variant: Variant,
    result: TalkResult,
    out: ModeResult,
    recording: Path,
) -> None:
    out.underruns += result.underruns
    out.failures.extend(f"{utt.path.name} ({mode}): {e}" for e in result.errors)
    if not result.turns:
        out.failures.append(f"{utt.path.name} ({mode}): no turn")
        return
    turn = result.turns[0]
    out.turns += 1
    timeline = turn.timeline
    for stage in STAGES:
        value = timeline.get("stages_ms", {}).get(stage)
        if value is not None:
            out.stages[stage].append(float(value))
    for mark in PATH:
        value = timeline.get("marks_ms", {}).get(mark)
        if value is not None:
            out.marks[mark].append(float(value))
    notes = timeline.get("notes", {})
    if isinstance(notes.get("prompt_tokens"), int):
        out.prompt_tokens.append(notes["prompt_tokens"])
        out.unread_tokens.append(notes["prompt_tokens"] - int(notes.get("cached_tokens", 0)))
    routing = notes.get("router_ms")
    if isinstance(routing, list) and routing:
        out.router_ms.append(float(sum(routing)))
    out.speculated += notes.get("speculation") == "used"
    dropped = int(notes.get("speculations_dropped", 0))
    out.dropped += dropped
    out.dropped_turns += dropped > 0
    hypothesis = " ".join(t.user_text for t in result.turns)
    if utt.real:
        out.real_refs.append(utt.reference)
        out.real_hyps.append(hypothesis)
    else:
        out.refs.setdefault(utt.language, []).append(utt.reference)
        out.hyps.setdefault(utt.language, []).append(hypothesis)
    answer = " ".join(t.assistant_text for t in result.turns)
    fact = utt.has_fact(answer)
    if fact is not None:
        out.facts.append(fact)
    if utt.language == "en" and len(result.turns) == 1 and turn.assistant_text:
        out.spoken.append((turn.assistant_text, recording))
    v2v = timeline.get("voice_to_voice_ms")
    shown = f"{v2v:.0f} ms" if isinstance(v2v, int | float) else "—"
    gaps = f", {result.underruns} underruns" if result.underruns else ""
    print(
        f"  [{mode} {variant.name}] {utt.path.name}: “{hypothesis}” → {shown}{gaps}; "
        f"“{answer[:60]}”",
        flush=True,
    )


async def _barge_in(
    variant: Variant,
    engines: Engines,
    vad: Any,
    question: Utterance,
    barge_in: Utterance,
    out: VariantResult,
) -> None:
    """Ask for a long answer hands-free and talk over it."""
    pcm, rate = read_wav(question.path)
    talk, talk_rate = read_wav(barge_in.path)
    trial = Trial(resample(pcm, rate, 16_000), resample(talk, talk_rate, 16_000))
    trial.begin()
    try:
        await run_talk(
            question.path,
            settings=variant.settings("en", "vad"),
            engines=engines,
            vad=vad,
            source=trial.source,
            speaker=trial.player,
            on_event=trial.on_event,
        )
    except Exception as exc:
        print(f"  [{variant.name}] barge-in failed: {exc}", flush=True)
        out.barge_failures += 1
        return
    measured = trial.result()
    if measured.onset_to_silent_ms is None or not measured.interrupted:
        out.barge_failures += 1
        print(f"  [{variant.name}] barge-in: the reply was not interrupted", flush=True)
        return
    out.barge_ms.append(measured.onset_to_silent_ms)
    print(
        f"  [{variant.name}] barge-in: silent {measured.onset_to_silent_ms:.0f} ms after onset",
        flush=True,
    )


def _reply_intelligibility(results: list[VariantResult]) -> None:
    """WER of each mix's English replies as heard, transcribed back by Whisper base."""
    from assistant.engines.local.stt import WhisperRunner

    runner = WhisperRunner("base", threads=2)
    for result in results:
        refs: list[str] = []
        hyps: list[str] = []
        for mode in result.modes.values():
            for text, path in mode.spoken:
                if not path.exists():
                    continue
                pcm, rate = read_wav(path)
                audio = resample(pcm, rate, 16_000).astype(np.float32) / 32768.0
                refs.append(text)
                hyps.append(runner.transcribe(audio, "en").text)
        result.reply_wer = word_error_rate(refs, hyps) if refs else None


# ------------------------------------------------------------------------------------ printing


def _pct(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q):7.0f}" if values else "      -"


def _p50(values: list[float]) -> float | None:
    return float(np.percentile(values, 50)) if values else None


def _ratio(after: float | None, before: float | None) -> str:
    if after is None or before is None or before <= 0:
        return "-"
    return f"{after / before:.2f}x"


def _ms(value: float | None) -> str:
    return f"{value:.0f} ms" if value is not None else "-"


def _print(plan: Plan, results: list[VariantResult], monitor: LoopMonitor, n: int) -> None:
    labelled = len(results) > 1
    width = 12 + (max(len(r.variant.name) for r in results) + 3 if labelled else 0)

    def label(mode: str, result: VariantResult) -> str:
        name = MODE_NAMES[mode]
        return f"{name} [{result.variant.name}]" if labelled else name

    print()
    print(f"parley bench latency — {n} utterances per mode, real-time pace, local engines")
    if labelled:
        print("mixes: " + "; ".join(f"{r.variant.name} = {_describe(r.variant)}" for r in results))
    header = f"{'mode':<{width}}{'turns':>6}" + "".join(f"{s + ' p50/p90':>28}" for s in STAGES)
    print(header)
    for mode in plan.modes:
        for r in results:
            m = r.modes.get(mode, ModeResult())
            cells = "".join(
                f"{_pct(m.stages[s], 50)} /{_pct(m.stages[s], 90)} ms".rjust(28) for s in STAGES
            )
            print(f"{label(mode, r):<{width}}{m.turns:>6}{cells}")
        if labelled:
            base = results[0].modes.get(mode, ModeResult())
            for r in results[1:]:
                m = r.modes.get(mode, ModeResult())
                cells = "".join(
                    _ratio(_p50(m.stages[s]), _p50(base.stages[s])).rjust(28) for s in STAGES
                )
                name = f"  p50 {r.variant.name}/{results[0].variant.name}"
                print(f"{name:<{width}}{'':>6}{cells}")
    print()
    print("where the time goes (p50 ms from the end of speech; negative: before it)")
    print(f"{'mode':<{width}}" + "".join(f"{m:>18}" for m in PATH))
    for mode in plan.modes:
        for r in results:
            m = r.modes.get(mode, ModeResult())
            cells = "".join(_pct(m.marks[k], 50).rjust(18) for k in PATH)
            unread = (
                f"   prompt p50 {_pct(m.unread_tokens, 50).strip()} of "
                f"{_pct(m.prompt_tokens, 50).strip()} tokens not read ahead"
                if m.prompt_tokens
                else ""
            )
            routing = (
                f"   tool routing p50 {_pct(m.router_ms, 50).strip()} ms"
                f" in {len(m.router_ms)}/{m.turns} turns"
                if m.router_ms
                else ""
            )
            print(f"{label(mode, r):<{width}}{cells}{unread}{routing}")
    print()
    for r in results:
        tag = f" [{r.variant.name}]" if labelled else ""
        for mode in plan.modes:
            m = r.modes.get(mode, ModeResult())
            wers = ", ".join(
                f"{lang} {word_error_rate(m.refs[lang], m.hyps[lang], lang) * 100:.1f}%"
                for lang in sorted(m.refs)
            )
            real = "no real recordings found"
            if m.real_refs:
                real_wer = word_error_rate(m.real_refs, m.real_hyps) * 100
                real = f"{real_wer:.1f}% on {len(m.real_refs)} real English recordings"
            print(f"WER {mode}{tag}: synthesized {wers}; {real}")
            print(f"underruns {mode}{tag}: {m.underruns}")
            turns = max(1, m.turns)
            print(
                f"speculation {mode}{tag}: used in {m.speculated}/{m.turns} turns "
                f"({100 * m.speculated / turns:.0f}%), thrown away in {m.dropped_turns}/{m.turns} "
                f"({100 * m.dropped_turns / turns:.0f}%; {m.dropped} replies)"
            )
            for failure in m.failures:
                print(f"FAILED {mode}{tag}: {failure}")
    for r in results:
        tag = f" [{r.variant.name}]" if labelled else ""
        facts = [f for m in r.modes.values() for f in m.facts]
        print(f"answers holding their expected fact{tag}: {sum(facts)}/{len(facts)}")
        if plan.extras:
            engines = ", ".join(f"{k} {v:.0f} ms" for k, v in r.engines_ready_ms.items())
            print(f"app start → ready to talk{tag}: {_ms(r.ready_ms)} ({engines})")
            print(f"first reply after the app starts (cold){tag}: {_ms(r.cold_ms)}")
            barge = (
                f"p50 {_pct(r.barge_ms, 50).strip()} / p90 {_pct(r.barge_ms, 90).strip()} ms "
                f"over {len(r.barge_ms)} trials"
                if r.barge_ms
                else "not measured"
            )
            if r.barge_failures:
                barge += f" ({r.barge_failures} trials failed)"
            print(f"barge-in onset → output silent{tag}: {barge}")
            wer = f"{r.reply_wer * 100:.1f}%" if r.reply_wer is not None else "-"
            print(f"spoken replies transcribed back (WER vs their text){tag}: {wer}")
        print(
            f"peak RSS (Parley + llama-server){tag}: {r.peak_rss / 2**30:.2f} GiB "
            f"(llama-server {r.peak_server_rss / 2**30:.2f} GiB)"
        )
    print(f"event-loop stall p99: {monitor.percentile(99):.1f} ms (worst {monitor.worst:.1f} ms)")


def _describe(variant: Variant) -> str:
    if variant.dials:
        return ", ".join(f"{k}={v}" for k, v in variant.dials)
    off = [name for name in variant.levers.names() if not getattr(variant.levers, name)]
    if not off:
        return "every lever on"
    if len(off) == len(variant.levers.names()):
        return "every lever off"
    return "without " + ", ".join(off)


def plan_for(
    *,
    quick: bool,
    compare: bool,
    ablate: list[str] | None,
    curve: str | None,
    repeat: int = 1,
) -> Plan:
    """The mixes a command line asks for (see the module docstring)."""
    if repeat < 1:
        raise ValueError(f"--repeat must be at least 1, got {repeat}")
    if curve:
        path, values = parse_curve(curve)
        variants = [Variant(f"{path}={v}", AFTER, ((path, v),)) for v in values]
        # A push-to-talk dial is measured push-to-talk, any other hands-free.
        modes: tuple[Mode, ...] = ("ptt",) if path.startswith("push_to_talk.") else ("vad",)
        return Plan(variants, modes=modes, quick=quick, extras=False, repeat=repeat)
    variants = [Variant("after", AFTER)]
    if compare:
        variants.insert(0, Variant("before", BEFORE))
    for lever in ablate or []:
        variants.append(Variant(f"no-{lever}", AFTER.without(lever)))
    return Plan(variants, quick=quick, repeat=repeat)


def main(
    quick: bool = False,
    *,
    compare: bool = False,
    ablate: list[str] | None = None,
    curve: str | None = None,
    repeat: int = 1,
) -> int:
    try:
        plan = plan_for(quick=quick, compare=compare, ablate=ablate, curve=curve, repeat=repeat)
    except ValueError as exc:
        print(f"parley bench latency: {exc}", flush=True)
        return 2
    return asyncio.run(run(plan))
