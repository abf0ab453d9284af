"""cancel_and_wait: a background task ends however it ends; the caller's own cancel stays."""

from __future__ import annotations

import asyncio

import pytest

from assistant.tasks import cancel_and_wait


async def test_a_running_task_is_cancelled_and_waited_for() -> None:
    ended = asyncio.Event()

    async def work() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            ended.set()

    task = asyncio.ensure_future(work())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.cancelled() and ended.is_set()


async def test_a_failed_or_finished_task_is_only_read() -> None:
    async def fail() -> None:
        raise RuntimeError("broken")

    async def done() -> int:
        return 1

    for task in (asyncio.ensure_future(fail()), asyncio.ensure_future(done())):
        await asyncio.sleep(0)
        await cancel_and_wait(task)
        assert task.done()


async def test_the_callers_own_cancellation_is_not_swallowed() -> None:
    release = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await release.wait()  # cleanup that takes a while

    background = asyncio.ensure_future(slow_to_stop())
    await asyncio.sleep(0)
    caller = asyncio.ensure_future(cancel_and_wait(background))
    await asyncio.sleep(0)
    caller.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert caller.cancelled()
