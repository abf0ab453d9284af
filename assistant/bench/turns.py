"""``parley bench turns``: what hands-free turn-taking does with pauses, backchannels and
barge-ins, with the local engines at real-time pace.

Every scenario of ``assistant.bench.turn_scripts`` is spoken by several offline voices
(``turn_audio``), fed through ``parley talk --turns vad``'s path (``run_talk``) and checked
against its script:

- **false cut-offs**: requests with a thinking pause in which Parley started answering before
  the user had finished;
- **false barge-ins**: backchannels, coughs and knocks over a reply that stopped it;
- **missed barge-ins**: requests and stop commands over a reply that did not stop it, or a
  request that then went unanswered;
- **phantom turns**: answers to something that was not a request (a backchannel, a cough, a
  knock, noise);
- **voice-to-voice** p50/p90 on finished questions.

Then each dial's trade-off: the signals of every judged pause are replayed through
``assistant.turns.judge.decide`` with the dial moved, giving the cut-offs and the finished
questions' latency it would have had (a cut-off: the turn would have ended before the user
went on).
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np

from assistant.app import EngineSet
from assistant.app.turn_taking import make_turn_model, make_vad
from assistant.bench import turn_scripts as scripts
from assistant.bench.speech import first_per_language
from assistant.bench.turn_audio import (
    RATE,
    VOICES,
    Scene,
    Span,
    SpanKind,
    Speaker,
    Timeline,
    Voice,
    cough,
    knock,
    with_noise,
)
from assistant.config import Settings, VadSettings, cache_dir
from assistant.engines.base import ChatRequest, Message, Prefillable, ScoresEndOfTurn
from assistant.events import (
    AppEvent,
    ErrorEvent,
    FinalTranscript,
    MicLevel,
    PauseJudged,
    PlaybackPaused,
    PlaybackResumed,
    TimelineUpdated,
    TurnWithdrawn,
    UserSpeechStarted,
)
from assistant.talk import run_talk
from assistant.turns.judge import Signals, decide, longest_wait_ms
from assistant.types import FRAME_SAMPLES, FRAME_SECONDS, AudioFrame

Kind = Literal["pause", "question", "backchannel", "noise", "barge_in", "stop", "quiet"]
#: Thinking pauses, in seconds, given in turn to the requests said with one.
PAUSE_SECONDS = (0.4, 0.7, 1.0, 1.5)
#: How many voices say each paused request, and each finished question.
PAUSE_VOICES = 2
QUESTION_VOICES = 1
#: A phrase said over a reply comes this long after the reply began to play.
INTO_REPLY = 1.5
#: The longest a scenario waits for a reply to begin before going on regardless.
REPLY_WAIT = 60.0
#: Signal-to-noise ratio of the scenarios with background noise.
NOISE_SNR_DB = 12.0
TARGETS = {"cut_offs": 5.0, "false_barge_ins": 2.0, "missed_barge_ins": 5.0, "p50_ms": 900.0}


@dataclass(slots=True)
class Case:
    kind: Kind
    scene: Scene
    voice: str
    noisy: bool = False

    @property
    def name(self) -> str:
        return self.scene.name


# ------------------------------------------------------------------------------ building


async def build_cases(speaker: Speaker, quick: bool) -> list[Case]:
    """Every scenario's audio, spoken by the voices of its language in turn: each paused
    request by ``PAUSE_VOICES`` of them, each question by ``QUESTION_VOICES`` (all voices are
    heard, and a run stays within about a quarter of an hour)."""
    cases: list[Case] = []
    turn = _rotation()
    pauses = first_per_language(scripts.PAUSES) if quick else scripts.PAUSES
    for i, paused in enumerate(pauses):
        for j in range(1 if quick else PAUSE_VOICES):
            gap = PAUSE_SECONDS[(i + j) % len(PAUSE_SECONDS)]
            cases.append(await _paused(speaker, paused, next(turn[paused.language]), gap))
    questions = first_per_language(scripts.QUESTIONS) if quick else scripts.QUESTIONS
    for said in questions:
        for _ in range(1 if quick else QUESTION_VOICES):
            cases.append(await _question(speaker, said, next(turn[said.language])))
    over: list[tuple[Kind, scripts.Said]] = [("backchannel", s) for s in scripts.BACKCHANNELS]
    over += [("barge_in", s) for s in scripts.BARGE_INS]
    over += [("stop", s) for s in scripts.STOPS]
    if quick:
        over = [o for o in over if o[1].language in ("en", "de")][::2]
    for kind, said in over:
        voice = next(turn[said.language])
        cases.append(await _over_reply(speaker, kind, said, voice))
    for n, (label, noise) in enumerate((("cough", cough(1)), ("knock", knock(2)))):
        language = ("en", "de")[n]
        voice = VOICES[language][0]
        cases.append(await _noise_over_reply(speaker, language, voice, label, noise))
        if not quick:
            cases.append(_quiet(label, noise))
    if not quick:
        cases += await _noisy(speaker)
    return cases


def _rotation() -> dict[str, Iterator[Voice]]:
    def cycle(voices: Sequence[Voice]) -> Iterator[Voice]:
        while True:
            yield from voices

    return {language: cycle(voices) for language, voices in VOICES.items()}


async def _paused(speaker: Speaker, paused: scripts.Paused, voice: Voice, gap: float) -> Case:
    line = Timeline()
    line.add(await speaker.say(paused.first, voice, paused.language), "first", paused.first)
    line.gap(gap)
    line.add(await speaker.say(paused.rest, voice, paused.language), "rest", paused.rest)
    name = f"pause {gap:g}s {voice.label}: {paused.first} … {paused.rest}"
    return Case("pause", line.scene(name, paused.language), voice.label)


async def _question(speaker: Speaker, said: scripts.Said, voice: Voice) -> Case:
    line = Timeline()
    line.add(await speaker.say(said.text, voice, said.language), "request", said.text)
    return Case(
        "question", line.scene(f"question {voice.label}: {said.text}", said.language), voice.label
    )


async def _story(speaker: Speaker, language: str, voice: Voice) -> Timeline:
    line = Timeline()
    story = scripts.STORY[language]
    line.add(await speaker.say(story, voice, language), "request", story)
    line.gap(0.3)
    line.wait_for_reply()
    line.gap(0.5)
    return line


async def _over_reply(speaker: Speaker, kind: Kind, said: scripts.Said, voice: Voice) -> Case:
    line = await _story(speaker, said.language, voice)
    span = cast(SpanKind, kind)  # the phrase's span is named after the scenario
    line.add(await speaker.say(said.text, voice, said.language), span, said.text)
    line.gap(3.0)
    return Case(kind, line.scene(f"{kind} {voice.label}: {said.text}", said.language), voice.label)


async def _noise_over_reply(
    speaker: Speaker, language: str, voice: Voice, label: str, noise: np.ndarray
) -> Case:
    line = await _story(speaker, language, voice)
    line.add(noise, "cough" if label == "cough" else "noise", label)
    line.gap(3.0)
    return Case("noise", line.scene(f"{label} over a reply", language), voice.label)


def _quiet(label: str, noise: np.ndarray) -> Case:
    line = Timeline(lead=1.0)
    line.add(noise, "cough" if label == "cough" else "noise", label)
    line.gap(1.0)
    return Case("quiet", line.scene(f"{label} in a quiet room", "en"), "-")


async def _noisy(speaker: Speaker) -> list[Case]:
    """A request with a thinking pause and a finished question per language, in noise."""
    out: list[Case] = []
    for language in scripts.LANGUAGES:
        voice = VOICES[language][-1]
        paused = next(p for p in scripts.PAUSES if p.language == language)
        said = next(q for q in scripts.QUESTIONS if q.language == language)
        for case in (
            await _paused(speaker, paused, voice, 1.0),
            await _question(speaker, said, voice),
        ):
            case.scene.pcm = with_noise(case.scene.pcm, NOISE_SNR_DB, seed=len(out))
            case.scene.name = f"{case.scene.name} (noise {NOISE_SNR_DB:g} dB)"
            case.noisy = True
            out.append(case)
    return out


# ------------------------------------------------------------------------------- running


class CuedMicrophone:
    """A scene's audio as a real-time microphone that waits at the scene's gate: it hears
    silence there until ``go`` is set (the reply has been playing a while), then goes on.
    ``waited`` is the silence it added, which moves everything after the gate later."""

    def __init__(self, scene: Scene, tail_seconds: float) -> None:
        tail = np.zeros(round(tail_seconds * RATE), np.int16)
        pcm = np.concatenate([scene.pcm, tail])
        self._pcm = np.concatenate([pcm, np.zeros(-len(pcm) % FRAME_SAMPLES, np.int16)])
        self._gate = None if scene.gate is None else round(scene.gate / FRAME_SECONDS)
        self.go = asyncio.Event()
        self.waited = 0.0
        self.on_error: list[Callable[[str], None]] = []
        self._stopped = False

    async def start(self) -> None:
        self._stopped = False

    async def stop(self) -> None:
        self._stopped = True

    async def frames(self) -> AsyncIterator[AudioFrame]:
        anchor = time.monotonic()
        sent = 0
        silent = np.zeros(FRAME_SAMPLES, np.int16)
        for k in range(len(self._pcm) // FRAME_SAMPLES):
            if k == self._gate:
                give_up = time.monotonic() + REPLY_WAIT
                while not self.go.is_set() and time.monotonic() < give_up and not self._stopped:
                    yield await self._at(anchor, sent, silent)
                    sent += 1
                    self.waited += FRAME_SECONDS
            if self._stopped:
                return
            yield await self._at(
                anchor, sent, self._pcm[k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES]
            )
            sent += 1

    @staticmethod
    async def _at(anchor: float, index: int, pcm: np.ndarray) -> AudioFrame:
        due = anchor + (index + 1) * FRAME_SECONDS
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        return AudioFrame(pcm.copy(), due, index * FRAME_SECONDS)


@dataclass(slots=True)
class Judged:
    """One judged pause, in the scene's seconds."""

    pause_at: float
    silence_ms: float
    event: PauseJudged


