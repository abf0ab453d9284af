"""Thinking pauses in virtual time: a real session, tracker and judge; scripted recognizer,
language model (with a scripted reading of the words) and audio end-of-turn model.

Each script says what the user says and when; the assertions say what Parley did with the
pause: waited it out (one turn, nothing heard before the user finished), or answered at once.
"""

from __future__ import annotations

import pytest

from assistant.engines.base import EngineError
from assistant.engines.fake import FakeLLM, FakeReadingLLM, FakeSTT
from assistant.events import (
    AssistantText,
    ErrorEvent,
    FinalTranscript,
    PauseJudged,
    State,
    TurnWithdrawn,
    UserSpeechStarted,
)
from assistant.history import TurnRecord
from tests.scenario import ScriptedTurnModel, Speech, Stage

FRAME_TOLERANCE_MS = 48


def reads(mapping: dict[str, float]):
    """A scripted reading: each text's probability of ending its sentence."""
    return lambda text: mapping.get(text, 0.5)


async def one_turn(stage: Stage) -> None:
    async with stage:
        await stage.run_until(lambda: bool(stage.finished()))
        await stage.run_until(lambda: stage.session.state is State.LISTENING)


def sounding_finished(tmp_path, llm: FakeReadingLLM, text: str, seconds: float) -> Stage:
    """The user says ``text`` for ``seconds``; the audio model hears it as finished (0.95), and
    ``llm`` reads the words."""
    stt = FakeSTT(script=(text,))
    turn_model = ScriptedTurnModel(0.95)
    script = [Speech(0, seconds)]
    return Stage(tmp_path, mode="vad", stt=stt, llm=llm, turn_model=turn_model, script=script)


async def judged_once(stage: Stage) -> tuple[TurnRecord, PauseJudged]:
    """Run ``stage`` through its one turn, whose one pause was judged."""
    await one_turn(stage)
    (turn,) = stage.finished()
    (judged,) = stage.events(PauseJudged)
    return turn, judged


@pytest.mark.parametrize("pause", [0.4, 0.8, 1.5])
async def test_a_pause_after_a_trailing_word_is_waited_out_however_it_sounded(
    tmp_path, pause: float
) -> None:
    """ "I'd like to book a table for" + pause + "four people at seven": one turn, although
    the audio model heard the first part as finished and the language model cannot read."""
    stt = FakeSTT(
        script=(
            "I'd like to book a table for",
            "I'd like to book a table for four people at seven.",
        )
    )
    end = 1.2 + pause
    script = [Speech(0, 1.2), Speech(end, end + 1.0)]
    stage = Stage(tmp_path, mode="vad", stt=stt, turn_model=ScriptedTurnModel(0.95), script=script)
    await one_turn(stage)
    (turn,) = stage.finished()
    assert turn.user_text == "I'd like to book a table for four people at seven."
    first = stage.events(PauseJudged)[0]
    assert first.waiting and first.trailing and not first.ending
    assert first.wait_ms == stage.settings.vad.unfinished_silence_ms
    assert first.text == "I'd like to book a table for"
    assert not stage.audible(0, end + 1.0)  # nothing was said before the user finished
    # The pill said "take your time" until the user went on.
    kinds = [type(e) for e in stage.events() if isinstance(e, PauseJudged | UserSpeechStarted)]
    assert kinds[:3] == [UserSpeechStarted, PauseJudged, UserSpeechStarted]


async def test_words_the_language_model_reads_as_unfinished_wait_for_more(tmp_path) -> None:
    llm = FakeReadingLLM(reading=reads({"Remind me to call": 0.01}), ttft=0.05)
    stt = FakeSTT(script=("Remind me to call", "Remind me to call my sister tomorrow."))
    script = [Speech(0, 1.0), Speech(2.0, 3.0)]  # a full second to think of who
    stage = Stage(tmp_path, mode="vad", stt=stt, llm=llm, turn_model=ScriptedTurnModel(0.9))
    for step in script:
        stage.add(step)
    await one_turn(stage)
    (turn,) = stage.finished()
    assert turn.user_text == "Remind me to call my sister tomorrow."
    first = stage.events(PauseJudged)[0]
    assert first.waiting and first.reading == 0.01 and not first.trailing
    assert llm.readings[0][1] == "Remind me to call"


async def test_words_finished_by_sound_and_by_reading_are_answered_at_once(tmp_path) -> None:
    llm = FakeReadingLLM(reading=reads({"What is the capital of France?": 0.98}), ttft=0.05)
    stage = sounding_finished(tmp_path, llm, "What is the capital of France?", 1.2)
    turn, judged = await judged_once(stage)
    assert judged.ending and not judged.waiting
    # The 200 ms pause, the recognizer's 50 ms and the reading's 30 ms: then the turn ended.
    assert turn.timeline["notes"]["endpoint_ms"] == pytest.approx(280, abs=FRAME_TOLERANCE_MS)
    assert turn.timeline["notes"]["end_of_turn_reading"] == 0.98


