"""The real Parley window with scripted engines, a virtual microphone and a virtual speaker.

Started by the Xvfb tests as ``python tests/ui/xvfb_app.py EVENTS.jsonl``: the microphone hears
steady speech-like noise (an ArraySource at real-time pace), the engines are the registry's
"fake" ones, and every signal the window receives is appended to EVENTS.jsonl so the test can
follow the conversation while it drives the keyboard with xdotool.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from assistant.audio.capture import ArraySource
from assistant.audio.frames import CAPTURE_RATE
from assistant.audio.player import VirtualPlayer
from assistant.config import Settings
from ui.app import run_app
from ui.controller import Controller

MIC_SECONDS = 120.0


def noise_microphone(_settings: Settings) -> ArraySource:
    rng = np.random.default_rng(7)
    pcm = (rng.standard_normal(int(MIC_SECONDS * CAPTURE_RATE)) * 3000).astype(np.int16)
    return ArraySource(pcm, pace="realtime")


def make_controller(events_path: Path) -> Controller:
    settings = Settings(stt="fake", llm="fake", tts="fake")
    controller = Controller(
        settings,
        player_factory=lambda _s: VirtualPlayer(pace="realtime"),
        source_factory=noise_microphone,
        persist=False,
    )
    out = events_path.open("a", encoding="utf-8")

    def record(kind: str, **data: Any) -> None:
        out.write(json.dumps({"kind": kind, **data}) + "\n")
        out.flush()

    controller.readyChanged.connect(lambda ready: record("ready", ready=ready))
    controller.stateChanged.connect(lambda state: record("state", state=state))
    controller.partialTranscript.connect(lambda t, text: record("partial", turn=t, text=text))
    controller.finalTranscript.connect(lambda t, text: record("final", turn=t, text=text))
    controller.assistantText.connect(
        lambda t, spoken, generated: record("assistant", turn=t, spoken=spoken, generated=generated)
    )
    controller.turnFinished.connect(
        lambda turn: record(
            "finished",
            turn=turn.turn_id,
            interrupted=turn.interrupted,
            heard=turn.assistant_text,
        )
    )
    controller.error.connect(
        lambda message, source: record("error", message=message, source=source)
    )
    controller.notice.connect(lambda message, source: record("notice", message=message))
    return controller


def main() -> int:
    events = Path(sys.argv[1])
    return run_app([sys.argv[0]], controller_factory=lambda: make_controller(events))


if __name__ == "__main__":
    sys.exit(main())
