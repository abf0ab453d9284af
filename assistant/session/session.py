"""The conversation: routes audio, commands and engine output to the parts that decide.

One ``Session`` owns one conversation's machinery. Audio frames come in through ``feed``;
commands (push-to-talk, interrupt, typed text, mode switches) come from the caller; everything
that happens goes out as typed events (``assistant.events``) through one emitter. The session
itself decides little:

- the turn-detection strategy (``assistant.turns``) turns frames and key presses into turn
  events, and the ``UserTurnTracker`` turns those into decisions, which the session carries out;
- ``Transcription`` owns the recognizer's stream, ``Prefiller`` the prompt read-ahead;
- each reply is a ``Reply`` handle (LLM → splitter → TTS → player as one task);
- ``TurnRecorder`` stores every finished turn durably, in order, before announcing it;
- ``ConfirmationGate`` holds the tool call a reply asked about ("Shall I go ahead?") until the
  user's next words (or ``confirm``) settle it.

The session also speaks on its own initiative (``announce``: an alarm's chime and line) once
nobody is talking; such announcements are not turns and are not stored.

The ``State`` the user sees is derived from those parts in one function, ``derive_state``.
All time comes from the injected ``Clock``; blocking work goes through ``offload``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import Literal, Protocol, Unpack

from assistant.audio.chime import CHIME_RATE, chime
from assistant.audio.player import Player
from assistant.audio.vad import LookingVAD
from assistant.clock import Timer
from assistant.engines.base import (
    ChatRequest,
    EngineAnnouncement,
    EngineError,
    EngineNotice,
    FellBack,
    LanguageModel,
    Message,
    Recovered,
    ReportsNotices,
    ScoresEndOfTurn,
    SpeechChunk,
    SpeechToText,
    TextToSpeech,
)
from assistant.events import (
    Activity,
    Announcement,
    ConfirmationRequested,
    ConfirmationResolved,
    Doing,
    ErrorEvent,
    FinalTranscript,
    Notice,
    PartialTranscript,
    PauseJudged,
    Source,
    State,
    TurnWithdrawn,
    UserSpeechStarted,
)
from assistant.history import Conversation, TurnRecord
from assistant.prompt import system_prompt
from assistant.session.confirmation import (
    ConfirmationGate,
    ConfirmOutcome,
    Decline,
    Drop,
    RunConfirmed,
)
from assistant.session.core import SessionCore, SessionOptions
from assistant.session.extraction import Extractions
from assistant.session.generate import REPLY_NOTES, Lines, PendingAction, request_for
from assistant.session.prefill import Prefiller
from assistant.session.reply import Reply
from assistant.session.tracker import (
    Answer,
    Begin,
    CarryOver,
    Commit,
    ConfirmBargeIn,
    Decision,
    Dismiss,
    DropPreview,
    DropUtterance,
    FalseInterruption,
    JudgeInterjection,
    Phase,
    Preview,
    Speculate,
    StopCommand,
    TentativeBargeIn,
    UserTurnTracker,
    Utterance,
    Withdraw,
    same_words,
)
from assistant.session.transcription import Transcription
from assistant.timeline import REPLY_MARKS, Mark, Timeline
from assistant.tools.phrases import phrases
from assistant.tools.structured import StructuredExtractor
from assistant.turns import (
    Pause,
    PauseJudge,
    PauseVerdict,
    TurnDetection,
    TurnEvent,
    WordsScore,
    concat_audio,
    make_turn_detection,
)
from assistant.types import FRAME_SAMPLES, AudioFrame, AudioLook

log = logging.getLogger(__name__)

#: How long after a reply stopped playing its echo may still be heard (the longest echo path
#: plus a room's reverberation).
ECHO_TAIL = 1.0


class ReplyView(Protocol):
    """What the state is derived from in a reply (chained or speech to speech)."""

    @property
    def playing(self) -> bool: ...

    @property
    def held(self) -> bool: ...

    @property
    def interrupted(self) -> bool: ...


def derive_state(
    *,
    listening: bool,
    phase: Phase,
    reply: ReplyView | None,
    finishing: Sequence[ReplyView],
    awaiting_answer: bool,
) -> State:
    """The one place the user-visible state comes from.

    ``reply`` is the reply in flight; ``finishing`` the replies that ended and are being saved
    (a turn counts as under way until it is on disk).
    """
    if any(r.interrupted for r in finishing):
        return State.INTERRUPTED
    if phase in (Phase.SPEAKING, Phase.PAUSED):
        return State.USER_SPEAKING
    if reply is not None:
        if reply.playing:
            return State.SPEAKING
        if not reply.held:
            return State.THINKING
    if finishing:
        return State.SPEAKING if any(r.playing for r in finishing) else State.THINKING
    if awaiting_answer:
        return State.THINKING
    return State.LISTENING if listening else State.IDLE


class Session(SessionCore[Reply]):
    def __init__(
        self,
        *,
        stt: SpeechToText,
        llm: LanguageModel,
        tts: TextToSpeech,
        player: Player,
        conversation: Conversation,
        structured: StructuredExtractor | None = None,
        **options: Unpack[SessionOptions],
    ) -> None:
        super().__init__(player=player, conversation=conversation, **options)
        self.stt = stt
        self.llm = llm
        self.tts = tts
        self._tracker = UserTurnTracker(
            self.settings,
            next_turn_id=conversation.next_turn_id,
            reply_turn=self._reply_turn,
            now=self.clock.now,
            own_speech=self._own_speech,
            rehears_audio=lambda: self._transcription.can_checkpoint,
        )
        #: (text, when its playback ended) of the last reply heard, for its echo tail.
        self._last_heard: tuple[str, float] | None = None
        self._transcription = Transcription(
            stt,
            language=lambda: self.settings.language,
            clock=self.clock,
            on_partial=self._on_partial,
            on_endpoint=self._on_engine_endpoint,
            on_error=lambda message: self.emit(ErrorEvent(message, Source.STT)),
        )
        self._prefiller = Prefiller(
            llm, request_for=self._prefill_request, replying=lambda: self._reply is not None
        )
        self._detection = self._make_detection(self.settings.turn_mode)
        #: Push-to-talk: the preview of the open utterance's words, asked for at a pause.
        self._preview: tuple[Utterance, asyncio.Future[str | None]] | None = None
        #: Replies prepared speculatively and thrown away since a reply last went ahead.
        self._dropped_speculations = 0
        self._resume_timer: Timer | None = None
        #: The end-of-turn judge's task for each pause being weighed, by turn id: a reply
        #: prepared for that turn asks the language model only after it (one request at a time).
        self._judging: dict[int, asyncio.Task[None]] = {}
        self._confirmation = ConfirmationGate()
        #: Replies that settle an offered confirmation, by turn: withdrawn, they reopen it.
        self._settling: dict[int, PendingAction] = {}
        self._extractions = Extractions(self.settings, self.emit)
        self._extractions.extractor = structured
        #: Undoes the subscriptions to engines, which outlive the session.
        self._unsubscribe = [
            engine.notices.subscribe(self.on_engine_notice)
            for engine in (stt, llm, tts)
            if isinstance(engine, ReportsNotices)
        ]

    # ------------------------------------------------------------------------------- events, state

    @property
    def user_has_floor(self) -> bool:
        """The user is talking (or paused mid-turn) right now; no reply may be heard meanwhile.
        Up to date even between two ``StateChanged`` events."""
        return self._tracker.phase in (Phase.SPEAKING, Phase.PAUSED)

    @property
    def structured(self) -> StructuredExtractor | None:
        """Extracts an object from every answered turn, beside the reply (None: off)."""
        return self._extractions.extractor

    @structured.setter
    def structured(self, extractor: StructuredExtractor | None) -> None:
        self._extractions.extractor = extractor

    def _derive_state(self) -> State:
        tracker = self._tracker
        return derive_state(
            listening=self._listening,
            phase=tracker.phase,
            reply=self._reply,
            finishing=self._finishing,
            awaiting_answer=tracker.awaiting_answer,
        )

    def _busy(self) -> bool:
        tracker = self._tracker
        return (
            self._reply is not None
            or bool(self._finishing)
            or tracker.phase is not Phase.IDLE
            or bool(tracker.finalizing)
        )

    # ------------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open the STT session and the player; the session then listens."""
        await self.player.start()
        await self._transcription.start()
        self._listening = True
        self.read_ahead()
        self._sync()

    def read_ahead(self) -> None:
        """Read the system prompt (with the tools, for a routed model) and the history into the
        model's prompt cache now, so the first turn does not pay for it. Called before the
        engines are up too: a local model then reads this first, as soon as it can."""
        self._prefiller.schedule("")

    async def close(self) -> None:
        """Stop everything this session started, wait for it, and save the turn in flight."""
        self._listening = False
        replies = [r for r in (self._reply, *self._finishing) if r is not None]
        self.interrupt(reason="closing")
        self._cancel_preview()
        self._prefiller.cancel()
        self._cancel_resume()
        tasks = [*self._tasks]
        for task in tasks:
            task.cancel()
        self._extractions.cancel()
        await self._transcription.close()
        for reply in replies:
            await reply.wait_for_playout()
        await asyncio.gather(*tasks, *self._saving, self._prefiller.wait(), return_exceptions=True)
        await self._recorder.drain()
        await self.player.close()
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._sync()

    # ------------------------------------------------------------------------------- turn strategy

    def _make_detection(self, mode: Literal["ptt", "vad"]) -> TurnDetection:
        judge = PauseJudge(
            self.settings.vad,
            clock=self.clock,
            model=self._turn_model,
            score=self._words_score(),
            offload=self._offload,
        )
        return make_turn_detection(mode, self.settings, judge)

    def _words_score(self) -> WordsScore | None:
        """How the language model reads the words at a pause, if it can (local models can)."""
        llm = self.llm
        if not isinstance(llm, ScoresEndOfTurn):
            return None

        async def score(text: str) -> float | None:
            return await llm.end_of_turn_probability(self._prefill_request(text))

        return score

    def set_turn_mode(self, mode: Literal["ptt", "vad"]) -> None:
        """Switch between push-to-talk and hands-free; takes effect at once."""
        if mode == self._detection.mode:
            return
        self._apply(self._tracker.end_input(at=self.clock.now()))
        self._use_turn_mode(mode)

    # --------------------------------------------------------------------------------------- audio

    async def _feed(self, frame: AudioFrame) -> None:
        self._meter(frame)
        probability = self._listen(frame)
        over_reply = self._reply_turn() is not None and not self._tracker.echo_uncertain
        event = self._detection.process(frame, probability, over_reply=over_reply)
        if event is not None:
            self._on_turn_event(event, explicit=False)
        utterance = self._tracker.utterance
        if utterance is None:
            return
        if probability >= self.settings.vad.threshold:
            self._tracker.on_speech(frame.t)
        await self._push_audio(utterance, frame)
        if self._tracker.utterance is utterance:
            self._apply(self._tracker.check_tentative())

    def look(self, look: AudioLook) -> None:
        """Over an echo-cancelled reply, with no user turn open: speech in the latest 32 ms may
        pause the reply before the frame it ends in is complete (``TurnDetection.look``).
        A look that cannot be judged is skipped."""
        vad = self.vad
        if (
            not isinstance(vad, LookingVAD)
            or self._detection.mode != "vad"
            or self._tracker.utterance is not None
            or self._reply_turn() is None
            or self._tracker.echo_uncertain
        ):
            return
        try:
            event = self._detection.look(look, vad.look(look.pcm, look.fresh))
        except Exception:
            # The frames carry the same audio a moment later and report a failing detector.
            log.debug("looking at the audio between two frames failed", exc_info=True)
            return
        if event is not None:
            self._on_turn_event(event, explicit=False)

    def _preroll_frames(self) -> int:
        vad = self.settings.vad
        # Hands-free starts a turn only after min_speech_ms of speech: keep that audio too.
        ms = vad.preroll_ms + (vad.min_speech_ms if self._detection.mode == "vad" else 0)
        return max(1, round(ms / 1000 * 16_000 / FRAME_SAMPLES))

    async def _push_audio(self, utterance: Utterance, frame: AudioFrame) -> None:
        stt = self._transcription
        try:
            if utterance.preroll is not None:
                frames, utterance.preroll = utterance.preroll, None
                await stt.clear()
                for earlier in frames:
                    utterance.frames.append(earlier)
                    await stt.push(earlier.heard)
                if frames and frames[-1] is frame:
                    return
            utterance.frames.append(frame)
            utterance.last_frame_t = frame.t
            await stt.push(frame.heard)
        except EngineError as exc:
            self.emit(
                ErrorEvent(f"Speech recognition failed: {exc}", Source.STT, utterance.turn_id)
            )
            if self._tracker.utterance is utterance:
                self._apply(self._tracker.drop_open())

    @property
    def echo_uncertain(self) -> bool:
        return self._tracker.echo_uncertain

    def set_echo_uncertain(self, uncertain: bool) -> None:
        """The input chain does (not) know that the assistant's voice is cancelled from the
        microphone; while it does not, barge-in needs words the assistant did not say."""
        self._tracker.echo_uncertain = uncertain

    def _own_speech(self) -> str:
        """What the assistant said that may still come back through the microphone: the reply
        in flight, and the last one heard if it ended less than ``ECHO_TAIL`` seconds ago."""
        texts = []
        last = self._last_heard
        if last is not None and self.clock.now() - last[1] <= ECHO_TAIL:
            texts.append(last[0])
        for reply in (*self._finishing, self._reply):
            if reply is not None and not reply.held:  # a held one has not been heard
                texts.append(reply.generation.text)
        return " ".join(t for t in texts if t)

    def end_of_input(self) -> None:
        """The audio source ended (a file ran out, a microphone closed): end an open turn."""
        self._apply(self._tracker.end_input())
        self._detection.reset()

    # --------------------------------------------------------------------------------- decisions

    def _on_turn_event(self, event: TurnEvent, *, explicit: bool) -> None:
        preroll = list(self._preroll)
        self._apply(self._tracker.on_turn_event(event, explicit=explicit, preroll=preroll))

    def _apply(self, decisions: list[Decision]) -> None:
        """Carry out the tracker's decisions, in order."""
        for decision in decisions:
            match decision:
                case Begin(utterance, prefill):
                    self._cancel_resume()
                    self.emit(UserSpeechStarted(utterance.turn_id, at=self.clock.now()))
                    if prefill:
                        self._prefiller.schedule(self._prefill_text(""))
                case TentativeBargeIn():
                    if self._reply is not None:
                        self._reply.pause()
                case ConfirmBargeIn():
                    self.interrupt(reason="barge_in")
                case FalseInterruption(resume_after):
                    self._spawn(self._transcription.clear(), "stt-clear")
                    self._resume_later(resume_after)
                case Speculate(utterance):
                    words = self._finalize(utterance)
                    self._start_judging(utterance, words)
                case JudgeInterjection(utterance, resume):
                    self._finalize(utterance)
                    if resume:
                        self._resume_later(self.settings.interruption.interjection_resume_ms / 1e3)
                case Withdraw(utterance):
                    if self._reply is not None and self._reply.turn_id == utterance.turn_id:
                        self.interrupt(reason="barge_in")
                case Commit(utterance, speculative, transcript):
                    if not speculative:
                        self._finalize(utterance, transcript)
                    elif self._reply is not None and self._reply.turn_id == utterance.turn_id:
                        self._go_ahead(self._reply)
                case Preview(utterance):
                    self._start_preview(utterance)
                case DropPreview(utterance):
                    self._cancel_preview()
                    self._drop_speculative(utterance.turn_id)
                case DropUtterance():
                    pass
            self._sync()

    def _resume_later(self, seconds: float) -> None:
        """Resume the paused reply after ``seconds`` (replacing a resume already planned),
        unless the user speaks again first."""
        self._cancel_resume()
        self._resume_timer = self.clock.call_later(seconds, self._resume_reply)

    def _cancel_resume(self) -> None:
        if self._resume_timer is not None:
            self._resume_timer.cancel()
            self._resume_timer = None

    def _resume_reply(self) -> None:
        self._resume_timer = None
        if self._reply is not None and self._tracker.utterance is None:
            self._reply.resume()

    def _start_judging(self, utterance: Utterance, words: asyncio.Future[str | None]) -> None:
        turn = utterance.turn_id
        judging = self._spawn(self._judge_pause(utterance, words), "judge-pause")
        self._judging[turn] = judging
        judging.add_done_callback(lambda _task: self._judging.pop(turn, None))

    async def _judge_pause(self, utterance: Utterance, words: asyncio.Future[str | None]) -> None:
        """Ask the end-of-turn judge about this pause; end now, or wait longer."""
        audio = concat_audio([f.pcm for f in utterance.frames])
        pause = Pause(audio, words, self._reply_language())
        try:
            verdict = await self._detection.judge_pause(pause)
        except Exception as exc:
            log.warning("end-of-turn judge failed: %s", exc)
            verdict = PauseVerdict()  # the usual silence decides
        if verdict is None:
            return
        self._note_verdict(utterance, verdict)
        if self._tracker.speculative is not utterance:
            return  # the user went on, or the turn already ended
        now = self.clock.now()
        signals = verdict.signals
        speech_end = utterance.timeline.marks.get(Mark.SPEECH_END, now)
        self.emit(
            PauseJudged(
                utterance.turn_id,
                ending=verdict.end_now,
                waiting=verdict.unfinished,
                wait_ms=verdict.wait_ms,
                silence_ms=round((now - speech_end) * 1000.0),
                sound=verdict.probability,
                reading=signals.reading if signals is not None else None,
                trailing=signals.trailing if signals is not None else False,
                text=signals.text if signals is not None else None,
                reading_ms=signals.reading_ms if signals is not None else None,
                at=now,
            )
        )
        event = self._detection.apply(verdict, now)
        if event is not None:
            self._on_turn_event(event, explicit=False)

    @staticmethod
    def _note_verdict(utterance: Utterance, verdict: PauseVerdict) -> None:
        """Keep what the judge found in the turn's timeline notes."""
        notes = utterance.timeline.notes
        if verdict.probability is not None:
            notes["end_of_turn_probability"] = round(verdict.probability, 3)
        signals = verdict.signals
        if signals is not None and signals.reading is not None:
            notes["end_of_turn_reading"] = round(signals.reading, 3)
        if signals is not None and signals.trailing:
            notes["end_of_turn_trailing"] = True
        if verdict.wait_ms is not None:
            notes["end_of_turn_wait_ms"] = round(verdict.wait_ms)

    # ---------------------------------------------------------------------------- transcripts

    def _finalize(
        self, utterance: Utterance, known: str | None = None
    ) -> asyncio.Future[str | None]:
        """Ask for the utterance's final transcript. The future returned gets the turn's words
        so far (carried-over words first) as soon as it comes, None if it does not."""
        words: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        preview = self._take_preview(utterance)
        reusable = known is None and utterance.quiet_since_preview
        final: Awaitable[str]
        if preview is not None and reusable and self._transcription.can_checkpoint:
            # Nothing was said since the preview (push-to-talk): it is the final transcript,
            # so the recognizer does not decode the same words again.
            final = self._final_from_preview(preview)
        else:
            final = self._transcription.wait_final(self._transcription.expect_final(), known)
        self._spawn(self._finish_utterance(utterance, final, words), "final-transcript")
        return words

    async def _final_from_preview(self, preview: asyncio.Future[str | None]) -> str:
        """The preview's text; should it have failed, a final decoded the usual way."""
        try:
            text = await preview
        except Exception as exc:
            log.info("preview transcript failed (%s); decoding the final", exc)
            text = None
        if text is not None:
            return text
        return await self._transcription.wait_final(self._transcription.expect_final())

    async def _finish_utterance(
        self, utterance: Utterance, final: Awaitable[str], words: asyncio.Future[str | None]
    ) -> None:
        try:
            text = await final
        except Exception as exc:
            if not words.done():
                words.set_result(None)
            self._tracker.on_final_failed(utterance)
            if utterance.reheard:  # the next utterance is transcribing these words again
                log.info("the final of turn %d, heard again, failed: %s", utterance.turn_id, exc)
                self._sync()
                return
            said = str(exc).strip().rstrip(".")
            message = (
                "The speech recognizer gave no transcript; please try again."
                if isinstance(exc, TimeoutError)
                else f"Speech recognition failed: {said}. Please say it again."
            )
            self.emit(ErrorEvent(message, Source.STT))
            self._sync()
            return
        utterance.timeline.mark("stt_final")
        if not words.done():
            words.set_result(self._prefill_text(text))
        match self._tracker.on_final(utterance, text):
            case CarryOver(carried):
                # The user went on talking: these words open the next utterance's transcript.
                self.emit(TurnWithdrawn(utterance.turn_id, carried))
            case Answer(answer, held, barge_in):
                if barge_in:
                    self.interrupt(reason="barge_in")
                    answer = self._tracker.with_carry_over(answer)
                self.emit(FinalTranscript(utterance.turn_id, answer))
                self._answer(utterance.turn_id, answer, utterance.timeline, held=held)
            case Dismiss():
                # A backchannel or a noise: it takes no turn, and the reply goes on (when the
                # hold after it ends, if that is still running).
                self.emit(TurnWithdrawn(utterance.turn_id, ""))
                if self._resume_timer is None:
                    self._resume_reply()
            case StopCommand():
                self.emit(TurnWithdrawn(utterance.turn_id, ""))
                self.interrupt(reason="user")
            case _:
                self.emit(FinalTranscript(utterance.turn_id, ""))
        self._sync()

    def _on_partial(self, text: str) -> None:
        utterance = self._tracker.utterance
        if utterance is None:
            return
        confirmed = self._tracker.phase is Phase.SPEAKING
        decisions = self._tracker.on_partial(text)
        self.emit(PartialTranscript(utterance.turn_id, text))
        if confirmed:
            self._prefiller.schedule(self._prefill_text(text))
        self._apply(decisions)

    def _on_engine_endpoint(self, text: str) -> None:
        self._apply(self._tracker.engine_ended_turn(text))

    # --------------------------------------------------------------- push-to-talk speculation

    def _start_preview(self, utterance: Utterance) -> None:
        """A pause with the talk key held: transcribe the words so far, and answer them held."""
        self._cancel_preview()
        preview: asyncio.Future[str | None] = asyncio.ensure_future(
            self._transcription.checkpoint()
        )
        self._preview = (utterance, preview)
        self._spawn(self._speculate(utterance, preview), "preview")

    async def _speculate(self, utterance: Utterance, preview: asyncio.Future[str | None]) -> None:
        try:
            text = await asyncio.shield(preview)
        except asyncio.CancelledError:
            if not preview.cancelled():
                raise
            return
        except Exception as exc:
            log.info("preview transcript failed: %s", exc)
            return
        if text is None:  # the recognizer cannot tell yet: its latest partial will do
            text = utterance.partial
        current = self._preview is not None and self._preview[1] is preview
        if not current or self._tracker.utterance is not utterance or not text.strip():
            return  # dropped, or the key was released meanwhile (the final takes it from here)
        text = self._tracker.preview_text(text)
        self._start_reply(utterance.turn_id, text, utterance.timeline, held=True)

    def _take_preview(self, utterance: Utterance) -> asyncio.Future[str | None] | None:
        """The preview of ``utterance`` (no longer cancellable by a new one), if any."""
        if self._preview is None or self._preview[0] is not utterance:
            return None
        preview = self._preview[1]
        self._preview = None
        return preview

    def _cancel_preview(self) -> None:
        if self._preview is not None:
            self._preview[1].cancel()
            self._preview = None

    def _drop_speculative(self, turn_id: int) -> None:
        """Withdraw the reply prepared ahead for ``turn_id``, if any; the turn goes on."""
        reply = self._reply
        if reply is not None and reply.turn_id == turn_id and reply.held:
            reply.withdraw()
            self._reply = None
            self._dropped_speculations += 1
            log.info("turn %d: the reply prepared ahead was dropped", turn_id)

    def _go_ahead(self, reply: Reply) -> None:
        """A reply prepared ahead may be heard now: the turn really ended with these words."""
        reply.timeline.notes["speculation"] = "used"
        self._note_dropped(reply.timeline)
        reply.release()

    def _note_dropped(self, timeline: Timeline) -> None:
        if self._dropped_speculations:
            timeline.notes["speculations_dropped"] = self._dropped_speculations
            self._dropped_speculations = 0

    # ----------------------------------------------------------------------------- prefill

    def _prefill_text(self, partial: str) -> str:
        return f"{self._tracker.carry_over} {partial}".strip()

    def _prefill_request(self, text: str) -> ChatRequest:
        prompt = system_prompt(self.settings.system_prompt, self._reply_language())
        messages = self._conversation.context(
            prompt, self.settings.context_tokens, pending_user=text
        )
        return request_for(self.llm, messages, self.tools)

    # ---------------------------------------------------------------------------- typed text

    def submit_text(self, text: str) -> None:
        """A typed message: a turn without speech."""
        text = text.strip()
        if not text:
            return
        self._typed_turn(text)

    def confirm(self, accept: bool) -> bool:
        """A click on a confirmation chip: run (True) or decline (False) the call the assistant
        asked about. Recorded as a turn whose words are "Yes." / "No." in the conversation's
        language. Returns False when no question is open."""
        outcome = self._confirmation.click(accept)
        if outcome is None:
            return False
        lines = phrases(self.settings.language)
        self._typed_turn(lines.yes if accept else lines.no, outcome)
        return True

    @property
    def pending_confirmation(self) -> PendingAction | None:
        """The call the assistant asked about and is waiting to hear yes or no on."""
        return self._confirmation.pending

    def _typed_turn(self, text: str, outcome: ConfirmOutcome | None = None) -> None:
        self.interrupt(reason="typed")
        timeline = Timeline(self._tracker.allocate_turn_id(), now=self.clock.now)
        timeline.notes["input"] = "typed"
        now = self.clock.now()
        timeline.mark("speech_end", now)
        timeline.mark("stt_final", now)
        self.emit(FinalTranscript(timeline.turn_id, text))
        self._answer(timeline.turn_id, text, timeline, outcome=outcome)
        self._sync()

    # ------------------------------------------------------------------------- confirmation

    def _answer(
        self,
        turn_id: int,
        text: str,
        timeline: Timeline,
        *,
        held: bool = False,
        outcome: ConfirmOutcome | None = None,
    ) -> None:
        """Reply to a finished user turn, settling an open confirmation question with it."""
        if outcome is None:
            outcome = self._confirmation.answer(text, self.settings.language)
        match outcome:
            case RunConfirmed(action):
                self._settling[turn_id] = action
                self.emit(ConfirmationResolved(action.call.name, True))
                self._start_reply(turn_id, text, timeline, held=held, confirmed=action)
            case Decline(action):
                self._settling[turn_id] = action
                self.emit(ConfirmationResolved(action.call.name, False))
                declined = phrases(self.settings.language).declined
                self._start_reply(turn_id, text, timeline, held=held, script=declined)
            case Drop(action):
                self.emit(ConfirmationResolved(action.call.name, None))
                self._start_reply(turn_id, text, timeline, held=held)
            case None:
                self._start_reply(turn_id, text, timeline, held=held)

    def _offer_confirmation(self, action: PendingAction, turn_id: int) -> None:
        self._confirmation.offer(action)
        call = action.call
        prompt = phrases(self.settings.language).confirm.format(action=action.action)
        self.emit(ConfirmationRequested(turn_id, call.name, action.title, call.arguments, prompt))

    # ------------------------------------------------------------------------- announcements

    def announce(self, text: str, *, ring: bool = True) -> None:
        """Say ``text`` on the assistant's own initiative (an alarm), after a chime when
        ``ring``, as soon as nobody is talking. Not a turn: nothing is stored."""
        self._spawn(self._announce_when_free(text, ring), "announce")

    async def _announce_when_free(self, text: str, ring: bool) -> None:
        while not (self._idle.is_set() and self._reply is None):
            await self._idle.wait()
            await asyncio.sleep(0)  # let whatever woke with us claim the floor first
        turn_id = self._tracker.allocate_turn_id()
        timeline = Timeline(turn_id, now=self.clock.now)
        sound = SpeechChunk(chime(), CHIME_RATE, piece=0, text="") if ring else None
        self.emit(Announcement(turn_id, text))
        self._start_reply(turn_id, "", timeline, script=text, chime=sound, announcement=True)

    # --------------------------------------------------------------------------------------- reply

    def _reply_language(self) -> str:
        """The settings' language, or the one last spoken when answers follow the speaker."""
        heard = self._transcription.heard_language
        return heard if self.settings.detect_language and heard else self.settings.language

    def _reply_turn(self) -> int | None:
        reply = self._reply
        return reply.turn_id if reply is not None and not reply.finished else None

    def _start_reply(
        self,
        turn_id: int,
        user_text: str,
        timeline: Timeline,
        *,
        held: bool = False,
        confirmed: PendingAction | None = None,
        script: str | None = None,
        chime: SpeechChunk | None = None,
        announcement: bool = False,
    ) -> None:
        """Start the reply to ``user_text`` (``held``: prepared, not heard until released).

        While the end-of-turn judge still weighs this turn's pause, the reply's request goes to
        the language model once the judge has had its answer (a local server answers one
        request at a time, and the judge's is the short one).
        """
        after = self._judging.get(turn_id)
        previous = self._reply
        if previous is not None and previous.turn_id == turn_id and previous.held:
            # Prepared ahead for this turn (push-to-talk): kept if it answers the same words.
            if same_words(previous.user_text, user_text):
                previous.user_text = user_text
                if not held:
                    self._go_ahead(previous)
                self._sync()
                return
            self._drop_speculative(turn_id)
        elif previous is not None and not previous.finished:
            self.interrupt(reason="superseded")  # one reply at a time: never orphan a task
        # A reply dropped before this one may have set them.
        timeline.forget(*REPLY_MARKS)
        for note in REPLY_NOTES:
            timeline.notes.pop(note, None)
        if not held:
            self._note_dropped(timeline)
        conversation = self._conversation
        language = self._reply_language()
        if self.settings.detect_language:
            timeline.notes["language"] = language

        async def context() -> list[Message]:
            await self._recorder.drain()  # the previous turn is part of the context
            if after is not None and not after.done():
                await asyncio.wait({after})
            prompt = system_prompt(self.settings.system_prompt, language)
            return conversation.context(
                prompt, self.settings.context_tokens, pending_user=user_text
            )

        reply = Reply(
            turn_id=turn_id,
            user_text=user_text,
            timeline=timeline,
            conversation=conversation,
            context=context,
            llm=self.llm,
            tts=self.tts,
            player=self.player,
            tools=self.tools,
            settings=self.settings,
            clock=self.clock,
            emit=self.emit,
            on_finished=self._on_reply_finished,
            held=held,
            language=language,
            lines=self._lines(language),
            confirmed=confirmed,
            script=script,
            chime=chime,
            announcement=announcement,
            on_generated=self._extractions.start,
        )
        self._reply = reply
        reply.start()
        self._sync()

    def _lines(self, language: str | None = None) -> Lines:
        said = phrases(language or self.settings.language)
        return Lines(filler=said.filler, confirm=said.confirm)

    def _on_reply_finished(self, reply: Reply, record: TurnRecord) -> None:
        if self._reply is reply:
            self._reply = None
        if reply.generation.text:
            self._last_heard = (reply.generation.text, self.clock.now())
        self._settling.pop(reply.turn_id, None)
        if reply.announcement:
            self._sync()
            return
        pending = reply.generation.pending
        if pending is not None and not reply.interrupted and reply.error is None:
            self._offer_confirmation(pending, reply.turn_id)
        self._save_turn(reply, lambda: self._record(reply, record))

    async def _record(self, reply: Reply, record: TurnRecord) -> None:
        await self._recorder.record(
            reply.conversation, record, lambda r: self._extractions.complete(reply, r)
        )

    # ----------------------------------------------------------------------------- interruption

    def _interrupt(self, reply: Reply, reason: str) -> None:
        """LLM, TTS and queued audio stop; the record keeps what was heard."""
        if reason == "barge_in" and reply.withdrawable and not reply.announcement:
            # Nothing was heard yet: the user was not done talking. Their words carry over to
            # the next turn instead of being answered separately.
            if reply.held:
                self._dropped_speculations += 1
            reply.withdraw()
            self._reply = None
            carried = self._tracker.withdraw_reply(reply.turn_id, reply.user_text)
            settled = self._settling.pop(reply.turn_id, None)
            if settled is not None and self._confirmation.pending is None:
                self._offer_confirmation(settled, reply.turn_id)  # the question is open again
            log.info("turn %d withdrawn before any audio; its words carry over", reply.turn_id)
            self.emit(TurnWithdrawn(reply.turn_id, carried))
        else:
            reply.interrupt()

    # ------------------------------------------------------------------------------ conversation

    def new_conversation(self, conversation: Conversation) -> None:
        """Start over with an empty conversation (the old one stays on disk)."""
        self.interrupt(reason="new conversation")
        self._tracker.forget_carry_over()
        self._confirmation.forget()
        self._conversation = conversation
        # Ids keep growing: the player treats lower ids as stale audio.
        self._tracker.keep_ids_above(conversation.next_turn_id)

    def on_engine_notice(self, notice: EngineNotice) -> None:
        """An engine has news: a chain switched members (told once per switch), or an engine
        speaks for itself (a local server crashed and restarts)."""
        match notice:
            case FellBack(kind, failed, replacement, reason):
                text = f"{failed} failed ({reason}); using {replacement} instead."
                self.emit(Notice(text, Source(kind)))
                if self._reply is not None:  # the wait goes on with the next engine
                    self.emit(Activity(Doing.SWITCHING, replacement, turn_id=self._reply.turn_id))
            case Recovered(kind, name):
                self.emit(Notice(f"{name} works again; using it from now on.", Source(kind)))
            case EngineAnnouncement(kind, message, True):
                self.emit(ErrorEvent(message, Source(kind)))
            case EngineAnnouncement(kind, message, False):
                self.emit(Notice(message, Source(kind)))
