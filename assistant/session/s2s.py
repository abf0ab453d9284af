"""The conversation over a speech-to-speech engine: Parley's guarantees around a provider that
hears, thinks and speaks by itself.

``SpeechSession`` has ``Session``'s interface (the app drives either the same way) and reuses
its parts where they fit: the turn-detection strategies, the recorder, the timeline, the
state derivation. What differs is who answers: every turn goes to the engine's session
(``engines.s2s.AgentSession``) and its answer comes back as an ``AgentReply``.

- **Turns.** Push-to-talk, or hands-free with Parley's own detection (VAD, and the end-of-turn
  judge on each pause): only the utterance's audio (its pre-roll first) goes to the engine, and
  its end is ``commit``. Hands-free with the provider's detection
  (``settings.s2s.turn_detection = "provider"``): all audio goes to the engine, and its
  ``SpeechStarted``/``SpeechStopped`` open and close turns.
- **Barge-in** stops local playback within one audio block (the player's ``clear``) and tells
  the engine how much of each item was played, so its context keeps only what was heard. With
  Parley's detection, speech over a reply pauses it first and interrupts once it lasts
  ``interruption.min_duration_ms`` (shorter speech is a noise: the reply resumes); a key press
  interrupts at once. While the input chain cannot vouch that the assistant's own voice is
  cancelled from the microphone (``set_echo_uncertain``), hands-free speech over a reply is not
  taken for an interruption: with no transcript to tell it from the echo, only the key cuts in.
  With the provider's detection, its ``SpeechStarted`` interrupts at once.
- **History = what was heard**: the record of a turn holds the words of the provider's
  transcript played up to the cut (``spoken.py``), the user's final transcript (waited for a
  little when the provider sends it after the answer), and the tools that ran.
- **Timeline** per turn: ``speech_end`` (Parley's end, or the provider's corrected by the lag it
  reports), ``stt_final`` (the user's transcript), ``llm_request`` (the answer asked for or
  started), ``llm_first_token`` (its first words), ``tts_first_audio``, ``playback_start``/
  ``end``: voice to voice is speech end → first sample played.
- **Tools** the engine calls run through Parley's registry; their results go back to it and
  the answer continues in the same turn.
- The engine's session is kept by an ``AgentLink`` (``agent_link.py``): one that fails is
  reported and reopened; a new conversation, or a switch of the turn detection, opens a new
  one. Earlier turns go to every new one as context.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Literal, Unpack

from assistant.audio.player import Player
from assistant.engines import s2s
from assistant.engines.base import EngineError
from assistant.events import (
    ErrorEvent,
    FinalTranscript,
    Notice,
    PartialTranscript,
    PlaybackPaused,
    PlaybackResumed,
    Source,
    State,
    ToolCalled,
    TurnWithdrawn,
    UserSpeechStarted,
)
from assistant.history import Conversation, ToolRecord, TurnRecord, turn_messages
from assistant.session.agent_link import AgentLink
from assistant.session.agent_reply import AgentReply, AgentTurn
from assistant.session.core import SessionCore, SessionOptions
from assistant.session.session import derive_state
from assistant.session.tracker import Phase
from assistant.timeline import Mark, Timeline
from assistant.turns import (
    Pause,
    PauseJudge,
    TurnDetection,
    TurnEvent,
    concat_audio,
    make_turn_detection,
)
from assistant.types import CAPTURE_RATE, FRAME_SAMPLES, PCM, AudioFrame

log = logging.getLogger(__name__)

#: A provider may send the user's transcript after its answer: the record waits this long.
USER_TEXT_WAIT = 3.0


class _Utterance:
    """The user's speech being sent to the engine (Parley's detection)."""

    def __init__(self, turn: AgentTurn, *, over_reply: bool, tentative: bool) -> None:
        self.turn = turn
        self.over_reply = over_reply
        self.tentative = tentative
        self.audio: list[PCM] = []
        #: Seconds of audio captured since the start (the pre-roll not counted).
        self.live_seconds = 0.0
        self.last_speech_at = turn.timeline.marks.get(Mark.SPEECH_START, 0.0)


class SpeechSession(SessionCore[AgentReply]):
    """One conversation over a speech-to-speech engine; see the module docstring."""

    def __init__(
        self,
        *,
        engine: s2s.SpeechToSpeech,
        player: Player,
        conversation: Conversation,
        **options: Unpack[SessionOptions],
    ) -> None:
        super().__init__(player=player, conversation=conversation, **options)
        self.engine = engine
        self._next_turn_id = conversation.next_turn_id
        self._detection = self._make_detection(self.settings.turn_mode)
        self._link = AgentLink(
            engine,
            setup=self._setup,
            on_event=self._on_agent_event,
            on_failure=self._agent_failed,
            on_open_failed=self._open_failed,
            spawn=self._spawn,
            clock=self.clock,
        )
        self._echo_uncertain = False
        self._utterance: _Utterance | None = None
        #: Turns whose answer is asked for and not started yet, oldest first.
        self._awaiting: deque[AgentTurn] = deque()
        #: The latest turn whose user transcript is not in yet.
        self._transcribing: AgentTurn | None = None

    # --------------------------------------------------------------------------- events, state

    @property
    def server_turns(self) -> bool:
        """The provider ends hands-free turns (the user's choice in the settings)."""
        s = self.settings
        return self._detection.mode == "vad" and s.s2s.turn_detection == "provider"

    def _phase(self) -> Phase:
        utterance = self._utterance
        if utterance is None:
            return Phase.IDLE
        return Phase.TENTATIVE if utterance.tentative else Phase.SPEAKING

    def _derive_state(self) -> State:
        return derive_state(
            listening=self._listening,
            phase=self._phase(),
            reply=self._reply,
            finishing=self._finishing,
            awaiting_answer=bool(self._awaiting) or self._running_tools(),
        )

    def _busy(self) -> bool:
        return (
            self._reply is not None
            or bool(self._finishing)
            or bool(self._awaiting)
            or self._utterance is not None
        )

    def _running_tools(self) -> bool:
        reply = self._reply
        return reply is not None and bool(reply.calls) and not reply.playing

    # ------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the player and open the engine's session; the session then listens."""
        await self.player.start()
        await self._link.open()
        self._listening = True
        self._sync()

    async def close(self) -> None:
        """Stop everything, wait for it, and save the turn in flight (as far as it was heard)."""
        self._listening = False
        replies = [r for r in (self._reply, *self._finishing) if r is not None]
        self.interrupt(reason="closing")
        for task in self._tasks:
            task.cancel()
        await self._link.close()
        for reply in replies:
            await reply.wait_for_playout()
        await asyncio.gather(*self._tasks, *self._saving, return_exceptions=True)
        await self._recorder.drain()
        await self.player.close()
        self._sync()

    # ---------------------------------------------------------------------- the engine session

    def _setup(self) -> s2s.AgentSetup:
        s = self.settings
        context = self._conversation.context(s.system_prompt, s.context_tokens)
        return s2s.AgentSetup(
            instructions=s.system_prompt,
            language=s.language,
            voice=s.s2s.voice or None,
            tools=self.tools.specs if self.tools is not None else (),
            history=[m for m in context if m.role != "system"],
            server_turns=self.server_turns,
            semantic_turns=s.vad.smart_turn,
            end_silence_ms=s.vad.end_silence_ms,
            vad_threshold=s.vad.threshold,
            prefix_ms=s.vad.preroll_ms,
            greeting=s.s2s.greeting,
        )

    def _on_agent_event(self, event: s2s.AgentEvent) -> None:
        self._on_agent(event)
        self._sync()

    def _open_failed(self, exc: EngineError) -> None:
        self.emit(ErrorEvent(f"Speech to speech could not start: {exc}", Source.S2S))

    def _agent_failed(self, exc: EngineError) -> None:
        log.warning("the speech-to-speech session failed: %s", exc)
        self.emit(ErrorEvent(f"Speech to speech failed: {exc}", Source.S2S))
        reply = self._reply
        if reply is not None and not reply.finished:
            reply.done(s2s.ReplyDone(reply.latest, "failed", exc))
        # Turns sent but not answered yet are lost with the session: each is told, and one
        # whose words never came back is withdrawn (the next session starts without it).
        for turn in self._awaiting:
            message = "Speech to speech failed before answering; please say that again."
            self.emit(ErrorEvent(message, Source.S2S, turn.turn_id))
            if not turn.user_final:
                if self._transcribing is turn:
                    self._transcribing = None
                self.emit(FinalTranscript(turn.turn_id, ""))
        self._awaiting.clear()
        self._sync()

    # ---------------------------------------------------------------------------- turn strategy

    def _make_detection(self, mode: Literal["ptt", "vad"]) -> TurnDetection:
        # Only the sound is judged: the provider hears the words, Parley has no transcript yet.
        model = self._turn_model
        judge = (
            PauseJudge(self.settings.vad, clock=self.clock, model=model, offload=self._offload)
            if model
            else None
        )
        return make_turn_detection(mode, self.settings, judge)

    def set_turn_mode(self, mode: Literal["ptt", "vad"]) -> None:
        if mode == self._detection.mode:
            return
        self.end_of_input()
        self._use_turn_mode(mode)
        used = self._link.setup_used
        if used is not None and self.server_turns != used.server_turns:
            self._link.restart()  # its turn detection is set when it opens

    def set_echo_uncertain(self, uncertain: bool) -> None:
        """The input chain does (not) know that the assistant's voice is cancelled from the
        microphone; while it does not, hands-free speech over a reply does not interrupt it."""
        self._echo_uncertain = uncertain

    def end_of_input(self) -> None:
        """The audio source ended: end an open turn."""
        utterance = self._utterance
        if utterance is not None:
            self._end_utterance(utterance.last_speech_at)
        self._detection.reset()

    # ----------------------------------------------------------------------------------- audio

    async def _feed(self, frame: AudioFrame) -> None:
        self._meter(frame)
        if self.server_turns:
            agent = self._link.current()
            if agent is not None:
                self._push(agent, frame.pcm)
            return
        probability = self._listen(frame)
        event = self._detection.process(frame, probability)
        if event is not None:
            self._on_turn_event(event, explicit=False)
        utterance = self._utterance
        if utterance is None or (event is not None and event.kind == "start"):
            return  # a new utterance sent its pre-roll, this frame included
        if probability >= self.settings.vad.threshold or not self._detection.needs_vad:
            utterance.last_speech_at = frame.t
        utterance.live_seconds += len(frame.pcm) / CAPTURE_RATE
        self._send_audio(utterance, frame)
        if utterance.tentative:
            self._check_barge_in(utterance)

    def _preroll_frames(self) -> int:
        vad = self.settings.vad
        ms = vad.preroll_ms + (vad.min_speech_ms if self._detection.needs_vad else 0)
        return max(1, round(ms / 1000 * CAPTURE_RATE / FRAME_SAMPLES))

    def _push(self, agent: s2s.AgentSession, pcm: PCM) -> bool:
        try:
            agent.push(pcm)
        except EngineError as exc:
            self._link.lost(agent, exc)
            return False
        return True

    def _send_audio(self, utterance: _Utterance, frame: AudioFrame) -> None:
        """The utterance keeps the frame for the pause judge; the engine, which recognizes
        it, gets the frame as the recognizer should hear it."""
        utterance.audio.append(frame.pcm)
        agent = self._link.current()
        if agent is not None:
            self._push(agent, frame.heard)

    # ------------------------------------------------------------------- Parley's turn events

    def _on_turn_event(self, event: TurnEvent, *, explicit: bool) -> None:
        if event.kind == "start":
            self._begin(event, explicit=explicit)
        elif event.kind == "end":
            self._end_utterance(event.at)
        elif event.kind == "pause" and self._utterance is not None:
            self._spawn(self._judge_pause(self._utterance), "judge-pause")
        self._sync()

    def _new_turn(self) -> AgentTurn:
        turn_id, self._next_turn_id = self._next_turn_id, self._next_turn_id + 1
        timeline = Timeline(turn_id, now=self.clock.now)
        timeline.notes.update(
            pipeline="speech-to-speech",
            engine=self.engine.name,
            turn_detection="provider" if self.server_turns else "parley",
        )
        return AgentTurn(turn_id, timeline)

    def _begin(self, event: TurnEvent, *, explicit: bool) -> None:
        if self._utterance is not None:
            return
        reply = self._reply
        talking = reply is not None and not reply.finished
        if (
            talking
            and not explicit
            and (not self.settings.interruption.enabled or self._echo_uncertain)
        ):
            return  # hands-free speech over the reply is not an interruption: ignored
        turn = self._new_turn()
        turn.timeline.mark("speech_start", event.at)
        utterance = _Utterance(turn, over_reply=talking, tentative=talking and not explicit)
        self._utterance = utterance
        self.emit(UserSpeechStarted(turn.turn_id, at=self.clock.now()))
        self._supersede_unheard()
        if talking and reply is not None:
            if explicit:
                self.interrupt(reason="barge_in")
            else:
                reply.pause()
                self.emit(PlaybackPaused(reply.turn_id))
        agent = self._link.current()
        if agent is not None:
            agent.clear()
        for frame in list(self._preroll):
            self._send_audio(utterance, frame)

    def _check_barge_in(self, utterance: _Utterance) -> None:
        start = utterance.turn.timeline.marks[Mark.SPEECH_START]
        lasted_ms = (utterance.last_speech_at - start) * 1000.0
        if lasted_ms >= self.settings.interruption.min_duration_ms:
            utterance.tentative = False
            self.interrupt(reason="barge_in")

    def _end_utterance(self, at: float) -> None:
        utterance, self._utterance = self._utterance, None
        if utterance is None:
            return
        turn = utterance.turn
        if utterance.tentative:
            # Too short to be an interruption (a cough, a click): the reply goes on.
            agent = self._link.current()
            if agent is not None:
                agent.clear()
            self.emit(TurnWithdrawn(turn.turn_id, ""))
            reply = self._reply
            if reply is not None and not reply.finished:
                reply.resume()
                self.emit(PlaybackResumed(reply.turn_id))
            self._sync()
            return
        turn.timeline.mark("speech_end", at)
        agent = self._link.current()
        click = utterance.live_seconds * 1000 < self.settings.vad.min_speech_ms
        answered = False
        if agent is not None and click:
            agent.clear()  # a click of the talk key: nothing to answer
        elif agent is not None:
            try:
                answered = agent.commit()
            except EngineError as exc:
                self._link.lost(agent, exc)
        if not answered:
            if not click and self._link.current() is None:
                message = "Speech to speech is reconnecting; please say that again."
                self.emit(ErrorEvent(message, Source.S2S, turn.turn_id))
            self.emit(FinalTranscript(turn.turn_id, ""))
            self._sync()
            return
        turn.timeline.mark("llm_request")
        self._awaiting.append(turn)
        self._transcribing = turn
        self._sync()

    async def _judge_pause(self, utterance: _Utterance) -> None:
        try:
            pause = Pause(concat_audio(utterance.audio), language=self.settings.language)
            verdict = await self._detection.judge_pause(pause)
        except Exception as exc:
            log.warning("end-of-turn model failed: %s", exc)
            return
        if verdict is None or self._utterance is not utterance:
            return
        if verdict.probability is not None:
            utterance.turn.timeline.notes["end_of_turn_probability"] = round(verdict.probability, 3)
        event = self._detection.apply(verdict, self.clock.now())
        if event is not None:
            self._on_turn_event(event, explicit=False)

    def _supersede_unheard(self) -> None:
        """The user spoke again before any answer was heard: those answers are cut as they
        come (the provider keeps the question, never an unheard answer)."""
        for turn in self._awaiting:
            turn.superseded = True
        reply = self._reply
        if reply is not None and not reply.finished and not reply.playing:
            reply.interrupt()

    # ---------------------------------------------------------------------------- typed text

    def submit_text(self, text: str) -> None:
        text = text.strip()
        if not text:
            return
        self.interrupt(reason="typed")
        self._supersede_unheard()
        turn = self._new_turn()
        now = self.clock.now()
        turn.timeline.mark("speech_end", now)
        turn.timeline.mark("stt_final", now)
        turn.heard_user(text)
        self.emit(FinalTranscript(turn.turn_id, text))
        agent = self._link.current()
        if agent is None:
            message = "Speech to speech is not connected yet; try again."
            self.emit(ErrorEvent(message, Source.S2S, turn.turn_id))
            return
        try:
            agent.say(text)
        except EngineError as exc:
            self._link.lost(agent, exc)
            return
        turn.timeline.mark("llm_request")
        self._awaiting.append(turn)
        self._sync()

    # ---------------------------------------------------------------------- the engine's events

    def _on_agent(self, event: s2s.AgentEvent) -> None:
        match event:
            case s2s.SpeechStarted():
                self._server_speech_started()
            case s2s.SpeechStopped(lag):
                self._server_speech_stopped(lag)
            case s2s.UserText(text, final):
                self._user_text(text, final)
            case s2s.ReplyStarted(reply):
                self._reply_started(reply)
            case s2s.ReplyAudio() | s2s.ReplyText() | s2s.ReplyTextDone() | s2s.ToolRequest():
                owner = self._owner(event.reply)
                if owner is not None:
                    _route(owner, event)
            case s2s.ReplyDone(reply):
                self._reply_done(event)
            case s2s.SessionNotice(message):
                self.emit(Notice(message, Source.S2S))

    def _server_speech_started(self) -> None:
        if not self.server_turns or self._utterance is not None:
            return
        turn = self._new_turn()
        turn.timeline.mark("speech_start")
        self._utterance = _Utterance(turn, over_reply=self._reply is not None, tentative=False)
        self.emit(UserSpeechStarted(turn.turn_id, at=self.clock.now()))
        self.interrupt(reason="barge_in")  # the provider's barge-in: stop playing at once
        self._supersede_unheard()

    def _server_speech_stopped(self, lag: float) -> None:
        utterance, self._utterance = self._utterance, None
        if utterance is None:
            return
        turn = utterance.turn
        turn.timeline.mark("speech_end", self.clock.now() - lag)
        self._awaiting.append(turn)
        self._transcribing = turn

    def _user_text(self, text: str, final: bool) -> None:
        turn = self._utterance.turn if self._utterance is not None else self._transcribing
        if turn is None or turn.user_final:
            return
        if not final:
            if text:
                self.emit(PartialTranscript(turn.turn_id, text))
            return
        turn.timeline.mark("stt_final")
        turn.heard_user(text)
        if self._transcribing is turn:
            self._transcribing = None
        self.emit(FinalTranscript(turn.turn_id, text))

    def _owner(self, reply: str) -> AgentReply | None:
        current = self._reply
        if current is not None and current.owns(reply):
            return current
        return next((r for r in self._finishing if r.owns(reply)), None)

    def _reply_started(self, reply_id: str) -> None:
        current = self._reply
        if current is not None and not current.finished and current.continues:
            current.started(reply_id)  # the answer after the tools' results
            return
        if current is not None and not current.finished:
            self.interrupt(reason="superseded")  # one answer at a time
        turn = self._awaiting.popleft() if self._awaiting else self._provider_ended_turn()
        if turn is None:
            turn = self._new_turn()  # the provider spoke first (a greeting)
            turn.heard_user("")
        agent = self._link.current()
        if agent is None:
            return
        reply = AgentReply(
            turn=turn,
            agent=agent,
            player=self.player,
            settings=self.settings,
            clock=self.clock,
            emit=self.emit,
            on_finished=self._on_reply_finished,
        )
        self._reply = reply
        reply.started(reply_id)
        if turn.superseded:
            reply.interrupt()

    def _provider_ended_turn(self) -> AgentTurn | None:
        """An answer began while Parley still heard the user: the provider, which always ends
        turns itself (AssemblyAI's), ended this one first."""
        utterance = self._utterance
        if utterance is None or utterance.tentative:
            return None
        self._utterance = None
        utterance.turn.timeline.mark("speech_end", utterance.last_speech_at)
        self._transcribing = utterance.turn
        return utterance.turn

    def _reply_done(self, event: s2s.ReplyDone) -> None:
        reply = self._owner(event.reply)
        if reply is None:
            if event.status == "failed" and self._awaiting:
                # No answer came at all (the provider went quiet or the connection broke).
                turn = self._awaiting.popleft()
                message = str(event.error) if event.error is not None else "no answer came"
                self.emit(ErrorEvent(f"The reply failed: {message}", Source.S2S, turn.turn_id))
            return
        if event.status == "failed" and event.error is not None:
            self.emit(ErrorEvent(f"The reply failed: {event.error}", Source.S2S, reply.turn_id))
        reply.done(event)
        if reply.calls and not reply.finished:
            self._spawn(self._run_tools(reply, event.reply), "s2s-tools")

    async def _run_tools(self, reply: AgentReply, provider_reply: str) -> None:
        """Run the calls through Parley's registry, then hand the results to the engine."""
        calls, results = list(reply.calls), []
        for call in calls:
            if self.tools is None:
                result = f"error: there is no tool named {call.name!r}"
            else:
                # Shielded: a tool that has started runs to completion.
                result = await asyncio.shield(self.tools.run(call))
            record = ToolRecord(call.id, call.name, call.arguments, result)
            reply.tool_ran(record)
            self.emit(ToolCalled(reply.turn_id, call.name, call.arguments, result))
            results.append((call.id, result))
        reply.calls = []
        agent = self._link.current()
        if reply.finished or agent is None:
            return
        try:
            reply.continues = True
            agent.tool_results(provider_reply, results)
        except EngineError as exc:
            self._link.lost(agent, exc)
        self._sync()

    # ----------------------------------------------------------------------------- replies

    def _on_reply_finished(self, reply: AgentReply, record: TurnRecord) -> None:
        if self._reply is reply:
            self._reply = None
        self._save_turn(reply, lambda: self._record(reply, record))

    async def _record(self, reply: AgentReply, record: TurnRecord) -> None:
        turn = reply.turn
        if not turn.user_final and self._listening:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(turn.settled.wait(), USER_TEXT_WAIT)
            record.user_text = turn.user_text
            if not turn.user_final:
                log.info("turn %d: the provider sent no transcript of the user", turn.turn_id)
            record.timeline = turn.timeline.to_dict(self.settings.budgets)
        await self._recorder.record(self._conversation, record)
        agent = self._link.current() if self._listening else None
        if agent is not None:
            agent.remember(turn_messages(record))

    # ------------------------------------------------------------------------- interruption

    def _interrupt(self, reply: AgentReply, reason: str) -> None:
        """The engine and the record keep only what was heard."""
        log.info("turn %d interrupted (%s)", reply.turn_id, reason)
        reply.interrupt()

    # ------------------------------------------------------------------------- conversation

    def new_conversation(self, conversation: Conversation) -> None:
        """Start over: a new engine session with no earlier turns (the old one stays on disk)."""
        self.interrupt(reason="new conversation")
        self._awaiting.clear()
        self._conversation = conversation
        self._next_turn_id = max(self._next_turn_id, conversation.next_turn_id)
        self._link.restart()


def _route(reply: AgentReply, event: s2s.AgentEvent) -> None:
    match event:
        case s2s.ReplyAudio():
            reply.audio(event)
        case s2s.ReplyText():
            reply.text(event)
        case s2s.ReplyTextDone():
            reply.text_done(event)
        case s2s.ToolRequest(_, call):
            reply.tool_call(call)
