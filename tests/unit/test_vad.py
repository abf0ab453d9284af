"""Voice activity detection: Silero on real and synthesized speech and on noise; test stand-ins."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from assistant.audio.frames import CAPTURE_RATE, FRAME_SAMPLES
from assistant.audio.vad import (
    EnergyVAD,
    LookingVAD,
    ScriptedVAD,
    SileroVAD,
    VoiceActivityDetector,
    rms_dbfs,
)
from assistant.engines.base import PCM

SPEECH = Path(__file__).parent.parent / "data" / "speech"
RNG_SEED = 1234


def frames(pcm: PCM) -> list[PCM]:
    n = len(pcm) // FRAME_SAMPLES
    return [pcm[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES] for i in range(n)]


def probabilities(vad: VoiceActivityDetector, pcm: PCM) -> np.ndarray:
    return np.array([vad.process(f) for f in frames(pcm)])


def to_pcm(x: np.ndarray, peak_dbfs: float) -> PCM:
    """Scale float audio to a given peak level and convert to int16."""
    x = x / (np.max(np.abs(x)) or 1.0) * 10 ** (peak_dbfs / 20)
    return (x * 32767).astype(np.int16)


def load(name: str) -> PCM:
    pcm, rate = sf.read(SPEECH / name, dtype="int16")
    assert rate == CAPTURE_RATE
    return pcm


def padded(pcm: PCM, seconds: float = 1.0) -> PCM:
    pad = np.zeros(int(seconds * CAPTURE_RATE), dtype=np.int16)
    return np.concatenate([pad, pcm, pad])


@pytest.fixture(scope="module")
def silero() -> SileroVAD:
    return SileroVAD()


# --------------------------------------------------------------------------------- noise makers


def white(seconds: float, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(int(seconds * CAPTURE_RATE))


def pink(seconds: float, rng: np.random.Generator) -> np.ndarray:
    n = int(seconds * CAPTURE_RATE)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / CAPTURE_RATE)
    spectrum[1:] /= np.sqrt(f[1:])  # 1/f power
    spectrum[0] = 0
    return np.fft.irfft(spectrum, n)


def hum(seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * CAPTURE_RATE)) / CAPTURE_RATE
    mains = sum(np.sin(2 * np.pi * 50 * k * t) / k for k in range(1, 8))  # 50 Hz and harmonics
    return mains + 0.05 * rng.standard_normal(len(t))


def clicks(seconds: float, rng: np.random.Generator) -> np.ndarray:
    x = 0.01 * rng.standard_normal(int(seconds * CAPTURE_RATE))
    for at in rng.integers(0, len(x) - 40, size=int(seconds * 4)):
        x[at : at + 40] += np.hanning(40) * rng.choice([-1.0, 1.0])  # keyboard-like ticks
    return x


# --------------------------------------------------------------------------------- Silero


@pytest.mark.parametrize(
    "name",
    ["librivox_austen_0890.wav", "cmu_go_forward.wav", "espeak_en_timer.wav", "espeak_de_kino.wav"],
)
def test_silero_finds_speech(silero: SileroVAD, name: str) -> None:
    speech = padded(load(name))
    silero.reset()
    probs = probabilities(silero, speech)
    level = np.array([rms_dbfs(f) for f in frames(speech)])
    voiced = level > level.max() - 25  # clean recordings: loud frames are speech
    recall = (probs[voiced] > silero.threshold).mean()
    assert recall > 0.8, f"only {recall:.0%} of voiced frames detected"
    second = CAPTURE_RATE // FRAME_SAMPLES
    # The padding of digital silence: nothing before the clip, nothing 0.5 s after its end.
    assert not (probs[: second - 1] > silero.threshold).any()
    assert not (probs[-second // 2 :] > silero.threshold).any()


def test_silero_finds_speech_in_noise(silero: SileroVAD) -> None:
    rng = np.random.default_rng(RNG_SEED)
    speech = load("librivox_austen_0890.wav").astype(np.float64)
    noise = pink(len(speech) / CAPTURE_RATE, rng)
    # 10 dB speech-to-noise ratio
    noise *= np.sqrt(np.mean(speech**2) / np.mean(noise**2)) / np.sqrt(10)
    silero.reset()
    probs = probabilities(silero, (speech + noise).clip(-32768, 32767).astype(np.int16))
    assert (probs > silero.threshold).mean() > 0.5


@pytest.mark.parametrize("make", [white, pink, hum, clicks], ids=lambda f: f.__name__)
@pytest.mark.parametrize("level", [-30.0, -6.0])
def test_silero_ignores_noise(
    silero: SileroVAD, make: Callable[[float, np.random.Generator], np.ndarray], level: float
) -> None:
    rng = np.random.default_rng(RNG_SEED)
    noise = to_pcm(make(10.0, rng), level)
    silero.reset()
    flagged = (probabilities(silero, noise) > silero.threshold).mean()
    assert flagged < 0.03, f"{make.__name__} at {level} dBFS: {flagged:.1%} of frames"


def test_silero_reset_restarts_the_stream(silero: SileroVAD) -> None:
    speech = load("cmu_something.wav")
    silero.reset()
    first = probabilities(silero, speech)
    second = probabilities(silero, speech)  # state carried over from the first pass
    silero.reset()
    third = probabilities(silero, speech)
    np.testing.assert_allclose(first, third, atol=1e-5)
    assert not np.allclose(first[:5], second[:5], atol=1e-5)


def _looks(silero: SileroVAD, pcm: PCM, hops: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Frame probabilities, and the probabilities of looks ``hops`` samples into each next
    frame (as a capture with a short block hands them out between two frames)."""
    silero.reset()
    framed, looked = [], []
    for k, frame in enumerate(frames(pcm)):
        if k:
            start = k * FRAME_SAMPLES
            for fresh in hops:
                window = pcm[start + fresh - FRAME_SAMPLES : start + fresh]
                looked.append(silero.look(window, fresh))
        framed.append(silero.process(frame))
    return np.array(framed), np.array(looked)


