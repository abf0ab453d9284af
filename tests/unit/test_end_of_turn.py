"""The end-of-turn judge's parts: the decision table, reading the local model's next-token
probabilities, the clocked wait, and the benchmark's replay of a pause under other dials."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from assistant.bench.turns import Replayable, endpoint_ms, replay, silence_p50
from assistant.clock import ManualClock
from assistant.config import VadSettings
from assistant.engines.local.end_of_turn import (
    ending_probability,
    ends_sentence,
    scoring_prompt,
    top_tokens,
)
from assistant.turns.judge import (
    Pause,
    PauseJudge,
    Reading,
    Signals,
    decide,
    longest_wait_ms,
    read_words,
    within,
)

CHATML = (
    "<|im_start|>system\nYou are Parley.<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n"
    "<|im_start|>assistant\n"
)


def settings(**kw: float) -> VadSettings:
    base = VadSettings(
        smart_turn_end=0.8,
        smart_turn_wait=0.2,
        text_end=0.5,
        text_wait=0.1,
        end_silence_ms=600,
        max_end_silence_ms=1500,
        unfinished_silence_ms=2500,
    )
    for key, value in kw.items():
        setattr(base, key, type(getattr(base, key))(value))
    return base


# ---------------------------------------------------------------------------------- decision


@pytest.mark.parametrize(
    ("sound", "trailing", "reading", "expected"),
    [
        # The words read unfinished: wait for more, however the pause sounded.
        (0.97, True, None, ("wait", 2500)),
        (0.97, False, 0.02, ("wait", 2500)),
        (None, True, None, ("wait", 2500)),
        # Finished by both, or by the only signal there is: end now.
        (0.95, False, 0.9, ("end", None)),
        (0.95, False, None, ("end", None)),
        (None, False, 0.9, ("end", None)),
        # Anything unsure waits longer than usual.
        (0.95, False, 0.3, ("wait", 1500)),
        (0.5, False, 0.9, ("wait", 1500)),
        (0.05, False, 0.9, ("wait", 1500)),
        # Nothing to go on: the usual silence.
        (None, False, None, ("usual", None)),
    ],
)
def test_decision_table(sound, trailing, reading, expected) -> None:
    verdict = decide(Signals(sound, 1.5, "words", trailing, reading), settings())
    kind, wait = expected
    if kind == "end":
        assert verdict.end_now and not verdict.unfinished
    elif kind == "wait":
        assert not verdict.end_now and verdict.wait_ms == wait and verdict.unfinished
    else:
        assert not verdict.end_now and verdict.wait_ms is None and not verdict.unfinished


def test_a_short_utterance_does_not_sound_finished_to_the_audio_model() -> None:
    verdict = decide(Signals(0.99, 0.5, "Yes", False, None), settings())
    assert verdict.wait_ms == 1500  # "sounds finished" needs 0.8 s of speech


def test_the_longest_wait_follows_the_signals_in_use() -> None:
    assert longest_wait_ms(settings()) == 2500
    assert longest_wait_ms(settings(text_turn=False)) == 1500
    assert longest_wait_ms(settings(text_turn=False, smart_turn=False)) == 600
    assert read_words(Signals(text="so and", trailing=True), settings()) is Reading.UNFINISHED


# ------------------------------------------------------------------------ the model's reading


def test_the_prompt_is_cut_after_the_words_without_their_punctuation() -> None:
    text = "What's the difference between?"
    prompt, marker = scoring_prompt(CHATML.format(text), text) or ("", "")
    assert prompt.endswith("<|im_start|>user\nWhat's the difference between")
    assert marker == "<|im_end|>"
    french = "Quelle est la capitale de l'Espagne ?"
    cut = scoring_prompt(CHATML.format(french), french)
    assert cut is not None and cut[0].endswith("l'Espagne")
    assert scoring_prompt(CHATML.format("..."), "...") is None
    assert scoring_prompt(CHATML.format("hello"), "missing") is None


def test_the_last_occurrence_of_the_words_is_the_user_message() -> None:
    earlier = CHATML.format("Tell me more").replace("<|im_start|>assistant\n", "")
    prompt = earlier + "<|im_start|>assistant\nSure.<|im_end|>\n" + CHATML.format("Tell me more")
    cut, _ = scoring_prompt(prompt, "Tell me more") or ("", "")
    assert cut == prompt[: prompt.rfind("Tell me more") + len("Tell me more")]


@pytest.mark.parametrize(
    ("token", "ends"),
    [(".", True), ("?", True), (" ?", True), ("!\n\n", True), ("。", True), ("?\n", True),
     ("...", False), ("…", False), (",", False), (" and", False), ("", False), (" ", False)],
)  # fmt: skip
def test_which_tokens_end_a_sentence(token: str, ends: bool) -> None:
    assert ends_sentence(token) is ends


def test_the_ending_probability_adds_the_end_token_and_final_punctuation() -> None:
    answer = {
        "completion_probabilities": [
            {
                "top_logprobs": [
                    {"id": 30, "token": "?", "logprob": math.log(0.6)},
                    {"id": 151645, "token": "", "logprob": math.log(0.1)},
                    {"id": 323, "token": " and", "logprob": math.log(0.2)},
                    {"id": 1112, "token": "...", "logprob": math.log(0.05)},
                ]
            }
        ]
    }
    top = top_tokens(answer)
    assert ending_probability(top, {151645}) == pytest.approx(0.7)
    assert ending_probability(top, ()) == pytest.approx(0.6)
    assert ending_probability([{"id": 1, "token": ".", "prob": 0.4}], ()) == pytest.approx(0.4)


@pytest.mark.parametrize(
    "answer",
    [None, {}, {"completion_probabilities": []}, {"completion_probabilities": [3]},
     {"completion_probabilities": [{"top_logprobs": "x"}]}, [1, 2]],
)  # fmt: skip
def test_a_malformed_answer_has_no_tokens(answer: object) -> None:
    assert top_tokens(answer) == []
    assert ending_probability([{"id": "x", "token": 5, "logprob": "?"}], {1}) == 0.0


# -------------------------------------------------------------------------------- the clock


async def test_within_gives_up_on_the_clock_and_leaves_a_shared_future_alone() -> None:
    clock = ManualClock()
    shared: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    waiting = asyncio.ensure_future(within(clock, shared, 1.0))
    await clock.advance(0.5)
    assert not waiting.done()
    await clock.advance(0.6)
    assert await waiting is None
    assert not shared.cancelled()  # others may still wait for it
    shared.set_result("late")

    async def slow() -> str:
        await clock.sleep(5.0)
        return "never"

    task = asyncio.ensure_future(within(clock, slow(), 1.0))
    await clock.advance(2.0)
    assert await task is None

    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    ready.set_result("words")
    assert await within(clock, ready, 1.0) == "words"


async def test_a_reading_slower_than_text_timeout_ms_is_not_waited_for() -> None:
    """Past ``text_timeout_ms`` the pause is judged without the reading (here: by nothing, so
    the usual silence); within it, the reading decides."""
    clock = ManualClock()

    async def slow_reading(_text: str) -> float:
        await clock.sleep(0.8)
        return 0.01

    words: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
    words.set_result("What is the difference between")
    pause = Pause(np.zeros(16_000, np.int16), words)
    for limit_ms, waits in ((500, False), (1000, True)):
        judge = PauseJudge(settings(text_timeout_ms=limit_ms), clock=clock, score=slow_reading)
        judging = asyncio.ensure_future(judge.judge(pause))
        await clock.advance(1.0)
        verdict = await judging
        assert verdict.unfinished is waits
        assert verdict.signals is not None
        assert (verdict.signals.reading is not None) is waits


# ------------------------------------------------------------------------------- the replay


def test_the_replay_counts_a_cut_off_when_the_turn_would_end_before_the_user_went_on() -> None:
    # "I'd like to book a table for it." sounded finished and read half-finished.
    unsure = Replayable(Signals(0.93, 1.4, "for it.", False, 0.47), 420.0, 0.7)
    trailing = Replayable(Signals(0.97, 1.4, "for", True, None), 300.0, 1.5)
    question = Replayable(Signals(0.95, 1.5, "Capital?", False, 0.99), 450.0, None, 700.0, 50.0)
    items = [unsure, trailing, question]
    assert endpoint_ms(unsure, settings()) == 1500  # unsure: waits 1.5 s, past the 0.7 s
    assert replay(items, 0, settings()) == (0.0, 750.0, 750.0)
    assert silence_p50(items, settings()) == 450.0  # the question ended at its verdict
    assert silence_p50(items, settings(text_end=0.999)) == 1500.0  # unsure: the ceiling
    # Reading 0.47 as finished ends the turn at the verdict, 0.42 s into a 0.7 s pause.
    cut, p50, _ = replay(items, 1, settings(text_end=0.4))
    assert cut == pytest.approx(100 / 3)
    assert p50 == 750.0  # the question was ready at 700 ms either way
    # A verdict after the usual silence ends the turn at the verdict, not before it.
    assert endpoint_ms(Replayable(Signals(None, 1.0, None), 900.0, None), settings()) == 900.0
