"""The speech-to-speech engine's session, kept open for a conversation.

``AgentLink`` opens the engine's session with the setup of the moment (the conversation so far,
the tools, who ends turns), reads its events into ``on_event``, and when it fails for good
releases it, reports the failure once (``on_failure``) and opens a new one in the background.
An open that fails is reported (``on_open_failed``) and not tried again for
``REOPEN_INTERVAL`` seconds, so a session fed audio continuously does not hammer a provider that
refuses it. A session lost within ``QUICK_FAILURE_SECONDS`` of opening (a server that accepts and
then drops) is a quick failure: from the second in a row on, the next open waits
``REOPEN_INTERVAL``, doubled for each further one (up to ``MAX_REOPEN_INTERVAL``), and only the
first of a run is reported, so such a server costs neither a connection nor a message per
moment. ``current()`` is the session, or None while there is none (asking for one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from assistant.clock import Clock
from assistant.engines import s2s
from assistant.engines.base import EngineError

log = logging.getLogger(__name__)

#: After a session could not be opened, the next try waits this long.
REOPEN_INTERVAL = 5.0
#: A session lost sooner than this after it opened failed "quickly".
QUICK_FAILURE_SECONDS = 5.0
#: The longest wait before reopening after quick failures in a row.
MAX_REOPEN_INTERVAL = 60.0


class AgentLink:
    """See the module docstring. Every callback runs on the event loop."""

    def __init__(
        self,
        engine: s2s.SpeechToSpeech,
        *,
        setup: Callable[[], s2s.AgentSetup],
        on_event: Callable[[s2s.AgentEvent], None],
        on_failure: Callable[[EngineError], None],
        on_open_failed: Callable[[EngineError], None],
        spawn: Callable[[Coroutine[Any, Any, None], str], object],
        clock: Clock,
    ) -> None:
        self.engine = engine
        self._setup = setup
        self._on_event = on_event
        self._on_failure = on_failure
        self._on_open_failed = on_open_failed
        self._spawn = spawn
        self._clock = clock
        self._session: s2s.AgentSession | None = None
        #: What the open session was set up with.
        self.setup_used: s2s.AgentSetup | None = None
        self._pump: asyncio.Task[None] | None = None
        self._opening: asyncio.Task[None] | None = None
        #: No open is tried before this time (after a failed open, or quick failures).
        self._retry_at = float("-inf")
        self._opened_at = float("-inf")
        #: Sessions in a row lost within ``QUICK_FAILURE_SECONDS`` of opening.
        self._quick = 0
        #: Reopen after a failure (False once the conversation is closing).
        self.active = True

    async def open(self) -> None:
        """Open the engine's session now (raises ``EngineError``)."""
        await self._close_session()
        setup = self._setup()
        session = await self.engine.open(setup)
        self._opened_at = self._clock.now()
        self._session, self.setup_used = session, setup
        self._pump = asyncio.create_task(self._read(session), name="s2s-events")

    def current(self) -> s2s.AgentSession | None:
        """The engine's session, or None (one is being opened) when there is none."""
        if self._session is None:
            self.reopen_soon()
        return self._session

    def reopen_soon(self) -> None:
        """Open a new session in the background, unless one is opening or an open just failed."""
        if not self.active or (self._opening is not None and not self._opening.done()):
            return
        if self._clock.now() < self._retry_at:
            return

        async def reopen() -> None:
            try:
                await self.open()
            except EngineError as exc:
                self._retry_at = self._clock.now() + REOPEN_INTERVAL
                self._on_open_failed(exc)

        self._opening = asyncio.ensure_future(reopen())

    def restart(self) -> None:
        """Drop the session (it closes in the background) and open a new one with the setup of
        now: another conversation, or other turn detection."""
        self._drop()
        self._retry_at = float("-inf")
        self._quick = 0
        self.reopen_soon()

    def lost(self, session: s2s.AgentSession, error: EngineError) -> None:
        """``session`` failed for good: released, reported, and another one opened (after a
        pause when it failed quickly; see the module docstring)."""
        if self._session is not session:
            return
        self._drop()
        now = self._clock.now()
        self._quick = self._quick + 1 if now - self._opened_at < QUICK_FAILURE_SECONDS else 0
        pause = 0.0
        if self._quick > 1:  # one drop is reopened at once; a server that keeps dropping waits
            pause = min(MAX_REOPEN_INTERVAL, REOPEN_INTERVAL * 2 ** (self._quick - 2))
            self._retry_at = now + pause
        if self._quick <= 1:
            self._on_failure(error)
        else:
            log.warning("speech to speech failed again (%s); reopening in %g s", error, pause)
        if self.active:
            self.reopen_soon()

    def _drop(self) -> None:
        session, self._session = self._session, None
        pump, self._pump = self._pump, None
        if pump is not None:
            pump.cancel()
        if session is not None:
            self._spawn(session.aclose(), "s2s-close")

    async def _read(self, session: s2s.AgentSession) -> None:
        try:
            async for event in session.events():
                try:
                    self._on_event(event)
                except Exception:
                    log.exception("handling a speech-to-speech event failed")
        except EngineError as exc:
            self.lost(session, exc)

    async def close(self) -> None:
        """Close the session and stop opening new ones."""
        self.active = False
        opening, self._opening = self._opening, None
        if opening is not None:
            opening.cancel()
            await asyncio.gather(opening, return_exceptions=True)
        await self._close_session()

    async def _close_session(self) -> None:
        session, self._session = self._session, None
        pump, self._pump = self._pump, None
        if session is not None:
            with contextlib.suppress(Exception):
                await session.aclose()
        if pump is not None:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
