"""Line files that survive full disks and crashes: whole lines or nothing, never a missing file.

``append_lines`` adds complete lines and fsyncs them. If the write fails part way (the disk is
full, a size limit is hit), the file is cut back to where it was, so no half line is left for
the next record to be glued onto; should even that fail, the next append starts on a fresh line,
so the fragment stays a line of its own. ``replace_keeping_original`` swaps in new content and
keeps the old file under a second name, in an order that leaves the path holding one complete
version at every moment, whenever the process is killed. ``json_line`` encodes any record.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = [
    "append_lines",
    "json_line",
    "replace_keeping_original",
    "unused_name",
    "valid_unicode",
]


def valid_unicode(text: str) -> str:
    """``text`` with every lone surrogate (which UTF-8 cannot encode) replaced by U+FFFD.

    A provider's ``"\\ud83d"`` escape without its pair decodes to a lone surrogate; a correct
    pair that arrived in two halves becomes the character it spells.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def json_line(record: dict[str, Any]) -> bytes:
    """``record`` as one UTF-8 JSON line ending in a newline. Never raises.

    Text stays readable (no ``\\u`` escapes); lone surrogates become U+FFFD; values JSON does not
    know are written as their ``str()``.
    """
    try:
        text = json.dumps(record, ensure_ascii=False, default=str)
    except (ValueError, RecursionError):  # a circular or absurdly deep value
        text = json.dumps({k: str(v) for k, v in record.items()}, ensure_ascii=False)
    return (valid_unicode(text) + "\n").encode("utf-8")


def append_lines(path: Path, data: bytes) -> None:
    """Append ``data`` (whole lines) to ``path`` and fsync; create the file if needed.

    Raises ``OSError`` when the lines could not be written; the file then ends where it ended
    before (or, if it could not be cut back, the next append starts on a new line).
    """
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data  # an earlier fragment: keep it apart from this record
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
                os.fsync(fd)
            raise
    finally:
        os.close(fd)


def unused_name(path: Path, label: str) -> Path:
    """``path`` plus ``.{label}-{date-time}`` (numbered if taken): where to keep a copy."""
    base = path.with_name(f"{path.name}.{label}-{time.strftime('%Y%m%d-%H%M%S')}")
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}.{n}")
    return candidate


def _fsync_dir(directory: Path) -> None:
    """Make a rename or new link in ``directory`` durable (where the platform allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def replace_keeping_original(path: Path, data: bytes, keep_as: Path) -> None:
    """Replace the content of ``path`` by ``data``; the old file stays as ``keep_as``.

    The steps, each durable before the next: write ``data`` to a temporary file; give the
    original its second name (a hard link, or a copy where links are not supported); rename the
    temporary file over ``path``. Killed before the rename, ``path`` is still the original;
    after it, the new content; ``keep_as`` exists from the second step on.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(path, keep_as)
        except FileExistsError:
            raise
        except OSError:  # no hard links on this file system
            shutil.copy2(path, keep_as)
            with open(keep_as, "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(path.parent)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
