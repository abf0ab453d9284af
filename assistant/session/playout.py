"""What every reply handle does with the player, whoever produced the reply: ``PlayedReply``.

A chained ``Reply`` (language model → voice) and a speech-to-speech ``AgentReply`` both write
their audio under the turn's id and learn from the player when it started and when it ended
(played out, or cut). While the reply plays, the words heard so far are reported every
``HEARD_INTERVAL`` seconds; when it ends, a ``TurnRecord`` of what was heard is announced and
handed to ``on_finished`` (once). That part lives here, once.

A subclass says what has been heard at the player's position (``_heard_now``), what has been
generated so far (``_generated_now``) and which of its tasks run until it has ended
(``_tasks``); its ``_finish`` decides what was heard and calls ``_hand_over``.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Self

from assistant.audio.player import Player
from assistant.clock import Clock
from assistant.config import Settings
from assistant.events import AssistantText, SessionEvent, TimelineUpdated
from assistant.history import ToolRecord, TurnRecord
from assistant.spoken import SpokenText
from assistant.timeline import Timeline

#: How often the words heard so far are reported while a reply plays.
HEARD_INTERVAL = 0.1


class PlayedReply(ABC):
    """The player's side of a reply handle; see the module docstring."""

    turn_id: int
    timeline: Timeline
    error: str | None
    finished: bool

    def __init__(
        self,
        *,
        player: Player,
        settings: Settings,
        clock: Clock,
        emit: Callable[[SessionEvent], None],
        on_finished: Callable[[Self, TurnRecord], None],
    ) -> None:
        """Needs a running event loop (the player's verdict is a future on it)."""
        self._player = player
        self._settings = settings
        self._clock = clock
        self._emit = emit
        self._on_finished = on_finished
        self.spoken = SpokenText()
        #: The player has started playing the reply.
        self.playing = False
        #: The player's verdict: (position in s, whether playback was cut).
        self._played: asyncio.Future[tuple[float, bool]] = (
            asyncio.get_running_loop().create_future()
        )
        self._last_heard = ""

    @abstractmethod
    def _heard_now(self) -> str:
        """The reply's words heard up to the player's position."""

    @abstractmethod
    def _generated_now(self) -> str:
        """The reply's text generated so far (heard or not)."""

    @abstractmethod
    def _tasks(self) -> Sequence[asyncio.Future[Any] | None]:
        """The reply's own tasks (None: not started), awaited by ``wait_for_playout``."""

    @abstractmethod
    def _finish(self, *, interrupted: bool, position: float | None = None) -> None:
        """End the reply (only once): cut at ``position`` s when ``interrupted``."""

    # ------------------------------------------------------------------- player notifications

    def playback_started(self, at: float) -> None:
        self.playing = True
        self.timeline.mark("playback_start", at)
        self._emit(TimelineUpdated(self.turn_id, self.timeline.to_dict(self._settings.budgets)))

    def playback_finished(self, position: float, cut: bool) -> None:
        if not self._played.done():
            self._played.set_result((position, cut))

    async def _play_out(self) -> None:
        """Wait for the player to finish the reply, and record it as it was heard."""
        position, cut = await self._played
        # A cut the session did not ask for (the device was lost) still shortens what was heard.
        self._finish(interrupted=cut, position=position if cut else None)

    async def wait_for_playout(self) -> None:
        """Until the reply has ended, one way or another (its tasks included)."""
        tasks = [t for t in self._tasks() if t is not None]
        if tasks:
            await asyncio.gather(*(asyncio.shield(t) for t in tasks), return_exceptions=True)

    async def _report_heard(self) -> None:
        """While the reply plays, report how much of it has been heard (for the UI)."""
        while not self.finished:
            if self.playing:
                heard = self._heard_now()
                if heard != self._last_heard:
                    self._last_heard = heard
                    self._emit(AssistantText(self.turn_id, heard, self._generated_now()))
            await self._clock.sleep(HEARD_INTERVAL)

    # ------------------------------------------------------------------------------------ end

    def _hand_over(
        self: Self,
        *,
        user_text: str,
        heard: str,
        interrupted: bool,
        generated: str,
        tools: list[ToolRecord],
    ) -> None:
        """Announce the reply's end (``heard``: the words the user heard) and hand its record to
        ``on_finished``; called once, by ``_finish``."""
        record = TurnRecord(
            turn_id=self.turn_id,
            user_text=user_text,
            assistant_text=heard,
            interrupted=interrupted,
            generated_text=generated,
            tool_calls=tools,
            timeline=self.timeline.to_dict(self._settings.budgets),
            error=self.error,
        )
        self._emit(AssistantText(self.turn_id, heard, self._generated_now()))
        self._emit(TimelineUpdated(self.turn_id, record.timeline))
        self._on_finished(self, record)
