"""Echo cancellation: device delays from PortAudio timestamps, the render-path tap's sample
accounting on the fake PortAudio clock, the canceller's alignment of far end and microphone,
and the real WebRTC processor removing a real echo."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import soxr

from assistant.audio.capture import MicrophoneCapture
from assistant.audio.echo import (
    CHUNK,
    LEAD,
    SETTLE_SECONDS,
    EchoCanceller,
    processing_available,
)
from assistant.audio.player import FakeClockDevice
from assistant.audio.reference import ReferenceTap, ReferenceTimeline
from assistant.audio.room import EchoPath, RoomAcoustics
from assistant.audio.timing import DeviceDelay
from assistant.types import CAPTURE_RATE, FRAME_SAMPLES, AudioFrame


@dataclass
class TimeInfo:
    currentTime: float
    outputBufferDacTime: float = 0.0
    inputBufferAdcTime: float = 0.0


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise shaped by a slow envelope (bursts and gaps), float32 at 16 kHz."""
    rng = np.random.default_rng(seed)
    n = int(seconds * CAPTURE_RATE)
    envelope = np.abs(np.sin(np.arange(n) * 2 * np.pi * 3 / CAPTURE_RATE)) ** 2
    return (rng.standard_normal(n) * envelope * 0.15).astype(np.float32)


# --------------------------------------------------------------------------- device delays


def test_device_delay_comes_from_the_dac_and_adc_timestamps() -> None:
    out = DeviceDelay("output", nominal=0.05)
    assert out.update(TimeInfo(100.0, outputBufferDacTime=100.025)) == pytest.approx(0.025)
    assert out.measured and out.fallback_reason is None
    inp = DeviceDelay("input", nominal=0.05)
    assert inp.update(TimeInfo(100.0, inputBufferAdcTime=99.99)) == pytest.approx(0.01)
    assert inp.measured


@pytest.mark.parametrize(
    ("info", "reason"),
    [
        (TimeInfo(0.0), "zero timestamps"),
        (TimeInfo(100.0, outputBufferDacTime=99.0), "delay of -1000 ms"),
        (None, "no timestamps"),
    ],
)
def test_a_device_without_usable_timestamps_falls_back_to_its_nominal_latency(
    info: Any, reason: str
) -> None:
    delay = DeviceDelay("output", nominal=0.04)
    assert delay.update(info) == 0.04
    assert not delay.measured
    assert delay.fallback_reason is not None and reason in delay.fallback_reason
    # Later good timestamps are used again; the reason stays for the log.
    assert delay.update(TimeInfo(5.0, outputBufferDacTime=5.02)) == pytest.approx(0.02)
    assert delay.measured and delay.fallback_reason is not None


# ---------------------------------------------------------------------- the render-path tap


async def test_the_tap_gets_what_the_device_was_handed_with_its_play_time() -> None:
    device = FakeClockDevice(rate=48_000, blocksize=512, t0=1000.0)
    tap = ReferenceTap()
    device.taps.append(tap.rendered)
    tts_rate = 22_050
    rng = np.random.default_rng(1)
    speech = (rng.standard_normal(tts_rate) * 6000).astype(np.int16)  # 1 s at the TTS rate
    device.write(speech, tts_rate, 1)
    device.flush()
    silent_blocks = 3
    device.render_blocks(silent_blocks)  # nothing was written for turn 0 before: silence
    handed = device.render_seconds(1.2)
    blocks = tap.take()
    assert len(blocks) == silent_blocks + len(handed) // 512
    # Each block's time is the fake clock's at its callback; samples are what the device got.
    for k, (_, rate, played_at) in enumerate(blocks):
        assert rate == 48_000
        assert played_at == pytest.approx(1000.0 + k * 512 / 48_000, abs=1e-12)
    got = np.concatenate([b for b, _, _ in blocks[silent_blocks:]])
    np.testing.assert_array_equal(got, handed)
    assert tap.take() == []