@dataclass(slots=True)
class Run:
    """What happened in one scenario, in the scene's seconds (from its first frame)."""

    case: Case
    anchor: float | None = None
    starts: dict[int, float] = field(default_factory=dict)
    answered: dict[int, str] = field(default_factory=dict)
    withdrawn: set[int] = field(default_factory=set)
    playback: list[tuple[int, float, dict[str, Any]]] = field(default_factory=list)
    interrupted: dict[int, float] = field(default_factory=dict)
    judged: list[Judged] = field(default_factory=list)
    paused: list[float] = field(default_factory=list)
    resumed: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: Events after this moment are not the scenario's (closing the conversation cuts a reply);
    #: the silence the microphone added while waiting for the reply comes on top.
    limit: float = float("inf")
    microphone: CuedMicrophone | None = None
    wall_seconds: float = 0.0

    def t(self, at: float) -> float:
        return at - (self.anchor or at)

    @property
    def waited(self) -> float:
        return self.microphone.waited if self.microphone is not None else 0.0

    @property
    def spans(self) -> list[Span]:
        """The scene's phrases where they were heard (later by the wait for the reply)."""
        gate = self.case.scene.gate
        if gate is None or not self.waited:
            return list(self.case.scene.spans)
        shift = self.waited
        return [
            dataclasses.replace(s, start=s.start + shift, end=s.end + shift)
            if s.start >= gate
            else s
            for s in self.case.scene.spans
        ]

    def span(self, kind: SpanKind) -> Span:
        return next(s for s in self.spans if s.kind == kind)

    def record(self, event: AppEvent) -> None:
        if isinstance(event, MicLevel) and self.anchor is None:
            self.anchor = event.at - FRAME_SECONDS
        if self.anchor is None or self.t(event.at) > self.limit + self.waited:
            return
        match event:
            case UserSpeechStarted(turn_id=turn, at=at):
                self.starts[turn] = self.t(at)
            case FinalTranscript(turn_id=turn, text=text) if text.strip():
                self.answered[turn] = text
            case TurnWithdrawn(turn_id=turn):
                self.withdrawn.add(turn)
            case TimelineUpdated(turn_id=turn, timeline=timeline, at=at):
                marks = timeline.get("marks_ms", {})
                if "playback_start" in marks and turn not in {p[0] for p in self.playback}:
                    self.playback.append((turn, self.t(at), timeline))
                if "interrupted" in marks and turn not in self.interrupted:
                    self.interrupted[turn] = self.t(at)
            case PauseJudged(silence_ms=silence, at=at):
                self.judged.append(Judged(self.t(at) - silence / 1000, silence, event))
            case PlaybackPaused(at=at):
                self.paused.append(self.t(at))
            case PlaybackResumed(at=at):
                self.resumed.append(self.t(at))
            case ErrorEvent(message=message):
                self.errors.append(message)

    def real_answers(self) -> dict[int, str]:
        return {t: text for t, text in self.answered.items() if t not in self.withdrawn}

    def turn_at(self, start: float, end: float, slack: float = 0.4) -> list[int]:
        """Turns whose speech began within [start - slack, end]."""
        return [t for t, at in self.starts.items() if start - slack <= at <= end]


