"""The history as a list of conversations: titles, search, rename, delete and restore, reopen,
and exports in Markdown and JSON (with the timelines)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from assistant import history_export
from assistant.history import (
    TITLE_LENGTH,
    UNTITLED,
    HistoryStore,
    ToolRecord,
    TurnRecord,
    default_title,
)


def _turn(i: int, user: str, answer: str = "Sure.", **extra) -> TurnRecord:
    return TurnRecord(turn_id=i, user_text=user, assistant_text=answer, **extra)


def _store_with(tmp_path: Path, *conversations: list[TurnRecord]) -> tuple[HistoryStore, list]:
    store = HistoryStore(tmp_path)
    made = []
    for n, turns in enumerate(conversations):
        conversation = store.new()
        for turn in turns:
            conversation.append(turn)
        # Distinct modification times, oldest first, whatever the file system's resolution.
        stamp = time.time() - 100 + n
        os.utime(conversation.path, (stamp, stamp))
        made.append(conversation)
    return store, made


def test_titles_come_from_the_first_question_and_are_shortened():
    assert default_title([]) == UNTITLED
    assert default_title([_turn(1, "  "), _turn(2, "Where is\nLisbon?")]) == "Where is Lisbon?"
    long = default_title([_turn(1, "Tell me everything about the history of the Roman empire")])
    assert long.endswith("…") and len(long) <= TITLE_LENGTH
    assert long.startswith("Tell me everything about the history of the")


def test_summaries_list_the_newest_first_and_skip_empty_ones(tmp_path: Path):
    store, (old, empty, new) = _store_with(
        tmp_path,
        [_turn(1, "What is the capital of Peru?", "Lima.")],
        [],
        [_turn(1, "Name a cat"), _turn(2, "Another one")],
    )
    found = store.summaries()
    assert [s.id for s in found] == [new.id, old.id]
    assert found[0].title == "Name a cat" and found[0].turns == 2 and not found[0].titled
    assert found[1].matches("peru lima") and not found[1].matches("peru cat")
    assert store.summary(empty.id) is not None and store.summary(empty.id).turns == 0


def test_rename_delete_restore_survive_a_new_store(tmp_path: Path):
    store, (first, second) = _store_with(tmp_path, [_turn(1, "One")], [_turn(1, "Two")])
    store.rename(first.id, "  My   trip  ")
    again = HistoryStore(tmp_path)
    assert again.summary(first.id).title == "My trip" and again.summary(first.id).titled
    assert again.summaries()[1].matches("trip")  # the title is searchable

    where = again.delete(first.id)
    assert where.exists() and not first.path.exists()
    assert [s.id for s in HistoryStore(tmp_path).summaries()] == [second.id]
    with pytest.raises(FileNotFoundError):
        again.delete(first.id)
    with pytest.raises(FileNotFoundError):
        again.existing_summary(first.id)

    HistoryStore(tmp_path).restore(first.id)
    restored = HistoryStore(tmp_path).existing_summary(first.id)
    assert restored.title == "My trip"  # the title came back too
    assert [t.user_text for t in HistoryStore(tmp_path).load(first.path)[0].turns] == ["One"]

    again.rename(first.id, "")
    assert HistoryStore(tmp_path).summary(first.id).title == "One"
    with pytest.raises(FileNotFoundError):
        again.rename("20990101-000000-abcdef", "nope")
    with pytest.raises(ValueError):
        again.path_of("../escape")


def test_deleted_conversations_are_purged_only_when_old(tmp_path: Path):
    store, (a, b) = _store_with(tmp_path, [_turn(1, "A")], [_turn(1, "B")])
    store.delete(a.id)
    store.delete(b.id)
    now = time.time()
    old = tmp_path / "deleted" / a.path.name
    os.utime(old, (now - 40 * 86400, now - 40 * 86400))
    assert store.purge_deleted(30 * 86400, now=now) == 1
    assert not old.exists() and (tmp_path / "deleted" / b.path.name).exists()


def test_opening_a_conversation_makes_it_the_one_to_come_back_to(tmp_path: Path):
    store, (first, second) = _store_with(tmp_path, [_turn(1, "One")], [_turn(1, "Two")])
    assert store.latest()[0].id == second.id
    reopened, report = store.open(first.id)
    assert [t.user_text for t in reopened.turns] == ["One"] and report.notice is None
    assert HistoryStore(tmp_path).latest()[0].id == first.id
    with pytest.raises(FileNotFoundError):
        store.open("20990101-000000-abcdef")


def test_markdown_and_json_exports(tmp_path: Path):
    timeline = {
        "marks_ms": {"speech_end": 0.0, "playback_start": 742.0},
        "voice_to_voice_ms": 742.0,
        "stages_ms": {"voice_to_voice": 742.0},
        "over_budget": [],
    }
    typed = {**timeline, "notes": {"input": "typed"}}
    turns = [
        _turn(7, "What is 2+2?", "It is 4.", timeline=timeline,
              tool_calls=[ToolRecord("c1", "calculate", '{"expression":"2+2"}', "4")]),
        _turn(8, "Tell me a story", "Once upon", interrupted=True,
              generated_text="Once upon a time", timeline=typed),
    ]  # fmt: skip
    markdown = history_export.to_markdown("Sums", turns, created=0.0)
    assert markdown.startswith("# Sums\n")
    assert "## 1" in markdown and "## 2" in markdown and "## 7" not in markdown
    assert "**You:** What is 2+2?" in markdown and "**Parley:** It is 4." in markdown
    assert "calculate" in markdown and "*(interrupted)*" in markdown
    assert "742 ms voice-to-voice" in markdown and "742 ms reply time" in markdown

    path = tmp_path / "out.json"
    history_export.write(path, "abc", "Sums", turns, created=0.0)
    data = json.loads(path.read_text())
    assert data["format"] == "parley-conversation" and data["title"] == "Sums"
    assert [t["number"] for t in data["turns"]] == [1, 2]
    assert data["turns"][0]["timeline"]["voice_to_voice_ms"] == 742.0
    assert data["turns"][0]["tool_calls"][0]["result"] == "4"
    assert data["turns"][1]["interrupted"] is True
    with pytest.raises(ValueError, match=r"\.md"):
        history_export.write(tmp_path / "out.txt", "abc", "Sums", turns, created=0.0)