async def test_the_timeline_places_every_sample_at_its_play_time_on_the_16khz_grid() -> None:
    device = FakeClockDevice(rate=48_000, blocksize=480, t0=500.0)
    tap = ReferenceTap()
    device.taps.append(tap.rendered)
    signal = (np.sin(np.arange(48_000) * 2 * np.pi * 300 / 48_000) * 12_000).astype(np.int16)
    device.write(signal, 48_000, 1)
    device.flush()
    device.render_blocks(110)  # 1.1 s
    timeline = ReferenceTimeline()
    for block in tap.take():
        timeline.add(*block)
    assert timeline.runs == 1
    expected = soxr.resample(signal.astype(np.float32) / 32768.0, 48_000, CAPTURE_RATE)
    # 100 ms of it read by time, from 0.4 s on: exactly the resampled samples there.
    start = 500.0 + 0.4
    got = timeline.read(start, 1600)
    np.testing.assert_allclose(got, expected[6400:8000], atol=1e-4)
    # Before the first block and after the last: nothing was played.
    assert not timeline.read(499.0, 160).any()
    assert not timeline.read(502.0, 160).any()


def test_blocks_that_do_not_follow_start_a_new_run_and_the_gap_reads_as_silence() -> None:
    timeline = ReferenceTimeline()
    ones = np.full(160, 0.5, np.float32)
    for k in range(10):
        timeline.add(ones, CAPTURE_RATE, 10.0 + k * 0.01)
    for k in range(10):  # 0.3 s later, as after a stalled or re-opened device
        timeline.add(ones, CAPTURE_RATE, 10.4 + k * 0.01)
    assert timeline.runs == 2
    got = timeline.read(10.05, 6000)  # 10.05 to 10.425
    # The first block after the jump could be a glitch in its time: it is placed by sample
    # count (10.10); the second confirms the jump and the new run starts at its time (10.41).
    assert got[:960].min() == pytest.approx(0.5)  # until 10.11
    assert not got[960:5760].any()  # 10.11 to 10.41: nothing played
    assert got[5760:].min() == pytest.approx(0.5)
    assert timeline.known_until == pytest.approx(10.5)


def test_one_block_with_an_odd_time_does_not_move_the_far_end() -> None:
    timeline = ReferenceTimeline()
    ramp = np.arange(3200, dtype=np.float32) / 3200
    for k in range(20):
        odd = 0.28 if k == 10 else 0.0  # one callback's timestamp 280 ms off
        timeline.add(ramp[k * 160 : (k + 1) * 160], CAPTURE_RATE, 3.0 + k * 0.01 + odd)
    assert timeline.runs == 1
    np.testing.assert_allclose(timeline.read(3.0, 3200), ramp, atol=1e-6)


def test_callback_jitter_does_not_move_samples() -> None:
    timeline = ReferenceTimeline()
    ramp = np.arange(16_000, dtype=np.float32) / 16_000
    rng = np.random.default_rng(3)
    for k in range(100):  # each callback up to 4 ms early or late
        jitter = rng.uniform(-0.004, 0.004)
        timeline.add(ramp[k * 160 : (k + 1) * 160], CAPTURE_RATE, 1.0 + k * 0.01 + jitter)
    assert timeline.runs == 1
    got = timeline.read(1.5, 160)
    np.testing.assert_allclose(got, ramp[8000:8160], atol=0.0015)


def test_read_on_by_sample_count_the_far_end_is_exactly_what_was_played() -> None:
    # What a linear filter needs: reading by time follows the wobble of the device's times
    # (above: a few samples), reading on from one place by count does not.
    timeline = ReferenceTimeline()
    ramp = np.arange(16_000, dtype=np.float32) / 16_000
    rng = np.random.default_rng(3)
    for k in range(100):
        jitter = rng.uniform(-0.004, 0.004)
        timeline.add(ramp[k * 160 : (k + 1) * 160], CAPTURE_RATE, 1.0 + k * 0.01 + jitter)
    run, index = timeline.locate(1.2)
    assert run == timeline.runs and abs(index - 3200) <= 24
    got = np.concatenate([timeline.read_run(run, index + k * 160, 160) for k in range(50)])
    np.testing.assert_array_equal(got, ramp[index : index + 8000])
    # Another run's samples, or none, read as silence.
    assert not timeline.read_run(run + 1, index, 160).any()
    assert not timeline.read_run(run, 16_000, 160).any()


# ----------------------------------------------------------------------------- the canceller


class RecordingApm:
    """Records the order of calls (a stand-in for the processor in alignment tests)."""

    latency = 0

    def __init__(self, cancel: bool, suppress: bool) -> None:
        self.calls: list[tuple[str, float]] = []

    def reverse(self, chunk: np.ndarray) -> None:
        self.calls.append(("reverse", float(chunk[0])))

    def near(self, chunk: np.ndarray) -> None:
        self.calls.append(("near", float(chunk[0])))

    def set_delay_ms(self, ms: int) -> None:
        self.calls.append(("delay", ms))


