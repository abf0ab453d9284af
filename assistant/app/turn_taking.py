"""The hands-free parts of turn-taking the app supplies to a session: voice activity detection
and the end-of-turn model. Both are optional extras: each falls back to something simpler."""

from __future__ import annotations

import logging
from collections.abc import Callable

from assistant.audio.vad import VoiceActivityDetector
from assistant.config import Settings
from assistant.session import EndOfTurnModel

log = logging.getLogger(__name__)

VadFactory = Callable[[Settings], VoiceActivityDetector]
TurnModelFactory = Callable[[Settings], EndOfTurnModel | None]


def make_vad(settings: Settings) -> VoiceActivityDetector:
    """Silero VAD when the embedded engines are installed, else a level-based detector."""
    from assistant.audio import vad

    try:
        return vad.SileroVAD(threshold=settings.vad.threshold)
    except Exception:
        return vad.EnergyVAD()


def make_turn_model(settings: Settings) -> EndOfTurnModel | None:
    """The Smart Turn end-of-turn model when it is installed and enabled, else None (hands-free
    then ends a turn on silence alone)."""
    if not settings.vad.smart_turn:
        return None
    try:
        from assistant.audio.smart_turn import SmartTurn, smart_turn_available

        return SmartTurn() if smart_turn_available() else None
    except Exception as exc:
        log.warning("end-of-turn model unavailable: %s", exc)
        return None
