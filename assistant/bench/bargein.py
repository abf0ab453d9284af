"""Barge-in timing: from the first sound of speech over a reply to the moment the output is silent.

A ``CueSource`` is a microphone the benchmark speaks into on cue: silence, except for the clips
``say`` queues, at real-time pace. A ``WatchedPlayer`` is the virtual speaker that also notes
when it renders silent blocks. One trial asks for a long answer, talks over it a second after
it starts, and measures onset → first silent block after the pause.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import numpy as np

from assistant.audio.player import VirtualPlayer
from assistant.events import AppEvent, PlaybackPaused, State, StateChanged, TurnFinished
from assistant.types import FRAME_SAMPLES, FRAME_SECONDS, PCM, AudioFrame

#: How long the reply plays before the user talks over it.
TALK_OVER_AFTER = 1.0


def speech_onset(pcm: PCM, rate: int = 16_000) -> float:
    """Seconds into ``pcm`` where speech starts: the first 10 ms over 5 % of the peak level."""
    hop = rate // 100
    n = len(pcm) // hop
    if n == 0:
        return 0.0
    level = np.abs(pcm[: n * hop].astype(np.float32)).reshape(n, hop).max(axis=1)
    loud = np.flatnonzero(level > 0.05 * float(level.max()))
    return float(loud[0] * hop / rate) if len(loud) else 0.0


class CueSource:
    """An ``AudioSource`` of silence and queued clips, at real-time pace, until ``end()``."""

    def __init__(self) -> None:
        self.on_error: list[Callable[[str], None]] = []
        self._queue: list[tuple[PCM, asyncio.Future[float]]] = []
        self._ended = False

    async def start(self) -> None:
        self._ended = False

    async def stop(self) -> None:
        self._ended = True

    def end(self) -> None:
        self._ended = True

    def say(self, pcm: PCM) -> asyncio.Future[float]:
        """Speak ``pcm`` (16 kHz) from the next frame on; resolves to when its first frame
        began (monotonic time)."""
        started: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._queue.append((np.asarray(pcm, dtype=np.int16), started))
        return started

    async def frames(self) -> AsyncIterator[AudioFrame]:
        anchor = time.monotonic()
        k = 0
        clip = np.zeros(0, np.int16)
        while not self._ended:
            if len(clip) == 0 and self._queue:
                clip, started = self._queue.pop(0)
                started.set_result(anchor + k * FRAME_SECONDS)
            pcm = np.zeros(FRAME_SAMPLES, np.int16)
            take = clip[:FRAME_SAMPLES]
            pcm[: len(take)] = take
            clip = clip[FRAME_SAMPLES:]
            k += 1
            due = anchor + k * FRAME_SECONDS
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            yield AudioFrame(pcm=pcm, t=due, offset=(k - 1) * FRAME_SECONDS)


class WatchedPlayer(VirtualPlayer):
    """A realtime virtual speaker that remembers when it rendered silent blocks."""

    def __init__(self) -> None:
        super().__init__(pace="realtime")
        self.silent_blocks: list[float] = []

    def _render_and_record(self, out: np.ndarray) -> None:
        super()._render_and_record(out)
        if self._buf.last_filled == 0 and len(self.silent_blocks) < 100_000:
            self.silent_blocks.append(time.monotonic())


@dataclass(slots=True)
class BargeIn:
    """What one trial measured (None: the reply never started, or never paused)."""

    onset_to_silent_ms: float | None
    interrupted: bool


class Trial:
    """One barge-in: the question, then the barge-in clip ``TALK_OVER_AFTER`` s into the reply."""

    def __init__(self, question: PCM, barge_in: PCM) -> None:
        self.source = CueSource()
        self.player = WatchedPlayer()
        self._question = question
        self._barge_in = barge_in
        self._onset: asyncio.Future[float] | None = None
        self._paused_at: float | None = None
        self._turns: list[bool] = []
        self._cued = False

    def begin(self) -> None:
        self.source.say(self._question)

    def on_event(self, event: AppEvent) -> None:
        if isinstance(event, StateChanged) and event.state is State.SPEAKING and not self._cued:
            self._cued = True
            asyncio.get_running_loop().call_later(TALK_OVER_AFTER, self._talk_over)
        elif isinstance(event, PlaybackPaused) and self._onset is not None:
            self._paused_at = self._paused_at or time.monotonic()
        elif isinstance(event, TurnFinished):
            self._turns.append(event.turn.interrupted)
            if len(self._turns) >= 2 or not self._cued:
                self.source.end()

    def _talk_over(self) -> None:
        self._onset = self.source.say(self._barge_in)

    def result(self) -> BargeIn:
        interrupted = bool(self._turns and self._turns[0])
        if self._onset is None or not self._onset.done() or self._paused_at is None:
            return BargeIn(None, interrupted)
        onset = self._onset.result() + speech_onset(self._barge_in)
        paused = self._paused_at
        silent = next((t for t in self.player.silent_blocks if t >= paused), None)
        if silent is None:
            return BargeIn(None, interrupted)
        return BargeIn((silent - onset) * 1000.0, interrupted)