def marked(value: int, n: int = CHUNK) -> np.ndarray:
    """A chunk whose first sample names it."""
    x = np.zeros(n, np.float32)
    x[0] = value / 32768.0
    return x


def test_each_microphone_chunk_follows_the_far_end_played_up_to_its_capture_time() -> None:
    apms: list[RecordingApm] = []
    now = [0.0]

    def factory(cancel: bool, suppress: bool) -> RecordingApm:
        apms.append(RecordingApm(cancel, suppress))
        return apms[-1]

    canceller = EchoCanceller(now=lambda: now[0], apm_factory=factory)
    # Far-end chunk k (marked 100 + k) plays from 10.00 + k * 10 ms.
    for k in range(20):
        canceller.tap.rendered(marked(100 + k), CAPTURE_RATE, 10.0 + k * 0.01)
    now[0] = 10.3
    # Microphone chunk j (marked j + 1) was captured over [10.05 + j * 10 ms, + 10 ms).
    for j in range(5):
        out = canceller.process(marked(j + 1), 10.05 + (j + 1) * 0.01)
        assert len(out) == CHUNK
    calls = [c for c in apms[0].calls if c[0] != "delay"]
    # One far-end chunk per microphone chunk, the one played until LEAD after it ends, first.
    lead = round(LEAD / 0.01)
    expected = []
    for j in range(5):
        expected += [("reverse", 100 + 5 + j + lead), ("near", j + 1)]
    assert calls == expected
    assert ("delay", round(LEAD * 1000)) in apms[0].calls


def test_microphone_audio_waits_for_far_end_not_played_yet_and_never_for_a_silent_one() -> None:
    apms: list[RecordingApm] = []
    now = [10.0]
    canceller = EchoCanceller(
        now=lambda: now[0], apm_factory=lambda c, s: apms.append(RecordingApm(c, s)) or apms[-1]
    )
    canceller.tap.rendered(marked(7, 160 * 4), CAPTURE_RATE, 9.99)  # played until 10.03
    now[0] = 10.03
    # Captured over [10.00, 10.03): the last 10 ms need the far end until 10.03 + LEAD.
    assert len(canceller.process(np.zeros(CHUNK * 3, np.float32), 10.03)) == CHUNK * 2
    assert canceller.stats.held == 1
    # The output stopped: once that far end is overdue, it counts as silence.
    now[0] = 10.2
    assert len(canceller.process(np.zeros(0, np.float32), 10.03)) == CHUNK


def test_echo_is_uncertain_until_the_far_end_has_played_and_the_echo_is_measured() -> None:
    class Halving(RecordingApm):
        def near(self, chunk: np.ndarray) -> None:
            chunk //= 100  # 40 dB of echo removed

    now = [0.0]
    canceller = EchoCanceller(now=lambda: now[0], apm_factory=Halving)
    assert canceller.uncertain
    far = speechlike(3.0)
    for k in range(300):
        t = 100.0 + k * 0.01
        canceller.tap.rendered(far[k * 160 : (k + 1) * 160], CAPTURE_RATE, t)
        now[0] = t + 0.02
        canceller.process(far[k * 160 : (k + 1) * 160] * 0.5, t + 0.01)
        if canceller.stats.far_end_seconds < SETTLE_SECONDS:
            assert canceller.uncertain
    assert not canceller.uncertain
    assert canceller.stats.erle_db == pytest.approx(40.0, abs=1.0)
    canceller.reset()
    assert canceller.uncertain


class Cancelling(RecordingApm):
    """Removes 40 dB of whatever it hears."""

    def near(self, chunk: np.ndarray) -> None:
        chunk //= 100


