"""What must hold in every conversation, whatever fails: checked by the fault matrix and the soak.

- **Legal state transitions**: each ``StateChanged`` starts from the state last announced, never
  repeats it, and follows ``LEGAL``; the conversation ends ``idle``.
- **Every final transcript ends in exactly one finished or withdrawn turn** (a ``TurnFinished``
  or a ``TurnWithdrawn`` with its turn id), and no turn finishes twice.
- **No assistant audio is written while the user holds the floor** (talking, or paused in the
  middle of a turn): checked at every ``write`` to the player.
- **Every error and notice is one line, says what it is about (a ``Source``) and holds no key**
  (none of the ``canaries``, in any spelling a library might give them).

``Invariants.watch(assistant)`` follows an ``Assistant``'s events; ``tap(player)`` wraps a player
so its writes are checked (do it in the player factory). ``violations()`` lists what broke.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from assistant.events import (
    AppEvent,
    ErrorEvent,
    FinalTranscript,
    Notice,
    Source,
    State,
    StateChanged,
    TurnFinished,
    TurnWithdrawn,
)

if TYPE_CHECKING:
    from assistant.app import Assistant
    from assistant.audio.player import Player

#: The states each state may change to. ``idle`` is where a conversation starts and ends (and
#: where the app passes while it rebuilds a conversation, for new settings or a lost device).
LEGAL: dict[State, frozenset[State]] = {
    State.IDLE: frozenset({State.LISTENING}),
    State.LISTENING: frozenset({State.USER_SPEAKING, State.THINKING, State.IDLE}),
    State.USER_SPEAKING: frozenset(
        {State.LISTENING, State.THINKING, State.SPEAKING, State.INTERRUPTED, State.IDLE}
    ),
    State.THINKING: frozenset(
        {State.LISTENING, State.USER_SPEAKING, State.SPEAKING, State.INTERRUPTED, State.IDLE}
    ),
    State.SPEAKING: frozenset(
        {State.LISTENING, State.USER_SPEAKING, State.THINKING, State.INTERRUPTED, State.IDLE}
    ),
    State.INTERRUPTED: frozenset(
        {State.LISTENING, State.USER_SPEAKING, State.THINKING, State.SPEAKING, State.IDLE}
    ),
}


def spellings(secret: str) -> set[str]:
    """``secret`` as written, stripped, and as ``repr``, JSON and ``unicode_escape`` quote it."""
    forms = {secret, secret.strip()}
    for form in list(forms):
        forms.add(repr(form)[1:-1])
        forms.add(json.dumps(form)[1:-1])
        forms.add(form.encode("unicode_escape").decode("ascii"))
    return {f for f in forms if len(f) >= 6}


class Invariants:
    """Follows one conversation and collects every broken invariant (see the module docstring)."""

    def __init__(self, canaries: Sequence[str] = ()) -> None:
        self._secrets = sorted({f for c in canaries for f in spellings(c)}, key=len, reverse=True)
        self._broken: list[str] = []
        self._state = State.IDLE
        self.transitions: set[tuple[State, State]] = set()
        self._finals: dict[int, str] = {}
        self._endings: dict[int, list[str]] = {}
        self._assistant: Assistant | None = None
        self.writes = 0

    # ------------------------------------------------------------------------------ wiring

    def watch(self, assistant: Assistant) -> Callable[[], None]:
        """Check ``assistant``'s events from now on; returns what stops it."""
        self._assistant = assistant
        return assistant.events.subscribe(self.on_event)

    def tap(self, player: Player) -> Player:
        """Check every write to ``player`` (returns the player itself, its ``write`` wrapped)."""
        write = player.write

        def checked(pcm: Any, rate: int, turn_id: int) -> bool:
            self.writes += 1
            session = self._assistant.session if self._assistant is not None else None
            # A speech-to-speech session has no floor of its own to check.
            floor = getattr(session, "user_has_floor", False)
            if floor and len(pcm) and pcm.any():
                self._fail(f"assistant audio of turn {turn_id} written while the user talks")
            return write(pcm, rate, turn_id)

        player.write = checked  # type: ignore[method-assign]
        return player

    # ------------------------------------------------------------------------------ checks

    def on_event(self, event: AppEvent) -> None:
        if isinstance(event, StateChanged):
            self._transition(event)
        elif isinstance(event, FinalTranscript):
            if event.text.strip():
                self._finals[event.turn_id] = event.text
        elif isinstance(event, TurnFinished):
            self._ended(event.turn.turn_id, "finished")
        elif isinstance(event, TurnWithdrawn):
            self._ended(event.turn_id, "withdrawn")
        elif isinstance(event, ErrorEvent | Notice):
            self._message(event)

    def _transition(self, event: StateChanged) -> None:
        if event.previous is not self._state:
            self._fail(f"{event.previous}→{event.state} announced while in {self._state}")
        elif event.state is event.previous:
            self._fail(f"{event.state}→{event.state} announced")
        elif event.state not in LEGAL[event.previous]:
            self._fail(f"illegal transition {event.previous}→{event.state}")
        self.transitions.add((event.previous, event.state))
        self._state = event.state

    def _ended(self, turn_id: int, how: str) -> None:
        endings = self._endings.setdefault(turn_id, [])
        endings.append(how)
        if endings.count("finished") > 1:
            self._fail(f"turn {turn_id} finished twice")

    def _message(self, event: ErrorEvent | Notice) -> None:
        kind = "error" if isinstance(event, ErrorEvent) else "notice"
        text = event.message
        if "\n" in text or "\r" in text:
            self._fail(f"{kind} spans several lines: {text[:80]!r}")
        if not text.strip():
            self._fail(f"empty {kind}")
        if event.source is Source.NONE:
            self._fail(f"{kind} without a source: {text[:80]!r}")
        if self.leaks(text):
            self._fail(f"{kind} holds a key")

    def leaks(self, text: str) -> bool:
        """``text`` holds one of the canaries, in some spelling."""
        return any(form in text for form in self._secrets)

    def _fail(self, what: str) -> None:
        if what not in self._broken:
            self._broken.append(what)

    def violations(self, *, closed: bool = True) -> list[str]:
        """Everything broken so far; ``closed``: the conversation is over (every final must have
        its ending, and the state must be ``idle``)."""
        broken = list(self._broken)
        if closed:
            for turn_id in sorted(self._finals):
                endings = self._endings.get(turn_id, [])
                if len(endings) != 1:
                    said = " and ".join(endings) or "never ended"
                    broken.append(f"final transcript of turn {turn_id} {said}")
            if self._state is not State.IDLE:
                broken.append(f"ended in state {self._state}, not idle")
        return broken
