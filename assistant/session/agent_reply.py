"""One answer of a speech-to-speech engine, as the user heard it: the handle of a reply whose
audio and transcript come from the provider.

An ``AgentReply`` belongs to one user turn and may span several provider replies (a reply that
calls tools, then the one that answers from their results). Audio goes to the player under the
turn's id as it arrives; each item's transcript is kept beside its audio (``SpokenText``), so
the words heard can be told from the playback position. It ends in exactly one way:

- it plays out (or fails after part of it was heard): the record keeps what was heard;
- ``interrupt()``: playback stops within one audio block (the player's ``clear``), the engine is
  told how much of each item was played (it truncates its context to that), and the record
  keeps the words played up to that position; audio still arriving is dropped, and an item
  that starts only after the cut is removed from the engine's context too;
- the engine cancels it (its own barge-in): the same as ``interrupt()``.

The record is handed to ``on_finished`` once; the reply never writes history itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from assistant.audio.player import Player
from assistant.clock import Clock
from assistant.config import Settings
from assistant.engines import s2s
from assistant.engines.base import SpeechChunk, ToolCall
from assistant.events import AssistantText, SessionEvent
from assistant.history import ToolRecord, TurnRecord
from assistant.session.playout import PlayedReply
from assistant.timeline import Timeline

log = logging.getLogger(__name__)


@dataclass(slots=True, eq=False)
class AgentTurn:
    """A user turn of a speech-to-speech conversation: its timeline and the user's words."""

    turn_id: int
    timeline: Timeline
    user_text: str = ""
    #: The user's transcript is final (typed text is final at once).
    user_final: bool = False
    #: The user spoke again before any of the answer was heard: it is cut at once.
    superseded: bool = False
    settled: asyncio.Event = field(default_factory=asyncio.Event)

    def heard_user(self, text: str) -> None:
        self.user_text = text
        self.user_final = True
        self.settled.set()


