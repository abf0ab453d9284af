"""Push-to-talk speculation on virtual time: a reply prepared while the talk key is still held.

A pause with the key down gets the words so far transcribed (a checkpoint of the open
utterance) and answered, held; the release plays it at once when nothing was said since (the
checkpoint is the final transcript), and speech after the pause drops it. Real session,
splitter, recorder and player; scripted engines with set latencies (see ``tests/scenario.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from assistant.config import PushToTalkSettings, Settings
from assistant.engines.base import PCM, EngineError, Transcript
from assistant.engines.fake import FakeLLM, FakeSTT, FakeSTTSession
from assistant.events import ErrorEvent, TurnWithdrawn
from assistant.session import Session
from assistant.tools import default_tools
from tests.scenario import Do, Speech, Stage
from tests.unit.test_tool_turns import RoutedLLM, prompt_size

QUESTION = "Book a table for two people tonight."
#: One rendered block of the clocked player, plus a frame.
PLAYBACK_SLACK = 0.06


def held(press: float, release: float, *speech: Speech) -> list[object]:
    """The talk key held from ``press`` to ``release``, speaking only in ``speech``."""
    return [Do(press, Session.press_to_talk), *speech, Do(release, Session.release_to_talk)]


def quick_stt(**kw: object) -> FakeSTT:
    return FakeSTT(script=(QUESTION,), words_per_second=20, **kw)  # type: ignore[arg-type]


async def test_a_pause_before_the_release_prepares_the_reply_and_the_release_plays_it(
    tmp_path,
) -> None:
    stt, llm = quick_stt(), FakeLLM(ttft=0.05, tokens_per_second=200)
    script = held(0.2, 2.0, Speech(0.2, 1.4))
    async with Stage(tmp_path, mode="ptt", stt=stt, llm=llm, script=script) as stage:
        await stage.run_until(lambda: bool(stage.finished()))
    (turn,) = stage.finished()
    assert turn.user_text == QUESTION
    # One checkpoint at the pause; no decode at the release: the checkpoint is the final.
    assert stt.checkpoints == 1 and stt.final_delays == []
    assert len(llm.requests) == 1
    marks = turn.timeline["marks_ms"]
    assert marks["stt_final"] == pytest.approx(0, abs=1)
    # The reply was ready before the release (speech ended 0.6 s before it) ...
    assert marks["tts_first_audio"] < 0
    # ... and was heard only after it, within one block of the player.
    assert not stage.audible(0.0, 2.0)
    assert 0 <= marks["playback_start"] <= PLAYBACK_SLACK * 1000
    notes = turn.timeline["notes"]
    assert notes["speculation"] == "used" and "speculations_dropped" not in notes
    assert notes["prompt_tokens"] > 0 and notes["cached_tokens"] == 0  # the model's own count


async def test_speech_after_the_pause_drops_the_prepared_reply(tmp_path) -> None:
    stt = FakeSTT(script=(QUESTION,), words_per_second=4)
    llm = FakeLLM(ttft=0.05, tokens_per_second=200)
    script = held(0.2, 2.8, Speech(0.2, 1.0), Speech(1.6, 2.2))
    async with Stage(tmp_path, mode="ptt", stt=stt, llm=llm, script=script) as stage:
        await stage.run_until(lambda: bool(stage.finished()))
    (turn,) = stage.finished()
    assert turn.user_text == QUESTION
    # The first pause answered the first words; speech after it dropped that reply unheard.
    first, second = (r.messages[-1].content for r in llm.requests)
    assert QUESTION.startswith(first) and first != QUESTION
    assert second == QUESTION
    assert stt.checkpoints == 2 and stt.final_delays == []
    assert not stage.audible(0.0, 2.8)
    assert not stage.events(TurnWithdrawn)  # one utterance: nothing carried over
    assert turn.timeline["notes"]["speculation"] == "used"
    assert turn.timeline["notes"]["speculations_dropped"] == 1
    assert turn.timeline["marks_ms"]["playback_start"] <= PLAYBACK_SLACK * 1000


async def test_a_release_before_the_checkpoint_is_done_waits_for_it(tmp_path) -> None:
    stt = quick_stt(final_delay=0.3)
    script = held(0.2, 1.5, Speech(0.2, 1.2))  # the pause is heard at 1.35; released at 1.5
    async with Stage(tmp_path, mode="ptt", stt=stt, script=script) as stage:
        await stage.run_until(lambda: bool(stage.finished()))
    (turn,) = stage.finished()
    assert turn.user_text == QUESTION
    assert stt.checkpoints == 1 and stt.final_delays == []  # no second decode of the words
    # The checkpoint asked for at 1.35 was ready at 1.65: 150 ms after the release.
    assert turn.timeline["marks_ms"]["stt_final"] == pytest.approx(150, abs=40)


class _PartialsOnly:
    """A recognizer stream that cannot transcribe an open utterance (no ``checkpoint``)."""

    sample_rate = 16_000

    def __init__(self, inner: FakeSTTSession) -> None:
        self._inner = inner

    async def push(self, pcm: PCM) -> None:
        await self._inner.push(pcm)

    async def end_turn(self) -> None:
        await self._inner.end_turn()

    async def clear(self) -> None:
        await self._inner.clear()

    def transcripts(self) -> AsyncIterator[Transcript]:
        return self._inner.transcripts()

    async def aclose(self) -> None:
        await self._inner.aclose()


class PartialsOnlySTT(FakeSTT):
    async def open(self, language: str) -> _PartialsOnly:  # type: ignore[override]
        return _PartialsOnly(await super().open(language))


@pytest.mark.parametrize(
    ("words_per_second", "kept"),
    [(20, True), (2, False)],  # the last partial holds every word / only the first few
)
async def test_without_checkpoints_the_latest_partial_is_answered_and_the_final_decides(
    tmp_path, words_per_second: float, kept: bool
) -> None:
    stt = PartialsOnlySTT(script=(QUESTION,), words_per_second=words_per_second)
    llm = FakeLLM(ttft=0.05, tokens_per_second=200)
    async with Stage(
        tmp_path, mode="ptt", stt=stt, llm=llm, script=held(0.2, 2.0, Speech(0.2, 1.4))
    ) as stage:
        await stage.run_until(lambda: bool(stage.finished()))
    (turn,) = stage.finished()
    assert turn.user_text == QUESTION
    assert len(stt.final_delays) == 1  # the final was decoded, and it decided
    assert not stage.audible(0.0, 2.0)
    notes = turn.timeline["notes"]
    if kept:
        assert len(llm.requests) == 1
        assert notes["speculation"] == "used" and "speculations_dropped" not in notes
    else:
        first, second = (r.messages[-1].content for r in llm.requests)
        assert QUESTION.startswith(first) and first != QUESTION and second == QUESTION
        assert notes["speculations_dropped"] == 1 and "speculation" not in notes
    assert turn.assistant_text.startswith(f"You asked: {QUESTION[:-1]}")


async def test_speculation_off_decodes_at_the_release(tmp_path) -> None:
    stt = quick_stt()
    settings = Settings(push_to_talk=PushToTalkSettings(speculative_silence_ms=0))
    script = held(0.2, 2.0, Speech(0.2, 1.4))
    async with Stage(tmp_path, mode="ptt", stt=stt, script=script, settings=settings) as stage:
        await stage.run_until(lambda: bool(stage.finished()))
    (turn,) = stage.finished()
    assert stt.checkpoints == 0 and len(stt.final_delays) == 1
    assert turn.timeline["marks_ms"]["stt_final"] == pytest.approx(50, abs=1)
    assert "speculation" not in turn.timeline.get("notes", {})


async def test_hands_free_turns_note_their_speculation(tmp_path) -> None:
    stt = FakeSTT(script=("Book a table", "Book a table for two people tonight."))
    llm = FakeLLM(ttft=0.02, tokens_per_second=400)
    stage = Stage(tmp_path, mode="vad", stt=stt, llm=llm, script=[Speech(0, 0.8)])
    stage.settings.vad.end_silence_ms = 700
    stage.add(Speech(1.25, 2.05))  # a thinking pause: the reply prepared in it is dropped
    async with stage:
        await stage.run_until(lambda: bool(stage.finished()))
    (turn,) = stage.finished()
    assert turn.timeline["notes"]["speculation"] == "used"
    assert turn.timeline["notes"]["speculations_dropped"] == 1


class _FailingCheckpoints(FakeSTTSession):
    async def checkpoint(self) -> str:
        raise EngineError("the decoder failed", engine="fake")


class FailingCheckpointsSTT(FakeSTT):
    async def open(self, language: str) -> FakeSTTSession:
        return _FailingCheckpoints(self)


async def test_a_failed_checkpoint_falls_back_to_decoding_at_the_release(tmp_path) -> None:
    stt = FailingCheckpointsSTT(script=(QUESTION,), words_per_second=20)
    llm = FakeLLM(ttft=0.05, tokens_per_second=200)
    script = held(0.2, 2.0, Speech(0.2, 1.4))
    async with Stage(tmp_path, mode="ptt", stt=stt, llm=llm, script=script) as stage:
        await stage.run_until(lambda: bool(stage.finished()))
    (turn,) = stage.finished()
    assert turn.user_text == QUESTION and len(stt.final_delays) == 1
    assert len(llm.requests) == 1 and "speculation" not in turn.timeline["notes"]
    assert not stage.events(ErrorEvent)


async def test_a_prepared_reply_routes_before_the_release_and_runs_its_tool_after_it(
    tmp_path,
) -> None:
    llm = RoutedLLM([{"tool": "calculate", "arguments": {"expression": "2+2"}}])
    stt = FakeSTT(script=("What is two plus two?",), words_per_second=20)
    script = held(0.2, 2.0, Speech(0.2, 1.4))
    async with Stage(
        tmp_path, mode="ptt", stt=stt, llm=llm, tools=default_tools(), script=script
    ) as stage:
        await stage.run_until(lambda: bool(stage.finished()))
    (turn,) = stage.finished()
    assert [(t.name, t.result) for t in turn.tool_calls] == [("calculate", "4")]
    marks = turn.timeline["marks_ms"]
    # The routing call was made while the key was held; the tool ran only after the release,
    # then the second routing call and the answer (so the reply starts after it, not at it).
    assert marks["llm_request"] < 0 < marks["playback_start"]
    notes = turn.timeline["notes"]
    assert notes["speculation"] == "used" and notes["router_ms"] == [100.0, 100.0]
    assert notes["prompt_tokens"] == prompt_size(llm.requests[0])


async def test_a_reply_that_replaces_a_dropped_one_notes_only_its_own_requests(tmp_path) -> None:
    llm = RoutedLLM([])
    stt = FakeSTT(script=(QUESTION,), words_per_second=4)
    script = held(0.2, 2.8, Speech(0.2, 1.0), Speech(1.6, 2.2))
    async with Stage(
        tmp_path, mode="ptt", stt=stt, llm=llm, tools=default_tools(), script=script
    ) as stage:
        await stage.run_until(lambda: bool(stage.finished()))
    (turn,) = stage.finished()
    notes = turn.timeline["notes"]
    assert notes["speculations_dropped"] == 1
    routing = [r for r in llm.requests if r.response_format is not None]
    assert len(routing) == 2  # one for the dropped reply, one for the kept
    assert notes["router_ms"] == [100.0]
    assert notes["prompt_tokens"] == prompt_size(routing[-1])
