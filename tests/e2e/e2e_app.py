"""The Parley desktop app exactly as ``parley`` starts it, with what the window receives logged.

Started by the end-to-end test as ``python tests/e2e/e2e_app.py EVENTS.jsonl``. The controller is
the default one: settings from ``PARLEY_CONFIG_DIR``, the engines they name, the default
microphone and speaker (whatever sound server the environment points at). Each signal the window
gets is appended to EVENTS.jsonl, and after every finished turn a ``window`` record says what the
latency panel shows, so the test can follow the conversation without reading pixels.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from assistant.history import TurnRecord
from ui.app import run_app
from ui.controller import Controller
from ui.main_window import MainWindow


class EventLog:
    def __init__(self, path: Path) -> None:
        self._out = path.open("a", encoding="utf-8")

    def __call__(self, kind: str, **data: Any) -> None:
        self._out.write(json.dumps({"kind": kind, **data}, default=str) + "\n")
        self._out.flush()


def main_window() -> MainWindow | None:
    for widget in QApplication.topLevelWidgets():
        if isinstance(widget, MainWindow):
            return widget
    return None


def describe_window(record: EventLog) -> None:
    window = main_window()
    if window is None:
        record("window", found=False)
        return
    panel = window.timeline
    record(
        "window",
        found=True,
        timeline_turns=[turn_id for turn_id, _ in panel.timelines()],
        summary=panel.summary.text(),
    )


def observed_controller(events_path: Path) -> Controller:
    controller = Controller()
    record = EventLog(events_path)

    def finished(turn: TurnRecord) -> None:
        record(
            "finished",
            turn=turn.turn_id,
            user=turn.user_text,
            heard=turn.assistant_text,
            interrupted=turn.interrupted,
            timeline=turn.timeline,
        )
        # The window handles the same signal after this slot: look once it has.
        QTimer.singleShot(200, lambda: describe_window(record))

    controller.readyChanged.connect(lambda ready: record("ready", ready=ready))
    controller.audioChanged.connect(lambda mic, speaker: record("audio", mic=mic, speaker=speaker))
    controller.stateChanged.connect(lambda state: record("state", state=state))
    controller.finalTranscript.connect(lambda t, text: record("final", turn=t, text=text))
    controller.turnFinished.connect(finished)
    controller.loading.connect(
        lambda part, fraction, message: record("loading", part=part, fraction=fraction)
    )
    controller.error.connect(
        lambda message, source: record("error", message=message, source=source)
    )
    controller.notice.connect(
        lambda message, source: record("notice", message=message, source=source)
    )
    return controller


def main() -> int:
    events = Path(sys.argv[1])
    return run_app([sys.argv[0]], controller_factory=lambda: observed_controller(events))


if __name__ == "__main__":
    sys.exit(main())
