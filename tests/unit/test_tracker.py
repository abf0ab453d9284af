"""The user-turn tracker alone: turn events in, typed decisions out; and the state function."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from assistant.config import Settings
from assistant.events import State
from assistant.session import derive_state
from assistant.session.tracker import (
    ECHO_WORDS_GRACE,
    REHEAR_MAX_SECONDS,
    Answer,
    Begin,
    CarryOver,
    Commit,
    ConfirmBargeIn,
    Dismiss,
    JudgeInterjection,
    Phase,
    Silence,
    Speculate,
    StopCommand,
    TentativeBargeIn,
    UserTurnTracker,
    Withdraw,
)
from assistant.turns import TurnEvent
from assistant.turns.words import Interjection
from assistant.types import FRAME_SAMPLES, FRAME_SECONDS, AudioFrame


class World:
    """The tracker's surroundings: a clock and the reply in flight."""

    def __init__(self) -> None:
        self.now = 10.0
        self.reply: int | None = None
        #: What the assistant said that may still come back through the microphone.
        self.said = ""
        self.settings = Settings()
        #: The recognizer hears audio again cheaply (as the local one does).
        self.rehears = True
        self.tracker = UserTurnTracker(
            self.settings,
            next_turn_id=1,
            reply_turn=lambda: self.reply,
            now=lambda: self.now,
            own_speech=lambda: self.said,
            rehears_audio=lambda: self.rehears,
        )

    def event(self, kind: str, at: float, *, explicit: bool = False, preroll=()) -> list:
        self.now = max(self.now, at)
        event = TurnEvent(kind, at, at)  # type: ignore[arg-type]
        return self.tracker.on_turn_event(event, explicit=explicit, preroll=list(preroll))


def frame(t: float) -> AudioFrame:
    return AudioFrame(np.zeros(FRAME_SAMPLES, dtype=np.int16), t, t)


def test_speech_while_idle_begins_a_turn_and_allows_prefill() -> None:
    w = World()
    (begin,) = w.event("start", 10.0)
    assert isinstance(begin, Begin) and begin.prefill
    assert w.tracker.phase is Phase.SPEAKING
    assert begin.utterance.timeline.marks["speech_start"] == 10.0
    (commit,) = w.event("end", 11.0)
    assert commit == Commit(begin.utterance, speculative=False)
    assert w.tracker.phase is Phase.IDLE and w.tracker.awaiting_answer


def test_hands_free_speech_over_a_reply_is_tentative_until_it_lasts() -> None:
    w = World()
    w.reply = 7
    begin, pause = w.event("start", 10.0)
    assert isinstance(begin, Begin) and not begin.prefill
    assert isinstance(pause, TentativeBargeIn)
    assert w.tracker.phase is Phase.TENTATIVE
    lasts = w.tracker.settings.interruption.min_duration_ms / 1000
    w.tracker.on_speech(10.0 + lasts - 0.2)
    assert w.tracker.check_tentative() == []  # shorter than a real interruption
    w.tracker.on_speech(10.0 + lasts)
    assert w.tracker.check_tentative() == [ConfirmBargeIn()]
    assert w.tracker.phase is Phase.SPEAKING


def test_words_confirm_a_barge_in_at_once_but_a_backchannel_does_not() -> None:
    w = World()
    w.reply = 7
    w.event("start", 10.0)
    assert w.tracker.on_partial("mhm") == []
    assert w.tracker.on_partial("mhm wait") == [ConfirmBargeIn()]


def test_speech_over_a_reply_that_pauses_is_judged_by_its_words() -> None:
    w = World()
    w.reply = 7
    (begin, _) = w.event("start", 10.0)
    u = begin.utterance
    (judge,) = w.event("pause", 10.3)
    assert judge == JudgeInterjection(u, resume=True)  # nothing says words: play on meanwhile
    assert w.tracker.phase is Phase.IDLE and not w.tracker.awaiting_answer
    assert w.tracker.on_final(u, "Mm-hmm.") == Dismiss(Interjection.BACKCHANNEL)
    assert w.tracker.speculative is None


