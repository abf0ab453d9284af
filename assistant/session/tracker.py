"""The user's side of the conversation: who holds the floor, and what to do about it.

``UserTurnTracker`` has no I/O and never reads the clock: turn events, partial transcripts and
finals come in (with their times), typed decisions come out, and the session carries them out.
It owns the open utterance, the speculative end of turn (a pause after which a reply is
prepared but held), the utterances waiting for their final transcript, and the words carried
over to the next turn when the user went on talking. A sentence the user paused in and went
on from is heard again whole: its audio opens the next utterance, and its own transcript is
not used (up to ``REHEAR_MAX_SECONDS``; a longer one carries over as its words). Its phase is
one enum:

- ``IDLE``: nobody is talking (a reply may be in flight).
- ``SPEAKING``: the user holds the floor.
- ``TENTATIVE``: the user started talking over the assistant; the reply is paused until the
  speech proves to be words (a barge-in) or a noise / "mhm" (a false interruption).
- ``PAUSED``: the user paused; the reply is being prepared and held until the end is confirmed.

Push-to-talk has its own speculation: a pause while the key is still held (``key_pause``) asks
for a *preview* of the words so far, answered with a held reply; the utterance stays open. When
the user goes on (``key_resume``) the preview is dropped. At the release the final transcript
decides: the held reply plays if it answers the same words (normalized), otherwise it is
withdrawn and the final is answered.

Speech over the assistant is an *interjection* until its words are known. Partial transcripts
with real words (or a stop command) confirm it at once; a long stretch of speech with no
transcript yet confirms it too. When it pauses, its final transcript decides
(``assistant.turns.words``): a backchannel or a noise lets the reply go on (playback resumes
shortly after the pause already, unless the words so far were real), a stop command stops the
reply and is not answered, and real words interrupt the reply and are answered like any turn.
When the user goes on after such a pause before its words were used, the interjection is heard
again with what follows, as one utterance: its audio opens the next one (alone, the first
syllable of an interruption is often transcribed as nothing, or as other words).

Echo: speech that starts while the assistant may be heard (``own_speech()`` is not empty: a
reply in flight, or one that just ended) is judged by the words the assistant did not say
(``assistant.turns.words.not_said``), so a leak of its own voice never becomes a turn; its
length alone never makes it an interruption (the reply stays paused until its words are known).
While ``echo_uncertain`` is set (the input chain does not know yet that that voice is cancelled
from the microphone) such speech is an *echo suspect* besides: the reply is not paused for it,
and a long stretch of it does not count. A suspect's words, and those of speech that begins
within ``ECHO_WORDS_GRACE`` of the echo becoming known, make it an interruption only when there
are at least ``MIN_FOREIGN_WORDS`` of them (or a stop command), and not when they are no more
than what recognizers write for a muffled sound ("Thank you.": ``only_sign_offs``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from assistant.config import Settings
from assistant.timeline import Mark, Timeline
from assistant.turns import TurnEvent
from assistant.turns.words import (
    Interjection,
    classify_interjection,
    not_said,
    only_sign_offs,
    words_of,
)
from assistant.types import FRAME_SECONDS, AudioFrame

#: Words the assistant did not say that make an echo suspect the user's (a stop command alone
#: is enough; once the echo is known to be cancelled, one word is).
MIN_FOREIGN_WORDS = 2
#: A stretch of speech the user went on from after a pause is heard again, whole, with what
#: follows (see ``UserTurnTracker.on_turn_event``) when it is at most this long; a longer one
#: carries over as its transcript (the recognizer would hear it again for little gain).
REHEAR_MAX_SECONDS = 20.0
#: For this long after the input chain has come to know the echo (``echo_uncertain`` cleared),
#: speech over the assistant pauses it as usual, but its words are judged as an echo suspect's:
#: a canceller that has just settled can still let a word's onset through (most such leaks came
#: within a third of a second of it; a recognizer writes "Thank you." for one).
ECHO_WORDS_GRACE = 1.0


class Phase(StrEnum):
    IDLE = "idle"
    SPEAKING = "speaking"
    TENTATIVE = "tentative"
    PAUSED = "paused"


@dataclass(slots=True, eq=False)
class Utterance:
    """One stretch of the user's speech, from its start to its (possibly speculative) end."""

    turn_id: int
    timeline: Timeline
    partial: str = ""
    last_speech_at: float = 0.0
    #: Audio from just before the start was detected; sent to STT ahead of the live frames.
    preroll: list[AudioFrame] | None = None
    #: The frames sent to STT (it took each one's ``heard`` version), kept for the
    #: end-of-turn judge and to be heard again.
    frames: list[AudioFrame] = field(default_factory=list)
    #: Capture time of the last frame sent to STT.
    last_frame_t: float = 0.0
    #: Ended speculatively: its reply is prepared but held until the end is confirmed.
    held: bool = False
    #: The user went on talking after the pause: its words carry over to the next utterance.
    withdrawn: bool = False
    #: Began while the assistant was talking.
    over_reply: bool = False
    #: Spoken over the assistant and ended before its words were known: the final decides.
    interjection: bool = False
    #: An interjection whose words were used (answered, or carried over to the next turn).
    words_used: bool = False
    #: The user went on from it before its words were used (an interjection), or after a
    #: pause mid-sentence: its audio opens the next utterance, so its own transcript is not
    #: used.
    reheard: bool = False
    #: The words carried over from before it that its answer took up (given back to the next
    #: utterance when its reply is withdrawn and its audio heard again).
    carried_in: str = ""
    #: Its own final transcript, once known (kept for a reheard one: see ``opened_by``).
    transcript: str | None = None
    #: The utterance whose audio this one opens with (heard again): if this one gives no
    #: words after all, that one's carry over as text.
    opened_by: Utterance | None = None
    #: Began while the assistant's voice may come back uncancelled: only words it did not say
    #: count (``own`` is what it said).
    echo_suspect: bool = False
    #: Its words may hold a leak of the assistant's voice (an echo suspect, or begun within
    #: ``ECHO_WORDS_GRACE`` of the echo becoming known): one stray word or a recognizer's
    #: sign-off is not the user's.
    echo_words: bool = False
    own: str = ""
    #: Push-to-talk: a preview of the words was asked for at a pause while the key was held,
    #: and nothing has been said since (the preview is then the final transcript).
    quiet_since_preview: bool = False


