"""ALSA's own complaints (“ALSA lib pcm.c:…: underrun occurred”), counted instead of printed.

libasound writes every warning straight to the terminal, one line per audio block when a
device underruns: a session once printed 128 of them. ``quiet()`` installs an error handler
that counts the messages by kind; the first of each kind goes to the log at once, and a summary
of the counts every ``SUMMARY_SECONDS`` (and at ``summarize()``), at INFO level, so the file
log keeps the facts and the terminal stays quiet.

Linux only; a no-op where libasound is missing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import time
from collections import Counter
from typing import Any

log = logging.getLogger(__name__)

SUMMARY_SECONDS = 60.0

#: void handler(const char *file, int line, const char *function, int err, const char *fmt,
#: ...). The variable arguments are not read: on the usual ABIs a callback may ignore them.
_HANDLER = ctypes.CFUNCTYPE(
    None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p
)


class _Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.reported: Counter[str] = Counter()
        self.last_summary = time.monotonic()

    def add(self, kind: str) -> None:
        with self.lock:
            first = kind not in self.counts
            self.counts[kind] += 1
            due = time.monotonic() - self.last_summary >= SUMMARY_SECONDS
        if first:
            log.info("ALSA: %s (further ones are counted)", kind)
        if due:
            summarize()


_counts = _Counts()
_installed: Any = None  # the ctypes callback must stay referenced while ALSA may call it


def _describe(function: bytes | None, fmt: bytes | None) -> str:
    where = (function or b"?").decode("utf-8", "replace")
    what = (fmt or b"").decode("utf-8", "replace").replace("%s", "…").replace("%d", "#")
    return f"{where}: {what.strip()}"


def _on_message(
    file: bytes | None, line: int, function: bytes | None, err: int, fmt: bytes | None
) -> None:
    try:
        _counts.add(_describe(function, fmt))
    except Exception:  # never raise into C
        pass


def quiet() -> bool:
    """Route ALSA's messages to the counter; True if installed (idempotent)."""
    global _installed
    if _installed is not None:
        return True
    name = ctypes.util.find_library("asound")
    if name is None:
        return False
    try:
        library = ctypes.CDLL(name)
        handler = _HANDLER(_on_message)
        library.snd_lib_error_set_handler(handler)
    except (OSError, AttributeError) as exc:
        log.debug("cannot install the ALSA message handler: %s", exc)
        return False
    _installed = handler
    return True


def counts() -> dict[str, int]:
    """Messages seen so far, by kind."""
    with _counts.lock:
        return dict(_counts.counts)


def summarize() -> None:
    """Log how many messages of each kind came since the last summary (nothing if none)."""
    with _counts.lock:
        fresh = _counts.counts - _counts.reported
        _counts.reported = Counter(_counts.counts)
        _counts.last_summary = time.monotonic()
    if fresh:
        listed = "; ".join(f"{kind} ×{n}" for kind, n in fresh.most_common(5))
        log.info("ALSA reported %d message(s): %s", sum(fresh.values()), listed)