def test_silero_looks_between_frames_leave_the_stream_as_it_was(silero: SileroVAD) -> None:
    speech = padded(load("cmu_go_forward.wav"), 0.5)
    silero.reset()
    plain = probabilities(silero, speech)
    framed, _ = _looks(silero, speech, (160, 320, 480))
    np.testing.assert_allclose(framed, plain, atol=1e-6)


def test_silero_looks_between_frames_hear_speech_and_not_silence(silero: SileroVAD) -> None:
    speech = padded(load("librivox_austen_0890.wav"))
    _, looked = _looks(silero, speech, (160, 320))
    level = np.array([rms_dbfs(f) for f in frames(speech)])
    # A look 160 or 320 samples into frame k sees mostly frame k-1: judge it by that frame.
    voiced = np.repeat((level > level.max() - 25)[:-1], 2)
    recall = (looked[voiced] > silero.threshold).mean()
    assert recall > 0.8, f"only {recall:.0%} of looks at voiced audio detected"
    second = CAPTURE_RATE // FRAME_SAMPLES
    assert not (looked[: 2 * (second - 2)] > silero.threshold).any()


def test_silero_looks_with_the_samples_in_front_of_the_window_as_its_context() -> None:
    vad = SileroVAD()
    real = vad._session
    seen: list[np.ndarray] = []

    class Recording:
        def run(self, outputs: object, feeds: dict[str, np.ndarray]) -> object:
            seen.append(feeds["input"].copy())
            return real.run(outputs, feeds)

    vad._session = Recording()  # type: ignore[assignment]
    ramp = np.arange(3 * FRAME_SAMPLES, dtype=np.int16)
    vad.process(ramp[:FRAME_SAMPLES])
    vad.process(ramp[FRAME_SAMPLES : 2 * FRAME_SAMPLES])
    for fresh in (1, 63, 64, 160, 511):
        end = 2 * FRAME_SAMPLES + fresh
        vad.look(ramp[end - FRAME_SAMPLES : end], fresh)
        expected = ramp[end - FRAME_SAMPLES - 64 : end].astype(np.float32) / 32768.0
        np.testing.assert_array_equal(seen[-1][0], expected)


def test_silero_rejects_a_look_at_a_whole_frame(silero: SileroVAD) -> None:
    with pytest.raises(ValueError, match="512"):
        silero.look(np.zeros(FRAME_SAMPLES, dtype=np.int16), 0)


def test_silero_rejects_wrong_frame_size(silero: SileroVAD) -> None:
    with pytest.raises(ValueError, match="512"):
        silero.process(np.zeros(480, dtype=np.int16))


def test_detectors_satisfy_protocol(silero: SileroVAD) -> None:
    for vad in (silero, EnergyVAD(), ScriptedVAD([])):
        assert isinstance(vad, VoiceActivityDetector)
    assert isinstance(silero, LookingVAD)


# --------------------------------------------------------------------------------- stand-ins


def test_scripted_vad_follows_its_script() -> None:
    vad = ScriptedVAD([(0.5, 1.0), (2.0, 2.5)])
    silence = np.zeros(FRAME_SAMPLES, dtype=np.int16)
    probs = [vad.process(silence) for _ in range(int(3.0 * CAPTURE_RATE / FRAME_SAMPLES))]
    times = (np.arange(len(probs)) + 0.5) * FRAME_SAMPLES / CAPTURE_RATE
    expected = [1.0 if 0.5 <= t < 1.0 or 2.0 <= t < 2.5 else 0.0 for t in times]
    assert probs == expected
    assert sum(probs) == pytest.approx(1.0 * CAPTURE_RATE / FRAME_SAMPLES, abs=2)
    vad.reset()  # the script follows the source's clock: no rewind
    assert vad.process(silence) == 0.0


def test_energy_vad_thresholds_level() -> None:
    vad = EnergyVAD(threshold_dbfs=-35)
    t = np.arange(FRAME_SAMPLES) / CAPTURE_RATE
    tone = np.sin(2 * np.pi * 440 * t)
    loud = to_pcm(tone, -10)  # RMS ≈ -13 dBFS
    quiet = to_pcm(tone, -50)
    assert vad.process(loud) == 1.0
    assert vad.process(quiet) == 0.0
    assert vad.process(np.zeros(FRAME_SAMPLES, dtype=np.int16)) == 0.0


def test_rms_dbfs() -> None:
    t = np.arange(CAPTURE_RATE) / CAPTURE_RATE
    full_sine = (np.sin(2 * np.pi * 1000 * t) * 32767).astype(np.int16)
    assert rms_dbfs(full_sine) == pytest.approx(-3.01, abs=0.05)
    assert rms_dbfs(np.zeros(10, dtype=np.int16)) == float("-inf")
    assert rms_dbfs(np.zeros(0, dtype=np.int16)) == float("-inf")
