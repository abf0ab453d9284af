"""When a block of audio really meets the device: PortAudio's timestamps, or a fixed estimate.

A PortAudio callback gets ``time_info`` with the stream's ``currentTime`` and, for an output,
the ``outputBufferDacTime`` at which its first sample reaches the converter (for an input, the
``inputBufferAdcTime`` at which its first sample left it). ``DeviceDelay`` turns that into a
delay in seconds on every callback (the median of the last five, so one odd timestamp does not
move the audio), so a caller can place the block on the monotonic clock:
``time.monotonic() + delay`` for an output, ``time.monotonic() - delay`` for an input.

Some backends report zeros (or nonsense) there. Then the stream's nominal latency (what
``stream.latency`` says; 0 when it says nothing either) stands in, ``measured`` turns False,
and ``fallback_reason`` says why, once, for the log. Called on the audio thread: no logging,
never raises.
"""

from __future__ import annotations

from typing import Any, Literal

#: A delay outside [0, this] is not believed.
MAX_BELIEVABLE = 1.0


class DeviceDelay:
    """The delay between a callback and its samples at the device (see the module docstring)."""

    def __init__(self, kind: Literal["input", "output"], nominal: float = 0.0) -> None:
        self.kind = kind
        self.nominal = nominal if 0.0 <= nominal <= MAX_BELIEVABLE else 0.0
        #: The last delay, in seconds.
        self.seconds = self.nominal
        #: The last delay came from the device's own timestamps.
        self.measured = False
        #: Why the timestamps were not used (None while they are); set once, kept.
        self.fallback_reason: str | None = None
        self._updates = 0
        self._recent = [0.0] * 5
        self._written = 0
        self._filled = 0

    def update(self, time_info: Any) -> float:
        """The delay for this callback's block (seconds); the fallback when unusable."""
        self._updates += 1
        try:
            now = float(time_info.currentTime)
            if self.kind == "output":
                at = float(time_info.outputBufferDacTime)
                delay = at - now
            else:
                at = float(time_info.inputBufferAdcTime)
                delay = now - at
        except (AttributeError, TypeError, ValueError):
            return self._fallback("the device gives no timestamps")
        if now == 0.0 or at == 0.0:
            return self._fallback("the device reports zero timestamps")
        if not 0.0 <= delay <= MAX_BELIEVABLE:
            return self._fallback(f"the device reports a delay of {delay * 1000:.0f} ms")
        # The median of the last few: a single block's odd timestamp must not move the audio.
        recent = self._recent
        recent[self._written % len(recent)] = delay
        self._written += 1
        self._filled = min(self._filled + 1, len(recent))
        self.seconds = sorted(recent[: self._filled])[self._filled // 2]
        self.measured = True
        return self.seconds

    def _fallback(self, reason: str) -> float:
        if self.fallback_reason is None:
            self.fallback_reason = reason
        self.measured = False
        self.seconds = self.nominal
        return self.nominal
