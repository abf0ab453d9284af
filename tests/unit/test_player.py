"""Playback: sample-accurate position, turns, pause/clear/flush, events, and the virtual device."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import tracemalloc
import types
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import soxr

from assistant.audio import player as player_module
from assistant.audio.devices import has_output_device
from assistant.audio.player import (
    DevicePlayer,
    FakeClockDevice,
    PlaybackBuffer,
    Player,
    VirtualPlayer,
)
from assistant.audio.watchdog import CallbackWatchdog
from assistant.clock import ManualClock
from assistant.engines.base import EngineUnavailable

RATE = 48_000
BLOCK = 512
#: How long a wait may take before it is called a hang (never the thing a test asserts).
PATIENCE = 20.0


def tone(n: int, rate: int, freq: float = 440.0, amp: float = 0.4, phase: int = 0) -> np.ndarray:
    t = (np.arange(n) + phase) / rate
    return (np.sin(2 * np.pi * freq * t) * amp * 32767).astype(np.int16)


def const(n: int, value: int) -> np.ndarray:
    return np.full(n, value, dtype=np.int16)


class Events:
    def __init__(self, player: Any) -> None:
        self.started: list[tuple[int, float]] = []
        self.finished: list[tuple[int, float, bool]] = []
        self.threads: set[int] = set()
        player.on_playback_started.append(self._on_started)
        player.on_playback_finished.append(self._on_finished)

    def _on_started(self, turn: int, t: float) -> None:
        self.threads.add(threading.get_ident())
        self.started.append((turn, t))

    def _on_finished(self, turn: int, pos: float, interrupted: bool) -> None:
        self.threads.add(threading.get_ident())
        self.finished.append((turn, pos, interrupted))


async def fake_device(rate: int = RATE, blocksize: int = BLOCK) -> tuple[FakeClockDevice, Events]:
    dev = FakeClockDevice(rate, blocksize)
    await dev.start()
    return dev, Events(dev)


async def settle() -> None:
    """Let callbacks posted from the rendering side run on the loop."""
    for _ in range(3):
        await asyncio.sleep(0)


def test_implementations_satisfy_protocol() -> None:
    assert isinstance(FakeClockDevice(), Player)
    assert isinstance(VirtualPlayer(), Player)
    assert isinstance(DevicePlayer(), Player)


async def test_position_is_sample_accurate_across_resampling() -> None:
    dev, ev = await fake_device()
    src = tone(12_345, 24_000)
    bounds = [0, 1, 700, 3001, 3002, 9000, 12_345]  # odd chunk sizes
    for a, b in itertools.pairwise(bounds):
        assert dev.write(src[a:b], 24_000, turn_id=1)
    out = dev.render_blocks(10)
    assert dev.position == 10 * BLOCK / RATE
    dev.flush()
    out = np.concatenate([out, dev.render_blocks(60)])
    await settle()
    expected_samples = 2 * len(src)  # 24 kHz → 48 kHz
    assert ev.finished == [(1, expected_samples / RATE, False)]
    assert dev.position == expected_samples / RATE
    # Chunked streaming resampling is seamless: same as resampling the whole signal at once.
    ref = soxr.resample(src.astype(np.float32) / 32768, 24_000, RATE)
    assert len(ref) == expected_samples
    np.testing.assert_allclose(out[:expected_samples], ref, atol=2e-3)
    assert not out[expected_samples:].any()


async def test_pause_and_resume_hold_position_exactly() -> None:
    dev, _ = await fake_device()
    src = tone(RATE, RATE)
    dev.write(src, RATE, turn_id=3)
    before = dev.render_blocks(10)
    dev.pause()
    held = dev.render_blocks(7)
    assert not held.any()
    assert dev.position == 10 * BLOCK / RATE
    dev.resume()
    after = dev.render_blocks(5)
    assert dev.position == 15 * BLOCK / RATE
    played = np.concatenate([before, after])
    np.testing.assert_array_equal(played, src[: 15 * BLOCK].astype(np.float32) / 32768)
    assert dev.underruns == 0


async def test_clear_stops_within_one_block_and_reports_position() -> None:
    dev, ev = await fake_device()
    dev.write(tone(RATE, RATE), RATE, turn_id=1)
    dev.render_blocks(3)
    dev.clear()
    assert not dev.render_block().any()  # the very next block is silent
    assert dev.buffer.queued == 0  # and the rest of the response is gone
    await settle()
    assert ev.finished == [(1, 3 * BLOCK / RATE, True)]
    assert not dev.write(tone(1000, RATE), RATE, turn_id=1)  # later audio of that turn
    assert not dev.render_blocks(5).any()
    await settle()
    assert len(ev.finished) == 1
    assert dev.position == 3 * BLOCK / RATE
    # A newer turn plays normally afterwards.
    assert dev.write(const(BLOCK, 1000), RATE, turn_id=2)
    assert dev.render_block().any()


async def test_clear_before_playback_started_fires_nothing() -> None:
    dev, ev = await fake_device()
    dev.write(tone(4000, RATE), RATE, turn_id=1)
    dev.clear()
    assert not dev.render_blocks(3).any()
    await settle()
    assert ev.started == [] and ev.finished == []


async def test_stale_turn_ids_are_dropped() -> None:
    dev, ev = await fake_device()
    assert dev.write(const(2 * BLOCK, 1000), RATE, turn_id=5)
    assert not dev.write(const(2 * BLOCK, -1000), RATE, turn_id=4)
    assert dev.current_turn == 5
    out = dev.render_blocks(3)
    assert np.all(out[: 2 * BLOCK] == np.float32(1000 / 32768))
    assert not out[2 * BLOCK :].any()
    await settle()
    assert [turn for turn, _ in ev.started] == [5]


async def test_new_turn_drops_queued_audio_of_the_old_one() -> None:
    dev, ev = await fake_device()
    dev.write(const(RATE, 1000), RATE, turn_id=1)
    dev.render_blocks(2)
    t_switch = dev.now
    assert dev.position == 2 * BLOCK / RATE
    dev.write(const(BLOCK * 2, -2000), RATE, turn_id=2)
    assert dev.position == 0.0  # the new response has not been heard yet
    block = dev.render_block()
    assert np.all(block == np.float32(-2000 / 32768))
    assert dev.position == BLOCK / RATE
    dev.flush()
    dev.render_blocks(3)
    await settle()
    assert ev.started == [(1, 1000.0), (2, t_switch)]
    assert ev.finished == [(1, 2 * BLOCK / RATE, True), (2, 2 * BLOCK / RATE, False)]


@pytest.mark.parametrize("n", [1000, 1024])  # ends inside a block / exactly at a block edge
async def test_flush_fires_finished_once_after_the_last_sample(n: int) -> None:
    dev, ev = await fake_device()
    dev.write(const(n, 500), RATE, turn_id=7)
    dev.flush()
    full_blocks = n // BLOCK
    dev.render_blocks(full_blocks)
    await settle()
    assert ev.finished == []  # samples are still queued or the edge is not yet seen
    dev.render_blocks(1)
    await settle()
    assert ev.finished == [(7, n / RATE, False)]
    dev.render_blocks(10)
    await settle()
    assert len(ev.finished) == 1
    assert not dev.write(const(10, 1), RATE, turn_id=7)  # flushed: nothing more for it
    assert not dev.playing


async def test_underruns_count_only_while_a_response_is_being_written() -> None:
    dev, _ = await fake_device()
    dev.render_blocks(5)  # idle: no response
    dev.write(const(0, 0), RATE, turn_id=1)  # a response begun, no audio yet: only latency
    dev.render_blocks(2)
    assert dev.underruns == 0
    dev.write(const(BLOCK + 100, 800), RATE, turn_id=1)
    dev.render_block()
    assert dev.underruns == 0
    dev.render_blocks(3)  # partial block, then two empty blocks, response still open
    assert dev.underruns == 3
    dev.pause()
    dev.render_blocks(4)  # paused silence is not an underrun
    assert dev.underruns == 3
    dev.resume()
    dev.flush()
    dev.render_blocks(4)  # drained after flush: not an underrun
    assert dev.underruns == 3
    dev.write(const(BLOCK, 800), RATE, turn_id=2)
    dev.render_blocks(2)
    dev.clear()
    dev.render_blocks(4)
    assert dev.underruns == 4  # the one empty block of turn 2 before it was cleared


async def test_playback_started_reports_turn_and_device_time() -> None:
    dev, ev = await fake_device()
    dev.render_blocks(3)
    t_first = dev.now
    dev.write(tone(3000, 16_000), 16_000, turn_id=11)
    dev.render_blocks(2)
    await settle()
    assert ev.started == [(11, t_first)]
    assert t_first == 1000.0 + 3 * BLOCK / RATE
    assert ev.threads == {threading.get_ident()}  # delivered on the loop thread


def test_render_allocates_little() -> None:
    block = 4096  # a per-block temporary copy would be 16 KiB
    buf = PlaybackBuffer(RATE, on_started=lambda *a: None, on_finished=lambda *a: None)
    out = np.zeros(block, dtype=np.float32)
    buf.write(tone(60 * block, 24_000), 24_000, turn_id=1)  # about 120 blocks at 48 kHz
    buf.render(out)
    tracemalloc.start()
    try:
        for i in range(100):
            buf.render(out)
            if i == 40:
                buf.pause()
            elif i == 45:
                buf.resume()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert buf.last_filled == block  # audio really flowed through the measured calls
    assert peak < 8 * 1024, f"render() peak allocation {peak} bytes"


def test_ring_grows_without_losing_or_reordering_audio() -> None:
    buf = PlaybackBuffer(16_000, capacity_seconds=0.1)  # 1600 samples to start with
    src = np.arange(-6000, 6000, dtype=np.int16)
    out = np.zeros(256, dtype=np.float32)
    got: list[np.ndarray] = []
    buf.write(src[:1500], 16_000, turn_id=1)
    for _ in range(3):  # move the read index so the copy has to unwrap the ring
        buf.render(out)
        got.append(out.copy())
    buf.write(src[1500:], 16_000, turn_id=1)  # far more than the capacity
    buf.flush()
    while buf.playing or buf.queued > 0:
        buf.render(out)
        got.append(out[: buf.last_filled].copy())
    played = np.rint(np.concatenate(got) * 32768).astype(np.int16)
    np.testing.assert_array_equal(played, src)


def test_render_never_raises() -> None:
    buf = PlaybackBuffer(RATE)
    buf.write(const(100, 1), RATE, turn_id=1)
    bad = np.zeros(BLOCK, dtype=np.float32)
    bad.flags.writeable = False  # the copy into it fails
    buf.render(bad)  # must not raise
    assert buf.render_errors == 1
    out = np.ones(BLOCK, dtype=np.float32)
    buf.render(out)
    assert out[:100].all() and not out[100:].any()


class Lockstep:
    """The clock of a ``VirtualPlayer``'s render thread, moved by the test one block at a time.

    Installed before ``start()``, it stands in for the monotonic clock the realtime pace reads
    and for the waits between blocks: the thread renders a block, then parks until ``step`` lets
    its next block's time come. How many blocks played, and what the recording holds, is then
    exact however busy the machine is. A player that never waits on it (the fast pace) runs as
    if it were not there."""

    def __init__(self, player: VirtualPlayer, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 100.0
        self.blocks = 0
        self._cond = threading.Condition()
        self._due: float | None = None  # when the parked thread wants its next block
        clock = self

        class Stop(threading.Event):
            def wait(self, timeout: float | None = None) -> bool:
                with clock._cond:
                    clock._due = clock.now + (timeout or 0.0)
                    clock._cond.notify_all()
                    while clock.now < clock._due and not self.is_set():
                        clock._cond.wait(0.05)
                    clock._due = None
                    return self.is_set()

            def set(self) -> None:
                super().set()
                with clock._cond:
                    clock._cond.notify_all()

        monkeypatch.setattr(
            player_module, "time", types.SimpleNamespace(monotonic=self.monotonic, sleep=time.sleep)
        )
        player._stop = Stop()

    def monotonic(self) -> float:
        with self._cond:
            return self.now

    def _parked(self) -> bool:
        return self._due is not None and self._due > self.now

    async def step(self, blocks: int = 1) -> None:
        """Let the thread render ``blocks`` more blocks (and their events reach the loop)."""
        for _ in range(blocks):
            with self._cond:
                assert self._cond.wait_for(self._parked, PATIENCE), "the render thread is stuck"
                assert self._due is not None
                self.now = self._due
                self._cond.notify_all()
                assert self._cond.wait_for(self._parked, PATIENCE), "the render thread is stuck"
            self.blocks += 1
            await asyncio.sleep(0)  # what the block posted to the loop is dispatched

    async def until(self, condition: Callable[[], bool], limit: int = 1000) -> int:
        """Step until ``condition`` holds; returns the blocks it took."""
        before = self.blocks
        while not condition():
            assert self.blocks - before < limit, "the condition never came"
            await self.step()
        return self.blocks - before


async def test_virtual_player_realtime_records_right_length_at_right_pace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    player = VirtualPlayer(rate=24_000, blocksize=480, pace="realtime")
    clock = Lockstep(player, monkeypatch)
    ev = Events(player)
    await player.start()
    src = tone(7_000, 24_000)  # 0.29 s, ending inside a block
    for i in range(0, len(src), 1000):
        player.write(src[i : i + 1000], 24_000, turn_id=1)
    player.flush()
    # One block per block-time of the device's clock: 7000 samples take 15 blocks of 480.
    assert await clock.until(lambda: bool(ev.finished)) == -(-7_000 // 480)
    await clock.step(5)  # nothing more is recorded after the response
    await player.close()
    rec = player.recorded()
    np.testing.assert_array_equal(rec, src)
    assert ev.finished == [(1, len(src) / 24_000, False)]
    assert [turn for turn, _ in ev.started] == [1]
    assert ev.threads == {threading.get_ident()}


async def test_virtual_player_realtime_keeps_gaps_between_responses(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    player = VirtualPlayer(rate=16_000, blocksize=160, pace="realtime")
    clock = Lockstep(player, monkeypatch)
    ev = Events(player)
    await player.start()
    a, b = const(1600, 3000), const(1600, -3000)
    player.write(a, 16_000, turn_id=1)
    player.flush()
    # Ten blocks of audio; that it ended is seen on the next (empty) block.
    assert await clock.until(lambda: len(ev.finished) == 1) == 11
    await clock.step(15)  # 0.15 s more of the device's time with nothing to play
    player.write(b, 16_000, turn_id=2)
    player.flush()
    assert await clock.until(lambda: len(ev.finished) == 2) == 11
    await player.close()
    rec = player.recorded()
    gap = len(rec) - len(a) - len(b)
    assert gap == (1 + 15) * 160  # every block between them, as on the device's clock
    np.testing.assert_array_equal(rec[: len(a)], a)
    np.testing.assert_array_equal(rec[-len(b) :], b)
    assert not rec[len(a) : -len(b)].any()
    path = tmp_path / "out.wav"
    player.save_wav(str(path))
    from assistant.audio.wav import read_wav

    saved, rate = read_wav(path)
    assert rate == 16_000
    np.testing.assert_array_equal(saved, rec)


async def test_virtual_player_fast_plays_a_long_reply_quickly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    player = VirtualPlayer(rate=24_000, blocksize=480, pace="fast")
    Lockstep(player, monkeypatch)  # never stepped: the device's clock stands still throughout
    ev = Events(player)
    await player.start()
    done = asyncio.get_running_loop().create_future()
    player.on_playback_finished.append(lambda *a: done.set_result(None))
    src = tone(24_000 * 20, 24_000, freq=300)  # 20 s of speech-length audio
    for i in range(0, len(src), 4800):
        player.write(src[i : i + 4800], 24_000, turn_id=1)
        await asyncio.sleep(0)
    player.flush()
    # All 20 s played while no time passed on the device's clock: nothing waited for it.
    await asyncio.wait_for(done, PATIENCE)
    await player.close()
    np.testing.assert_array_equal(player.recorded(), src)
    assert ev.finished == [(1, 20.0, False)]
    assert player.underruns == 0


async def test_virtual_player_fast_stops_on_clear_and_resumes_after_pause() -> None:
    player = VirtualPlayer(rate=16_000, blocksize=160, pace="fast")
    ev = Events(player)
    await player.start()
    player.write(const(100, 100), 16_000, turn_id=1)  # less than a block: waits for more
    player.pause()
    player.write(const(16_000, 100), 16_000, turn_id=1)
    await asyncio.sleep(0.05)
    assert player.position == 0.0  # paused before the first block: nothing plays
    player.resume()
    for _ in range(200):
        if player.position >= 0.5:
            break
        await asyncio.sleep(0.001)
    player.clear()
    for _ in range(100):
        if ev.finished:
            break
        await asyncio.sleep(0.005)
    await player.close()
    assert len(ev.finished) == 1
    turn, pos, interrupted = ev.finished[0]
    assert (turn, interrupted) == (1, True)
    assert len(player.recorded()) == round(pos * 16_000)


class _FakeStream:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.started = self.closed = False
        self.latency = 0.02

    def start(self) -> None:
        self.started = True

    def close(self) -> None:
        self.closed = True


async def test_device_player_callback_and_device_loss() -> None:
    streams: list[_FakeStream] = []

    def factory(**kwargs: Any) -> _FakeStream:
        streams.append(_FakeStream(**kwargs))
        return streams[-1]

    player = DevicePlayer(samplerate=44_100, blocksize=256, stream_factory=factory)
    ev = Events(player)
    errors: list[str] = []
    player.on_error.append(errors.append)
    await player.start()
    (stream,) = streams
    assert stream.started
    assert stream.kwargs["samplerate"] == 44_100 and stream.kwargs["channels"] == 1
    assert player.rate == 44_100 and player.output_latency == 0.02
    player.write(tone(22_050, 22_050), 22_050, turn_id=1)
    outdata = np.zeros((256, 1), dtype=np.float32)
    for _ in range(4):
        stream.kwargs["callback"](outdata, 256, None, None)
    assert outdata.any()
    assert player.position == 4 * 256 / 44_100
    stream.kwargs["finished_callback"]()  # PortAudio stopped the stream on its own
    await settle()
    assert errors and "output device was lost" in errors[0]
    assert ev.finished == [(1, 4 * 256 / 44_100, True)]
    for _ in range(100):  # the dead stream is released in the background
        if stream.closed:
            break
        await asyncio.sleep(0.005)
    assert stream.closed
    await player.close()


@pytest.mark.skipif(has_output_device(), reason="this machine has an output device")
async def test_device_player_without_device_is_a_clear_error() -> None:
    player = DevicePlayer()
    with pytest.raises(EngineUnavailable, match="No audio output device"):
        await player.start()


class _StalledStream(_FakeStream):
    """A stream whose device dies silently and whose close then hangs in the backend."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.release = threading.Event()

    def close(self) -> None:
        self.release.wait(30)
        self.closed = True