async def test_finished_sound_with_an_unsure_reading_waits_longer(tmp_path) -> None:
    llm = FakeReadingLLM(reading=reads({"Set an alarm for six": 0.3}), ttft=0.05)
    stage = sounding_finished(tmp_path, llm, "Set an alarm for six", 1.2)
    stage.settings.vad.max_end_silence_ms = 1200
    turn, judged = await judged_once(stage)
    assert judged.waiting and judged.wait_ms == 1200
    assert turn.timeline["notes"]["endpoint_ms"] == pytest.approx(1200, abs=FRAME_TOLERANCE_MS)


async def test_a_slow_transcript_cannot_let_silence_cut_a_trailing_phrase(tmp_path) -> None:
    """The final transcript takes 0.8 s, far past the 300 ms end silence: the turn waits for
    the judge instead of ending on silence, and the words then keep it open."""
    stt = FakeSTT(
        script=("Can you tell me the", "Can you tell me the opening hours?"), final_delay=0.8
    )
    script = [Speech(0, 1.0), Speech(2.2, 3.0)]
    stage = Stage(tmp_path, mode="vad", stt=stt, script=script)
    await one_turn(stage)
    (turn,) = stage.finished()
    assert turn.user_text == "Can you tell me the opening hours?"
    first = stage.events(PauseJudged)[0]
    assert first.silence_ms >= 1000 and first.waiting


async def test_the_held_reply_asks_the_language_model_after_the_reading(tmp_path) -> None:
    """A local server answers one request at a time: the judge's short reading goes first."""
    llm = FakeReadingLLM(reading=reads({"What time is it?": 0.97}), reading_delay=0.2, ttft=0.05)
    stt = FakeSTT(script=("What time is it?",))
    stage = Stage(tmp_path, mode="vad", stt=stt, llm=llm, script=[Speech(0, 1.0)])
    await one_turn(stage)
    (turn,) = stage.finished()
    marks = turn.timeline["marks_ms"]
    assert len(llm.readings) == 1
    # The reading started with the transcript and took 200 ms; the reply's request came after.
    assert marks["llm_request"] >= marks["stt_final"] + 200 - 1


async def test_a_reading_that_never_comes_does_not_hold_the_turn(tmp_path) -> None:
    llm = FakeReadingLLM(reading=reads({}), reading_delay=30.0, ttft=0.05)
    stage = sounding_finished(tmp_path, llm, "What time is it?", 1.0)
    turn, judged = await judged_once(stage)
    assert judged.reading is None and judged.ending  # the sound alone decided, after 1 s
    assert turn.timeline["notes"]["endpoint_ms"] == pytest.approx(1250, abs=FRAME_TOLERANCE_MS)


async def test_a_failing_judge_leaves_the_usual_silence(tmp_path) -> None:
    class Broken:
        def end_probability(self, pcm16k: object) -> float:
            raise RuntimeError("model file corrupt")

    stt = FakeSTT(script=("What time is it?",))
    stage = Stage(tmp_path, mode="vad", stt=stt, turn_model=Broken(), script=[Speech(0, 1.0)])
    await one_turn(stage)
    (turn,) = stage.finished()
    assert turn.user_text == "What time is it?"
    assert turn.timeline["notes"]["endpoint_ms"] == pytest.approx(300, abs=FRAME_TOLERANCE_MS)


async def test_a_speculative_reply_shows_nothing_before_the_turn_ends(tmp_path) -> None:
    """Prepared during the pause, withdrawn when the user went on: no text, no audio, no error
    of it ever reaches the user."""
    llm = FakeLLM(ttft=0.02, tokens_per_second=400)
    stt = FakeSTT(script=("Book a table", "Book a table for two people tonight."))
    stage = Stage(tmp_path, mode="vad", stt=stt, llm=llm, script=[Speech(0, 0.8)])
    stage.settings.vad.end_silence_ms = 900
    stage.add(Speech(1.4, 2.2))
    await one_turn(stage)
    (withdrawn,) = stage.events(TurnWithdrawn)
    assert not [e for e in stage.events(AssistantText) if e.turn_id == withdrawn.turn_id]
    assert len(llm.requests) == 2  # the first reply was prepared, and never shown


async def test_a_speculative_reply_that_fails_is_never_told_if_withdrawn(tmp_path) -> None:
    failing = FakeLLM(fail_before_first_token=EngineError("the model crashed"), ttft=0.02)
    stt = FakeSTT(script=("Book a table", "Book a table for two people tonight."))
    stage = Stage(tmp_path, mode="vad", stt=stt, llm=failing, script=[Speech(0, 0.8)])
    stage.settings.vad.end_silence_ms = 900
    stage.add(Speech(1.4, 2.2))
    async with stage:
        await stage.run_to(1.39)
        assert not stage.events(ErrorEvent)  # the held reply failed, and nobody was told
        await stage.run_until(lambda: bool(stage.finished()))
    # Only the reply to the whole request, answered after the turn ended, told its failure.
    (error,) = stage.events(ErrorEvent)
    (turn,) = stage.finished()
    assert error.turn_id == turn.turn_id and "the model crashed" in error.message
    assert turn.user_text == "Book a table for two people tonight."
    assert [e.text for e in stage.events(FinalTranscript)][-1] == turn.user_text
