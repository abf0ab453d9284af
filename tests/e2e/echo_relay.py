"""A laptop's acoustic echo path as a PulseAudio client (run by ``pulse.LaptopEcho``).

``python echo_relay.py DELAY_MS GAIN_DB STATUS_FILE`` records the default source (the
speaker's monitor, ``PULSE_SOURCE``) and plays into the default sink (the room, ``PULSE_SINK``)
through one full-duplex PortAudio stream: what the speaker played comes back DELAY_MS later
(plus the stream's own latency), through a small loudspeaker's overdrive, attenuated by
GAIN_DB, with a little reverberation.

Why one stream and not ``parec | sox | pacat``: a pipe keeps every sample, so each time the
machine stalls its backlog (and the echo's delay) grows for good; here a stall loses audio
instead, as a room would, and the delay stays what it was. Both directions are handled in one
callback, so the path's delay is fixed: the input's capture-to-callback time, DELAY_MS, and
the output's callback-to-play time (PortAudio's timestamps). Its median is written to
STATUS_FILE (``{"delay_ms": ...}``) every second.

The effects are sox's: the reverberation is sox's ``reverb 15 50 30 0`` impulse response
(computed once by sox), the overdrive is sox's ``overdrive 3 15`` formula.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from typing import Any

import numpy as np
import numpy.typing as npt

RATE = 16_000
BLOCK = 160  # 10 ms
REVERB_SECONDS = 0.4
Float = npt.NDArray[np.float64]


def sox_reverb_response() -> Float:
    """sox's ``reverb 15 50 30 0`` applied to a unit impulse (16 kHz, wet and dry)."""
    impulse = np.zeros(int(REVERB_SECONDS * RATE), dtype="<f4")
    impulse[0] = 0.5
    raw = f"-t raw -r {RATE} -e floating-point -b 32 -c 1"
    done = subprocess.run(
        f"sox {raw} - {raw} - reverb 15 50 30 0",
        shell=True,
        input=impulse.tobytes(),
        capture_output=True,
        check=True,
        timeout=30,
    )
    return np.frombuffer(done.stdout, dtype="<f4").astype(np.float64) / 0.5


class Overdrive:
    """sox's ``overdrive GAIN COLOUR``: a cubic soft clip with a DC blocker, mixed with the
    dry signal."""

    def __init__(self, gain_db: float = 3.0, colour: float = 15.0) -> None:
        self.gain = 10.0 ** (gain_db / 20.0)
        self.colour = colour / 200.0
        self.last_in = 0.0
        self.last_out = 0.0

    def __call__(self, x: Float) -> Float:
        d = x * self.gain + self.colour
        d = np.where(d < -1, -2.0 / 3, np.where(d > 1, 2.0 / 3, d - d**3 / 3))
        out = np.empty_like(x)
        last_in, last_out = self.last_in, self.last_out
        for i, v in enumerate(d):  # the DC blocker: y = d - d[-1] + 0.995 y[-1]
            last_out = v - last_in + 0.995 * last_out
            last_in = v
            out[i] = x[i] * 0.5 + last_out * 0.75
        self.last_in, self.last_out = last_in, last_out
        return out


class EchoPath:
    """Overdrive, gain, reverberation and delay, block by block."""

    def __init__(self, delay_ms: float, gain_db: float) -> None:
        self.overdrive = Overdrive()
        self.gain = 10.0 ** ((gain_db - 3.0) / 20.0)  # -3 dB for the overdrive's own boost
        self.ir = sox_reverb_response()
        self.size = 1 << (len(self.ir) + BLOCK).bit_length()
        self.ir_f = np.fft.rfft(self.ir, self.size)
        self.history = np.zeros(len(self.ir) + BLOCK - 1)
        self.line = np.zeros(round(delay_ms * RATE / 1000.0))

    def __call__(self, x: Float) -> Float:
        y = self.overdrive(x) * self.gain
        self.history = np.concatenate((self.history[len(y) :], y))
        wet = np.fft.irfft(np.fft.rfft(self.history, self.size) * self.ir_f, self.size)
        line = np.concatenate((self.line, wet[len(self.history) - len(y) : len(self.history)]))
        self.line = line[len(y) :]
        return line[: len(y)]


