"""Faults the conversation must survive, in virtual time: a recognizer that drops after every
connect, a history write that raises, a frame that breaks the VAD, dead primaries in a fallback
chain, short rate limits, and closing with work in flight."""

from __future__ import annotations

import asyncio
import threading

import pytest

from assistant.clock import ManualClock
from assistant.engines.base import EngineError
from assistant.engines.fake import FakeLLM, FakeSTT
from assistant.engines.fallback import FallbackLLM, FallbackSTT
from assistant.events import ErrorEvent, Notice, State
from assistant.session.transcription import MAX_QUICK_FAILURES
from tests.fakes.flaky import DroppingSTT
from tests.scenario import T0, Key, Speech, Stage


async def test_a_server_that_drops_every_connection_hands_over_to_the_next_engine(
    tmp_path,
) -> None:
    clock = ManualClock(T0)
    flaky, spare = DroppingSTT(), FakeSTT(clock=clock)
    chain = FallbackSTT([flaky, spare], clock=clock)
    stage = Stage(tmp_path, script=[Key(5.0, 5.6)], clock=clock, engines=(chain, None, None))
    async with stage:
        await stage.run_until(lambda: bool(stage.finished()), limit=20)
    (turn,) = stage.finished()
    assert turn.user_text == "What is a good name for a cat?"
    assert flaky.opens <= 3  # backed off, then skipped — not dozens of reconnections
    errors = [e.message for e in stage.events(ErrorEvent)]
    assert len(errors) <= 1
    assert any("using fake" in n.message for n in stage.events(Notice))


async def test_a_lone_recognizer_that_keeps_dropping_stops_with_one_clear_message(
    tmp_path,
) -> None:
    flaky = DroppingSTT()
    async with Stage(tmp_path, engines=(flaky, FakeLLM(), None)) as stage:
        await stage.run_to(60)
    assert flaky.opens == MAX_QUICK_FAILURES
    errors = [e.message for e in stage.events(ErrorEvent)]
    assert len(errors) == 2
    assert "keeps dropping its connection" in errors[-1]


async def test_a_history_write_that_raises_keeps_the_turn_and_the_session_going(
    tmp_path,
) -> None:
    async with Stage(tmp_path, script=[Key(0, 0.6)]) as stage:
        conversation = stage.session.conversation

        def broken_append(turn: object) -> None:
            raise UnicodeEncodeError("utf-8", "\udc80", 0, 1, "surrogates not allowed")

        conversation.append = broken_append  # type: ignore[method-assign]
        await stage.run_until(lambda: bool(stage.finished()))
        await stage.run_until(lambda: stage.session.state is State.LISTENING)
        (turn,) = stage.finished()
        assert conversation.turns == [turn]  # kept in memory, part of the next context
        (error,) = stage.events(ErrorEvent)
        assert error.source == "history" and "stays in memory" in error.message
        stage.session.interrupt()  # nothing to interrupt, and nothing raises
        stage.add(Key(stage.now + 0.1, stage.now + 0.7))
        await stage.run_until(lambda: len(stage.finished()) == 2)
    assert len(conversation.turns) == 2


async def test_a_frame_that_breaks_the_vad_is_reported_and_the_next_ones_are_heard(
    tmp_path,
) -> None:
    stage = Stage(tmp_path, mode="vad", script=[Speech(0.5, 1.5)])
    process, calls = stage.vad.process, [0]

    def sometimes_broken(pcm: object) -> float:
        calls[0] += 1
        if calls[0] == 3:
            raise RuntimeError("bad frame")
        return process(pcm)

    stage.vad.process = sometimes_broken  # type: ignore[method-assign]
    async with stage:
        await stage.run_until(lambda: bool(stage.finished()))
    assert "Audio processing failed: bad frame" in stage.events(ErrorEvent)[0].message
    assert len(stage.finished()) == 1


async def test_a_dead_primary_is_skipped_on_later_turns_and_taken_back_when_it_recovers(
    tmp_path,
) -> None:
    primary = FakeLLM(
        reply=lambda _r: "Primary here.", ttft=0.05, fail_before_first_token=EngineError("down")
    )
    spare = FakeLLM(reply=lambda _r: "Spare here.", ttft=0.05, name="spare")
    primary.name = "cloud"
    clock = ManualClock(T0)
    primary.clock = spare.clock = clock
    chain = FallbackLLM([primary, spare], clock=clock)
    stage = Stage(tmp_path, script=[Key(0, 0.6)], clock=clock, engines=(None, chain, None))
    async with stage:
        await stage.run_until(lambda: len(stage.finished()) == 1)
        stage.add(Key(stage.now + 0.5, stage.now + 1.1))
        await stage.run_until(lambda: len(stage.finished()) == 2)
        tried = len(primary.requests)
        primary.fail_before_first_token = None  # the service comes back
        await stage.run_to(stage.now + 20)  # background probes find it
        stage.add(Key(stage.now + 0.5, stage.now + 1.1))
        await stage.run_until(lambda: len(stage.finished()) == 3, limit=80)
    texts = [t.assistant_text for t in stage.finished()]
    assert texts == ["Spare here.", "Spare here.", "Primary here."]
    assert tried == 1  # the second turn did not wait for the dead primary
    notices = [n.message for n in stage.events(Notice)]
    assert sum("cloud failed" in n for n in notices) == 1  # the switch is reported once
    assert any("cloud works again" in n for n in notices)


@pytest.mark.parametrize(("retry_after", "answered_by"), [(1.0, "Primary here."), (5.0, "Spare.")])
async def test_a_short_rate_limit_is_waited_out_once_before_falling_back(
    tmp_path, retry_after: float, answered_by: str
) -> None:
    class RateLimitedOnce(FakeLLM):
        async def stream(self, request):  # type: ignore[override]
            if not self.requests:
                self.requests.append(request)
                raise EngineError("429", retry_after=retry_after)
            async for event in FakeLLM.stream(self, request):
                yield event

    primary = RateLimitedOnce(reply=lambda _r: "Primary here.", ttft=0.05)
    spare = FakeLLM(reply=lambda _r: "Spare.", ttft=0.05, name="spare")
    clock = ManualClock(T0)
    primary.clock = spare.clock = clock
    chain = FallbackLLM([primary, spare], clock=clock)
    stage = Stage(tmp_path, script=[Key(0, 0.6)], clock=clock, engines=(None, chain, None))
    async with stage:
        await stage.run_until(lambda: bool(stage.finished()))
    assert stage.finished()[0].assistant_text == answered_by


async def test_close_waits_for_everything_it_cancels(tmp_path) -> None:
    before = set(asyncio.all_tasks())
    stage = Stage(tmp_path, llm=FakeLLM(ttft=5.0), script=[Key(0, 0.6)])
    async with stage:
        await stage.run_to(1.0)  # the reply is being prepared
    leftovers = [t for t in asyncio.all_tasks() - before if not t.done()]
    assert leftovers == [asyncio.current_task()] or leftovers == []
    reloaded, _ = stage.store.latest()
    assert [t.user_text for t in reloaded.turns] == ["What is a good name for a cat?"]


async def test_history_is_written_off_the_event_loop(harness_factory) -> None:
    threads: list[int] = []
    async with harness_factory() as h:
        conversation = h.session.conversation
        original = conversation.append

        def append(turn: object) -> None:
            threads.append(threading.get_ident())
            original(turn)  # type: ignore[arg-type]

        conversation.append = append  # type: ignore[method-assign]
        await h.ptt(0.6)
        await h.until(lambda: h.finished(), timeout=15)
    assert threads and threading.main_thread().ident not in threads
