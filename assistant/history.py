"""The durable conversation store.

One JSON-lines file per conversation, one record per finished turn, appended and fsync'd before
the next turn begins, so a crash loses at most the turn in flight. Any text can be written (a
lone surrogate becomes U+FFFD); only the file system can make a write fail. A write that fails
(a full disk) leaves no half record behind, and the turn is written again before the next one.
A damaged file (a half-written line, a corrupt or absurdly nested record) is recovered on load:
the readable turns are kept, and the original file is preserved beside it for inspection —
nothing is silently discarded. Recovery is crash-safe: the file is never missing or partial.

Around the conversation files: ``titles.json`` holds the titles the user gave (a conversation
without one is named after its first question), and a deleted conversation's file is moved into
``deleted/``, from where ``restore`` brings it back until ``purge_deleted`` removes old ones.
The conversation files themselves are only ever appended to.

What a turn stores about tools: each call with its result and how long it ran (``ms``), in the
order they ran. A turn that asked "Shall I go ahead?" stores that question as its answer; the
call itself belongs to the next turn, the one whose "yes" let it run. The filler said while a
slow tool ran ("One moment.") is not part of ``assistant_text`` or ``generated_text`` and never
reaches the model's context; it is kept in the timeline's notes (``"filler"``) only. Fields
added over time (``ms``, ``structured``, ``structured_error``) are optional: older files load.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from assistant.config import atomic_write_bytes
from assistant.durable import append_lines, json_line, replace_keeping_original, unused_name
from assistant.engines.base import Message, ToolCall
from assistant.tokens import estimate_tokens

FORMAT_VERSION = 1


@dataclass(slots=True)
class ToolRecord:
    id: str
    name: str
    arguments: str
    result: str
    #: How long the tool ran, in milliseconds (absent in older files).
    ms: float | None = None


@dataclass(slots=True)
class TurnRecord:
    turn_id: int
    user_text: str
    #: What the user actually heard (cut at the playback position when interrupted).
    assistant_text: str
    interrupted: bool = False
    #: Everything the model generated, heard or not (shown dimmed in the UI).
    generated_text: str = ""
    tool_calls: list[ToolRecord] = field(default_factory=list)
    timeline: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    at: float = field(default_factory=time.time)
    #: The object extracted from the turn beside the reply (``assistant.tools.structured``).
    structured: dict[str, Any] | None = None
    #: Why the extraction gave no object (invalid JSON twice, a failed request).
    structured_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"type": "turn", **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TurnRecord:
        """The turn in a record read from a file; raises (any exception) if it is malformed."""
        tools = [
            ToolRecord(str(t["id"]), str(t["name"]), str(t["arguments"]), str(t["result"]), _ms(t))
            for t in data.get("tool_calls", [])
        ]
        error = data.get("error")
        structured_error = data.get("structured_error")
        return cls(
            turn_id=int(data["turn_id"]),
            user_text=str(data["user_text"]),
            assistant_text=str(data["assistant_text"]),
            interrupted=bool(data.get("interrupted", False)),
            generated_text=str(data.get("generated_text", "")),
            tool_calls=tools,
            timeline=dict(data.get("timeline", {})),
            error=None if error is None else str(error),
            at=float(data.get("at", 0.0)),
            structured=data["structured"] if isinstance(data.get("structured"), dict) else None,
            structured_error=None if structured_error is None else str(structured_error),
        )


def _ms(tool: dict[str, Any]) -> float | None:
    """A tool record's run time; absent (older files) or unreadable → None."""
    value = tool.get("ms")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class Conversation:
    """One conversation's turns, backed by an append-only JSONL file."""

    def __init__(self, path: Path, conversation_id: str, turns: list[TurnRecord]) -> None:
        self.path = path
        self.id = conversation_id
        self.turns = turns
        self._lock = threading.Lock()
        self._unsaved: list[bytes] = []  # records of turns whose write failed, oldest first

    @property
    def next_turn_id(self) -> int:
        return max((t.turn_id for t in self.turns), default=0) + 1

    @property
    def unsaved(self) -> int:
        """How many turns could not be written yet (they go out with the next ``append``)."""
        return len(self._unsaved)

    def append(self, turn: TurnRecord) -> None:
        """Write the turn, fsync it, then add it to ``turns``; returns once it is on disk.

        Turns that failed to be written before are written first, in order. Raises nothing but
        ``OSError`` (the file system failed: disk full, file not writable): then the file holds
        no part of this turn, ``turns`` is unchanged (keeping the turn in memory is the
        caller's choice), and the turn stays queued for the next ``append``.
        """
        record = _turn_line(turn)
        with self._lock:
            try:
                append_lines(self.path, b"".join([*self._unsaved, record]))
            except OSError:
                self._unsaved.append(record)
                raise
            self._unsaved.clear()
            self.turns.append(turn)

    def context(
        self, system_prompt: str, token_budget: int, pending_user: str | None = None
    ) -> list[Message]:
        """Messages for the LLM: the system prompt, then as many recent turns as fit the budget.

        Whole turns are dropped oldest first; the system prompt and the pending user message are
        always kept.
        """
        tail: list[Message] = [Message("user", pending_user)] if pending_user is not None else []
        used = estimate_tokens(system_prompt) + sum(message_tokens(m) for m in tail)
        kept: list[list[Message]] = []
        for turn in reversed(self.turns):
            msgs = turn_messages(turn)
            cost = sum(message_tokens(m) for m in msgs)
            if used + cost > token_budget:
                break
            used += cost
            kept.append(msgs)
        out = [Message("system", system_prompt)]
        for msgs in reversed(kept):
            out.extend(msgs)
        out.extend(tail)
        return out