def _done(run: Run) -> bool:
    """Seen enough: the answer the scenario waits for has started playing."""
    kind = run.case.kind
    if kind == "question":
        return bool(run.playback)
    if kind == "pause":
        rest = run.span("rest")
        return any(t >= rest.end for _, t, _ in run.playback)
    if kind == "barge_in":
        span = run.span("barge_in")
        turns = set(run.turn_at(span.start, span.end))
        return any(turn in turns for turn, _, _ in run.playback)
    return True  # the rest only need the audio to have been heard and judged


async def run_case(
    case: Case,
    directory: Path,
    engines: Any,
    vad: Any,
    model: Any,
    dials: VadSettings | None = None,
) -> Run:
    """Play ``case`` through ``parley talk --turns vad``'s path (``dials``: the hands-free
    settings, the defaults when None)."""
    settings = Settings(language=case.scene.language, turn_mode="vad")
    if dials is not None:
        settings.vad = dials
    tail = longest_wait_ms(settings.vad) / 1000 + 0.3
    microphone = CuedMicrophone(case.scene, tail)
    run = Run(case, microphone=microphone)
    stop = asyncio.Event()
    if _done(run):  # ends with the audio (and the silence fed after it)
        stop.set()
        run.limit = case.scene.duration + tail - 0.1
    else:
        run.limit = case.scene.duration + 60.0
    loop = asyncio.get_running_loop()

    def listen(event: AppEvent) -> None:
        playing = bool(run.playback)
        run.record(event)
        if run.playback and not playing:  # say what comes next once the reply is under way
            loop.call_later(INTO_REPLY, microphone.go.set)
        if not stop.is_set() and run.anchor is not None and _done(run):
            stop.set()
            run.limit = run.t(event.at) - run.waited

    wav = case.scene.write(directory / "scene.wav")
    started = time.monotonic()
    try:
        await run_talk(
            wav,
            settings=settings,
            engines=engines,
            vad=vad,
            turn_model=model,
            pace="realtime",
            on_event=listen,
            idle_timeout=90.0,
            stop=stop,
            source=microphone,
        )
    except Exception as exc:
        run.errors.append(f"{type(exc).__name__}: {exc}")
    run.wall_seconds = time.monotonic() - started
    return run


