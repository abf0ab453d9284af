"""Per-turn latency marks, anchored at the end of the user's speech.

The headline figure is voice-to-voice: ``playback_start − speech_end``, the silence the user hears
between finishing their sentence and hearing the first sample of the answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MARKS = (
    "speech_start",
    "speech_end",
    "stt_final",
    "llm_request",
    "llm_first_token",
    "first_text_to_tts",
    "tts_first_audio",
    "playback_start",
    "playback_end",
    "interrupted",
    # The structured object extracted beside the reply (never on the reply's path).
    "structured_request",
    "structured_done",
)

#: Stage name → (from mark, to mark). Each stage's duration is compared with its budget.
STAGES: dict[str, tuple[str, str]] = {
    "stt_final": ("speech_end", "stt_final"),
    "llm_first_token": ("llm_request", "llm_first_token"),
    "first_text_to_tts": ("llm_first_token", "first_text_to_tts"),
    "tts_first_audio": ("first_text_to_tts", "tts_first_audio"),
    "voice_to_voice": ("speech_end", "playback_start"),
}


@dataclass(frozen=True, slots=True)
class Budgets:
    """Latency budgets in milliseconds (defaults from published voice-agent targets)."""

    stt_final: float = 300.0
    llm_first_token: float = 400.0
    tts_first_audio: float = 200.0
    voice_to_voice: float = 800.0

    def get(self, stage: str) -> float | None:
        value = getattr(self, stage, None)
        return float(value) if value is not None else None


@dataclass(slots=True)
class Timeline:
    """Monotonic timestamps of one turn's milestones, read from ``now`` (the session's clock)."""

    turn_id: int
    marks: dict[str, float] = field(default_factory=dict)
    #: Extra facts worth showing beside the marks (engine names, connection reuse, ...).
    notes: dict[str, Any] = field(default_factory=dict)
    now: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)

    def mark(self, name: str, at: float | None = None, *, overwrite: bool = False) -> None:
        """Record a mark once; later calls keep the first time unless ``overwrite``."""
        if name not in MARKS:
            raise ValueError(f"unknown timeline mark {name!r}")
        if overwrite or name not in self.marks:
            self.marks[name] = self.now() if at is None else at

    def has(self, name: str) -> bool:
        return name in self.marks

    @property
    def anchor(self) -> float | None:
        return self.marks.get("speech_end")

    def relative_ms(self) -> dict[str, float]:
        """Marks in ms relative to ``speech_end`` (negative before it)."""
        anchor = self.anchor
        if anchor is None:
            # A typed or scripted turn has no speech: anchor at the first mark.
            anchor = min(self.marks.values()) if self.marks else 0.0
        return {
            name: round((self.marks[name] - anchor) * 1000.0, 3)
            for name in MARKS
            if name in self.marks
        }

    def stage_ms(self, stage: str) -> float | None:
        start, end = STAGES[stage]
        if start in self.marks and end in self.marks:
            return (self.marks[end] - self.marks[start]) * 1000.0
        return None

    @property
    def voice_to_voice_ms(self) -> float | None:
        return self.stage_ms("voice_to_voice")

    def over_budget(self, budgets: Budgets) -> list[str]:
        """Stages that took longer than their budget, in pipeline order."""
        late = []
        for stage in STAGES:
            budget = budgets.get(stage)
            took = self.stage_ms(stage)
            if budget is not None and took is not None and took > budget:
                late.append(stage)
        return late

    def to_dict(self, budgets: Budgets | None = None) -> dict[str, Any]:
        v2v = self.voice_to_voice_ms
        out: dict[str, Any] = {
            "marks_ms": self.relative_ms(),
            "voice_to_voice_ms": round(v2v, 3) if v2v is not None else None,
            "stages_ms": {s: round(ms, 3) for s in STAGES if (ms := self.stage_ms(s)) is not None},
        }
        if budgets is not None:
            out["over_budget"] = self.over_budget(budgets)
        if self.notes:
            out["notes"] = dict(self.notes)
        return out

    @classmethod
    def from_relative(cls, turn_id: int, marks_ms: dict[str, float]) -> Timeline:
        """Rebuild a timeline from stored relative marks (anchor at 0)."""
        return cls(turn_id, {k: v / 1000.0 for k, v in marks_ms.items() if k in MARKS})
