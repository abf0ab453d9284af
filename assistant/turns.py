"""Turn-detection strategies: when does the user start and stop talking?

Both strategies produce the same ``TurnEvent``s, so the session does not care which one runs and
the user can switch between them at any time. Push-to-talk takes press/release from the caller;
VAD endpointing reads per-frame speech probabilities and ends a turn after enough silence.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal, Protocol

from assistant.audio.frames import CAPTURE_RATE, FRAME_SAMPLES, AudioFrame
from assistant.config import VadSettings

FRAME_SECONDS = FRAME_SAMPLES / CAPTURE_RATE


TurnKind = Literal["start", "pause", "resume", "end"]


@dataclass(frozen=True, slots=True)
class TurnEvent:
    """``start``/``end`` bound a user turn. In between, hands-free detection may report a
    ``pause`` (the turn will probably end: prepare the reply) and a ``resume`` (it did not)."""

    kind: TurnKind
    #: Monotonic time the user started / stopped speaking (not when it was detected).
    at: float
    #: When the detector decided; ``detected_at − at`` is the endpointing delay.
    detected_at: float


class TurnDetector(Protocol):
    mode: Literal["ptt", "vad"]

    @property
    def active(self) -> bool:
        """True while the detector considers the user to be talking."""
        ...

    def process(self, frame: AudioFrame, speech_probability: float) -> TurnEvent | None: ...

    def reset(self) -> None: ...


class PushToTalk:
    """The user holds a key or button while talking. Audio frames do not decide anything."""

    mode: Literal["ptt", "vad"] = "ptt"

    def __init__(self) -> None:
        self._pressed = False

    @property
    def active(self) -> bool:
        return self._pressed

    def press(self, at: float | None = None) -> TurnEvent | None:
        """Key down. Repeated presses (key auto-repeat) while held are ignored."""
        if self._pressed:
            return None
        self._pressed = True
        now = time.monotonic()
        return TurnEvent("start", now if at is None else at, now)

    def release(self, at: float | None = None) -> TurnEvent | None:
        if not self._pressed:
            return None
        self._pressed = False
        now = time.monotonic()
        return TurnEvent("end", now if at is None else at, now)

    def process(self, frame: AudioFrame, speech_probability: float) -> TurnEvent | None:
        return None

    def reset(self) -> None:
        self._pressed = False


class VadEndpointing:
    """Speech for at least ``min_speech_ms`` starts a turn; ``end_silence_ms`` of silence ends it.

    Uses hysteresis (a lower threshold to stay in speech than to enter it), as speech probability
    dips inside words. After ``speculative_silence_ms`` of silence it reports a ``pause`` so the
    reply can be prepared while the endpoint is confirmed; speech before the end (two frames
    over the threshold) reports ``resume``. An end-of-turn model may shorten the wait
    (``end_now``) or lengthen it (``extend_silence``) for the current turn.
    """

    mode: Literal["ptt", "vad"] = "vad"

    def __init__(self, settings: VadSettings | None = None) -> None:
        self.settings = settings or VadSettings()
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

    def extend_silence(self, end_silence_ms: float) -> None:
        """Wait this long (instead of the setting) before ending the current turn."""
        self._end_silence_override = end_silence_ms

    def end_now(self, now: float) -> TurnEvent | None:
        """End the current turn at once (its words sound finished)."""
        if not self._speaking:
            return None
        end = self._last_speech_end
        self.reset()
        return TurnEvent("end", end, now)

    def process(self, frame: AudioFrame, speech_probability: float) -> TurnEvent | None:
        s = self.settings
        frame_start = frame.t - FRAME_SECONDS
        if not self._speaking:
            if speech_probability >= s.threshold:
                if self._first_speech_at is None:
                    self._first_speech_at = frame_start
                self._speech_run += FRAME_SECONDS
                self._silence = 0.0
                if self._speech_run * 1000.0 >= s.min_speech_ms:
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
