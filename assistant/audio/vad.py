"""Voice activity detection: speech probability of each 32 ms frame of 16 kHz audio.

``SileroVAD`` is the real detector (Silero VAD v6, shipped inside faster-whisper, run with
onnxruntime on one thread). ``EnergyVAD`` and ``ScriptedVAD`` are simple stand-ins for tests of
the turn logic.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from assistant.audio.frames import CAPTURE_RATE, FRAME_SAMPLES
from assistant.engines.base import PCM, EngineUnavailable

#: Samples of the previous frame that Silero v6 sees in front of each new frame.
_CONTEXT = 64


@runtime_checkable
class VoiceActivityDetector(Protocol):
    def process(self, pcm: PCM) -> float:
        """Speech probability in [0, 1] of one ``FRAME_SAMPLES`` frame at ``CAPTURE_RATE``."""
        ...

    def reset(self) -> None:
        """Forget the past: the next frame starts a new stream."""
        ...


@runtime_checkable
class LookingVAD(VoiceActivityDetector, Protocol):
    def look(self, pcm: PCM, fresh: int) -> float:
        """Speech probability of the latest ``FRAME_SAMPLES`` (an ``AudioLook``: the last
        ``fresh`` of them came after the last frame ``process`` was given), as the next frame
        would be judged; the detector's state is left as it is."""
        ...


def silero_model_path() -> Path:
    """The Silero VAD ONNX file that ships inside the faster-whisper wheel."""
    spec = importlib.util.find_spec("faster_whisper")
    if spec is None or spec.origin is None:
        raise EngineUnavailable(
            "Voice detection needs faster-whisper (it ships the Silero VAD model). "
            "Install it with: pip install faster-whisper==1.2.1",
            engine="silero-vad",
            retryable=False,
        )
    path = Path(spec.origin).parent / "assets" / "silero_vad_v6.onnx"
    if not path.is_file():
        raise EngineUnavailable(
            f"Silero VAD model not found at {path}. "
            "Reinstall it with: pip install --force-reinstall faster-whisper==1.2.1",
            engine="silero-vad",
            retryable=False,
        )
    return path


class SileroVAD:
    """Streaming Silero VAD v6. Not thread-safe: one instance per audio stream.

    ``threshold`` is the probability above which callers usually treat a frame as speech; it is
    kept here so the turn logic and the detector agree on one number.
    """

    def __init__(self, threshold: float = 0.5, model_path: Path | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise EngineUnavailable(
                "Voice detection needs onnxruntime. Install it with: pip install onnxruntime",
                engine="silero-vad",
                retryable=False,
            ) from None
        self.threshold = threshold
        opts = ort.SessionOptions()
        # One thread, run sequentially: ~0.1 ms a frame, and no spinning threads that steal
        # CPU from speech recognition and the language model.
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(
            str(model_path or silero_model_path()),
            sess_options=opts,
            providers=["CPUExecutionProvider"],
        )
        names = {i.name: i.shape for i in self._session.get_inputs()}
        if set(names) != {"input", "h", "c"} or names["input"][-1] != FRAME_SAMPLES + _CONTEXT:
            raise EngineUnavailable(
                f"Unexpected Silero VAD model inputs {names}: reinstall faster-whisper==1.2.1",
                engine="silero-vad",
                retryable=False,
            )
        self._input = np.zeros((1, FRAME_SAMPLES + _CONTEXT), dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._input[:] = 0.0

    def process(self, pcm: PCM) -> float:
        if len(pcm) != FRAME_SAMPLES:
            raise ValueError(f"SileroVAD expects {FRAME_SAMPLES}-sample frames, got {len(pcm)}")
        x = self._input
        x[0, :_CONTEXT] = x[0, -_CONTEXT:]  # the tail of the previous frame
        x[0, _CONTEXT:] = pcm.astype(np.float32) * (1.0 / 32768.0)
        prob, self._h, self._c = self._session.run(None, {"input": x, "h": self._h, "c": self._c})
        return float(np.asarray(prob).reshape(-1)[0])

    def look(self, pcm: PCM, fresh: int) -> float:
        if len(pcm) != FRAME_SAMPLES or not 0 < fresh < FRAME_SAMPLES:
            raise ValueError(f"SileroVAD looks at {FRAME_SAMPLES} samples, 1 to 511 of them new")
        x = np.empty_like(self._input)
        # The context in front of the window is still in the last frame's input.
        x[0, :_CONTEXT] = self._input[0, fresh : fresh + _CONTEXT]
        x[0, _CONTEXT:] = pcm.astype(np.float32) * (1.0 / 32768.0)
        prob, _, _ = self._session.run(None, {"input": x, "h": self._h, "c": self._c})
        return float(np.asarray(prob).reshape(-1)[0])


class EnergyVAD:
    """Speech = RMS level above ``threshold_dbfs``. Fooled by any loud noise: tests only."""

    def __init__(self, threshold_dbfs: float = -35.0) -> None:
        self.threshold_dbfs = threshold_dbfs

    def process(self, pcm: PCM) -> float:
        return 1.0 if rms_dbfs(pcm) > self.threshold_dbfs else 0.0

    def reset(self) -> None:
        pass


class ScriptedVAD:
    """Reports speech inside given (start, end) seconds, timed by the frames it has processed.

    The script follows the audio source's clock, so ``reset`` (a new stream of the same source)
    does not rewind it.
    """

    def __init__(self, segments: list[tuple[float, float]]) -> None:
        self.segments = list(segments)
        self._samples = 0

    def process(self, pcm: PCM) -> float:
        t = (self._samples + len(pcm) / 2) / CAPTURE_RATE  # the frame's midpoint
        self._samples += len(pcm)
        return 1.0 if any(start <= t < end for start, end in self.segments) else 0.0

    def reset(self) -> None:
        pass


def rms_dbfs(pcm: PCM) -> float:
    """RMS level of int16 audio in dB relative to full scale (-inf dB for digital silence)."""
    if len(pcm) == 0:
        return float("-inf")
    x = pcm.astype(np.float64) / 32768.0
    rms = float(np.sqrt(np.mean(x * x)))
    return 20.0 * float(np.log10(rms)) if rms > 0 else float("-inf")