class Room:
    """A canceller fed in step: far-end chunk k plays from ``t0 + k * 10 ms`` and is heard at
    half its level in the microphone chunk captured over the same 10 ms."""

    def __init__(self, apm: type[RecordingApm] = Cancelling) -> None:
        self.apms: list[RecordingApm] = []
        self.echoes: deque[np.ndarray] = deque()  # what the microphone heard of the far end
        self.now = 0.0
        self.t = 100.0
        self.canceller = EchoCanceller(
            now=lambda: self.now, apm_factory=self._apm(apm), noise_suppression=False
        )

    def _apm(self, kind: type[RecordingApm]) -> Any:
        def make(cancel: bool, suppress: bool) -> RecordingApm:
            self.apms.append(kind(cancel, suppress))
            self.apms[-1].echoes = self.echoes
            self.echoes.clear()
            return self.apms[-1]

        return make

    def play(
        self,
        far: np.ndarray,
        heard: float = 0.5,
        t: float | None = None,
        near: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``far`` played; the microphone hears it at ``heard`` of its level, plus ``near``
        (the near end's own sound, as long as ``far``). What the canceller returned: the
        processed audio and the recognizer's version of it (a chunk or a few late: it holds
        back what it cannot process yet)."""
        if t is not None:
            self.t = t
        processed, speech = [], []
        for k in range(len(far) // CHUNK):
            chunk = far[k * CHUNK : (k + 1) * CHUNK]
            self.canceller.tap.rendered(chunk, CAPTURE_RATE, self.t)
            self.now = self.t + 0.02
            mic = chunk * heard
            self.echoes.append(mic)
            if near is not None:
                mic = mic + near[k * CHUNK : (k + 1) * CHUNK]
            out, words = self.canceller.process_with_speech(mic, self.t + 0.01)
            processed.append(out)
            speech.append(out if words is None else words)
            self.t += 0.01
        return np.concatenate(processed), np.concatenate(speech)


class KnowsTheEcho(RecordingApm):
    """Removes 40 dB of the echo and leaves the near end's sound: a converged AEC3 (the room
    tells it what echo each microphone chunk holds)."""

    echoes: deque[np.ndarray]

    def near(self, chunk: np.ndarray) -> None:
        echo = np.rint(self.echoes.popleft() * 32768.0).astype(np.int16)
        chunk -= echo - echo // 100


class Passing(RecordingApm):
    """Removes nothing: an echo path that moved under a processor that learned the old one."""

    def near(self, chunk: np.ndarray) -> None:
        pass


def test_each_reply_checks_the_echo_again_and_keeps_a_processor_that_still_cancels() -> None:
    room = Room()
    room.play(speechlike(2.0))
    assert not room.canceller.uncertain and len(room.apms) == 1
    # Between sentences of a reply: still known.
    room.play(np.zeros(CHUNK * 50, np.float32))
    room.play(speechlike(0.5, seed=1))
    assert not room.canceller.uncertain
    # The next reply, after a silence: the echo path may have moved (a sound server's latency
    # changes between replies), so it is uncertain until the echo shows cancelled again.
    room.play(np.zeros(CHUNK * 200, np.float32))
    room.play(speechlike(0.5, seed=2))
    assert room.canceller.uncertain
    room.play(speechlike(1.0, seed=3))
    assert not room.canceller.uncertain
    assert len(room.apms) == 1 and room.canceller.stats.restarts == 1


def test_a_processor_that_no_longer_cancels_the_echo_is_replaced() -> None:
    room = Room()
    room.play(speechlike(2.0))
    assert not room.canceller.uncertain
    room.play(np.zeros(CHUNK * 200, np.float32))
    room.apms[0].near = lambda chunk: None  # type: ignore[method-assign]  # the path moved
    room.play(speechlike(1.2, seed=2))
    # The echo passed through for the stretch's first second: a fresh processor, still uncertain.
    assert len(room.apms) == 2 and room.canceller.uncertain
    assert room.apms[1].calls[0][0] == "reverse"
    room.play(speechlike(1.2, seed=3))
    assert not room.canceller.uncertain


def test_a_break_in_the_outputs_timing_while_it_plays_makes_the_echo_uncertain() -> None:
    room = Room()
    room.play(speechlike(2.0))
    assert not room.canceller.uncertain
    # An underrun: the output's blocks jump 80 ms ahead of where they followed each other.
    room.play(speechlike(0.5, seed=1), t=room.t + 0.08)
    assert room.canceller.uncertain


def settled_on_an_echo() -> Room:
    """A room whose processor cancels the echo (and leaves the near end), settled over a first
    reply, then a silence: the next reply's echo is checked again."""
    room = Room(KnowsTheEcho)
    room.play(speechlike(2.0))
    assert not room.canceller.uncertain
    room.play(np.zeros(CHUNK * 200, np.float32))
    return room


def test_a_user_talking_over_the_start_of_a_reply_does_not_replace_the_processor() -> None:
    # AEC3 rightly leaves the user in; counted as echo they would say the echo is no longer
    # cancelled, and a fresh processor would mute their next words while it learns.
    room = settled_on_an_echo()
    reply = speechlike(2.5, seed=2)
    voice = np.zeros_like(reply)
    voice[: CHUNK * 150] = 2.0 * speechlike(1.5, seed=7)  # 12 dB over the echo, from the start
    room.play(reply, near=voice)
    assert len(room.apms) == 1 and not room.canceller.uncertain
    assert room.canceller.stats.erle_db == pytest.approx(40.0, abs=1.0)