def test_interjection_outcomes() -> None:
    for said, expected in [
        ("", Dismiss(Interjection.NOTHING)),
        ("Stop!", StopCommand()),
        ("Why is that?", Answer("Why is that?", held=False, barge_in=True)),
    ]:
        w = World()
        w.reply = 7
        (begin, _) = w.event("start", 10.0)
        w.event("end", 10.3)
        assert w.tracker.on_final(begin.utterance, said) == expected


def test_words_known_only_at_the_pause_are_answered_once_the_turn_ends() -> None:
    # A slow recognizer: the speech over the reply paused before any partial came, and its
    # final transcript (real words) arrived before the end of the turn was confirmed.
    w = World()
    w.reply = 7
    (begin, _) = w.event("start", 10.0)
    (judge,) = w.event("pause", 10.8)
    assert isinstance(judge, JudgeInterjection)
    answer = w.tracker.on_final(begin.utterance, "What about the weather?")
    assert answer == Answer("What about the weather?", held=True, barge_in=True)
    # The held reply is released when the turn ends...
    assert w.event("end", 11.4) == [Commit(begin.utterance, speculative=True)]
    # ...or withdrawn if the user goes on instead.
    w2 = World()
    w2.reply = 7
    (begin2, _) = w2.event("start", 10.0)
    w2.event("pause", 10.8)
    w2.tracker.on_final(begin2.utterance, "What about the weather?")
    withdraw, *_ = w2.event("resume", 11.0)
    assert withdraw == Withdraw(begin2.utterance)


def test_words_in_the_partial_keep_the_reply_paused_at_the_pause() -> None:
    w = World()
    w.reply = 7
    (begin, _) = w.event("start", 10.0)
    begin.utterance.partial = "Uh-uh."
    (judge,) = w.event("pause", 10.3)
    assert judge.resume
    _, begin2, _ = w.event("resume", 10.5)
    assert w.tracker.phase is Phase.TENTATIVE
    begin2.utterance.partial = "why"
    (judge2,) = w.event("pause", 11.0)
    assert not judge2.resume


def _sound(t: float, level: int) -> AudioFrame:
    return AudioFrame(np.full(FRAME_SAMPLES, level, dtype=np.int16), t, t)


@pytest.mark.parametrize("final_first", [False, True], ids=["final-later", "final-first"])
def test_going_on_after_an_interjection_hears_it_again_with_what_follows(
    final_first: bool,
) -> None:
    # "Un- (a gap inside the word) -less you ...": the first syllable over the reply pauses
    # alone. Transcribed alone it is nothing or other words; heard again in front of the rest
    # it is the start of the sentence.
    w = World()
    w.reply = 7
    (begin, _) = w.event("start", 10.0)
    fragment = begin.utterance
    fragment.frames = [_sound(0, 1), _sound(0, 2), _sound(0, 3)]
    fragment.last_frame_t = 10.3
    (judge,) = w.event("pause", 10.3)
    assert judge == JudgeInterjection(fragment, resume=True)
    if final_first:  # the syllable's transcript came back empty before the user went on
        assert w.tracker.on_final(fragment, "") == Dismiss(Interjection.NOTHING)
    later = [_sound(10.2, 9), _sound(10.5, 4), _sound(10.6, 5)]
    *_, again, pause = w.event("resume", 10.6, preroll=later)
    assert isinstance(again, Begin) and isinstance(pause, TentativeBargeIn)
    heard = [int(f.pcm[0]) for f in again.utterance.preroll or []]
    assert heard == [1, 2, 3, 4, 5]  # the syllable, then only what it had not sent
    if not final_first:  # its own transcript is not used: the next utterance holds its audio
        assert w.tracker.on_final(fragment, "Let's see.") == CarryOver("")
        assert w.tracker.speculative is None
    w.event("end", 12.0)
    outcome = w.tracker.on_final(again.utterance, "Unless you want to stop?")
    assert outcome == Answer("Unless you want to stop?", held=False, barge_in=True)


