"""Smart Turn end-of-turn model: features, real inference on finished and unfinished speech."""

from __future__ import annotations

import importlib.util
import re
import statistics
import threading
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import soundfile as sf

from assistant.audio import smart_turn as st
from assistant.audio.frames import CAPTURE_RATE
from assistant.audio.smart_turn import (
    N_FRAMES,
    N_MELS,
    WINDOW_SAMPLES,
    SmartTurn,
    fit_window,
    log_mel_features,
    smart_turn_available,
)
from assistant.engines.base import PCM, EngineUnavailable

DATA = Path(__file__).parent.parent / "data"
SPEECH = DATA / "speech"
TURNS = DATA / "turns"

needs_model = pytest.mark.skipif(
    not smart_turn_available(), reason=f"Smart Turn model not installed ({st.PIP_INSTALL})"
)


def read(path: Path) -> PCM:
    pcm, rate = sf.read(path, dtype="int16")
    assert rate == CAPTURE_RATE
    return pcm


def seconds(pcm: PCM, start: float | None = None, end: float | None = None) -> PCM:
    a = None if start is None else int(start * CAPTURE_RATE)
    b = None if end is None else int(end * CAPTURE_RATE)
    return pcm[a:b]


def with_pause(pcm: PCM, pause: float = 0.2, seed: int = 7) -> PCM:
    """Append the quiet room noise a microphone hears while the VAD waits for more speech."""
    noise = np.random.default_rng(seed).normal(0.0, 20.0, int(pause * CAPTURE_RATE))
    return np.concatenate([pcm, noise.astype(np.int16)])


@pytest.fixture(scope="module")
def model() -> SmartTurn:
    if not smart_turn_available():
        pytest.skip(f"Smart Turn model not installed ({st.PIP_INSTALL})")
    m = SmartTurn()
    m.load()
    return m


# ------------------------------------------------------------------------------------ features


def _vendored_reference() -> ModuleType:
    """The numpy Whisper front end that ships next to the model (loaded by path, no pipecat)."""
    if not smart_turn_available():
        pytest.skip("Smart Turn model not installed")
    path = st.smart_turn_model_path().parent.parent / "_whisper_features.py"
    if not path.is_file():
        pytest.skip(f"no reference front end at {path}")
    spec = importlib.util.spec_from_file_location("smart_turn_reference_features", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "name", ["librivox_austen_0890.wav", "cmu_go_forward.wav", "espeak_de_kino.wav"]
)
def test_features_match_the_reference_front_ends(name: str) -> None:
    window = fit_window(read(SPEECH / name))
    ours = log_mel_features(window)
    assert ours.shape == (N_MELS, N_FRAMES) and ours.dtype == np.float32

    # The front end the model ships with (float64 throughout).
    ref = _vendored_reference().compute_whisper_log_mel_features(window, do_normalize=True)
    assert np.abs(ours - ref).max() < 1e-4

    # faster-whisper's Whisper front end, given the same zero-mean unit-variance waveform.
    from faster_whisper.feature_extractor import FeatureExtractor

    normalized = (window - window.mean()) / np.sqrt(window.var() + 1e-7)
    fw = FeatureExtractor(feature_size=N_MELS, chunk_length=8)(normalized, padding=0)
    assert fw.shape == ours.shape
    assert np.abs(ours - fw).max() < 1e-4


def test_features_by_hand_on_a_tone_after_padding() -> None:
    """1 s of a 1 kHz tone at the end of the window: padding in front, energy in the 1 kHz band."""
    t = np.arange(CAPTURE_RATE) / CAPTURE_RATE
    tone = (0.3 * 32767 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.int16)
    feats = log_mel_features(fit_window(tone))

    # log10 values are clamped to 8 below the peak, then mapped by (x + 4) / 4: a range of 2.
    assert feats.max() - feats.min() == pytest.approx(2.0, abs=1e-5)
    # The 7 s of zero padding come first and sit on the floor; the tone is in the last 100 frames.
    assert np.all(feats[:, :690] == feats.min())
    centres = st._mel_to_hz(
        np.linspace(0.0, st._hz_to_mel(np.array([CAPTURE_RATE / 2.0]))[0], N_MELS + 2)
    )[1:-1]
    loudest = np.bincount(feats[:, 710:790].argmax(axis=0), minlength=N_MELS).argmax()
    assert loudest == np.abs(centres - 1000.0).argmin()


def test_window_keeps_the_newest_eight_seconds() -> None:
    short = np.full(CAPTURE_RATE, 1000, dtype=np.int16)
    w = fit_window(short)
    assert w.shape == (WINDOW_SAMPLES,) and w.dtype == np.float32
    assert np.all(w[:-CAPTURE_RATE] == 0.0)  # padded in front, as the model was trained
    assert w[-1] == pytest.approx(1000 / 32768)

    long = np.zeros(20 * CAPTURE_RATE, dtype=np.int16)
    long[-WINDOW_SAMPLES] = 123  # the oldest sample that still fits
    long[-WINDOW_SAMPLES - 1] = 456  # one too old
    w = fit_window(long)
    assert w[0] == pytest.approx(123 / 32768) and not np.any(w == np.float32(456 / 32768))

    assert np.all(fit_window(np.zeros(0, dtype=np.int16)) == 0.0)
    with pytest.raises(ValueError):
        fit_window(np.zeros((2, 100), dtype=np.int16))


