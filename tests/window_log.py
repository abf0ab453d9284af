"""What a desktop app started by a GUI test records of the events its window receives: one JSON
object a line, ``{"kind": ..., ...}``, appended to the file its first argument names and flushed
at once, so that the test follows the conversation while the app runs, without reading pixels.

The launchers (``tests/ui/xvfb_app.py``, ``tests/e2e/e2e_app.py``) record the same way the
events they both care about, and the rest their own way."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from assistant.app import Assistant
from assistant.events import AppEvent, ErrorEvent, FinalTranscript, Notice, Ready, StateChanged
from ui.app import run_app


class EventLog:
    """Appends one record a call to ``path``."""

    def __init__(self, path: Path) -> None:
        self._out = path.open("a", encoding="utf-8")

    def __call__(self, kind: str, **data: Any) -> None:
        self._out.write(json.dumps({"kind": kind, **data}, default=str) + "\n")
        self._out.flush()


def record_common(record: EventLog, event: AppEvent) -> bool:
    """Record ``event`` if it is one every launcher records alike (readiness, state, a final
    transcript, an error, a notice); False if it is another."""
    match event:
        case Ready(ready=ready):
            record("ready", ready=ready)
        case StateChanged(state=state, at=at):
            record("state", state=state.value, at=at)
        case FinalTranscript(turn_id=t, text=text, at=at):
            record("final", turn=t, text=text, at=at)
        case ErrorEvent(message=message, source=source):
            record("error", message=message, source=source)
        case Notice(message=message, source=source):
            record("notice", message=message, source=source)
        case _:
            return False
    return True


def log_events(assistant: Assistant, record: EventLog, own: Callable[[AppEvent], None]) -> None:
    """Record every event ``assistant`` publishes from now on: those of ``record_common`` alike,
    the others as the launcher's ``own`` does (or not at all)."""

    def log(event: AppEvent) -> None:
        if not record_common(record, event):
            own(event)

    assistant.events.subscribe(log)


def run_logged(observed: Callable[[EventLog], Assistant]) -> int:
    """Run the desktop app with the assistant ``observed`` builds around the log of the file that
    the first command-line argument names; the app's exit status."""
    record = EventLog(Path(sys.argv[1]))
    return run_app([sys.argv[0]], assistant_factory=lambda: observed(record))
