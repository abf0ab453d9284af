"""The session in real time, with a real-time virtual audio device: the same conversation the
virtual-time scenarios check in detail, here with the real clock, threads and player."""

from __future__ import annotations

import numpy as np

from assistant.engines.fake import FakeLLM, FakeSTT
from assistant.events import PartialTranscript, PlaybackPaused, PlaybackResumed, State

LONG_REPLY = (
    "Once upon a time there was a small robot who loved to listen. Every morning it walked to "
    "the river and counted the boats that passed by. One day a boat stopped, and a child waved."
)


def long_llm() -> FakeLLM:
    return FakeLLM(reply=lambda _r: LONG_REPLY, ttft=0.05, tokens_per_second=200)


async def test_ptt_turn_in_real_time(harness_factory) -> None:
    async with harness_factory(mode="ptt") as h:
        await h.audio(0.2, speech=False)
        await h.ptt(0.8)
        await h.until(lambda: h.finished(), timeout=15)
        await h.until_state(State.LISTENING)
    assert h.states()[:5] == ["listening", "user_speaking", "thinking", "speaking", "listening"]
    (turn,) = h.finished()
    assert turn.user_text == "What is a good name for a cat?"
    marks = turn.timeline["marks_ms"]
    order = ["speech_start", "speech_end", "stt_final", "llm_first_token", "playback_start"]
    assert [marks[m] for m in order] == sorted(marks[m] for m in order)
    assert h.of(PartialTranscript)
    assert np.abs(h.player.recorded()).max() > 1000
    reloaded, _ = h.store.latest()
    assert [t.user_text for t in reloaded.turns] == [turn.user_text]


async def test_barge_in_in_real_time(harness_factory) -> None:
    async with harness_factory(mode="vad", llm=long_llm()) as h:
        await h.audio(1.0, speech=True)
        await h.until_state(State.SPEAKING)
        await h.audio(1.5, speech=False)
        await h.audio(0.8, speech=True)
        await h.until(lambda: len(h.finished()) == 2, timeout=20)
    first, second = h.finished()
    assert first.interrupted and LONG_REPLY.startswith(first.assistant_text)
    assert len(first.assistant_text) < len(LONG_REPLY)
    assert not second.interrupted
    assert "interrupted" in h.states()


async def test_backchannel_resumes_in_real_time(harness_factory) -> None:
    stt = FakeSTT(script=("Tell me a story.", "mhm"))
    async with harness_factory(mode="vad", stt=stt, llm=long_llm()) as h:
        await h.audio(1.0, speech=True)
        await h.until_state(State.SPEAKING)
        await h.audio(0.5, speech=False)
        await h.audio(0.2, speech=True)
        await h.until(lambda: h.finished(), timeout=30)
    (turn,) = h.finished()
    assert h.of(PlaybackPaused) and h.of(PlaybackResumed)
    assert not turn.interrupted and turn.assistant_text == LONG_REPLY
