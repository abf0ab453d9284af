"""At a pause, is the user done? The end-of-turn judge weighs how the words sounded and what
they said.

Three signals, each optional:

- **sound**: an audio end-of-turn model (Smart Turn) hears whether the words sound finished;
- **trailing word**: the transcript stops on a word a sentence cannot end on ("and", "for",
  "the", "um": ``assistant.turns.words.trails_off``);
- **reading**: a language model's probability that the sentence ends where the transcript
  stops (``WordsScore``; the local model has it, cloud models do not).

``decide`` combines them, and is the only place that does: words that read unfinished wait
up to ``unfinished_silence_ms`` for more speech however they sounded; words finished both by
sound and by reading end the turn at once; anything unsure waits longer than usual, up to
``max_end_silence_ms``. ``PauseJudge`` gathers the signals for one pause (the transcript comes
from the speculative final the session asks for at the same moment) and asks ``decide``.
Every wait is on the injected clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from assistant.clock import Clock, expiry
from assistant.config import VadSettings
from assistant.turns.words import trails_off
from assistant.types import PCM

log = logging.getLogger(__name__)

#: Runs a blocking call off the event loop (``asyncio.to_thread`` unless a test runs it inline).
Offload = Callable[..., Awaitable[object]]
#: The language model's probability that ``text`` ends its sentence (None: it cannot tell now).
WordsScore = Callable[[str], Awaitable[float | None]]

#: The audio model needs this much speech before "sounds finished" means anything.
MIN_SPOKEN_SECONDS = 0.8


class EndOfTurnModel(Protocol):
    """Judges from the audio whether the user's words sound finished (see ``SmartTurn``)."""

    def end_probability(self, pcm16k: PCM) -> float: ...


@dataclass(frozen=True, slots=True)
class Pause:
    """What a judge is given about one pause."""

    #: The turn's audio so far (16 kHz), the pause included.
    audio: PCM
    #: The words so far (words carried over from earlier in the turn first), once the
    #: recognizer has them; None inside when it gave none.
    words: Awaitable[str | None] | None = None
    language: str = "en"


@dataclass(frozen=True, slots=True)
class Signals:
    """What the judge found out about a pause (None: that signal was not available)."""

    #: The audio model's probability that the words sound finished.
    sound: float | None = None
    #: Seconds of speech before the pause.
    spoken_seconds: float = 0.0
    #: The transcript at the pause.
    text: str | None = None
    #: It stops on a word a sentence cannot end on.
    trailing: bool = False
    #: The language model's probability that the sentence ends there.
    reading: float | None = None
    #: How long the language model took to read it (ms; None: it was not asked).
    reading_ms: float | None = None


class Reading(StrEnum):
    """How one signal reads the pause."""

    FINISHED = "finished"
    UNSURE = "unsure"
    UNFINISHED = "unfinished"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class PauseVerdict:
    """What a judge concluded about one pause.

    ``end_now``: the turn is over. ``wait_ms``: wait this much silence in all before ending it.
    Neither: the configured silence. ``unfinished``: Parley waits because the user seems not
    to be done (the window says so). ``probability`` is the audio model's, kept in the turn's
    timeline notes with the rest of ``signals``.
    """

    end_now: bool = False
    wait_ms: float | None = None
    probability: float | None = None
    unfinished: bool = False
    signals: Signals | None = None


class EndOfTurnJudge(Protocol):
    async def judge(self, pause: Pause) -> PauseVerdict: ...


# ------------------------------------------------------------------------------------ deciding


def longest_wait_ms(settings: VadSettings) -> float:
    """The most silence a turn may wait before it ends, whatever a judge concludes."""
    judged = settings.smart_turn or settings.text_turn
    return float(
        max(
            settings.end_silence_ms,
            settings.max_end_silence_ms if judged else 0,
            settings.unfinished_silence_ms if settings.text_turn else 0,
        )
    )


def read_sound(signals: Signals, settings: VadSettings) -> Reading:
    p = signals.sound
    if p is None:
        return Reading.UNKNOWN
    if p < settings.smart_turn_wait:
        return Reading.UNFINISHED
    if p >= settings.smart_turn_end and signals.spoken_seconds >= MIN_SPOKEN_SECONDS:
        return Reading.FINISHED
    return Reading.UNSURE


