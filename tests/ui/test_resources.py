"""The resources folder is found from $PARLEY_RESOURCES, the checkout or the install prefix;
when it is missing the window still starts, and the log says where to point it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from ui import resources


@pytest.fixture(autouse=True)
def fresh_lookup() -> Iterator[None]:
    resources.resources_dir.cache_clear()
    yield
    resources.resources_dir.cache_clear()


def make_folder(path: Path) -> Path:
    (path / "icons").mkdir(parents=True)
    (path / "style.qss").write_text("QWidget { image: url(@ICONS@/x.svg); }", encoding="utf-8")
    return path


def test_the_checkout_folder_is_used_by_default(monkeypatch):
    monkeypatch.delenv(resources.ENV_VAR, raising=False)
    assert resources.resources_dir() == resources.CHECKOUT
    assert (resources.resource_path("icons") / "parley.svg").is_file()


def test_environment_variable_wins(monkeypatch, tmp_path):
    folder = make_folder(tmp_path / "elsewhere")
    monkeypatch.setenv(resources.ENV_VAR, str(folder))
    assert resources.resources_dir() == folder
    assert f"url({(folder / 'icons').as_posix()}/x.svg)" in resources.stylesheet()


def test_installed_copy_under_the_prefix_is_found(monkeypatch, tmp_path):
    monkeypatch.delenv(resources.ENV_VAR, raising=False)
    monkeypatch.setattr(resources, "CHECKOUT", tmp_path / "site-packages" / "resources")
    monkeypatch.setattr(resources.sys, "prefix", str(tmp_path / "venv"))
    folder = make_folder(tmp_path / "venv" / "share" / "parley" / "resources")
    assert resources.resources_dir() == folder


def test_missing_folder_is_reported_and_not_fatal(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv(resources.ENV_VAR, str(tmp_path / "nowhere"))
    monkeypatch.setattr(resources, "CHECKOUT", tmp_path / "checkout" / "resources")
    monkeypatch.setattr(resources.sys, "prefix", str(tmp_path / "venv"))
    with caplog.at_level(logging.WARNING, logger="ui.resources"):
        assert resources.stylesheet() == ""
    text = caplog.text
    assert f"{resources.ENV_VAR}={tmp_path / 'nowhere'} is not a folder" in text
    assert "resources folder was not found" in text and str(tmp_path / "venv") in text
    assert f"Set {resources.ENV_VAR}" in text