def message_tokens(message: Message) -> int:
    """Estimated tokens of one chat message, its tool calls included."""
    return estimate_tokens(message.content) + sum(
        estimate_tokens(c.name + c.arguments) for c in message.tool_calls
    )


def drop_oldest_turns(messages: Sequence[Message], token_budget: int) -> list[Message] | None:
    """``messages`` without as many earlier turns as it takes to fit ``token_budget``.

    The leading system messages and the current turn (from the last user message on, tool
    rounds included) are always kept; earlier turns go whole, oldest first, as in
    ``Conversation.context``. None when there is no earlier turn left to drop.
    """
    head = 0
    while head < len(messages) and messages[head].role == "system":
        head += 1
    users = [i for i in range(head, len(messages)) if messages[i].role == "user"]
    current = users[-1] if users else len(messages)
    starts = [head, *(i for i in users if i > head and i < current)]
    turns = [list(messages[a:b]) for a, b in zip(starts, [*starts[1:], current], strict=True)]
    turns = [t for t in turns if t]
    if not turns:
        return None
    fixed = [*messages[:head], *messages[current:]]
    used = sum(message_tokens(m) for m in fixed) + sum(message_tokens(m) for t in turns for m in t)
    dropped = 0
    while dropped < len(turns) and (used > token_budget or dropped == 0):
        used -= sum(message_tokens(m) for m in turns[dropped])
        dropped += 1
    return [*messages[:head], *(m for t in turns[dropped:] for m in t), *messages[current:]]


def turn_messages(turn: TurnRecord) -> list[Message]:
    """The chat messages a finished turn contributes to the context."""
    msgs = [Message("user", turn.user_text)]
    if turn.tool_calls:
        calls = [ToolCall(t.id, t.name, t.arguments) for t in turn.tool_calls]
        msgs.append(Message("assistant", "", tool_calls=calls))
        msgs.extend(Message("tool", t.result, tool_call_id=t.id) for t in turn.tool_calls)
    if turn.assistant_text:
        msgs.append(Message("assistant", turn.assistant_text))
    return msgs


@dataclass(slots=True)
class LoadReport:
    recovered_lines: int = 0
    kept_as: Path | None = None

    @property
    def notice(self) -> str | None:
        if not self.recovered_lines:
            return None
        return (
            f"The conversation file was damaged: {self.recovered_lines} unreadable record(s) were "
            f"set aside; the original is kept as {self.kept_as}."
        )


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    """What a list of conversations shows of one, without its turns."""

    id: str
    path: Path
    title: str
    #: The user named it (otherwise the title is its first question).
    titled: bool
    turns: int
    #: When it was started and last changed (seconds since the epoch).
    created: float
    updated: float
    #: Everything said in it, lower-cased, for searching.
    text: str = field(repr=False, default="")
    #: When its last turn was stored (when it was started, if it has none).
    last_turn_at: float = 0.0

    def matches(self, query: str) -> bool:
        """Every word of ``query`` appears in the title or in what was said (any case)."""
        haystack = f"{self.title.lower()}\n{self.text}"
        return all(word in haystack for word in query.lower().split())


#: The longest title made from a conversation's first question.
TITLE_LENGTH = 48
UNTITLED = "New conversation"
TITLES_FILE = "titles.json"
DELETED_DIR = "deleted"


