"""The conversation: turn-taking, the streaming reply pipeline, interruptions, history.

One ``Session`` owns one conversation. Audio frames come in through ``feed``; commands
(push-to-talk, interrupt, typed text, mode switches) come from the caller; everything that
happens goes out as typed events (``assistant.events``). A reply runs as one task —
LLM stream → text splitter → TTS → player — and an interruption cancels that task in one place.
Every finished turn is stored durably before the next one begins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from assistant.audio.frames import FRAME_SAMPLES, AudioFrame
from assistant.audio.player import Player
from assistant.audio.vad import VoiceActivityDetector
from assistant.config import Settings
from assistant.engines.base import (
    PCM,
    ChatRequest,
    EngineError,
    LanguageModel,
    Message,
    SpeechChunk,
    SpeechToText,
    STTSession,
    TextDelta,
    TextToSpeech,
    ToolCall,
    ToolCallDelta,
    Transcript,
    closing_stream,
)
from assistant.events import (
    AssistantText,
    ErrorEvent,
    FinalTranscript,
    MicLevel,
    Notice,
    PartialTranscript,
    PlaybackPaused,
    PlaybackResumed,
    SessionEvent,
    State,
    StateChanged,
    TimelineUpdated,
    ToolCalled,
    TurnFinished,
    TurnWithdrawn,
    UserSpeechStarted,
)
from assistant.history import Conversation, ToolRecord, TurnRecord
from assistant.scheduling import cpu_priority
from assistant.spoken import SpokenText
from assistant.text import TextSplitter
from assistant.timeline import Timeline
from assistant.tools import ToolRegistry
from assistant.turns import PushToTalk, TurnDetector, TurnEvent, VadEndpointing

log = logging.getLogger(__name__)

#: Sounds that are not words: hearing only these does not interrupt the assistant.
FILLERS = frozenset(
    "mhm mm mmm hmm hm uh um uhm ah oh eh uh-huh mm-hmm aha ok okay yeah yes right".split()
)
MAX_TOOL_ROUNDS = 3
FINAL_TRANSCRIPT_TIMEOUT = 15.0
LEVEL_INTERVAL = 0.05
#: With less reply audio than this left to play, the next clause goes to TTS without waiting
#: for the end of its sentence, so playback does not run dry.
HURRY_BELOW_SECONDS = 1.5


def has_words(text: str) -> bool:
    """True when a transcript holds at least one real word (not a filler or a noise tag)."""
    words = re.findall(r"[^\W_]+(?:[-'][^\W_]+)*", text.lower())
    return any(w not in FILLERS for w in words)


@dataclass(slots=True)
class _Utterance:
    """The user's speech currently being captured."""

    turn_id: int
    timeline: Timeline
    partial: str = ""
    #: Set while the assistant is talking: the speech may still prove to be a noise.
    tentative: bool = False
    last_speech_at: float = 0.0
    #: Audio from just before the start was detected; sent to STT ahead of the live frames.
    preroll: list[AudioFrame] | None = None
    #: Ended speculatively (a pause): its reply is prepared but held until the end is confirmed.
    held: bool = False
    #: The user went on talking after the pause: its words carry over to the next utterance.
    withdrawn: bool = False
    #: The audio sent to STT, kept for the end-of-turn model.
    audio: list[PCM] = field(default_factory=list)
    #: Capture time of the last frame sent to STT.
    last_frame_t: float = 0.0


@dataclass(slots=True)
class _Reply:
    """A reply in flight."""

    turn_id: int
    user_text: str
    timeline: Timeline
    spoken: SpokenText = field(default_factory=SpokenText)
    generated: str = ""
    tools: list[ToolRecord] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    played: asyncio.Future[tuple[float, bool]] | None = None
    playing: bool = False
    paused: bool = False
    finished: bool = False
    error: str | None = None
    last_spoken_event: str = ""
    #: Prepared speculatively: audio waits in ``pending`` until the turn's end is confirmed.
    held: bool = False
    pending: list[SpeechChunk] = field(default_factory=list)
    released: asyncio.Event = field(default_factory=asyncio.Event)


class EndOfTurnModel(Protocol):
    """Judges from the audio whether the user's words sound finished (see SmartTurn)."""

    def end_probability(self, pcm16k: PCM) -> float: ...


