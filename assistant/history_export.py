"""A conversation written out for people and for programs: Markdown, or JSON with the timelines.

Turns are numbered from 1 in each export, whatever their ids (ids keep growing across the
conversations of one run). The JSON keeps every stored field of every turn, its timeline
included, in the form the history file stores it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from assistant.config import atomic_write_bytes
from assistant.history import TurnRecord
from assistant.timeline import delay_label

FORMATS = {".md": "markdown", ".markdown": "markdown", ".json": "json"}
JSON_FORMAT = "parley-conversation"
JSON_VERSION = 1


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))


def to_markdown(title: str, turns: Sequence[TurnRecord], created: float) -> str:
    """The conversation as Markdown: who said what, cuts, tools and each reply's latency."""
    lines = [f"# {title}", "", f"Started {_when(created)} · {len(turns)} turn(s)", ""]
    for number, turn in enumerate(turns, 1):
        lines.append(f"## {number}")
        lines.append("")
        if turn.user_text:
            lines += [f"**You:** {turn.user_text}", ""]
        for tool in turn.tool_calls:
            lines += [f"> used `{tool.name}({tool.arguments})` → {tool.result}", ""]
        answer = turn.assistant_text or ("" if turn.interrupted else turn.generated_text)
        cut = " *(interrupted)*" if turn.interrupted else ""
        if answer or cut:
            lines += [f"**Parley:** {answer}{cut}".rstrip(), ""]
        if turn.error:
            lines += [f"*Error: {turn.error}*", ""]
        delay = turn.timeline.get("voice_to_voice_ms")
        if isinstance(delay, int | float) and not isinstance(delay, bool):
            lines += [f"*{delay:.0f} ms {delay_label(turn.timeline)}*", ""]
    return "\n".join(lines).rstrip() + "\n"


def to_json(
    conversation_id: str, title: str, turns: Sequence[TurnRecord], created: float
) -> dict[str, Any]:
    """The conversation as data: every turn as stored, timelines included."""
    out_turns = []
    for number, turn in enumerate(turns, 1):
        record = turn.to_json()
        record.pop("type", None)
        out_turns.append({"number": number, **record})
    return {
        "format": JSON_FORMAT,
        "version": JSON_VERSION,
        "id": conversation_id,
        "title": title,
        "created": created,
        "exported": time.time(),
        "turns": out_turns,
    }


def write(
    path: Path, conversation_id: str, title: str, turns: Sequence[TurnRecord], created: float
) -> None:
    """Write the export the file's suffix asks for (``.md`` or ``.json``), atomically.

    Raises ``ValueError`` for another suffix and ``OSError`` when the file cannot be written.
    """
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ValueError(
            f"cannot export to {path.name}: choose a file ending in .md (Markdown) or .json"
        )
    if kind == "markdown":
        data = to_markdown(title, turns, created)
    else:
        data = json.dumps(to_json(conversation_id, title, turns, created), indent=2)
    atomic_write_bytes(path, data.encode("utf-8"))