def test_an_interjection_whose_words_were_answered_is_not_heard_again() -> None:
    w = World()
    w.reply = 7
    (begin, _) = w.event("start", 10.0)
    fragment = begin.utterance
    fragment.frames = [_sound(0, 1)]
    fragment.last_frame_t = 10.3
    w.event("pause", 10.3)
    w.tracker.on_final(fragment, "What about the weather?")  # answered, held
    _, again, _ = w.event("resume", 10.6, preroll=[_sound(10.5, 4)])
    assert [int(f.pcm[0]) for f in again.utterance.preroll or []] == [4]


def test_an_interjection_is_not_heard_again_after_its_speech_ended() -> None:
    w = World()
    w.reply = 7
    (begin, _) = w.event("start", 10.0)
    begin.utterance.frames = [_sound(0, 1)]
    w.event("pause", 10.3)
    w.event("end", 10.9)  # the noise is over; new speech is a new utterance
    (again, _) = w.event("start", 12.0, preroll=[_sound(11.9, 4)])
    assert [int(f.pcm[0]) for f in again.utterance.preroll or []] == [4]


def test_push_to_talk_over_a_reply_interrupts_at_once() -> None:
    w = World()
    w.reply = 7
    begin, confirm = w.event("start", 10.0, explicit=True)
    assert isinstance(begin, Begin) and confirm == ConfirmBargeIn()


def test_no_barge_in_when_interruptions_are_off() -> None:
    w = World()
    w.settings.interruption.enabled = False
    w.reply = 7
    assert w.event("start", 10.0) == []
    assert w.event("start", 10.0, explicit=True)  # the key still works


def test_pause_speculates_resume_withdraws_and_keeps_only_new_audio() -> None:
    w = World()
    (begin,) = w.event("start", 10.0)
    first = begin.utterance
    first.last_frame_t = 11.0
    (spec,) = w.event("pause", 11.0)
    assert spec == Speculate(first) and first.held
    assert w.tracker.phase is Phase.PAUSED and not w.tracker.awaiting_answer
    withdraw, again = w.event("resume", 11.4, preroll=[frame(10.9), frame(11.2), frame(11.3)])
    assert withdraw == Withdraw(first) and first.withdrawn
    assert isinstance(again, Begin) and again.utterance.turn_id == first.turn_id + 1
    assert [f.t for f in again.utterance.preroll or []] == [11.2, 11.3]


def paused_after(w: World, start: float, seconds: float):
    """The user talked from ``start`` (their first frame sent to STT then) for ``seconds``, and
    paused: the utterance, now speculative."""
    (begin,) = w.event("start", start + 0.3)
    utterance = begin.utterance
    n = round(seconds / FRAME_SECONDS)
    utterance.frames.extend(frame(start + i * FRAME_SECONDS) for i in range(n))
    utterance.last_frame_t = utterance.frames[-1].t
    w.event("pause", start + seconds)
    return utterance


def test_going_on_after_a_pause_hears_the_sentence_again_whole() -> None:
    w = World()
    w.tracker.carry_over = "Hello."  # from an earlier withdrawn turn
    first = paused_after(w, 9.7, 1.3)
    assert w.tracker.on_final(first, "Book a table") == Answer("Hello. Book a table", held=True)
    _, again = w.event("resume", 11.4, preroll=[frame(10.9), frame(11.2), frame(11.3)])
    # The pause's sentence opens the new utterance, followed by the audio after it.
    times = [f.t for f in again.utterance.preroll or []]
    assert len(times) == len(first.frames) + 2 and times[0] == pytest.approx(9.7)
    assert times[-2:] == [11.2, 11.3] and times == sorted(times)
    # Its held reply is withdrawn: only what it had carried in stays text.
    assert w.tracker.withdraw_reply(first.turn_id, "Hello. Book a table") == "Hello."
    (commit,) = w.event("end", 12.5)
    assert w.tracker.on_final(commit.utterance, "Book a table for two.") == Answer(
        "Hello. Book a table for two.", held=False
    )