# ------------------------------------------------------------------------------ judging runs


@dataclass(slots=True)
class Outcome:
    run: Run
    cut_off: bool = False
    applicable: bool = True
    false_barge_in: bool = False
    missed: bool = False
    phantoms: int = 0
    v2v_ms: float | None = None
    held_ms: float | None = None  # a backchannel's pause of the reply
    note: str = ""


def judge_run(run: Run) -> Outcome:
    case = run.case
    out = Outcome(run)
    requests = [s for s in run.spans if s.kind in ("request", "first", "rest", "barge_in")]
    answers = run.real_answers()
    for turn in answers:
        start = run.starts.get(turn)
        if start is None or not any(s.start - 0.5 <= start <= s.end for s in requests):
            out.phantoms += 1
    if case.kind == "pause":
        rest = run.span("rest")
        early = [t for _, t, _ in run.playback if t < rest.end - 0.05]
        out.cut_off = bool(early)
        if out.cut_off:
            out.note = f"answered at {early[0]:.2f} s, before the end at {rest.end:.2f} s"
    elif case.kind == "question":
        if run.playback:
            out.v2v_ms = run.playback[0][2].get("voice_to_voice_ms")
        else:
            out.note = "no answer"
    elif case.kind in ("backchannel", "noise", "barge_in", "stop"):
        span = next(s for s in run.spans if s.kind not in ("request",))
        story = run.playback[0] if run.playback else None
        playing = (
            story is not None
            and story[1] < span.start
            and (run.interrupted.get(story[0], float("inf")) > span.start)
        )
        out.applicable = playing
        if not playing:
            out.note = "the reply was not playing when the user spoke"
            return out
        assert story is not None
        stopped = run.interrupted.get(story[0]) is not None
        if case.kind in ("backchannel", "noise"):
            out.false_barge_in = stopped
            pauses = [p for p in run.paused if p >= span.start - 0.1]
            if pauses:
                resumed = [r for r in run.resumed if r >= pauses[0]]
                out.held_ms = (resumed[0] - pauses[0]) * 1000 if resumed else None
        elif case.kind == "barge_in":
            answered = [t for t in run.turn_at(span.start, span.end) if t in answers]
            out.missed = not stopped or not answered
        else:
            out.missed = not stopped
    return out


