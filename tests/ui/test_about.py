"""Help → About names the version and the log file."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from assistant import __version__, logfile
from ui.about import about_html

ROOT = Path(__file__).resolve().parents[2]


def test_about_shows_the_version_and_where_the_log_is() -> None:
    text = about_html()
    assert f"Parley {__version__}" in text
    assert str(logfile.log_path()) in text


def test_parley_version_matches_the_package() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    out = subprocess.run(
        [sys.executable, "-m", "assistant.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert out.stdout.strip() == f"parley {declared}"
