"""Listens with the system-wide hotkey (F9) and prints what it reports, for the Xvfb tests.

Prints ``listening`` (or ``unavailable: <reason>``), then one line per pressed/released signal
with whether it arrived on the GUI thread; exits after the first release or 8 s.
"""

from __future__ import annotations

import sys
import threading

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from ui.hotkeys import GlobalHotkey


def main() -> int:
    app = QApplication(sys.argv[:1])
    hotkey = GlobalHotkey()
    gui_thread = threading.current_thread()

    def report(kind: str) -> None:
        print(kind, threading.current_thread() is gui_thread, flush=True)
        if kind == "released":
            QTimer.singleShot(300, app.quit)  # time for any stray repeat to show up

    hotkey.pressed.connect(lambda: report("pressed"))
    hotkey.released.connect(lambda: report("released"))
    problem = hotkey.start("F9")
    print(f"unavailable: {problem}" if problem else "listening", flush=True)
    if problem:
        return 0
    QTimer.singleShot(8000, app.quit)
    app.exec()
    hotkey.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
