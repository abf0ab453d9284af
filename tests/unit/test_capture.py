"""Capture: microphone ring and frame cutting (no device), WAV/array sources, WAV helpers."""

from __future__ import annotations

import asyncio
import itertools
import os
import struct
import subprocess
import sys
import threading
import time
import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import soxr

from assistant.audio import capture as capture_module
from assistant.audio.capture import (
    ArraySource,
    AudioSource,
    LookingSource,
    MicrophoneCapture,
    WavError,
    WavSource,
)
from assistant.audio.devices import has_input_device, list_devices
from assistant.audio.frames import CAPTURE_RATE, FRAME_SAMPLES, AudioFrame
from assistant.audio.wav import read_wav, resample, write_wav
from assistant.clock import ManualClock
from assistant.engines.base import EngineUnavailable
from assistant.types import AudioLook

FRAME_S = FRAME_SAMPLES / CAPTURE_RATE
#: How long a wait may take before it is called a hang (never the thing a test asserts).
PATIENCE = 20.0


def sine(n: int, rate: int, freq: float, amp: float = 0.5) -> np.ndarray:
    return (np.sin(2 * np.pi * freq * np.arange(n) / rate) * amp).astype(np.float32)


class FakeInputStream:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.started = self.closed = False

    def start(self) -> None:
        self.started = True

    def close(self) -> None:
        self.closed = True

    def feed(self, block: np.ndarray, status: Any = None) -> None:
        """What PortAudio does: call the callback with a (frames, channels) block."""
        data = block.reshape(-1, 1).astype(np.float32)
        self.kwargs["callback"](data, len(data), None, status)


async def open_mic(rate: int, **kwargs: Any) -> tuple[MicrophoneCapture, FakeInputStream]:
    streams: list[FakeInputStream] = []

    def factory(**kw: Any) -> FakeInputStream:
        streams.append(FakeInputStream(**kw))
        return streams[-1]

    mic = MicrophoneCapture(samplerate=rate, stream_factory=factory, **kwargs)
    await mic.start()
    assert streams[0].started
    return mic, streams[0]


async def collect(source: Any, limit: int | None = None) -> list[AudioFrame]:
    out: list[AudioFrame] = []
    async for frame in source.frames():
        out.append(frame)
        if limit is not None and len(out) >= limit:
            break
    return out


async def listen(
    rate: int, **kwargs: Any
) -> tuple[MicrophoneCapture, FakeInputStream, list[str], asyncio.Task[list[AudioFrame]]]:
    """A started microphone, its stream, the errors it reports and a consumer collecting its
    frames until they end."""
    mic, stream = await open_mic(rate, **kwargs)
    errors: list[str] = []
    mic.on_error.append(errors.append)
    return mic, stream, errors, asyncio.create_task(collect(mic))


def test_sources_satisfy_protocol() -> None:
    assert isinstance(MicrophoneCapture(), AudioSource)
    assert isinstance(ArraySource(np.zeros(10, np.int16)), AudioSource)


# ---------------------------------------------------------------------------------- microphone


