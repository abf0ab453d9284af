"""Hands-free turn-taking on real audio: the offline voices speak, and the real VAD, Smart Turn,
Whisper and local language model decide, through ``parley talk --turns vad``'s path.

A small subset of ``parley bench turns`` (which runs them all and prints the figures), chosen so
that what is asserted holds on any x86-64 CPU: each outcome rests on a wide margin (a word a
sentence cannot end on, a reading of nearly zero), never on a score near a threshold, and no
wall-clock time is asserted. The replies are scripted where only the user's side is tested.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assistant.app.turn_taking import make_turn_model, make_vad
from assistant.bench import turn_scripts as scripts
from assistant.bench import turns as bench
from assistant.bench.turn_audio import VOICES, Speaker, Voice
from assistant.config import Settings
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
    """Whisper and the local language model; a scripted voice for the replies."""
    from assistant.engines.local.llm import LocalLLM
    from assistant.engines.local.stt import LocalSTT

    stt, llm = LocalSTT(), LocalLLM()

    async def warm() -> None:
        await asyncio.gather(stt.warm_up(), llm.warm_up())

    loop.run_until_complete(warm())
    yield stt, llm, FakeTTS(realtime_factor=0.02)
    loop.run_until_complete(llm.aclose())
    stt.close()


def play(loop: asyncio.AbstractEventLoop, case: bench.Case, engines: Any, models: Any, tmp: Path):
    vad, model = models
    run = loop.run_until_complete(bench.run_case(case, tmp, engines, vad, model))
    return bench.judge_run(run)


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
    first = outcome.run.judged[0].event
    assert first.waiting and first.trailing


def test_a_pause_only_the_meaning_says_is_unfinished_is_waited_out(
    loop, speaker, local, models, tmp_path
) -> None:
    """ "Was ist der Unterschied zwischen" sounds finished (Smart Turn 0.9+ on this voice) and
    stops on no listed word: only the language model's reading (≈ 0) keeps the turn open."""
    said = paused("de", "Was ist der Unterschied zwischen")
    case = loop.run_until_complete(bench._paused(speaker, said, PICO_DE, 1.0))
    outcome = play(loop, case, local, models, tmp_path)
    assert not outcome.cut_off, outcome.note
    first = outcome.run.judged[0].event
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
    (judged,) = outcome.run.judged
    assert judged.event.reading is not None and judged.event.reading > 0.5


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
