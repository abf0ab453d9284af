"""The recognizer's version of the microphone over a reply: the linear echo filter alone, the
canceller handing its output out beside AEC3's once it cancels, the microphone cutting both into
frames, and the conversations sending it to the recognizer while turn-taking judges the other."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from assistant.audio.echo import (
    CHUNK,
    LINEAR_JUDGED,
    PASS_AFTER,
    REALIGN_CHUNKS,
    REPLY_GAP,
    EchoCanceller,
)
from assistant.audio.linear_echo import LinearEchoFilter
from assistant.audio.room import EchoPath, RoomAcoustics
from assistant.engines.fake import FakeSTT
from assistant.engines.fake_agent import FakeAgentSession, FakeSpeechAgent
from assistant.types import CAPTURE_RATE, FRAME_SAMPLES, PCM
from tests.scenario import Speech, Stage
from tests.unit.test_echo import frames_through, speechlike


def db(signal: np.ndarray, residue: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(signal**2) / max(float(np.sum(residue**2)), 1e-20)))


def run_filter(
    flt: LinearEchoFilter, near: np.ndarray, far: np.ndarray, adapt: float
) -> np.ndarray:
    out = [
        flt.process(near[k * CHUNK : (k + 1) * CHUNK], far[k * CHUNK : (k + 1) * CHUNK], adapt)
        for k in range(len(near) // CHUNK)
    ]
    return np.concatenate(out)


# ----------------------------------------------------------------------------- the filter


@pytest.mark.parametrize("room", [EchoPath(40, -6, reverb=False), EchoPath(250, -12, reverb=True)])
def test_the_filter_learns_a_room_echo_delayed_up_to_250_ms_with_its_reverberation(
    room: EchoPath,
) -> None:
    far = speechlike(8.0, seed=4).astype(np.float64)
    echo = RoomAcoustics(room)(far.astype(np.float32)).astype(np.float64)
    out = run_filter(LinearEchoFilter(), echo, far, adapt=1.0)
    first, last = slice(0, CAPTURE_RATE), slice(6 * CAPTURE_RATE, len(out))
    assert db(echo[first], out[first]) < 10.0  # it learns: not there at once
    assert db(echo[last], out[last]) >= 25.0


def with_and_without_polynomial(drive: float) -> tuple[LinearEchoFilter, float, float]:
    """8 s of loud speech-like audio (peaks near full scale) through a loudspeaker of ``drive``
    in a room: the filter that learned it, and the echo it and a linear filter took over the
    last 2 s (dB)."""
    far = speechlike(8.0, seed=4).astype(np.float64) * 1.5
    room = EchoPath(120, -6, reverb=True, drive=drive)
    echo = RoomAcoustics(room)(far.astype(np.float32)).astype(np.float64)
    flt = LinearEchoFilter()
    out = run_filter(flt, echo, far, adapt=1.0)
    plain = run_filter(LinearEchoFilter(powers=()), echo, far, adapt=1.0)
    last = slice(6 * CAPTURE_RATE, len(out))
    return flt, db(echo[last], out[last]), db(echo[last], plain[last])


def test_the_filter_learns_a_soft_clipping_loudspeaker_that_a_linear_filter_leaves() -> None:
    flt, taken, taken_linearly = with_and_without_polynomial(drive=1.0)
    # The linear path leaves the clipped peaks; the polynomial before it takes most of them.
    assert taken >= taken_linearly + 12.0
    assert flt.polynomial[0] < -0.3  # the peaks are compressed: a negative cube
    assert LinearEchoFilter(powers=()).polynomial == ()


def test_a_linear_loudspeaker_leaves_the_polynomial_near_zero() -> None:
    flt, taken, taken_linearly = with_and_without_polynomial(drive=0.0)
    assert max(abs(c) for c in flt.polynomial) < 0.05
    assert taken >= taken_linearly - 1.0
    flt.reset()
    assert flt.polynomial == (0.0, 0.0)


def test_a_filter_told_not_to_learn_passes_the_microphone_unchanged() -> None:
    far = speechlike(2.0, seed=1).astype(np.float64)
    near = 0.5 * np.roll(far, 400)
    out = run_filter(LinearEchoFilter(), near, far, adapt=0.0)
    np.testing.assert_allclose(out, near[: len(out)], atol=1e-6)


def test_a_hushed_filter_keeps_the_path_but_not_the_far_end_it_heard() -> None:
    far = speechlike(6.0, seed=5).astype(np.float64)
    echo = RoomAcoustics(EchoPath(120, -6, reverb=True))(far.astype(np.float32))
    echo = echo.astype(np.float64)
    flt = LinearEchoFilter()
    run_filter(flt, echo, far, adapt=1.0)
    silence = np.zeros(CHUNK)
    # Right after the reply, its last half second still echoes in the filter's estimate...
    assert np.abs(flt.cancel(silence, silence)).max() > 1e-4
    # ...not once it is told the far end has been silent; what it learned still cancels.
    flt.hush()
    np.testing.assert_array_equal(flt.cancel(silence, silence), silence)
    again = run_filter(flt, echo[: 2 * CAPTURE_RATE], far[: 2 * CAPTURE_RATE], adapt=0.0)
    assert db(echo[CAPTURE_RATE : 2 * CAPTURE_RATE], again[CAPTURE_RATE:]) >= 20.0


def test_a_voice_over_the_learned_echo_comes_through_whole() -> None:
    far = speechlike(10.0, seed=2).astype(np.float64)
    echo = RoomAcoustics(EchoPath(120, -6, reverb=True))(far.astype(np.float32))
    echo = echo.astype(np.float64)
    flt = LinearEchoFilter()
    learn = 6 * CAPTURE_RATE
    run_filter(flt, echo[:learn], far[:learn], adapt=1.0)
    # The user talks over the rest; the caller stops the learning (double talk).
    voice = speechlike(4.0, seed=9).astype(np.float64) * 0.7
    out = run_filter(flt, echo[learn:] + voice, far[learn:], adapt=0.0)
    # The echo is 20 dB down and the voice is not touched: the residue is the echo's.
    assert db(voice, out - voice) >= 15.0
    assert db(echo[learn:], out - voice) >= 18.0


@pytest.mark.parametrize("moved", [11, -23])
def test_a_filter_told_that_the_echo_moved_cancels_it_where_it_is_now(moved: int) -> None:
    far = speechlike(6.0, seed=6).astype(np.float64)
    room = RoomAcoustics(EchoPath(120, -6, reverb=True))
    echo = room(far.astype(np.float32)).astype(np.float64)
    flt = LinearEchoFilter()
    learn = 4 * CAPTURE_RATE
    run_filter(flt, echo[:learn], far[:learn], adapt=1.0)
    later = np.roll(echo, moved)[learn:]  # the same path, ``moved`` samples later
    rest = far[learn:]
    unmoved = LinearEchoFilter()
    unmoved._weights[:] = flt._weights
    flt.shift(moved)
    out = run_filter(flt, later, rest, adapt=0.0)
    stale = run_filter(unmoved, later, rest, adapt=0.0)
    tail = slice(CAPTURE_RATE // 2, len(out))
    assert db(later[tail], stale[tail]) < 10.0
    assert db(later[tail], out[tail]) >= 20.0


def test_a_filter_whose_echo_path_turned_over_starts_again() -> None:
    far = speechlike(6.0, seed=3).astype(np.float64)
    near = 0.5 * np.concatenate((np.zeros(800), far[:-800]))
    flt = LinearEchoFilter()
    run_filter(flt, near[: 4 * CAPTURE_RATE], far[: 4 * CAPTURE_RATE], adapt=1.0)
    assert flt.resets == 0
    # The echo inverted and quieter (another device, its polarity the other way): the
    # estimate now adds more than is there. The filter notices within about a second and
    # forgets what it learned.
    rest = slice(4 * CAPTURE_RATE, len(far))
    out = run_filter(flt, -0.4 * near[rest], far[rest], adapt=0.0)
    assert flt.resets >= 1
    tail = slice(len(out) - CAPTURE_RATE // 2, len(out))
    np.testing.assert_allclose(out[tail], -0.4 * near[rest][tail], atol=1e-6)


# ------------------------------------------------------------------------ the canceller


class Suppressor:
    """AEC3 as a user talking over a reply meets it: the echo 40 dB down, and the rest (the
    voice) at ``keep`` of its level (its suppressor thins it; at the onset it may take it
    whole). It is told each microphone chunk's echo, in order."""

    latency = 0

    def __init__(self, echoes: list[np.ndarray]) -> None:
        self.echoes = echoes
        self.keep = 1.0
        self.calls = 0

    def reverse(self, chunk: np.ndarray) -> None: ...

    def set_delay_ms(self, ms: int) -> None: ...

    def near(self, chunk: np.ndarray) -> None:
        echo = np.rint(self.echoes[self.calls] * 32768.0)
        self.calls += 1
        rest = chunk.astype(np.float64) - echo
        chunk[:] = np.clip(np.rint(rest * self.keep + echo / 100), -32768, 32767)


