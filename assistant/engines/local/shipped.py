"""Engine files that an installed Parley carries ready to use.

An installer's bundle has no pip packages to read weights from and no compiler to build
``llama-server`` with, so the build puts the prepared files in one folder::

    engines/llama-server            (llama-server.exe on Windows)
    engines/models/<model>.gguf     the assembled, hash-checked language models
    engines/whisper/<name>/         model.bin, config.json, tokenizer.json, vocabulary.txt

That folder is ``$PARLEY_ENGINES_DIR`` when set, else ``engines/`` in a frozen app's resource
directory (PyInstaller's ``sys._MEIPASS``). A source checkout has neither, and every engine keeps
finding its files in its pip package (or the cache) as before.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV_VAR = "PARLEY_ENGINES_DIR"


def engines_dir() -> Path | None:
    """The folder of shipped engine files, or None when Parley runs from its packages."""
    override = os.environ.get(ENV_VAR, "").strip()
    if override:
        return Path(override).expanduser()
    bundle = getattr(sys, "_MEIPASS", None)
    if getattr(sys, "frozen", False) and bundle:
        return Path(bundle) / "engines"
    return None


def shipped_file(*parts: str) -> Path | None:
    """``engines/<parts>`` if the bundle has that file, else None."""
    root = engines_dir()
    if root is None:
        return None
    path = root.joinpath(*parts)
    return path if path.is_file() else None
