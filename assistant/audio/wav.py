"""WAV files and one-shot resampling of int16 mono PCM."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from assistant.engines.base import PCM

#: What ``read_wav`` accepts: sample rates of real audio, and at most an hour of 48 kHz mono
#: (the whole file is decoded in memory, as float32).
MIN_RATE = 4_000
MAX_RATE = 384_000
MAX_SECONDS = 3600
MAX_SAMPLES = MAX_SECONDS * 48_000


class WavError(ValueError):
    """An audio file cannot be read (missing, corrupt, not audio) or written."""


def to_int16(x: np.ndarray) -> PCM:
    """Float samples in [-1, 1] to int16, clipping what is out of range (NaN becomes 0)."""
    f = np.nan_to_num(np.asarray(x, dtype=np.float32), nan=0.0, posinf=1.0, neginf=-1.0)
    return np.clip(np.rint(f * 32768.0), -32768, 32767).astype(np.int16)


def read_wav(path: str | os.PathLike[str]) -> tuple[PCM, int]:
    """Read an audio file (any format libsndfile knows) as mono int16 and its sample rate.

    Several channels are mixed down by averaging. The file must be real audio: a sample rate
    from ``MIN_RATE`` to ``MAX_RATE`` Hz, at most ``MAX_SECONDS`` long and ``MAX_SAMPLES``
    samples over all channels, whatever its header claims. Raises ``WavError`` with a one-line
    message naming the file and the problem, and nothing else.
    """
    p = Path(path)
    if not p.exists():
        raise WavError(f"{p}: no such file")
    if p.is_dir():
        raise WavError(f"{p}: is a directory, not an audio file")
    try:
        info = sf.info(str(p))
        _check_shape(p, info.samplerate, info.channels, info.frames)
        data, rate = sf.read(str(p), dtype="float32", always_2d=True)
    except WavError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, MemoryError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise WavError(f"{p}: not a readable audio file ({reason})") from e
    except OSError as e:
        raise WavError(f"{p}: cannot be read ({e.strerror or e})") from e
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return to_int16(mono), int(rate)


def _check_shape(p: Path, rate: int, channels: int, frames: int) -> None:
    if not MIN_RATE <= rate <= MAX_RATE:
        raise WavError(
            f"{p}: a sample rate of {rate} Hz is not usable audio "
            f"(expected {MIN_RATE}–{MAX_RATE} Hz)"
        )
    if channels < 1 or frames < 0:
        raise WavError(f"{p}: not a readable audio file (its header is damaged)")
    if frames > MAX_SECONDS * rate or frames * channels > MAX_SAMPLES:
        raise WavError(
            f"{p}: {frames / rate / 60:.0f} minutes of {channels}-channel audio is more than "
            f"Parley reads (at most {MAX_SECONDS // 60} minutes of 48 kHz mono)"
        )


def write_wav(path: str | os.PathLike[str], pcm: np.ndarray, rate: int) -> None:
    """Write mono 16-bit PCM to ``path`` atomically (a temporary file, then a rename).

    ``pcm`` is int16, or float in [-1, 1] (converted with clipping).
    """
    p = Path(path)
    data = np.asarray(pcm)
    if data.dtype.kind == "f":
        data = to_int16(data)
    elif data.dtype != np.int16:
        data = np.clip(data, -32768, 32767).astype(np.int16)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    except OSError as e:
        raise WavError(f"{p}: cannot be written ({e.strerror or e})") from e
    try:
        with os.fdopen(fd, "wb") as f:
            sf.write(f, data.reshape(-1), int(rate), subtype="PCM_16", format="WAV")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise WavError(f"{p}: cannot be written ({e.strerror or e})") from e
        raise


def resample(pcm: np.ndarray, from_rate: int, to_rate: int) -> PCM:
    """Resample a whole int16 mono signal (soxr, high quality). Returns a new array."""
    data = np.ascontiguousarray(pcm, dtype=np.int16)
    if from_rate == to_rate or len(data) == 0:
        return data.copy()
    out: PCM = soxr.resample(data, from_rate, to_rate)
    return out