class StreamClock:
    """When each sample of a stream meets the device, by sample count from an anchor.

    The anchor is the earliest ``callback time - index / RATE`` over the last ``WINDOW``
    blocks: a callback is never early, only sometimes late (scheduling, the server's
    bursts), so the earliest one tells the stream's timing, and between stalls sample ``i`` is
    at ``anchor + i / RATE`` exactly (the path's delay does not wobble). When a stream loses
    time (an xrun), every later callback is later by that much and the anchor follows once
    the earlier ones have left the window. The device's own timestamps are not used: through
    the pulse plugin they jump by hundreds of milliseconds at times.
    """

    WINDOW = 100

    def __init__(self) -> None:
        self._recent: deque[float] = deque(maxlen=self.WINDOW)
        self.anchor: float | None = None

    def update(self, index: int, t: float) -> None:
        """The callback for the block starting at sample ``index`` ran at monotonic ``t``."""
        self._recent.append(t - index / RATE)
        anchor = min(self._recent)
        self.anchor = anchor


class Relay:
    """The input stream's samples, played back ``delay_ms`` after they were captured."""

    MOVE = 0.04
    CONFIRM = 50

    def __init__(self, delay_ms: float, gain_db: float) -> None:
        self.path = EchoPath(0.0, gain_db)
        self.delay = delay_ms / 1000.0
        self.ring = np.zeros(4 * RATE)
        self.lock = threading.Lock()
        self.written = 0  # input samples captured
        self.read = 0  # output samples played
        self.inputs = StreamClock()
        self.outputs = StreamClock()
        #: Output samples with no input captured for them (a stall) or already overwritten.
        self.missing = 0
        #: (monotonic time, input sample offset of the output) each time the offset moved.
        self.offsets: list[tuple[float, int]] = []
        self._moved = 0

    def captured(self, x: Float, t: float) -> None:
        y = self.path(x)
        with self.lock:
            self.inputs.update(self.written, t)
            self.ring[(self.written + np.arange(len(y))) % len(self.ring)] = y
            self.written += len(y)

    def play(self, out: npt.NDArray[np.float32], t: float) -> None:
        n = len(out)
        out[:] = 0.0
        with self.lock:
            self.outputs.update(self.read, t)
            start_read = self.read
            self.read += n
            if self.inputs.anchor is None or self.outputs.anchor is None:
                return
            # Input sample played by output sample j: captured ``delay`` before it plays.
            offset = self._offset(self.outputs.anchor - self.delay - self.inputs.anchor)
            first = start_read + offset
            cap = len(self.ring)
            lo = max(first, self.written - cap)
            hi = min(first + n, self.written)
            self.missing += n - max(0, hi - lo)
            if lo < hi:
                out[lo - first : hi - first] = self.ring[np.arange(lo, hi) % cap]

    def _offset(self, seconds: float) -> int:
        """The output's offset into the input stream; it moves only when the streams' timing
        stays ``MOVE`` away from it for ``CONFIRM`` blocks (a stall), so it stays put
        through the ordinary wobble of callback times."""
        wanted = round(seconds * RATE)
        if not self.offsets:
            self.offsets.append((time.monotonic(), wanted))
        current = self.offsets[-1][1]
        if abs(wanted - current) <= self.MOVE * RATE:
            self._moved = 0
            return current
        self._moved += 1
        if self._moved < self.CONFIRM:
            return current
        self._moved = 0
        self.offsets.append((time.monotonic(), wanted))
        return wanted


def main() -> int:
    import sounddevice as sd

    delay_ms, gain_db, status_path = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    relay = Relay(delay_ms, gain_db)
    # Sound in a room is never late: where the system allows it, the relay's threads (the
    # streams' callback threads inherit this) run before the busy programs around it.
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(20))
        realtime = True
    except (OSError, AttributeError):
        realtime = False

    def captured(indata: Any, frames: int, info: Any, status: Any) -> None:
        relay.captured(indata[:, 0].astype(np.float64), time.monotonic())

    def play(outdata: Any, frames: int, info: Any, status: Any) -> None:
        relay.play(outdata[:, 0], time.monotonic())

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    options: dict[str, Any] = dict(
        samplerate=RATE, blocksize=BLOCK, channels=1, dtype="float32", latency="low"
    )
    with (
        sd.InputStream(callback=captured, **options) as inp,
        sd.OutputStream(callback=play, **options) as out,
    ):
        # From the sample captured to the sample played: the input's latency and one block
        # (a callback comes once its block is in), the delay, the output's latency.
        path_ms = delay_ms + (float(inp.latency) + BLOCK / RATE + float(out.latency)) * 1000.0
        while not stop.wait(1.0):
            with relay.lock:
                status = {
                    "delay_ms": path_ms,
                    "realtime": realtime,
                    "ready": relay.inputs.anchor is not None and relay.outputs.anchor is not None,
                    "moves": len(relay.offsets) - 1,
                    "missing_ms": relay.missing / RATE * 1000.0,
                    "offsets": relay.offsets[-50:],
                }
            tmp = status_path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(status, f)
            os.replace(tmp, status_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
