"""The Parley desktop app exactly as ``parley`` starts it, with what the window receives logged.

Started by the end-to-end test as ``python tests/e2e/e2e_app.py EVENTS.jsonl``. The assistant is
the default one: settings from ``PARLEY_CONFIG_DIR``, the engines they name, the default
microphone and speaker (whatever sound server the environment points at). Each event the window
gets is appended to EVENTS.jsonl, and after every finished turn a ``window`` record says what the
latency panel shows, so the test can follow the conversation without reading pixels.
"""

from __future__ import annotations

import sys
import time
from dataclasses import fields

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from assistant.app import Assistant
from assistant.events import (
    AppEvent,
    AudioStatus,
    EchoStatus,
    Loading,
    PartialTranscript,
    PlaybackPaused,
    PlaybackResumed,
    TurnFinished,
    UserSpeechStarted,
)
from assistant.history import TurnRecord
from tests.window_log import EventLog, log_events, run_logged
from ui.main_window import MainWindow


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


#: What a failed test is explained by: when speech was heard, what as, and what it paused.
TRACED = {
    UserSpeechStarted: "speech",
    PartialTranscript: "partial",
    PlaybackPaused: "paused",
    PlaybackResumed: "resumed",
}


def observed_assistant(record: EventLog) -> Assistant:
    assistant = Assistant()

    def finished(turn: TurnRecord) -> None:
        record(
            "finished",
            turn=turn.turn_id,
            user=turn.user_text,
            heard=turn.assistant_text,
            interrupted=turn.interrupted,
            timeline=turn.timeline,
        )
        # The window handles the same event after this listener: look once it has.
        QTimer.singleShot(200, lambda: describe_window(record))

    def log(event: AppEvent) -> None:
        match event:
            case AudioStatus(microphone_ok=mic, speaker_ok=speaker):
                record("audio", mic=mic, speaker=speaker)
            case TurnFinished(turn=turn):
                finished(turn)
            case Loading(component=part, fraction=fraction):
                record("loading", part=part, fraction=fraction)
            case EchoStatus(cancelling=cancelling, settled=settled, detail=detail):
                record(
                    "echo",
                    cancelling=cancelling,
                    settled=settled,
                    detail=detail,
                    at=time.monotonic(),
                )
            case UserSpeechStarted() | PartialTranscript() | PlaybackPaused() | PlaybackResumed():
                record(
                    TRACED[type(event)], **{f.name: getattr(event, f.name) for f in fields(event)}
                )

    log_events(assistant, record, log)
    return assistant


if __name__ == "__main__":
    sys.exit(run_logged(observed_assistant))
