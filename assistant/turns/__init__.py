"""Turn-taking signals: who holds the floor, and when a turn is over.

- ``detection``: the strategies that turn key presses and voice activity into turn events
  (push-to-talk, hands-free), and the end-of-turn judges asked about each pause.
- ``words``: what a transcript says about the turn, per language: a backchannel or an
  interruption, a stop command, a sentence that trails off.
"""

from assistant.turns.detection import (
    FRAME_SECONDS,
    EndOfTurnJudge,
    EndOfTurnModel,
    HandsFree,
    PauseVerdict,
    PushToTalk,
    SmartTurnJudge,
    TurnDetection,
    TurnEvent,
    VadEndpointing,
    concat_audio,
    make_turn_detection,
)

__all__ = [
    "FRAME_SECONDS",
    "EndOfTurnJudge",
    "EndOfTurnModel",
    "HandsFree",
    "PauseVerdict",
    "PushToTalk",
    "SmartTurnJudge",
    "TurnDetection",
    "TurnEvent",
    "VadEndpointing",
    "concat_audio",
    "make_turn_detection",
]
