"""Per-turn latency marks, anchored at the end of the user's speech.

The headline figure is voice-to-voice: ``playback_start − speech_end``, the silence the user hears
between finishing their sentence and hearing the first sample of the answer.

``Timeline`` collects a turn's marks as it runs (absolute times from the session's clock);
``TimelineSnapshot`` is the frozen result: marks relative to the end of speech, stage
durations, the stages over budget and notes. ``TimelineSnapshot.to_json`` is the one place its
stored form (history, TIMELINE.json, exports) is written, and ``from_json`` the one place it is
read back.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Mark(StrEnum):
    """The milestones of a turn, in pipeline order."""

    SPEECH_START = "speech_start"
    SPEECH_END = "speech_end"
    STT_FINAL = "stt_final"
    LLM_REQUEST = "llm_request"
    LLM_FIRST_TOKEN = "llm_first_token"
    FIRST_TEXT_TO_TTS = "first_text_to_tts"
    TTS_FIRST_AUDIO = "tts_first_audio"
    PLAYBACK_START = "playback_start"
    PLAYBACK_END = "playback_end"
    INTERRUPTED = "interrupted"
    #: The structured object extracted beside the reply (never on the reply's path).
    STRUCTURED_REQUEST = "structured_request"
    STRUCTURED_DONE = "structured_done"


MARKS: tuple[Mark, ...] = tuple(Mark)
#: The marks a reply sets (from its request to the model on); a reply that replaces one
#: prepared ahead for the same turn sets them anew.
REPLY_MARKS: tuple[Mark, ...] = (
    Mark.LLM_REQUEST,
    Mark.LLM_FIRST_TOKEN,
    Mark.FIRST_TEXT_TO_TTS,
    Mark.TTS_FIRST_AUDIO,
    Mark.PLAYBACK_START,
    Mark.PLAYBACK_END,
    Mark.INTERRUPTED,
)

#: Stage name → (from mark, to mark). Each stage's duration is compared with its budget.
STAGES: dict[str, tuple[Mark, Mark]] = {
    "stt_final": (Mark.SPEECH_END, Mark.STT_FINAL),
    "llm_first_token": (Mark.LLM_REQUEST, Mark.LLM_FIRST_TOKEN),
    "first_text_to_tts": (Mark.LLM_FIRST_TOKEN, Mark.FIRST_TEXT_TO_TTS),
    "tts_first_audio": (Mark.FIRST_TEXT_TO_TTS, Mark.TTS_FIRST_AUDIO),
    "voice_to_voice": (Mark.SPEECH_END, Mark.PLAYBACK_START),
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


@dataclass(frozen=True, slots=True)
class TimelineSnapshot:
    """A turn's timeline as stored and shown: marks in ms relative to the end of speech."""

    marks_ms: Mapping[Mark, float] = field(default_factory=dict)
    stages_ms: Mapping[str, float] = field(default_factory=dict)
    over_budget: tuple[str, ...] = ()
    notes: Mapping[str, Any] = field(default_factory=dict)

    @property
    def voice_to_voice_ms(self) -> float | None:
        return self.stages_ms.get("voice_to_voice")

    def mark_ms(self, mark: Mark | str) -> float | None:
        return self.marks_ms.get(Mark(mark))

    def to_json(self) -> dict[str, Any]:
        """The stored form (the keys of TIMELINE.json and the history file)."""
        v2v = self.voice_to_voice_ms
        out: dict[str, Any] = {
            "marks_ms": {m.value: self.marks_ms[m] for m in MARKS if m in self.marks_ms},
            "voice_to_voice_ms": round(v2v, 3) if v2v is not None else None,
            "stages_ms": {s: self.stages_ms[s] for s in STAGES if s in self.stages_ms},
            "over_budget": list(self.over_budget),
        }
        if self.notes:
            out["notes"] = dict(self.notes)
        return out

    @classmethod
    def from_json(cls, data: object) -> TimelineSnapshot:
        """Read a stored timeline back; unknown or malformed entries are left out, never raised."""
        if not isinstance(data, Mapping):
            return cls()
        marks = {
            Mark(k): float(v)
            for k, v in _mapping(data.get("marks_ms")).items()
            if k in MARKS and _is_number(v)
        }
        stages = {
            k: float(v)
            for k, v in _mapping(data.get("stages_ms")).items()
            if k in STAGES and _is_number(v)
        }
        over = data.get("over_budget")
        over_budget = tuple(s for s in over if s in STAGES) if isinstance(over, list) else ()
        return cls(marks, stages, over_budget, dict(_mapping(data.get("notes"))))


def typed(stored: Mapping[str, Any]) -> bool:
    """Whether a stored timeline is a typed turn's (no voice: its delay is a reply time)."""
    notes = stored.get("notes")
    return isinstance(notes, Mapping) and notes.get("input") == "typed"


def delay_label(stored: Mapping[str, Any]) -> str:
    """What a turn's headline delay (``voice_to_voice_ms``) is called when shown."""
    return "reply time" if typed(stored) else "voice-to-voice"


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


@dataclass(slots=True)
class Timeline:
    """Monotonic timestamps of one turn's milestones, read from ``now`` (the session's clock)."""

    turn_id: int
    marks: dict[Mark, float] = field(default_factory=dict)
    #: Extra facts worth showing beside the marks (engine names, connection reuse, ...).
    notes: dict[str, Any] = field(default_factory=dict)
    now: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)

    def mark(self, name: Mark | str, at: float | None = None, *, overwrite: bool = False) -> None:
        """Record a mark once; later calls keep the first time unless ``overwrite``."""
        try:
            mark = Mark(name)
        except ValueError:
            raise ValueError(f"unknown timeline mark {name!r}") from None
        if overwrite or mark not in self.marks:
            self.marks[mark] = self.now() if at is None else at

    def forget(self, *names: Mark | str) -> None:
        """Drop these marks (set again by the next ``mark``)."""
        for name in names:
            self.marks.pop(Mark(name), None)

    def has(self, name: Mark | str) -> bool:
        return name in self.marks

    @property
    def anchor(self) -> float | None:
        return self.marks.get(Mark.SPEECH_END)

    def relative_ms(self) -> dict[Mark, float]:
        """Marks in ms relative to ``speech_end`` (negative before it)."""
        anchor = self.anchor
        if anchor is None:
            # A typed or scripted turn has no speech: anchor at the first mark.
            anchor = min(self.marks.values()) if self.marks else 0.0
        return {m: round((self.marks[m] - anchor) * 1000.0, 3) for m in MARKS if m in self.marks}

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

    def snapshot(self, budgets: Budgets | None = None) -> TimelineSnapshot:
        stages = {s: round(ms, 3) for s in STAGES if (ms := self.stage_ms(s)) is not None}
        over = tuple(self.over_budget(budgets)) if budgets is not None else ()
        return TimelineSnapshot(self.relative_ms(), stages, over, dict(self.notes))

    def to_dict(self, budgets: Budgets | None = None) -> dict[str, Any]:
        """The stored form of ``snapshot(budgets)``."""
        return self.snapshot(budgets).to_json()

    @classmethod
    def from_relative(cls, turn_id: int, marks_ms: dict[str, float]) -> Timeline:
        """Rebuild a timeline from stored relative marks (anchor at 0)."""
        return cls(turn_id, {Mark(k): v / 1000.0 for k, v in marks_ms.items() if k in MARKS})
