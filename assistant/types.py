"""The data that crosses every layer: PCM audio and captured frames.

Audio is mono signed 16-bit PCM in a numpy ``int16`` array with its sample rate carried beside
it. The capture path delivers ``AudioFrame``s of ``FRAME_SAMPLES`` at ``CAPTURE_RATE`` (and, from
some sources, ``AudioLook``s between them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

PCM = npt.NDArray[np.int16]

#: Rate of the capture path: what VAD and local STT consume.
CAPTURE_RATE = 16_000
#: 32 ms at 16 kHz: one Silero VAD window, and a frame size every STT accepts.
FRAME_SAMPLES = 512
FRAME_SECONDS = FRAME_SAMPLES / CAPTURE_RATE


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """``FRAME_SAMPLES`` of mono int16 audio at ``CAPTURE_RATE``.

    ``t`` is the monotonic time the frame's last sample was captured (for a WAV source played at
    real-time pace, when it would have been); ``offset`` is the frame's start in seconds since the
    source started.

    ``pcm`` is what turn-taking judges (voice activity, end of turn, barge-in). ``speech``, when
    set, is the same stretch of audio as the recognizer should hear it: over a reply, the echo
    canceller's linear stage alone, which keeps the user's words whole where ``pcm`` has the
    echo suppressed and the words with it (see ``assistant.audio.linear_echo``).
    """

    pcm: PCM
    t: float
    offset: float
    speech: PCM | None = None

    @property
    def heard(self) -> PCM:
        """The audio the recognizer (and the conversation's recording) takes."""
        return self.pcm if self.speech is None else self.speech

    @property
    def rms(self) -> float:
        """Root-mean-square level in [0, 1], for level meters."""
        x = self.pcm.astype(np.float32) / 32768.0
        return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0


@dataclass(frozen=True, slots=True)
class AudioLook:
    """A look at the audio between two frames: the latest ``FRAME_SAMPLES`` captured, of which
    the last ``fresh`` (1 to ``FRAME_SAMPLES - 1``) came after the last ``AudioFrame``.

    A source with a short capture block hands these out (``LookingSource``) so that speech can
    be noticed a few milliseconds before the frame it belongs to is complete; the same samples
    still come in the next frame. ``t`` is the capture time of the last sample.
    """

    pcm: PCM
    fresh: int
    t: float