def test_a_transcript_that_comes_after_the_user_went_on_is_not_used_twice() -> None:
    w = World()
    first = paused_after(w, 9.7, 1.3)
    w.event("resume", 11.4)
    assert w.tracker.on_final(first, "Book a table") == CarryOver("")  # heard again instead
    (commit,) = w.event("end", 12.5)
    assert w.tracker.on_final(commit.utterance, "Book a table for two.") == Answer(
        "Book a table for two.", held=False
    )


def test_a_long_stretch_before_the_pause_carries_over_as_its_words() -> None:
    w = World()
    first = paused_after(w, 10.0, REHEAR_MAX_SECONDS + 1.0)
    _, again = w.event("resume", 31.4, preroll=[frame(31.2)])
    assert [f.t for f in again.utterance.preroll or []] == [31.2]
    assert w.tracker.on_final(first, "A long story") == CarryOver("A long story")
    assert w.tracker.withdraw_reply(first.turn_id, "A long story") == "A long story"


def test_a_streaming_recognizer_gets_no_audio_twice_the_words_carry_over() -> None:
    w = World()
    w.rehears = False  # it would take the audio again at the pace of speech
    first = paused_after(w, 9.7, 1.3)
    _, again = w.event("resume", 11.4, preroll=[frame(11.2)])
    assert [f.t for f in again.utterance.preroll or []] == [11.2]
    assert w.tracker.on_final(first, "Book a table") == CarryOver("Book a table")


@pytest.mark.parametrize("how", ["dropped", "failed", "silent", "final-first-then-failed"])
def test_when_the_sentence_heard_again_gives_no_words_the_first_part_carries_over(
    how: str,
) -> None:
    w = World()
    first = paused_after(w, 9.7, 1.3)
    if how == "final-first-then-failed":
        w.tracker.on_final(first, "Book a table")  # its held reply is then withdrawn:
    _, again = w.event("resume", 11.4, preroll=[frame(11.2)])
    if how == "final-first-then-failed":
        assert w.tracker.withdraw_reply(first.turn_id, "Book a table") == ""
    second = again.utterance
    assert second.opened_by is first
    if how == "dropped":  # the recognizer's stream broke while the user talked
        w.tracker.drop_open()
    else:
        (commit,) = w.event("end", 12.5)
        if how == "silent":
            assert w.tracker.on_final(commit.utterance, "") == Silence()
        else:
            w.tracker.on_final_failed(commit.utterance)
    if how == "final-first-then-failed":
        assert w.tracker.carry_over == "Book a table"
    else:  # its own final comes after all, and is not thrown away
        assert w.tracker.on_final(first, "Book a table") == CarryOver("Book a table")
    w.event("start", 14.0)  # the user says the rest
    (end,) = w.event("end", 15.0)
    assert w.tracker.on_final(end.utterance, "for two.") == Answer(
        "Book a table for two.", held=False
    )


def test_the_withdrawn_reply_does_not_count_as_the_assistant_talking() -> None:
    w = World()
    (begin,) = w.event("start", 10.0)
    w.event("pause", 11.0)
    w.reply = begin.utterance.turn_id  # its reply is being prepared
    _, again = w.event("resume", 11.4)
    assert isinstance(again, Begin) and w.tracker.phase is Phase.SPEAKING


def test_end_after_a_pause_commits_the_speculation_and_notes_the_endpoint() -> None:
    w = World()
    (begin,) = w.event("start", 10.0)
    w.event("pause", 11.0)
    w.now = 11.6
    (commit,) = w.event("end", 11.0)
    assert commit == Commit(begin.utterance, speculative=True)
    assert not begin.utterance.held
    assert begin.utterance.timeline.notes["endpoint_ms"] == 600


