"""Turn-taking scenarios on virtual time: real session, splitter, recorder and player; fake
engines with set latencies; every mark checked against the script within a frame or two."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from assistant.clock import ManualClock
from assistant.engines.base import EngineError
from assistant.engines.fake import FakeLLM, FakeSTT, FakeTTS
from assistant.engines.fallback import FallbackLLM
from assistant.events import (
    AssistantText,
    ErrorEvent,
    FinalTranscript,
    Notice,
    PartialTranscript,
    PlaybackPaused,
    PlaybackResumed,
    Source,
    State,
    ToolCalled,
    TurnWithdrawn,
)
from assistant.session import Session
from assistant.session.tracker import ECHO_WORDS_GRACE
from assistant.tools import default_tools
from assistant.types import FRAME_SAMPLES, FRAME_SECONDS, AudioLook
from tests.scenario import T0, Do, Key, ScriptedTurnModel, Speech, Stage

#: Marks are taken on 32 ms frames: allow a frame and a half either way.
FRAME_TOLERANCE_MS = 48

LONG_REPLY = (
    "Once upon a time there was a small robot who loved to listen. Every morning it walked to "
    "the river and counted the boats that passed by. One day a boat stopped, and a child waved."
)


def long_llm(**kw: object) -> FakeLLM:
    return FakeLLM(reply=lambda _r: LONG_REPLY, ttft=0.05, tokens_per_second=200, **kw)  # type: ignore[arg-type]


async def test_ptt_turn_runs_through_every_state(tmp_path) -> None:
    async with Stage(tmp_path, mode="ptt", script=[Key(0.2, 1.0)]) as stage:
        await stage.run_until(lambda: bool(stage.finished()))
        await stage.run_until(lambda: stage.session.state is State.LISTENING)
    assert stage.states()[:5] == ["listening", "user_speaking", "thinking", "speaking", "listening"]
    (turn,) = stage.finished()
    assert turn.user_text == "What is a good name for a cat?"
    assert not turn.interrupted
    assert turn.assistant_text.startswith("You asked: What is a good name for a cat.")
    assert turn.assistant_text == turn.generated_text
    marks = turn.timeline["marks_ms"]
    order = [
        "speech_start",
        "speech_end",
        "stt_final",
        "llm_request",
        "llm_first_token",
        "first_text_to_tts",
        "tts_first_audio",
        "playback_start",
        "playback_end",
    ]
    assert [m for m in order if m in marks] == order
    assert [marks[m] for m in order] == sorted(marks[m] for m in order)
    assert marks["speech_end"] == 0.0
    assert marks["speech_start"] == pytest.approx(-800, abs=1)  # the key was held 0.8 s
    assert marks["stt_final"] == pytest.approx(50, abs=1)  # the recognizer's final delay
    assert marks["llm_first_token"] - marks["llm_request"] == pytest.approx(50, abs=1)  # TTFT
    assert turn.timeline["voice_to_voice_ms"] == pytest.approx(marks["playback_start"])
    assert stage.events(PartialTranscript)  # partials came while the key was held
    assert stage.audible(marks["playback_start"] / 1000 + 1.0, marks["playback_start"] / 1000 + 2)
    reloaded, _ = stage.store.latest()
    assert [t.user_text for t in reloaded.turns] == [turn.user_text]


async def test_vad_turn_ends_after_silence_and_anchors_at_speech_end(tmp_path) -> None:
    async with Stage(tmp_path, mode="vad", script=[Speech(0.3, 1.3)]) as stage:
        await stage.run_until(lambda: bool(stage.finished()))
    (turn,) = stage.finished()
    marks = turn.timeline["marks_ms"]
    # Speech lasted 1 s. The transcript was asked for at the 200 ms speculative pause and came
    # 50 ms later; the answer played only once the 300 ms endpoint silence had passed.
    assert marks["speech_start"] == pytest.approx(-1000, abs=FRAME_TOLERANCE_MS)
    assert marks["stt_final"] == pytest.approx(250, abs=FRAME_TOLERANCE_MS)
    assert turn.timeline["notes"]["endpoint_ms"] == pytest.approx(300, abs=FRAME_TOLERANCE_MS)
    assert marks["playback_start"] >= turn.timeline["notes"]["endpoint_ms"]


async def test_a_pause_mid_sentence_does_not_answer_half_a_question(tmp_path) -> None:
    stt = FakeSTT(script=("Book a table", "Book a table for two people tonight."))
    llm = FakeLLM(ttft=0.02, tokens_per_second=400)
    stage = Stage(tmp_path, mode="vad", stt=stt, llm=llm, script=[Speech(0, 0.8)])
    stage.settings.vad.end_silence_ms = 700
    stage.add(Speech(1.25, 2.05))  # a 0.45 s thinking pause: past the 200 ms speculation
    async with stage:
        await stage.run_until(lambda: bool(stage.finished()))
    (turn,) = stage.finished()
    assert turn.user_text == "Book a table for two people tonight."
    # The words before the pause were heard again with the rest (the recognizer was given
    # both stretches of speech and the pause between them): none carry over as text.
    first, whole = stt.heard_seconds
    assert whole >= first + 0.45 + 0.8 - FRAME_TOLERANCE_MS / 1000
    (withdrawn,) = stage.events(TurnWithdrawn)
    assert withdrawn.user_text == ""
    # The reply prepared during the pause was never heard, and only one was answered.
    assert len(llm.requests) == 2
    assert llm.requests[0].messages[-1].content == "Book a table"
    assert "interrupted" not in stage.states()
    assert not stage.audible(0, 2.05)


async def test_barge_in_stops_playback_and_keeps_only_what_was_heard(tmp_path) -> None:
    async with Stage(tmp_path, mode="vad", llm=long_llm(), script=[Speech(0, 1.0)]) as stage:
        speaking = await stage.run_until(lambda: stage.session.state is State.SPEAKING)
        barge = speaking + 1.5  # the assistant talks for a while, then the user talks over it
        stage.add(Speech(barge, barge + 0.8))
        await stage.run_to(barge + 0.8)
        assert stage.session.state is State.USER_SPEAKING
        await stage.run_until(lambda: len(stage.finished()) == 2)
    first, second = stage.finished()
    assert first.interrupted
    assert first.assistant_text and LONG_REPLY.startswith(first.assistant_text)
    assert len(first.assistant_text) < len(LONG_REPLY) / 2
    assert "interrupted" in first.timeline["marks_ms"]
    assert second.user_text == "Tell me something interesting about the moon."
    assert not second.interrupted
    states = stage.states()
    assert "interrupted" in states and states.index("interrupted") < len(states) - 1
    # Playback paused after interruption.pause_after_ms (one 32 ms frame) of speech plus the
    # frame's own rounding, and stayed silent (no stale audio) until the second reply began.
    (paused_at,) = stage.times(PlaybackPaused)
    assert paused_at - barge == pytest.approx(0.032 + 0.032 / 2, abs=0.03)
    second_start = stage.first_sound_after(paused_at + 0.05)
    assert second_start is not None and second_start - paused_at > 0.8
    assert not stage.audible(paused_at + 0.05, second_start - 0.01)


async def test_a_look_between_frames_pauses_a_reply_before_the_frame_ends(tmp_path) -> None:
    async with Stage(tmp_path, mode="vad", llm=long_llm(), script=[Speech(0, 1.0)]) as stage:
        speaking = await stage.run_until(lambda: stage.session.state is State.SPEAKING)
        # The user starts 1 ms into a frame; the capture looks at its audio every 10 ms.
        barge = (int((speaking + 1.5) / FRAME_SECONDS) + 1) * FRAME_SECONDS + 0.001
        stage.add(Speech(barge, barge + 0.8))
        voice = (np.random.default_rng(1).standard_normal(FRAME_SAMPLES) * 4000).astype(np.int16)
        for k in (1, 2):
            at = barge - 0.001 + 0.01 * k
            look = AudioLook(voice, 160 * k, T0 + at)
            stage.add(Do(at, lambda s, look=look: s.look(look)))
        await stage.run_until(lambda: len(stage.finished()) == 2)
    # The first look already hears the user: the reply pauses 10 ms in, not at the frame's end.
    (paused_at,) = stage.times(PlaybackPaused)
    assert paused_at - barge == pytest.approx(0.009, abs=1e-6)
    first, second = stage.finished()
    assert first.interrupted
    assert second.user_text == "Tell me something interesting about the moon."


async def test_false_interruption_pauses_then_resumes(tmp_path) -> None:
    stt = FakeSTT(script=("Tell me a story.", "mhm"))
    async with Stage(tmp_path, mode="vad", stt=stt, llm=long_llm(), script=[Speech(0, 1.0)]) as s:
        speaking = await s.run_until(lambda: s.session.state is State.SPEAKING)
        mhm = speaking + 0.5
        s.add(Speech(mhm, mhm + 0.2))  # a short "mhm"
        await s.run_until(lambda: bool(s.finished()), limit=30)
    (turn,) = s.finished()
    (paused,), (resumed,) = s.times(PlaybackPaused), s.times(PlaybackResumed)
    # Paused when the speech was detected (one frame in: interruption.pause_after_ms), resumed
    # once the 200 ms pause after it and the hold for a next word (300 ms) have passed.
    hold = s.session.settings.interruption.interjection_resume_ms / 1000
    assert paused - mhm == pytest.approx(0.048, abs=0.03)
    assert resumed - (mhm + 0.2) == pytest.approx(0.2 + hold, abs=0.05)
    assert not s.audible(paused + 0.03, resumed - 0.03)
    assert s.audible(resumed + 0.05, resumed + 0.5)
    assert not turn.interrupted
    assert turn.assistant_text == LONG_REPLY


@pytest.mark.parametrize("said", ["Uh-uh.", "Yeah, right.", "Okay.", "[cough]"])
async def test_backchannels_and_noises_never_stop_the_reply(tmp_path, said: str) -> None:
    stt = FakeSTT(script=("Tell me a story.", said), min_audio_seconds=0.05)
    async with Stage(tmp_path, mode="vad", stt=stt, llm=long_llm(), script=[Speech(0, 1.0)]) as s:
        speaking = await s.run_until(lambda: s.session.state is State.SPEAKING)
        s.add(Speech(speaking + 1.0, speaking + 1.35))
        await s.run_until(lambda: bool(s.finished()), limit=30)
    (turn,) = s.finished()
    if said == "[cough]":  # no words in it at all, but not a known backchannel either
        assert turn.interrupted
        return
    assert not turn.interrupted and turn.assistant_text == LONG_REPLY
    assert len(s.events(FinalTranscript)) == 1  # the backchannel took no turn


@pytest.mark.parametrize(
    ("after_known", "goes_on"), [(0.04, True), (ECHO_WORDS_GRACE + 0.1, False)]
)
async def test_just_after_the_echo_becomes_known_a_sign_off_lets_the_reply_go_on(
    tmp_path, after_known: float, goes_on: bool
) -> None:
    # The canceller settles while the first reply plays; a moment later the onset of one of
    # its words leaks through, and the recognizer writes "Thank you." for it. Later on the
    # same words are the user's.
    stt = FakeSTT(script=("Tell me a story.", "Thank you."), min_audio_seconds=0.05)
    async with Stage(tmp_path, mode="vad", stt=stt, llm=long_llm(), script=[Speech(0, 1.0)]) as s:
        s.session.set_echo_uncertain(True)
        speaking = await s.run_until(lambda: s.session.state is State.SPEAKING)
        known = speaking + 1.5
        s.add(Do(known, lambda session: session.set_echo_uncertain(False)))
        s.add(Speech(known + after_known, known + after_known + 0.25))
        await s.run_until(lambda: bool(s.finished()), limit=30)
        await s.run_to(s.now + 1)
    first = s.finished()[0]
    assert len(s.events(PlaybackPaused)) == 1  # paused at once either way
    if goes_on:
        assert len(s.events(PlaybackResumed)) == 1
        assert not first.interrupted and first.assistant_text == LONG_REPLY
        assert [e.text for e in s.events(FinalTranscript)] == ["Tell me a story."]
    else:
        assert first.interrupted
        assert [e.text for e in s.events(FinalTranscript)][-1] == "Thank you."


async def test_a_short_stop_stops_the_reply_and_is_not_answered(tmp_path) -> None:
    stt = FakeSTT(script=("Tell me a story.", "Stop."), min_audio_seconds=0.05)
    async with Stage(tmp_path, mode="vad", stt=stt, llm=long_llm(), script=[Speech(0, 1.0)]) as s:
        speaking = await s.run_until(lambda: s.session.state is State.SPEAKING)
        s.add(Speech(speaking + 1.0, speaking + 1.3))
        await s.run_until(lambda: bool(s.finished()), limit=30)
        await s.run_to(s.now + 3)
    (turn,) = s.finished()
    assert turn.interrupted and LONG_REPLY.startswith(turn.assistant_text)
    assert len(stt.final_delays) == 2 and len(s.finished()) == 1  # nothing answered "Stop."
    assert not s.audible(speaking + 1.3 + 0.5, s.now)


async def test_a_short_question_over_the_reply_interrupts_and_is_answered(tmp_path) -> None:
    stt = FakeSTT(script=("Tell me a story.", "Why?"), min_audio_seconds=0.05)
    async with Stage(tmp_path, mode="vad", stt=stt, llm=long_llm(), script=[Speech(0, 1.0)]) as s:
        speaking = await s.run_until(lambda: s.session.state is State.SPEAKING)
        s.add(Speech(speaking + 1.0, speaking + 1.3))
        await s.run_until(lambda: len(s.finished()) == 2, limit=30)
    first, second = s.finished()
    assert first.interrupted and second.user_text == "Why?"


async def test_a_gap_after_the_first_word_over_a_reply_keeps_it_paused(tmp_path) -> None:
    """ "Please … tell me about the weather" over the reply: the 350 ms gap after "Please" ends
    the interjection, but the reply stays paused through it, and the sentence is heard whole
    (the first word alone was transcribed as nothing)."""
    stt = FakeSTT(
        script=("Tell me a story.", "", "Please tell me about the weather."),
        min_audio_seconds=0.05,
    )
    async with Stage(tmp_path, mode="vad", stt=stt, llm=long_llm(), script=[Speech(0, 1.0)]) as s:
        speaking = await s.run_until(lambda: s.session.state is State.SPEAKING)
        please = speaking + 1.0
        s.add(Speech(please, please + 0.25))
        s.add(Speech(please + 0.6, please + 2.0))
        await s.run_until(lambda: len(s.finished()) == 2, limit=30)
    first, second = s.finished()
    assert first.interrupted and not s.events(PlaybackResumed)
    assert second.user_text == "Please tell me about the weather."
    (paused,) = s.times(PlaybackPaused)
    assert not s.audible(paused + 0.05, please + 2.0)


async def test_backchannel_then_barge_in_in_one_reply(tmp_path) -> None:
    """User speaks 0–1 s; says "mhm" 2 s into the reply; interrupts for real 1 s later."""
    stt = FakeSTT(script=("Tell me a story.", "mhm", "Stop, what about dragons?"))
    async with Stage(tmp_path, mode="vad", stt=stt, llm=long_llm(), script=[Speech(0, 1.0)]) as s:
        speaking = await s.run_until(lambda: s.session.state is State.SPEAKING)
        s.add(Speech(speaking + 2.0, speaking + 2.2))
        s.add(Speech(speaking + 3.5, speaking + 4.5))
        await s.run_until(lambda: len(s.finished()) == 2, limit=30)
    first, second = s.finished()
    assert len(s.events(PlaybackPaused)) == 2 and len(s.events(PlaybackResumed)) == 1
    assert first.interrupted and second.user_text == "Stop, what about dragons?"
    heard_until = first.timeline["marks_ms"]["interrupted"]
    assert LONG_REPLY.startswith(first.assistant_text) and heard_until > 0


async def test_llm_error_before_first_token_falls_back(tmp_path) -> None:
    clock = ManualClock(T0)
    broken = FakeLLM(fail_before_first_token=EngineError("cloud is down"), name="cloud")
    spare = FakeLLM(reply=lambda _r: "The spare engine answers.", ttft=0.02, name="spare")
    broken.clock = spare.clock = clock
    chain = FallbackLLM([broken, spare], clock=clock)
    stage = Stage(tmp_path, script=[Key(0, 0.6)], clock=clock, engines=(None, chain, None))
    async with stage:
        await stage.run_until(lambda: bool(stage.finished()))
    (turn,) = stage.finished()
    assert turn.assistant_text == "The spare engine answers."
    assert turn.error is None
    notices = [n.message for n in stage.events(Notice)]
    assert any("cloud failed (cloud is down); using spare" in n for n in notices)


async def test_tts_error_mid_reply_tells_user_and_keeps_history(tmp_path) -> None:
    async with Stage(tmp_path, llm=long_llm(), script=[Key(0, 0.6)]) as stage:
        await stage.run_until(lambda: bool(stage.finished()))
        failing = FakeTTS(first_audio_delay=0.02, chars_per_second=40, fail_after_chunks=8)
        failing.clock = stage.clock
        stage.session.tts = failing
        stage.add(Key(stage.now + 0.1, stage.now + 0.7))
        await stage.run_until(lambda: len(stage.finished()) == 2)
        await stage.run_until(lambda: stage.session.state is State.LISTENING)
    first, second = stage.finished()
    assert first.assistant_text == LONG_REPLY
    errors = stage.events(ErrorEvent)
    assert errors and "fake speech engine failed" in errors[0].message
    assert errors[0].source is Source.TTS  # the voice failed, not the language model
    assert second.error and "failed mid-reply" in second.error
    assert second.assistant_text and LONG_REPLY.startswith(second.assistant_text)
    assert len(second.assistant_text) < len(LONG_REPLY)
    reloaded, _ = stage.store.latest()
    assert [t.assistant_text for t in reloaded.turns] == [
        first.assistant_text,
        second.assistant_text,
    ]


async def test_two_quick_turns_in_a_row(tmp_path) -> None:
    async with Stage(tmp_path, llm=long_llm(), script=[Key(0, 0.6)]) as stage:
        speaking = await stage.run_until(lambda: stage.session.state is State.SPEAKING)
        stage.add(Key(speaking + 0.3, speaking + 0.9))  # pressing the key interrupts at once
        await stage.run_until(lambda: len(stage.finished()) == 2)
    first, second = stage.finished()
    assert first.interrupted and not second.interrupted
    assert second.turn_id > first.turn_id
    # Silent from the key press until the second reply.
    assert not stage.audible(speaking + 0.3 + 0.03, speaking + 0.9)
    reloaded, _ = stage.store.latest()
    assert [t.turn_id for t in reloaded.turns] == [first.turn_id, second.turn_id]


async def test_speaking_again_before_the_answer_merges_the_words(tmp_path) -> None:
    slow = FakeLLM(ttft=1.0, tokens_per_second=200)
    stt = FakeSTT(script=("Book a table", "for two people tonight."))
    async with Stage(tmp_path, stt=stt, llm=slow, script=[Key(0, 0.6)]) as stage:
        thinking = await stage.run_until(lambda: stage.session.state is State.THINKING)
        stage.add(Key(thinking + 0.2, thinking + 1.0))
        await stage.run_until(lambda: bool(stage.finished()))
    (turn,) = stage.finished()
    assert turn.user_text == "Book a table for two people tonight."
    assert [e.text for e in stage.events(FinalTranscript)][-1] == turn.user_text
    (withdrawn,) = stage.events(TurnWithdrawn)
    assert withdrawn.user_text == "Book a table"


async def test_tool_result_is_kept_and_spoken(tmp_path) -> None:
    llm = FakeLLM(ttft=0.02, tool_call=("calculate", '{"expression": "6*7"}'))
    async with Stage(tmp_path, llm=llm, tools=default_tools(), script=[Key(0, 0.6)]) as stage:
        await stage.run_until(lambda: bool(stage.finished()))
    (turn,) = stage.finished()
    assert [(t.name, t.result) for t in turn.tool_calls] == [("calculate", "42")]
    assert turn.assistant_text == "The answer is 42. Anything else?"
    assert stage.events(ToolCalled)
    follow_up = llm.requests[-1].messages  # the follow-up request carried the call and result
    assert follow_up[-1].role == "tool" and follow_up[-1].content == "42"


async def test_stop_button_interrupts_and_history_shows_cut(tmp_path) -> None:
    async with Stage(tmp_path, llm=long_llm(), script=[Key(0, 0.6)]) as stage:
        speaking = await stage.run_until(lambda: stage.session.state is State.SPEAKING)
        stage.add(Do(speaking + 1.0, Session.interrupt))
        await stage.run_until(lambda: stage.session.state is State.LISTENING)
        assert stage.states()[-3:] == ["speaking", "interrupted", "listening"]
    (turn,) = stage.finished()
    assert turn.interrupted
    assert 0 < len(turn.assistant_text) < len(LONG_REPLY)
    spoken = [e for e in stage.events(AssistantText) if e.turn_id == turn.turn_id]
    assert spoken[-1].spoken == turn.assistant_text
    assert not stage.audible(speaking + 1.0 + 0.03, stage.now)


async def test_a_broken_transcript_stream_loses_no_turn(tmp_path) -> None:
    stt = FakeSTT(fail_first_final=EngineError("the recognizer crashed"))
    async with Stage(tmp_path, stt=stt, script=[Key(0, 0.6)]) as stage:
        await stage.run_until(lambda: bool(stage.finished()))
        await stage.run_until(lambda: stage.session.state is State.LISTENING)
        stage.add(Key(stage.now + 0.1, stage.now + 0.7))
        await stage.run_until(lambda: len(stage.finished()) == 2)
    first, second = stage.finished()
    # The utterance the crash interrupted went to the reopened stream and was answered.
    assert first.user_text and first.assistant_text and first.error is None
    assert second.user_text and second.assistant_text
    assert stage.events(ErrorEvent) == []


async def test_finished_sounding_words_end_the_turn_without_waiting(tmp_path) -> None:
    model = ScriptedTurnModel(0.95)
    stage = Stage(tmp_path, mode="vad", turn_model=model, script=[Speech(0, 1.2)])
    stage.settings.vad.end_silence_ms = 900
    async with stage:
        await stage.run_until(lambda: bool(stage.finished()))
    (turn,) = stage.finished()
    assert model.calls
    notes = turn.timeline["notes"]
    assert notes["end_of_turn_probability"] == 0.95
    # Ended once the words were in (the 200 ms pause + the recognizer's 50 ms), long before
    # the 900 ms silence.
    assert notes["endpoint_ms"] == pytest.approx(250, abs=FRAME_TOLERANCE_MS)
    assert turn.timeline["marks_ms"]["playback_start"] < 400


async def test_unfinished_sounding_words_wait_longer(tmp_path) -> None:
    stage = Stage(tmp_path, mode="vad", turn_model=ScriptedTurnModel(0.05), script=[Speech(0, 1.2)])
    stage.settings.vad.max_end_silence_ms = 1000
    async with stage:
        await stage.run_until(lambda: bool(stage.finished()))
    (turn,) = stage.finished()
    assert turn.timeline["notes"]["endpoint_ms"] == pytest.approx(1000, abs=FRAME_TOLERANCE_MS)


async def test_talking_again_before_a_slow_transcript_merges_instead_of_orphaning(
    tmp_path,
) -> None:
    stt = FakeSTT(script=("Book a table", "for two people tonight."), final_delay=0.6)
    async with Stage(tmp_path, stt=stt, script=[Key(0, 0.6), Key(0.7, 1.3)]) as stage:
        await stage.run_until(lambda: bool(stage.finished()))
        await stage.run_until(lambda: stage.session.state is State.LISTENING)
    (turn,) = stage.finished()
    assert turn.user_text == "Book a table for two people tonight."
    assert not [
        t for t in asyncio.all_tasks() if t.get_name().startswith("reply-") and not t.done()
    ]


async def test_replies_after_new_conversation_are_heard(tmp_path) -> None:
    async with Stage(tmp_path, script=[Key(0, 0.6)]) as stage:
        for n in (1, 2):
            await stage.run_until(lambda n=n: len(stage.finished()) == n)
            if n == 1:
                stage.add(Key(stage.now + 0.1, stage.now + 0.7))
        stage.session.new_conversation(stage.store.new())
        pressed = stage.now + 0.1
        stage.add(Key(pressed, pressed + 0.6))
        await stage.run_until(lambda: len(stage.finished()) == 3)
        await stage.run_to(stage.now + 0.5)
    last = stage.finished()[-1]
    start = last.timeline["marks_ms"]["playback_start"] / 1000 + pressed + 0.6
    assert stage.audible(start, start + 1.0)
    assert last.turn_id > stage.finished()[1].turn_id


async def test_speech_after_an_empty_speculative_transcript_is_not_lost(tmp_path) -> None:
    stt = FakeSTT(script=("", "what is the weather in Paris"))
    stage = Stage(tmp_path, mode="vad", stt=stt, script=[Speech(0, 0.5), Speech(0.85, 2.05)])
    stage.settings.vad.end_silence_ms = 600  # a cough, a 0.35 s pause (empty), then the question
    async with stage:
        await stage.run_until(lambda: bool(stage.finished()))
    (turn,) = stage.finished()
    assert turn.user_text == "what is the weather in Paris"


async def test_speculative_reply_runs_no_tool_before_the_turn_ends(tmp_path) -> None:
    stt = FakeSTT(script=("What is six times", "What is six times seven?"))
    llm = FakeLLM(ttft=0.02, tool_call=("calculate", '{"expression": "6*7"}'))
    script = [Speech(0, 0.8), Speech(1.25, 1.85)]
    stage = Stage(tmp_path, mode="vad", stt=stt, llm=llm, tools=default_tools(), script=script)
    stage.settings.vad.end_silence_ms = 700
    async with stage:
        await stage.run_until(lambda: bool(stage.finished()))
    (turn,) = stage.finished()
    assert turn.user_text == "What is six times seven?"
    assert [t.name for t in turn.tool_calls] == ["calculate"]
    assert not turn.interrupted


async def test_typed_message_while_speaking_replaces_the_reply(tmp_path) -> None:
    async with Stage(tmp_path, llm=long_llm(), script=[Key(0, 0.6)]) as stage:
        speaking = await stage.run_until(lambda: stage.session.state is State.SPEAKING)
        stage.add(Do(speaking + 0.5, lambda s: s.submit_text("What time is it?")))
        await stage.run_until(lambda: len(stage.finished()) == 2)
    first, second = stage.finished()
    assert first.interrupted and second.user_text == "What time is it?"
    assert second.timeline["marks_ms"]["speech_end"] == 0.0


async def test_while_echo_is_uncertain_the_assistants_own_voice_never_interrupts_it(
    tmp_path,
) -> None:
    # The microphone hears the reply come back (its own words), then the user for real.
    stt = FakeSTT(
        script=("Tell me a story.", "counted the boats that passed by", "What about the river?"),
        min_audio_seconds=0.05,
    )
    async with Stage(tmp_path, mode="vad", stt=stt, llm=long_llm(), script=[Speech(0, 1.0)]) as s:
        s.session.set_echo_uncertain(True)
        speaking = await s.run_until(lambda: s.session.state is State.SPEAKING)
        s.add(Speech(speaking + 0.5, speaking + 2.0))  # 1.5 s of "speech": the echo
        await s.run_to(speaking + 3.5)
        assert s.events(PlaybackPaused) == []  # never paused for it
        assert not s.finished()  # still talking
        assert [e.text for e in s.events(FinalTranscript)] == ["Tell me a story."]
        s.add(Speech(speaking + 4.0, speaking + 5.0))  # the user, with words of their own
        await s.run_until(lambda: len(s.finished()) == 2, limit=60)
    first, second = s.finished()
    assert first.interrupted
    assert second.user_text == "What about the river?"