def read_words(signals: Signals, settings: VadSettings) -> Reading:
    if signals.trailing:
        return Reading.UNFINISHED
    p = signals.reading
    if p is None:
        return Reading.UNKNOWN
    if p < settings.text_wait:
        return Reading.UNFINISHED
    if p >= settings.text_end:
        return Reading.FINISHED
    return Reading.UNSURE


def decide(signals: Signals, settings: VadSettings) -> PauseVerdict:
    """The verdict on a pause from its signals (see the module docstring)."""
    sound, words = read_sound(signals, settings), read_words(signals, settings)
    known = {r for r in (sound, words) if r is not Reading.UNKNOWN}

    def verdict(*, end_now: bool = False, wait_ms: float | None = None) -> PauseVerdict:
        unfinished = wait_ms is not None
        return PauseVerdict(end_now, wait_ms, signals.sound, unfinished, signals)

    if words is Reading.UNFINISHED:
        return verdict(wait_ms=float(settings.unfinished_silence_ms))
    if known == {Reading.FINISHED}:
        return verdict(end_now=True)
    if known:
        return verdict(wait_ms=float(settings.max_end_silence_ms))
    return verdict()


# ------------------------------------------------------------------------------------- judging


class PauseJudge:
    """Gathers a pause's signals and decides (see the module docstring).

    ``model`` hears the audio (run through ``offload``: one check takes tens of milliseconds);
    ``score`` reads the words. Either may be None; the trailing-word cue needs only the
    transcript. ``settings`` are read live, so a change applies at the next pause.
    """

    def __init__(
        self,
        settings: VadSettings,
        *,
        clock: Clock,
        model: EndOfTurnModel | None = None,
        score: WordsScore | None = None,
        offload: Offload = asyncio.to_thread,
    ) -> None:
        self.settings = settings
        self.model = model
        self.score = score
        self._clock = clock
        self._offload = offload

    @property
    def hears(self) -> bool:
        return self.model is not None and self.settings.smart_turn

    @property
    def reads(self) -> bool:
        return self.settings.text_turn

    async def judge(self, pause: Pause) -> PauseVerdict:
        s = self.settings
        spoken = len(pause.audio) / 16_000 - s.speculative_silence_ms / 1000
        heard = asyncio.ensure_future(self._hear(pause.audio)) if self.hears else None
        try:
            text, trailing, reading, took = await self._read(pause)
            sound = await heard if heard is not None else None
        finally:
            if heard is not None and not heard.done():
                heard.cancel()
        signals = Signals(sound, spoken, text, trailing, reading, took)
        return decide(signals, s)

    async def _hear(self, audio: PCM) -> float | None:
        model = self.model
        if model is None or len(audio) == 0:
            return None
        try:
            return float(await self._offload(model.end_probability, audio))  # type: ignore[arg-type]
        except Exception as exc:
            log.warning("end-of-turn model failed: %s", exc)
            return None

    async def _read(self, pause: Pause) -> tuple[str | None, bool, float | None, float | None]:
        """(the transcript, whether it trails off, the language model's reading of it, how
        long the reading took in ms)."""
        if not self.reads or pause.words is None:
            return None, False, None, None
        limit = self.settings.unfinished_silence_ms / 1000
        text = await within(self._clock, pause.words, limit)
        if text is None or not text.strip():
            return text, False, None, None
        if trails_off(text, pause.language):
            return text, True, None, None
        if self.score is None:
            return text, False, None, None
        started = self._clock.now()
        try:
            limit = self.settings.text_timeout_ms / 1000
            reading = await within(self._clock, self.score(text), limit)
        except Exception as exc:
            log.warning("reading the end of a sentence failed: %s", exc)
            reading = None
        return text, False, reading, (self._clock.now() - started) * 1000.0


async def within[T](clock: Clock, awaitable: Awaitable[T], seconds: float) -> T | None:
    """The result of ``awaitable``, or None if it takes longer than ``seconds`` on ``clock``.

    A coroutine that runs out of time is cancelled; a future handed in is left alone (others
    may wait for it too). One that was cancelled counts as no result; an exception is raised.
    """
    owned = asyncio.iscoroutine(awaitable)
    task = asyncio.ensure_future(awaitable)
    expired, timer = expiry(clock, seconds)
    try:
        waiting: set[asyncio.Future[Any]] = {task, expired}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
        if not task.done() and owned:
            task.cancel()
    if not task.done() or task.cancelled():
        return None
    return task.result()
