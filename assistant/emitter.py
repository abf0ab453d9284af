"""One way to publish typed events: ``Emitter[T]``.

Listeners are plain callables run synchronously, in subscription order, on the thread that
emits (for everything in ``assistant`` that is the asyncio loop's thread). A listener that raises
is logged and skipped: a broken view must never break the conversation. Producers on other
threads (audio callbacks, inference workers) hop onto the loop first, with ``emit_threadsafe``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

log = logging.getLogger(__name__)


class Emitter[T]:
    """Fan-out of events of type ``T`` to subscribed listeners."""

    def __init__(self, name: str = "") -> None:
        self._name = name
        self._listeners: list[Callable[[T], None]] = []

    def subscribe(self, listener: Callable[[T], None]) -> Callable[[], None]:
        """Call ``listener(event)`` for every later event; returns the function that stops it."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def emit(self, event: T) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                name = self._name or "event"
                log.exception("%s listener failed on %s", name, type(event).__name__)

    def emit_threadsafe(self, loop: asyncio.AbstractEventLoop, event: T) -> None:
        """Emit from another thread: the listeners run on ``loop`` (dropped if it has closed)."""
        try:
            loop.call_soon_threadsafe(self.emit, event)
        except RuntimeError:
            log.debug("%s event dropped: the loop is closed", self._name or "an")

    async def stream(self) -> AsyncIterator[T]:
        """Every event from now on, as an async iterator (for headless callers and tests)."""
        queue: asyncio.Queue[T] = asyncio.Queue()
        unsubscribe = self.subscribe(queue.put_nowait)
        try:
            while True:
                yield await queue.get()
        finally:
            unsubscribe()

    def __len__(self) -> int:
        return len(self._listeners)