def test_finals_answer_carry_over_or_stay_silent() -> None:
    w = World()
    (b1,) = w.event("start", 10.0)
    w.event("pause", 11.0)
    w.event("resume", 11.4)  # the user went on: the first final carries over
    assert w.tracker.on_final(b1.utterance, "Book a table") == CarryOver("Book a table")
    (commit,) = w.event("end", 12.5)
    outcome = w.tracker.on_final(commit.utterance, " for two. ")
    assert outcome == Answer("Book a table for two.", held=False)
    (b3,) = w.event("start", 13.0)
    w.event("end", 13.1)
    assert w.tracker.on_final(b3.utterance, "") == Silence()


def test_engine_endpointing_commits_with_its_transcript() -> None:
    w = World()
    w.event("start", 10.0)
    (commit,) = w.tracker.engine_ended_turn("hello there")
    assert isinstance(commit, Commit) and commit.transcript == "hello there"


@pytest.mark.parametrize(
    ("listening", "phase", "reply", "finishing", "awaiting", "expected"),
    [
        (True, Phase.IDLE, None, [], False, State.LISTENING),
        (False, Phase.IDLE, None, [], False, State.IDLE),
        (True, Phase.SPEAKING, None, [], False, State.USER_SPEAKING),
        (True, Phase.PAUSED, "held", [], False, State.USER_SPEAKING),
        (True, Phase.IDLE, None, [], True, State.THINKING),
        (True, Phase.IDLE, "preparing", [], False, State.THINKING),
        (True, Phase.IDLE, "held", [], False, State.LISTENING),
        (True, Phase.IDLE, "playing", [], False, State.SPEAKING),
        (True, Phase.TENTATIVE, "playing", [], False, State.SPEAKING),
        (True, Phase.SPEAKING, None, ["interrupted"], False, State.INTERRUPTED),
        (True, Phase.IDLE, None, ["played"], False, State.SPEAKING),
    ],
)
def test_state_is_derived_in_one_place(listening, phase, reply, finishing, awaiting, expected):
    replies = {
        "held": SimpleNamespace(playing=False, held=True, interrupted=False),
        "preparing": SimpleNamespace(playing=False, held=False, interrupted=False),
        "playing": SimpleNamespace(playing=True, held=False, interrupted=False),
        "interrupted": SimpleNamespace(playing=True, held=False, interrupted=True),
        "played": SimpleNamespace(playing=True, held=False, interrupted=False),
    }
    state = derive_state(
        listening=listening,
        phase=phase,
        reply=replies.get(reply),  # type: ignore[arg-type]
        finishing=[replies[f] for f in finishing],  # type: ignore[misc]
        awaiting_answer=awaiting,
    )
    assert state is expected


# ------------------------------------------------------------------------- echo not yet known

REPLY_TEXT = "The capital of France is Paris, a city of museums and cafes along the Seine."


def echo_world() -> World:
    w = World()
    w.reply = 7
    w.said = REPLY_TEXT
    w.tracker.echo_uncertain = True
    return w


def test_while_echo_is_uncertain_speech_over_a_reply_does_not_pause_it() -> None:
    w = echo_world()
    (begin,) = w.event("start", 10.0)  # no TentativeBargeIn: it may be the assistant's voice
    assert isinstance(begin, Begin) and begin.utterance.echo_suspect
    assert w.tracker.phase is Phase.TENTATIVE
    # It goes on for long, with the assistant's own words: still not an interruption.
    w.tracker.on_speech(12.0)
    assert w.tracker.check_tentative() == []
    assert w.tracker.on_partial("the capital of France is Paris a city") == []
    # Ending, it is judged by its final words: the assistant's own are an echo, not a turn.
    (judge,) = w.event("end", 12.2)
    assert judge == JudgeInterjection(begin.utterance, resume=True)
    assert w.tracker.on_final(begin.utterance, "of museums and cafes") == Dismiss(
        Interjection.NOTHING
    )


