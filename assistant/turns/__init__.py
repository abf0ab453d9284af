"""Turn-taking signals: who holds the floor, and when a turn is over.

- ``detection``: the strategies that turn key presses and voice activity into turn events
  (push-to-talk, hands-free).
- ``judge``: at a pause, is the user done? How the words sounded and what they said.
- ``words``: what a transcript says about the turn, per language: a backchannel or an
  interruption, a stop command, a sentence that trails off.
"""

from assistant.turns.detection import (
    FRAME_SECONDS,
    HandsFree,
    PushToTalk,
    TurnDetection,
    TurnEvent,
    VadEndpointing,
    concat_audio,
    make_turn_detection,
)
from assistant.turns.judge import (
    EndOfTurnJudge,
    EndOfTurnModel,
    Pause,
    PauseJudge,
    PauseVerdict,
    Signals,
    WordsScore,
    decide,
)

__all__ = [
    "FRAME_SECONDS",
    "EndOfTurnJudge",
    "EndOfTurnModel",
    "HandsFree",
    "Pause",
    "PauseJudge",
    "PauseVerdict",
    "PushToTalk",
    "Signals",
    "TurnDetection",
    "TurnEvent",
    "VadEndpointing",
    "WordsScore",
    "concat_audio",
    "decide",
    "make_turn_detection",
]
