"""The chime an alarm rings before its spoken line: two soft bell-like notes."""

from __future__ import annotations

import numpy as np

from assistant.types import PCM

CHIME_RATE = 24_000


def chime(rate: int = CHIME_RATE, volume: float = 0.3) -> PCM:
    """About 0.6 s of 16-bit mono audio at ``rate``: a rising pair of decaying notes."""
    notes = []
    for freq in (880.0, 1318.5):
        n = np.arange(int(0.28 * rate), dtype=np.float32)
        envelope = np.exp(-n / (0.09 * rate)) * np.minimum(1.0, n / (0.005 * rate))
        tone = np.sin(2 * np.pi * freq * n / rate) + 0.3 * np.sin(4 * np.pi * freq * n / rate)
        notes.append(volume * envelope * tone / 1.3)
    notes.append(np.zeros(int(0.08 * rate), dtype=np.float32))
    return (np.concatenate(notes) * 32767).astype(np.int16)