def test_while_echo_is_uncertain_words_the_assistant_did_not_say_interrupt() -> None:
    w = echo_world()
    w.event("start", 10.0)
    assert w.tracker.on_partial("Paris museums weather") == []  # one foreign word is not enough
    assert w.tracker.on_partial("Paris museums what about the weather") == [ConfirmBargeIn()]
    assert w.tracker.phase is Phase.SPEAKING


def test_while_echo_is_uncertain_a_recognizers_sign_off_is_not_the_users() -> None:
    # Whisper writes "Thank you." for a muffled echo with no words in it.
    w = echo_world()
    (begin,) = w.event("start", 10.0)
    assert w.tracker.on_partial("Thank you.") == []
    assert w.tracker.phase is Phase.TENTATIVE
    w.event("end", 11.0)
    assert w.tracker.on_final(begin.utterance, "Thank you.") == Dismiss(Interjection.NOTHING)
    # With more words it is the user's; once the echo has been known a while, thanks are too.
    w.event("start", 12.0)
    assert w.tracker.on_partial("Thank you, but what about Rome") == [ConfirmBargeIn()]
    w.event("end", 13.0)
    w.tracker.echo_uncertain = False
    w.event("start", 13.0 + ECHO_WORDS_GRACE)
    assert w.tracker.on_partial("Thank you.") == [ConfirmBargeIn()]


def test_just_after_the_echo_becomes_known_speech_pauses_the_reply_but_a_sign_off_is_no_turn():
    # A canceller that has just settled can still let the onset of a word through: the reply
    # pauses for it at once, as for the user, and Whisper writes "Thank you." for it.
    w = echo_world()
    w.now = 10.0
    w.tracker.echo_uncertain = False
    begin, pause = w.event("start", 10.04)
    assert isinstance(pause, TentativeBargeIn) and not begin.utterance.echo_suspect
    assert w.tracker.on_partial("Thank you.") == []  # not confirmed by it...
    (judge,) = w.event("end", 10.5)
    assert judge == JudgeInterjection(begin.utterance, resume=True)  # ...and resumed after
    assert w.tracker.on_final(begin.utterance, "Thank you.") == Dismiss(Interjection.NOTHING)
    # One stray word is not enough either; the user's real words are.
    (begin2, _) = w.event("start", 10.6)
    w.event("end", 10.9)
    assert w.tracker.on_final(begin2.utterance, "Why?") == Dismiss(Interjection.NOTHING)
    (begin3, _) = w.event("start", 10.95)
    assert w.tracker.on_partial("what about Rome") == [ConfirmBargeIn()]
    # Once the echo has been known for ECHO_WORDS_GRACE, thanks and one word are the user's.
    w.event("end", 11.0)
    w.tracker.on_final(begin3.utterance, "What about Rome?")
    w.reply = 8
    (begin4, _) = w.event("start", 10.0 + ECHO_WORDS_GRACE)
    w.event("end", 11.5)
    assert w.tracker.on_final(begin4.utterance, "Thank you.") == Answer(
        "Thank you.", held=False, barge_in=True
    )


def test_the_grace_after_the_echo_becomes_known_starts_again_each_time_it_does() -> None:
    w = echo_world()
    w.now = 10.0
    w.tracker.echo_uncertain = False
    w.now = 20.0
    w.tracker.echo_uncertain = False  # still known: not a new start
    (begin, _) = w.event("start", 20.1)
    assert not begin.utterance.echo_words
    w.event("end", 20.5)
    w.tracker.on_final(begin.utterance, "What about Rome?")
    w.reply = 8
    w.tracker.echo_uncertain = True  # the next reply checks the echo again...
    w.now = 30.0
    w.tracker.echo_uncertain = False  # ...and knows it
    (begin2, _) = w.event("start", 30.2)
    assert begin2.utterance.echo_words and not begin2.utterance.echo_suspect


