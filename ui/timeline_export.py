"""Export the per-turn latency timelines as JSON or CSV."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from assistant.config import atomic_write_bytes
from assistant.timeline import MARKS, STAGES, Budgets

TimelineRow = tuple[int, Mapping[str, Any]]


def to_json(turns: Sequence[TimelineRow], budgets: Budgets | None = None) -> str:
    data: dict[str, Any] = {
        "turns": [
            {
                "turn_id": turn_id,
                "voice_to_voice_ms": timeline.get("voice_to_voice_ms"),
                "marks_ms": dict(timeline.get("marks_ms", {})),
                "stages_ms": dict(timeline.get("stages_ms", {})),
                "over_budget": list(timeline.get("over_budget", [])),
            }
            for turn_id, timeline in turns
        ]
    }
    if budgets is not None:
        data["budgets_ms"] = dataclasses.asdict(budgets)
    return json.dumps(data, indent=2)


def to_csv(turns: Sequence[TimelineRow]) -> str:
    """One row per turn: the voice-to-voice figure, every mark and every stage, in ms."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["turn_id", "voice_to_voice_ms"]
        + [f"{m}_ms" for m in MARKS]
        + [f"stage_{s}_ms" for s in STAGES if s != "voice_to_voice"]
        + ["over_budget"]
    )
    for turn_id, timeline in turns:
        marks = timeline.get("marks_ms", {})
        stages = timeline.get("stages_ms", {})
        writer.writerow(
            [turn_id, _cell(timeline.get("voice_to_voice_ms"))]
            + [_cell(marks.get(m)) for m in MARKS]
            + [_cell(stages.get(s)) for s in STAGES if s != "voice_to_voice"]
            + [";".join(timeline.get("over_budget", []))]
        )
    return out.getvalue()


def _cell(value: object) -> str:
    return f"{value:.1f}" if isinstance(value, int | float) else ""


def write_export(path: Path, turns: Sequence[TimelineRow], budgets: Budgets | None = None) -> None:
    """Write CSV when ``path`` ends in .csv, else JSON."""
    text = to_csv(turns) if path.suffix.lower() == ".csv" else to_json(turns, budgets)
    atomic_write_bytes(path, text.encode("utf-8"))
