"""What the local speech backends (Piper, SVOX Pico, eSpeak NG) share.

``Emit`` is how a backend hands over audio as it is made; ``LoadsVoices`` keeps the voices a
backend has loaded, one per voice key, each loaded once on first use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from assistant.engines.base import PCM

#: ``emit(pcm, last)``: one block of audio; ``last`` is None when the backend cannot tell.
Emit = Callable[[PCM, "bool | None"], None]


class LoadsVoices[V]:
    """``is_loaded`` and ``load`` of a backend that keeps every voice it loads.

    Subclasses say how a voice is loaded (``_open``; it may raise ``EngineError`` for an unknown
    key) and take a voice with ``_voice``, which loads it the first time.
    """

    def __init__(self) -> None:
        self._voices: dict[str, V] = {}
        self._lock = threading.Lock()

    def is_loaded(self, key: str) -> bool:
        return key in self._voices

    def load(self, key: str) -> None:
        self._voice(key)

    def _voice(self, key: str) -> V:
        with self._lock:  # one load at a time: a second caller waits for the first
            voice = self._voices.get(key)
            if voice is None:
                voice = self._voices[key] = self._open(key)
            return voice

    def _open(self, key: str) -> V:
        raise NotImplementedError
