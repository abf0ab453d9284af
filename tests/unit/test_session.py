"""Scripted-timeline tests: real session, splitter and player; fake engines with set latencies."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

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
    State,
    ToolCalled,
    TurnWithdrawn,
)
from assistant.tools import default_tools

LONG_REPLY = (
    "Once upon a time there was a small robot who loved to listen. Every morning it walked to "
    "the river and counted the boats that passed by. One day a boat stopped, and a child waved."
)


def long_llm(**kw: object) -> FakeLLM:
    return FakeLLM(reply=lambda _r: LONG_REPLY, ttft=0.05, tokens_per_second=200, **kw)  # type: ignore[arg-type]


async def test_ptt_turn_runs_through_every_state(harness_factory) -> None:
    async with harness_factory(mode="ptt") as h:
        await h.audio(0.2, speech=False)
        await h.ptt(0.8)
        await h.until(lambda: h.finished(), timeout=15)
        await h.until_state(State.LISTENING)
    assert h.states()[:5] == ["listening", "user_speaking", "thinking", "speaking", "listening"]
    turn = h.finished()[0]
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
    assert turn.timeline["voice_to_voice_ms"] == pytest.approx(marks["playback_start"])
    # Partials came while speaking, and the audio reached the device.
    assert h.of(PartialTranscript)
    assert np.abs(h.player.recorded()).max() > 1000
    # The turn is on disk.
    reloaded, _ = h.store.latest()
    assert [t.user_text for t in reloaded.turns] == [turn.user_text]


async def test_vad_turn_ends_after_silence_and_anchors_at_speech_end(harness_factory) -> None:
    async with harness_factory(mode="vad") as h:
        await h.audio(0.3, speech=False)
        await h.audio(1.0, speech=True)
        await h.until(lambda: h.finished(), timeout=15)
    turn = h.finished()[0]
    marks = turn.timeline["marks_ms"]
    # Speech started ~1 s before it ended. The transcript was asked for after the 200 ms
    # speculative pause; the answer played only after the 300 ms endpoint silence.
    assert -1150 < marks["speech_start"] < -850
    assert 200 <= marks["stt_final"] < 600
    assert 290 <= turn.timeline["notes"]["endpoint_ms"] < 600
    assert marks["playback_start"] >= turn.timeline["notes"]["endpoint_ms"] - 5


async def test_a_pause_mid_sentence_does_not_answer_half_a_question(harness_factory) -> None:
    stt = FakeSTT(script=("Book a table", "for two people tonight."))
    llm = FakeLLM(ttft=0.02, tokens_per_second=400)
    async with harness_factory(mode="vad", stt=stt, llm=llm) as h:
        h.settings.vad.end_silence_ms = 700
        await h.audio(0.8, speech=True)
        await h.audio(0.45, speech=False)  # a thinking pause: past the 200 ms speculation
        await h.audio(0.8, speech=True)
        await h.until(lambda: h.finished(), timeout=15)
    (turn,) = h.finished()
    assert turn.user_text == "Book a table for two people tonight."
    (withdrawn,) = h.of(TurnWithdrawn)
    assert withdrawn.user_text == "Book a table"
    # The reply prepared during the pause was never heard, and only one was answered.
    assert len(llm.requests) == 2
    assert llm.requests[0].messages[-1].content == "Book a table"
    assert "interrupted" not in h.states()


async def test_barge_in_stops_playback_and_keeps_only_what_was_heard(harness_factory) -> None:
    async with harness_factory(mode="vad", llm=long_llm()) as h:
        await h.audio(1.0, speech=True)
        await h.until_state(State.SPEAKING)
        await h.audio(1.5, speech=False)  # the assistant talks for a while
        recorded_before = len(h.player.recorded())
        await h.audio(0.8, speech=True)  # the user talks over it
        assert h.session.state is State.USER_SPEAKING
        await h.until(lambda: len(h.finished()) == 2, timeout=20)
    first, second = h.finished()
    assert first.interrupted
    assert first.assistant_text
    assert LONG_REPLY.startswith(first.assistant_text)
    assert len(first.assistant_text) < len(LONG_REPLY) / 2
    assert "interrupted" in first.timeline["marks_ms"]
    assert second.user_text == "Tell me something interesting about the moon."
    assert not second.interrupted
    states = h.states()
    assert "interrupted" in states
    assert states.index("interrupted") < len(states) - 1
    # No stale audio: from the pause until the second reply begins, the device is silent.
    rec = h.player.recorded()
    rate = h.player.rate
    gap_start = recorded_before + int(0.25 * rate)  # pause: 100 ms speech to detect, + a block
    second_start = _first_loud_after(rec, gap_start)
    assert second_start is not None
    assert (second_start - gap_start) / rate > 0.8  # the rest of the first reply never played
    assert np.abs(rec[gap_start : second_start - int(0.1 * rate)]).max() < 100


def _first_loud_after(pcm: np.ndarray, start: int) -> int | None:
    loud = np.flatnonzero(np.abs(pcm[start:]) > 100)
    return int(start + loud[0]) if len(loud) else None


async def test_false_interruption_pauses_then_resumes(harness_factory) -> None:
    stt = FakeSTT(script=("Tell me a story.", "mhm"))
    async with harness_factory(mode="vad", stt=stt, llm=long_llm()) as h:
        await h.audio(1.0, speech=True)
        await h.until_state(State.SPEAKING)
        await h.audio(0.5, speech=False)
        await h.audio(0.2, speech=True)  # a short "mhm"
        await h.until(lambda: h.of(PlaybackResumed), timeout=5)
        await h.until(lambda: h.finished(), timeout=30)
    (turn,) = h.finished()
    assert h.of(PlaybackPaused) and h.of(PlaybackResumed)
    assert not turn.interrupted
    assert turn.assistant_text == LONG_REPLY


async def test_llm_error_before_first_token_falls_back(harness_factory) -> None:
    broken = FakeLLM(fail_before_first_token=EngineError("cloud is down"), name="cloud")
    spare = FakeLLM(reply=lambda _r: "The spare engine answers.", ttft=0.02, name="spare")
    async with harness_factory(llm=FallbackLLM([broken, spare])) as h:
        await h.ptt(0.6)
        await h.until(lambda: h.finished(), timeout=10)
    (turn,) = h.finished()
    assert turn.assistant_text == "The spare engine answers."
    assert turn.error is None
    notices = [n.message for n in h.of(Notice)]
    assert any("cloud failed (cloud is down); using spare" in n for n in notices)


async def test_tts_error_mid_reply_tells_user_and_keeps_history(harness_factory) -> None:
    async with harness_factory(llm=long_llm()) as h:
        await h.ptt(0.6)
        await h.until(lambda: h.finished(), timeout=20)
        h.session.tts = FakeTTS(first_audio_delay=0.02, chars_per_second=40, fail_after_chunks=8)
        await h.ptt(0.6)
        await h.until(lambda: len(h.finished()) == 2, timeout=20)
        await h.until_state(State.LISTENING)
    first, second = h.finished()
    assert first.assistant_text == LONG_REPLY
    errors = h.of(ErrorEvent)
    assert errors and "fake speech engine failed" in errors[0].message
    assert second.error and "failed mid-reply" in second.error
    assert second.assistant_text and LONG_REPLY.startswith(second.assistant_text)
    assert len(second.assistant_text) < len(LONG_REPLY)
    reloaded, _ = h.store.latest()
    assert [t.assistant_text for t in reloaded.turns] == [
        first.assistant_text,
        second.assistant_text,
    ]


async def test_two_quick_turns_in_a_row(harness_factory) -> None:
    async with harness_factory(llm=long_llm()) as h:
        await h.ptt(0.6)
        await h.until_state(State.SPEAKING)
        await h.audio(0.3, speech=False)
        await h.ptt(0.6)  # pressing the talk key interrupts at once
        await h.until(lambda: len(h.finished()) == 2, timeout=20)
    first, second = h.finished()
    assert first.interrupted and not second.interrupted
    assert second.turn_id > first.turn_id
    reloaded, _ = h.store.latest()
    assert [t.turn_id for t in reloaded.turns] == [first.turn_id, second.turn_id]


async def test_speaking_again_before_the_answer_merges_the_words(harness_factory) -> None:
    slow = FakeLLM(ttft=1.0, tokens_per_second=200)
    stt = FakeSTT(script=("Book a table", "for two people tonight."))
    async with harness_factory(stt=stt, llm=slow) as h:
        await h.ptt(0.6)
        await h.until_state(State.THINKING)
        await h.audio(0.2, speech=False)
        await h.ptt(0.8)
        await h.until(lambda: h.finished(), timeout=10)
    (turn,) = h.finished()
    assert turn.user_text == "Book a table for two people tonight."
    finals = [e.text for e in h.of(FinalTranscript)]
    assert finals[-1] == turn.user_text
    (withdrawn,) = h.of(TurnWithdrawn)
    assert withdrawn.user_text == "Book a table"


async def test_tool_result_is_kept_and_spoken(harness_factory) -> None:
    llm = FakeLLM(ttft=0.02, tool_call=("calculate", '{"expression": "6*7"}'))
    async with harness_factory(llm=llm) as h:
        h.session.tools = default_tools()
        await h.ptt(0.6)
        await h.until(lambda: h.finished(), timeout=10)
    (turn,) = h.finished()
    assert [(t.name, t.result) for t in turn.tool_calls] == [("calculate", "42")]
    assert turn.assistant_text == "The answer is 42. Anything else?"
    assert h.of(ToolCalled)
    # The follow-up request carried the call and its result.
    follow_up = llm.requests[-1].messages
    assert follow_up[-1].role == "tool" and follow_up[-1].content == "42"


async def test_stop_button_interrupts_and_history_shows_cut(harness_factory) -> None:
    async with harness_factory(llm=long_llm()) as h:
        await h.ptt(0.6)
        await h.until_state(State.SPEAKING)
        await h.audio(1.0, speech=False)
        h.session.interrupt()
        await h.until_state(State.LISTENING)
    (turn,) = h.finished()
    assert turn.interrupted
    assert 0 < len(turn.assistant_text) < len(LONG_REPLY)
    spoken = [e for e in h.of(AssistantText) if e.turn_id == turn.turn_id]
    assert spoken[-1].spoken == turn.assistant_text


async def test_broken_transcript_stream_fails_one_turn_and_recovers(harness_factory) -> None:
    stt = FakeSTT(fail_first_final=EngineError("the recognizer crashed"))
    async with harness_factory(stt=stt) as h:
        await h.ptt(0.6)
        await h.until(lambda: h.of(ErrorEvent), timeout=10)
        await h.until_state(State.LISTENING)
        await h.ptt(0.6)
        await h.until(lambda: h.finished(), timeout=10)
    assert "the recognizer crashed" in h.of(ErrorEvent)[0].message
    (turn,) = h.finished()
    assert turn.user_text == "Tell me something interesting about the moon."


class ScriptedTurnModel:
    def __init__(self, probability: float) -> None:
        self.probability = probability
        self.calls: list[int] = []

    def end_probability(self, pcm16k) -> float:
        self.calls.append(len(pcm16k))
        return self.probability


async def test_finished_sounding_words_end_the_turn_without_waiting(harness_factory) -> None:
    async with harness_factory(mode="vad") as h:
        h.settings.vad.end_silence_ms = 900
        h.session.turn_model = ScriptedTurnModel(0.95)
        await h.audio(1.2, speech=True)
        await h.until(lambda: h.finished(), timeout=15)
    (turn,) = h.finished()
    assert h.session.turn_model.calls  # type: ignore[union-attr]
    notes = turn.timeline["notes"]
    assert notes["end_of_turn_probability"] == 0.95
    # Ended at the 200 ms pause plus the model's time, well before the 900 ms silence.
    assert notes["endpoint_ms"] < 600
    assert turn.timeline["marks_ms"]["playback_start"] < 800


async def test_unfinished_sounding_words_wait_longer(harness_factory) -> None:
    async with harness_factory(mode="vad") as h:
        h.settings.vad.end_silence_ms = 300
        h.settings.vad.max_end_silence_ms = 1000
        h.session.turn_model = ScriptedTurnModel(0.05)
        await h.audio(1.2, speech=True)
        await h.until(lambda: h.finished(), timeout=15)
    (turn,) = h.finished()
    assert turn.timeline["notes"]["endpoint_ms"] >= 950


async def test_talking_again_before_a_slow_transcript_merges_instead_of_orphaning(
    harness_factory,
) -> None:
    stt = FakeSTT(script=("Book a table", "for two people tonight."), final_delay=0.6)
    async with harness_factory(stt=stt) as h:
        await h.ptt(0.6)
        await h.audio(0.1, speech=False)  # the first transcript is not in yet
        await h.ptt(0.6)
        await h.until(lambda: h.finished(), timeout=15)
        await h.until_state(State.LISTENING)
    (turn,) = h.finished()
    assert turn.user_text == "Book a table for two people tonight."
    assert h.session._reply is None
    assert not [
        t for t in asyncio.all_tasks() if t.get_name().startswith("reply-") and not t.done()
    ]


async def test_replies_after_new_conversation_are_heard(harness_factory) -> None:
    async with harness_factory() as h:
        for n in (1, 2):
            await h.ptt(0.6)
            await h.until(lambda n=n: len(h.finished()) == n, timeout=15)
        h.session.new_conversation(h.store.new())
        before = len(h.player.recorded())
        await h.ptt(0.6)
        await h.until(lambda: len(h.finished()) == 3, timeout=15)
    last = h.finished()[-1]
    assert "playback_start" in last.timeline["marks_ms"]
    assert len(h.player.recorded()) - before > h.player.rate  # over a second of it was played


async def test_speech_after_an_empty_speculative_transcript_is_not_lost(harness_factory) -> None:
    stt = FakeSTT(script=("", "what is the weather in Paris"))
    async with harness_factory(mode="vad", stt=stt) as h:
        h.settings.vad.end_silence_ms = 600
        await h.audio(0.5, speech=True)  # a cough
        await h.audio(0.35, speech=False)  # the pause: its transcript comes back empty
        await h.audio(1.2, speech=True)  # the user goes on
        await h.until(lambda: h.finished(), timeout=15)
    (turn,) = h.finished()
    assert turn.user_text == "what is the weather in Paris"


async def test_speculative_reply_runs_no_tool_before_the_turn_ends(harness_factory) -> None:
    stt = FakeSTT(script=("What is six times", "seven?"))
    llm = FakeLLM(ttft=0.02, tool_call=("calculate", '{"expression": "6*7"}'))
    async with harness_factory(mode="vad", stt=stt, llm=llm) as h:
        h.session.tools = default_tools()
        h.settings.vad.end_silence_ms = 700
        await h.audio(0.8, speech=True)
        await h.audio(0.45, speech=False)
        await h.audio(0.6, speech=True)
        await h.until(lambda: h.finished(), timeout=15)
    (turn,) = h.finished()
    assert turn.user_text == "What is six times seven?"
    assert [t.name for t in turn.tool_calls] == ["calculate"]
    assert not turn.interrupted
