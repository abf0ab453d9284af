"""An installed app's own engine files (``engines/``) win over pip packages and the cache."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from assistant.engines.local import llama_server, models, shipped, whisper_models

EXE = "llama-server.exe" if sys.platform == "win32" else "llama-server"


@pytest.fixture
def engines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "engines"
    root.mkdir()
    monkeypatch.setenv(shipped.ENV_VAR, str(root))
    monkeypatch.delenv(llama_server.BINARY_ENV, raising=False)
    monkeypatch.setenv("PARLEY_CACHE_DIR", str(tmp_path / "cache"))
    return root


def _whisper_dir(root: Path, name: str) -> Path:
    folder = root / "whisper" / name
    folder.mkdir(parents=True)
    for file in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt"):
        (folder / file).write_bytes(b"x")
    return folder


def test_no_engines_folder_outside_an_installed_app(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(shipped.ENV_VAR, raising=False)
    monkeypatch.delattr(sys, "frozen", raising=False)
    assert shipped.engines_dir() is None
    assert shipped.shipped_file("models", "x.gguf") is None


def test_a_frozen_app_looks_in_its_resource_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(shipped.ENV_VAR, raising=False)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert shipped.engines_dir() == tmp_path / "engines"


def test_the_shipped_llama_server_comes_before_the_built_one(engines: Path) -> None:
    binary = engines / EXE
    binary.write_text("#!/bin/sh\n")
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    assert llama_server.find_binary() == binary


def test_the_environment_variable_still_wins(
    engines: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (engines / EXE).write_text("#!/bin/sh\n")
    (engines / EXE).chmod(0o755)
    chosen = tmp_path / "my-llama-server"
    chosen.write_text("#!/bin/sh\n")
    chosen.chmod(0o755)
    monkeypatch.setenv(llama_server.BINARY_ENV, str(chosen))
    assert llama_server.find_binary() == chosen


def test_a_shipped_model_of_the_right_size_is_used_as_it_is(engines: Path) -> None:
    model = models.resolve("default")
    path = engines / "models" / model.filename
    path.parent.mkdir()
    with path.open("wb") as f:  # sparse: the size is what counts, not the bytes
        f.truncate(model.size)
    seen: list[tuple[float, str]] = []
    assert models.ensure_model("default", lambda f, m: seen.append((f, m))) == path
    assert seen == [(1.0, f"{model.title} is ready.")]
    assert not (engines.parent / "cache" / "models").exists()  # nothing assembled


def test_a_truncated_shipped_model_is_not_trusted(
    engines: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = models.resolve("default")
    path = engines / "models" / model.filename
    path.parent.mkdir()
    path.write_bytes(b"GGUF")
    calls: list[str] = []

    def no_parts(m: models.PackagedModel) -> list[Path]:
        calls.append(m.name)
        raise models.EngineUnavailable("parts missing", engine="local")

    monkeypatch.setattr(models, "part_files", no_parts)
    with pytest.raises(models.EngineUnavailable):
        models.ensure_model("default")
    assert calls == [model.name]  # fell back to assembling from the packages


@pytest.mark.parametrize("name", ["base", "tiny.en"])
def test_shipped_whisper_weights_are_loaded_from_the_bundle(engines: Path, name: str) -> None:
    folder = _whisper_dir(engines, name)
    assert whisper_models.model_dir(name) == folder  # type: ignore[arg-type]
    whisper_models.require(name)  # type: ignore[arg-type]


def test_an_explicit_cache_still_joins_from_the_packages(engines: Path, tmp_path: Path) -> None:
    _whisper_dir(engines, "base")
    try:
        whisper_models.base_parts()
    except whisper_models.EngineUnavailable:
        pytest.skip("the Whisper base packages are not installed")
    assert whisper_models.base_dir(tmp_path / "c") == tmp_path / "c" / "whisper" / "base"
