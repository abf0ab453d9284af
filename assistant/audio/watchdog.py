"""Noticing a sound device that died without saying so.

Some backends stop calling a stream's callback when the device disappears and never report it
(no finished callback, no error). A ``CallbackWatchdog`` runs on the loop: the audio callback
only bumps a counter (``beat``), and a timer on the injected clock checks that the counter moved
within ``timeout`` seconds. If it did not, ``on_stall`` is called once, on the loop. A check
that itself runs late (the whole process was stalled or suspended) proves nothing about the
device and starts the count again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from assistant.clock import Clock, Timer

log = logging.getLogger(__name__)

#: A stream whose callback has not run for this long is treated as lost.
STALL_SECONDS = 2.0


class CallbackWatchdog:
    def __init__(
        self, clock: Clock, on_stall: Callable[[], None], *, timeout: float = STALL_SECONDS
    ) -> None:
        self._clock = clock
        self._on_stall = on_stall
        self._timeout = timeout
        self._beats = 0
        self._seen = 0
        self._last_progress = 0.0
        self._last_check = 0.0
        self._timer: Timer | None = None

    def beat(self) -> None:
        """Called from the audio thread on every callback: one integer store, nothing else."""
        self._beats += 1

    def start(self) -> None:
        self.stop()
        self._seen = self._beats
        self._last_progress = self._last_check = self._clock.now()
        self._schedule()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self) -> None:
        self._timer = self._clock.call_later(self._timeout / 4, self._check)

    def _check(self) -> None:
        self._timer = None
        now = self._clock.now()
        late = now - self._last_check > self._timeout / 2
        self._last_check = now
        beats = self._beats
        if beats != self._seen or late:
            self._seen = beats
            self._last_progress = now
        elif now - self._last_progress >= self._timeout:
            log.warning("no audio callback for %.1f s: treating the device as lost", self._timeout)
            self._on_stall()
            return
        self._schedule()
