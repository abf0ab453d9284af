"""The unit of captured audio (defined in ``assistant.types``; kept here for the audio package)."""

from assistant.types import CAPTURE_RATE, FRAME_SAMPLES, AudioFrame

__all__ = ["CAPTURE_RATE", "FRAME_SAMPLES", "AudioFrame"]
