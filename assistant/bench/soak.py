"""A long conversation under load: does anything grow, leak, stall, or go missing?

``parley bench soak`` holds 200 mixed turns through ``Assistant`` — push-to-talk, typed
messages, barge-ins (talking over a reply), and injected faults (a language model that fails
before answering, a voice that breaks off mid-reply, a history write that fails once) — on the
scripted engines, with a virtual speaker playing in real time. Every 20 turns it samples the
process: resident memory, Python's traced memory, asyncio tasks, threads, open file
descriptors, event-loop stalls, and the turns written to the conversation file. The invariants
of ``assistant.bench.invariants`` are checked throughout.

The first two samples' turns warm up (every kind of turn and fault has run by then; first-use
caches fill); growth and stalls are judged from there on. It fails when traced memory grows by
more than 20 KB per turn, when
tasks, threads or file descriptors are left over after the app closed (the loop's own default
executor threads excepted: they belong to the loop, not to the conversation), when the file
holds a different number of turns than were finished, when the loop stalls more than 10 ms at
the 99th percentile, or when an invariant breaks.

``--local``: 30 turns on the real offline engines instead (spoken turns from the recordings in
``tests/data/speech``, so it needs a source checkout); not part of the test suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import tempfile
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from assistant import durable, history
from assistant.app import Assistant, EngineSet
from assistant.audio.frames import CAPTURE_RATE, FRAME_SAMPLES, AudioFrame
from assistant.audio.player import VirtualPlayer
from assistant.audio.push import PushSource
from assistant.bench.invariants import Invariants
from assistant.bench.loopmon import LoopMonitor
from assistant.config import Settings
from assistant.engines.base import ChatRequest, EngineError, LLMEvent
from assistant.engines.fake import FakeLLM, FakeSTT, FakeTTS
from assistant.events import AppEvent, State, TurnFinished

ROOT = Path(__file__).resolve().parents[2]
GROWTH_LIMIT_KB = 20.0
STALL_LIMIT_MS = 10.0
KINDS = ("talk", "talk", "type", "barge-in", "talk", "type", "llm fault", "tts fault", "disk")


class FlakyLLM:
    """A language model that fails before its first token when told to, once."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.fail_next = False

    async def stream(self, request: ChatRequest) -> AsyncIterator[LLMEvent]:
        if self.fail_next:
            self.fail_next = False
            raise EngineError("the language model is unreachable (injected)", engine=self.name)
        async for event in self.inner.stream(request):
            yield event

    async def warm_up(self) -> None:
        await self.inner.warm_up()