# ------------------------------------------------------------------------------------ decisions


@dataclass(frozen=True, slots=True)
class Begin:
    """The user started talking: a new utterance."""

    utterance: Utterance
    #: No reply is in flight, so the LLM may start reading the prompt now.
    prefill: bool


@dataclass(frozen=True, slots=True)
class TentativeBargeIn:
    """Speech over the assistant: pause its playback until we know what it is."""


@dataclass(frozen=True, slots=True)
class ConfirmBargeIn:
    """A real interruption: stop the reply (keeping what was heard)."""


@dataclass(frozen=True, slots=True)
class FalseInterruption:
    """Only a noise or a backchannel: drop its audio, resume playback after ``resume_after`` s
    unless the user speaks again."""

    resume_after: float


@dataclass(frozen=True, slots=True)
class Speculate:
    """A pause that may end the turn: get the final transcript and prepare the reply, held."""

    utterance: Utterance


@dataclass(frozen=True, slots=True)
class JudgeInterjection:
    """Speech over the assistant paused before its words were known: get its transcript.

    ``resume``: nothing so far suggests words, so playback may go on meanwhile.
    """

    utterance: Utterance
    resume: bool


@dataclass(frozen=True, slots=True)
class Withdraw:
    """The user went on after the pause: drop the reply prepared for ``utterance``."""

    utterance: Utterance


@dataclass(frozen=True, slots=True)
class Commit:
    """The turn ended. A speculative one releases its held reply; otherwise the final
    transcript is asked for now."""

    utterance: Utterance
    speculative: bool
    #: The final transcript, when the recognizer ended the turn itself and already gave it.
    transcript: str | None = None


@dataclass(frozen=True, slots=True)
class Preview:
    """The user paused while holding the talk key: transcribe the words so far and prepare
    their reply, held. The utterance stays open."""

    utterance: Utterance


@dataclass(frozen=True, slots=True)
class DropPreview:
    """The user went on talking with the key held: the reply prepared at the pause is out of
    date (the utterance goes on; nothing carries over)."""

    utterance: Utterance


@dataclass(frozen=True, slots=True)
class DropUtterance:
    """The open utterance cannot be transcribed (the recognizer failed): forget it."""

    utterance: Utterance


Decision = (
    Begin
    | TentativeBargeIn
    | ConfirmBargeIn
    | FalseInterruption
    | Speculate
    | JudgeInterjection
    | Withdraw
    | Commit
    | Preview
    | DropPreview
    | DropUtterance
)


