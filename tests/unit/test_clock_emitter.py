"""The injected clock and the event emitter."""

from __future__ import annotations

import asyncio

import pytest

from assistant.clock import ManualClock
from assistant.emitter import Emitter


async def test_manual_clock_runs_timers_in_time_order_and_wakes_sleepers() -> None:
    clock = ManualClock(start=10.0)
    seen: list[tuple[str, float]] = []

    async def sleeper(name: str, delay: float) -> None:
        await clock.sleep(delay)
        seen.append((name, clock.now()))
        if name == "a":  # a woken task schedules more work before time moves on
            await clock.sleep(0.5)
            seen.append(("a2", clock.now()))

    tasks = [asyncio.create_task(sleeper("a", 1.0)), asyncio.create_task(sleeper("b", 1.2))]
    clock.call_later(0.1, lambda: seen.append(("timer", clock.now())))
    cancelled = clock.call_later(0.2, lambda: seen.append(("cancelled", clock.now())))
    cancelled.cancel()
    await clock.advance(2.0)
    assert seen == [("timer", 10.1), ("a", 11.0), ("b", 11.2), ("a2", 11.5)]
    assert clock.now() == 12.0
    await asyncio.gather(*tasks)


async def test_manual_clock_does_not_move_by_itself() -> None:
    clock = ManualClock()
    task = asyncio.create_task(clock.sleep(0.01))
    await clock.settle()
    assert not task.done()
    await clock.advance(0.01)
    assert task.done()


async def test_emitter_isolates_failing_listeners_and_unsubscribes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    emitter: Emitter[int] = Emitter("test")
    got: list[int] = []

    def broken(_: int) -> None:
        raise RuntimeError("boom")

    emitter.subscribe(broken)
    stop = emitter.subscribe(got.append)
    emitter.emit(1)
    stop()
    emitter.emit(2)
    assert got == [1]
    assert "test listener failed on int" in caplog.text


async def test_emitter_stream_and_threadsafe_emit() -> None:
    emitter: Emitter[str] = Emitter()
    stream = emitter.stream()
    first = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    await asyncio.to_thread(emitter.emit_threadsafe, loop, "from a thread")
    assert await asyncio.wait_for(first, 5) == "from a thread"
    await stream.aclose()
    assert len(emitter) == 0
