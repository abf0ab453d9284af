"""A source the caller feeds frame by frame: a microphone under a program's control.

``await push(frame)`` returns once the consumer has finished with the frame (it asked for the
next one), so a caller that pushes speech and then releases the talk key knows every frame was
heard first. ``end()`` ends the stream as a file running out would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from assistant.audio.frames import AudioFrame


class PushSource:
    """An ``AudioSource`` whose frames come from ``push``."""

    def __init__(self) -> None:
        self.on_error: list[Callable[[str], None]] = []
        self._queue: asyncio.Queue[tuple[AudioFrame, asyncio.Future[None]] | None] = asyncio.Queue()
        self._pending: set[asyncio.Future[None]] = set()
        self._stopped = False

    async def start(self) -> None:
        self._stopped = False

    async def stop(self) -> None:
        """End the stream now; frames still waiting are dropped and their pushers released."""
        self._stopped = True
        self._queue.put_nowait(None)
        for done in list(self._pending):
            if not done.done():
                done.set_result(None)

    async def push(self, frame: AudioFrame) -> None:
        """Hand over one frame; returns when the consumer is done with it (or has stopped)."""
        if self._stopped:
            raise RuntimeError("the source has stopped")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.add(done)
        self._queue.put_nowait((frame, done))
        try:
            await done
        finally:
            self._pending.discard(done)

    def end(self) -> None:
        """No more frames: the consumer's iteration ends after those already pushed."""
        self._queue.put_nowait(None)

    def fail(self, message: str) -> None:
        """The device is lost: tell the listeners, then end (what a real microphone does)."""
        for listener in list(self.on_error):
            listener(message)
        self.end()

    async def frames(self) -> AsyncIterator[AudioFrame]:
        while not self._stopped:
            item = await self._queue.get()
            if item is None:
                return
            frame, done = item
            try:
                yield frame
            finally:
                if not done.done():
                    done.set_result(None)
