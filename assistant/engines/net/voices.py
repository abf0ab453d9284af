"""A provider's voice list, fetched once and cached, that never blocks the event loop."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from assistant.engines.base import EngineError, Voice

log = logging.getLogger(__name__)


class VoiceCache:
    """A provider's voice list, fetched once and cached; ``fallback`` until it is known.

    ``get`` never blocks a running event loop: there it returns the fallback list and fetches in
    the background. Without a loop (a command-line listing) it fetches at once. After a failed
    fetch, listings show the fallback for ``retry_after`` seconds before trying again.
    """

    def __init__(
        self,
        label: str,
        fetch: Callable[[], Awaitable[list[Voice]]],
        fallback: Callable[[], list[Voice]],
        retry_after: float = 30.0,
    ) -> None:
        self.label = label
        self._fetch = fetch
        self._fallback = fallback
        self._retry_after = retry_after
        self._voices: list[Voice] | None = None
        self._task: asyncio.Task[None] | None = None
        self._retry_at = 0.0

    async def load(self) -> list[Voice]:
        """Fetch now (raises ``EngineError``) and cache."""
        self._voices = await self._fetch() or self._fallback()
        return self._voices

    def get(self) -> list[Voice]:
        if self._voices is not None:
            return list(self._voices)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            try:
                return list(asyncio.run(self.load()))
            except EngineError as exc:
                log.warning("%s voices: %s; listing the built-in ones", self.label, exc)
                return self._fallback()
        self.prefetch()
        return self._fallback()

    def prefetch(self) -> None:
        """Start a background fetch unless one ran (or failed) lately."""
        task = self._task
        if self._voices is None and (
            task is None or (task.done() and time.monotonic() >= self._retry_at)
        ):
            self._task = asyncio.get_running_loop().create_task(self._load_quietly())

    async def wait(self) -> None:
        """Let a background fetch finish (for callers that can wait)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _load_quietly(self) -> None:
        try:
            await self.load()
        except EngineError as exc:
            log.info("%s voices not fetched: %s", self.label, exc)
            self._retry_at = time.monotonic() + self._retry_after