# ------------------------------------------------------------------------------------ curves


@dataclass(slots=True)
class Replayable:
    """A judged pause with what it takes to replay it under other dials."""

    signals: Signals
    silence_ms: float
    #: A thinking pause: how long the user really paused (s). None: the end of a question.
    pause_seconds: float | None
    #: A finished question: first reply audio ready (ms after the speech ended), and the rest
    #: of the way to the ear beyond max(endpoint, ready).
    ready_ms: float = 0.0
    residual_ms: float = 0.0


def replayables(outcomes: Sequence[Outcome]) -> tuple[list[Replayable], int]:
    """Thinking pauses and finished questions to replay, and the thinking pauses no verdict
    reached before the user went on (safe under any dial)."""
    out: list[Replayable] = []
    unjudged = 0
    for o in outcomes:
        run = o.run
        if run.case.kind == "pause":
            first, rest = run.span("first"), run.span("rest")
            near = [j for j in run.judged if abs(j.pause_at - first.end) < 0.35]
            if not near:
                unjudged += 1
                continue
            j = near[0]
            out.append(
                Replayable(
                    _signals(j.event, first.end - first.start), j.silence_ms, rest.start - first.end
                )
            )
        elif run.case.kind == "question" and run.judged and run.playback and o.v2v_ms is not None:
            span = run.span("request")
            j = run.judged[-1]
            timeline = run.playback[0][2]
            marks, notes = timeline.get("marks_ms", {}), timeline.get("notes", {})
            ready = float(marks.get("tts_first_audio", o.v2v_ms))
            endpoint = float(notes.get("endpoint_ms", j.silence_ms))
            residual = o.v2v_ms - max(endpoint, ready)
            signals = _signals(j.event, span.end - span.start)
            out.append(Replayable(signals, j.silence_ms, None, ready, max(0.0, residual)))
    return out, unjudged


def _signals(event: PauseJudged, spoken: float) -> Signals:
    return Signals(event.sound, spoken, event.text, event.trailing, event.reading)


def endpoint_ms(item: Replayable, settings: VadSettings) -> float:
    """When the turn would have ended, in ms of silence, under ``settings``."""
    verdict = decide(item.signals, settings)
    if verdict.end_now:
        return item.silence_ms
    wait = verdict.wait_ms if verdict.wait_ms is not None else float(settings.end_silence_ms)
    return max(wait, item.silence_ms)


def replay(
    items: Sequence[Replayable], unjudged: int, settings: VadSettings
) -> tuple[float, float, float]:
    """(cut-offs %, finished-question voice-to-voice p50, p90) under ``settings``."""
    pauses = [i for i in items if i.pause_seconds is not None]
    cut = sum(endpoint_ms(i, settings) < (i.pause_seconds or 0) * 1000 for i in pauses)
    total = len(pauses) + unjudged
    latencies = [
        max(endpoint_ms(i, settings), i.ready_ms) + i.residual_ms
        for i in items
        if i.pause_seconds is None
    ]
    p50 = float(np.percentile(latencies, 50)) if latencies else float("nan")
    p90 = float(np.percentile(latencies, 90)) if latencies else float("nan")
    return (100.0 * cut / total if total else 0.0), p50, p90


DIALS: dict[str, Sequence[float]] = {
    "smart_turn_end": (0.5, 0.6, 0.7, 0.8, 0.9, 0.95),
    "smart_turn_wait": (0.05, 0.1, 0.2, 0.3, 0.5),
    "text_end": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
    "text_wait": (0.01, 0.02, 0.05, 0.1, 0.2, 0.3),
    "max_end_silence_ms": (600, 800, 1000, 1200, 1500, 2000),
    "unfinished_silence_ms": (1000, 1500, 2000, 2500, 3000),
}


def silence_p50(items: Sequence[Replayable], settings: VadSettings) -> float:
    """The finished questions' median silence before their turn ended, under ``settings``:
    the part of voice-to-voice the dials decide, whatever the engines' speed."""
    ends = [endpoint_ms(i, settings) for i in items if i.pause_seconds is None]
    return float(np.percentile(ends, 50)) if ends else float("nan")


