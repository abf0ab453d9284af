"""Audio sources: the microphone, WAV files and in-memory arrays, as ``AudioFrame``s on the loop.

Every source yields frames of exactly ``FRAME_SAMPLES`` mono int16 samples at ``CAPTURE_RATE``.
The microphone may run an ``AudioProcessor`` (echo cancellation, noise suppression) on its
16 kHz stream before the frames are cut, so every frame is processed audio.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import soxr

from assistant.audio.devices import (
    CLOSE_TIMEOUT,
    close_off_loop,
    report_error,
    start_mono_stream,
    stream_defaults,
)
from assistant.audio.echo import AudioProcessor, SpeechProcessor
from assistant.audio.frames import CAPTURE_RATE, FRAME_SAMPLES, AudioFrame
from assistant.audio.timing import DeviceDelay
from assistant.audio.watchdog import CallbackWatchdog
from assistant.audio.wav import WavError, read_wav, resample, to_int16
from assistant.clock import SYSTEM_CLOCK, Clock
from assistant.mic_access import WithheldWatch
from assistant.types import PCM, AudioLook

__all__ = [
    "ArraySource",
    "AudioSource",
    "MicrophoneCapture",
    "WavError",
    "WavSource",
]

log = logging.getLogger(__name__)

Pace = Literal["realtime", "fast"]
Float32 = npt.NDArray[np.float32]

#: Seconds of one frame.
FRAME_SECONDS = FRAME_SAMPLES / CAPTURE_RATE


@runtime_checkable
class AudioSource(Protocol):
    on_error: list[Callable[[str], None]]

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def frames(self) -> AsyncIterator[AudioFrame]:
        """Frames in order; the iterator ends when the source ends or is stopped."""
        ...


@runtime_checkable
class LookingSource(AudioSource, Protocol):
    """A source that can also hand out ``AudioLook``s between its frames."""

    def stream(self) -> AsyncIterator[AudioFrame | AudioLook]:
        """``frames()``, with looks in between: each the latest ``FRAME_SAMPLES`` once part
        of the next frame has been captured (see ``AudioLook``)."""
        ...


# -------------------------------------------------------------------------------- microphone


class MicrophoneCapture:
    """Captures from a sounddevice ``InputStream`` into a preallocated ring buffer.

    The PortAudio callback only copies the block into the ring and, if the consumer is waiting
    and the ring holds enough to complete the next frame, wakes the loop (so about one wake-up
    per frame, never one per block). The loop side resamples the device rate to 16 kHz with a
    streaming soxr resampler and cuts exact frames. If the loop falls more than ``ring_seconds``
    behind, incoming blocks are dropped and counted in ``overflows`` (as are PortAudio's own input
    overflows); frame times just before such a drop come out late by the dropped duration.

    Frame times are capture times: the callback's time less the input delay from PortAudio's
    ADC timestamps (``delay``; the stream's nominal latency when the device gives none).

    ``processor`` (set before ``start``) runs on the loop on each stretch of 16 kHz audio before
    frames are cut; its output may lag its input, and frames (and looks) keep the times of their
    samples, less the processor's ``latency`` (what its filters' delay makes them older). A
    processor that also gives the recognizer's version of its output (``SpeechProcessor``) has
    it in the frames' ``speech``.

    ``blocksize`` defaults to one frame's duration at the device rate (10 ms with a processor,
    so it sees the audio soon after it is captured; ``stream()`` then also hands out a look at
    each block that leaves part of a frame). ``samplerate`` defaults to
    the device's default rate. ``stream_factory`` replaces ``sounddevice.InputStream`` (same
    keyword arguments), which lets the callback path run without a microphone. A device that
    stops calling back without a word is noticed by a watchdog on ``clock`` and reported as
    lost; closing a dead stream never blocks the loop for more than ``close_timeout`` seconds.
    """

    def __init__(
        self,
        device: int | str | None = None,
        blocksize: int | None = None,
        *,
        samplerate: int | None = None,
        ring_seconds: float = 2.0,
        latency: str | float = "low",
        stream_factory: Callable[..., Any] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        close_timeout: float = CLOSE_TIMEOUT,
        processor: AudioProcessor | None = None,
    ) -> None:
        self.device = device
        self.blocksize = blocksize
        self.latency = latency
        self.processor = processor
        #: How long before its callback each block was captured (PortAudio's ADC time).
        self.delay = DeviceDelay("input")
        self.on_error: list[Callable[[str], None]] = []
        #: Blocks lost because the ring was full or PortAudio reported an input overflow.
        self.overflows = 0
        self.callback_errors = 0
        #: The last callback's block could not be used.
        self._unusable = False
        self.rate = samplerate or 0
        self._samplerate = samplerate
        self._ring_seconds = ring_seconds
        self._factory = stream_factory
        self._stream: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._waiting = False
        self._stopped = False
        self._closing = False
        self._ring: Float32 = np.zeros(0, dtype=np.float32)
        self._w = 0  # absolute samples written (callback)
        self._r = 0  # absolute samples read (loop)
        self._stamp: tuple[int, float] = (0, 0.0)  # (_w, monotonic time) at the last callback
        self._wake_at = 1
        self._resampler: Any = None
        self._pending: Float32 = np.zeros(0, dtype=np.float32)
        #: The recognizer's version of ``_pending``, sample for sample (None: the same).
        self._pending_speech: Float32 | None = None
        self._produced = 0  # 16 kHz samples out of the resampler
        self._emitted = 0  # frames yielded
        self._last_frame: Float32 = np.zeros(FRAME_SAMPLES, dtype=np.float32)
        self._looked = 0  # samples of the pending part of a frame the last look had
        self._close_timeout = close_timeout
        self._watchdog = CallbackWatchdog(clock, self._lost)
        self._closer: asyncio.Future[bool] | None = None
        self._silence = WithheldWatch(CAPTURE_RATE)

    @property
    def withheld(self) -> bool:
        """The device has delivered nothing but exact zeros for a while: the OS withholds it,
        or it is muted (see ``assistant.mic_access``)."""
        return self._silence.withheld

    async def start(self) -> None:
        if self._stream is not None:
            return
        self._loop = asyncio.get_running_loop()
        factory, rate = stream_defaults("input", self.device, self._factory, self._samplerate)
        self._prepare(rate)
        blocksize = self.blocksize
        if blocksize is None:
            seconds = 0.01 if self.processor is not None else FRAME_SECONDS
            blocksize = math.ceil(seconds * rate)
        self._stream, nominal = start_mono_stream(
            "input",
            self.device,
            factory,
            samplerate=rate,
            blocksize=blocksize,
            latency=self.latency,
            callback=self._callback,
            finished_callback=self._stream_finished,
        )
        self.delay = DeviceDelay("input", nominal)
        self._watchdog.start()

    def _prepare(self, rate: int) -> None:
        self.rate = rate
        self._ring = np.zeros(max(int(self._ring_seconds * rate), 4 * FRAME_SAMPLES), np.float32)
        self._w = self._r = 0
        self._stamp = (0, time.monotonic())
        frame = math.ceil(FRAME_SAMPLES * rate / CAPTURE_RATE)
        self._wake_at = 1 if self.processor is not None else frame
        self._resampler = (
            None if rate == CAPTURE_RATE else soxr.ResampleStream(rate, CAPTURE_RATE, 1, "float32")
        )
        self._pending = np.zeros(0, dtype=np.float32)
        self._pending_speech = None
        self._produced = 0
        self._emitted = 0
        self._last_frame = np.zeros(FRAME_SAMPLES, dtype=np.float32)
        self._looked = 0
        self._stopped = self._closing = False
        self._wake = asyncio.Event()
        self._silence = WithheldWatch(rate)

    # PortAudio's thread. Copies and bookkeeping only; never raises. Only a block that could be
    # used counts as a sign of life: a stream whose every block breaks is as good as dead.
    def _callback(self, indata: Any, frames: int, time_info: Any, status: Any) -> None:
        try:
            if status and getattr(status, "input_overflow", False):
                self.overflows += 1
            x = indata[:, 0]
            n = len(x)
            ring = self._ring
            cap = len(ring)
            w = self._w
            if (w - self._r) + n > cap:
                self.overflows += 1  # the loop is too far behind: drop this block
            else:
                i = w % cap
                first = n if n <= cap - i else cap - i
                ring[i : i + first] = x[:first]
                if first < n:
                    ring[: n - first] = x[first:]
                w += n
                self._w = w
            now = time.monotonic()
            delay = self.delay.update(time_info)
            if self.delay.measured:  # the ADC time of the first sample, plus the block
                self._stamp = (w, min(now, now - delay + n / self.rate))
            else:
                self._stamp = (w, now - delay)
            if self._waiting and w - self._r >= self._wake_at:
                self._waiting = False
                loop = self._loop
                if loop is not None:
                    loop.call_soon_threadsafe(self._wake.set)
            self._watchdog.beat()
            self._unusable = False
        except Exception:
            self.callback_errors += 1
            self._unusable = True

    def _stream_finished(self) -> None:
        if not self._closing and self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._lost)
            except RuntimeError:
                pass

    def _lost(self) -> None:
        if self._closing or self._stopped:
            return
        self._watchdog.stop()
        dead, self._stream = self._stream, None
        if dead is not None:
            self._closer = asyncio.ensure_future(close_off_loop(dead, self._close_timeout))
        self._end()
        message = (
            "Audio input stopped: the microphone sends audio Parley cannot read."
            if self._unusable
            else "Audio input stopped: the microphone was lost or disconnected."
        )
        report_error(self.on_error, message)

    def _end(self) -> None:
        self._stopped = True
        self._wake.set()

    def _join_speech(self, held: int, chunk: Float32, speech: Float32 | None) -> Float32 | None:
        """The recognizer's version of the ``held`` pending samples and ``chunk`` after them
        (``speech``: ``chunk``'s; None for either part: the same as the processed audio)."""
        before = self._pending_speech
        if speech is None and before is None:
            return None
        first = before if before is not None else self._pending[:held]
        return np.concatenate((first, chunk if speech is None else speech))

    async def stop(self) -> None:
        self._closing = True
        self._watchdog.stop()
        self._end()
        stream, self._stream = self._stream, None
        if stream is not None:
            await close_off_loop(stream, self._close_timeout)

    async def frames(self) -> AsyncIterator[AudioFrame]:
        async for item in self._items(looks=False):
            if isinstance(item, AudioFrame):
                yield item

    def stream(self) -> AsyncIterator[AudioFrame | AudioLook]:
        """See ``LookingSource``: without a processor the loop wakes once a frame, and there
        is nothing to look at between frames."""
        return self._items(looks=True)

    async def _items(self, *, looks: bool) -> AsyncIterator[AudioFrame | AudioLook]:
        """Frames as they complete and, with ``looks``, a look after each wake-up that leaves
        part of a frame (none is built otherwise)."""
        while not self._stopped:
            if self._w - self._r < self._wake_at:
                self._wake.clear()
                self._waiting = True
                if self._w - self._r < self._wake_at:  # re-check: no lost wake-up
                    await self._wake.wait()
                self._waiting = False
                continue
            for frame in self._drain():
                yield frame
            look = self._look() if looks else None
            if look is not None:
                yield look

    def _look(self) -> AudioLook | None:
        """The latest ``FRAME_SAMPLES`` when part of the next frame has come since the last
        frame or look (loop thread)."""
        fresh = len(self._pending)
        if self.processor is None or fresh == 0 or fresh == self._looked:
            return None
        self._looked = fresh
        window = np.concatenate((self._last_frame[fresh:], self._pending))
        t = self._heard_at(self._stamp, self._emitted * FRAME_SAMPLES + fresh)
        return AudioLook(to_int16(window), fresh, t)

    def _captured_at(self, stamp: tuple[int, float], samples: int) -> float:
        """When the 16 kHz sample before ``samples`` (counted from the start) was captured, by
        the callback's ``stamp`` (read once per drain: the callback thread moves it)."""
        stamp_w, stamp_t = stamp
        return stamp_t - (stamp_w - samples * self.rate / CAPTURE_RATE) / self.rate

    def _heard_at(self, stamp: tuple[int, float], samples: int) -> float:
        """``_captured_at`` for the processed stream: what the processor returns there was
        captured its ``latency`` earlier."""
        late = self.processor.latency if self.processor is not None else 0.0
        return self._captured_at(stamp, samples) - late

    def _drain(self) -> list[AudioFrame]:
        """Take everything in the ring, resample it and cut whole frames (loop thread)."""
        stamp = self._stamp
        r, w = self._r, self._w
        ring = self._ring
        cap = len(ring)
        i = r % cap
        n = w - r
        first = min(n, cap - i)
        chunk = np.concatenate((ring[i : i + first], ring[: n - first]))
        self._r = w
        self._silence.observe(chunk)  # as the device gave it: no filter has touched it yet
        if self._resampler is not None:
            chunk = self._resampler.resample_chunk(chunk)
        speech: Float32 | None = None
        if self.processor is not None:
            self._produced += len(chunk)
            end_time = self._captured_at(stamp, self._produced)
            if isinstance(self.processor, SpeechProcessor):
                chunk, speech = self.processor.process_with_speech(chunk, end_time)
            else:
                chunk = self.processor.process(chunk, end_time)
        pending = np.concatenate((self._pending, chunk)) if len(self._pending) else chunk
        pending_speech = self._join_speech(len(self._pending), chunk, speech)
        count = len(pending) // FRAME_SAMPLES
        out: list[AudioFrame] = []
        for k in range(count):
            index = self._emitted
            cut = slice(k * FRAME_SAMPLES, (k + 1) * FRAME_SAMPLES)
            heard = None if pending_speech is None else pending_speech[cut]
            out.append(
                AudioFrame(
                    pcm=to_int16(pending[cut]),
                    t=self._heard_at(stamp, (index + 1) * FRAME_SAMPLES),
                    offset=index * FRAME_SECONDS,
                    speech=None
                    if heard is None or np.array_equal(heard, pending[cut])
                    else to_int16(heard),
                )
            )
            self._emitted += 1
        if count:
            self._last_frame = pending[(count - 1) * FRAME_SAMPLES : count * FRAME_SAMPLES].copy()
            self._looked = 0
        self._pending = pending[count * FRAME_SAMPLES :].copy()
        self._pending_speech = (
            None if pending_speech is None else pending_speech[count * FRAME_SAMPLES :].copy()
        )
        # Wake again once the ring holds what completes the next frame (with a processor, at
        # every block: it holds part of what it was given back).
        missing = FRAME_SAMPLES - len(self._pending)
        if self.processor is not None:
            missing = 0
        self._wake_at = max(1, math.ceil(missing * self.rate / CAPTURE_RATE))
        return out


# ------------------------------------------------------------------------- arrays and files


class ArraySource:
    """Frames from 16 kHz mono audio in memory, at real-time pace or as fast as possible.

    ``realtime``: frame k is yielded when it would have finished being captured,
    ``start + (k + 1) * 32 ms`` on the monotonic clock (deadline-based, so no drift), and that
    deadline is its ``t``. ``fast``: frames follow each other with only a yield to the loop in
    between, and ``t`` is the time each is yielded. ``tail_silence`` seconds of zeros follow the
    audio; the last frame is padded with zeros to a full frame.
    """

    def __init__(self, pcm16k: np.ndarray, pace: Pace = "realtime", tail_silence: float = 0.0):
        if pace not in ("realtime", "fast"):
            raise ValueError(f"pace must be 'realtime' or 'fast', not {pace!r}")
        data = np.asarray(pcm16k)
        if data.ndim != 1:
            raise ValueError(f"expected mono audio (1-D), got shape {data.shape}")
        pcm: PCM = to_int16(data) if data.dtype.kind == "f" else data.astype(np.int16, copy=False)
        tail = max(0, round(tail_silence * CAPTURE_RATE))
        total = len(pcm) + tail
        padded = math.ceil(total / FRAME_SAMPLES) * FRAME_SAMPLES
        self._pcm = np.concatenate((pcm, np.zeros(padded - len(pcm), dtype=np.int16)))
        self.pace: Pace = pace
        #: Seconds of source audio (without the tail silence).
        self.duration = len(pcm) / CAPTURE_RATE
        self.frame_count = padded // FRAME_SAMPLES
        self.on_error: list[Callable[[str], None]] = []
        self._anchor: float | None = None
        self._stopped = False

    async def start(self) -> None:
        if self._anchor is None:
            self._anchor = time.monotonic()
            self._stopped = False

    async def stop(self) -> None:
        self._stopped = True

    async def frames(self) -> AsyncIterator[AudioFrame]:
        await self.start()
        anchor = self._anchor if self._anchor is not None else time.monotonic()
        realtime = self.pace == "realtime"
        for k in range(self.frame_count):
            if self._stopped:
                return
            due = anchor + (k + 1) * FRAME_SECONDS
            if realtime:
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if self._stopped:
                    return
            else:
                await asyncio.sleep(0)
            yield AudioFrame(
                pcm=self._pcm[k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES].copy(),
                t=due if realtime else time.monotonic(),
                offset=k * FRAME_SECONDS,
            )


class WavSource(ArraySource):
    """Frames from an audio file (any rate or channel count: mixed to mono, resampled).

    The file is read when constructed, so a missing or broken file raises ``WavError`` at once.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        pace: Pace = "realtime",
        tail_silence: float = 0.0,
    ) -> None:
        pcm, rate = read_wav(path)
        self.path = os.fspath(path)
        #: The file's own sample rate.
        self.source_rate = rate
        super().__init__(resample(pcm, rate, CAPTURE_RATE), pace, tail_silence)