def test_an_echo_path_that_moved_and_got_louder_is_judged_after_a_while() -> None:
    # The volume turned up and the processor passes the echo (its path moved): louder than any
    # echo before, it may be the near end at first, but not for long.
    room = settled_on_an_echo()
    room.apms[0].near = lambda chunk: None  # type: ignore[method-assign]
    room.play(speechlike(1.5, seed=2), heard=2.0)
    assert len(room.apms) == 1
    room.play(speechlike(1.5, seed=3), heard=2.0)
    assert len(room.apms) == 2


def test_once_the_echo_has_died_away_the_microphone_passes_unchanged() -> None:
    room = Room()
    canceller = room.canceller
    n = CAPTURE_RATE
    room.play((0.1 * np.sin(np.arange(n) * 2 * np.pi * 440 / CAPTURE_RATE)).astype(np.float32))
    voice = speechlike(1.0, seed=9)
    heard, passed = [], []
    for k in range(100):  # the reply has stopped; the user talks on
        room.canceller.tap.rendered(np.zeros(CHUNK, np.float32), CAPTURE_RATE, room.t)
        room.now = room.t + 0.02
        heard.append(voice[k * CHUNK : (k + 1) * CHUNK])
        passed.append(canceller.process(heard[-1], room.t + 0.01))
        room.t += 0.01
    x, y = np.concatenate(heard), np.concatenate(passed)
    # While the echo's tail may still be in the room, processed (40 dB down here)...
    assert np.max(np.abs(y[: 50 * CHUNK])) < np.max(np.abs(x[: 50 * CHUNK])) / 20
    # ...0.6 s after the far end went quiet, unchanged (a little late: the room's far end is
    # known only just in time, so the canceller holds a chunk or two back).
    tail, end = y[-30 * CHUNK :], len(x)
    assert any(
        np.array_equal(tail, x[end - late - len(tail) : end - late])
        for late in range(0, 3 * CHUNK + 1, CHUNK)
    )
    # With noise suppression on, everything stays processed.
    suppressing = EchoCanceller(noise_suppression=True, apm_factory=room._apm(Cancelling))
    suppressing._quiet = 10.0
    x = voice[:CHUNK]
    assert not np.array_equal(suppressing.process(x, 200.0), x)


