"""The conversation list in the window: search, continue an old conversation, rename, delete with
undo, export; everything done is still so after Parley restarts."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QApplication

from assistant.app import Assistant
from assistant.history import HistoryStore, TurnRecord
from tests.ui.helpers import PATIENCE, finished_turns, run, show_window, started, until
from ui.main_window import MainWindow

pytestmark = pytest.mark.gui


def seed(data_dir, conversations: list[list[str]]) -> list[str]:
    """Past conversations with the given questions, oldest first; their ids."""
    store = HistoryStore(data_dir / "conversations")
    ids = []
    for n, questions in enumerate(conversations):
        conversation = store.new()
        for i, question in enumerate(questions, 1):
            conversation.append(TurnRecord(i, question, f"Answer to {question}", at=1000.0 + n))
        ids.append(conversation.id)
    # Distinct modification times, in order, whatever the file system's resolution.
    import os
    import time

    for n, conversation_id in enumerate(ids):
        stamp = time.time() - 100 + n
        os.utime(store.path_of(conversation_id), (stamp, stamp))
    return ids


def make(qtbot, assistants) -> tuple[Assistant, MainWindow]:
    assistant = assistants()
    return assistant, show_window(qtbot, assistant)


def press_enter(widget) -> None:
    QApplication.sendEvent(
        widget, QKeyEvent(QEvent.Type.KeyPress, Qt.Key.Key_Return, Qt.KeyboardModifier.NoModifier)
    )


def test_list_actions_persist_across_restarts(qtbot, qloop, assistants, tmp_path):
    trip, cats, soup = seed(
        tmp_path / "data",
        [["Plan a trip to Lisbon", "What about the weather?"], ["Name my cat"], ["Soup recipe"]],
    )
    assistant, window = make(qtbot, assistants)
    listing = window.conversations
    finished = finished_turns(assistant)
    markdown, data = tmp_path / "trip.md", tmp_path / "trip.json"

    async def first_run() -> None:
        await started(assistant)
        assert assistant.conversation_id == soup  # the latest is continued
        assert listing.ids() == [soup, cats, trip]
        assert listing.titles() == ["Soup recipe", "Name my cat", "Plan a trip to Lisbon"]
        assert listing.list.currentItem().font().bold()  # the current one stands out

        # Search by a word said in it.
        listing.search.setText("weather")
        assert listing.ids() == [trip]
        listing.search.setText("")

        # Continue an old conversation: its turns come back and a new turn joins them.
        listing.select(trip)
        press_enter(listing.list)
        assert assistant.conversation_id == trip
        assert window.conversation.plain_text().startswith("You: Plan a trip to Lisbon")
        assert assistant.submit_text("And the food?")
        await until(lambda: finished, what="the new turn")
        assert listing.ids()[0] == trip  # the most recently used comes first
        assert window.timeline.view.rows[-1][0] == 3  # numbered within this conversation

        # Rename inline (as F2 and typing do).
        listing.select(cats)
        listing.list.currentItem().setText("Cat names")
        assert listing.titles()[listing.ids().index(cats)] == "Cat names"

        # Delete with undo: the banner's Undo brings it back.
        listing.select(soup)
        listing.delete_action.trigger()
        assert soup not in listing.ids()
        undo = [b for b in window.banners.banners() if b.action_button is not None]
        assert undo and undo[-1].message == "Deleted “Soup recipe”."
        undo[-1].action_button.click()
        assert soup in listing.ids()

        # Delete for good (no undo), and export the continued one.
        listing.delete(cats)
        assert cats not in listing.ids()
        assert listing.export(markdown, trip) and listing.export(data, trip)
        await assistant.close()

    run(qloop, first_run(), 4 * PATIENCE)
    window.close()
    assert "**You:** And the food?" in markdown.read_text()
    turns = json.loads(data.read_text())["turns"]
    assert [t["user_text"] for t in turns][-1] == "And the food?"
    assert turns[-1]["timeline"]["notes"]["input"] == "typed"

    # Parley starts again: the same list, the same current conversation.
    again, window2 = make(qtbot, assistants)

    async def second_run() -> None:
        await again.start()
        assert again.conversation_id == trip
        assert window2.conversations.ids() == [trip, soup]
        assert window2.conversations.titles() == ["Plan a trip to Lisbon", "Soup recipe"]
        assert [t.user_text for t in again.conversation.turns][-1] == "And the food?"
        await again.close()

    run(qloop, second_run(), 4 * PATIENCE)


def test_deleting_the_current_conversation_starts_a_new_one_and_undo_reopens_it(
    qtbot, qloop, assistants, tmp_path
):
    (only,) = seed(tmp_path / "data", [["Keep me"]])
    assistant, window = make(qtbot, assistants)

    async def scenario() -> None:
        await assistant.start()
        assert assistant.conversation_id == only
        window.conversations.delete(only)
        assert assistant.conversation_id != only and assistant.conversation.turns == []
        assert window.conversation.turn_ids() == []
        banner = window.banners.banners()[-1]
        assert banner.action_button is not None
        banner.action_button.click()
        assert assistant.conversation_id == only
        assert window.conversation.plain_text().startswith("You: Keep me")
        await assistant.close()

    run(qloop, scenario(), 4 * PATIENCE)


def test_turn_numbers_start_at_one_in_each_conversation(qtbot, qloop, assistants, tmp_path):
    assistant, window = make(qtbot, assistants)
    finished = finished_turns(assistant)

    async def scenario() -> None:
        await started(assistant)
        for n, text in enumerate(("One", "Two"), 1):
            assistant.submit_text(text)
            await until(lambda n=n: len(finished) == n, what="a turn")
        assistant.new_conversation()
        assistant.submit_text("Three")
        await until(lambda: len(finished) == 3, what="a turn")
        await assistant.close()

    run(qloop, scenario(), 4 * PATIENCE)
    assert finished[-1].turn_id == 3  # ids keep growing (the player relies on it)...
    assert [n for n, _ in window.timeline.view.rows] == [1]  # ...the shown number does not
    assert "reply time" in window.conversation.assistant_bubble(3).meta.text()
