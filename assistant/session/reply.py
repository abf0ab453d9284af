"""One reply in flight: LLM → splitter → TTS → player, as one task with one handle.

A ``Reply`` is created for a user turn and started at once. It may be *held* (prepared during a
pause: its audio, its text, its tool calls and any failure are kept back until ``release()``,
so nothing of it reaches the user before the turn has really ended), *paused* (the user may be
interrupting), and ends in exactly one of three ways, each decided in one place:

- it plays out (or fails after part of it was heard): ``finished`` with what was heard;
- ``interrupt()``: playback stops within one audio block, the task is cancelled, and the record
  keeps only the words played up to that position;
- ``withdraw()``: dropped before any of it was heard (the user was not done talking); no record.

The record of a reply that ended is handed to ``on_finished`` once, synchronously; the reply
never writes history itself. Everything it reports goes through ``emit`` on the loop thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from assistant.audio.player import Player
from assistant.clock import Clock
from assistant.config import Settings
from assistant.engines.base import (
    EngineError,
    LanguageModel,
    Message,
    SpeechChunk,
    TextToSpeech,
    closing_stream,
)
from assistant.events import (
    Activity,
    AssistantText,
    Doing,
    ErrorEvent,
    FillerSpoken,
    PlaybackPaused,
    PlaybackResumed,
    SessionEvent,
    Source,
    ToolCalled,
)
from assistant.history import Conversation, ToolRecord, TurnRecord
from assistant.scheduling import cpu_priority
from assistant.session.generate import Filler, Generation, Lines, PendingAction, generate
from assistant.session.playout import PlayedReply
from assistant.tasks import cancel_and_wait
from assistant.text import TextSplitter, phrase_starts
from assistant.timeline import Timeline
from assistant.tools import ToolRegistry

log = logging.getLogger(__name__)

#: With less reply audio than this left to play, the next clause goes to TTS without waiting
#: for the end of its sentence, so playback does not run dry.
HURRY_BELOW_SECONDS = 1.5
#: A message this long takes the model noticeably long to read before it answers (about 3 s
#: for the offline model on two cores): the wait is shown as reading rather than thinking.
READING_CHARS = 600


def same_language(a: str, b: str) -> bool:
    """Whether two language tags name the same language (``en-US`` and ``en`` do)."""
    return a.replace("_", "-").split("-")[0].lower() == b.replace("_", "-").split("-")[0].lower()


class Reply(PlayedReply):
    """The handle of one reply (see the module docstring)."""

    def __init__(
        self,
        *,
        turn_id: int,
        user_text: str,
        timeline: Timeline,
        conversation: Conversation,
        context: Callable[[], Awaitable[list[Message]]],
        llm: LanguageModel,
        tts: TextToSpeech,
        player: Player,
        tools: ToolRegistry | None,
        settings: Settings,
        clock: Clock,
        emit: Callable[[SessionEvent], None],
        on_finished: Callable[[Reply, TurnRecord], None],
        held: bool = False,
        language: str | None = None,
        lines: Lines | None = None,
        confirmed: PendingAction | None = None,
        script: str | None = None,
        chime: SpeechChunk | None = None,
        announcement: bool = False,
        on_generated: Callable[[Reply], None] | None = None,
    ) -> None:
        super().__init__(
            player=player, settings=settings, clock=clock, emit=emit, on_finished=on_finished
        )
        self.turn_id = turn_id
        #: The language the reply is spoken in (the settings' unless the user spoke another).
        self.language = language or settings.language
        self.user_text = user_text
        self.timeline = timeline
        #: The conversation this turn belongs to (kept even if a new one starts meanwhile).
        self.conversation = conversation
        self._context = context
        self._llm = llm
        self._tts = tts
        self._tools = tools
        self._lines = lines or Lines()
        #: The call the user agreed to, run before the model answers.
        self.confirmed = confirmed
        self._script = script
        self._chime = chime
        #: Spoken on its own (an alarm), not an answer to a user turn: never recorded.
        self.announcement = announcement
        self._on_generated = on_generated
        self._pieces_sent = 0
        self.generation = Generation()
        self.error: str | None = None
        self.paused = False
        self.finished = False
        self.interrupted = False
        self._held = held
        self._pending: list[SpeechChunk] = []
        self._released = asyncio.Event()
        if not held:
            self._released.set()
        self._task: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------------------- control

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"reply-{self.turn_id}")
        self._ticker = asyncio.create_task(self._report_heard(), name=f"heard-{self.turn_id}")

    @property
    def held(self) -> bool:
        """Prepared speculatively: its audio waits until ``release()``."""
        return self._held

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    def release(self) -> None:
        """The turn really ended: let the prepared audio (and any tool call) go."""
        if not self._held:
            return
        self._held = False
        pending, self._pending = self._pending, []
        for chunk in pending:
            self._write(chunk)
        self._released.set()
        if self.generation.text:
            self._emit(AssistantText(self.turn_id, self._heard_now(), self.generation.text))

    def pause(self) -> None:
        """Hold playback where it is (the user may be interrupting)."""
        if self.finished or self.paused:
            return
        self.paused = True
        self._player.pause()
        self._emit(PlaybackPaused(self.turn_id))

    def resume(self) -> None:
        if self.finished or not self.paused:
            return
        self.paused = False
        self._player.resume()
        self._emit(PlaybackResumed(self.turn_id))

    def interrupt(self) -> None:
        """Stop now; the record keeps only what was heard, cut at a word."""
        if self.finished:
            return
        position = self._player.position if self.playing else 0.0
        self._stop()
        self.timeline.mark("interrupted")
        self._finish(interrupted=True, position=position)

    def withdraw(self) -> None:
        """Drop the reply before any of it was heard; nothing is recorded."""
        if self.finished:
            return
        self._stop()
        self.finished = True
        self._stop_ticker()

    @property
    def scripted(self) -> bool:
        """Speaks a fixed line (no model)."""
        return self._script is not None

    @property
    def withdrawable(self) -> bool:
        """Nothing was heard and no tool ran: the turn can be taken back without a trace."""
        return not self.finished and not self.playing and not self.generation.tools

    def _tasks(self) -> tuple[asyncio.Task[None] | None, ...]:
        return (self._task, self._ticker)

    # ----------------------------------------------------------------------------- the task

    async def _run(self) -> None:
        try:
            await self._produce()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            failed = error if isinstance(error, _StageFailed) else _StageFailed(Source.LLM, error)
            exc = failed.error
            message = str(exc) if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
            log.warning("reply %d failed: %s", self.turn_id, message)
            # A speculative reply's failure is the user's news only once the turn has ended
            # (withdrawing the reply cancels this wait, and nothing is told).
            await self._released.wait()
            self.error = message
            self._emit(ErrorEvent(f"The reply failed: {message}", failed.source, self.turn_id))
            if self.spoken.audio_seconds > 0 and not self._held:
                # Let what is already queued play out, then record exactly what was heard.
                self._player.flush()
                await self._play_out()
                return
            self._finish(interrupted=False)

    def _pieces(self, messages: list[Message]) -> AsyncIterator[str | Filler]:
        if self._script is not None:
            self.generation.text = self._script
            return _scripted(self._script)
        return generate(
            self._llm,
            messages,
            tools=self._tools,
            timeline=self.timeline,
            into=self.generation,
            before_tools=self._released.wait,
            hurry=self._hurry,
            on_tool=self._tool_ran,
            clock=self._clock,
            lines=self._lines,
            confirmed=self.confirmed.call if self.confirmed is not None else None,
            on_tool_start=self._tool_starts,
            splitter=self._splitter(),
        )

    async def _produce(self) -> None:
        if self._script is None:
            long = len(self.user_text) >= READING_CHARS
            self._emit(Activity(Doing.READING if long else Doing.THINKING, turn_id=self.turn_id))
        messages = await self._context() if self._script is None else []
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        if self._chime is not None:
            self._player.write(self._chime.pcm, self._chime.sample_rate, self.turn_id)
        tts_task = asyncio.create_task(self._speak(pieces))
        # While the reply is being generated, optional work (partial transcripts) steps aside.
        cpu_priority.reply_started()
        try:
            stream = self._pieces(messages)
            async with closing_stream(stream):
                async for piece in stream:
                    if isinstance(piece, Filler):
                        # Heard, but not the answer: kept out of the text and the history.
                        self.spoken.set_aside(self._pieces_sent)
                        self._emit(FillerSpoken(self.turn_id, piece.text))
                        piece = piece.text
                    self._pieces_sent += 1
                    await pieces.put(piece)
                    if not self._held:
                        text = self.generation.text
                        self._emit(AssistantText(self.turn_id, self._heard_now(), text))
                    # Hand over to the TTS task now: a model streaming from a local cache may
                    # not yield to the loop between tokens, and the piece would wait.
                    await asyncio.sleep(0)
            if self._on_generated is not None:
                self._on_generated(self)
            await pieces.put(None)
            await tts_task
        finally:
            cpu_priority.reply_finished()
            if not tts_task.done():
                await cancel_and_wait(tts_task)
        await self._released.wait()  # a speculative reply plays only once the turn has ended
        if self.spoken.audio_seconds > 0:
            self._player.flush()
            await self._play_out()
            return
        self._finish(interrupted=False)

    async def _speak(self, pieces: asyncio.Queue[str | None]) -> None:
        async def texts() -> AsyncIterator[str]:
            while (piece := await pieces.get()) is not None:
                self.timeline.mark("first_text_to_tts")
                yield piece

        settings = self._settings
        # The chosen voice speaks the settings' language; another language gets its own default.
        voice = settings.voice if same_language(self.language, settings.language) else ""
        stream = self._tts.stream(texts(), voice=voice or None, language=self.language)
        try:
            async with closing_stream(stream):
                async for chunk in stream:
                    if len(chunk.pcm) == 0 and not chunk.last:
                        continue
                    self.timeline.mark("tts_first_audio")
                    if self._held:
                        self._pending.append(chunk)
                    else:
                        self._write(chunk)
        except Exception as exc:
            raise _StageFailed(Source.TTS, exc) from exc  # the voice failed, not the model

    def _write(self, chunk: SpeechChunk) -> None:
        if self._player.write(chunk.pcm, chunk.sample_rate, self.turn_id):
            self.spoken.add(chunk)
            if self.paused:
                self._player.pause()  # a new response resets the player's pause; keep it

    def _splitter(self) -> TextSplitter:
        settings = self._settings
        if not settings.quick_first_phrase:
            return TextSplitter()
        # Two words before a comma are enough too ("Yes, sir,"): the voice starts sooner.
        return TextSplitter(min_first_clause_words=2, phrase_starts=phrase_starts(self.language))

    def _hurry(self) -> bool:
        queued = self.spoken.audio_seconds - self._player.position
        return self.playing and queued < HURRY_BELOW_SECONDS

    def _tool_starts(self, name: str) -> None:
        self._emit(Activity(Doing.TOOL, name, turn_id=self.turn_id))

    def _tool_ran(self, record: ToolRecord) -> None:
        tool = self._tools.get(record.name) if self._tools is not None else None
        title = tool.title if tool is not None else record.name
        self._emit(
            ToolCalled(self.turn_id, record.name, record.arguments, record.result, title, record.ms)
        )
        self._emit(Activity(Doing.THINKING, turn_id=self.turn_id))

    def _heard_now(self) -> str:
        return self.spoken.heard(self._player.position)

    def _generated_now(self) -> str:
        return self.generation.text

    # ------------------------------------------------------------------------------ ending

    def _stop(self) -> None:
        self._player.clear()
        if self.paused:
            self.paused = False
            self._player.resume()
        if self._task is not None:
            self._task.cancel()

    def _stop_ticker(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()

    def _finish(self, *, interrupted: bool, position: float | None = None) -> None:
        if self.finished:
            return
        self.finished = True
        self.interrupted = interrupted
        self._stop_ticker()
        if self.playing:
            self.timeline.mark("playback_end")
        generated = self.generation.text.strip()
        if interrupted:
            heard = self.spoken.heard(position if position is not None else 0.0)
        elif self.error is not None:
            heard = self._heard_now() if self.playing else ""
        else:
            heard = self.spoken.text or generated
        self._hand_over(
            user_text=self.user_text,
            heard=heard,
            interrupted=interrupted,
            generated=generated,
            tools=list(self.generation.tools),
        )


async def _scripted(text: str) -> AsyncIterator[str]:
    """A fixed line, cut into speakable pieces like a model's answer."""
    splitter = TextSplitter()
    for piece in splitter.push(text):
        yield piece
    for piece in splitter.flush():
        yield piece


class _StageFailed(Exception):
    """A stage of the reply failed; ``source`` says which (the language model or the voice)."""

    def __init__(self, source: Source, error: Exception) -> None:
        super().__init__(str(error))
        self.source = source
        self.error = error