class InStep:
    """A canceller fed in step: far-end chunk k plays as microphone chunk k is captured and
    is heard in it ``delay`` samples later at ``gain``; what the canceller hands out is kept."""

    def __init__(self, noise_suppression: bool = False) -> None:
        self.now = 0.0
        self.t = 100.0
        self.gain = 0.5
        self.delay = 40
        #: How far each output block's reported play time may be off (seconds, uniform).
        self.jitter = 0.0
        #: How late the output reports each block played (seconds).
        self.reported_late = 0.0
        self._rng = np.random.default_rng(11)
        self.echoes: list[np.ndarray] = []
        self.apm = Suppressor(self.echoes)
        self.canceller = EchoCanceller(
            now=lambda: self.now,
            apm_factory=lambda cancel, suppress: self.apm,
            noise_suppression=noise_suppression,
        )
        self._played = np.zeros(CHUNK * 8, np.float32)
        self.fed = self.returned = 0
        #: Samples the canceller had taken but not handed back when the last ``play`` began:
        #: where that stretch's first sample is in what it returned.
        self.lag = 0

    def play(
        self, far: np.ndarray, voice: np.ndarray | None = None
    ) -> list[tuple[np.ndarray, np.ndarray | None]]:
        self.lag = self.fed - self.returned
        got = []
        for k in range(len(far) // CHUNK):
            chunk = far[k * CHUNK : (k + 1) * CHUNK]
            self._played = np.concatenate((self._played, chunk))[-CHUNK * 8 :]
            end = len(self._played) - self.delay
            echo = self.gain * self._played[end - CHUNK : end]
            self.echoes.append(echo)
            heard = echo if voice is None else echo + voice[k * CHUNK : (k + 1) * CHUNK]
            wobble = self._rng.uniform(-self.jitter, self.jitter) if self.jitter else 0.0
            played_at = self.t + self.reported_late + wobble
            self.canceller.tap.rendered(chunk, CAPTURE_RATE, played_at)
            self.now = self.t + 0.02
            got.append(self.canceller.process_with_speech(heard, self.t + 0.01))
            self.fed += len(heard)
            self.returned += len(got[-1][0])
            self.t += 0.01
        return got

    def underrun(self, chunks: int) -> None:
        """The output runs dry for ``chunks``: the speaker plays silence and the tap gets no
        blocks, while the microphone goes on capturing."""
        silence = np.zeros(CHUNK, np.float32)
        for _ in range(chunks):
            self._played = np.concatenate((self._played, silence))[-CHUNK * 8 :]
            self.echoes.append(np.zeros(CHUNK))
            self.now = self.t + 0.02
            got = self.canceller.process_with_speech(silence, self.t + 0.01)
            self.fed += CHUNK
            self.returned += len(got[0])
            self.t += 0.01


def heard_and_processed(
    room: InStep, got: list[tuple[np.ndarray, np.ndarray | None]]
) -> tuple[np.ndarray, np.ndarray]:
    """What the recognizer heard and what was processed, from the first sample of the last
    stretch played on (the canceller hands chunks out late: the far end it needs is played
    after the chunk's capture)."""
    processed = np.concatenate([p for p, _ in got])[room.lag :]
    return np.concatenate([p if s is None else s for p, s in got])[room.lag :], processed


def linear_erle(room: InStep) -> float:
    """The linear stage's echo return loss enhancement, as the canceller last figured it."""
    erle = room.canceller.stats.linear_erle_db
    assert erle is not None, "the linear stage has not measured its ERLE"
    return erle


def test_the_recognizer_hears_the_linear_stage_once_it_cancels_the_echo() -> None:
    room = InStep()
    learning = room.play(speechlike(0.1, seed=1))
    assert all(speech is None for _, speech in learning)  # not known yet: AEC3's output
    room.play(speechlike(3.0, seed=2))
    stats = room.canceller.stats
    assert linear_erle(room) >= 20.0
    # The user talks over the reply; AEC3 thins the voice to a third of its level.
    room.apm.keep = 0.3
    voice = speechlike(1.0, seed=8) * 0.5
    got = room.play(speechlike(1.0, seed=3), voice)
    heard, processed = heard_and_processed(room, got)
    n = len(heard)
    assert all(s is not None for _, s in got[1:])
    assert db(voice[:n], processed - voice[:n]) < 4.0  # what turn-taking judges: thinned
    assert db(voice[:n], heard - voice[:n]) >= 15.0  # what the recognizer hears: the voice
    assert stats.linear_seconds >= 1.0


def test_where_the_linear_stage_adds_more_than_it_takes_the_recognizer_hears_the_microphone() -> (
    None
):
    room = InStep()
    room.play(speechlike(3.0, seed=2))
    assert linear_erle(room) >= 20.0
    # The speaker no longer reaches the microphone (turned away, unplugged mid-reply): what the
    # filter subtracts is an echo that is not there, and all that is left of the reply.
    room.gain = 0.0
    voice = speechlike(1.0, seed=8) * 0.3
    got = room.play(speechlike(1.0, seed=3), voice)
    heard, _ = heard_and_processed(room, got)
    n = len(heard)
    assert all(s is not None for _, s in got[1:])  # still the recognizer's version
    settled = slice(2 * CHUNK, n)  # after the chunk it fades in
    np.testing.assert_allclose(heard[settled], voice[:n][settled], atol=1e-6)
    assert room.canceller.stats.linear_passed_seconds >= 0.9
    # Where it fades from one to the other, it does not jump.
    assert np.max(np.abs(np.diff(heard[: 2 * CHUNK]))) < 0.05


def test_when_the_linear_stage_is_known_again_the_recognizer_hears_its_output_at_once() -> None:
    room = InStep()
    room.play(speechlike(3.0, seed=2))
    assert linear_erle(room) >= 20.0
    # The echo turns over (another device): the filter adds more than it takes, so the
    # recognizer hears the microphone; it starts again, unheard while it learns the new path.
    room.gain = -0.3
    got = room.play(speechlike(6.0, seed=3))
    assert room.canceller._linear.resets == 1
    unheard = [speech is None for _, speech in got]
    again = max(k for k in range(1, len(got)) if unheard[k - 1] and not unheard[k])
    heard, _ = heard_and_processed(room, got)
    mic = np.concatenate(room.echoes[-len(got) :])
    first = slice((again - room.lag // CHUNK) * CHUNK, (again - room.lag // CHUNK + 1) * CHUNK)
    # Its first chunk is the filter's output (17 dB taken), not a fade from the microphone
    # heard before it started again (4 dB taken).
    assert db(mic[first], heard[first]) >= 12.0


def test_the_linear_stage_learns_through_the_wobble_of_the_outputs_reported_times() -> None:
    # A sound server reports play times a few milliseconds off, differently each block: read
    # by time, the far end would move by samples against the echo, and the filter never
    # learns it (it did not, through PulseAudio).
    room = InStep()
    room.jitter = 0.003
    room.play(speechlike(4.0, seed=2))
    assert linear_erle(room) >= 20.0
    assert room.canceller.stats.linear_seconds > 2.0


def test_the_linear_stage_waits_for_its_far_end_when_the_reported_times_run_ahead() -> None:
    # The output's times drift 15 ms later: by them, the far end the microphone needs has been
    # played sooner than by sample count, which the linear filter reads by. It waits for the
    # rest rather than taking silence for it.
    room = InStep()
    room.play(speechlike(3.0, seed=2))
    room.reported_late = 0.015
    room.play(speechlike(3.0, seed=3))
    assert linear_erle(room) >= 20.0


def test_when_the_microphone_stream_slips_the_linear_stage_is_placed_again_and_relearns() -> None:
    room = InStep()
    room.play(speechlike(3.0, seed=2))
    assert room.canceller.stats.linear_erle_db is not None
    # The microphone's driver delivers 60 ms of audio twice: from here on, by sample count,
    # the echo in it is of far end 60 ms earlier than before.
    room.echoes.extend([np.zeros(CHUNK)] * 6)
    room.canceller.process_with_speech(np.zeros(960, np.float32), room.t)
    got = room.play(speechlike(0.3, seed=4))
    stats = room.canceller.stats
    assert stats.linear_slips == 1 and room.canceller._linear.resets == 1
    assert got[-1][1] is None  # not heard while it learns the path again
    room.play(speechlike(3.0, seed=5))
    assert linear_erle(room) >= 20.0


def test_after_an_underrun_the_linear_stage_moves_its_path_to_where_the_output_resumed() -> None:
    room = InStep()
    room.play(speechlike(3.0, seed=2))
    assert linear_erle(room) >= 20.0
    # The output runs dry for 80 ms; it resumes with its blocks' times reported 11 samples
    # (0.7 ms) late, and the new run is placed by them: the far end the filter reads is now
    # 11 samples off the path it learned.
    room.underrun(8)
    room.reported_late = 11 / CAPTURE_RATE
    room.play(speechlike(REALIGN_CHUNKS * CHUNK / CAPTURE_RATE + 0.05, seed=3))
    stats = room.canceller.stats
    # The far end's samples come 11 samples sooner than the filter's place says.
    assert stats.linear_realigned == 1 and stats.linear_realigned_by == -11
    # Moved, not learned again: it cancels as well as before at once. (Learning the moved
    # path takes it to 16 dB in a second.)
    room.play(speechlike(0.4, seed=4))
    assert linear_erle(room) >= 20.0 and room.canceller._linear.resets == 0


def test_the_linear_stage_does_not_learn_a_voice_that_aec3_took_whole() -> None:
    room = InStep()
    room.play(speechlike(3.0, seed=2))
    # At a barge-in's onset AEC3 may suppress the voice whole for a moment, so those chunks
    # look like echo alone to it; the linear stage, which knows the echo, sees more than
    # echo and does not learn from them (a filter that learned the voice would cancel it).
    voice = speechlike(2.0, seed=8) * 0.5
    far = speechlike(2.0, seed=3)
    onset = int(0.4 * CAPTURE_RATE)
    room.apm.keep = 0.0
    got = room.play(far[:onset], voice[:onset])
    lag = room.lag
    room.apm.keep = 0.3
    got += room.play(far[onset:], voice[onset:])
    room.lag = lag
    heard, _ = heard_and_processed(room, got)
    assert db(voice[: len(heard)], heard - voice[: len(heard)]) >= 15.0
    assert room.canceller._linear.resets == 0


def test_a_linear_stage_whose_echo_path_moved_learns_it_again() -> None:
    room = InStep()
    room.play(speechlike(3.0, seed=2))
    assert room.canceller.stats.linear_erle_db is not None
    room.gain = 0.2  # the echo path moved: the learned filter takes out too much
    far = speechlike(1.2, seed=4)
    for k in range(0, len(far), CHUNK):
        got = room.play(far[k : k + CHUNK])
        if room.canceller._linear.resets:
            break
    assert room.canceller._linear.resets == 1
    got = room.play(far[k + CHUNK : k + 2 * CHUNK])
    assert got[-1][1] is None  # not heard while it learns again
    room.play(speechlike(3.0, seed=5))
    assert linear_erle(room) >= 15.0


def test_a_linear_stage_that_diverged_on_its_own_is_not_heard_until_it_learns_again() -> None:
    room = InStep()
    room.play(speechlike(3.0, seed=2))
    assert linear_erle(room) >= 20.0
    # The echo is gone for a moment (a muted speaker): the filter's estimate is all that is
    # left, so it forgets the path by itself. Then the echo comes back: the filter knows
    # nothing, and the recognizer must not hear the echo it leaves in.
    room.gain = 0.0
    room.play(speechlike(1.0, seed=3))
    assert room.canceller._linear.resets == 1
    room.gain = 0.5
    got = room.play(speechlike(0.1, seed=4))
    assert all(speech is None for _, speech in got)


def test_each_reply_checks_the_linear_stage_again_before_the_recognizer_hears_it() -> None:
    room = InStep()
    room.play(speechlike(3.0, seed=2))
    assert room.canceller.stats.linear_erle_db is not None
    # Between replies the sound server's delay moved: the echo comes 30 ms later.
    room.play(np.zeros(int(REPLY_GAP * 1.5 * CAPTURE_RATE), np.float32))
    room.delay = 40 + 480  # 30 ms at 16 kHz
    first = room.play(speechlike(0.3, seed=6))
    assert all(speech is None for _, speech in first)  # not shown to cancel this reply's echo
    later = room.play(speechlike(3.0, seed=7))
    assert later[-1][1] is not None  # learned again and shown
    assert linear_erle(room) >= 15.0


def test_a_reply_in_an_unchanged_room_is_heard_through_the_linear_stage_sooner() -> None:
    room = InStep()
    first = room.play(speechlike(3.0, seed=2))
    shown = next(k for k, (_, speech) in enumerate(first) if speech is not None)
    room.play(np.zeros(int(REPLY_GAP * 1.5 * CAPTURE_RATE), np.float32))
    # The next reply, the room as it was: the filter has only to show it still cancels.
    again = room.play(speechlike(1.0, seed=6))
    shown_again = next(k for k, (_, speech) in enumerate(again) if speech is not None)
    assert shown_again < LINEAR_JUDGED < shown  # fewer chunks than a fresh figure needs
    assert linear_erle(room) >= 15.0


def test_after_the_echo_has_died_away_the_microphone_passes_for_both() -> None:
    room = InStep()
    room.play(speechlike(3.0, seed=2))
    quiet = room.play(np.zeros(int((PASS_AFTER + 0.1) * CAPTURE_RATE), np.float32))
    assert quiet[-1][1] is None


def test_with_noise_suppression_the_recognizer_hears_the_suppressed_audio() -> None:
    room = InStep(noise_suppression=True)
    got = room.play(speechlike(3.0, seed=2))
    assert all(speech is None for _, speech in got)
    assert room.canceller.stats.linear_erle_db is None


# ----------------------------------------------------------------------- the microphone


class TwoVersions:
    """Processed: a quarter of the input; the recognizer's version: half of it, but only
    from sample ``from_sample`` of the stream on (before that: the same as processed)."""

    latency = 0.0

    def __init__(self, from_sample: int) -> None:
        self.from_sample = from_sample
        self.seen = 0

    def process(self, samples: np.ndarray, end_time: float) -> np.ndarray:
        return self.process_with_speech(samples, end_time)[0]

    def process_with_speech(
        self, samples: np.ndarray, end_time: float
    ) -> tuple[np.ndarray, np.ndarray | None]:
        start, self.seen = self.seen, self.seen + len(samples)
        if self.seen <= self.from_sample:
            return samples * 0.25, None
        index = np.arange(start, self.seen)
        return samples * 0.25, np.where(index >= self.from_sample, samples * 0.5, samples * 0.25)


async def test_frames_carry_the_recognizers_version_where_it_differs() -> None:
    x = ((np.arange(FRAME_SAMPLES * 3) % 997) / 2000.0).astype(np.float32)
    frames, _ = await frames_through(TwoVersions(700), x, 2)
    first, second = frames
    assert first.speech is None  # samples 0-511: no other version
    np.testing.assert_array_equal(first.heard, first.pcm)
    assert second.speech is not None  # samples 512-1023: the other version from 700 on
    expected = np.where(np.arange(512, 1024) >= 700, x[512:1024] * 0.5, x[512:1024] * 0.25).astype(
        np.float32
    )
    np.testing.assert_allclose(second.speech / 32768.0, expected, atol=1e-4)
    np.testing.assert_allclose(second.pcm / 32768.0, x[512:1024] * 0.25, atol=1e-4)


# -------------------------------------------------------------------- the conversations


class RecordingSTT(FakeSTT):
    """The scripted recognizer, keeping every frame it is sent."""

    def __init__(self) -> None:
        super().__init__()
        self.pushed: list[PCM] = []

    async def open(self, language: str) -> Any:
        session = await super().open(language)
        push = session.push

        async def keep(pcm: PCM) -> None:
            self.pushed.append(pcm)
            await push(pcm)

        session.push = keep  # type: ignore[method-assign]
        return session


def marked(pcm: PCM) -> PCM:
    return np.full_like(pcm, 1234)


@pytest.mark.parametrize("heard", [None, marked])
async def test_the_recognizer_is_sent_the_frames_speech_and_turn_taking_the_frames_pcm(
    tmp_path: Path, heard: Callable[[PCM], PCM] | None
) -> None:
    stt = RecordingSTT()
    async with Stage(
        tmp_path, mode="vad", script=[Speech(0.5, 1.5)], stt=stt, heard=heard
    ) as stage:
        await stage.run_until(lambda: bool(stage.finished()), limit=30)
    (turn,) = stage.finished()
    assert turn.user_text  # the turn was taken from the frames' pcm (the VAD) and answered
    assert stt.pushed
    if heard is None:
        assert not any(np.all(pcm == 1234) for pcm in stt.pushed)
    else:
        assert all(np.all(pcm == 1234) for pcm in stt.pushed)


async def test_a_speech_to_speech_engine_is_sent_the_frames_speech(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pushed: list[PCM] = []
    push = FakeAgentSession.push

    def keep(self: FakeAgentSession, pcm: PCM) -> None:
        pushed.append(pcm)
        push(self, pcm)

    monkeypatch.setattr(FakeAgentSession, "push", keep)
    engine = FakeSpeechAgent(script=("What is a good name for a cat?",))
    async with Stage(
        tmp_path, mode="vad", script=[Speech(0.5, 1.5)], agent=engine, heard=marked
    ) as stage:
        await stage.run_until(lambda: bool(stage.finished()), limit=30)
    (turn,) = stage.finished()
    assert turn.user_text
    assert pushed and all(np.all(pcm == 1234) for pcm in pushed)


@pytest.mark.parametrize("delay_ms", [40, 120, 250])
def test_a_fresh_filter_learns_the_echo_path_within_a_second(delay_ms: int) -> None:
    # Steps shared in proportion to what each partition learned: the few partitions that
    # carry the echo learn it fast (with even steps: 10, 7 and 5 dB here).
    far = speechlike(2.0, seed=1).astype(np.float64)
    room = EchoPath(delay_ms, -6, reverb=True)
    echo = RoomAcoustics(room)(far.astype(np.float32)).astype(np.float64)
    out = run_filter(LinearEchoFilter(), echo, far, adapt=1.0)
    span = slice(int(0.8 * CAPTURE_RATE), int(1.0 * CAPTURE_RATE))
    assert db(echo[span], out[span]) >= 10.5


def test_a_filter_follows_an_echo_path_that_moved_within_a_second() -> None:
    flt = LinearEchoFilter()
    far = speechlike(3.0, seed=1).astype(np.float64)
    echo = RoomAcoustics(EchoPath(120, -6, reverb=True))(far.astype(np.float32))
    run_filter(flt, echo.astype(np.float64), far, adapt=1.0)
    far = speechlike(2.0, seed=2).astype(np.float64)
    echo = RoomAcoustics(EchoPath(250, -6, reverb=True))(far.astype(np.float32))
    out = run_filter(flt, echo.astype(np.float64), far, adapt=1.0)
    span = slice(int(1.0 * CAPTURE_RATE), int(1.4 * CAPTURE_RATE))
    assert db(echo[span].astype(np.float64), out[span]) >= 9.0  # (even steps: 4 dB)
    assert flt.resets == 0
