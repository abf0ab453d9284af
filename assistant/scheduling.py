"""Who needs the CPU right now, so background work can step aside.

On a 2-core machine the reply (LLM tokens, TTS audio) must never wait behind optional work such as
re-decoding a partial transcript. The session marks when a reply is being produced; optional work
checks ``reply_active`` before it starts and skips itself while it is set.
"""

from __future__ import annotations

import threading


class CpuPriority:
    """Thread-safe flag set while a reply is being generated or spoken."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._replies = 0

    def reply_started(self) -> None:
        with self._lock:
            self._replies += 1

    def reply_finished(self) -> None:
        with self._lock:
            self._replies = max(0, self._replies - 1)

    @property
    def reply_active(self) -> bool:
        return self._replies > 0


#: The process-wide instance the session and the engines share.
cpu_priority = CpuPriority()
