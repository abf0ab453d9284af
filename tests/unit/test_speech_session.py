"""The speech-to-speech conversation on virtual time: a real ``SpeechSession``, recorder and
clock-driven player around the scripted speech-to-speech engine, driven by declarative scripts.

Each test asserts outcomes: what the user heard (the recorded output), what the history holds,
what the engine was told (how much of an interrupted answer was heard), and the timeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.engines.base import EngineError
from assistant.engines.fake_agent import FakeSpeechAgent
from assistant.events import (
    ErrorEvent,
    FinalTranscript,
    PlaybackPaused,
    PlaybackResumed,
    State,
    ToolCalled,
)
from assistant.history import turn_messages
from assistant.tools import default_tools
from assistant.types import FRAME_SECONDS
from tests.scenario import Do, Key, Speech, Stage

BLOCK = 480 / 24_000  # the clocked player's audio block


def agent(**changes: object) -> FakeSpeechAgent:
    engine = FakeSpeechAgent(script=("What is a good name for a cat?",), **changes)  # type: ignore[arg-type]
    return engine


async def test_push_to_talk_turn_is_answered_and_recorded_as_heard(tmp_path: Path) -> None:
    engine = agent()
    async with Stage(tmp_path, script=[Key(0.5, 2.0)], agent=engine) as stage:
        await stage.run_until(lambda: bool(stage.finished()), limit=10)
    (turn,) = stage.finished()
    assert turn.user_text == "What is a good name for a cat?"
    assert turn.assistant_text == engine.reply and not turn.interrupted
    marks = turn.timeline["marks_ms"]
    assert marks["speech_end"] == 0
    # The answer's first audio comes first_audio_delay after the commit, and plays at once.
    assert marks["tts_first_audio"] == pytest.approx(150, abs=1)
    assert turn.timeline["voice_to_voice_ms"] == pytest.approx(marks["playback_start"])
    assert marks["playback_start"] - marks["tts_first_audio"] <= 1000 * BLOCK
    assert turn.timeline["notes"]["pipeline"] == "speech-to-speech"
    (session,) = engine.sessions
    assert session.setup.server_turns is False and session.setup.history == []
    # The engine hears of the finished turn, as heard, for a new connection's context.
    assert session.remembered == turn_messages(turn)
    assert stage.audible(2.2, 2.6)


async def test_the_talk_key_cuts_the_answer_within_one_block_and_only_the_heard_part_stays(
    tmp_path: Path,
) -> None:
    engine = agent(reply="One two three four five six seven eight nine ten eleven twelve.")
    async with Stage(tmp_path, script=[Key(0.5, 1.5), Key(2.4, 3.0)], agent=engine) as stage:
        await stage.run_until(lambda: len(stage.finished()) == 2, limit=15)
    first, second = stage.finished()
    assert first.interrupted and first.timeline["marks_ms"]["interrupted"] > 0
    assert engine.reply.startswith(first.assistant_text) and first.assistant_text != engine.reply
    assert first.assistant_text  # some of it was heard
    assert not stage.audible(2.4 + 2 * BLOCK, 2.5)  # silent within a block or two of the press
    (_reply, heard, heard_text) = engine.sessions[0].interrupts[0]
    assert heard_text == first.assistant_text
    (item,) = heard
    played = (2.4 - 1.5) - first.timeline["marks_ms"]["playback_start"] / 1000
    assert item.heard == pytest.approx(played, abs=2 * BLOCK)
    assert second.user_text and not second.interrupted


async def test_hands_free_noise_over_the_answer_pauses_it_then_lets_it_go_on(
    tmp_path: Path,
) -> None:
    engine = agent(reply="A rather long answer that keeps going for quite a while, on and on.")
    script = [Speech(0.5, 1.5), Speech(2.5, 2.7)]  # 0.2 s: shorter than min_duration_ms
    async with Stage(tmp_path, mode="vad", script=script, agent=engine) as stage:
        await stage.run_until(lambda: bool(stage.finished()), limit=15)
    (turn,) = stage.finished()
    assert not turn.interrupted and turn.assistant_text == engine.reply
    assert stage.events(PlaybackPaused) and stage.events(PlaybackResumed)
    assert engine.sessions[0].interrupts == []


async def test_hands_free_speech_over_the_answer_interrupts_it(tmp_path: Path) -> None:
    engine = agent(reply="A rather long answer that keeps going for quite a while, on and on.")
    script = [Speech(0.5, 1.5), Speech(2.5, 3.5)]
    async with Stage(tmp_path, mode="vad", script=script, agent=engine) as stage:
        await stage.run_until(lambda: len(stage.finished()) == 2, limit=15)
    first, second = stage.finished()
    assert first.interrupted and second.user_text
    # Paused at once, and cut once the speech lasted min_duration_ms (0.4 s here).
    assert not stage.audible(2.6 + 2 * BLOCK, 2.9)
    assert len(engine.sessions[0].interrupts) == 1


async def test_provider_turn_detection_streams_all_audio_and_follows_its_turns(
    tmp_path: Path,
) -> None:
    engine = agent(reply="A rather long answer that keeps going for quite a while, on and on.")
    stage = Stage(tmp_path, mode="vad", script=[Speech(0.5, 1.5), Speech(3.0, 4.0)], agent=engine)
    stage.settings.s2s.turn_detection = "provider"
    async with stage:
        await stage.run_until(lambda: len(stage.finished()) == 2, limit=15)
    first, second = stage.finished()
    (session,) = engine.sessions
    assert session.setup.server_turns is True
    assert first.interrupted and first.assistant_text  # the provider's barge-in, as heard
    assert first.timeline["notes"]["turn_detection"] == "provider"
    # The speech end comes from the provider's lag: where the speech really stopped.
    speech_end = first.timeline["marks_ms"]
    assert speech_end["speech_end"] == 0 and speech_end["speech_start"] < 0
    assert not stage.audible(3.0 + 0.1 + 2 * BLOCK, 3.5)  # detection (0.1 s of frames) + a block
    assert second.user_text


async def test_tools_run_through_the_registry_and_the_answer_says_the_result(
    tmp_path: Path,
) -> None:
    engine = agent(tool_call=("calculate", '{"expression": "17 * 23"}'))
    stage = Stage(tmp_path, script=[Key(0.5, 1.5)], agent=engine, tools=default_tools())
    async with stage:
        await stage.run_until(lambda: bool(stage.finished()), limit=10)
    (turn,) = stage.finished()
    assert [(t.name, t.result) for t in turn.tool_calls] == [("calculate", "391")]
    assert turn.assistant_text == "The answer is 391."
    assert [e.result for e in stage.events(ToolCalled)] == ["391"]
    assert engine.sessions[0].results == [("call_reply_1", "391")]
    assert {t.name for t in engine.sessions[0].setup.tools} >= {"calculate", "get_time"}


async def test_typed_text_is_answered(tmp_path: Path) -> None:
    engine = agent()
    script = [Do(0.5, lambda s: s.submit_text("Tell me a joke"))]
    async with Stage(tmp_path, script=script, agent=engine) as stage:
        await stage.run_until(lambda: bool(stage.finished()), limit=10)
    (turn,) = stage.finished()
    assert turn.user_text == "Tell me a joke" and turn.assistant_text == engine.reply
    assert engine.sessions[0].typed == ["Tell me a joke"]
    assert [e.text for e in stage.events(FinalTranscript)] == ["Tell me a joke"]


async def test_a_click_is_not_sent_for_an_answer(tmp_path: Path) -> None:
    engine = agent()
    async with Stage(tmp_path, script=[Key(0.5, 0.5 + FRAME_SECONDS)], agent=engine) as stage:
        await stage.run_to(2.0)
        assert stage.session.state is State.LISTENING
    assert stage.finished() == [] and engine.sessions[0].interrupts == []
    assert [e.text for e in stage.events(FinalTranscript)] == [""]


async def test_earlier_turns_start_the_next_session_and_a_failed_open_is_told(
    tmp_path: Path,
) -> None:
    engine = agent()
    async with Stage(tmp_path, script=[Key(0.5, 1.5)], agent=engine) as stage:
        await stage.run_until(lambda: bool(stage.finished()), limit=10)
        stage.session.new_conversation(stage.store.new())
        await stage.run_to(stage.now + 0.5)
    assert len(engine.sessions) == 2
    assert engine.sessions[1].setup.history == []  # a new conversation starts empty
    failing = agent(fail_on_open=EngineError("no key"))
    with pytest.raises(EngineError):
        async with Stage(tmp_path / "b", agent=failing):
            pass


async def test_a_session_that_fails_is_told_and_reopened_for_the_next_turn(tmp_path: Path) -> None:
    engine = agent()
    fail = Do(5.0, lambda s: engine.sessions[0].fail(EngineError("gone")))
    async with Stage(tmp_path, script=[Key(0.5, 1.5), fail, Key(6.0, 7.0)], agent=engine) as stage:
        await stage.run_until(lambda: len(stage.finished()) == 2, limit=15)
    errors = [e.message for e in stage.events(ErrorEvent)]
    assert errors == ["Speech to speech failed: gone"]
    assert len(engine.sessions) == 2 and engine.sessions[0].closed
    first, second = stage.finished()
    # The new session starts from the turn already heard.
    history = [m.content for m in engine.sessions[1].setup.history]
    assert history == [first.user_text, first.assistant_text]
    assert second.assistant_text == engine.reply and not second.error


async def test_a_server_that_drops_every_session_at_once_is_reopened_ever_more_slowly(
    tmp_path: Path,
) -> None:
    """It accepts each session and drops it at once: one message, and reopening backs off
    instead of connecting (and reporting) without end."""
    engine = agent(drop_on_open=EngineError("dropped"))
    script = [Key(0.5 + 10 * i, 1.5 + 10 * i) for i in range(6)]
    async with Stage(tmp_path, script=script, agent=engine) as stage:
        await stage.run_to(60.0)
    errors = [e.message for e in stage.events(ErrorEvent)]
    assert errors.count("Speech to speech failed: dropped") == 1
    # Reopened at once, then after 5, 10, 20 and 40 s: never more than once per pause.
    assert 2 <= len(engine.sessions) <= 6


async def test_a_turn_sent_but_not_answered_when_the_session_fails_is_told_and_withdrawn(
    tmp_path: Path,
) -> None:
    engine = agent(transcript_delay=1.0)
    fail = Do(1.8, lambda s: engine.sessions[0].fail(EngineError("gone")))
    script = [Key(0.5, 1.5), fail, Key(4.0, 5.0)]
    async with Stage(tmp_path, script=script, agent=engine) as stage:
        await stage.run_until(lambda: len(stage.finished()) == 1, limit=15)
    errors = [(e.message, e.turn_id) for e in stage.events(ErrorEvent)]
    assert errors[0] == ("Speech to speech failed: gone", None)
    assert errors[1] == ("Speech to speech failed before answering; please say that again.", 1)
    assert next((t.turn_id, t.text) for t in stage.events(FinalTranscript)) == (1, "")
    (answered,) = stage.finished()
    assert answered.assistant_text == engine.reply and not answered.error
