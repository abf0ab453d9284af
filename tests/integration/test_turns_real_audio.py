"""Hands-free turn-taking on real audio: the offline voices speak, and the real VAD, Smart Turn,
Whisper and local language model decide, through ``parley talk --turns vad``'s path.

A small subset of ``parley bench turns`` (which runs them all and prints the figures), chosen so
that what is asserted holds on any x86-64 CPU: each outcome rests on a wide margin (a word a
sentence cannot end on, a reading of nearly zero), never on a score near a threshold, and no
wall-clock time is asserted: the language model's reading may take as long as it needs
(``text_timeout_ms`` is raised), so a slow machine changes when a turn ends, never how. The
replies are scripted (only the user's side is tested); the reading is the real model's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from assistant.app.turn_taking import make_turn_model, make_vad
from assistant.bench import turn_scripts as scripts
from assistant.bench import turns as bench
from assistant.bench.turn_audio import VOICES, Speaker, Voice
from assistant.config import Settings, VadSettings
from assistant.engines.base import ChatRequest
from assistant.engines.fake import FakeLLM, FakeTTS

pytestmark = pytest.mark.slow

PICO_DE = Voice("pico", "pico:de-DE")
PICO_ES = Voice("pico", "pico:es-ES")
PIPER = VOICES["en"][0]


def _available() -> str | None:
    try:
        from assistant.audio.smart_turn import smart_turn_available
        from assistant.engines.local.llama_server import find_binary

        find_binary()
    except Exception as exc:
        return str(exc)
    return None if smart_turn_available() else "Smart Turn is not installed"


missing = _available()
if missing:
    pytest.skip(f"the local engines are not all here: {missing}", allow_module_level=True)


#: The hands-free defaults, with as long as it takes for the language model's reading.
PATIENT = VadSettings(text_timeout_ms=60_000)


@dataclass(slots=True)
class ReadingReplies(FakeLLM):
    """Scripted replies; the end-of-turn reading (and the prompt read ahead for it) by the real
    local model."""

    model: Any = None

    async def end_of_turn_probability(self, request: ChatRequest) -> float | None:
        return await self.model.end_of_turn_probability(request)

    async def prefill(self, request: ChatRequest) -> None:
        await self.model.prefill(request)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def speaker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Speaker]:
    speaker = Speaker(tmp_path_factory.mktemp("speech"))
    yield speaker
    speaker.close()


@pytest.fixture(scope="module")
def models() -> tuple[Any, Any]:
    settings = Settings()
    return make_vad(settings), make_turn_model(settings)


@pytest.fixture(scope="module")
def local(loop: asyncio.AbstractEventLoop) -> Iterator[tuple[Any, Any, Any]]:
    """Whisper and the local language model's reading; scripted replies and voice."""
    from assistant.engines.local.llm import LocalLLM
    from assistant.engines.local.stt import LocalSTT

    stt, llm = LocalSTT(), LocalLLM()

    async def warm() -> None:
        await asyncio.gather(stt.warm_up(), llm.warm_up())

    loop.run_until_complete(warm())
    replies = ReadingReplies(reply=lambda r: f"You said: {r.messages[-1].content}", model=llm)
    yield stt, replies, FakeTTS(realtime_factor=0.02)
    loop.run_until_complete(llm.aclose())
    stt.close()


def play(loop: asyncio.AbstractEventLoop, case: bench.Case, engines: Any, models: Any, tmp: Path):
    vad, model = models
    run = loop.run_until_complete(bench.run_case(case, tmp, engines, vad, model, PATIENT))
    return bench.judge_run(run)


def first_verdict(outcome: bench.Outcome) -> Any:
    """The verdict on the thinking pause, or None when the user went on before it came (a slow
    machine: the pause is then never ended by silence alone, which the outcome shows)."""
    first = outcome.run.span("first")
    near = [j.event for j in outcome.run.judged if abs(j.pause_at - first.end) < 0.35]
    return near[0] if near else None


