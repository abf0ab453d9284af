"""The conversation core, split by role (see ``session.py`` for how the parts fit together)."""

from assistant.session.session import Session, derive_state
from assistant.turns import EndOfTurnModel

__all__ = ["EndOfTurnModel", "Session", "derive_state"]
