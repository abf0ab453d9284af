"""The real Parley window with scripted engines, a virtual microphone and a virtual speaker.

Started by the Xvfb tests as ``python tests/ui/xvfb_app.py EVENTS.jsonl``: the microphone hears
steady speech-like noise (an ArraySource at real-time pace), the engines are the registry's
"fake" ones, and every event the window receives is appended to EVENTS.jsonl so the test can
follow the conversation while it drives the keyboard with xdotool.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from assistant.app import Assistant
from assistant.audio.capture import ArraySource
from assistant.audio.frames import CAPTURE_RATE
from assistant.audio.player import VirtualPlayer
from assistant.config import Settings
from assistant.events import (
    AppEvent,
    AssistantText,
    ErrorEvent,
    FinalTranscript,
    Notice,
    PartialTranscript,
    Ready,
    StateChanged,
    TurnFinished,
)
from ui.app import run_app

MIC_SECONDS = 120.0


def noise_microphone(_settings: Settings) -> ArraySource:
    rng = np.random.default_rng(7)
    pcm = (rng.standard_normal(int(MIC_SECONDS * CAPTURE_RATE)) * 3000).astype(np.int16)
    return ArraySource(pcm, pace="realtime")


def make_assistant(events_path: Path) -> Assistant:
    settings = Settings(stt="fake", llm="fake", tts="fake")
    assistant = Assistant(
        settings,
        player_factory=lambda _s: VirtualPlayer(pace="realtime"),
        source_factory=noise_microphone,
        persist=False,
    )
    out = events_path.open("a", encoding="utf-8")

    def record(kind: str, **data: Any) -> None:
        out.write(json.dumps({"kind": kind, **data}) + "\n")
        out.flush()

    def log(event: AppEvent) -> None:
        match event:
            case Ready(ready=ready):
                record("ready", ready=ready)
            case StateChanged(state=state):
                record("state", state=state.value)
            case PartialTranscript(turn_id=t, text=text):
                record("partial", turn=t, text=text)
            case FinalTranscript(turn_id=t, text=text):
                record("final", turn=t, text=text)
            case AssistantText(turn_id=t, spoken=spoken, generated=generated):
                record("assistant", turn=t, spoken=spoken, generated=generated)
            case TurnFinished(turn=turn):
                record(
                    "finished",
                    turn=turn.turn_id,
                    interrupted=turn.interrupted,
                    heard=turn.assistant_text,
                )
            case ErrorEvent(message=message, source=source):
                record("error", message=message, source=source)
            case Notice(message=message):
                record("notice", message=message)

    assistant.events.subscribe(log)
    return assistant


def main() -> int:
    events = Path(sys.argv[1])
    return run_app([sys.argv[0]], assistant_factory=lambda: make_assistant(events))


if __name__ == "__main__":
    sys.exit(main())