def default_title(turns: Sequence[TurnRecord]) -> str:
    """A conversation's name until the user gives it one: its first question, shortened."""
    first = next((" ".join(t.user_text.split()) for t in turns if t.user_text.strip()), "")
    if not first:
        return UNTITLED
    if len(first) <= TITLE_LENGTH:
        return first
    cut = first[: TITLE_LENGTH - 1].rsplit(" ", 1)[0] or first[: TITLE_LENGTH - 1]
    return cut.rstrip(" ,.;:") + "…"


class HistoryStore:
    """All conversations in a directory; the newest one is the current one."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._summaries: dict[Path, tuple[tuple[float, int], ConversationSummary]] = {}

    def conversations(self) -> list[Path]:
        """Conversation files, oldest first."""
        return sorted(self.directory.glob("*.jsonl"), key=lambda p: (p.stat().st_mtime, p.name))

    def new(self) -> Conversation:
        conv_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        path = self.directory / f"{conv_id}.jsonl"
        header = {
            "type": "conversation",
            "id": conv_id,
            "version": FORMAT_VERSION,
            "created": time.time(),
        }
        atomic_write_bytes(path, (json.dumps(header) + "\n").encode("utf-8"))
        return Conversation(path, conv_id, [])

    def latest(self) -> tuple[Conversation, LoadReport]:
        """The most recent conversation (a new one if there is none)."""
        files = self.conversations()
        if not files:
            return self.new(), LoadReport()
        return self.load(files[-1])

    def load(self, path: Path) -> tuple[Conversation, LoadReport]:
        """Read a conversation file, recovering it if damaged (see the module docstring).

        Raises nothing but ``OSError`` (the file cannot be read or recovered), whatever the
        file holds.
        """
        raw = path.read_bytes()
        turns: list[TurnRecord] = []
        good_lines: list[bytes] = []
        bad = 0
        conv_id = path.stem
        for line in raw.split(b"\n"):
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf-8"))
                if not isinstance(record, dict):
                    raise ValueError("not a record")
                if record.get("type") == "conversation":
                    conv_id = str(record.get("id", conv_id))
                elif record.get("type") == "turn":
                    turns.append(TurnRecord.from_json(record))
                else:
                    raise ValueError("unknown record type")
                good_lines.append(line)
            except Exception:  # anything a damaged line makes the parser raise, deep nesting too
                bad += 1
        report = LoadReport()
        if not bad and raw and not raw.endswith(b"\n"):
            append_lines(path, b"")  # a complete last record missing its newline gets one
        if bad:
            # Keep the damaged original; rewrite the readable part so appends stay valid.
            kept = unused_name(path, "damaged")
            replace_keeping_original(path, b"".join(ln + b"\n" for ln in good_lines), kept)
            report = LoadReport(recovered_lines=bad, kept_as=kept)
        return Conversation(path, conv_id, turns), report

    # --------------------------------------------------------------------- the conversation list

    def path_of(self, conversation_id: str) -> Path:
        """The file of the conversation ``conversation_id`` (which may not exist)."""
        if not conversation_id or "/" in conversation_id or "\\" in conversation_id:
            raise ValueError(f"not a conversation id: {conversation_id!r}")
        return self.directory / f"{conversation_id}.jsonl"

    def summaries(self) -> list[ConversationSummary]:
        """Every conversation with at least one turn, the most recently changed first.

        A file that cannot be read is left out of the list (it stays on disk untouched).
        """
        titles = self._titles()
        out: list[ConversationSummary] = []
        for path in reversed(self.conversations()):
            summary = self._summary(path, titles)
            if summary is not None and summary.turns:
                out.append(summary)
        return out

    def summary(self, conversation_id: str) -> ConversationSummary | None:
        """One conversation's summary (None when there is no such file)."""
        return self._summary(self.path_of(conversation_id), self._titles())

    def existing_summary(self, conversation_id: str) -> ConversationSummary:
        """One conversation's summary. Raises ``FileNotFoundError`` when there is no such
        conversation (or it was deleted)."""
        summary = self.summary(conversation_id)
        if summary is None:
            raise FileNotFoundError(f"no conversation {conversation_id!r}")
        return summary

    def open(self, conversation_id: str) -> tuple[Conversation, LoadReport]:
        """Load a conversation to continue it; it becomes the most recent one.

        Raises ``FileNotFoundError`` when it does not exist (or was deleted).
        """
        path = self.path_of(conversation_id)
        conversation, report = self.load(path)
        os.utime(path)  # the conversation in use is the one to come back to after a restart
        return conversation, report

    def rename(self, conversation_id: str, title: str) -> None:
        """Give a conversation a title; an empty one goes back to naming it by its first
        question. Raises ``FileNotFoundError`` for an unknown conversation."""
        if not self.path_of(conversation_id).exists():
            raise FileNotFoundError(f"no conversation {conversation_id!r}")
        titles = self._titles()
        title = " ".join(title.split())
        if title:
            titles[conversation_id] = title
        else:
            titles.pop(conversation_id, None)
        self._save_titles(titles)

    def delete(self, conversation_id: str) -> Path:
        """Move a conversation into ``deleted/`` (``restore`` undoes it); returns where it went.

        Raises ``FileNotFoundError`` for an unknown conversation.
        """
        path = self.path_of(conversation_id)
        trash = self.directory / DELETED_DIR
        trash.mkdir(exist_ok=True)
        target = trash / path.name
        os.replace(path, target)
        os.utime(target)  # when it was deleted, for purge_deleted
        self._summaries.pop(path, None)
        return target

    def restore(self, conversation_id: str) -> None:
        """Bring a deleted conversation back, title and all.

        Raises ``FileNotFoundError`` when it is not among the deleted ones, ``FileExistsError``
        if a conversation of that id exists again.
        """
        path = self.path_of(conversation_id)
        deleted = self.directory / DELETED_DIR / path.name
        if not deleted.exists():
            raise FileNotFoundError(f"no deleted conversation {conversation_id!r}")
        if path.exists():
            raise FileExistsError(f"conversation {conversation_id!r} exists")
        os.replace(deleted, path)
        # Back in its place among the others: last changed when its last turn was.
        summary = _read_summary(path, path.stat().st_mtime)
        if summary is not None:
            os.utime(path, (summary.last_turn_at, summary.last_turn_at))

    def purge_deleted(self, older_than: float, now: float | None = None) -> int:
        """Remove conversations deleted more than ``older_than`` seconds ago; how many went."""
        trash = self.directory / DELETED_DIR
        if not trash.is_dir():
            return 0
        limit = (time.time() if now is None else now) - older_than
        titles = self._titles()
        removed = 0
        for path in trash.glob("*.jsonl"):
            try:
                if path.stat().st_mtime < limit:
                    path.unlink()
                    titles.pop(path.stem, None)
                    removed += 1
            except OSError:
                continue
        if removed:
            self._save_titles(titles)
        return removed

    def _summary(self, path: Path, titles: dict[str, str]) -> ConversationSummary | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        stamp = (stat.st_mtime, stat.st_size)
        cached = self._summaries.get(path)
        if cached is None or cached[0] != stamp:
            summary = _read_summary(path, stat.st_mtime)
            if summary is None:
                return None
            self._summaries[path] = (stamp, summary)
        else:
            summary = cached[1]
        custom = titles.get(summary.id)
        if custom:
            return replace(summary, title=custom, titled=True)
        return summary

    def _titles(self) -> dict[str, str]:
        try:
            data = json.loads((self.directory / TITLES_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): str(v) for k, v in data.items() if isinstance(v, str) and v.strip()}

    def _save_titles(self, titles: dict[str, str]) -> None:
        data = json.dumps(titles, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
        atomic_write_bytes(self.directory / TITLES_FILE, data.encode("utf-8"))


def _read_summary(path: Path, mtime: float) -> ConversationSummary | None:
    """A conversation file's summary, read without repairing or moving anything."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    created = mtime
    turns: list[TurnRecord] = []
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
            if record.get("type") == "conversation":
                created = float(record.get("created", created))
            elif record.get("type") == "turn":
                turns.append(TurnRecord.from_json(record))
        except Exception:  # a damaged line: ``load`` recovers it when the conversation opens
            continue
    text = "\n".join(f"{t.user_text}\n{t.assistant_text}" for t in turns).lower()
    return ConversationSummary(
        id=path.stem,  # the id ``path_of`` finds it by
        path=path,
        title=default_title(turns),
        titled=False,
        turns=len(turns),
        created=created,
        updated=mtime,
        text=text,
        last_turn_at=max((t.at for t in turns), default=created),
    )


def _turn_line(turn: TurnRecord) -> bytes:
    """The file record of ``turn``: one JSON line, whatever text and values the turn holds."""
    try:
        data = turn.to_json()
    except Exception:  # a timeline value asdict cannot copy: keep the words, drop the marks
        data = {
            "type": "turn",
            **{name: getattr(turn, name) for name in ("turn_id", "user_text", "assistant_text")},
            "interrupted": turn.interrupted,
            "generated_text": turn.generated_text,
            "tool_calls": [
                {"id": t.id, "name": t.name, "arguments": t.arguments, "result": t.result}
                for t in turn.tool_calls
            ],
            "error": turn.error,
            "at": turn.at,
        }
    return json_line(data)