def paused(language: str, first: str) -> scripts.Paused:
    return next(p for p in scripts.PAUSES if p.language == language and p.first == first)


def test_a_thinking_pause_after_a_trailing_word_is_one_turn(
    loop, speaker, local, models, tmp_path
) -> None:
    """ "Quiero reservar una mesa para" … 1.5 s … "cuatro personas a las siete." """
    said = paused("es", "Quiero reservar una mesa para")
    case = loop.run_until_complete(bench._paused(speaker, said, PICO_ES, 1.5))
    outcome = play(loop, case, local, models, tmp_path)
    assert not outcome.cut_off, outcome.note
    (answered,) = outcome.run.real_answers().values()
    assert "mesa" in answered.lower() and "personas" in answered.lower()
    first = first_verdict(outcome)
    assert first is None or (first.waiting and first.trailing)


def test_a_pause_only_the_meaning_says_is_unfinished_is_waited_out(
    loop, speaker, local, models, tmp_path
) -> None:
    """ "Was ist der Unterschied zwischen" sounds finished (Smart Turn 0.9+ on this voice) and
    stops on no listed word: only the language model's reading (≈ 0) keeps the turn open."""
    said = paused("de", "Was ist der Unterschied zwischen")
    case = loop.run_until_complete(bench._paused(speaker, said, PICO_DE, 1.0))
    outcome = play(loop, case, local, models, tmp_path)
    assert not outcome.cut_off, outcome.note
    first = first_verdict(outcome)
    if first is not None:
        assert first.waiting and not first.trailing
        assert first.reading is not None and first.reading < 0.05
    (answered,) = outcome.run.real_answers().values()
    before, _, after = answered.lower().partition("zwischen")
    assert "unterschied" in before and len(after.split()) >= 3  # both parts, one turn


def test_a_finished_question_is_answered_once(loop, speaker, local, models, tmp_path) -> None:
    said = next(q for q in scripts.QUESTIONS if q.text == "What is the capital of France?")
    case = loop.run_until_complete(bench._question(speaker, said, PIPER))
    outcome = play(loop, case, local, models, tmp_path)
    (answered,) = outcome.run.real_answers().values()
    assert "capital of france" in answered.lower()
    assert outcome.v2v_ms is not None and not outcome.phantoms
    # The verdict, unless the model was still reading the new prompt when the pause reached
    # its ceiling (the turn then ended there, once).
    for judged in outcome.run.judged:
        assert judged.event.ending
        assert judged.event.reading is None or judged.event.reading > 0.5


@pytest.mark.parametrize(
    ("kind", "text"),
    [("backchannel", "Uh-huh."), ("backchannel", "Yeah."), ("barge_in", None), ("noise", None)],
)
def test_over_a_reply(loop, speaker, local, models, tmp_path, kind: str, text: str | None) -> None:
    """A long scripted reply; the user says "uh-huh", coughs, or asks something else."""
    stt, _, _ = local
    story = FakeLLM(reply=lambda _r: " ".join(["The dragon stirred the soup again."] * 12))
    engines = (stt, story, FakeTTS(realtime_factor=0.02))
    if kind == "noise":
        from assistant.bench.turn_audio import cough

        case = loop.run_until_complete(
            bench._noise_over_reply(speaker, "en", PIPER, "cough", cough(1))
        )
    else:
        said = (
            scripts.Said("en", text)
            if text
            else next(s for s in scripts.BARGE_INS if s.language == "en")
        )
        case = loop.run_until_complete(bench._over_reply(speaker, kind, said, PIPER))  # type: ignore[arg-type]
    outcome = play(loop, case, engines, models, tmp_path)
    assert outcome.applicable, outcome.note
    if kind == "barge_in":
        assert not outcome.missed
        assert len(outcome.run.real_answers()) == 2
    else:
        assert not outcome.false_barge_in
        assert not outcome.phantoms
