"""Finished turns go to the history: in order, durably, and never lost.

``TurnRecorder.record`` appends a turn to its conversation in a worker thread (the fsync never
blocks the event loop), one write at a time so turns stay in order, and only then announces
``TurnFinished``. Whatever the write raises, the turn stays in the conversation in memory (it
is still part of the context and shown), the user is told once, and the recorder carries on:
a failed write never wedges the session.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from assistant.events import ErrorEvent, SessionEvent, Source, TurnFinished
from assistant.history import Conversation, TurnRecord

log = logging.getLogger(__name__)

#: Runs a blocking call off the event loop.
Offload = Callable[..., Awaitable[object]]


class TurnRecorder:
    def __init__(
        self,
        emit: Callable[[SessionEvent], None],
        offload: Offload = asyncio.to_thread,
    ) -> None:
        self._emit = emit
        self._offload = offload
        self._lock = asyncio.Lock()
        self._writing = 0

    @property
    def busy(self) -> bool:
        """A turn is being written."""
        return self._writing > 0

    async def record(
        self,
        conversation: Conversation,
        turn: TurnRecord,
        complete: Callable[[TurnRecord], Awaitable[None]] | None = None,
    ) -> None:
        """Append ``turn`` durably, then emit ``TurnFinished``. Never raises.

        ``complete`` (work that finishes the record, e.g. its structured object) is awaited in
        turn order, just before the write: later turns wait for it, so the order holds.
        """
        self._writing += 1
        cancelled = False
        try:
            async with self._lock:
                if complete is not None:
                    try:
                        await complete(turn)
                    except asyncio.CancelledError:
                        cancelled = True  # closing: write the turn as it is, then stop
                    except Exception:
                        log.exception("completing turn %d failed", turn.turn_id)
                try:
                    await self._offload(conversation.append, turn)
                except Exception as exc:
                    log.warning("saving turn %d failed: %s", turn.turn_id, exc)
                    if turn not in conversation.turns:
                        conversation.turns.append(turn)
                    self._emit(
                        ErrorEvent(
                            f"Could not save the conversation ({exc}); it stays in memory for now.",
                            Source.HISTORY,
                            turn.turn_id,
                        )
                    )
            self._emit(TurnFinished(turn))
        finally:
            self._writing -= 1
        if cancelled:
            raise asyncio.CancelledError

    async def drain(self) -> None:
        """Wait until every turn handed over so far is written (or has failed)."""
        async with self._lock:
            return
