"""Let the language model read the prompt while the user is still talking.

A model that can (``Prefillable``: llama-server's prompt cache) processes the conversation plus
the partial transcript so far, so when the turn ends only the last few words are new. At most
one prefill runs at a time; when it ends, the newest partial gets its turn. A reply always takes
precedence: no prefill starts while one is in flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from assistant.engines.base import ChatRequest, LanguageModel, Prefillable

log = logging.getLogger(__name__)


class Prefiller:
    def __init__(
        self,
        llm: LanguageModel,
        *,
        request_for: Callable[[str], ChatRequest],
        replying: Callable[[], bool],
    ) -> None:
        self._llm = llm
        self._request_for = request_for
        self._replying = replying
        self._task: asyncio.Task[None] | None = None
        self._text: str | None = None

    def schedule(self, text: str) -> None:
        """Prefill for a user message that reads ``text`` so far."""
        if not isinstance(self._llm, Prefillable):
            return
        self._text = text
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(self._llm), name="prefill")

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def wait(self) -> None:
        """Until the prefill in progress (if any) has ended."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self, llm: Prefillable) -> None:
        done: str | None = None
        while not self._replying() and self._text != done:
            text = self._text or ""
            try:
                await llm.prefill(self._request_for(text))
            except Exception:
                log.debug("prefill failed", exc_info=True)
                return
            done = text
