"""Audio-native end-of-turn classifier: does the user *sound* finished?

Smart Turn v3.2 (BSD-2-Clause, Whisper-tiny encoder with a linear head, int8 ONNX) listens to the
last 8 s of the user's turn and returns the probability that the turn is complete. It hears
intonation and trailing words, so "What is the weather in Paris?" scores high while "I'd like to
book a table for…" followed by a thinking pause scores low. The hands-free turn logic uses it to
end a turn early when the words sound finished and to wait longer when they do not.

The model file ships inside the ``pipecat-ai`` wheel; only the file is used (pipecat itself is
never imported). The Whisper-style log-mel front end is re-implemented here with numpy and
matches the one the model was trained with (``transformers.WhisperFeatureExtractor`` with
``chunk_length=8`` and ``do_normalize=True``, as pipecat feeds it).

Feed the audio of the current turn so far, including the short pause that made the caller ask
(pipecat asks after ~0.2 s of silence); the newest 8 s are used.

The model is int8, and onnxruntime picks the integer kernels by CPU: exact sums where the CPU
has VNNI or AMX, saturating 16-bit pair sums with plain AVX2. The same audio therefore scores a
little differently from one machine to another (a few hundredths on natural speech, more on
synthetic speech that sits near an edge), so thresholds need margins, not exact values.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from assistant.audio.frames import CAPTURE_RATE
from assistant.engines.base import PCM, EngineError, EngineUnavailable

if TYPE_CHECKING:
    import onnxruntime as ort

ENGINE = "smart-turn"
PIP_INSTALL = "pip install --no-deps pipecat-ai==1.14.0"
MODEL_FILE = "smart-turn-v3.2-cpu.onnx"

#: The model sees exactly this much audio: the newest 8 s, zero-padded in front when shorter.
WINDOW_SECONDS = 8
WINDOW_SAMPLES = WINDOW_SECONDS * CAPTURE_RATE

# Whisper front end: 25 ms Hann windows every 10 ms, 80 Slaney mel bands over 0–8 kHz.
N_FFT = 400
HOP = 160
N_MELS = 80
N_FRAMES = WINDOW_SAMPLES // HOP  # 800


def smart_turn_model_path() -> Path:
    """The Smart Turn ONNX file inside the installed ``pipecat-ai`` wheel.

    ``find_spec`` on the top-level package only locates it: pipecat's ``__init__`` (which needs
    its many dependencies) is not run.
    """
    spec = importlib.util.find_spec("pipecat")
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        path = Path(root) / "audio" / "turn" / "smart_turn" / "data" / MODEL_FILE
        if path.is_file():
            return path
    where = f" (looked in {roots[0]})" if roots else ""
    raise EngineUnavailable(
        f"End-of-turn model {MODEL_FILE} not found{where}. It ships inside the pipecat-ai "
        f"wheel; install just the file with: {PIP_INSTALL}",
        engine=ENGINE,
        retryable=False,
    )


def smart_turn_available() -> bool:
    """True if the model file and onnxruntime are both installed (nothing is loaded)."""
    try:
        smart_turn_model_path()
    except EngineUnavailable:
        return False
    return importlib.util.find_spec("onnxruntime") is not None


# ------------------------------------------------------------------------------------ features


def _hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    mel = 3.0 * hz / 200.0
    log = hz >= 1000.0
    mel[log] = 15.0 + np.log(hz[log] / 1000.0) * (27.0 / np.log(6.4))
    return mel


def _mel_to_hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    hz = 200.0 * mel / 3.0
    log = mel >= 15.0
    hz[log] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel[log] - 15.0))
    return hz


def _mel_filterbank() -> npt.NDArray[np.float32]:
    """(N_MELS, N_FFT // 2 + 1) triangular filters with Slaney area normalisation."""
    edges = _mel_to_hz(np.linspace(0.0, _hz_to_mel(np.array([CAPTURE_RATE / 2.0]))[0], N_MELS + 2))
    bins = np.linspace(0.0, CAPTURE_RATE / 2.0, N_FFT // 2 + 1)
    slopes = edges[:, None] - bins[None, :]
    down = -slopes[:-2] / np.diff(edges)[:-1, None]
    up = slopes[2:] / np.diff(edges)[1:, None]
    filters = np.maximum(0.0, np.minimum(down, up))
    filters *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return filters.astype(np.float32)


_MEL = _mel_filterbank()
_WINDOW = np.hanning(N_FFT + 1)[:-1].astype(np.float32)  # periodic Hann, as torch.hann_window


def fit_window(pcm16k: PCM) -> npt.NDArray[np.float32]:
    """The newest ``WINDOW_SECONDS`` of int16 audio as float32 in [-1, 1], zero-padded in front."""
    x = np.asarray(pcm16k)
    if x.ndim != 1:
        raise ValueError(f"Expected mono 1-D audio, got shape {x.shape}")
    x = x[-WINDOW_SAMPLES:]
    out = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
    if len(x):
        out[-len(x) :] = x.astype(np.float32) * (1.0 / 32768.0)
    return out


def log_mel_features(audio: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Whisper log-mel features of exactly ``WINDOW_SAMPLES`` of audio: shape (80, 800).

    The waveform is first normalised to zero mean and unit variance over the whole (padded)
    window, which is what the model was trained on. Computed in float32, which matches the
    float64 reference to ~1e-5 (far below what moves the model's output).
    """
    if audio.shape != (WINDOW_SAMPLES,):
        raise ValueError(f"Expected {WINDOW_SAMPLES} samples, got shape {audio.shape}")
    x = audio.astype(np.float32)
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    padded = np.pad(x, N_FFT // 2, mode="reflect")
    # Frames are views into ``padded``; the last (N_FRAMES + 1)th frame is dropped, like Whisper.
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:N_FRAMES]
    spectrum = np.fft.rfft(frames * _WINDOW, axis=-1)
    power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
    log_spec = np.log10(np.maximum(_MEL @ power.T, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


# --------------------------------------------------------------------------------------- model


class SmartTurn:
    """Probability that the user's turn is complete, from the sound of its last 8 s.

    The model loads on the first call (about 0.1 s) and is shared by every later call. Calls are
    thread-safe: run them from a worker thread (``asyncio.to_thread``), as each takes tens of ms.
    """

    def __init__(self, model_path: Path | None = None, threads: int = 1) -> None:
        self.model_path = model_path
        self.threads = max(1, threads)
        self._session: ort.InferenceSession | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load the model now (otherwise the first ``end_probability`` call does it)."""
        self._get_session()

    def _get_session(self) -> ort.InferenceSession:
        with self._lock:
            if self._session is None:
                self._session = self._open()
            return self._session

    def _open(self) -> ort.InferenceSession:
        try:
            import onnxruntime as ort
        except ImportError:
            raise EngineUnavailable(
                "End-of-turn detection needs onnxruntime. Install it with: pip install onnxruntime",
                engine=ENGINE,
                retryable=False,
            ) from None
        path = self.model_path or smart_turn_model_path()
        if not path.is_file():
            raise EngineUnavailable(
                f"End-of-turn model not found at {path}. Install it with: {PIP_INSTALL}",
                engine=ENGINE,
                retryable=False,
            )
        opts = ort.SessionOptions()
        # Few threads, run sequentially, no spinning: the check runs while speech recognition
        # and the language model compete for the same two cores.
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(
                str(path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own exception types
            raise EngineUnavailable(
                f"Could not load the end-of-turn model {path}: {e}. Reinstall it with: "
                f"{PIP_INSTALL} --force-reinstall",
                engine=ENGINE,
                retryable=False,
            ) from e
        inputs = {i.name: i.shape for i in session.get_inputs()}
        if list(inputs) != ["input_features"] or list(inputs["input_features"][1:]) != [
            N_MELS,
            N_FRAMES,
        ]:
            raise EngineUnavailable(
                f"Unexpected end-of-turn model inputs {inputs} in {path}: expected "
                f"input_features [batch, {N_MELS}, {N_FRAMES}]. Install it with: {PIP_INSTALL}",
                engine=ENGINE,
                retryable=False,
            )
        return session

    def end_probability(self, pcm16k: PCM) -> float:
        """Probability in [0, 1] that the turn in ``pcm16k`` (16 kHz int16) is finished.

        Pass the whole turn so far; only its newest ``WINDOW_SECONDS`` are used. Empty or
        silent audio is allowed (the answer is then not meaningful).
        """
        session = self._get_session()
        features = log_mel_features(fit_window(pcm16k))[None]
        try:
            (out,) = session.run(None, {"input_features": features})
        except Exception as e:
            raise EngineError(f"End-of-turn model failed: {e}", engine=ENGINE) from e
        # The exported graph ends in a sigmoid although its output is named "logits".
        return float(np.clip(np.asarray(out).reshape(-1)[0], 0.0, 1.0))
