"""Garbage collection on the Qt thread only.

Python's cyclic garbage collector runs in whichever thread happens to allocate when a threshold
is crossed. Parley has several worker threads (speech recognition, synthesis, audio), and a Qt
object freed from one of them while the Qt thread still delivers its timers crashes the process.
``MainThreadCollector`` turns automatic collection off and collects from a timer on the Qt
thread instead, as often as the thresholds ask for it.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

#: How often the generation counts are checked.
CHECK_INTERVAL_MS = 200


class MainThreadCollector(QObject):
    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thresholds = gc.get_threshold()
        gc.disable()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.check)
        self._timer.start(CHECK_INTERVAL_MS)

    def check(self) -> None:
        """Collect the oldest generation whose count is over its threshold, like ``gc`` would."""
        counts = gc.get_count()
        for generation in (2, 1, 0):
            if counts[generation] > self._thresholds[generation]:
                gc.collect(generation)
                return

    def stop(self) -> None:
        self._timer.stop()
        gc.enable()
