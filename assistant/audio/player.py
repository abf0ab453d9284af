"""Playback: a ring buffer the audio callback pulls from, and the devices that pull.

The loop thread writes synthesized speech (``write``); a real-time audio thread calls
``PlaybackBuffer.render`` once per block. Every response carries its turn id and only audio of
the newest turn is ever heard. Position, "started" and "finished" are measured where samples are
handed to the device, so they are sample-accurate; events reach listeners on the asyncio loop.

Implementations: ``DevicePlayer`` (a sounddevice output stream), ``VirtualPlayer`` (a clocked
thread that records what it plays, for headless runs), ``FakeClockDevice`` (rendered block by
block by the caller, for tests) and ``ClockedPlayer`` (rendered by an injected clock's timers,
for turn-taking tests in virtual time).

Taps (``BufferedPlayer.taps``) see every block as the device gets it, on the rendering thread,
with the monotonic time its first sample is played (the DAC time, from PortAudio's timestamps
on a real device): the far end of an echo canceller. A tap copies and returns; one that raises
is counted in ``tap_errors`` and the block still plays.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import soxr

from assistant.audio.devices import (
    CLOSE_TIMEOUT,
    call_listeners,
    close_off_loop,
    output_name,
    report_error,
    start_mono_stream,
    stream_defaults,
)
from assistant.audio.timing import DeviceDelay
from assistant.audio.watchdog import CallbackWatchdog
from assistant.audio.wav import to_int16, write_wav
from assistant.clock import SYSTEM_CLOCK, Clock, Timer
from assistant.types import PCM

log = logging.getLogger(__name__)

Float32 = npt.NDArray[np.float32]
StartedCallback = Callable[[int, float], None]
#: ``tap(block, rate, played_at)``: called on the rendering thread with each rendered block.
RenderTap = Callable[[Float32, int, float], None]
FinishedCallback = Callable[[int, float, bool], None]
Pace = Literal["realtime", "fast"]


@runtime_checkable
class Player(Protocol):
    """What the conversation needs from an audio output."""

    on_playback_started: list[StartedCallback]
    on_playback_finished: list[FinishedCallback]

    @property
    def underruns(self) -> int: ...

    @property
    def current_turn(self) -> int: ...

    @property
    def position(self) -> float: ...

    def write(self, pcm: PCM, rate: int, turn_id: int) -> bool: ...

    def flush(self) -> None: ...

    def clear(self) -> None: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


_EMPTY = np.zeros(0, dtype=np.float32)

#: What a player reports (``on_error``) when its device vanishes mid-stream.
OUTPUT_LOST = "Audio output stopped: the output device was lost or disconnected."


def _put(ring: Float32, at: int, x: Float32) -> None:
    """Copy ``x`` into ``ring`` starting at absolute sample index ``at``, wrapping around."""
    cap, n = len(ring), len(x)
    i = at % cap
    first = min(n, cap - i)
    ring[i : i + first] = x[:first]
    if first < n:
        ring[: n - first] = x[first:]


class PlaybackBuffer:
    """Turn-aware single-producer / single-consumer ring of float32 samples at the device rate.

    Producer: the loop thread (``write``/``flush``/``clear``/``pause``/``resume``). Consumer: the
    audio thread (``render``). Sample positions are absolute counters (``_w`` written, ``_r``
    read); the lock guards only their reads and updates, never a copy, so ``render`` waits at most
    for a few attribute assignments.

    Memory: the ring starts at ``capacity_seconds`` (120 s by default: longer than any spoken
    reply, so it normally never grows). If a write does not fit, the loop thread allocates a
    ring twice as big, copies the unplayed audio and swaps it in under the lock. The callback is
    never blocked by that copy: until the swap it keeps reading the old ring, whose unplayed part
    the producer no longer touches.

    Hooks ``on_started(turn, t)`` and ``on_finished(turn, position, interrupted)`` are called on
    the rendering thread (the players forward them to the loop); ``on_change()`` on the producer
    thread after each state change.
    """

    def __init__(
        self,
        rate: int,
        *,
        capacity_seconds: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        on_started: StartedCallback | None = None,
        on_finished: FinishedCallback | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"invalid sample rate {rate}")
        self.rate = int(rate)
        self._clock = clock
        self._on_started = on_started
        self._on_finished = on_finished
        self._on_change = on_change
        self._lock = threading.Lock()
        self._cap = max(1, int(capacity_seconds * rate))
        self._ring: Float32 = np.zeros(self._cap, dtype=np.float32)
        # Producer state (written by the loop thread under the lock).
        self._w = 0
        self._turn = -1
        self._base = 0  # absolute index where the current turn's audio begins
        self._flushed = False
        self._cleared = False
        self._paused = False
        self._resampler: Any = None
        self._resampler_rate = 0
        # Consumer state (written by the rendering thread).
        self._r = 0
        self._play_turn = -1
        self._pos = 0  # samples of _play_turn handed to the device
        self._started = False
        self._done = False
        self._underruns = 0
        #: Samples of response audio in the last rendered block (the rest was silence).
        self.last_filled = 0
        #: Blocks in which rendering failed unexpectedly (the block was played as silence).
        self.render_errors = 0

    # ----------------------------------------------------------------------- producer (loop)

    @property
    def current_turn(self) -> int:
        """The newest turn id written (kept after it finishes, so older ids stay stale)."""
        return self._turn

    @property
    def underruns(self) -> int:
        return self._underruns

    @property
    def position(self) -> float:
        """Seconds of the current turn handed to the device (0 until its first block)."""
        with self._lock:
            if self._play_turn != self._turn:
                return 0.0
            return self._pos / self.rate

    @property
    def playing(self) -> bool:
        """A response has started and has neither finished nor been cleared."""
        with self._lock:
            return self._play_turn == self._turn and self._started and not self._done

    @property
    def queued(self) -> float:
        """Seconds of audio written but not yet rendered (for the current turn)."""
        with self._lock:
            return (self._w - max(self._r, self._base)) / self.rate

    def write(self, pcm: PCM, rate: int, turn_id: int) -> bool:
        """Queue int16 mono audio of ``turn_id``; False if the turn is stale, cleared or flushed."""
        if turn_id < self._turn:
            return False
        if turn_id == self._turn and (self._cleared or self._flushed):
            return False
        if turn_id > self._turn:
            self._begin_turn(turn_id)
        x = np.asarray(pcm, dtype=np.int16).reshape(-1).astype(np.float32) * (1.0 / 32768.0)
        self._append(self._resample(x, int(rate)))
        self._changed()
        return True

    def flush(self) -> None:
        """The current turn has no more audio; ``on_finished`` follows when it has drained."""
        if self._turn < 0 or self._flushed or self._cleared:
            return
        if self._resampler is not None:
            self._append(self._resampler.resample_chunk(_EMPTY, last=True))
            self._resampler = None
        with self._lock:
            self._flushed = True
        self._changed()

    def clear(self) -> None:
        """Stop the current turn within one block; its later writes are dropped."""
        if self._turn < 0 or self._cleared:
            return
        self._resampler = None
        with self._lock:
            self._cleared = True
            self._paused = False
        self._changed()

    def pause(self) -> None:
        with self._lock:
            self._paused = True

    def resume(self) -> None:
        with self._lock:
            self._paused = False
        self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    def _begin_turn(self, turn_id: int) -> None:
        self._resampler = None
        with self._lock:
            self._turn = turn_id
            self._base = self._w  # everything before is stale; render skips it
            self._flushed = False
            self._cleared = False
            self._paused = False  # a pause belongs to the response it interrupted

    def _resample(self, x: Float32, rate: int) -> Float32:
        if rate == self.rate and self._resampler is None:
            return x
        if self._resampler is not None and self._resampler_rate != rate:
            # The rate changed within a turn: finish the old stream so no samples are lost.
            self._append(self._resampler.resample_chunk(_EMPTY, last=True))
            self._resampler = None
            if rate == self.rate:
                return x
        if self._resampler is None:
            self._resampler = soxr.ResampleStream(rate, self.rate, 1, dtype="float32")
            self._resampler_rate = rate
        out: Float32 = self._resampler.resample_chunk(x)
        return out

    def _append(self, x: Float32) -> None:
        n = len(x)
        if n == 0:
            return
        with self._lock:
            r, w, cap, ring = self._r, self._w, self._cap, self._ring
        if (w - r) + n > cap:
            ring, cap = self._grow(r, w, (w - r) + n)
        _put(ring, w, x)
        with self._lock:
            self._w = w + n

    def _grow(self, r: int, w: int, need: int) -> tuple[Float32, int]:
        old, old_cap = self._ring, self._cap
        cap = max(2 * old_cap, need + need // 2)
        ring = np.zeros(cap, dtype=np.float32)
        # Copy the unplayed samples [r, w) to the same absolute positions in the new ring.
        i, n = r % old_cap, w - r
        first = min(n, old_cap - i)
        _put(ring, r, old[i : i + first])
        _put(ring, r + first, old[: n - first])
        with self._lock:
            self._ring, self._cap = ring, cap
        log.debug("playback ring grown to %.0f s", cap / self.rate)
        return ring, cap

    # ------------------------------------------------------------------- consumer (audio)

    def render(self, out: Float32) -> None:
        """Fill ``out`` (float32, mono) with the next block. Real-time safe; never raises."""
        try:
            self._render(out)
        except Exception:
            self.render_errors += 1
            self.last_filled = 0
            try:
                out.fill(0.0)
            except Exception:
                pass

    def _render(self, out: Float32) -> None:
        n = out.shape[0]
        now = self._clock()
        with self._lock:
            turn, base, w, r = self._turn, self._base, self._w, self._r
            flushed, cleared, paused = self._flushed, self._cleared, self._paused
            ring, cap = self._ring, self._cap
        filled = 0
        if turn != self._play_turn:
            # A newer response replaces the one playing (which ends interrupted, if it was heard).
            if self._started and not self._done:
                self._emit_finished(self._play_turn, self._pos, True)
            self._play_turn, self._pos, self._started, self._done = turn, 0, False, False
            if r < base:
                r = base
        pos = self._pos
        if cleared:
            if self._started and not self._done:
                self._emit_finished(turn, pos, True)
            self._done = True
            r = w
            out.fill(0.0)
        elif paused or self._done or turn < 0:
            out.fill(0.0)
        else:
            avail = w - r
            k = n if avail >= n else avail
            if k > 0:
                i = r % cap
                first = k if k <= cap - i else cap - i
                out[:first] = ring[i : i + first]
                if first < k:
                    out[first:k] = ring[: k - first]
                r += k
                pos += k
                filled = k
                if not self._started:
                    self._started = True
                    self._emit_started(turn, now)
            if k < n:
                out[k:] = 0.0
                if flushed:
                    self._done = True
                    self._emit_finished(turn, pos, False)
                elif self._started:
                    self._underruns += 1
        with self._lock:
            self._r = r
            self._pos = pos
        self.last_filled = filled

    def _emit_started(self, turn: int, t: float) -> None:
        if self._on_started is not None:
            self._on_started(turn, t)

    def _emit_finished(self, turn: int, pos: int, interrupted: bool) -> None:
        if self._on_finished is not None:
            self._on_finished(turn, pos / self.rate, interrupted)

    @property
    def in_progress(self) -> bool:
        """Consumer view: the turn being rendered has started and not finished."""
        return self._started and not self._done

    def has_work(self, min_samples: int) -> bool:
        """Would a render now make progress? (For clocks that only render when needed.)"""
        with self._lock:
            turn, w, r, base = self._turn, self._w, self._r, self._base
            flushed, cleared, paused = self._flushed, self._cleared, self._paused
        if turn != self._play_turn:
            return True
        if self._done or turn < 0:
            return False
        if cleared:
            return True
        return not paused and (w - max(r, base) >= min_samples or flushed)

    def abandon(self) -> None:
        """The consumer is gone for good (device closed or lost): end a heard response now.

        Call only once nothing renders any more.
        """
        if self._play_turn == self._turn and self._started and not self._done:
            self._done = True
            self._emit_finished(self._play_turn, self._pos, True)


class BufferedPlayer:
    """The ``Player`` API over a ``PlaybackBuffer``; subclasses decide who calls ``render``.

    Events from the rendering thread are forwarded to the asyncio loop captured by ``start()``
    with ``call_soon_threadsafe`` (they happen a few times per response, never per block).
    """

    def __init__(self, rate: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.on_playback_started: list[StartedCallback] = []
        self.on_playback_finished: list[FinishedCallback] = []
        self.on_error: list[Callable[[str], None]] = []
        #: Seconds between a sample entering the device and leaving the speaker (if known).
        self.output_latency = 0.0
        #: Called with every rendered block (see the module docstring).
        self.taps: list[RenderTap] = []
        #: Tap calls that raised.
        self.tap_errors = 0
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._buf = self._make_buffer(rate)

    def _make_buffer(self, rate: int) -> PlaybackBuffer:
        return PlaybackBuffer(
            rate,
            clock=self._clock,
            on_started=self._started_from_audio,
            on_finished=self._finished_from_audio,
            on_change=self._on_buffer_change,
        )

    def _on_buffer_change(self) -> None:
        """Producer-side hook: something was written, flushed, cleared or resumed."""

    def _tap(self, block: Float32, played_at: float) -> None:
        """Rendering thread: hand the block the device just got to the taps."""
        for tap in self.taps:
            try:
                tap(block, self._buf.rate, played_at)
            except Exception:
                self.tap_errors += 1

    # Player API, delegated.
    @property
    def buffer(self) -> PlaybackBuffer:
        return self._buf

    @property
    def rate(self) -> int:
        """The device rate: what ``render`` produces and ``position`` counts in."""
        return self._buf.rate

    @property
    def underruns(self) -> int:
        return self._buf.underruns

    @property
    def current_turn(self) -> int:
        return self._buf.current_turn

    @property
    def position(self) -> float:
        return self._buf.position

    @property
    def playing(self) -> bool:
        return self._buf.playing

    def write(self, pcm: PCM, rate: int, turn_id: int) -> bool:
        return self._buf.write(pcm, rate, turn_id)

    def flush(self) -> None:
        self._buf.flush()

    def clear(self) -> None:
        self._buf.clear()

    def pause(self) -> None:
        self._buf.pause()

    def resume(self) -> None:
        self._buf.resume()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    async def close(self) -> None:
        """Subclasses stop rendering first; then a response still in progress ends interrupted."""
        self._buf.abandon()

    # Event forwarding: audio thread → loop thread.
    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None:  # not started: deliver on the calling thread
            fn(*args)
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # loop closed during shutdown
            pass

    def _started_from_audio(self, turn: int, t: float) -> None:
        self._post(self._dispatch_started, turn, t)

    def _finished_from_audio(self, turn: int, pos: float, interrupted: bool) -> None:
        self._post(self._dispatch_finished, turn, pos, interrupted)

    def _report_error(self, message: str) -> None:
        self._post(self._dispatch_error, message)

    def _dispatch_started(self, turn: int, t: float) -> None:
        call_listeners(self.on_playback_started, "playback_started", turn, t)

    def _dispatch_finished(self, turn: int, pos: float, interrupted: bool) -> None:
        call_listeners(self.on_playback_finished, "playback_finished", turn, pos, interrupted)

    def _dispatch_error(self, message: str) -> None:
        report_error(self.on_error, message)


# ------------------------------------------------------------------------------ real device


#: The output's buffer (seconds). PortAudio's "low" (about 20 ms through the pulse and pipewire
#: ALSA plugins most Linux desktops play through) runs dry each time a busy machine holds up the
#: Python callback for a moment: an audible gap, and each one can move the delay at which the
#: speaker is heard again by the microphone (which echo cancellation then has to learn anew).
OUTPUT_LATENCY = 0.06


class DevicePlayer(BufferedPlayer):
    """Plays through a sounddevice ``OutputStream`` (float32 mono) whose callback renders.

    ``samplerate`` defaults to the device's own default rate, so PortAudio never resamples.
    ``stream_factory`` replaces ``sounddevice.OutputStream`` (same keyword arguments), which
    lets the callback path run without a sound card. A device that stops calling back without
    a word is noticed by a watchdog on ``clock`` and reported like any other loss; closing a
    dead stream never blocks the loop for more than ``close_timeout`` seconds.
    """

    def __init__(
        self,
        device: int | str | None = None,
        blocksize: int = 512,
        latency: str | float = OUTPUT_LATENCY,
        *,
        samplerate: int | None = None,
        stream_factory: Callable[..., Any] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        close_timeout: float = CLOSE_TIMEOUT,
    ) -> None:
        super().__init__(samplerate or 48_000)
        self.device = device
        self.blocksize = blocksize
        self.latency = latency
        #: Blocks PortAudio reported as underflowing at the device (late callbacks).
        self.device_underflows = 0
        self._samplerate = samplerate
        self._factory = stream_factory
        self._stream: Any = None
        self._closing = False
        self._close_timeout = close_timeout
        self._watchdog = CallbackWatchdog(clock, self._lost)
        #: Closing a lost stream, in the background (kept referenced until it ends).
        self._closer: asyncio.Future[bool] | None = None
        #: How far ahead of its callback each block is played (PortAudio's DAC time).
        self.delay = DeviceDelay("output")
        #: The output device's name once started ("" when it cannot be told).
        self.device_name = ""

    async def start(self) -> None:
        if self._stream is not None:
            return
        await super().start()
        factory, rate = stream_defaults("output", self.device, self._factory, self._samplerate)
        if rate != self._buf.rate:
            self._buf = self._make_buffer(rate)
        self._closing = False
        stream, self.output_latency = start_mono_stream(
            "output",
            self.device,
            factory,
            samplerate=rate,
            blocksize=self.blocksize,
            latency=self.latency,
            callback=self._callback,
            finished_callback=self._stream_finished,
        )
        self._stream = stream
        self.delay = DeviceDelay("output", self.output_latency)
        name = getattr(stream, "device_name", None)
        self.device_name = name if isinstance(name, str) else output_name(self.device)
        self._watchdog.start()

    def _callback(self, outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        self._watchdog.beat()
        if status and getattr(status, "output_underflow", False):
            self.device_underflows += 1
        block = outdata[:, 0]
        self._buf.render(block)
        if self.taps:
            self._tap(block, time.monotonic() + self.delay.update(time_info))

    def _stream_finished(self) -> None:
        # PortAudio's thread: the stream stopped. Unexpected unless close() asked for it.
        if not self._closing:
            self._post(self._lost)

    def _lost(self) -> None:
        if self._closing or self._stream is None:
            return
        self._watchdog.stop()
        dead, self._stream = self._stream, None
        self._closer = asyncio.ensure_future(close_off_loop(dead, self._close_timeout))
        self._buf.abandon()
        self._dispatch_error(OUTPUT_LOST)

    async def close(self) -> None:
        self._closing = True
        self._watchdog.stop()
        stream, self._stream = self._stream, None
        if stream is not None:
            await close_off_loop(stream, self._close_timeout)
        await super().close()


# ----------------------------------------------------------------------------- virtual device


class _Recorder:
    """A growable int16 buffer (amortised doubling)."""

    def __init__(self, initial: int) -> None:
        self._data = np.zeros(max(1, initial), dtype=np.int16)
        self._n = 0
        self._lock = threading.Lock()

    def append(self, x: Float32) -> None:
        self._append_int16(to_int16(x))

    def append_silence(self, n: int) -> None:
        self._append_int16(np.zeros(n, dtype=np.int16))

    def _append_int16(self, x: PCM) -> None:
        with self._lock:
            end = self._n + len(x)
            if end > len(self._data):
                grown = np.zeros(max(end, 2 * len(self._data)), dtype=np.int16)
                grown[: self._n] = self._data[: self._n]
                self._data = grown
            self._data[self._n : end] = x
            self._n = end

    def snapshot(self) -> PCM:
        with self._lock:
            return self._data[: self._n].copy()


class VirtualPlayer(BufferedPlayer):
    """A virtual output device for headless runs: a thread renders and records.

    ``pace="realtime"``: a block every ``blocksize / rate`` seconds on a deadline clock (no drift;
    after a stall of over a second the clock re-anchors instead of bursting). ``pace="fast"``:
    blocks are rendered as fast as there is audio to play, so a long reply plays in
    milliseconds; no underruns occur because it waits for full blocks (or the flush).

    Recording: the audio of every response, from its first sample to its last (or to the block
    where it was cleared). In realtime mode the silences inside a response (underruns, pauses) and
    between responses are recorded too, so the recording keeps the real timing; silence before the
    first response and after the last one is not. In fast mode only the responses' audio is kept,
    back to back. ``record=False`` keeps nothing (a long session whose audio nobody needs).
    """

    def __init__(
        self,
        rate: int = 24_000,
        blocksize: int = 480,
        pace: Pace = "realtime",
        *,
        record: bool = True,
    ) -> None:
        if pace not in ("realtime", "fast"):
            raise ValueError(f"pace must be 'realtime' or 'fast', not {pace!r}")
        super().__init__(rate)
        self.blocksize = blocksize
        self.pace: Pace = pace
        self.record = record
        self._rec = _Recorder(rate * 10)
        self._recorded_any = False
        self._gap = 0  # silent samples since the last response, recorded if another one comes
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _on_buffer_change(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        if self._thread is not None:
            return
        await super().start()
        self._stop.clear()
        target = self._run_realtime if self.pace == "realtime" else self._run_fast
        self._thread = threading.Thread(target=target, name="virtual-audio-out", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            self._wake.set()
            await asyncio.to_thread(thread.join, 2.0)
        await super().close()

    def recorded(self) -> PCM:
        """Everything recorded so far, int16 mono at ``rate``."""
        return self._rec.snapshot()

    def save_wav(self, path: str) -> None:
        write_wav(path, self.recorded(), self.rate)

    def _run_realtime(self) -> None:
        out = np.zeros(self.blocksize, dtype=np.float32)
        period = self.blocksize / self.rate
        anchor = time.monotonic()
        k = 0
        while not self._stop.is_set():
            self._render_and_record(out)
            k += 1
            delay = anchor + k * period - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            elif delay < -1.0:
                anchor, k = time.monotonic(), 0

    def _run_fast(self) -> None:
        out = np.zeros(self.blocksize, dtype=np.float32)
        while not self._stop.is_set():
            self._wake.clear()
            if self._buf.has_work(self.blocksize):
                self._render_and_record(out)
                time.sleep(0)  # let the loop thread run between blocks
            else:
                self._wake.wait(0.05)

    def _render_and_record(self, out: Float32) -> None:
        buf = self._buf
        buf.render(out)
        if self.taps and self.pace == "realtime":  # a fast device plays nothing anyone hears
            self._tap(out, time.monotonic())
        if not self.record:
            return
        filled, active, n = buf.last_filled, buf.in_progress, len(out)
        if self.pace == "fast":
            if filled:
                self._rec.append(out[:filled])
            return
        if filled == 0 and not active:
            if self._recorded_any:
                self._gap += n
            return
        if self._gap:
            self._rec.append_silence(self._gap)
            self._gap = 0
        if active:
            self._rec.append(out)
        else:  # the response ended inside this block: the rest is not part of it
            self._rec.append(out[:filled])
            self._gap = n - filled
        self._recorded_any = True


# ------------------------------------------------------------------------------- test device


class FakeClockDevice(BufferedPlayer):
    """A device the caller clocks by hand: each ``render_block`` is one audio callback.

    Its clock starts at ``t0`` and advances by exactly ``blocksize / rate`` per block, so
    ``playback_started`` times are deterministic. Events reach listeners on the loop after
    ``start()`` (let the loop run, e.g. ``await asyncio.sleep(0)``), synchronously before it.
    """

    def __init__(self, rate: int = 48_000, blocksize: int = 512, t0: float = 1000.0) -> None:
        self.blocksize = blocksize
        self.blocks = 0
        self._t0 = t0
        super().__init__(rate, clock=self._now)
        self._out = np.zeros(blocksize, dtype=np.float32)

    def _now(self) -> float:
        return self._t0 + self.blocks * self.blocksize / self.rate

    @property
    def now(self) -> float:
        """The fake time of the next block."""
        return self._now()

    def render_block(self) -> Float32:
        """Run one callback; returns a copy of what the device got."""
        self._buf.render(self._out)
        if self.taps:
            self._tap(self._out, self._now())
        self.blocks += 1
        return self._out.copy()

    def render_blocks(self, n: int) -> Float32:
        if n <= 0:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate([self.render_block() for _ in range(n)])

    def render_seconds(self, seconds: float) -> Float32:
        return self.render_blocks(math.ceil(seconds * self.rate / self.blocksize))


class ClockedPlayer(BufferedPlayer):
    """A virtual device rendered by an injected ``Clock``'s timers, one block per period.

    On a ``ManualClock`` playback runs in virtual time: ``playback_started`` times come from
    that clock, and the recording holds every rendered block (silence included) from
    ``start()`` on, so sample ``i`` of ``recorded()`` was played at ``started_at + i / rate``.
    """

    def __init__(self, clock: Clock, rate: int = 24_000, blocksize: int = 480) -> None:
        super().__init__(rate, clock=clock.now)
        self.blocksize = blocksize
        self.started_at = 0.0
        self._ticks = clock
        self._timer: Timer | None = None
        self._out = np.zeros(blocksize, dtype=np.float32)
        self._rec = _Recorder(rate * 10)

    async def start(self) -> None:
        if self._timer is not None:
            return
        await super().start()
        self.started_at = self._ticks.now()
        self._schedule()

    def _schedule(self) -> None:
        self._timer = self._ticks.call_later(self.blocksize / self.rate, self._tick)

    def _tick(self) -> None:
        self._buf.render(self._out)
        if self.taps:
            self._tap(self._out, self._ticks.now())
        self._rec.append(self._out)
        self._schedule()

    async def close(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        await super().close()

    def recorded(self) -> PCM:
        """Everything rendered since ``start()``, int16 mono at ``rate``."""
        return self._rec.snapshot()
