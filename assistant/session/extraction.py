"""The structured objects being extracted beside replies, one per turn.

When a reply's text is complete (``start``), its turn's object is asked for in the background
while the reply plays; the recorder waits for it (``complete``) just before writing the turn,
so it is stored with the turn and the turns stay in order. Closing the conversation stops the
extractions in flight; their turns are saved without an object, saying why.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from assistant.config import Settings
from assistant.events import SessionEvent, StructuredExtracted, TimelineUpdated
from assistant.history import TurnRecord
from assistant.session.reply import Reply
from assistant.tools.structured import Extraction, StructuredExtractor

CLOSED = "the extraction was stopped when the conversation closed"


class Extractions:
    def __init__(self, settings: Settings, emit: Callable[[SessionEvent], None]) -> None:
        self._settings = settings
        self._emit = emit
        #: Extracts an object from every answered turn (None: off). Read when a reply ends.
        self.extractor: StructuredExtractor | None = None
        self._tasks: dict[int, asyncio.Task[Extraction]] = {}

    def start(self, reply: Reply) -> None:
        """The reply's text is complete: extract its turn's object now, while it plays."""
        extractor = self.extractor
        if extractor is None or reply.scripted or reply.announcement:
            return
        reply.timeline.mark("structured_request")
        answer = reply.generation.text.strip()
        messages = list(reply.generation.messages)

        async def extract() -> Extraction:
            try:
                return await extractor.extract(messages, answer)
            finally:
                reply.timeline.mark("structured_done")

        self._tasks[reply.turn_id] = asyncio.create_task(
            extract(), name=f"structured-{reply.turn_id}"
        )

    async def complete(self, reply: Reply, record: TurnRecord) -> None:
        """Wait for the turn's object (if one is being extracted) and put it in the record."""
        task = self._tasks.pop(reply.turn_id, None)
        if task is None:
            return
        try:
            result = await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            record.structured_error = CLOSED
            return
        record.structured, record.structured_error = result.data, result.error
        record.timeline = reply.timeline.to_dict(self._settings.budgets)
        self._emit(StructuredExtracted(reply.turn_id, result.data, result.error))
        self._emit(TimelineUpdated(reply.turn_id, record.timeline))

    def cancel(self) -> None:
        for task in self._tasks.values():
            task.cancel()