async def test_microphone_resamples_and_cuts_exact_frames_from_a_capture_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rate = 48_000
    # The capture clock: the thread below sets it to the moment each block was captured.
    captured = [0.0]
    monkeypatch.setattr(
        capture_module, "time", types.SimpleNamespace(monotonic=lambda: captured[0])
    )
    mic, stream = await open_mic(rate, ring_seconds=2.0)  # room for all of it: no drops
    assert stream.kwargs["samplerate"] == rate and stream.kwargs["channels"] == 1
    assert stream.kwargs["blocksize"] == 1536  # one 32 ms frame at 48 kHz
    signal = sine(rate // 2, rate, 440.0)  # 0.5 s
    sizes = [480, 1000, 37, 1536, 2048]
    start = 500.0

    def capture_thread() -> None:  # calls back from another thread, in uneven blocks
        i = k = 0
        while i < len(signal):
            n = min(sizes[k % len(sizes)], len(signal) - i)  # the last block is shorter
            captured[0] = start + (i + n) / rate  # this block's last sample was just captured
            stream.feed(signal[i : i + n])
            i, k = i + n, k + 1

    thread = threading.Thread(target=capture_thread)
    thread.start()
    frames = await asyncio.wait_for(collect(mic, limit=14), PATIENCE)
    thread.join()
    await mic.stop()
    assert stream.closed
    assert all(f.pcm.dtype == np.int16 and f.pcm.shape == (FRAME_SAMPLES,) for f in frames)
    assert [f.offset for f in frames] == [k * FRAME_S for k in range(14)]
    # Frame times follow the capture clock, exactly one frame apart whatever the blocks the
    # callbacks brought, and inside the span the audio was captured in.
    for k, frame in enumerate(frames):
        assert frame.t - frames[0].t == pytest.approx(k * FRAME_S, abs=1e-6), k
    assert start < frames[0].t and frames[-1].t <= start + len(signal) / rate
    got = np.concatenate([f.pcm for f in frames]).astype(np.float32) / 32768
    ref = soxr.resample(signal, rate, CAPTURE_RATE)[: len(got)]
    np.testing.assert_allclose(got, ref, atol=2e-3)
    assert mic.overflows == 0 and mic.callback_errors == 0


async def test_microphone_frame_time_is_when_its_last_sample_was_captured() -> None:
    mic, stream = await open_mic(CAPTURE_RATE)
    before = time.monotonic()
    stream.feed(np.zeros(2 * FRAME_SAMPLES, dtype=np.float32))  # one callback, two frames
    after = time.monotonic()
    first, second = await asyncio.wait_for(collect(mic, limit=2), PATIENCE)
    assert before <= second.t <= after  # its last sample arrived with that callback
    assert first.t == pytest.approx(second.t - FRAME_S, abs=1e-9)
    assert (first.offset, second.offset) == (0.0, FRAME_S)
    await mic.stop()


async def test_microphone_wakes_the_loop_at_most_once_per_frame() -> None:
    mic, stream = await open_mic(CAPTURE_RATE)
    loop = asyncio.get_running_loop()
    wakes = 0

    class CountingLoop:
        def call_soon_threadsafe(self, *args: Any) -> Any:
            nonlocal wakes
            wakes += 1
            return loop.call_soon_threadsafe(*args)

    mic._loop = CountingLoop()  # type: ignore[assignment]
    consumer = asyncio.create_task(collect(mic, limit=8))
    await asyncio.sleep(0)  # the consumer is now waiting
    quarter = FRAME_SAMPLES // 4
    for _ in range(8 * 4):  # eight frames in quarter-frame blocks
        stream.feed(np.full(quarter, 0.25, dtype=np.float32))
        await asyncio.sleep(0)
    frames = await asyncio.wait_for(consumer, PATIENCE)
    assert len(frames) == 8
    assert 1 <= wakes <= 8
    # At 16 kHz no resampling happens: samples come through exactly.
    assert all(np.all(f.pcm == 8192) for f in frames)
    await mic.stop()


async def test_microphone_counts_overflows_when_the_loop_falls_behind() -> None:
    mic, stream = await open_mic(CAPTURE_RATE, ring_seconds=0.1)  # ring: 2048 samples
    for _ in range(10):  # nobody reads: 4 blocks fit, 6 are dropped
        stream.feed(np.zeros(512, dtype=np.float32))

    class Status:
        input_overflow = True

        def __bool__(self) -> bool:
            return True

    mic.callback_errors = 0
    frames = await asyncio.wait_for(collect(mic, limit=4), PATIENCE)
    stream.feed(np.zeros(512, dtype=np.float32), status=Status())
    assert len(frames) == 4
    assert mic.overflows == 7
    await mic.stop()


async def test_microphone_loss_is_reported_and_ends_the_frames() -> None:
    _, stream, errors, consumer = await listen(CAPTURE_RATE)
    stream.feed(np.zeros(FRAME_SAMPLES * 2, dtype=np.float32))
    await asyncio.sleep(0.01)
    stream.kwargs["finished_callback"]()  # the device went away
    frames = await asyncio.wait_for(consumer, PATIENCE)
    assert len(frames) == 2
    assert errors == ["Audio input stopped: the microphone was lost or disconnected."]


async def test_stopping_the_microphone_ends_a_waiting_consumer() -> None:
    mic, _ = await open_mic(44_100)
    consumer = asyncio.create_task(collect(mic))
    await asyncio.sleep(0.01)
    await mic.stop()
    assert await asyncio.wait_for(consumer, PATIENCE) == []


@pytest.mark.skipif(has_input_device(), reason="this machine has an input device")
async def test_microphone_without_device_is_a_clear_error() -> None:
    with pytest.raises(EngineUnavailable, match="No audio input device"):
        await MicrophoneCapture().start()


def test_device_listing_is_a_list_even_without_devices() -> None:
    devices = list_devices()
    assert isinstance(devices, list)
    assert has_input_device() == any(d.inputs > 0 for d in devices)


# --------------------------------------------------------------------------- files and arrays


def write_file(path: Path, data: np.ndarray, rate: int, subtype: str = "PCM_16") -> Path:
    sf.write(str(path), data, rate, subtype=subtype)
    return path


async def test_wav_source_fast_frames_offsets_and_padding(tmp_path: Path) -> None:
    pcm = (np.arange(16_000) % 2000 - 1000).astype(np.int16)  # 1 s at 16 kHz
    path = write_file(tmp_path / "a.wav", pcm, 16_000)
    src = WavSource(path, pace="fast", tail_silence=0.5)
    assert src.duration == 1.0 and src.source_rate == 16_000
    frames: list[AudioFrame] = []
    iterator = aiter(src.frames())
    while True:
        # Fast: each frame is there after a yield to the loop, never after a timed wait.
        step = asyncio.ensure_future(anext(iterator))
        for _ in range(3):
            await asyncio.sleep(0)
        assert step.done(), f"frame {len(frames)} waited for time to pass"
        try:
            frames.append(step.result())
        except StopAsyncIteration:
            break
    assert len(frames) == -(-24_000 // FRAME_SAMPLES) == 47
    assert [f.offset for f in frames] == [k * FRAME_S for k in range(47)]
    audio = np.concatenate([f.pcm for f in frames])
    np.testing.assert_array_equal(audio[:16_000], pcm)
    assert not audio[16_000:].any()
    assert all(a.t <= b.t for a, b in itertools.pairwise(frames))


async def test_wav_source_realtime_pace_is_anchored_at_start(tmp_path: Path) -> None:
    path = write_file(tmp_path / "b.wav", np.zeros(10 * FRAME_SAMPLES, np.int16), 16_000)
    src = WavSource(path)  # realtime
    before = time.monotonic()
    await src.start()
    after = time.monotonic()
    received: list[float] = []
    frames: list[AudioFrame] = []
    async for frame in src.frames():
        received.append(time.monotonic())
        frames.append(frame)
    assert len(frames) == 10
    anchor = frames[0].t - FRAME_S
    assert before <= anchor <= after  # anchored when started, not when first read
    for k, (frame, got) in enumerate(zip(frames, received, strict=True)):
        assert frame.t == pytest.approx(anchor + (k + 1) * FRAME_S, abs=1e-9)
        assert got >= frame.t - 1e-3  # never delivered before it would have been captured


async def test_wav_source_mixes_and_resamples_44k_stereo(tmp_path: Path) -> None:
    rate = 44_100
    left, right = sine(rate, rate, 440.0, 0.4), sine(rate, rate, 1000.0, 0.4)
    path = write_file(tmp_path / "stereo.wav", np.stack([left, right], axis=1), rate)
    src = WavSource(path, pace="fast")
    assert src.duration == pytest.approx(1.0, abs=1e-4)
    assert src.source_rate == rate
    audio = np.concatenate([f.pcm for f in await collect(src)]).astype(np.float32) / 32768
    spectrum = np.abs(np.fft.rfft(audio[:16_000]))
    freqs = np.fft.rfftfreq(16_000, 1 / CAPTURE_RATE)
    top2 = sorted(freqs[np.argsort(spectrum)[-2:]])
    assert top2 == pytest.approx([440.0, 1000.0], abs=2.0)
    # Each channel is mixed in at half its level: amplitude 0.2.
    amp_440 = spectrum[np.argmin(np.abs(freqs - 440))] * 2 / 16_000
    assert amp_440 == pytest.approx(0.2, abs=0.02)


async def test_array_source_stops_early() -> None:
    src = ArraySource(np.zeros(CAPTURE_RATE, np.int16), pace="fast")
    got: list[AudioFrame] = []
    async for frame in src.frames():
        got.append(frame)
        if len(got) == 3:
            await src.stop()
    assert len(got) == 3


def test_corrupt_file_is_a_clear_wav_error(tmp_path: Path) -> None:
    bad = tmp_path / "noise.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + os.urandom(200))
    with pytest.raises(WavError, match=r"noise\.wav: not a readable audio file") as info:
        WavSource(bad)
    assert "\n" not in str(info.value)
    text = tmp_path / "notes.wav"
    text.write_text("these are words, not audio\n")
    with pytest.raises(WavError, match=r"notes\.wav: not a readable audio file"):
        read_wav(text)
    assert isinstance(info.value, ValueError)


def _wav_header(rate: int, data_size: int, bits: int = 16) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * bits // 8, bits // 8, bits)
    body = b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", data_size)
    return b"RIFF" + struct.pack("<I", min(len(body) + data_size, 0xFFFF_FFFF)) + body


def test_a_one_hertz_file_is_a_clear_wav_error(tmp_path: Path) -> None:
    path = tmp_path / "slow.wav"
    path.write_bytes(_wav_header(1, 200_000) + bytes(200_000))  # 100 000 s "long"
    with pytest.raises(WavError, match=r"slow\.wav: a sample rate of 1 Hz is not usable audio"):
        read_wav(path)


_READ_IN_A_SMALL_PROCESS = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1536 * 2**20, resource.RLIM_INFINITY))
from assistant.audio.wav import WavError, read_wav
try:
    read_wav(sys.argv[1])
