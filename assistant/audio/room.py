"""A laptop in software: a sound card whose speaker is heard again by its microphone.

``SoftwareRoom`` stands in for PortAudio: ``output_stream`` and ``input_stream`` take the same
keyword arguments as ``sounddevice.OutputStream``/``InputStream`` (pass them as the
``stream_factory`` of ``DevicePlayer`` and ``MicrophoneCapture``), and one real-time thread runs
both callbacks from one clock, with PortAudio-style ``time_info`` (DAC and ADC times ahead of and
behind the callback by the configured latencies, or zeros, as some backends report).

What the speaker plays goes through ``RoomAcoustics`` (delay, attenuation, a little
reverberation and a mild loudspeaker nonlinearity) and comes back in the microphone, mixed with
whatever the user says (``say``) and a faint noise floor. Everything is laid on one 16 kHz grid
of room time (seconds since ``start``), so a benchmark knows exactly when the user started
talking and when the speaker went quiet (``played``, ``heard``).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import soxr

from assistant.audio.capture import MicrophoneCapture
from assistant.types import CAPTURE_RATE

Float32 = npt.NDArray[np.float32]

#: Seconds of room kept for ``played``/``heard`` (and the longest ``say`` ahead of time).
HORIZON = 600.0
#: How much quieter the speaker is at the microphone when ``--echo`` gives no gain.
DEFAULT_GAIN_DB = -6.0
#: Samples (in seconds) a resampled microphone stream starts with, ahead of the room's sound.
HEAD_START = 0.02
#: The noise floor of the microphone (RMS, full scale 1.0).
NOISE_FLOOR = 3e-4


@dataclass(frozen=True, slots=True)
class EchoPath:
    """How the speaker reaches the microphone: ``DELAY_MS[:GAIN_DB]`` on the command line."""

    delay_ms: float = 120.0
    gain_db: float = DEFAULT_GAIN_DB
    reverb: bool = True
    #: Loudspeaker distortion: 0 is linear; 1 is a mild soft clip.
    drive: float = 1.0

    @classmethod
    def parse(cls, text: str) -> EchoPath:
        """``"120"`` or ``"120:-6"``; raises ValueError with a one-line reason."""
        delay, _, gain = text.partition(":")
        try:
            delay_ms = float(delay)
            gain_db = float(gain) if gain else DEFAULT_GAIN_DB
        except ValueError:
            raise ValueError(
                f"--echo takes DELAY_MS[:GAIN_DB], e.g. 120:-6, not {text!r}"
            ) from None
        if not 0.0 <= delay_ms <= 1000.0:
            raise ValueError(f"--echo delay must be 0–1000 ms, not {delay_ms:g}")
        if gain_db > 12.0:
            raise ValueError(f"--echo gain must be at most +12 dB, not {gain_db:g}")
        return cls(delay_ms=delay_ms, gain_db=gain_db)


class RoomAcoustics:
    """The echo path as a streaming filter on 16 kHz audio (``EchoPath``'s parameters)."""

    def __init__(self, path: EchoPath, seed: int = 7) -> None:
        self.path = path
        self._delay = round(path.delay_ms * CAPTURE_RATE / 1000.0)
        ir = np.zeros(1, dtype=np.float32)
        ir[0] = 1.0
        if path.reverb:
            # Reflections with an exponential tail (RT60 about 0.3 s), 10 dB below the direct
            # sound in all: a small room, heard by a microphone a few centimetres from the
            # loudspeaker.
            n = int(0.25 * CAPTURE_RATE)
            t = np.arange(n) / CAPTURE_RATE
            rng = np.random.default_rng(seed)
            tail = rng.standard_normal(n) * np.exp(-t / 0.045)
            tail[: int(0.004 * CAPTURE_RATE)] = 0.0
            tail *= np.sqrt(0.1 / float(np.sum(tail**2)))
            ir = np.concatenate((ir, np.zeros(n - 1, np.float32)))
            ir = (ir + tail).astype(np.float32)
        self._ir = ir
        self._gain = float(10.0 ** (path.gain_db / 20.0))
        self._history = np.zeros(len(ir) - 1 + self._delay, dtype=np.float32)

    @property
    def memory(self) -> int:
        """Samples after the last one played that still echo (the delay and the tail)."""
        return len(self._history)

    def __call__(self, x: Float32) -> Float32:
        """The microphone's share of the next ``len(x)`` speaker samples (same length)."""
        n = len(x)
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        drive = self.path.drive
        if drive > 0:  # a small loudspeaker compresses its peaks
            x = (np.tanh(drive * 2.0 * x) / (drive * 2.0)).astype(np.float32)
        line = np.concatenate((self._history, x))
        self._history = line[len(line) - len(self._history) :] if len(self._history) else line[:0]
        delayed = line[: len(line) - self._delay] if self._delay else line
        wet = np.convolve(delayed[-(n + len(self._ir) - 1) :], self._ir, mode="valid")
        return (wet * self._gain).astype(np.float32)


@dataclass(slots=True)
class _TimeInfo:
    currentTime: float
    outputBufferDacTime: float
    inputBufferAdcTime: float


class _RoomStream:
    """What ``sounddevice`` would return: ``start``, ``stop``, ``close``, ``latency``."""

    def __init__(
        self,
        room: SoftwareRoom,
        kind: str,
        *,
        samplerate: int,
        blocksize: int | None,
        callback: Callable[..., None],
        finished_callback: Callable[[], None] | None = None,
        **_options: Any,
    ) -> None:
        self.room = room
        self.kind = kind
        self.samplerate = int(samplerate)
        self.blocksize = int(blocksize or self.samplerate // 100)
        self.callback = callback
        self.finished_callback = finished_callback
        self.latency = room.output_latency if kind == "output" else room.input_latency
        self.device_name = f"Software room {'speaker' if kind == 'output' else 'microphone'}"
        self.active = False
        self.closed = False
        self.blocks = 0

    def start(self) -> None:
        self.room._attach(self)

    def stop(self) -> None:
        self.room._detach(self)

    def close(self) -> None:
        self.room._detach(self)
        self.closed = True


class SoftwareRoom:
    """A virtual sound card in a room (see the module docstring); use as a context manager.

    ``output_latency``/``input_latency``: how far ahead of its callback a block is played, and
    how long before its callback a block was captured. ``timestamps=False`` reports zeros.
    """

    def __init__(
        self,
        path: EchoPath | None,
        *,
        output_latency: float = 0.03,
        input_latency: float = 0.01,
        timestamps: bool = True,
        seed: int = 3,
    ) -> None:
        self.path = path
        self.output_latency = output_latency
        self.input_latency = input_latency
        self.timestamps = timestamps
        self._acoustics = RoomAcoustics(path) if path is not None else None
        self._rng = np.random.default_rng(seed)
        size = int(HORIZON * CAPTURE_RATE)
        self._speaker = np.zeros(size, dtype=np.float32)  # what was played, by room time
        self._echo = np.zeros(size, dtype=np.float32)  # what the microphone hears of it
        self._voice = np.zeros(size, dtype=np.float32)  # what the user says
        self._mic = np.zeros(size, dtype=np.float32)  # what the microphone captured
        self._lock = threading.Lock()
        self._streams: list[_RoomStream] = []
        self._state: dict[int, dict[str, Any]] = {}
        self._speaker_end = 0  # grid index after the last speaker sample
        self._echoed_end = 0  # grid index after the last sample the echo path was given
        self._mic_end = 0
        self._t0 = 0.0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------------------------ public

    def __enter__(self) -> SoftwareRoom:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._t0 = time.monotonic()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="software-room", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(2.0)

    def output_stream(self, **options: Any) -> _RoomStream:
        """A ``sounddevice.OutputStream`` stand-in (the speaker)."""
        return _RoomStream(self, "output", **options)

    def input_stream(self, **options: Any) -> _RoomStream:
        """A ``sounddevice.InputStream`` stand-in (the microphone)."""
        return _RoomStream(self, "input", **options)

    def now(self) -> float:
        """Room time: seconds since ``start``."""
        return time.monotonic() - self._t0

    def to_monotonic(self, room_time: float) -> float:
        return self._t0 + room_time

    def say(self, pcm16k: npt.NDArray[Any], at: float) -> None:
        """The user says ``pcm16k`` (16 kHz, int16 or float) from room time ``at`` on."""
        x = np.asarray(pcm16k)
        y = x.astype(np.float32) / 32768.0 if x.dtype.kind in "iu" else x.astype(np.float32)
        start = round(at * CAPTURE_RATE)
        end = min(len(self._voice), start + len(y))
        with self._lock:
            self._voice[start:end] += y[: end - start]

    def played(self, start: float = 0.0, end: float | None = None) -> Float32:
        """What the speaker played, 16 kHz, between two room times."""
        return self._span(self._speaker, start, end, self._speaker_end)

    def heard(self, start: float = 0.0, end: float | None = None) -> Float32:
        """What the microphone captured (echo, voice and noise), 16 kHz."""
        return self._span(self._mic, start, end, self._mic_end)

    def echo(self, start: float = 0.0, end: float | None = None) -> Float32:
        """The echo alone, as the microphone heard it."""
        return self._span(self._echo, start, end, self._mic_end)

    # ------------------------------------------------------------------------ the thread

    def _span(self, data: Float32, start: float, end: float | None, limit: int) -> Float32:
        a = max(0, round(start * CAPTURE_RATE))
        b = limit if end is None else min(limit, round(end * CAPTURE_RATE))
        with self._lock:
            return data[a:b].copy() if b > a else np.zeros(0, dtype=np.float32)

    def _attach(self, stream: _RoomStream) -> None:
        with self._lock:
            if stream in self._streams:
                return
            stream.active = True
            self._streams.append(stream)
            resampler = (
                None
                if stream.samplerate == CAPTURE_RATE
                else soxr.ResampleStream(
                    stream.samplerate if stream.kind == "output" else CAPTURE_RATE,
                    CAPTURE_RATE if stream.kind == "output" else stream.samplerate,
                    1,
                    "float32",
                )
            )
            period = stream.blocksize / stream.samplerate
            first = self.now() + 0.001
            self._state[id(stream)] = {
                "due": first,
                "period": period,
                "resampler": resampler,
                # The grid index of the stream's next sample.
                "index": None,
                # The grid index at which the next output block starts if it follows the last.
                "follows": None,
                # Output: the grid spans [start, end) owed to blocks the resampler has not
                # handed all of over yet.
                "spans": deque(),
                # A head start for the resampler, which hands its output over in uneven
                # pieces: a block is never short (so nothing is ever padded in later).
                "fifo": np.zeros(
                    round(HEAD_START * stream.samplerate) if resampler is not None else 0,
                    dtype=np.float32,
                ),
            }

    def _detach(self, stream: _RoomStream) -> None:
        with self._lock:
            if stream in self._streams:
                self._streams.remove(stream)
                self._state.pop(id(stream), None)
            stream.active = False

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                streams = list(self._streams)
                dues = [(self._state[id(s)]["due"], s) for s in streams if id(s) in self._state]
            if not dues:
                self._stop.wait(0.005)
                continue
            due, stream = min(dues, key=lambda d: d[0])
            now = self.now()
            wait = due - now
            if wait > 0:
                self._stop.wait(min(wait, 0.005))
                continue
            if stream.kind == "output" and -wait > 0.8 * self.output_latency:
                # Too late for the device's buffer: it ran dry and plays this block later, as
                # a real device does after an underflow.
                due = now
            try:
                if stream.kind == "output":
                    self._tick_output(stream, due)
                else:
                    self._tick_input(stream, due)
            except Exception:
                self._detach(stream)
                if stream.finished_callback is not None:
                    stream.finished_callback()
                continue
            state = self._state.get(id(stream))
            if state is not None:
                state["due"] = due + state["period"]
                if self.now() - state["due"] > 1.0:  # a stall: re-anchor, as a device would
                    state["due"] = self.now()

    def _time_info(self, now: float, dac: float, adc: float) -> _TimeInfo:
        if not self.timestamps:
            return _TimeInfo(0.0, 0.0, 0.0)
        offset = 5000.0  # the stream clock is not the monotonic clock
        return _TimeInfo(now + offset, dac + offset, adc + offset)

    def _tick_output(self, stream: _RoomStream, due: float) -> None:
        state = self._state[id(stream)]
        n = stream.blocksize
        out = np.zeros((n, 1), dtype=np.float32)
        play_at = due + self.output_latency
        stream.callback(out, n, self._time_info(self.now(), play_at, 0.0), None)
        stream.blocks += 1
        block = out[:, 0]
        resampler = state["resampler"]
        y = resampler.resample_chunk(block) if resampler is not None else block.copy()
        follows = state["follows"]  # where this block starts if it follows the last one
        at = play_at * CAPTURE_RATE
        if follows is None or at > follows + CAPTURE_RATE // 1000:
            follows = at  # the first block, or one after an underflow: a gap
        end = follows + n * CAPTURE_RATE / stream.samplerate
        state["follows"] = end
        # The grid span this block is played in. The resampler hands its output over late and
        # in uneven pieces, aligned to its input: each piece fills the spans in order, so what
        # it held back of the blocks before a gap is played before the gap.
        spans = state["spans"]
        if spans and spans[-1][1] == round(follows):
            spans[-1][1] = round(end)
        else:
            spans.append([round(follows), round(end)])
        i = 0
        while i < len(y) and spans:
            span = spans[0]
            k = min(len(y) - i, span[1] - span[0])
            span[0] = self._play(span[0], y[i : i + k])
            i += k
            if span[0] >= span[1] or span[0] >= len(self._speaker):  # done, or past the horizon
                spans.popleft()

    def _play(self, start: int, y: Float32) -> int:
        """Lay ``y`` on the speaker (and its echo on the microphone's way) from grid index
        ``start``; returns the index after it."""
        end = min(len(self._speaker), start + len(y))
        if end <= start:
            return start
        y = y[: end - start]
        with self._lock:
            self._speaker[start:end] = y
            self._speaker_end = max(self._speaker_end, end)
        if self._acoustics is not None:
            gap = start - self._echoed_end
            if gap > 0:
                # Nothing was played for a while (an underflow, a stream stopped): the room
                # goes on echoing what was played before, through the silence.
                self._echo_at(
                    self._echoed_end, np.zeros(min(gap, self._acoustics.memory), np.float32)
                )
            self._echo_at(start, y)
            self._echoed_end = end
        return end

    def _echo_at(self, start: int, y: Float32) -> None:
        """Lay the echo of ``y``, played from grid index ``start``, on the microphone's way."""
        assert self._acoustics is not None
        echo = self._acoustics(y)
        reach = min(len(self._echo), start + len(y))
        if reach > start:
            with self._lock:
                self._echo[start:reach] += echo[: reach - start]

    def _tick_input(self, stream: _RoomStream, due: float) -> None:
        state = self._state[id(stream)]
        n = stream.blocksize
        captured_end = due - self.input_latency
        end = max(0, round(captured_end * CAPTURE_RATE))
        if state["index"] is None:
            state["index"] = max(0, end - round(n * CAPTURE_RATE / stream.samplerate))
        start = state["index"]
        end = max(start, end)
        state["index"] = end
        with self._lock:
            mic = self._echo[start:end] + self._voice[start:end]
        mic = mic + (self._rng.standard_normal(len(mic)) * NOISE_FLOOR).astype(np.float32)
        with self._lock:
            self._mic[start:end] = mic
            self._mic_end = max(self._mic_end, end)
        resampler = state["resampler"]
        if resampler is None:
            y = mic
        elif len(mic):  # (an empty chunk can stall the resampler)
            y = resampler.resample_chunk(mic)
        else:
            y = np.zeros(0, dtype=np.float32)
        fifo = np.concatenate((state["fifo"], y))
        if len(fifo) < n:  # (not with the head start given at attach)
            fifo = np.concatenate((np.zeros(n - len(fifo), np.float32), fifo))
        block, state["fifo"] = fifo[:n], fifo[n:]
        indata = block.reshape(n, 1).astype(np.float32)
        adc = captured_end - n / stream.samplerate
        stream.callback(indata, n, self._time_info(self.now(), 0.0, adc), None)
        stream.blocks += 1


class RoomMicrophone(MicrophoneCapture):
    """The room's microphone, into which ``voice`` is said once, ``lead`` seconds after it
    starts (``voice_ends_at`` tells when the voice is over, on the monotonic clock)."""

    def __init__(
        self,
        room: SoftwareRoom,
        voice16k: npt.NDArray[Any],
        *,
        lead: float = 0.3,
        samplerate: int = CAPTURE_RATE,
    ) -> None:
        super().__init__(samplerate=samplerate, stream_factory=room.input_stream)
        self.room = room
        self._voice = voice16k
        self._lead = lead
        self.voice_ends_at = float("inf")

    async def start(self) -> None:
        await super().start()
        if self.voice_ends_at == float("inf"):
            at = self.room.now() + self._lead
            self.room.say(self._voice, at)
            self.voice_ends_at = self.room.to_monotonic(at + len(self._voice) / CAPTURE_RATE)