class Late(RecordingApm):
    """Removes 40 dB of whatever it hears and hands it back ``latency`` samples later, as AEC3
    does (its blocks and filters delay the audio)."""

    latency = 64

    def __init__(self, cancel: bool, suppress: bool) -> None:
        super().__init__(cancel, suppress)
        self._held = np.zeros(self.latency, np.int16)

    def near(self, chunk: np.ndarray) -> None:
        joined = np.concatenate((self._held, chunk // 100))
        self._held = joined[len(chunk) :].copy()
        chunk[:] = joined[: len(chunk)]


def talk_after_a_reply(room: Room, voice: np.ndarray) -> np.ndarray:
    """A reply plays for a second, stops, and the user talks: what the canceller returned of
    the user's words (processed while the reply's echo may linger, then passed)."""
    sine = 0.1 * np.sin(np.arange(CAPTURE_RATE) * 2 * np.pi * 440 / CAPTURE_RATE)
    room.play(sine.astype(np.float32))
    out = []
    for k in range(len(voice) // CHUNK):
        room.canceller.tap.rendered(np.zeros(CHUNK, np.float32), CAPTURE_RATE, room.t)
        room.now = room.t + 0.02
        out.append(room.canceller.process(voice[k * CHUNK : (k + 1) * CHUNK], room.t + 0.01))
        room.t += 0.01
    return np.concatenate(out)


def how_late(passed: np.ndarray, x: np.ndarray) -> int | None:
    """How many samples before the end of ``x`` the end of ``passed`` is, where ``passed`` is
    a run of ``x`` unchanged (None: it is not)."""
    end = len(x)
    return next(
        (
            late
            for late in range(0, 6 * CHUNK)
            if np.array_equal(passed, x[end - late - len(passed) : end - late])
        ),
        None,
    )


def test_the_microphone_passes_as_late_as_the_processor_returns_it() -> None:
    """Switching from the processor's output to the microphone as it is must not skip the
    samples the processor still held: a word cut there comes out as another word."""
    room = Room(Late)
    voice = speechlike(1.0, seed=9)
    y = talk_after_a_reply(room, voice)
    processed, passed = y[: 50 * CHUNK], y[-30 * CHUNK :]  # see the test above
    late = how_late(passed, voice[: len(y)])
    assert late is not None and late % CHUNK == Late.latency, late  # held chunks, and latency
    # The processed part is exactly as late: one stream, nothing skipped where it changes.
    expected = to_pcm_float(voice[: 50 * CHUNK - late])
    got = processed[late:] * 100.0
    assert np.allclose(got, expected, atol=101 / 32768), "the processed part is not as late"


def to_pcm_float(x: np.ndarray) -> np.ndarray:
    """``x`` rounded to 16 bits, as a processor hands it back."""
    return np.clip(np.rint(x * 32768.0), -32768, 32767).astype(np.float32) / 32768.0


def assert_passed(out: np.ndarray, expected: np.ndarray, *, exact: bool = True) -> None:
    """``out`` is ``expected`` (to 16 bits unless ``exact``), a chunk or a few late: the
    canceller holds back what it cannot process yet."""
    for late in range(0, 4 * CHUNK, CHUNK):
        got, want = out[late:], expected[: len(out) - late]
        if np.array_equal(got, want) or (not exact and np.allclose(got, want, atol=1 / 32768)):
            return
    raise AssertionError("the audio did not pass unchanged")


def mic_noise(seconds: float) -> np.ndarray:
    """The microphone's own noise, 60 dB below full scale."""
    n = round(seconds * CAPTURE_RATE)
    return np.random.default_rng(4).standard_normal(n).astype(np.float32) * 1e-3


def test_a_microphone_that_hears_only_its_own_noise_has_no_echo_to_cancel() -> None:
    room = Room(Passing)
    seconds = SETTLE_SECONDS + 0.5
    n = round(seconds * CAPTURE_RATE)
    tone = (0.1 * np.sin(np.arange(n) * 2 * np.pi * 440 / CAPTURE_RATE)).astype(np.float32)
    room.play(tone, heard=0.0, near=mic_noise(seconds))
    assert not room.canceller.uncertain and len(room.apms) == 1


def settled_without_echo() -> Room:
    """Headphones, or speakers the microphone does not hear: a room whose processor settled
    on "no echo" over a first reply."""
    room = Room(Passing)
    seconds = SETTLE_SECONDS + 0.5
    room.play(speechlike(seconds), heard=0.0, near=mic_noise(seconds))
    assert not room.canceller.uncertain
    return room


class Thinning(RecordingApm):
    """Takes 12 dB off whatever it hears: AEC3's suppressor before it knows there is no echo."""

    def near(self, chunk: np.ndarray) -> None:
        chunk //= 4


def test_where_the_microphone_hears_no_echo_the_recognizer_hears_it_unprocessed() -> None:
    room = Room(Thinning)
    far = speechlike(4.0)
    near = mic_noise(4.0)  # none of the far end reaches the microphone
    near[CHUNK * 250 :] += 0.3 * speechlike(1.5, seed=5)  # the user talks over the reply
    processed, speech = room.play(far[: CHUNK * 50], heard=0.0, near=near[: CHUNK * 50])
    # Not judged yet: the recognizer hears AEC3's output.
    assert room.canceller.uncertain and np.array_equal(speech, processed)
    processed, speech = room.play(far[CHUNK * 50 :], heard=0.0, near=near[CHUNK * 50 :])
    assert not room.canceller.uncertain
    tail = slice(-CHUNK * 100, None)
    # Turn-taking judges the processed audio; the recognizer hears the voice whole.
    assert np.mean(processed[tail] ** 2) < np.mean(near[tail] ** 2) / 10
    assert_passed(speech[tail], to_pcm_float(near[tail]), exact=False)
    assert room.canceller._linear_learned == 0  # nor does the linear stage take it for echo


def test_the_near_ends_own_sound_at_a_replys_start_does_not_replace_the_processor() -> None:
    # The next reply starts while the user's last words (or a door, a cough) are still in the
    # room; AEC3 rightly leaves them in, and counted as echo they would say the echo is no
    # longer cancelled: a fresh processor would mute the user's next words while it learns.
    room = settled_without_echo()
    noise = mic_noise(4.5)
    room.play(np.zeros(CHUNK * 200, np.float32), near=noise[: CHUNK * 200])
    voice_tail = np.concatenate((0.5 * speechlike(0.8, seed=7), np.zeros(CHUNK * 170)))
    room.play(speechlike(2.5, seed=2), heard=0.0, near=voice_tail + noise[CHUNK * 200 :])
    assert len(room.apms) == 1 and not room.canceller.uncertain


def test_sound_that_goes_on_where_there_was_no_echo_is_judged_as_a_moved_path() -> None:
    # The speaker now reaches the microphone (the headphones unplugged on the same device) and
    # the processor passes that echo: after a while it is judged, and replaced.
    room = settled_without_echo()
    room.play(np.zeros(CHUNK * 200, np.float32))
    room.play(speechlike(1.5, seed=2), heard=0.5)
    assert len(room.apms) == 1  # not yet: it may be the near end
    room.play(speechlike(1.5, seed=3), heard=0.5)
    assert len(room.apms) == 2


def test_a_microphone_in_digital_silence_does_not_tell_that_the_echo_is_cancelled() -> None:
    room = Room()
    room.play(speechlike(3.0), heard=0.0)  # the echo has not reached it (yet)
    assert room.canceller.uncertain
    assert room.canceller.stats.erl_db is None


def test_noise_suppression_alone_needs_no_far_end() -> None:
    apms: list[RecordingApm] = []
    canceller = EchoCanceller(
        echo_cancellation=False,
        apm_factory=lambda c, s: apms.append(RecordingApm(c, s)) or apms[-1],
    )
    assert not canceller.uncertain
    assert len(canceller.process(np.zeros(CHUNK * 4, np.float32), 5.0)) == CHUNK * 4
    assert [c[0] for c in apms[0].calls] == ["near"] * 4


async def frames_through(processor: Any, x: np.ndarray, count: int) -> tuple[list[AudioFrame], int]:
    """The first ``count`` frames a microphone with ``processor`` cuts from ``x`` (16 kHz),
    captured in the blocks it asks for, and that block size."""
    streams: list[Any] = []

    class Stream:
        def __init__(self, **kw: Any) -> None:
            self.kw = kw
            streams.append(self)

        def start(self) -> None: ...

        def close(self) -> None: ...

    mic = MicrophoneCapture(samplerate=CAPTURE_RATE, stream_factory=Stream, processor=processor)
    await mic.start()
    block = streams[0].kw["blocksize"]
    for k in range(len(x) // block):
        chunk = x[k * block : (k + 1) * block].reshape(-1, 1)
        streams[0].kw["callback"](chunk, block, None, None)
    frames: list[AudioFrame] = []
    async for frame in mic.frames():
        frames.append(frame)
        if len(frames) == count:
            break
    await mic.stop()
    return frames, block


async def test_the_microphone_cuts_frames_from_processed_audio_with_their_capture_times() -> None:
    class Late:
        """Gives back 0.25 of every sample, 100 samples late."""

        latency = 0.0

        def __init__(self) -> None:
            self.held = np.zeros(100, np.float32)

        def process(self, samples: np.ndarray, end_time: float) -> np.ndarray:
            joined = np.concatenate((self.held, samples))
            self.held = joined[len(joined) - 100 :]
            return joined[: len(joined) - 100] * 0.25

    x = (np.arange(FRAME_SAMPLES * 3) % 1000).astype(np.float32) / 4000.0
    frames, blocksize = await frames_through(Late(), x, 2)
    assert blocksize == 160  # 10 ms blocks: the processor sees audio early
    expected = np.concatenate((np.zeros(100, np.float32), x))[: 2 * FRAME_SAMPLES] * 0.25
    got = np.concatenate([f.pcm for f in frames]).astype(np.float32) / 32768.0
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert frames[1].t - frames[0].t == pytest.approx(FRAME_SAMPLES / CAPTURE_RATE, abs=1e-9)


async def test_frames_are_dated_back_by_the_processors_latency(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a processor hands back 8 ms late was captured 8 ms earlier than its place in the
    stream says: the frames' times tell when it was said."""
    import types

    import assistant.audio.capture as capture_module

    frozen = types.SimpleNamespace(monotonic=lambda: 500.0)  # the capture's clock only
    monkeypatch.setattr(capture_module, "time", frozen)

    class Delaying:
        def __init__(self, latency: float) -> None:
            self.latency = latency

        def process(self, samples: np.ndarray, end_time: float) -> np.ndarray:
            return samples

    x = np.zeros(FRAME_SAMPLES * 3, np.float32)
    on_time, _ = await frames_through(Delaying(0.0), x, 2)
    late, _ = await frames_through(Delaying(0.008), x, 2)
    assert [a.t - b.t for a, b in zip(on_time, late, strict=True)] == pytest.approx([0.008] * 2)


# ------------------------------------------------------------------------ the real processor


needs_webrtc = pytest.mark.skipif(
    not processing_available(), reason="the livekit WebRTC audio processing wheel is missing"
)


@needs_webrtc
@pytest.mark.parametrize("room", [EchoPath(40, -6, reverb=False), EchoPath(250, -12, reverb=True)])
def test_webrtc_removes_a_room_echo_delayed_up_to_250_ms(room: EchoPath) -> None:
    far = speechlike(6.0, seed=2)
    echo = RoomAcoustics(room)(far)
    now = [0.0]
    canceller = EchoCanceller(now=lambda: now[0])
    out = []
    for k in range(len(far) // CHUNK):
        t = 50.0 + k * 0.01
        canceller.tap.rendered(far[k * CHUNK : (k + 1) * CHUNK], CAPTURE_RATE, t)
        now[0] = t + 0.02
        out.append(canceller.process(echo[k * CHUNK : (k + 1) * CHUNK], t + 0.01))
    y = np.concatenate(out)
    settled = slice(3 * CAPTURE_RATE, len(y))
    erle = 10 * np.log10(np.mean(echo[settled] ** 2) / max(np.mean(y[settled] ** 2), 1e-12))
    assert erle >= 20.0, erle
    assert not canceller.uncertain


@needs_webrtc
def test_webrtc_output_and_the_microphone_passed_after_it_are_one_stream() -> None:
    """AEC3 hands back what it took 8 ms later; the microphone passed once the echo has died
    away (and the recognizer's versions) are made as late, so nothing is skipped there."""
    from assistant.audio import echo

    room = Room()
    room.canceller = EchoCanceller(now=lambda: room.now, noise_suppression=False)
    latency = echo._livekit_apm(True, False).latency
    assert latency == 128  # WebRTC's AEC3 at 16 kHz: measured, not assumed, by the canceller
    voice = speechlike(1.0, seed=9)
    y = talk_after_a_reply(room, voice)
    late = how_late(y[-30 * CHUNK :], voice[: len(y)])
    assert late is not None and late % CHUNK == latency, late
    # Where AEC3 still processed the voice (the reply's echo might linger), it is as late.
    processed = y[20 * CHUNK : 50 * CHUNK]
    lags = range(late - CHUNK, late + CHUNK + 1)
    scores = [abs(float(np.dot(processed, voice[20 * CHUNK - g : 50 * CHUNK - g]))) for g in lags]
    assert lags[int(np.argmax(scores))] == late


@needs_webrtc
def test_a_processor_that_refuses_the_latency_probe_is_taken_as_on_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from assistant.audio import echo

    def refuse(self: object, chunk: np.ndarray) -> None:
        raise RuntimeError("refused")

    monkeypatch.setattr(echo.LiveKitApm, "near", refuse)
    assert echo._latency_of.__wrapped__(True, False) == 0  # not cached: measured anew


def test_echo_path_parses_the_command_line_form() -> None:
    assert EchoPath.parse("120") == EchoPath(120.0, -6.0)
    assert EchoPath.parse("80:-12") == EchoPath(80.0, -12.0)
    for bad, words in (("x", "DELAY_MS"), ("5000", "0–1000"), ("100:+20", "at most")):
        with pytest.raises(ValueError, match=words):
            EchoPath.parse(bad)


def test_the_room_delays_attenuates_and_reverberates_the_speaker() -> None:
    far = np.zeros(CAPTURE_RATE, np.float32)
    far[1000] = 0.5
    dry = RoomAcoustics(EchoPath(120, -12, reverb=False, drive=0.0))(far)
    peak = int(np.argmax(np.abs(dry)))
    assert peak == 1000 + round(0.12 * CAPTURE_RATE)
    assert dry[peak] == pytest.approx(0.5 * 10 ** (-12 / 20), rel=1e-3)
    acoustics = RoomAcoustics(EchoPath(120, -12, reverb=True, drive=0.0))
    wet = np.concatenate([acoustics(far[k : k + 160]) for k in range(0, len(far), 160)])
    tail = wet[peak + 100 : peak + 2000]
    assert np.abs(tail).max() > 0.001  # reflections after the direct sound, block by block
