"""The durable conversation store.

One JSON-lines file per conversation, one record per finished turn, appended and fsync'd before
the next turn begins, so a crash loses at most the turn in flight. A damaged file (a half-written
last line, a corrupt record) is recovered on load: the readable turns are kept, and the original
file is preserved beside it for inspection — nothing is silently discarded.

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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from assistant.config import atomic_write_bytes
from assistant.engines.base import Message, ToolCall

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
        tools = [
            ToolRecord(t["id"], t["name"], t["arguments"], t["result"], t.get("ms"))
            for t in data.get("tool_calls", [])
        ]
        return cls(
            turn_id=int(data["turn_id"]),
            user_text=str(data["user_text"]),
            assistant_text=str(data["assistant_text"]),
            interrupted=bool(data.get("interrupted", False)),
            generated_text=str(data.get("generated_text", "")),
            tool_calls=tools,
            timeline=dict(data.get("timeline", {})),
            error=data.get("error"),
            at=float(data.get("at", 0.0)),
            structured=data["structured"] if isinstance(data.get("structured"), dict) else None,
            structured_error=data.get("structured_error"),
        )


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate (~3.5 characters a token for English, more for others)."""
    return len(text) * 2 // 7 + 4


class Conversation:
    """One conversation's turns, backed by an append-only JSONL file."""

    def __init__(self, path: Path, conversation_id: str, turns: list[TurnRecord]) -> None:
        self.path = path
        self.id = conversation_id
        self.turns = turns
        self._lock = threading.Lock()

    @property
    def next_turn_id(self) -> int:
        return max((t.turn_id for t in self.turns), default=0) + 1

    def append(self, turn: TurnRecord) -> None:
        """Append and fsync the turn; returns only once it is on disk."""
        line = json.dumps(turn.to_json(), ensure_ascii=False) + "\n"
        with self._lock:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            self.turns.append(turn)

    def context(
        self, system_prompt: str, token_budget: int, pending_user: str | None = None
    ) -> list[Message]:
        """Messages for the LLM: the system prompt, then as many recent turns as fit the budget.

        Whole turns are dropped oldest first; the system prompt and the pending user message are
        always kept.
        """
        tail: list[Message] = [Message("user", pending_user)] if pending_user is not None else []
        used = estimate_tokens(system_prompt) + sum(estimate_tokens(m.content) for m in tail)
        kept: list[list[Message]] = []
        for turn in reversed(self.turns):
            msgs = turn_messages(turn)
            cost = sum(estimate_tokens(m.content) + _tool_tokens(m) for m in msgs)
            if used + cost > token_budget:
                break
            used += cost
            kept.append(msgs)
        out = [Message("system", system_prompt)]
        for msgs in reversed(kept):
            out.extend(msgs)
        out.extend(tail)
        return out


def _tool_tokens(message: Message) -> int:
    return sum(estimate_tokens(c.name + c.arguments) for c in message.tool_calls)


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
        raw = path.read_bytes()
        turns: list[TurnRecord] = []
        good_lines: list[str] = []
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
                good_lines.append(line.decode("utf-8"))
            except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                bad += 1
        report = LoadReport()
        if not bad and raw and not raw.endswith(b"\n"):
            with open(path, "ab") as f:  # a complete last record missing its newline
                f.write(b"\n")
        if bad:
            # Keep the damaged original; rewrite the readable part so appends stay valid.
            kept = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
            os.replace(path, kept)
            atomic_write_bytes(path, "".join(f"{ln}\n" for ln in good_lines).encode("utf-8"))
            report = LoadReport(recovered_lines=bad, kept_as=kept)
        return Conversation(path, conv_id, turns), report