except WavError as exc:
    print("WavError:", exc)
"""


def test_a_header_claiming_hours_is_refused_before_reading(tmp_path: Path) -> None:
    """A file as long as its header says (sparse: no disk used), 37 hours of 16 kHz audio."""
    path = tmp_path / "long.wav"
    size = 0xFFFF_FFF0
    with open(path, "wb") as f:
        f.write(_wav_header(16_000, size))
        f.truncate(44 + size)
    proc = subprocess.run(
        [sys.executable, "-c", _READ_IN_A_SMALL_PROCESS, str(path)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("WavError: ") and "2237 minutes" in proc.stdout


def test_non_finite_float_samples_become_silence_or_full_scale(tmp_path: Path) -> None:
    path = tmp_path / "nan.wav"
    data = np.array([np.nan, np.inf, -np.inf, 0.25], dtype=np.float32)
    sf.write(path, data, 16_000, subtype="FLOAT")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pcm, _ = read_wav(path)
    assert pcm.tolist() == [0, 32767, -32768, 8192]


def test_missing_file_and_directory_are_clear_wav_errors(tmp_path: Path) -> None:
    with pytest.raises(WavError, match=r"missing\.wav: no such file"):
        WavSource(tmp_path / "missing.wav")
    with pytest.raises(WavError, match="is a directory"):
        read_wav(tmp_path)


def test_write_wav_is_atomic_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    pcm = (np.sin(np.arange(8000) / 7) * 20_000).astype(np.int16)
    write_wav(path, pcm, 8000)
    write_wav(path, pcm[::-1], 8000)  # replaces the previous file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.wav"]
    back, rate = read_wav(path)
    assert rate == 8000
    np.testing.assert_array_equal(back, pcm[::-1])
    with pytest.raises(WavError, match="cannot be written"):
        write_wav(tmp_path / "no-such-dir" / "x.wav", pcm, 8000)


def test_read_wav_converts_float_files_to_int16(tmp_path: Path) -> None:
    data = np.array([0.0, 0.5, -0.5, 1.5, -1.5], dtype=np.float32)
    path = write_file(tmp_path / "f.wav", data, 22_050, subtype="FLOAT")
    pcm, rate = read_wav(path)
    assert rate == 22_050 and pcm.dtype == np.int16
    np.testing.assert_array_equal(pcm, [0, 16384, -16384, 32767, -32768])


def test_resample_lengths_and_content() -> None:
    pcm = (sine(24_000, 24_000, 300.0) * 32767).astype(np.int16)
    out = resample(pcm, 24_000, 16_000)
    assert out.dtype == np.int16 and len(out) == 16_000
    ref = (sine(16_000, 16_000, 300.0) * 32767).astype(np.int16)
    assert np.max(np.abs(out[100:-100].astype(int) - ref[100:-100])) < 200
    same = resample(pcm, 24_000, 24_000)
    np.testing.assert_array_equal(same, pcm)
    assert same is not pcm


async def test_microphone_that_stops_calling_back_is_reported_lost() -> None:
    clock = ManualClock()
    _, stream, errors, consumer = await listen(CAPTURE_RATE, clock=clock)
    for _ in range(10):
        stream.feed(np.zeros(FRAME_SAMPLES, dtype=np.float32))
        await clock.advance(FRAME_SAMPLES / CAPTURE_RATE)
    await clock.advance(2.5)  # then nothing: the device died without a word
    frames = await asyncio.wait_for(consumer, PATIENCE)
    assert len(frames) == 10
    assert errors == ["Audio input stopped: the microphone was lost or disconnected."]


async def test_microphone_whose_blocks_are_all_unusable_is_reported() -> None:
    clock = ManualClock()
    mic, stream, errors, consumer = await listen(CAPTURE_RATE, clock=clock)
    for _ in range(100):  # it keeps calling back, with blocks of the wrong shape
        stream.kwargs["callback"](np.zeros(FRAME_SAMPLES, np.float32), FRAME_SAMPLES, None, None)
        await clock.advance(FRAME_SAMPLES / CAPTURE_RATE)
    await asyncio.wait_for(consumer, 5.0)
    assert mic.callback_errors == 100
    assert errors == ["Audio input stopped: the microphone sends audio Parley cannot read."]


@pytest.mark.parametrize("latency", [0.0, 0.008])
async def test_a_microphone_with_a_processor_looks_between_its_frames(latency: float) -> None:
    class Halve:
        """Halves the audio; ``latency``: its filters' delay (frames and looks are dated back
        by it alike)."""

        def __init__(self) -> None:
            self.latency = latency

        def process(self, samples: np.ndarray, end_time: float) -> np.ndarray:
            return samples * 0.5

    mic, stream = await open_mic(CAPTURE_RATE, processor=Halve())
    assert isinstance(mic, LookingSource)
    block = stream.kwargs["blocksize"]
    assert block == 160
    x = (np.arange(FRAME_SAMPLES * 3) % 977).astype(np.float32) / 2000.0
    items: list[AudioFrame | AudioLook] = []
    consumer = asyncio.create_task(_stream_until_frames(mic, items, 2))
    await _settle()
    for k in range(len(x) // block):
        stream.feed(x[k * block : (k + 1) * block])
        await _settle()  # the loop takes each block as it comes
    await asyncio.wait_for(consumer, PATIENCE)
    await mic.stop()
    kinds = ["frame" if isinstance(i, AudioFrame) else "look" for i in items]
    # 10 ms blocks: three looks at the first frame in the making, then the frame; the block
    # that completes it leaves 128 samples of the next, which is looked at at once.
    assert kinds[:4] == ["look", "look", "look", "frame"]
    assert kinds[4] == "look"
    assert [i.fresh for i in items[:5] if isinstance(i, AudioLook)] == [160, 320, 480, 128]
    heard = (np.round(x * 0.5 * 32767)).astype(np.int16)
    framed = 0
    for item in items:
        if isinstance(item, AudioFrame):
            np.testing.assert_allclose(item.pcm, heard[framed : framed + FRAME_SAMPLES], atol=1)
            framed += FRAME_SAMPLES
            continue
        assert len(item.pcm) == FRAME_SAMPLES
        # The latest FRAME_SAMPLES: zeros before the first sample, then what was captured.
        end = framed + item.fresh
        expected = np.concatenate((np.zeros(FRAME_SAMPLES, np.int16), heard[:end]))
        np.testing.assert_allclose(item.pcm, expected[-FRAME_SAMPLES:], atol=1)
    # A look's time is its last sample's: the look taken with the first frame is 128 samples
    # after it.
    assert items[4].t - items[3].t == pytest.approx(128 / CAPTURE_RATE, abs=1e-9)


async def test_a_microphone_without_a_processor_has_nothing_to_look_at() -> None:
    # A 48 kHz device: the resampler leaves part of a frame over after each wake-up.
    mic, stream = await open_mic(48_000)
    items: list[AudioFrame | AudioLook] = []
    consumer = asyncio.create_task(_stream_until_frames(mic, items, 3))
    await _settle()
    for _ in range(3 * 4 + 2):
        stream.feed(np.full(FRAME_SAMPLES * 3 // 4 + 7, 0.25, dtype=np.float32))
        await _settle()
    await asyncio.wait_for(consumer, PATIENCE)
    await mic.stop()
    assert len(mic._pending) > 0  # something was left between frames, and not looked at
    assert all(isinstance(i, AudioFrame) for i in items)


async def _stream_until_frames(
    mic: MicrophoneCapture, out: list[AudioFrame | AudioLook], frames: int
) -> None:
    async for item in mic.stream():
        out.append(item)
        if sum(isinstance(i, AudioFrame) for i in out) >= frames:
            return


async def _settle() -> None:
    """Let the loop run what the last callback woke."""
    for _ in range(5):
        await asyncio.sleep(0)