def curves(
    items: Sequence[Replayable], unjudged: int, base: VadSettings
) -> dict[str, list[tuple[float, float, float, float, float]]]:
    """Each dial's (value, cut-offs %, p50, p90, silence p50), the others at ``base``."""
    out = {}
    for dial, values in DIALS.items():
        rows = []
        for value in values:
            kind = type(getattr(base, dial))
            settings = dataclasses.replace(base, **{dial: kind(value)})
            rows.append((value, *replay(items, unjudged, settings), silence_p50(items, settings)))
        out[dial] = rows
    return out


# ------------------------------------------------------------------------- the model's reading


async def reading_cost(llm: object, settings: Settings) -> list[tuple[float, float]]:
    """What the language model's reading of a pause costs, in ms: (after the prompt was read
    ahead up to a partial transcript two words short, as during speech; the same words again).
    Empty when the model cannot read."""
    if not isinstance(llm, ScoresEndOfTurn) or not isinstance(llm, Prefillable):
        return []
    texts = [q.text for q in scripts.QUESTIONS] + [p.first for p in scripts.PAUSES][::2]
    out = []
    for text in texts:

        def request(words: str) -> ChatRequest:
            return ChatRequest([Message("system", settings.system_prompt), Message("user", words)])

        await llm.prefill(request(" ".join(text.split()[:-2])))
        costs = []
        for _ in range(2):
            started = time.perf_counter()
            await llm.end_of_turn_probability(request(text))
            costs.append((time.perf_counter() - started) * 1000.0)
        out.append((costs[0], costs[1]))
    return out


# ------------------------------------------------------------------------------------ report


def _rate(label: str, part: int, whole: int, target: str) -> str:
    rate = f"{100.0 * part / whole:5.1f} %" if whole else "    - "
    return f"{label:24}{f'{part}/{whole}':>10}{rate:>10}   {target}"


def _ms(values: Sequence[float], q: float) -> str:
    return f"{np.percentile(values, q):.0f} ms" if values else "-"


def report(
    outcomes: Sequence[Outcome], base: VadSettings, say: Callable[[str], None] = print
) -> None:
    """Print the figures, what went wrong, and each dial's trade-off."""
    pauses = [o for o in outcomes if o.run.case.kind == "pause"]
    over = [o for o in outcomes if o.run.case.kind in ("backchannel", "noise") and o.applicable]
    barge = [o for o in outcomes if o.run.case.kind in ("barge_in", "stop") and o.applicable]
    questions = [o.v2v_ms for o in outcomes if o.v2v_ms is not None]
    say("")
    say(f"parley bench turns — {len(outcomes)} scenarios, local engines, real-time pace")
    say(f"{'':24}{'count':>10}{'rate':>10}   target")
    say(_rate("false cut-offs", sum(o.cut_off for o in pauses), len(pauses), "≤ 5 %"))
    say(_rate("false barge-ins", sum(o.false_barge_in for o in over), len(over), "≤ 2 %"))
    say(_rate("missed barge-ins", sum(o.missed for o in barge), len(barge), "≤ 5 %"))
    say(f"{'phantom turns':24}{sum(o.phantoms for o in outcomes):>10}")
    say(
        f"{'finished questions':24}  voice-to-voice p50 {_ms(questions, 50)} (≤ 900 ms), "
        f"p90 {_ms(questions, 90)}, {len(questions)} answered"
    )
    readings = [
        j.event.reading_ms for o in outcomes for j in o.run.judged if j.event.reading_ms is not None
    ]
    if readings:
        say(
            f"{'reading at pauses':24}  p50 {_ms(readings, 50)}, p90 {_ms(readings, 90)} "
            f"({len(readings)} readings by the language model)"
        )
    held = [o.held_ms for o in over if o.held_ms is not None]
    if held:
        say(f"{'backchannel pauses':24}  p50 {_ms(held, 50)}, max {max(held):.0f} ms")
    skipped = [o for o in outcomes if not o.applicable]
    if skipped:
        say(f"not counted: {len(skipped)} phrases said when no reply was playing")
    say("")
    say("by language: cut-offs · false barge-ins · missed barge-ins · question v2v p50")
    for language in scripts.LANGUAGES:
        mine = [o for o in outcomes if o.run.case.scene.language == language]
        lp, lo, lb = (
            [o for o in group if o.run.case.scene.language == language]
            for group in (pauses, over, barge)
        )
        lq = [o.v2v_ms for o in mine if o.v2v_ms is not None]
        say(
            f"  {language}: {sum(o.cut_off for o in lp)}/{len(lp)} · "
            f"{sum(o.false_barge_in for o in lo)}/{len(lo)} · "
            f"{sum(o.missed for o in lb)}/{len(lb)} · {_ms(lq, 50)}"
        )
    _report_problems(outcomes, say)
    _report_curves(outcomes, base, say)


