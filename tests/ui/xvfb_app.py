"""The real Parley window with scripted engines, a virtual microphone and a virtual speaker.

Started by the Xvfb tests as ``python tests/ui/xvfb_app.py EVENTS.jsonl``: the microphone hears
steady speech-like noise (an ArraySource at real-time pace), the engines are the registry's
"fake" ones, and every event the window receives is appended to EVENTS.jsonl so the test can
follow the conversation while it drives the keyboard with xdotool.
"""

from __future__ import annotations

import sys

import numpy as np

from assistant.app import Assistant
from assistant.audio.capture import ArraySource
from assistant.audio.frames import CAPTURE_RATE
from assistant.audio.player import VirtualPlayer
from assistant.config import Settings
from assistant.events import AppEvent, AssistantText, PartialTranscript, TurnFinished
from tests.window_log import EventLog, log_events, run_logged

MIC_SECONDS = 120.0


def noise_microphone(_settings: Settings) -> ArraySource:
    rng = np.random.default_rng(7)
    pcm = (rng.standard_normal(int(MIC_SECONDS * CAPTURE_RATE)) * 3000).astype(np.int16)
    return ArraySource(pcm, pace="realtime")


def make_assistant(record: EventLog) -> Assistant:
    settings = Settings(stt="fake", llm="fake", tts="fake")
    assistant = Assistant(
        settings,
        player_factory=lambda _s: VirtualPlayer(pace="realtime"),
        source_factory=noise_microphone,
        persist=False,
    )

    def log(event: AppEvent) -> None:
        match event:
            case PartialTranscript(turn_id=t, text=text):
                record("partial", turn=t, text=text)
            case AssistantText(turn_id=t, spoken=spoken, generated=generated):
                record("assistant", turn=t, spoken=spoken, generated=generated)
            case TurnFinished(turn=turn):
                record(
                    "finished",
                    turn=turn.turn_id,
                    interrupted=turn.interrupted,
                    heard=turn.assistant_text,
                )

    log_events(assistant, record, log)
    return assistant


if __name__ == "__main__":
    sys.exit(run_logged(make_assistant))
