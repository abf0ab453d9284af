"""Pauses while the talk key is held: the moment a push-to-talk reply can be prepared.

A user who holds the key usually stops talking a few hundred milliseconds before letting go.
``HeldPauses`` watches the speech probability of each frame while the key is down and reports a
``key_pause`` once the user has been silent for ``speculative_silence_ms`` after speech (the
words so far can be transcribed and answered, held back), and a ``key_resume`` when clear speech
(two frames in a row over the threshold) follows it (the prepared answer is out of date).

Nothing here reads the clock: times come in with the frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from assistant.config import PushToTalkSettings, VadSettings
from assistant.types import FRAME_SECONDS, AudioFrame

#: Speech frames needed before a pause counts (a key click alone is not words).
MIN_SPEECH_FRAMES = 2
#: Frames of clear speech in a row that end a pause.
RESUME_FRAMES = 2
#: Below the threshold by less than this, a frame right after speech still counts as speech
#: (the probability dips inside words).
HYSTERESIS = 0.15


@dataclass(frozen=True, slots=True)
class HeldChange:
    """``key_pause``: silent since ``at`` (the end of the speech); ``key_resume``: talking again
    since ``at``."""

    kind: Literal["key_pause", "key_resume"]
    at: float


class HeldPauses:
    """Reports pauses and resumptions of speech while the talk key is held (see the module)."""

    def __init__(self, settings: PushToTalkSettings, vad: VadSettings) -> None:
        self.settings = settings
        self.vad = vad
        self.reset()

    @property
    def enabled(self) -> bool:
        return self.settings.speculative_silence_ms > 0

    @property
    def paused(self) -> bool:
        return self._paused

    def reset(self) -> None:
        """A new key press: nothing heard yet."""
        self._speech_frames = 0
        self._silence = 0.0
        self._last_speech_end = 0.0
        self._paused = False
        self._resume_frames = 0

    def process(self, frame: AudioFrame, speech_probability: float) -> HeldChange | None:
        threshold = self.vad.threshold
        if self._paused:
            if speech_probability >= threshold:
                self._resume_frames += 1
                if self._resume_frames >= RESUME_FRAMES:
                    self._paused = False
                    self._speech_frames = RESUME_FRAMES
                    self._silence = 0.0
                    self._last_speech_end = frame.t
                    return HeldChange("key_resume", frame.t - RESUME_FRAMES * FRAME_SECONDS)
            else:
                self._resume_frames = 0
            return None
        continuing = self._silence == 0.0 and self._speech_frames > 0
        floor = threshold - HYSTERESIS if continuing else threshold
        if speech_probability >= max(0.0, floor):
            self._speech_frames += 1
            self._silence = 0.0
            self._last_speech_end = frame.t
            return None
        if self._speech_frames < MIN_SPEECH_FRAMES:
            self._speech_frames = 0
            return None
        self._silence += FRAME_SECONDS
        if self._silence * 1000.0 >= self.settings.speculative_silence_ms:
            self._paused = True
            self._resume_frames = 0
            return HeldChange("key_pause", self._last_speech_end)
        return None