def test_while_echo_is_uncertain_a_stop_command_interrupts_alone() -> None:
    w = echo_world()
    w.event("start", 10.0)
    assert w.tracker.on_partial("stop") == [ConfirmBargeIn()]


def test_an_echo_suspect_that_ends_with_real_words_is_answered() -> None:
    w = echo_world()
    (begin,) = w.event("start", 10.0)
    w.event("end", 11.0)
    outcome = w.tracker.on_final(begin.utterance, "Paris, but what about Rome?")
    assert outcome == Answer("Paris, but what about Rome?", held=False, barge_in=True)


def test_the_echo_tail_of_a_reply_that_just_ended_is_suspect_too() -> None:
    w = echo_world()
    w.reply = None  # playback ended a moment ago; its echo may still be in the room
    (begin,) = w.event("start", 10.0)
    assert begin.utterance.echo_suspect and begin.prefill
    w.event("end", 10.6)
    assert w.tracker.on_final(begin.utterance, "along the Seine") == Dismiss(Interjection.NOTHING)
    # Once nothing the assistant said can come back, speech is a turn as usual.
    w.said = ""
    (begin2,) = w.event("start", 12.0)
    assert not begin2.utterance.echo_suspect and w.tracker.phase is Phase.SPEAKING


def test_once_echo_is_cancelled_speech_over_a_reply_pauses_it_as_before() -> None:
    w = echo_world()
    w.tracker.echo_uncertain = False
    begin, pause = w.event("start", 10.0)
    assert isinstance(pause, TentativeBargeIn) and not begin.utterance.echo_suspect


def test_the_talk_key_is_never_an_echo() -> None:
    w = echo_world()
    begin, confirm = w.event("start", 10.0, explicit=True)
    assert confirm == ConfirmBargeIn() and not begin.utterance.echo_suspect


def test_once_cancelled_a_leak_of_the_assistants_words_is_still_no_turn() -> None:
    w = echo_world()
    w.tracker.echo_uncertain = False
    w.reply = None  # just finished; a little of its echo leaks through
    (begin,) = w.event("start", 10.0)
    assert w.tracker.phase is Phase.TENTATIVE and not begin.utterance.echo_suspect
    w.tracker.on_speech(10.8)
    assert w.tracker.check_tentative() == []  # no reply to stop: its words decide
    w.event("end", 10.9)
    assert w.tracker.on_final(begin.utterance, "along the Seine.") == Dismiss(Interjection.NOTHING)
    # One word of the user's own is enough once the echo is cancelled.
    w.reply = 8
    (begin2, _) = w.event("start", 12.0)
    w.event("end", 12.4)
    assert w.tracker.on_final(begin2.utterance, "Why?") == Answer("Why?", held=False, barge_in=True)


def test_while_the_assistant_is_heard_only_words_stop_it_and_its_own_words_are_no_turn() -> None:
    w = echo_world()
    w.tracker.echo_uncertain = False
    begin, pause = w.event("start", 10.0)
    assert isinstance(pause, TentativeBargeIn)  # paused at once...
    w.tracker.on_speech(11.5)
    assert w.tracker.check_tentative() == []  # ...but its length alone does not stop the reply
    assert w.tracker.on_partial("a city of museums") == []
    assert w.tracker.on_partial("what about Rome") == [ConfirmBargeIn()]
    w.event("end", 11.6)
    assert w.tracker.on_final(begin.utterance, "What about Rome?") == Answer(
        "What about Rome?", held=False
    )
    (begin2, _) = w.event("start", 13.0)
    begin2.utterance.partial = ""
    w.tracker._tentative = False  # confirmed some other way; its final is still judged
    w.event("end", 13.5)
    assert w.tracker.on_final(begin2.utterance, "cafes along the Seine") == Dismiss(
        Interjection.NOTHING
    )