class AgentReply(PlayedReply):
    """The handle of one speech-to-speech answer (see the module docstring)."""

    def __init__(
        self,
        *,
        turn: AgentTurn,
        agent: s2s.AgentSession,
        player: Player,
        settings: Settings,
        clock: Clock,
        emit: Callable[[SessionEvent], None],
        on_finished: Callable[[AgentReply, TurnRecord], None],
    ) -> None:
        super().__init__(
            player=player, settings=settings, clock=clock, emit=emit, on_finished=on_finished
        )
        self.turn = turn
        self.turn_id = turn.turn_id
        self.timeline = turn.timeline
        self._agent = agent
        #: Provider reply ids this answer spans, the latest last.
        self.replies: list[str] = []
        self._items: dict[str, int] = {}  # item id → piece index
        self._texts: dict[str, str] = {}
        self.tools: list[ToolRecord] = []
        #: Calls of the latest provider reply, run when it is done.
        self.calls: list[ToolCall] = []
        #: Tool results were sent: the next provider reply continues this answer.
        self.continues = False
        self.error: str | None = None
        self.held = False  # never prepared ahead: derive_state reads it
        self.finished = False
        self.interrupted = False
        self._waiting: asyncio.Task[None] | None = None
        self._ticker = asyncio.ensure_future(self._report_heard())

    # ---------------------------------------------------------------------------- provider

    def owns(self, reply: str) -> bool:
        return reply in self.replies

    @property
    def latest(self) -> str:
        return self.replies[-1] if self.replies else ""

    def started(self, reply: str) -> None:
        self.replies.append(reply)
        self.continues = False
        self.calls = []
        self.timeline.mark("llm_request")

    def audio(self, event: s2s.ReplyAudio) -> None:
        if self.finished:
            self._forget_late_item(event.item)
            return
        piece = self._piece(event.item)
        self.timeline.mark("tts_first_audio")
        chunk = SpeechChunk(event.pcm, event.sample_rate, piece, self._texts.get(event.item, ""))
        if self._player.write(event.pcm, event.sample_rate, self.turn_id):
            self.spoken.add(chunk)

    def text(self, event: s2s.ReplyText) -> None:
        if self.finished:
            return
        piece = self._piece(event.item)
        before = self._texts.get(event.item, "")
        self._texts[event.item] = before + event.text
        at = (len(before), event.at) if event.at is not None else None
        self.spoken.set_text(piece, self._texts[event.item], at=at)
        self.timeline.mark("llm_first_token")
        self._emit(AssistantText(self.turn_id, self._heard_now(), self.generated))

    def text_done(self, event: s2s.ReplyTextDone) -> None:
        if self.finished:
            return
        piece = self._piece(event.item)
        self._texts[event.item] = event.text or self._texts.get(event.item, "")
        self.spoken.set_text(piece, self._texts[event.item], complete=True)

    def tool_call(self, call: ToolCall) -> None:
        self.calls.append(call)

    def tool_ran(self, record: ToolRecord) -> None:
        self.tools.append(record)

    def done(self, event: s2s.ReplyDone) -> None:
        """The provider reply ``event.reply`` ended; tool calls (if any) are the caller's."""
        if self.finished:
            return
        if event.status == "cancelled":
            self.interrupt()  # the engine's own barge-in: what was played stays
            return
        if event.status == "failed":
            self.error = str(event.error) if event.error is not None else "the reply failed"
            self.calls = []
        if self.calls and event.status == "completed":
            return  # the session runs them and sends the results; the answer goes on
        self._end_of_audio()

    def _end_of_audio(self) -> None:
        if self.spoken.audio_seconds > 0:
            self._player.flush()
            self._waiting = asyncio.ensure_future(self._play_out())
        else:
            self._finish(interrupted=False)

    def _piece(self, item: str) -> int:
        piece = self._items.get(item)
        if piece is None:
            piece = self._items[item] = len(self._items)
        return piece

    def _forget_late_item(self, item: str) -> None:
        """Audio of an item first seen after the cut: not heard, so not in the context."""
        if self.interrupted and item not in self._items:
            self._items[item] = len(self._items)
            self._agent.interrupt(self.latest, [s2s.Heard(item, 0.0, 0.0)], "")

    # ----------------------------------------------------------------------------- control

    def pause(self) -> None:
        if not self.finished:
            self._player.pause()

    def resume(self) -> None:
        if not self.finished:
            self._player.resume()

    def interrupt(self) -> None:
        """Stop now; the engine keeps, and the record holds, only what was heard."""
        if self.finished:
            return
        position = self._player.position if self.playing else 0.0
        self._player.clear()
        self._player.resume()
        heard = []
        for item, piece in self._items.items():
            duration = self.spoken.duration_of(piece)
            played = min(max(0.0, position - self.spoken.start_of(piece)), duration)
            heard.append(s2s.Heard(item, played, duration))
        self._agent.interrupt(self.latest, heard, self.spoken.heard(position))
        self.timeline.mark("interrupted")
        self._finish(interrupted=True, position=position)

    @property
    def generated(self) -> str:
        return " ".join(t.strip() for t in self._texts.values() if t.strip())

    # ------------------------------------------------------------------------------ playback

    def _tasks(self) -> tuple[asyncio.Future[None] | None, ...]:
        return (self._waiting, self._ticker)

    def _heard_now(self) -> str:
        return self.spoken.heard(self._player.position) if self.playing else ""

    def _generated_now(self) -> str:
        return self.generated

    # -------------------------------------------------------------------------------- end

    def _finish(self, *, interrupted: bool, position: float | None = None) -> None:
        if self.finished:
            return
        self.finished = True
        self.interrupted = interrupted
        self._ticker.cancel()
        waiting = self._waiting
        if waiting is not None and waiting is not asyncio.current_task():
            waiting.cancel()  # cut before it played out: nothing more to wait for
        if self.playing:
            self.timeline.mark("playback_end")
        if interrupted:
            heard = self.spoken.heard(position or 0.0)
        elif self.error is not None:
            heard = self._heard_now()
        else:
            heard = self.spoken.text.strip() or self.generated
        self._hand_over(
            user_text=self.turn.user_text,
            heard=heard,
            interrupted=interrupted,
            generated=self.generated,
            tools=list(self.tools),
        )