# ---------------------------------------------------------------------------------- inference
#
# The model is int8, and onnxruntime runs its integer products with whatever kernels the CPU
# offers: exact 32-bit sums with AVX512-VNNI/AVX-VNNI/AMX, saturating 16-bit pair sums
# (VPMADDUBSW) with plain AVX2/AVX512BW. So the same audio scores differently by machine — a few
# hundredths on natural speech, but up to 0.7 on synthetic speech whose score sits on an edge
# (eSpeak's "What is the weather like in Paris today?": 0.20 with VNNI, 0.90 with AVX2, and
# 0.11–0.30 under ±1 LSB of dither). Each threshold below therefore leaves a margin of at least
# 0.1 around the scores measured on both kernel families (AVX2 through `qemu-x86_64 -cpu
# Haswell`), and synthetic inputs are used only where both agree.


@needs_model
@pytest.mark.parametrize("pause", [0.0, 0.2])
def test_real_speech_finished_scores_high_trailing_off_scores_low(
    model: SmartTurn, pause: float
) -> None:
    """Two consecutive LibriVox lines: the first ends where the reader runs on into the second.

    Measured (VNNI / AVX2): finished 0.94 / 0.89 without a pause, 0.94 / 0.97 with one; runs on
    0.10 / 0.12 and 0.07 / 0.04.
    """
    finished = model.end_probability(with_pause(read(SPEECH / "librivox_austen_0890.wav"), pause))
    runs_on = model.end_probability(with_pause(read(SPEECH / "librivox_austen_0880.wav"), pause))
    assert finished > 0.7
    assert runs_on < 0.3


@needs_model
@pytest.mark.parametrize(
    ("name", "cut"),
    [
        ("cmu_something.wav", 1.48),  # "go somewhere and do | something"
        ("librivox_austen_0890.wav", 3.84),  # "... rather selfish is | to be ill disposed"
    ],
)
def test_real_speech_cut_mid_sentence_scores_lower(model: SmartTurn, name: str, cut: float) -> None:
    """Measured (VNNI / AVX2): "something" 0.99 / 0.99 whole, 0.48 / 0.13 cut; the LibriVox
    line 0.94 / 0.97 whole, 0.02 / 0.09 cut."""
    pcm = read(SPEECH / name)
    whole = model.end_probability(with_pause(pcm))
    cut_short = model.end_probability(with_pause(seconds(pcm, end=cut)))
    assert whole > 0.7
    assert whole - cut_short > 0.4


@needs_model
def test_synthesized_sentence_scores_higher_than_its_cut(model: SmartTurn) -> None:
    """ "I would like to book a ta|ble for four people tonight." eSpeak's flat prosody only
    separates when the audio stops at the last sound.

    Measured (VNNI / AVX2): whole 0.94 / 0.97, the three cuts 0.14 / 0.14 on average.
    """
    pcm = read(TURNS / "espeak_book_table.wav")
    whole = model.end_probability(pcm)
    cut_short = statistics.mean(model.end_probability(seconds(pcm, end=c)) for c in (1.0, 1.1, 1.2))
    assert whole > 0.8
    assert whole - cut_short > 0.5


@needs_model
def test_silence_noise_and_odd_lengths_give_valid_probabilities(model: SmartTurn) -> None:
    rng = np.random.default_rng(3)
    inputs = [
        np.zeros(0, dtype=np.int16),
        np.zeros(CAPTURE_RATE, dtype=np.int16),
        rng.normal(0, 3000, 2 * CAPTURE_RATE).astype(np.int16),
        np.full(CAPTURE_RATE, 32767, dtype=np.int16),
        seconds(read(SPEECH / "cmu_go_forward.wav"), end=0.1),
    ]
    for pcm in inputs:
        p = model.end_probability(pcm)
        assert isinstance(p, float) and 0.0 <= p <= 1.0


@needs_model
def test_long_turn_uses_its_last_eight_seconds(model: SmartTurn) -> None:
    last = read(SPEECH / "librivox_austen_0890.wav")
    earlier = np.concatenate(
        [read(SPEECH / f) for f in ("librivox_austen_0880.wav", "cmu_something.wav")]
    )
    turn = np.concatenate([np.resize(earlier, 20 * CAPTURE_RATE - len(last)), last])  # 20 s
    assert len(turn) == 20 * CAPTURE_RATE
    p = model.end_probability(turn)
    assert 0.0 <= p <= 1.0
    assert p == model.end_probability(turn[-WINDOW_SAMPLES:])
    assert p != model.end_probability(turn[: 10 * CAPTURE_RATE])


@needs_model
def test_loads_once_and_is_safe_across_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[int] = []
    real_open = SmartTurn._open

    def counting_open(self: SmartTurn) -> object:
        opened.append(1)
        time.sleep(0.05)  # widen the window in which a second loader could slip in
        return real_open(self)

    monkeypatch.setattr(SmartTurn, "_open", counting_open)
    model = SmartTurn()
    pcm = read(SPEECH / "cmu_go_forward.wav")
    barrier = threading.Barrier(3)
    results: list[float] = []

    def worker() -> None:
        barrier.wait()
        results.append(model.end_probability(pcm))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(opened) == 1
    assert len(results) == 3 and len(set(results)) == 1


def test_missing_model_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EngineUnavailable, match=re.escape(st.PIP_INSTALL)) as e:
        SmartTurn(model_path=Path("/nonexistent/smart-turn.onnx")).end_probability(
            np.zeros(100, np.int16)
        )
    assert e.value.retryable is False
    assert "pip install --no-deps pipecat-ai==1.14.0" in str(e.value)

    monkeypatch.setattr(st.importlib.util, "find_spec", lambda name: None)
    assert smart_turn_available() is False
    with pytest.raises(EngineUnavailable, match=re.escape(st.PIP_INSTALL)):
        SmartTurn().load()
