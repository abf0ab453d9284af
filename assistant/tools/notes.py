"""Notes the user can add to and ask about, kept beside the conversation history.

One JSON-lines file, one note a line, appended and fsync'd like the history: a crash loses at
most the note being written, and an unreadable line is skipped (and kept in the file).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from assistant.tools.registry import Safety, ToolRegistry, parameters

log = logging.getLogger(__name__)

#: How many notes ``find_notes`` returns at most.
MAX_FOUND = 8
_WORD = re.compile(r"\w+", re.UNICODE)
#: Words too common to search for.
_STOP = frozenset("a an the my me i to of about for on in and or what did note notes".split())


@dataclass(slots=True)
class Note:
    id: str
    text: str
    at: float


class NoteBook:
    def __init__(self, path: Path, *, wall: Callable[[], float] = time.time) -> None:
        self.path = path
        self.wall = wall
        self._lock = threading.Lock()

    def notes(self) -> list[Note]:
        """Every readable note, oldest first."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                out.append(Note(str(data["id"]), str(data["text"]), float(data.get("at", 0.0))))
            except (ValueError, KeyError, TypeError):
                log.warning("skipping an unreadable note in %s", self.path)
        return out

    def add(self, text: str) -> Note:
        text = " ".join(text.split())
        if not text:
            raise ValueError("the note is empty")
        note = Note(uuid.uuid4().hex[:8], text, self.wall())
        line = json.dumps(asdict(note), ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
        return note

    def find(self, query: str = "") -> list[Note]:
        """Notes sharing a word with ``query``, best match first; the latest ones without one."""
        notes = self.notes()
        wanted = {w for w in _WORD.findall(query.lower()) if w not in _STOP}
        if not wanted:
            return notes[::-1][:MAX_FOUND]
        scored = []
        for note in notes:
            words = set(_WORD.findall(note.text.lower()))
            hits = sum(1 for w in wanted if w in words or any(x.startswith(w) for x in words))
            if hits:
                scored.append((hits, note.at, note))
        scored.sort(key=lambda s: (s[0], s[1]), reverse=True)
        return [note for _, _, note in scored[:MAX_FOUND]]


def register_note_tools(registry: ToolRegistry, book: NoteBook) -> None:
    def add_note(text: str) -> str:
        note = book.add(text)
        return f"Noted: {note.text}"

    def find_notes(query: str = "") -> str:
        found = book.find(query)
        if not found:
            return "No matching notes." if query.strip() else "There are no notes yet."
        return "; ".join(
            f"{dt.datetime.fromtimestamp(n.at).strftime('%d %b %H:%M')}: {n.text}" for n in found
        )

    def describe_add(args: Any) -> str:
        return f"save the note: {args.get('text', '')}"

    registry.register(
        "add_note",
        "Save a note for the user.",
        parameters(("text",), text={"type": "string"}),
        add_note,
        safety=Safety.ADDITIVE,
        title="notes",
        describe=describe_add,
    )
    registry.register(
        "find_notes",
        "Search the user's saved notes (all recent notes when the query is empty).",
        parameters(query={"type": "string"}),
        find_notes,
        title="notes",
    )