class FlakyTTS:
    """A voice that breaks off after its first chunk when told to, once."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.fail_next = False

    async def stream(self, pieces: Any, *, voice: str | None, language: str) -> Any:
        failing, self.fail_next = self.fail_next, False
        produced = 0
        async for chunk in self.inner.stream(pieces, voice=voice, language=language):
            if failing and produced >= 1:
                raise EngineError("the voice broke off (injected)", engine=self.name)
            produced += 1
            yield chunk

    def voices(self, language: str | None = None) -> Any:
        return self.inner.voices(language)

    async def warm_up(self) -> None:
        await self.inner.warm_up()


def _short_reply(request: ChatRequest) -> str:
    return "Sure, here is a short answer for you."


@dataclass
class Sample:
    turns: int
    rss_mb: float
    traced_kb: float
    tasks: int
    threads: int
    fds: int
    stall_p99_ms: float
    lines: int


@dataclass
class SoakReport:
    samples: list[Sample] = field(default_factory=list)
    finished: int = 0
    lines: int = 0
    stall_p99_ms: float = 0.0
    growth_kb_per_turn: float = 0.0
    leftovers: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    errors: int = 0

    def failures(self) -> list[str]:
        out = []
        if self.growth_kb_per_turn > GROWTH_LIMIT_KB:
            out.append(f"memory grows {self.growth_kb_per_turn:.1f} KB/turn")
        out.extend(f"left over after close: {what}" for what in self.leftovers)
        if self.lines != self.finished:
            out.append(f"{self.lines} turns in the file, {self.finished} finished")
        if self.stall_p99_ms > STALL_LIMIT_MS:
            out.append(f"loop stall p99 {self.stall_p99_ms:.1f} ms")
        out.extend(f"invariant: {v}" for v in self.violations)
        return out


def _history_lines(directory: Path) -> int:
    lines = 0
    for path in directory.glob("*.jsonl"):
        lines += sum(b'"type": "turn"' in line for line in path.read_bytes().splitlines())
    return lines


def _threads() -> set[threading.Thread]:
    """Live threads, the loop's default executor's excepted (it belongs to the loop)."""
    return {t for t in threading.enumerate() if not t.name.startswith("asyncio_")}


class Soak:
    def __init__(self, directory: Path, *, local: bool) -> None:
        self.directory = directory
        self.local = local
        self.microphone = PushSource()
        self.invariants = Invariants()
        self.finished = 0
        self.errors = 0
        self._changes = asyncio.Event()
        self._rng = np.random.default_rng(3)
        self._frames = 0
        self._speech = _recordings() if local else []
        self._fakes: list[Any] = []
        if local:
            settings = Settings()
            self.llm: FlakyLLM | None = None
            self.tts: FlakyTTS | None = None
            factory: Callable[[Settings], EngineSet] = EngineSet.build
        else:
            settings = Settings(stt="fake", llm="fake", tts="fake")
            self.llm = FlakyLLM(FakeLLM(_short_reply, ttft=0.02, tokens_per_second=400))
            self.tts = FlakyTTS(
                FakeTTS(first_audio_delay=0.01, chars_per_second=120, realtime_factor=0.0)
            )
            stt = FakeSTT(final_delay=0.02)
            self._fakes = [stt, self.llm.inner, self.tts.inner]
            engines = EngineSet(stt, self.llm, self.tts)
            factory = lambda _s: engines  # noqa: E731
        self.app = Assistant(
            settings,
            history_dir=directory,
            engine_factory=factory,
            source_factory=lambda _s: self.microphone,
            player_factory=lambda _s: self.invariants.tap(
                VirtualPlayer(pace="realtime", record=False)
            ),
            persist=False,
        )
        self.invariants.watch(self.app)
        self.app.events.subscribe(self._on_event)

    def forget_fake_records(self) -> None:
        """The scripted engines keep every request and delay for benchmarks; that memory is
        theirs, not the conversation's."""
        for fake in self._fakes:
            for name in ("requests", "first_token_delays", "first_audio_delays", "final_delays"):
                records = getattr(fake, name, None)
                if isinstance(records, list):
                    records.clear()

    def _on_event(self, event: AppEvent) -> None:
        if isinstance(event, TurnFinished):
            self.finished += 1
        elif type(event).__name__ == "ErrorEvent":
            self.errors += 1
        self._changes.set()

    async def _until(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while not predicate():
            self._changes.clear()
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the soak waited {timeout:g} s in state {self.app.state}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changes.wait(), min(left, 0.05))

    async def _speak(self) -> None:
        if self._speech:
            pcm = self._speech[self._frames % len(self._speech)]
            self._frames += 1
            for i in range(0, len(pcm) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
                chunk = pcm[i : i + FRAME_SAMPLES]
                await self.microphone.push(AudioFrame(chunk, time.monotonic(), i / CAPTURE_RATE))
            return
        for i in range(10):
            pcm = (self._rng.standard_normal(FRAME_SAMPLES) * 3000).astype(np.int16)
            await self.microphone.push(AudioFrame(pcm, time.monotonic(), i * 0.032))

    async def _talk(self) -> None:
        if self.app.press_to_talk():
            await self._speak()
            self.app.release_to_talk()

    async def turn(self, kind: str) -> None:
        """One turn of ``kind`` (a barge-in finishes two: the one talked over, and the new)."""
        target = self.finished + (2 if kind == "barge-in" else 1)
        if kind == "llm fault" and self.llm is not None:
            self.llm.fail_next = True
        if kind == "tts fault" and self.tts is not None:
            self.tts.fail_next = True
        undo: Callable[[], None] | None = None
        if kind == "disk":
            undo = _fail_one_write()
        try:
            if kind in ("type", "llm fault"):
                self.app.submit_text("How do I boil an egg?")
            elif kind == "barge-in":
                self.app.submit_text("Tell me a long story.")
                await self._until(lambda: self.app.state is State.SPEAKING)
                await self._talk()  # talking over the reply stops it at once
            else:
                await self._talk()
            await self._until(lambda: self.finished >= target)
            await self._until(lambda: self.app.state is State.LISTENING)
        finally:
            if undo is not None:
                undo()


def _fail_one_write() -> Callable[[], None]:
    """The next history write fails with a full disk (the one after writes both turns)."""
    append = history.append_lines
    failed = [False]

    def once(path: Path, data: bytes) -> None:
        if not failed[0]:
            failed[0] = True
            raise OSError(28, "No space left on device")
        append(path, data)

    history.append_lines = once

    def undo() -> None:
        history.append_lines = durable.append_lines

    return undo


def _recordings() -> list[np.ndarray]:
    from assistant.audio.wav import read_wav, resample

    out = []
    for path in sorted((ROOT / "tests" / "data" / "speech").glob("*.wav")):
        pcm, rate = read_wav(path)
        out.append(resample(pcm, rate, CAPTURE_RATE))
    if not out:
        raise SystemExit("parley bench soak --local needs tests/data/speech (a source checkout)")
    return out


async def soak(turns: int, *, local: bool = False, every: int = 20) -> SoakReport:
    report = SoakReport()
    me = psutil.Process()
    tracemalloc.start()
    try:
        with tempfile.TemporaryDirectory(prefix="parley-soak-") as tmp:
            directory = Path(tmp)
            # Once through start and close first: what the process sets up once for good (the
            # audio processing library's runtime) is there before the counting starts.
            warm = Soak(directory / "warm-up", local=False)
            await warm.app.start()
            await warm.app.wait_ready(30)
            await warm.app.close()
            threads_before = _threads()
            fds_before = me.num_fds()
            run = Soak(directory, local=local)
            await run.app.start()
            await run.app.wait_ready(300 if local else 30)
            monitor = LoopMonitor()
            monitor.start()
            rng = random.Random(7)
            done = 0
            stalls: list[float] = []
            window: list[float] = []
            kinds = KINDS if not local else ("talk", "type", "barge-in")
            while run.finished < turns:
                await run.turn(rng.choice(kinds))
                if run.finished >= (done + 1) * every or run.finished >= turns:
                    done = run.finished // every
                    run.forget_fake_records()
                    window = list(monitor.lateness_ms)
                    monitor.lateness_ms.clear()
                    if done > 2:
                        stalls.extend(window)
                    report.samples.append(
                        Sample(
                            run.finished,
                            me.memory_info().rss / 1e6,
                            tracemalloc.get_traced_memory()[0] / 1024,
                            len(asyncio.all_tasks()),
                            threading.active_count(),
                            me.num_fds(),
                            float(np.percentile(window, 99)) if window else 0.0,
                            _history_lines(directory),
                        )
                    )
            await monitor.stop()
            report.stall_p99_ms = float(np.percentile(stalls or window or [0.0], 99))
            await run.app.close()
            report.finished = run.finished
            report.errors = run.errors
            report.lines = _history_lines(directory)
            report.violations = run.invariants.violations()
            await asyncio.sleep(0.2)  # daemon threads finishing their last close
            left_tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if left_tasks:
                report.leftovers.append(f"{len(left_tasks)} tasks ({left_tasks[0].get_name()})")
            left_threads = _threads() - threads_before
            if left_threads:
                names = ", ".join(sorted(t.name for t in left_threads))
                report.leftovers.append(f"{len(left_threads)} threads ({names})")
            if me.num_fds() > fds_before:
                report.leftovers.append(f"{me.num_fds() - fds_before} file descriptors")
    finally:
        tracemalloc.stop()
    if len(report.samples) >= 2:
        first, last = report.samples[min(1, len(report.samples) - 2)], report.samples[-1]
        if last.turns > first.turns:
            report.growth_kb_per_turn = (last.traced_kb - first.traced_kb) / (
                last.turns - first.turns
            )
    return report


def table(report: SoakReport) -> str:
    """The samples and the totals, as ``parley bench soak`` prints them."""
    lines = [
        f"{'turns':>5} {'rss MB':>8} {'traced KB':>10} {'tasks':>6} {'threads':>8} {'fds':>5} "
        f"{'stall p99':>10} {'lines':>6}"
    ]
    for s in report.samples:
        lines.append(
            f"{s.turns:>5} {s.rss_mb:>8.1f} {s.traced_kb:>10.0f} {s.tasks:>6} {s.threads:>8} "
            f"{s.fds:>5} {s.stall_p99_ms:>8.2f}ms {s.lines:>6}"
        )
    lines.append(
        f"growth {report.growth_kb_per_turn:.2f} KB/turn (limit {GROWTH_LIMIT_KB:g}); stall p99 "
        f"{report.stall_p99_ms:.2f} ms (limit {STALL_LIMIT_MS:g}); {report.lines} lines for "
        f"{report.finished} turns; {report.errors} errors shown (injected faults)"
    )
    return "\n".join(lines)


def main(turns: int = 200, *, local: bool = False) -> int:
    if local:
        turns = min(turns, 30)
    every = 10 if local else 20
    engines = "the offline engines" if local else "the scripted engines"
    print(f"parley bench soak: {turns} mixed turns on {engines}, sampled every {every} turns")
    report = asyncio.run(soak(turns, local=local, every=every))
    print(table(report))
    failures = report.failures()
    for failure in failures:
        print(f"FAIL: {failure}")
    if not failures:
        print("no growth, no leftovers, every turn on disk, invariants held")
    return 1 if failures else 0
