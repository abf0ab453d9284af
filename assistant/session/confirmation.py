"""A question the assistant asked before running a tool, and what the user's next words do.

When a reply ends by asking "Shall I go ahead?", its call is *offered* here. The next user turn
(spoken or typed) or a click on a confirmation chip settles it, as one typed outcome:

- ``RunConfirmed``: a clear yes — the call runs in the reply to this turn, then the model
  answers from its result;
- ``Decline``: a clear no — a fixed "Okay, I won't." and nothing changes;
- ``Drop``: anything else — the call is forgotten and the words are answered as usual.

Only one question is open at a time; a new one replaces it. A reply prepared for an outcome
that is then withdrawn (the user went on talking) offers the question again.
"""

from __future__ import annotations

from dataclasses import dataclass

from assistant.session.generate import PendingAction
from assistant.tools.confirm import Verdict, classify


@dataclass(frozen=True, slots=True)
class RunConfirmed:
    action: PendingAction


@dataclass(frozen=True, slots=True)
class Decline:
    action: PendingAction


@dataclass(frozen=True, slots=True)
class Drop:
    action: PendingAction


ConfirmOutcome = RunConfirmed | Decline | Drop


class ConfirmationGate:
    def __init__(self) -> None:
        self.pending: PendingAction | None = None

    def offer(self, action: PendingAction) -> None:
        self.pending = action

    def forget(self) -> None:
        self.pending = None

    def answer(self, text: str, language: str) -> ConfirmOutcome | None:
        """What the user's words do to the open question (None: no question is open)."""
        action, self.pending = self.pending, None
        if action is None:
            return None
        match classify(text, language):
            case Verdict.YES:
                return RunConfirmed(action)
            case Verdict.NO:
                return Decline(action)
            case _:
                return Drop(action)

    def click(self, accept: bool) -> ConfirmOutcome | None:
        """A confirmation chip was clicked (None: no question is open)."""
        action, self.pending = self.pending, None
        if action is None:
            return None
        return RunConfirmed(action) if accept else Decline(action)