class Session:
    def __init__(
        self,
        *,
        stt: SpeechToText,
        llm: LanguageModel,
        tts: TextToSpeech,
        player: Player,
        conversation: Conversation,
        settings: Settings | None = None,
        vad: VoiceActivityDetector | None = None,
        tools: ToolRegistry | None = None,
        turn_model: EndOfTurnModel | None = None,
    ) -> None:
        self.stt = stt
        self.llm = llm
        self.tts = tts
        self.player = player
        self.conversation = conversation
        self.settings = settings or Settings()
        self.vad = vad
        self.tools = tools
        self.turn_model = turn_model
        self._listeners: list[Callable[[SessionEvent], None]] = []
        self._state = State.IDLE
        self._stt_session: STTSession | None = None
        self._transcript_task: asyncio.Task[None] | None = None
        self._detector: TurnDetector = self._make_detector(self.settings.turn_mode)
        self._preroll: deque[AudioFrame] = deque()
        self._utterance: _Utterance | None = None
        #: One per utterance awaiting its final transcript, oldest first (finals come in order).
        self._final_waiters: deque[asyncio.Future[str]] = deque()
        self._speculative: _Utterance | None = None
        self._reply: _Reply | None = None
        self._carry_over = ""
        self._next_turn_id = conversation.next_turn_id
        self._level_at = 0.0
        self._resume_handle: asyncio.TimerHandle | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._pending: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._listening = False
        self._prefill_task: asyncio.Task[None] | None = None
        self._prefill_text: str | None = None
        player.on_playback_started.append(self._on_playback_started)
        player.on_playback_finished.append(self._on_playback_finished)
        for engine in (stt, llm, tts):
            listeners = getattr(engine, "on_fallback", None)
            if isinstance(listeners, list):
                listeners.append(self._on_fallback)

    # ------------------------------------------------------------------------------- events, state

    def subscribe(self, listener: Callable[[SessionEvent], None]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def emit(self, event: SessionEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a broken listener must not break the conversation
                log.exception("session event listener failed")

    async def events(self) -> AsyncIterator[SessionEvent]:
        """All events from now on, as an async iterator (for headless callers)."""
        queue: asyncio.Queue[SessionEvent] = asyncio.Queue()
        unsubscribe = self.subscribe(queue.put_nowait)
        try:
            while True:
                yield await queue.get()
        finally:
            unsubscribe()

    @property
    def state(self) -> State:
        return self._state

    def _set_state(self, state: State) -> None:
        if state is not self._state:
            previous, self._state = self._state, state
            self.emit(StateChanged(state, previous))

    def _rest_state(self) -> State:
        return State.LISTENING if self._listening else State.IDLE

    @property
    def turn_mode(self) -> Literal["ptt", "vad"]:
        return self._detector.mode

    # ------------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open the STT session and the player; the session then listens."""
        await self.player.start()
        self._stt_session = await self.stt.open(self.settings.language)
        self._transcript_task = asyncio.create_task(self._read_transcripts(self._stt_session))
        self._listening = True
        self._set_state(State.LISTENING)

    async def close(self) -> None:
        self._listening = False
        self.interrupt(reason="closing")
        for task in [*self._pending, self._ticker, self._prefill_task]:
            if task is not None:
                task.cancel()
        if self._transcript_task is not None:
            self._transcript_task.cancel()
        if self._stt_session is not None:
            with contextlib.suppress(Exception):
                await self._stt_session.aclose()
        await self.player.close()
        self._set_state(State.IDLE)

    async def wait_idle(self, timeout: float | None = None) -> None:
        """Wait until no user speech, reply or playback is in progress."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    def _busy(self) -> None:
        self._idle.clear()

    def _maybe_idle(self) -> None:
        if self._reply is None and self._utterance is None and not self._final_waiters:
            self._idle.set()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task

    # ------------------------------------------------------------------------------- turn strategy

    def _make_detector(self, mode: Literal["ptt", "vad"]) -> TurnDetector:
        return VadEndpointing(self.settings.vad) if mode == "vad" else PushToTalk()

    def set_turn_mode(self, mode: Literal["ptt", "vad"]) -> None:
        """Switch between push-to-talk and hands-free; takes effect at once."""
        if mode == self._detector.mode:
            return
        if self._utterance is not None:
            if self._utterance.tentative:
                self._false_interruption()
            else:
                self._end_utterance(time.monotonic())
        if self._speculative is not None:
            self._confirm_end(self._speculative)
        self.settings.turn_mode = mode
        self._detector = self._make_detector(mode)
        if self.vad is not None:
            self.vad.reset()

    def press_to_talk(self) -> None:
        """Talk key down. While the assistant talks, this interrupts it at once."""
        if not isinstance(self._detector, PushToTalk):
            return
        event = self._detector.press()
        if event is not None:
            self._on_turn_event(event, explicit=True)

    def release_to_talk(self) -> None:
        if not isinstance(self._detector, PushToTalk):
            return
        event = self._detector.release()
        if event is not None:
            self._on_turn_event(event, explicit=True)

    # --------------------------------------------------------------------------------------- audio

    async def feed(self, frame: AudioFrame) -> None:
        """One captured frame: level meter, VAD, turn detection, and STT while the user talks."""
        if frame.t - self._level_at >= LEVEL_INTERVAL:
            self._level_at = frame.t
            self.emit(MicLevel(frame.rms))
        probability = 0.0
        if self.vad is not None and self._detector.mode == "vad":
            probability = self.vad.process(frame.pcm)
        self._preroll.append(frame)
        while len(self._preroll) > self._preroll_frames():
            self._preroll.popleft()
        event = self._detector.process(frame, probability)
        if event is not None:
            self._on_turn_event(event, explicit=False)
        utterance = self._utterance
        if utterance is None:
            return
        if probability >= self.settings.vad.threshold:
            utterance.last_speech_at = frame.t
        await self._push_audio(utterance, frame)
        if utterance.tentative and self._utterance is utterance:
            self._check_tentative(utterance)

    def _preroll_frames(self) -> int:
        vad = self.settings.vad
        ms = vad.preroll_ms + (vad.min_speech_ms if self._detector.mode == "vad" else 0)
        return max(1, round(ms / 1000 * 16_000 / FRAME_SAMPLES))

    async def _push_audio(self, utterance: _Utterance, frame: AudioFrame) -> None:
        stt = self._stt_session
        if stt is None:
            return
        try:
            if utterance.preroll is not None:
                frames, utterance.preroll = utterance.preroll, None
                await stt.clear()
                for earlier in frames:
                    utterance.audio.append(earlier.pcm)
                    await stt.push(earlier.pcm)
                if frames and frames[-1] is frame:
                    return
            utterance.audio.append(frame.pcm)
            utterance.last_frame_t = frame.t
            await stt.push(frame.pcm)
        except EngineError as exc:
            self.emit(ErrorEvent(f"Speech recognition failed: {exc}", "stt", utterance.turn_id))
            if self._utterance is not utterance:
                return
            if utterance.tentative:
                self._false_interruption()  # the paused reply resumes
            else:
                self._utterance = None
                self._after_turn()

    def end_of_input(self) -> None:
        """The audio source ended (a file ran out, a microphone closed): end an open turn."""
        now = time.monotonic()
        utterance = self._utterance
        if utterance is not None:
            if utterance.tentative:
                self._false_interruption()
            else:
                self._end_utterance(utterance.last_speech_at or now)
        if self._speculative is not None:
            self._confirm_end(self._speculative)
        self._detector.reset()

    async def run(self, frames: AsyncIterator[AudioFrame]) -> None:
        """Feed every frame of a source (a microphone or a WAV file) until it ends."""
        async for frame in frames:
            await self.feed(frame)

    # --------------------------------------------------------------------------------- turn events

    def _on_turn_event(self, event: TurnEvent, *, explicit: bool) -> None:
        utterance = self._utterance
        if event.kind == "start":
            self._begin_utterance(event, explicit=explicit)
        elif event.kind == "pause":
            if utterance is not None and not utterance.tentative:
                # Probably the end: get the transcript and the reply ready, but hold the audio.
                self._speculative = utterance
                self._end_utterance(event.at, held=True)
                if self.turn_model is not None and self.settings.vad.smart_turn:
                    self._spawn(self._judge_end_of_turn(utterance))
        elif event.kind == "resume":
            speculative = self._speculative
            if speculative is not None:
                self._withdraw(speculative)
            if self._utterance is None:
                # Only audio the paused utterance did not already send to STT.
                after = speculative.last_frame_t if speculative is not None else None
                self._begin_utterance(event, explicit=False, preroll_after=after)
        elif utterance is not None:
            if utterance.tentative:
                # The suspected interruption ended before it proved to be speech.
                self._false_interruption()
            else:
                self._end_utterance(event.at)
        elif self._speculative is not None:
            self._confirm_end(self._speculative)

    async def _judge_end_of_turn(self, utterance: _Utterance) -> None:
        """Ask the end-of-turn model about this pause; end now, or wait longer."""
        model = self.turn_model
        if model is None or not utterance.audio:
            return
        audio = np.concatenate(utterance.audio)
        try:
            probability = await asyncio.to_thread(model.end_probability, audio)
        except Exception as exc:
            log.warning("end-of-turn model failed: %s", exc)
            return
        utterance.timeline.notes["end_of_turn_probability"] = round(probability, 3)
        detector = self._detector
        if self._speculative is not utterance or not isinstance(detector, VadEndpointing):
            return  # the user went on, or the turn already ended
        vad = self.settings.vad
        spoken = len(audio) / 16_000 - vad.speculative_silence_ms / 1000
        if probability >= vad.smart_turn_end and spoken >= 0.8:
            event = detector.end_now(time.monotonic())
            if event is not None:
                self._on_turn_event(event, explicit=False)
        elif probability < vad.smart_turn_wait:
            detector.extend_silence(vad.max_end_silence_ms)

    def _confirm_end(self, utterance: _Utterance) -> None:
        """The turn really ended: release the reply prepared during the pause."""
        self._speculative = None
        utterance.held = False
        speech_end = utterance.timeline.marks.get("speech_end")
        if speech_end is not None:
            utterance.timeline.notes["endpoint_ms"] = round((time.monotonic() - speech_end) * 1e3)
        reply = self._reply
        if reply is not None and reply.turn_id == utterance.turn_id:
            self._release(reply)
            if not reply.playing:
                self._set_state(State.THINKING)
        elif self._utterance is None and self._final_waiters:
            self._set_state(State.THINKING)

    def _withdraw(self, utterance: _Utterance) -> None:
        """The user went on after a pause: drop the prepared reply; the words carry over."""
        self._speculative = None
        utterance.withdrawn = True
        reply = self._reply
        if reply is not None and reply.turn_id == utterance.turn_id:
            self.interrupt(reason="barge_in")

    def _release(self, reply: _Reply) -> None:
        reply.held = False
        pending, reply.pending = reply.pending, []
        for chunk in pending:
            self._write_chunk(reply, chunk)
        reply.released.set()

    def _begin_utterance(
        self, event: TurnEvent, *, explicit: bool, preroll_after: float | None = None
    ) -> None:
        reply = self._reply
        talking = reply is not None and not reply.finished
        if self._utterance is not None:
            return
        if talking and not explicit and not self.settings.interruption.enabled:
            return
        turn_id = self._next_turn_id
        self._next_turn_id += 1
        timeline = Timeline(turn_id)
        timeline.mark("speech_start", event.at)
        self._utterance = _Utterance(turn_id, timeline, last_speech_at=event.detected_at)
        self._busy()
        if self._resume_handle is not None:
            self._resume_handle.cancel()
            self._resume_handle = None
        self._utterance.preroll = [
            f for f in self._preroll if preroll_after is None or f.t > preroll_after
        ]
        self.emit(UserSpeechStarted(turn_id))
        if not talking:
            self._schedule_prefill("")
        if talking and not explicit:
            # Hands-free barge-in: pause now, decide once we know whether it is speech.
            self._utterance.tentative = True
            self._pause_reply()
        else:
            if talking:
                self.interrupt(reason="barge_in")
            self._set_state(State.USER_SPEAKING)

    def _check_tentative(self, utterance: _Utterance) -> None:
        """Promote a suspected interruption to a real one once it lasts or holds words."""
        start = utterance.timeline.marks["speech_start"]
        # Duration of the speech itself: trailing silence before the endpoint does not count.
        lasted = (
            utterance.last_speech_at - start
        ) * 1000.0 >= self.settings.interruption.min_duration_ms
        if lasted or has_words(utterance.partial):
            utterance.tentative = False
            self.interrupt(reason="barge_in")
            self._set_state(State.USER_SPEAKING)

    def _pause_reply(self) -> None:
        reply = self._reply
        if reply is None or reply.paused:
            return
        reply.paused = True
        self.player.pause()
        self.emit(PlaybackPaused(reply.turn_id))

    def _false_interruption(self) -> None:
        """A noise or a "mhm": drop it, and resume the reply if nothing follows in time."""
        self._utterance = None
        if self._stt_session is not None:
            self._spawn(self._stt_session.clear())
        timeout = self.settings.interruption.resume_timeout_ms / 1000.0
        loop = asyncio.get_running_loop()
        self._resume_handle = loop.call_later(timeout, self._resume_reply)

    def _resume_reply(self) -> None:
        self._resume_handle = None
        reply = self._reply
        if reply is None or not reply.paused or self._utterance is not None:
            return
        reply.paused = False
        self.player.resume()
        self.emit(PlaybackResumed(reply.turn_id))

    def _end_utterance(self, at: float, *, held: bool = False) -> None:
        utterance = self._utterance
        if utterance is None:
            return
        self._utterance = None
        utterance.held = held
        utterance.timeline.mark("speech_end", at)
        if not held:
            self._set_state(State.THINKING)
        stt = self._stt_session
        if stt is None:
            return
        waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._final_waiters.append(waiter)
        self._spawn(self._finish_utterance(stt, utterance, waiter))

    async def _finish_utterance(
        self, stt: STTSession, utterance: _Utterance, waiter: asyncio.Future[str]
    ) -> None:
        try:
            await stt.end_turn()
            text = await asyncio.wait_for(asyncio.shield(waiter), FINAL_TRANSCRIPT_TIMEOUT)
        except Exception as exc:
            with contextlib.suppress(ValueError):
                self._final_waiters.remove(waiter)
            if self._speculative is utterance:
                self._speculative = None
            message = (
                "The speech recognizer gave no transcript; please try again."
                if isinstance(exc, TimeoutError)
                else f"Speech recognition failed: {exc}"
            )
            self.emit(ErrorEvent(message, "stt"))
            self._after_turn()
            return
        with contextlib.suppress(ValueError):
            self._final_waiters.remove(waiter)
        utterance.timeline.mark("stt_final")
        text = text.strip()
        if self._carry_over:
            text = f"{self._carry_over} {text}".strip()
            self._carry_over = ""
        talking_again = self._utterance is not None and not self._utterance.tentative
        if utterance.withdrawn or talking_again or self._final_waiters:
            # The user went on talking: these words open the next utterance's transcript.
            self._carry_over = text
            self.emit(TurnWithdrawn(utterance.turn_id, text))
            self._after_turn()
            return
        self.emit(FinalTranscript(utterance.turn_id, text))
        if not text:
            if self._speculative is utterance:
                self._speculative = None
            self._after_turn()
            return
        self._start_reply(utterance.turn_id, text, utterance.timeline, held=utterance.held)

    async def _read_transcripts(self, stt: STTSession) -> None:
        """Route transcripts; if the engine's stream breaks, fail the utterance and reopen."""
        while True:
            try:
                async for transcript in stt.transcripts():
                    self._on_transcript(transcript)
                return  # the session was closed
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("speech recognition stream failed: %s", exc)
                waiters = [w for w in self._final_waiters if not w.done()]
                error = exc if isinstance(exc, EngineError) else EngineError(str(exc))
                for waiter in waiters:
                    waiter.set_exception(error)
                if not waiters:
                    self.emit(ErrorEvent(f"Speech recognition failed: {exc}", "stt"))
            with contextlib.suppress(Exception):
                await stt.aclose()
            try:
                stt = await self.stt.open(self.settings.language)
            except Exception as exc:
                self.emit(ErrorEvent(f"Speech recognition is unavailable: {exc}", "stt"))
                return
            self._stt_session = stt

    def _on_transcript(self, transcript: Transcript) -> None:
        if transcript.is_final:
            waiter = next((w for w in self._final_waiters if not w.done()), None)
            if waiter is not None:
                waiter.set_result(transcript.text)
            elif (
                transcript.end_of_turn
                and self._utterance is not None
                and not self._utterance.tentative
            ):
                # The engine ended the turn itself (its own endpointing).
                self._utterance.partial = transcript.text
                self._end_utterance(time.monotonic())
                if self._final_waiters and not self._final_waiters[-1].done():
                    self._final_waiters[-1].set_result(transcript.text)
            return
        utterance = self._utterance
        if utterance is None:
            return
        utterance.partial = transcript.text
        self.emit(PartialTranscript(utterance.turn_id, transcript.text))
        if not utterance.tentative:
            self._schedule_prefill(transcript.text)
        if utterance.tentative:
            self._check_tentative(utterance)

    # ------------------------------------------------------------------------------- prefill

    def _schedule_prefill(self, partial: str) -> None:
        """Let the LLM process the prompt while the user is still talking (if it can).

        At most one prefill runs at a time; when it ends, a newer partial gets its turn. A reply
        in progress always takes precedence.
        """
        if getattr(self.llm, "prefill", None) is None:
            return
        self._prefill_text = f"{self._carry_over} {partial}".strip()
        if self._prefill_task is None or self._prefill_task.done():
            self._prefill_task = asyncio.create_task(self._run_prefill())

    async def _run_prefill(self) -> None:
        prefill = getattr(self.llm, "prefill", None)
        done: str | None = None
        while prefill is not None and self._reply is None and self._prefill_text != done:
            text = self._prefill_text or ""
            messages = self.conversation.context(
                self.settings.system_prompt, self.settings.context_tokens, pending_user=text
            )
            specs = self.tools.specs if self.tools is not None else []
            try:
                await prefill(ChatRequest(messages, tools=specs))
            except Exception:
                log.debug("prefill failed", exc_info=True)
                return
            done = text

    # ---------------------------------------------------------------------------- typed text

    def submit_text(self, text: str) -> None:
        """A typed message: a turn without speech."""
        text = text.strip()
        if not text:
            return
        self.interrupt(reason="typed")
        turn_id = self._next_turn_id
        self._next_turn_id += 1
        timeline = Timeline(turn_id)
        now = time.monotonic()
        timeline.mark("speech_end", now)
        timeline.mark("stt_final", now)
        self.emit(FinalTranscript(turn_id, text))
        self._start_reply(turn_id, text, timeline)

    # --------------------------------------------------------------------------------------- reply

    def _start_reply(
        self, turn_id: int, user_text: str, timeline: Timeline, *, held: bool = False
    ) -> None:
        self._busy()
        previous = self._reply
        if previous is not None and not previous.finished:
            self.interrupt(reason="superseded")  # one reply at a time: never orphan a task
        reply = _Reply(turn_id, user_text, timeline, held=held)
        if not held:
            reply.released.set()
        reply.played = asyncio.get_running_loop().create_future()
        self._reply = reply
        if not held:
            self._set_state(State.THINKING)
        reply.task = asyncio.create_task(self._run_reply(reply), name=f"reply-{turn_id}")
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.create_task(self._tick_spoken_text())

    async def _run_reply(self, reply: _Reply) -> None:
        try:
            await self._produce_reply(reply)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            message = str(exc) if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
            log.warning("reply %d failed: %s", reply.turn_id, message)
            reply.error = message
            self.emit(ErrorEvent(f"The reply failed: {message}", _source_of(exc), reply.turn_id))
            if reply.spoken.audio_seconds > 0 and not reply.held:
                # Let what is already queued play out, then record exactly what was heard.
                self.player.flush()
                await self._play_out(reply)
                return
            self._finish_reply(reply, interrupted=False)

    async def _produce_reply(self, reply: _Reply) -> None:
        messages = self.conversation.context(
            self.settings.system_prompt, self.settings.context_tokens, pending_user=reply.user_text
        )
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        tts_task = asyncio.create_task(self._speak(reply, pieces))
        # While the reply is being generated, optional work (partial transcripts) steps aside.
        cpu_priority.reply_started()
        try:
            await self._generate(reply, messages, pieces)
            await pieces.put(None)
            await tts_task
        finally:
            cpu_priority.reply_finished()
            if not tts_task.done():
                tts_task.cancel()
                with contextlib.suppress(BaseException):
                    await tts_task
        await reply.released.wait()  # a speculative reply plays only once the turn has ended
        if reply.spoken.audio_seconds > 0:
            self.player.flush()
            await self._play_out(reply)
            return
        self._finish_reply(reply, interrupted=False)

    async def _play_out(self, reply: _Reply) -> None:
        """Wait for the player to finish the reply, and record it as it was heard."""
        assert reply.played is not None
        position, cut = await reply.played
        # A cut the session did not ask for (the device was lost) still shortens what was heard.
        self._finish_reply(reply, interrupted=cut, position=position if cut else None)

    async def _generate(
        self, reply: _Reply, messages: list[Message], pieces: asyncio.Queue[str | None]
    ) -> None:
        """Stream the LLM (running tools when asked) and hand speakable pieces to the TTS."""
        splitter = TextSplitter()
        specs = self.tools.specs if self.tools is not None else []
        for _round in range(MAX_TOOL_ROUNDS + 1):
            calls: dict[int, ToolCall] = {}
            reply.timeline.mark("llm_request")
            stream = self.llm.stream(ChatRequest(messages, tools=specs))
            async with closing_stream(stream):
                async for event in stream:
                    if isinstance(event, TextDelta):
                        reply.timeline.mark("llm_first_token")
                        reply.generated += event.text
                        hurry = reply.playing and self._queued_audio(reply) < HURRY_BELOW_SECONDS
                        for piece in splitter.push(event.text, hurry=hurry):
                            await self._queue_piece(reply, piece, pieces)
                    elif isinstance(event, ToolCallDelta):
                        reply.timeline.mark("llm_first_token")
                        call = calls.setdefault(event.index, ToolCall("", "", ""))
                        call.id = event.id or call.id
                        call.name = event.name or call.name
                        call.arguments += event.arguments
            if not calls or self.tools is None:
                break
            # A speculative reply must not act before the user has really finished.
            await reply.released.wait()
            ordered = [calls[i] for i in sorted(calls)]
            for n, call in enumerate(ordered):
                call.id = call.id or f"call_{reply.turn_id}_{n}"
            messages = [*messages, Message("assistant", "", tool_calls=ordered)]
            for call in ordered:
                # Shielded: a tool that has started runs to completion, and its result is kept.
                result = await asyncio.shield(self.tools.run(call))
                reply.tools.append(ToolRecord(call.id, call.name, call.arguments, result))
                self.emit(ToolCalled(reply.turn_id, call.name, call.arguments, result))
                messages.append(Message("tool", result, tool_call_id=call.id))
        for piece in splitter.flush():
            await self._queue_piece(reply, piece, pieces)

    def _queued_audio(self, reply: _Reply) -> float:
        """Seconds of this reply's audio synthesized but not yet played."""
        return reply.spoken.audio_seconds - self.player.position

    async def _queue_piece(
        self, reply: _Reply, piece: str, pieces: asyncio.Queue[str | None]
    ) -> None:
        await pieces.put(piece)
        self.emit(
            AssistantText(reply.turn_id, reply.spoken.heard(self.player.position), reply.generated)
        )
        # Hand over to the TTS task now: a model streaming from a local cache may not yield to
        # the loop between tokens, and the piece would wait for the whole reply.
        await asyncio.sleep(0)

    async def _speak(self, reply: _Reply, pieces: asyncio.Queue[str | None]) -> None:
        async def texts() -> AsyncIterator[str]:
            while (piece := await pieces.get()) is not None:
                reply.timeline.mark("first_text_to_tts")
                yield piece

        stream = self.tts.stream(
            texts(), voice=self.settings.voice or None, language=self.settings.language
        )
        async with closing_stream(stream):
            async for chunk in stream:
                self._play_chunk(reply, chunk)

    def _play_chunk(self, reply: _Reply, chunk: SpeechChunk) -> None:
        if len(chunk.pcm) == 0 and not chunk.last:
            return
        reply.timeline.mark("tts_first_audio")
        if reply.held:
            reply.pending.append(chunk)
        else:
            self._write_chunk(reply, chunk)

    def _write_chunk(self, reply: _Reply, chunk: SpeechChunk) -> None:
        if self.player.write(chunk.pcm, chunk.sample_rate, reply.turn_id):
            reply.spoken.add(chunk)
            if reply.paused:
                self.player.pause()  # a new response resets the player's pause; keep it

    def _on_playback_started(self, turn_id: int, at: float) -> None:
        reply = self._reply
        if reply is None or reply.turn_id != turn_id:
            return
        reply.playing = True
        reply.timeline.mark("playback_start", at)
        self.emit(TimelineUpdated(turn_id, reply.timeline.to_dict(self.settings.budgets)))
        if self._utterance is None or self._utterance.tentative:
            self._set_state(State.SPEAKING)

    def _on_playback_finished(self, turn_id: int, position: float, interrupted: bool) -> None:
        reply = self._reply
        if reply is None or reply.turn_id != turn_id or reply.played is None:
            return
        if not reply.played.done():
            reply.played.set_result((position, interrupted))

    async def _tick_spoken_text(self) -> None:
        """While a reply plays, report how much of it has been heard (for the UI)."""
        while (reply := self._reply) is not None:
            if reply.playing and not reply.finished:
                spoken = reply.spoken.heard(self.player.position)
                if spoken != reply.last_spoken_event:
                    reply.last_spoken_event = spoken
                    self.emit(AssistantText(reply.turn_id, spoken, reply.generated))
            await asyncio.sleep(0.1)

    # ----------------------------------------------------------------------------- interruption

    def interrupt(self, reason: str = "user") -> None:
        """Stop the reply now: LLM, TTS and queued audio; keep only what was heard."""
        reply = self._reply
        if reply is None or reply.finished:
            return
        position = self.player.position if reply.playing else 0.0
        self.player.clear()
        if reply.paused:
            self.player.resume()
        if reply.task is not None:
            reply.task.cancel()
        if reason == "barge_in" and not reply.playing and not reply.tools:
            # Nothing was heard yet: the user was not done talking. Their words carry over to
            # the next turn instead of being answered separately.
            self._carry_over = reply.user_text
            self._reply = None
            reply.finished = True
            log.info("turn %d withdrawn before any audio; its text carries over", reply.turn_id)
            self.emit(TurnWithdrawn(reply.turn_id, reply.user_text))
            return
        reply.timeline.mark("interrupted")
        self._set_state(State.INTERRUPTED)
        self._finish_reply(reply, interrupted=True, position=position)

    def _finish_reply(
        self, reply: _Reply, *, interrupted: bool, position: float | None = None
    ) -> None:
        if reply.finished:
            return
        reply.finished = True
        if reply.playing:
            reply.timeline.mark("playback_end")
        if interrupted:
            heard = reply.spoken.heard(position if position is not None else 0.0)
        elif reply.error is not None:
            heard = reply.spoken.heard(self.player.position) if reply.playing else ""
        else:
            heard = reply.spoken.text or reply.generated.strip()
        record = TurnRecord(
            turn_id=reply.turn_id,
            user_text=reply.user_text,
            assistant_text=heard,
            interrupted=interrupted,
            generated_text=reply.generated.strip(),
            tool_calls=list(reply.tools),
            timeline=reply.timeline.to_dict(self.settings.budgets),
            error=reply.error,
        )
        try:
            self.conversation.append(record)
        except OSError as exc:
            self.emit(
                ErrorEvent(
                    f"Could not save the conversation ({exc}); it stays in memory for now.",
                    "history",
                    reply.turn_id,
                )
            )
            self.conversation.turns.append(record)
        self.emit(AssistantText(reply.turn_id, heard, reply.generated))
        self.emit(TimelineUpdated(reply.turn_id, record.timeline))
        self.emit(TurnFinished(record))
        if self._reply is reply:
            self._reply = None
        self._after_turn()

    def _after_turn(self) -> None:
        if self._utterance is not None and not self._utterance.tentative:
            self._set_state(State.USER_SPEAKING)
        elif self._reply is None and not self._final_waiters:
            self._set_state(self._rest_state())
        self._maybe_idle()

    # ------------------------------------------------------------------------------ conversation

    def new_conversation(self, conversation: Conversation) -> None:
        """Start over with an empty conversation (the old one stays on disk)."""
        self.interrupt(reason="new conversation")
        self._carry_over = ""
        self.conversation = conversation
        # Ids keep growing: the player treats lower ids as stale audio.
        self._next_turn_id = max(self._next_turn_id, conversation.next_turn_id)

    def _on_fallback(self, kind: str, failed: str, nxt: str, reason: str) -> None:
        self.emit(Notice(f"{failed} failed ({reason}); using {nxt} instead.", kind))

    def notice(self, message: str, source: str = "") -> None:
        self.emit(Notice(message, source))


def _source_of(exc: BaseException) -> str:
    engine = getattr(exc, "engine", "")
    return str(engine) if engine else "engine"
