"""The conversation view: live partials that settle, spoken vs unspoken text, interruptions."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from assistant.history import TurnRecord
from tests.ui.helpers import SEEDED, reply, user
from ui import theme
from ui.conversation import ConversationView, render_live, split_heard

pytestmark = pytest.mark.gui


@pytest.fixture
def view(qtbot):
    v = ConversationView()
    qtbot.addWidget(v)
    v.resize(700, 500)
    v.show()
    return v


def test_partials_render_live_and_settle_on_final(view):
    view.on_partial(4, "What is")
    bubble = view.user_bubble(4)
    assert bubble is not None and bubble.partial
    assert "What is" in bubble.html and "<i>" in bubble.html
    view.on_partial(4, "What is a good")
    assert view.user_bubble(4) is bubble  # the same bubble grows
    assert "What is a good" in bubble.html

    view.on_final(4, "What is a good name for a cat?")
    assert not bubble.partial
    assert bubble.plain == "What is a good name for a cat?"
    assert "<i>" not in bubble.html
    # The assistant's bubble waits for the answer.
    assert view.assistant_bubble(4) is not None


def test_empty_final_removes_the_bubble(view):
    view.on_partial(2, "uh")
    view.on_final(2, "")
    assert view.user_bubble(2) is None
    assert 2 not in view.turn_ids()


def test_spoken_text_is_full_colour_and_the_rest_dimmed(view):
    view.on_final(1, "Hi")
    generated = "Hello there. How can I help you today?"
    view.on_assistant_text(1, "Hello there.", generated)
    html = reply(view, 1).html
    dimmed = f'<span style="color:{theme.UNSPOKEN_HTML}">'
    assert html.startswith("Hello there.")
    assert f"{dimmed} How can I help you today?</span>" in html


def test_split_heard_matches_words_even_when_the_spoken_text_was_cleaned():
    generated = "Sure! **Tea** is best at 80°C, then steep for 3 minutes."
    heard, rest = split_heard("Sure! Tea is best at", generated)
    assert heard == "Sure! **Tea** is best at"
    assert rest == " 80°C, then steep for 3 minutes."
    assert split_heard("", "abc") == ("", "abc")
    assert render_live("", "").endswith("…</span>")


def test_interrupted_reply_is_cut_where_the_user_cut_in(view):
    record = SEEDED[2]
    view.on_final(record.turn_id, record.user_text)
    view.on_assistant_text(record.turn_id, "Octopuses have three hearts", record.generated_text)
    view.on_turn_finished(record)
    bubble = view.assistant_bubble(record.turn_id)
    html = bubble.html
    heard_end = html.index("blue blood,")
    marker = html.index("— interrupted")
    struck = html.index("line-through")
    assert heard_end < marker < struck
    assert "while they swim" in html[struck:]  # the unheard rest, struck through
    assert bubble.plain == record.assistant_text
    assert "[interrupted]" in view.plain_text()


def test_withdrawn_reply_hands_its_words_to_the_next_turn(view):
    view.on_final(5, "Tell me about")
    assert view.assistant_bubble(5) is not None  # waiting for the answer
    view.on_withdrawn(5, "Tell me about")
    # The unheard reply goes; the words stay where they were until the next turn takes them.
    assert view.assistant_bubble(5) is None
    assert user(view, 5).plain == "Tell me about"
    view.on_assistant_text(5, "", "The")  # a late piece of the withdrawn reply
    assert view.assistant_bubble(5) is None

    view.on_partial(6, "the moon")
    assert view.user_bubble(5) is None and view.turn_ids() == [6]
    live = user(view, 6)
    assert live.partial and live.plain == "Tell me about the moon"
    assert live.html.startswith("Tell me about <i>")  # carried words settled, new ones live

    view.on_final(6, "Tell me about the moon")
    assert view.turn_ids() == [6]
    assert user(view, 6).plain == "Tell me about the moon" and not user(view, 6).partial
    assert view.plain_text() == "You: Tell me about the moon"


def test_withdrawal_reported_after_the_next_partial_still_merges(view):
    view.on_partial(7, "Book a table")
    view.on_partial(8, "for two")
    view.on_withdrawn(7, "Book a table")
    assert view.turn_ids() == [8]
    assert user(view, 8).plain == "Book a table for two"
    view.on_final(8, "Book a table for two people tonight.")
    assert view.turn_ids() == [8]


def test_only_the_withdrawal_event_merges_turns(view):
    # A new question that happens to start like an unanswered one is a turn of its own.
    view.on_final(5, "Tell me about")
    view.on_final(6, "Tell me about the moon")
    assert view.turn_ids() == [5, 6]
    assert user(view, 5).plain == "Tell me about"
    # A withdrawal with no words leaves nothing behind.
    view.on_partial(7, "uh")
    view.on_withdrawn(7, "")
    view.on_final(8, "Hello")
    assert view.turn_ids() == [5, 6, 8]


def test_empty_conversation_hint_follows_the_turn_mode(view):
    assert "Hold <b>Space</b>" in view.hint_text
    view.set_turn_mode("vad")
    assert view.hint_text.startswith("Just start speaking — Parley listens and answers")
    assert "Hold" not in view.hint_text
    view.set_hotkey_name("F8")  # the key matters only for push-to-talk
    assert "F8" not in view.hint_text
    view.set_turn_mode("ptt")
    assert "Hold <b>F8</b>" in view.hint_text


def test_history_reloads_with_timings_and_text_is_selectable(view):
    view.load_turns(SEEDED)
    assert view.turn_ids() == [1, 2, 3]
    assert reply(view, 2).meta.text() == "913 ms voice-to-voice"
    flags = user(view, 1).label.textInteractionFlags()
    assert flags & Qt.TextInteractionFlag.TextSelectableByMouse
    text = view.plain_text()
    assert text.startswith("You: What's the weather usually like in Lisbon in October?")
    view.clear()
    assert view.turn_ids() == []


def test_turn_error_is_shown_in_the_bubble(view):
    record = TurnRecord(3, "Hello", "", error="The language model is unreachable.")
    view.on_final(3, "Hello")
    view.on_turn_finished(record)
    assert "unreachable" in reply(view, 3).html
