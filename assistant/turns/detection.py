"""Turn detection strategies: when does the user start and stop talking?

A ``TurnDetection`` strategy turns key presses or per-frame speech probabilities into
``TurnEvent``s; the session does not know which strategy runs, and the user can switch at any
time (``make_turn_detection``). Push-to-talk takes press/release from the caller. Hands-free
combines VAD endpointing with an optional ``EndOfTurnJudge`` (``assistant.turns.judge``) that is
asked about each pause and may end the turn at once (the words are finished) or let it wait
longer (they are not). While the judge weighs a pause, silence alone does not end the turn.

Nothing here reads the clock: times come in with the frames and the calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from assistant.audio.vad import rms_dbfs
from assistant.config import (
    InterruptionSettings,
    PushToTalkSettings,
    Settings,
    TurnMode,
    VadSettings,
)
from assistant.turns.held import HeldPauses
from assistant.turns.judge import EndOfTurnJudge, Pause, PauseVerdict, longest_wait_ms
from assistant.types import CAPTURE_RATE, FRAME_SECONDS, PCM, AudioFrame, AudioLook

TurnKind = Literal["start", "pause", "resume", "end", "key_pause", "key_resume"]


@dataclass(frozen=True, slots=True)
class TurnEvent:
    """``start``/``end`` bound a user turn. In between, hands-free detection may report a
    ``pause`` (the turn will probably end: prepare the reply) and a ``resume`` (it did not);
    push-to-talk reports ``key_pause`` / ``key_resume`` while the key is still held (the words
    so far may be answered, held back / the user went on)."""

    kind: TurnKind
    #: Monotonic time the user started / stopped speaking (not when it was detected).
    at: float
    #: When the detector decided; ``detected_at − at`` is the endpointing delay.
    detected_at: float


class TurnDetection(Protocol):
    """The strategy the session consumes."""

    mode: TurnMode
    #: Whether ``process`` needs speech probabilities (the session runs the VAD only then).
    needs_vad: bool

    def press(self, at: float) -> TurnEvent | None: ...

    def release(self, at: float) -> TurnEvent | None: ...

    def process(
        self, frame: AudioFrame, speech_probability: float, *, over_reply: bool = False
    ) -> TurnEvent | None:
        """``over_reply``: the assistant is talking (and its echo is cancelled), so speech may
        start a turn sooner: a false start only pauses the reply for a moment."""
        ...

    def look(self, look: AudioLook, speech_probability: float) -> TurnEvent | None:
        """A look between two frames over an echo-cancelled reply (see ``process``): maybe a
        ``start`` a little before the frame it is in is complete. Nothing else changes: the
        next frame is processed as usual."""
        ...

    async def judge_pause(self, pause: Pause) -> PauseVerdict | None:
        """Asked once per ``pause`` with what is known of it; None when there is no judge."""
        ...

    def apply(self, verdict: PauseVerdict, now: float) -> TurnEvent | None:
        """Act on a verdict for the current pause: maybe an ``end`` event right now."""
        ...

    def reset(self) -> None: ...


# ------------------------------------------------------------------------------ push-to-talk


class PushToTalk:
    """The user holds a key or button while talking; press and release bound the turn.

    While the key is held, frames only tell pauses (``key_pause``, ``key_resume``; see
    ``assistant.turns.held``), when the settings ask for a reply prepared during them.
    """

    mode: TurnMode = "ptt"

    def __init__(
        self, settings: PushToTalkSettings | None = None, vad: VadSettings | None = None
    ) -> None:
        self._pressed = False
        self._pauses = HeldPauses(settings or PushToTalkSettings(), vad or VadSettings())
        self.needs_vad = self._pauses.enabled

    @property
    def active(self) -> bool:
        return self._pressed

    def press(self, at: float) -> TurnEvent | None:
        """Key down. Repeated presses (key auto-repeat) while held are ignored."""
        if self._pressed:
            return None
        self._pressed = True
        self._pauses.reset()
        return TurnEvent("start", at, at)

    def release(self, at: float) -> TurnEvent | None:
        if not self._pressed:
            return None
        self._pressed = False
        return TurnEvent("end", at, at)

    def process(
        self, frame: AudioFrame, speech_probability: float, *, over_reply: bool = False
    ) -> TurnEvent | None:
        if not self._pressed or not self.needs_vad:
            return None
        change = self._pauses.process(frame, speech_probability)
        return TurnEvent(change.kind, change.at, frame.t) if change is not None else None

    def look(self, look: AudioLook, speech_probability: float) -> TurnEvent | None:
        return None

    async def judge_pause(self, pause: Pause) -> PauseVerdict | None:
        return None

    def apply(self, verdict: PauseVerdict, now: float) -> TurnEvent | None:
        return None

    def reset(self) -> None:
        self._pressed = False
        self._pauses.reset()


# ----------------------------------------------------------------------------- VAD endpointing


class VadEndpointing:
    """Speech for at least ``min_speech_ms`` starts a turn (``interruption.pause_after_ms``
    over the assistant's reply, where a quieter or less certain first frame may count, see
    ``starts_speech``); ``end_silence_ms`` of silence ends it.

    Uses hysteresis (a lower threshold to stay in speech than to enter it), as speech probability
    dips inside words. After ``speculative_silence_ms`` of silence it reports a ``pause`` so the
    reply can be prepared while the endpoint is confirmed; speech before the end (two frames
    over the threshold) reports ``resume``. An end-of-turn judge may shorten the wait
    (``end_now``) or lengthen it (``extend_silence``) for the current turn.
    """

    def __init__(
        self, settings: VadSettings | None = None, interruption: InterruptionSettings | None = None
    ) -> None:
        self.settings = settings or VadSettings()
        self.interruption = interruption or InterruptionSettings()
        self.reset()

    def reset(self) -> None:
        self._speaking = False
        self._speech_run = 0.0  # seconds of (nearly) continuous speech while not yet in a turn
        self._first_speech_at: float | None = None
        self._silence = 0.0
        self._last_speech_end = 0.0
        self._paused = False
        self._resume_frames = 0
        self._end_silence_override: float | None = None

    @property
    def active(self) -> bool:
        return self._speaking

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def candidate(self) -> bool:
        """Speech has been heard but is not yet long enough to start a turn."""
        return not self._speaking and self._speech_run > 0

    def extend_silence(self, end_silence_ms: float | None) -> None:
        """Wait this long (instead of the setting; None: the setting) before ending the
        current turn. Silence already past it ends the turn at the next frame."""
        self._end_silence_override = end_silence_ms

    def end_now(self, now: float) -> TurnEvent | None:
        """End the current turn at once (its words sound finished)."""
        if not self._speaking:
            return None
        end = self._last_speech_end
        self.reset()
        return TurnEvent("end", end, now)

    def look(self, look: AudioLook, speech_probability: float) -> TurnEvent | None:
        """Over a reply: a look the VAD is sure of and not as quiet as cancelled echo
        (``look_starts_speech``; the lower bar over a reply, ``starts_speech``, is for whole
        frames: looks come three times as often) starts the turn when, with the
        speech already heard, it makes ``pause_after_ms``: a whole frame's worth after no
        speech, or the look's fresh samples on top of speech frames (the rest of its window is
        theirs). The speech heard so far is left alone otherwise: the frame the look is in
        counts it."""
        if self._speaking or not look_starts_speech(
            look.pcm, speech_probability, self.settings, self.interruption
        ):
            return None
        needed = min(self.settings.min_speech_ms, self.interruption.pause_after_ms)
        run = self._speech_run
        heard = run + look.fresh / CAPTURE_RATE if run > 0 else FRAME_SECONDS
        if heard * 1000.0 < needed - 1e-6:
            return None
        first = self._first_speech_at
        if first is None:
            first = look.t - FRAME_SECONDS
        self._speaking = True
        self._silence = 0.0
        self._last_speech_end = look.t
        return TurnEvent("start", first, look.t)

    def process(
        self, frame: AudioFrame, speech_probability: float, *, over_reply: bool = False
    ) -> TurnEvent | None:
        s = self.settings
        frame_start = frame.t - FRAME_SECONDS
        if not self._speaking:
            if starts_speech(
                frame.pcm, speech_probability, s, self.interruption, over_reply=over_reply
            ):
                if self._first_speech_at is None:
                    self._first_speech_at = frame_start
                self._speech_run += FRAME_SECONDS
                self._silence = 0.0
                needed = s.min_speech_ms
                if over_reply:
                    needed = min(needed, self.interruption.pause_after_ms)
                if self._speech_run * 1000.0 >= needed - 1e-6:
                    self._speaking = True
                    self._last_speech_end = frame.t
                    return TurnEvent("start", self._first_speech_at, frame.t)
            else:
                # A short gap inside a starting word is tolerated; a longer one resets.
                self._silence += FRAME_SECONDS
                if self._silence * 1000.0 > 100.0:
                    self._speech_run = 0.0
                    self._first_speech_at = None
            return None
        if self._paused:
            # Prepared for the end: only clear speech (two frames in a row) resumes the turn.
            if speech_probability >= s.threshold:
                self._resume_frames += 1
                if self._resume_frames >= 2:
                    self._paused = False
                    self._silence = 0.0
                    self._last_speech_end = frame.t
                    self._end_silence_override = None
                    return TurnEvent("resume", frame_start - FRAME_SECONDS, frame.t)
                return None
            self._resume_frames = 0
        elif speech_probability >= max(0.0, s.threshold - 0.15):
            self._silence = 0.0
            self._last_speech_end = frame.t
            return None
        self._silence += FRAME_SECONDS
        silence_ms = self._silence * 1000.0
        end_silence = self._end_silence_override or float(s.end_silence_ms)
        if silence_ms >= end_silence:
            end = self._last_speech_end
            self.reset()
            return TurnEvent("end", end, frame.t)
        speculative = s.speculative_silence_ms
        if not self._paused and 0 < speculative <= silence_ms:
            self._paused = True
            self._resume_frames = 0
            return TurnEvent("pause", self._last_speech_end, frame.t)
        return None


def starts_speech(
    pcm: PCM,
    probability: float,
    vad: VadSettings,
    interruption: InterruptionSettings,
    *,
    over_reply: bool,
) -> bool:
    """A frame is speech that may start a turn: over the VAD threshold, or, over an
    echo-cancelled reply, likely enough and loud enough (see
    ``InterruptionSettings.over_reply_threshold``); over such a reply, never when quieter than
    ``InterruptionSettings.over_reply_floor_dbfs``."""
    if not over_reply:
        return probability >= vad.threshold
    level = rms_dbfs(pcm)
    if level < interruption.over_reply_floor_dbfs:
        return False
    return probability >= vad.threshold or (
        probability >= interruption.over_reply_threshold
        and level >= interruption.over_reply_level_dbfs
    )


def look_starts_speech(
    pcm: PCM, probability: float, vad: VadSettings, interruption: InterruptionSettings
) -> bool:
    """A look over an echo-cancelled reply is speech that may start a turn: over the VAD
    threshold (not the lower bar: looks come three times as often as frames) and not quieter
    than ``InterruptionSettings.over_reply_floor_dbfs`` (the frames' rule decides that)."""
    return probability >= vad.threshold and starts_speech(
        pcm, probability, vad, interruption, over_reply=True
    )


class HandsFree:
    """Voice activity endpointing, with an optional judge for each pause.

    While the judge weighs a pause, the turn waits for its verdict (up to the longest wait a
    verdict may ask for), so a slow transcript cannot let silence end a turn the words would
    have kept open.
    """

    mode: TurnMode = "vad"
    needs_vad = True

    def __init__(
        self,
        settings: VadSettings,
        judge: EndOfTurnJudge | None = None,
        interruption: InterruptionSettings | None = None,
    ) -> None:
        self.settings = settings
        self.endpointing = VadEndpointing(settings, interruption)
        self.judge = judge

    @property
    def judging(self) -> bool:
        s = self.settings
        return self.judge is not None and (s.smart_turn or s.text_turn)

    def press(self, at: float) -> TurnEvent | None:
        return None

    def release(self, at: float) -> TurnEvent | None:
        return None

    def process(
        self, frame: AudioFrame, speech_probability: float, *, over_reply: bool = False
    ) -> TurnEvent | None:
        event = self.endpointing.process(frame, speech_probability, over_reply=over_reply)
        if event is not None and event.kind == "pause" and self.judging:
            self.endpointing.extend_silence(longest_wait_ms(self.settings))
        return event

    def look(self, look: AudioLook, speech_probability: float) -> TurnEvent | None:
        return self.endpointing.look(look, speech_probability)

    async def judge_pause(self, pause: Pause) -> PauseVerdict | None:
        if self.judge is None or not self.judging:
            return None
        return await self.judge.judge(pause)

    def apply(self, verdict: PauseVerdict, now: float) -> TurnEvent | None:
        if verdict.end_now:
            return self.endpointing.end_now(now)
        self.endpointing.extend_silence(verdict.wait_ms)
        return None

    def reset(self) -> None:
        self.endpointing.reset()


def make_turn_detection(
    mode: TurnMode, settings: Settings, judge: EndOfTurnJudge | None = None
) -> TurnDetection:
    """The strategy for ``mode``; ``judge`` is asked about each pause in hands-free mode."""
    if mode == "vad":
        return HandsFree(settings.vad, judge, settings.interruption)
    return PushToTalk(settings.push_to_talk, settings.vad)


def concat_audio(parts: list[PCM]) -> PCM:
    """One array of a turn's audio pieces (empty when there are none)."""
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)
