"""The conversation core, split by role (see ``session.py`` for how the parts fit together)."""

from assistant.session.session import Session, derive_state
from assistant.session.tracker import FILLERS, has_words
from assistant.turns import EndOfTurnModel

__all__ = ["FILLERS", "EndOfTurnModel", "Session", "derive_state", "has_words"]
