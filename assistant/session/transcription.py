"""The conversation's speech-recognition stream: one engine session, kept open, reopened when
it breaks.

Audio of the open utterance goes in with ``push``; partials come out through ``on_partial``.
Each utterance that ends asks for its final with ``expect_final`` (synchronously, so finals are
matched to utterances strictly in order) and then ``wait_final``. A recognizer that ends turns
by itself reports them through ``on_endpoint``.

No words are lost to a broken stream. The audio of the open utterance and of every utterance
still waiting for its final is kept (up to ``BACKLOG_SAMPLES``); when the stream breaks it is
reopened and that audio is handed to the new stream, each waiting utterance ended again, so
their finals come from the new stream (audio that arrives meanwhile waits too). Only when no
stream can be had do the waiting utterances fail, with the engine's error.

A server that accepts the connection and then drops it at once must not be reconnected without
end: reopening backs off after each quick failure, a chain of engines is told to skip the one
that keeps dropping (the next one, usually the local engine, takes over), and after
``MAX_QUICK_FAILURES`` in a row the stream stays closed with one clear message. The user hears
of a burst of failures once, not once per reconnection. A break while an utterance waited for
its final has a chain skip the engine at once: the utterance goes to the next engine, and the
failed one is probed in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable

from assistant.clock import Clock
from assistant.engines.base import (
    PCM,
    Checkpoints,
    EngineError,
    SkipsFailedEngines,
    SpeechToText,
    STTSession,
    Transcript,
)
from assistant.tasks import cancel_and_wait

log = logging.getLogger(__name__)

#: An utterance whose final transcript takes longer than this fails with a clear message.
FINAL_TRANSCRIPT_TIMEOUT = 15.0
#: A stream that breaks within this many seconds of opening failed "quickly".
QUICK_FAILURE_SECONDS = 5.0
#: Quick failures in a row before the active engine of a chain is skipped.
SKIP_AFTER_QUICK_FAILURES = 2
#: Quick failures in a row before reopening stops.
MAX_QUICK_FAILURES = 5
#: Pause before reopening after the n-th quick failure: base * 2**(n-1), capped.
REOPEN_BACKOFF = (0.5, 8.0)
#: Audio kept while reconnecting, at most (samples at 16 kHz: 30 s).
BACKLOG_SAMPLES = 30 * 16_000


class Transcription:
    def __init__(
        self,
        stt: SpeechToText,
        *,
        language: Callable[[], str],
        clock: Clock,
        on_partial: Callable[[str], None],
        on_endpoint: Callable[[str], None],
        on_error: Callable[[str], None],
    ) -> None:
        self.stt = stt
        self._language = language
        self._clock = clock
        self._on_partial = on_partial
        self._on_endpoint = on_endpoint
        self._on_error = on_error
        self._session: STTSession | None = None
        self._reader: asyncio.Task[None] | None = None
        self._waiters: deque[asyncio.Future[str]] = deque()
        #: Set while a broken stream is being replaced; audio waits meanwhile.
        self._reconnected: asyncio.Event | None = None
        #: The open utterance's audio so far, for a new stream should this one break.
        self._utterance: list[PCM] = []
        self._kept = 0  # samples in ``_utterance``
        #: The audio of each utterance waiting for its final, and whether its end was asked.
        self._awaiting: dict[asyncio.Future[str], tuple[list[PCM], bool]] = {}
        #: The language of the latest final transcript, when the engine said (None before).
        self.heard_language: str | None = None

    @property
    def open(self) -> bool:
        return self._session is not None

    async def start(self) -> None:
        """Open the engine's session (raises ``EngineError`` when it cannot)."""
        self._session = await self.stt.open(self._language())
        self._reader = asyncio.create_task(self._read(self._session), name="transcripts")

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            await cancel_and_wait(reader)
        session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(Exception):
                await session.aclose()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.cancel()
        self._awaiting.clear()

    async def push(self, pcm: PCM) -> None:
        """Audio of the open utterance. A stream that broke is not this call's problem: the
        audio is kept for the new stream."""
        self._utterance.append(pcm)
        self._kept += len(pcm)
        while self._kept > BACKLOG_SAMPLES and len(self._utterance) > 1:
            self._kept -= len(self._utterance.pop(0))
        if self._reconnected is None and self._session is not None:
            try:
                await self._session.push(pcm)
            except EngineError as exc:
                log.info("speech recognition stream broke while sending audio: %s", exc)

    async def clear(self) -> None:
        self._utterance.clear()
        self._kept = 0
        if self._session is not None and self._reconnected is None:
            await self._session.clear()

    @property
    def can_checkpoint(self) -> bool:
        """The engine's stream can transcribe the open utterance without ending it."""
        return isinstance(self._session, Checkpoints) and self._reconnected is None

    async def checkpoint(self) -> str | None:
        """The open utterance's words so far, as a final would give them; None when the engine
        cannot tell without ending the utterance."""
        session = self._session
        if not isinstance(session, Checkpoints) or self._reconnected is not None:
            return None
        return await session.checkpoint()

    def expect_final(self) -> asyncio.Future[str]:
        """Reserve the next final transcript for the utterance that just ended."""
        waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._awaiting[waiter] = (self._utterance, False)
        self._utterance = []
        self._kept = 0
        waiter.add_done_callback(lambda w: self._awaiting.pop(w, None))
        return waiter

    async def wait_final(self, waiter: asyncio.Future[str], known: str | None = None) -> str:
        """Ask the engine to finish the utterance and wait for its final transcript.

        ``known``: the engine already gave it (its own endpointing). Raises ``EngineError`` or
        ``TimeoutError`` when no transcript comes.
        """

        def expire() -> None:
            if not waiter.done():
                waiter.set_exception(TimeoutError())

        timer = self._clock.call_later(FINAL_TRANSCRIPT_TIMEOUT, expire)
        try:
            if known is not None and not waiter.done():
                waiter.set_result(known)
            reconnected = self._reconnected
            if reconnected is not None:
                await reconnected.wait()
            session = self._session
            if session is None:
                raise EngineError("speech recognition is not running")
            audio, asked = self._awaiting.get(waiter, ([], True))
            if not asked and not waiter.done():
                self._awaiting[waiter] = (audio, True)
                try:
                    await session.end_turn()
                except EngineError as exc:
                    # The stream broke: the reader hands this utterance to the next stream.
                    log.info("speech recognition stream broke at the end of a turn: %s", exc)
            return await asyncio.shield(waiter)
        finally:
            timer.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    async def _read(self, session: STTSession) -> None:
        """Route transcripts; if the engine's stream breaks, reopen it and replay what waits
        (the waiting finals fail only when no new stream can be had)."""
        quick = 0
        opened_at = self._clock.now()
        while True:
            try:
                async for transcript in session.transcripts():
                    self._route(transcript)
                return  # the session was closed
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("speech recognition stream failed: %s", exc)
                error = exc if isinstance(exc, EngineError) else EngineError(str(exc))
                quick = quick + 1 if self._clock.now() - opened_at < QUICK_FAILURE_SECONDS else 1
                waiters = [w for w in self._waiters if not w.done()]
                if not waiters and quick == 1:
                    self._on_error(f"Speech recognition lost its connection ({exc}); reconnecting.")
                skip = bool(waiters) or quick >= SKIP_AFTER_QUICK_FAILURES
                if skip and isinstance(self.stt, SkipsFailedEngines):
                    self.stt.failed_after_open(error)
            with contextlib.suppress(Exception):
                await session.aclose()
            reconnected = self._reconnected = asyncio.Event()
            try:
                reopened = await self._reopen(quick)
            finally:
                self._reconnected = None
                reconnected.set()
            if reopened is None:
                self._fail_waiting(error)
                return
            session, opened_at = reopened, self._clock.now()

    def _fail_waiting(self, error: EngineError) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(error)

    async def _reopen(self, quick: int) -> STTSession | None:
        """A new stream after a failure (None: given up, and the user was told why)."""
        if quick >= MAX_QUICK_FAILURES:
            self._session = None
            self._on_error(
                "Speech recognition keeps dropping its connection, so it was stopped. Check "
                "the network or choose another speech engine in Settings, then Retry."
            )
            return None
        base, cap = REOPEN_BACKOFF
        await self._clock.sleep(min(cap, base * 2 ** (quick - 1)))
        try:
            session = await self.stt.open(self._language())
        except Exception as exc:
            self._session = None
            self._on_error(f"Speech recognition is unavailable: {exc}")
            return None
        self._session = session
        try:
            await self._replay(session)
        except Exception as exc:
            log.warning("replaying audio into the new recognizer stream failed: %s", exc)
        return session

    async def _replay(self, session: STTSession) -> None:
        """Hand the new stream the utterances the old one left unanswered, ended again where
        they had ended, then the open utterance's audio so far."""
        for waiter in list(self._waiters):
            if waiter.done() or waiter not in self._awaiting:
                continue
            audio, asked = self._awaiting[waiter]
            for pcm in audio:
                await session.push(pcm)
            if asked:
                await session.end_turn()
        for pcm in list(self._utterance):
            await session.push(pcm)

    def _route(self, transcript: Transcript) -> None:
        if transcript.is_final:
            if transcript.language:
                self.heard_language = transcript.language
            waiter = next((w for w in self._waiters if not w.done()), None)
            if waiter is not None:
                waiter.set_result(transcript.text)
            elif transcript.end_of_turn:
                self._on_endpoint(transcript.text)
            return
        self._on_partial(transcript.text)