def _verdict(o: Outcome) -> str:
    if o.cut_off:
        return "CUT OFF"
    if o.false_barge_in:
        return "FALSE BARGE-IN"
    if o.missed:
        return "MISSED"
    if o.phantoms:
        return f"{o.phantoms} PHANTOM"
    return "ok"


def _report_problems(outcomes: Sequence[Outcome], say: Callable[[str], None]) -> None:
    problems = [o for o in outcomes if _verdict(o) != "ok"]
    if problems:
        say("")
        say("what went wrong:")
    for o in problems:
        heard = " | ".join(o.run.answered.values())
        say(f"  {_verdict(o)}: {o.run.case.name} — {o.note} transcripts: “{heard}”")
    for error in [e for o in outcomes for e in o.run.errors][:10]:
        say(f"  error: {error}")


def _report_curves(
    outcomes: Sequence[Outcome], base: VadSettings, say: Callable[[str], None]
) -> None:
    items, unjudged = replayables(outcomes)
    n_pauses = sum(i.pause_seconds is not None for i in items) + unjudged
    n_questions = sum(i.pause_seconds is None for i in items)
    cut, p50, p90 = replay(items, unjudged, base)
    say("")
    say(
        f"dial trade-offs, replayed over {n_pauses} thinking pauses and {n_questions} "
        f"finished questions (* = in force: cut-offs {cut:.1f} %, p50 {p50:.0f} ms, "
        f"p90 {p90:.0f} ms)"
    )
    for dial, rows in curves(items, unjudged, base).items():
        say(f"  {dial}")
        for value, cut, p50, p90, silence in rows:
            mark = "*" if value == getattr(base, dial) else " "
            say(
                f"   {mark}{value:>7g}  cut-offs {cut:5.1f} %  p50 {p50:5.0f} ms  p90 {p90:5.0f} ms"
                f"  silence p50 {silence:5.0f} ms"
            )


# -------------------------------------------------------------------------------------- main


async def run(quick: bool) -> int:
    settings = Settings(turn_mode="vad")
    speaker = Speaker(cache_dir() / "bench" / "turn-speech")
    print("speaking the scenarios…", flush=True)
    try:
        cases = await build_cases(speaker, quick)
    finally:
        speaker.close()
    engine_set = EngineSet.build(settings)
    problems: list[str] = []

    def note(event: AppEvent) -> None:
        if isinstance(event, ErrorEvent):
            problems.append(event.message)

    print(f"{len(cases)} scenarios; loading engines…", flush=True)
    if not await engine_set.warm_up(note):
        print(f"parley bench turns: {problems[0]}", flush=True)
        await engine_set.aclose()
        return 1
    engines = (engine_set.stt, engine_set.llm, engine_set.tts)
    vad, model = make_vad(settings), make_turn_model(settings)
    costs = await reading_cost(engine_set.llm, settings)
    if costs:
        after, again = [c[0] for c in costs], [c[1] for c in costs]
        print(
            f"language-model reading of a pause: p50 {_ms(after, 50)} / p90 {_ms(after, 90)} "
            f"after a partial was read ahead; {_ms(again, 50)} / {_ms(again, 90)} warm",
            flush=True,
        )
    outcomes = []
    try:
        with tempfile.TemporaryDirectory(prefix="parley-turns-") as tmp:
            await run_case(cases[0], Path(tmp), engines, vad, model)  # warm caches, unmeasured
            for i, case in enumerate(cases, 1):
                outcome = judge_run(await run_case(case, Path(tmp), engines, vad, model))
                outcomes.append(outcome)
                v2v = f" {outcome.v2v_ms:.0f} ms" if outcome.v2v_ms is not None else ""
                print(f"  [{i}/{len(cases)}] {_verdict(outcome)}{v2v}: {case.name}", flush=True)
    finally:
        await engine_set.aclose()
    report(outcomes, settings.vad)
    return 0


def main(quick: bool = False) -> int:
    return asyncio.run(run(quick))
