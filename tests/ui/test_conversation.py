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


def test_reply_withdrawn_before_audio_merges_into_the_next_turn(view):
    view.on_final(5, "Tell me about")
    view.on_final(6, "Tell me about the moon")
    assert view.user_bubble(5) is None
    assert user(view, 6).plain == "Tell me about the moon"


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