async def test_device_player_notices_a_silent_death_and_never_hangs_on_close() -> None:
    clock = ManualClock()
    streams: list[_StalledStream] = []

    def factory(**kwargs: Any) -> _StalledStream:
        streams.append(_StalledStream(**kwargs))
        return streams[-1]

    player = DevicePlayer(
        samplerate=48_000, blocksize=480, stream_factory=factory, clock=clock, close_timeout=0.2
    )
    ev = Events(player)
    errors: list[str] = []
    player.on_error.append(errors.append)
    await player.start()
    (stream,) = streams
    player.write(tone(48_000, 48_000), 48_000, turn_id=1)
    outdata = np.zeros((480, 1), dtype=np.float32)
    for _ in range(100):  # a second of callbacks, then the device stops calling back
        stream.kwargs["callback"](outdata, 480, None, None)
        await clock.advance(0.01)
    assert not errors
    await clock.advance(2.5)
    await settle()
    assert errors and "output device was lost" in errors[0]
    assert ev.finished == [(1, 1.0, True)]  # the reply in progress ends, cut where it was
    await player.close()  # returns although the dead stream's close still hangs
    stream.release.set()


async def test_watchdog_ignores_a_stall_of_the_whole_process() -> None:
    clock = ManualClock()
    stalls: list[float] = []
    dog = CallbackWatchdog(clock, lambda: stalls.append(clock.now()), timeout=2.0)
    dog.start()
    clock._now += 5.0  # the loop itself was frozen (or the machine suspended)
    await clock.advance(0.6)
    assert not stalls
    dog.beat()
    await clock.advance(1.0)
    assert not stalls
    await clock.advance(2.5)
    assert len(stalls) == 1
    dog.stop()