@dataclass(frozen=True, slots=True)
class Answer:
    """Reply to ``text`` (held while the end of the turn is unconfirmed).

    ``barge_in``: the words were said over the assistant, whose reply must stop first (its
    carried-over words, if it had not been heard yet, then go in front of ``text``).
    """

    text: str
    held: bool
    barge_in: bool = False


@dataclass(frozen=True, slots=True)
class CarryOver:
    """The user went on talking: ``text`` opens the next utterance's transcript."""

    text: str


@dataclass(frozen=True, slots=True)
class Silence:
    """The utterance held no words."""


@dataclass(frozen=True, slots=True)
class Dismiss:
    """An interjection that was only a backchannel or a noise: the reply goes on."""

    kind: Interjection


@dataclass(frozen=True, slots=True)
class StopCommand:
    """ "Stop", "wait": the reply stops, and the command itself is not answered."""


FinalOutcome = Answer | CarryOver | Silence | Dismiss | StopCommand


def same_words(a: str, b: str) -> bool:
    """The two transcripts say the same words (case and punctuation aside)."""
    return words_of(a) == words_of(b)


# -------------------------------------------------------------------------------------- tracker


class UserTurnTracker:
    """Turn-taking decisions for the user's side (see the module docstring).

    ``reply_turn()`` tells the tracker which turn's reply is in flight (None if none), so it
    knows whether new speech talks over the assistant. ``settings`` is read live.
    ``own_speech()`` is what the assistant said that may come back through the microphone.
    ``rehears_audio()`` says whether the recognizer decodes an utterance's audio whole when it
    ends (it can transcribe the open one so far at any moment), so that audio heard again costs
    it only decoding: a sentence the user went on from after a pause is then heard again whole.
    A streaming recognizer would take it again at the pace of speech (some are held to it), and
    its final come seconds late: there the words carry over as text.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        next_turn_id: int,
        reply_turn: Callable[[], int | None],
        now: Callable[[], float],
        own_speech: Callable[[], str] = lambda: "",
        rehears_audio: Callable[[], bool] = lambda: False,
    ) -> None:
        self.settings = settings
        self._reply_turn = reply_turn
        self._now = now
        self._own_speech = own_speech
        self._rehears_audio = rehears_audio
        self._echo_uncertain = False
        self._echo_known_at = float("-inf")
        self._next_turn_id = next_turn_id
        self.utterance: Utterance | None = None
        self.speculative: Utterance | None = None
        #: The interjection that paused in the current stretch of speech (until it ends).
        self._paused_interjection: Utterance | None = None
        #: Utterances that ended and wait for their final transcript, oldest first.
        self.finalizing: deque[Utterance] = deque()
        self.carry_over = ""
        #: The open utterance talks over the assistant and is not yet known to be words.
        self._tentative = False

    # ----------------------------------------------------------------------------------- state

    @property
    def echo_uncertain(self) -> bool:
        """The assistant's voice may come back through the microphone uncancelled (see the
        module docstring). Set by the session from the input chain."""
        return self._echo_uncertain

    @echo_uncertain.setter
    def echo_uncertain(self, uncertain: bool) -> None:
        if self._echo_uncertain and not uncertain:
            self._echo_known_at = self._now()
        self._echo_uncertain = uncertain

    @property
    def phase(self) -> Phase:
        if self.utterance is not None:
            return Phase.TENTATIVE if self._tentative else Phase.SPEAKING
        speculative = self.speculative
        paused = speculative is not None and not speculative.interjection
        return Phase.PAUSED if paused else Phase.IDLE

    @property
    def awaiting_answer(self) -> bool:
        """An utterance ended for good and its transcript is not in yet."""
        return any(not u.held and not u.interjection for u in self.finalizing)

    def allocate_turn_id(self) -> int:
        turn_id = self._next_turn_id
        self._next_turn_id += 1
        return turn_id

    def keep_ids_above(self, turn_id: int) -> None:
        """Turn ids only grow (the player treats lower ids as stale audio)."""
        self._next_turn_id = max(self._next_turn_id, turn_id)

    # ---------------------------------------------------------------------------------- inputs

    def on_turn_event(
        self, event: TurnEvent, *, explicit: bool, preroll: list[AudioFrame]
    ) -> list[Decision]:
        """A turn event from the detection strategy (``explicit``: a key press or release).

        ``preroll``: the frames captured just before it, for a ``start``.
        """
        if event.kind not in ("pause", "resume"):
            # Only a resume continues the stretch of speech an interjection paused in.
            self._paused_interjection = None
        if event.kind == "start":
            return self._begin(event, explicit=explicit, preroll=preroll)
        if event.kind in ("key_pause", "key_resume"):
            return self._held_key(event.kind == "key_pause")
        if event.kind == "pause":
            utterance = self.utterance
            if utterance is None:
                return []
            if self._tentative:
                self.speculative = utterance
                self._paused_interjection = utterance
                return [self._interjection_ended(event.at, held=True)]
            self.speculative = utterance
            self._end(event.at, held=True)
            return [Speculate(utterance)]
        if event.kind == "resume":
            out: list[Decision] = []
            speculative = self.speculative
            if speculative is not None:
                self.speculative = None
                speculative.withdrawn = True
                out.append(Withdraw(speculative))
            fragment, self._paused_interjection = self._paused_interjection, None
            if self.utterance is None:
                # Only audio the paused utterance did not already send to STT...
                earlier = speculative or fragment
                after = earlier.last_frame_t if earlier is not None else None
                kept = [f for f in preroll if after is None or f.t > after]
                heard_again = None
                if fragment is not None and not fragment.words_used:
                    # ...except an interjection whose words are unused: heard again, in front.
                    heard_again = fragment
                    kept = [*fragment.frames, *kept]
                elif speculative is not None and self._rehearable(speculative):
                    # ...and a sentence the user paused in: both sides of the pause are heard
                    # as one, so the recognizer has each side's context, and the word after
                    # the pause is not cut off for want of the audio before it (heard apart,
                    # "eight of spades, four of clubs" came back "eight of spades" and "of
                    # close").
                    heard_again = speculative
                    kept = [*speculative.frames, *kept]
                ignore = speculative.turn_id if speculative is not None else None
                out += self._begin(event, explicit=False, preroll=kept, ignore_reply=ignore)
                if heard_again is not None and self.utterance is not None:  # it did begin
                    heard_again.reheard = True
                    if heard_again is speculative:
                        self.utterance.opened_by = heard_again
            return out
        # "end"
        if self.utterance is not None:
            if self._tentative:
                return [self._interjection_ended(event.at, held=False)]
            return self._commit_open(event.at)
        if self.speculative is not None:
            return [self._confirm_speculative()]
        return []

    def on_speech(self, t: float) -> None:
        """A frame of the open utterance was speech (its time)."""
        if self.utterance is not None:
            self.utterance.last_speech_at = t

    def on_partial(self, text: str) -> list[Decision]:
        if self.utterance is None:
            return []
        self.utterance.partial = text
        return self.check_tentative()

    def check_tentative(self) -> list[Decision]:
        """Promote speech over the assistant to a real interruption once it holds words, or
        once it lasts with no transcript yet to say it is only a backchannel."""
        utterance = self.utterance
        if utterance is None or not self._tentative:
            return []
        start = utterance.timeline.marks[Mark.SPEECH_START]
        # Duration of the speech itself: trailing silence before the endpoint does not count.
        lasted_ms = (utterance.last_speech_at - start) * 1000.0
        kind = self._classify_heard(utterance, utterance.partial)
        # The assistant's own voice lasts too: while it may be heard, only words count (the
        # reply stays paused meanwhile); with no reply playing there is nothing to stop.
        long_unknown = (
            kind is Interjection.NOTHING
            and not utterance.own
            and self._reply_turn() is not None
            and lasted_ms >= self.settings.interruption.min_duration_ms
        )
        if kind in (Interjection.WORDS, Interjection.STOP) or long_unknown:
            self._tentative = False
            return [ConfirmBargeIn()]
        return []

    def end_input(self, at: float | None = None) -> list[Decision]:
        """The audio stopped (the source ended, the mode changed): settle what is open.

        The open utterance ends at ``at`` (default: when its speech was last heard).
        """
        out: list[Decision] = []
        utterance = self.utterance
        if utterance is not None:
            if self._tentative:
                out += self._false_interruption()
            else:
                end = at if at is not None else (utterance.last_speech_at or self._now())
                out += self._commit_open(end)
        if self.speculative is not None:
            out.append(self._confirm_speculative())
        return out

    def engine_ended_turn(self, text: str) -> list[Decision]:
        """A recognizer that does its own endpointing ended the turn."""
        if self.utterance is None or self._tentative:
            return []
        self.utterance.partial = text
        return [Commit(self._end(self._now(), held=False), speculative=False, transcript=text)]

    def drop_open(self) -> list[Decision]:
        """The open utterance cannot be transcribed any more."""
        utterance = self.utterance
        if utterance is None:
            return []
        if self._tentative:
            return self._false_interruption()  # the paused reply resumes
        self.utterance = None
        self._gives_no_words(utterance)
        return [DropUtterance(utterance)]

    def on_final(self, utterance: Utterance, text: str) -> FinalOutcome:
        """The final transcript of an utterance that ended: answer it, or carry it over."""
        self._settled(utterance)
        text = text.strip()
        utterance.transcript = text
        if utterance.reheard:  # its audio is transcribed again with what followed
            if self.speculative is utterance:
                self.speculative = None
            return CarryOver(self.carry_over)
        outcome = self._outcome_of_final(utterance, text)
        if isinstance(outcome, (Dismiss, Silence, StopCommand)):
            self._gives_no_words(utterance)
        return outcome

    def _outcome_of_final(self, utterance: Utterance, text: str) -> FinalOutcome:
        if utterance.interjection:
            return self._judge_interjection(utterance, text)
        if utterance.own and self._classify_heard(utterance, text) is Interjection.NOTHING:
            # Only the assistant's own words, heard back: not a turn.
            if self.speculative is utterance:
                self.speculative = None
            return Dismiss(Interjection.NOTHING)
        if utterance.over_reply and self._classify(text) is Interjection.STOP:
            if self.speculative is utterance:
                self.speculative = None
            return StopCommand()
        if self.carry_over:
            utterance.carried_in = self.carry_over
            text = f"{self.carry_over} {text}".strip()
            self.carry_over = ""
        talking_again = self.utterance is not None and not self._tentative
        more = any(not u.interjection and not u.reheard for u in self.finalizing)
        if utterance.withdrawn or talking_again or more:
            self.carry_over = text
            return CarryOver(text)
        if not text:
            if self.speculative is utterance:
                self.speculative = None
            return Silence()
        return Answer(text, utterance.held)

    def on_final_failed(self, utterance: Utterance) -> None:
        self._settled(utterance)
        if self.speculative is utterance:
            self.speculative = None
        self._gives_no_words(utterance)

    def _rehearable(self, utterance: Utterance) -> bool:
        """A speculative utterance the user went on from is heard again with what follows."""
        seconds = len(utterance.frames) * FRAME_SECONDS
        return (
            self._rehears_audio()
            and not utterance.interjection
            and 0 < seconds <= REHEAR_MAX_SECONDS
        )

    def _gives_no_words(self, utterance: Utterance) -> None:
        """``utterance`` was dropped, or its transcript failed or was not words to answer: the
        earlier utterance it heard again (if any) carries over as its own words after all."""
        earlier, utterance.opened_by = utterance.opened_by, None
        if earlier is None:
            return
        earlier.reheard = False
        if earlier.transcript:  # when its final comes later, it carries over as any would
            self.carry_over = f"{self.carry_over} {earlier.transcript}".strip()

    def withdraw_reply(self, turn_id: int, user_text: str) -> str:
        """The reply to ``turn_id`` (to ``user_text``) was withdrawn before it was heard: its
        question opens the next turn. Returns the words that carry over: ``user_text``, or,
        when the next utterance hears that turn's audio again, only what it had carried in."""
        # A withdrawal comes with the resume that began the utterance hearing it again.
        reheard = self.utterance.opened_by if self.utterance is not None else None
        if reheard is not None and reheard.turn_id == turn_id:
            self.carry_over = reheard.carried_in
        else:
            self.carry_over = user_text
        return self.carry_over

    def forget_carry_over(self) -> None:
        self.carry_over = ""

    def preview_text(self, text: str) -> str:
        """What a preview of ``text`` would be answered as: after the words carried over
        (which stay for the final)."""
        return f"{self.carry_over} {text}".strip()

    def with_carry_over(self, text: str) -> str:
        """``text`` after the words carried over (which are used up)."""
        carried, self.carry_over = self.carry_over, ""
        return f"{carried} {text}".strip()

    # -------------------------------------------------------------------------------- internals

    def _begin(
        self,
        event: TurnEvent,
        *,
        explicit: bool,
        preroll: list[AudioFrame],
        ignore_reply: int | None = None,
    ) -> list[Decision]:
        if self.utterance is not None:
            return []
        reply = self._reply_turn()
        talking = reply is not None and reply != ignore_reply
        if talking and not explicit and not self.settings.interruption.enabled:
            return []
        own = "" if explicit else self._own_speech()
        audible = bool(own.strip())  # the assistant is, or just was, heard in the room
        suspect = audible and self.echo_uncertain
        just_known = self._now() - self._echo_known_at < ECHO_WORDS_GRACE
        timeline = Timeline(self.allocate_turn_id(), now=self._now)
        timeline.mark("speech_start", event.at)
        self.utterance = Utterance(
            timeline.turn_id,
            timeline,
            last_speech_at=event.detected_at,
            preroll=list(preroll),
            over_reply=talking or audible,
            echo_suspect=suspect,
            echo_words=audible and (self.echo_uncertain or just_known),
            own=own,
        )
        self._tentative = (talking or audible) and not explicit
        out: list[Decision] = [Begin(self.utterance, prefill=not talking)]
        if talking and explicit:
            out.append(ConfirmBargeIn())
        elif talking and not suspect:
            out.append(TentativeBargeIn())
        return out

    def _held_key(self, paused: bool) -> list[Decision]:
        """A pause (or speech after one) while the talk key is held."""
        utterance = self.utterance
        if utterance is None or self._tentative:
            return []
        utterance.quiet_since_preview = paused
        return [Preview(utterance) if paused else DropPreview(utterance)]

    def _classify(self, text: str) -> Interjection:
        return classify_interjection(text, self.settings.language)

    def _classify_heard(self, utterance: Utterance, text: str) -> Interjection:
        """``_classify``, but speech heard while the assistant could be heard is judged by the
        words the assistant did not say (a leak of its echo is not a turn)."""
        if not utterance.own:
            return self._classify(text)
        said = self._own_speech()
        if len(said) > len(utterance.own):  # the reply went on: more of it may come back
            utterance.own = said
        foreign = not_said(text, utterance.own)
        kind = self._classify(foreign)
        few = len(words_of(foreign)) < MIN_FOREIGN_WORDS
        if kind is Interjection.WORDS and utterance.echo_words:
            if few or only_sign_offs(foreign, self.settings.language):
                # One stray word may be the echo misheard; "Thank you." is what a recognizer
                # makes of a muffled echo with no words in it.
                return Interjection.NOTHING
        return kind

    def _interjection_ended(self, at: float, *, held: bool) -> Decision:
        """The speech over the assistant stopped before its words were known."""
        utterance = self.utterance
        assert utterance is not None
        self._tentative = False
        utterance.interjection = True
        self._end(at, held=held)
        resume = self._classify_heard(utterance, utterance.partial) in (
            Interjection.NOTHING,
            Interjection.BACKCHANNEL,
        )
        return JudgeInterjection(utterance, resume=resume)

    def _judge_interjection(self, utterance: Utterance, text: str) -> FinalOutcome:
        kind = self._classify_heard(utterance, text)
        still_open = utterance.withdrawn or self.utterance is not None
        if self.speculative is utterance and not (kind is Interjection.WORDS and not still_open):
            self.speculative = None
        if kind is Interjection.STOP:
            return StopCommand()
        if kind is not Interjection.WORDS:
            return Dismiss(kind)
        utterance.words_used = True
        if still_open:
            # The user is still talking: these words open the next utterance's transcript.
            self.carry_over = f"{self.carry_over} {text}".strip()
            return CarryOver(self.carry_over)
        # Held while the pause may still end the turn: the end releases it, a resume withdraws
        # it (it stays the speculative utterance until then).
        return Answer(text, held=utterance.held, barge_in=True)

    def _false_interruption(self) -> list[Decision]:
        self.utterance = None
        self._tentative = False
        return [FalseInterruption(self.settings.interruption.resume_timeout_ms / 1000.0)]

    def _end(self, at: float, *, held: bool) -> Utterance:
        utterance = self.utterance
        assert utterance is not None
        self.utterance = None
        utterance.held = held
        utterance.timeline.mark("speech_end", at)
        self.finalizing.append(utterance)
        return utterance

    def _commit_open(self, at: float) -> list[Decision]:
        return [Commit(self._end(at, held=False), speculative=False)]

    def _confirm_speculative(self) -> Decision:
        utterance = self.speculative
        assert utterance is not None
        self.speculative = None
        utterance.held = False
        speech_end = utterance.timeline.marks.get(Mark.SPEECH_END)
        if speech_end is not None:
            utterance.timeline.notes["endpoint_ms"] = round((self._now() - speech_end) * 1e3)
        return Commit(utterance, speculative=True)

    def _settled(self, utterance: Utterance) -> None:
        if utterance in self.finalizing:
            self.finalizing.remove(utterance)
