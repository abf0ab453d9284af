"""The durable conversation store.

One JSON-lines file per conversation, one record per finished turn, appended and fsync'd before
the next turn begins, so a crash loses at most the turn in flight. Any text can be written (a
lone surrogate becomes U+FFFD); only the file system can make a write fail. A write that fails
(a full disk) leaves no half record behind, and the turn is written again before the next one.
A damaged file (a half-written line, a corrupt or absurdly nested record) is recovered on load:
the readable turns are kept, and the original file is preserved beside it for inspection —
nothing is silently discarded. Recovery is crash-safe: the file is never missing or partial.

What a turn stores about tools: each call with its result and how long it ran (``ms``), in the
order they ran. A turn that asked "Shall I go ahead?" stores that question as its answer; the
call itself belongs to the next turn, the one whose "yes" let it run. The filler said while a
slow tool ran ("One moment.") is not part of ``assistant_text`` or ``generated_text`` and never
reaches the model's context; it is kept in the timeline's notes (``"filler"``) only. Fields
added over time (``ms``, ``structured``, ``structured_error``) are optional: older files load.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
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


class HistoryStore:
    """All conversations in a directory; the newest one is the current one."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

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
