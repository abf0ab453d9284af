"""The latency timeline: a bar per turn from the end of speech to the first sound, and a chart.

Each bar is split at the turn's marks (final transcript, first token, first text to the speech
engine, first audio, playback start); a stage over its budget keeps its colour and is outlined
and underlined in red, and the voice-to-voice figure (the reply time, for a typed question)
stands at the right. Turns are numbered from 1 in each conversation. Hovering shows the numbers
and the turn's details: the tools it used and how long they took, the filler, and its
structured object with when it was extracted (always after the answer started, never on its
path).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QHelpEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QLabel,
    QPushButton,
    QSizePolicy,
    QToolTip,
    QWidget,
)

from assistant.events import (
    AppEvent,
    ConversationLoaded,
    StructuredExtracted,
    TimelineUpdated,
    TurnFinished,
)
from assistant.history import TurnRecord
from assistant.timeline import Budgets, delay_label
from ui import theme
from ui.panels import panel_title, titled_column
from ui.resources import icon
from ui.timeline_export import write_export

#: (stage key, mark that ends it, budget stage name or None, legend label)
SEGMENTS: tuple[tuple[str, str, str | None, str], ...] = (
    ("stt", "stt_final", "stt_final", "Transcript"),
    ("llm", "llm_first_token", "llm_first_token", "First token"),
    ("text", "first_text_to_tts", "first_text_to_tts", "Text to TTS"),
    ("tts", "tts_first_audio", "tts_first_audio", "First audio"),
    ("output", "playback_start", None, "Playback"),
)
STAGE_NAMES = {
    "stt_final": "Speech recognition (end of speech → final transcript)",
    "llm_first_token": "Language model (request → first token)",
    "first_text_to_tts": "Text splitting (first token → first text to TTS)",
    "tts_first_audio": "Speech synthesis (text → first audio)",
    "voice_to_voice": "Voice-to-voice (end of speech → playback)",
}
#: Hands-free facts from the timeline's notes: (key, label, format).
NOTES: tuple[tuple[str, str, str], ...] = (
    ("endpoint_ms", "End of turn confirmed (after the end of speech)", "{:.0f} ms"),
    ("end_of_turn_probability", "Smart Turn: probability the turn was over", "{:.2f}"),
)
Timeline = Mapping[str, Any]
#: Height of the red band under a stage over its budget.
LATE_BAND = 4.0


def segments(timeline: Timeline) -> list[tuple[str, float, float, bool]]:
    """(stage key, start ms, end ms, over budget) for the marks present, anchored at 0."""
    marks = timeline.get("marks_ms", {})
    over = set(timeline.get("over_budget", []))
    start = marks.get("speech_end", 0.0)
    out: list[tuple[str, float, float, bool]] = []
    for key, mark, budget, _label in SEGMENTS:
        end = marks.get(mark)
        if not isinstance(end, int | float):
            continue
        out.append((key, float(start), float(end), budget in over if budget else False))
        start = end
    return out


def _nice_ceiling(value: float) -> float:
    """Round up to a step that divides into four readable ticks (at least 100 ms)."""
    value = max(value, 100.0)
    power = 10 ** math.floor(math.log10(value))
    for step in (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0):
        if value <= step * power:
            return step * power
    return 10 * power


def _format_ms(value: object) -> str:
    return f"{value:.0f} ms" if isinstance(value, int | float) else "—"


@dataclass(frozen=True, slots=True)
class TurnDetails:
    """What a turn did besides its timing: tools (title, ms) and its structured object."""

    tools: tuple[tuple[str, float | None], ...] = ()
    structured: Mapping[str, Any] | None = None
    structured_error: str | None = None

    @classmethod
    def of(cls, record: TurnRecord) -> TurnDetails:
        tools = tuple((t.name, t.ms) for t in record.tool_calls)
        return cls(tools, record.structured, record.structured_error)


def details_html(timeline: Timeline, details: TurnDetails) -> str:
    """The tools, filler and structured object of a turn, for its tooltip."""
    rows: list[str] = []
    notes = timeline.get("notes") or {}
    if details.tools:
        used = ", ".join(f"{name} ({_format_ms(ms)})" for name, ms in details.tools)
        rows.append(f"<br><b>Tools</b>: {html.escape(used)}")
    routing = notes.get("router_ms")
    if isinstance(routing, list) and routing:
        rows.append(f"<br>Tool routing: {html.escape(', '.join(_format_ms(v) for v in routing))}")
    if isinstance(notes.get("filler"), str):
        rows.append(f"<br>Said while waiting: <i>{html.escape(notes['filler'])}</i>")
    marks = timeline.get("marks_ms", {})
    if details.structured is not None or details.structured_error:
        when = ""
        start, done = marks.get("structured_request"), marks.get("structured_done")
        if isinstance(start, int | float) and isinstance(done, int | float):
            when = f" (extracted {start:.0f}–{done:.0f} ms, beside the reply)"
        rows.append(f"<br><b>Structured</b>{html.escape(when)}:")
        if details.structured is not None:
            text = json.dumps(details.structured, indent=1, ensure_ascii=False)
            rows.append(f"<pre style='margin:0'>{html.escape(text)}</pre>")
        else:
            error = html.escape(details.structured_error or "")
            rows.append(f" <span style='color:#FCA5A5'>{error}</span>")
    return "".join(rows)


def tooltip_html(
    number: int, timeline: Timeline, budgets: Budgets, details: TurnDetails | None = None
) -> str:
    stages = timeline.get("stages_ms", {})
    over = set(timeline.get("over_budget", []))
    delay = _format_ms(timeline.get("voice_to_voice_ms"))
    rows = [f"<b>Turn {number}</b> — {delay} {delay_label(timeline)}"]
    rows.append("<table cellspacing='0' cellpadding='2'>")
    for stage, name in STAGE_NAMES.items():
        if stage not in stages:
            continue
        budget = budgets.get(stage)
        late = stage in over
        colour = "#FCA5A5" if late else "#F9FAFB"
        limit = f" / {budget:.0f}" if budget is not None else ""
        flag = " ⚠ over budget" if late else ""
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td align='right' style='color:{colour}'>"
            f"&nbsp;{stages[stage]:.0f}{limit} ms{flag}</td></tr>"
        )
    notes = timeline.get("notes") or {}
    for key, name, fmt in NOTES:
        value = notes.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            rows.append(
                f"<tr><td>{html.escape(name)}</td><td align='right'>&nbsp;"
                f"{fmt.format(value)}</td></tr>"
            )
    rows.append("</table>")
    marks = timeline.get("marks_ms", {})
    if marks:
        listed = ", ".join(f"{k} {v:.0f}" for k, v in marks.items() if isinstance(v, int | float))
        rows.append(
            "<span style='color:#9CA3AF'>marks (ms from end of speech): "
            f"{html.escape(listed)}</span>"
        )
    if details is not None:
        rows.append(details_html(timeline, details))
    return "".join(rows)


class TimelineView(QWidget):
    """One horizontal bar per recent turn, on a shared millisecond axis."""

    LEFT = 40
    RIGHT = 74
    TOP = 22
    ROW = 16
    GAP = 12

    def __init__(self, parent: QWidget | None = None, *, max_rows: int = 6) -> None:
        super().__init__(parent)
        self.max_rows = max_rows
        self._turns: list[tuple[int, Timeline]] = []
        self._budgets = Budgets()
        #: Per turn: tools and structured object, shown in the tooltip.
        self.details: dict[int, TurnDetails] = {}
        # Fixed height: always as tall as its rows (the side panel scrolls when short of room).
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMouseTracking(True)

    # data
    def set_turns(self, turns: list[tuple[int, Timeline]]) -> None:
        self._turns = list(turns)[-self.max_rows :]
        self.updateGeometry()
        self.update()

    def set_budgets(self, budgets: Budgets) -> None:
        self._budgets = budgets
        self.update()

    @property
    def rows(self) -> list[tuple[int, Timeline]]:
        return list(self._turns)

    # geometry (public so the drawing can be checked)
    def scale_ms(self) -> float:
        ends = [seg[2] for _, t in self._turns for seg in segments(t)]
        return _nice_ceiling(max([*ends, self._budgets.voice_to_voice]))

    def x_for_ms(self, ms: float) -> float:
        width = max(1.0, self.width() - self.LEFT - self.RIGHT)
        return self.LEFT + width * max(0.0, ms) / self.scale_ms()

    def row_rect(self, row: int) -> QRectF:
        top = self.TOP + row * (self.ROW + self.GAP)
        return QRectF(self.LEFT, top, self.width() - self.LEFT - self.RIGHT, self.ROW)

    def segment_rects(self, row: int) -> list[tuple[str, QRectF, bool]]:
        rect = self.row_rect(row)
        out = []
        for key, start, end, over in segments(self._turns[row][1]):
            x0, x1 = self.x_for_ms(start), self.x_for_ms(end)
            out.append((key, QRectF(x0, rect.top(), max(1.0, x1 - x0), rect.height()), over))
        return out

    def row_at(self, y: float) -> int | None:
        for row in range(len(self._turns)):
            rect = self.row_rect(row).adjusted(0, -self.GAP / 2, 0, self.GAP / 2)
            if rect.top() <= y <= rect.bottom():
                return row
        return None

    def sizeHint(self) -> QSize:
        rows = max(2, len(self._turns))
        return QSize(360, self.TOP + rows * (self.ROW + self.GAP) + 4)

    # painting
    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        self._paint_axis(painter)
        if not self._turns:
            painter.setPen(theme.TEXT_FAINT)
            painter.drawText(
                self.rect().adjusted(0, self.TOP, 0, 0),
                Qt.AlignmentFlag.AlignCenter,
                "Latency of each turn appears here.",
            )
            return
        for row, (turn_id, timeline) in enumerate(self._turns):
            self._paint_row(painter, row, turn_id, timeline)
        self._paint_budget(painter)

    def _paint_axis(self, painter: QPainter) -> None:
        scale = self.scale_ms()
        step = scale / 4
        bottom = self.TOP + max(1, len(self._turns)) * (self.ROW + self.GAP) - self.GAP / 2
        font = painter.font()
        font.setPointSizeF(max(6.5, font.pointSizeF() * 0.8))
        painter.setFont(font)
        for i in range(5):
            ms = i * step
            x = self.x_for_ms(ms)
            painter.setPen(QPen(theme.GRID, 1))
            painter.drawLine(QPointF(x, self.TOP - 4), QPointF(x, bottom))
            painter.setPen(theme.TEXT_FAINT)
            label = f"{ms / 1000:.2g} s" if scale >= 2000 else f"{ms:.0f}"
            painter.drawText(
                QRectF(x - 30, 0, 60, self.TOP - 6), Qt.AlignmentFlag.AlignCenter, label
            )

    def _paint_row(self, painter: QPainter, row: int, turn_id: int, timeline: Timeline) -> None:
        rect = self.row_rect(row)
        painter.setPen(theme.TEXT_SECONDARY)
        painter.drawText(
            QRectF(0, rect.top() - 4, self.LEFT - 8, rect.height() + 8),
            Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
            f"#{turn_id}",
        )
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(theme.TRACK)
        painter.drawRoundedRect(rect, 4, 4)
        for key, seg, _late in self.segment_rects(row):
            painter.setBrush(theme.STAGE_COLORS[key])
            painter.drawRect(seg)
        # Late stages keep their colour (which stage was late stays readable) and are marked.
        for _key, seg, over in self.segment_rects(row):
            if over:
                self._mark_late(painter, seg)
        painter.setPen(Qt.PenStyle.NoPen)
        v2v = timeline.get("voice_to_voice_ms")
        late = "voice_to_voice" in timeline.get("over_budget", [])
        font = painter.font()
        font.setBold(True)
        painter.setFont(font)
        painter.setPen(theme.OVER_BUDGET if late else theme.TEXT)
        painter.drawText(
            QRectF(rect.right() + 6, rect.top() - 4, self.RIGHT - 6, rect.height() + 8),
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
            _format_ms(v2v),
        )
        font.setBold(False)
        painter.setFont(font)

    @staticmethod
    def _mark_late(painter: QPainter, seg: QRectF) -> None:
        """A red outline and a red band along the bottom of a stage over its budget."""
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(QPen(theme.OVER_BUDGET, 2))
        painter.drawRect(seg.adjusted(1, 1, -1, -1))
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(theme.OVER_BUDGET)
        painter.drawRect(QRectF(seg.left(), seg.bottom() - LATE_BAND, seg.width(), LATE_BAND))

    def _paint_budget(self, painter: QPainter) -> None:
        x = self.x_for_ms(self._budgets.voice_to_voice)
        bottom = self.TOP + len(self._turns) * (self.ROW + self.GAP) - self.GAP / 2
        pen = QPen(theme.BUDGET_LINE, 1.2, Qt.PenStyle.DashLine)
        painter.setPen(pen)
        painter.drawLine(QPointF(x, self.TOP - 4), QPointF(x, bottom))

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ToolTip and isinstance(event, QHelpEvent):
            row = self.row_at(event.pos().y())
            if row is None:
                QToolTip.hideText()
            else:
                number, timeline = self._turns[row]
                details = self.details.get(number)
                QToolTip.showText(
                    event.globalPos(),
                    tooltip_html(number, timeline, self._budgets, details),
                    self,
                )
            return True
        return super().event(event)


class Legend(QWidget):
    """Colour key of the timeline's stages."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QSize:
        return QSize(300, 2 * self.fontMetrics().height() + 8)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        font = painter.font()
        font.setPointSizeF(max(6.5, font.pointSizeF() * 0.85))
        painter.setFont(font)
        metrics = painter.fontMetrics()
        items = [(theme.STAGE_COLORS[key], label) for key, _m, _b, label in SEGMENTS]
        items.append((theme.OVER_BUDGET, "Over budget (outlined)"))
        x, y = 2.0, 2.0
        line = metrics.height() + 4
        for color, label in items:
            width = 14 + metrics.horizontalAdvance(label) + 12
            if x + width > self.width() and x > 2:
                x, y = 2.0, y + line
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(color)
            painter.drawRoundedRect(QRectF(x, y + line / 2 - 5, 10, 10), 2, 2)
            painter.setPen(theme.TEXT_SECONDARY)
            painter.drawText(QPointF(x + 14, y + metrics.ascent() + 2), label)
            x += width


class LatencyChart(QWidget):
    """Voice-to-voice over recent turns, with the budget as a dashed line."""

    LEFT = 40
    RIGHT = 8
    TOP = 10
    BOTTOM = 18

    def __init__(self, parent: QWidget | None = None, *, max_bars: int = 24) -> None:
        super().__init__(parent)
        self.max_bars = max_bars
        self._values: list[tuple[int, float, bool]] = []
        self._budget = Budgets().voice_to_voice
        self.setMinimumHeight(96)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMouseTracking(True)

    def set_values(self, values: list[tuple[int, float, bool]]) -> None:
        """(turn id, voice-to-voice ms, over budget) of each turn, oldest first."""
        self._values = list(values)[-self.max_bars :]
        self.update()

    def set_budget(self, budget_ms: float) -> None:
        self._budget = budget_ms
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(300, 110)

    def scale_ms(self) -> float:
        return _nice_ceiling(max([v for _, v, _ in self._values] + [self._budget]))

    def y_for_ms(self, ms: float) -> float:
        height = self.height() - self.TOP - self.BOTTOM
        return self.TOP + height * (1.0 - min(ms, self.scale_ms()) / self.scale_ms())

    def bar_rects(self) -> list[tuple[int, QRectF, bool]]:
        if not self._values:
            return []
        width = self.width() - self.LEFT - self.RIGHT
        slot = width / max(len(self._values), 8)
        bottom = self.height() - self.BOTTOM
        out = []
        for i, (turn_id, ms, over) in enumerate(self._values):
            x = self.LEFT + i * slot + slot * 0.18
            top = self.y_for_ms(ms)
            out.append((turn_id, QRectF(x, top, slot * 0.64, max(1.0, bottom - top)), over))
        return out

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        font = painter.font()
        font.setPointSizeF(max(6.5, font.pointSizeF() * 0.8))
        painter.setFont(font)
        scale = self.scale_ms()
        bottom = self.height() - self.BOTTOM
        for fraction in (0.0, 0.5, 1.0):
            y = self.y_for_ms(scale * fraction)
            painter.setPen(QPen(theme.GRID, 1))
            painter.drawLine(QPointF(self.LEFT, y), QPointF(self.width() - self.RIGHT, y))
            painter.setPen(theme.TEXT_FAINT)
            painter.drawText(
                QRectF(0, y - 8, self.LEFT - 6, 16),
                Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                f"{scale * fraction:.0f}",
            )
        if not self._values:
            painter.setPen(theme.TEXT_FAINT)
            painter.drawText(
                QRectF(self.LEFT, self.TOP, self.width() - self.LEFT, bottom - self.TOP),
                Qt.AlignmentFlag.AlignCenter,
                "No spoken replies yet",
            )
        painter.setPen(Qt.PenStyle.NoPen)
        for turn_id, rect, over in self.bar_rects():
            painter.setBrush(theme.OVER_BUDGET if over else theme.CHART_BAR)
            painter.drawRoundedRect(rect, 2, 2)
            painter.setPen(theme.TEXT_FAINT)
            painter.drawText(
                QRectF(rect.center().x() - 16, bottom + 2, 32, self.BOTTOM - 2),
                Qt.AlignmentFlag.AlignCenter,
                str(turn_id),
            )
            painter.setPen(Qt.PenStyle.NoPen)
        y = self.y_for_ms(self._budget)
        painter.setPen(QPen(theme.BUDGET_LINE, 1.2, Qt.PenStyle.DashLine))
        painter.drawLine(QPointF(self.LEFT, y), QPointF(self.width() - self.RIGHT, y))

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ToolTip and isinstance(event, QHelpEvent):
            pos = event.pos()
            for turn_id, rect, over in self.bar_rects():
                hit = rect.adjusted(-3, 0, 3, 0)
                if hit.left() <= pos.x() <= hit.right():
                    ms = next(v for t, v, _ in self._values if t == turn_id)
                    flag = " — over budget" if over else ""
                    QToolTip.showText(
                        event.globalPos(),
                        f"Turn {turn_id}: {ms:.0f} ms to the first sound "
                        f"(budget {self._budget:.0f} ms){flag}",
                        self,
                    )
                    return True
            QToolTip.hideText()
            return True
        return super().event(event)


class TimelinePanel(QFrame):
    """The side panel: per-turn timeline, legend, voice-to-voice chart and export."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("sidePanel")
        self._timelines: dict[int, Timeline] = {}
        #: Turn id → its number in the conversation shown (ids keep growing across them).
        self._numbers: dict[int, int] = {}
        #: What each turn did besides its timing, by turn id.
        self._details: dict[int, TurnDetails] = {}
        self._budgets = Budgets()
        layout, header = titled_column(self, "Latency", (18, 16, 18, 16))
        self.export_button = QPushButton(" Export…")
        self.export_button.setIcon(icon("export"))
        self.export_button.setToolTip("Save the timelines as JSON or CSV")
        self.export_button.clicked.connect(self.export_dialog)
        header.addWidget(self.export_button)
        caption = QLabel(
            "From the end of your question (spoken or typed) to the first sound of the answer."
        )
        caption.setObjectName("panelCaption")
        caption.setWordWrap(True)
        layout.addWidget(caption)
        self.view = TimelineView()
        layout.addWidget(self.view)
        self.legend = Legend()
        layout.addWidget(self.legend)
        layout.addSpacing(10)
        layout.addWidget(panel_title("Voice-to-voice, recent turns"))
        self.summary = QLabel("")
        self.summary.setObjectName("panelCaption")
        layout.addWidget(self.summary)
        self.chart = LatencyChart()
        layout.addWidget(self.chart)
        layout.addStretch(1)
        self._refresh()

    def on_event(self, event: AppEvent) -> None:
        """Keep a bar per turn as the assistant reports timelines."""
        match event:
            case TimelineUpdated(turn_id=turn_id, timeline=timeline):
                self.update_turn(turn_id, timeline)
            case TurnFinished(turn=record):
                self._details[record.turn_id] = TurnDetails.of(record)
                self.update_turn(record.turn_id, record.timeline)
            case StructuredExtracted(turn_id=turn_id, data=data, error=error):
                known = self._details.get(turn_id, TurnDetails())
                self._details[turn_id] = TurnDetails(known.tools, data, error)
                self._refresh()
            case ConversationLoaded(turns=turns):
                self._numbers = {t.turn_id: n for n, t in enumerate(turns, 1)}
                self._details = {t.turn_id: TurnDetails.of(t) for t in turns}
                self.set_timelines([(t.turn_id, t.timeline) for t in turns])

    def set_budgets(self, budgets: Budgets) -> None:
        self._budgets = budgets
        self.view.set_budgets(budgets)
        self.chart.set_budget(budgets.voice_to_voice)
        self._refresh()

    def clear(self) -> None:
        self._timelines.clear()
        self._numbers.clear()
        self._details.clear()
        self._refresh()

    def number(self, turn_id: int) -> int:
        """The turn's number in the conversation shown, from 1."""
        if turn_id not in self._numbers:
            self._numbers[turn_id] = max(self._numbers.values(), default=0) + 1
        return self._numbers[turn_id]

    def set_timelines(self, timelines: list[tuple[int, Timeline]]) -> None:
        self._timelines = {turn_id: t for turn_id, t in timelines if t}
        self._refresh()

    def update_turn(self, turn_id: int, timeline: Timeline) -> None:
        if timeline:
            self._timelines[turn_id] = timeline
            self._refresh()

    def timelines(self) -> list[tuple[int, Timeline]]:
        return sorted(self._timelines.items())

    def export(self, path: Path) -> None:
        write_export(path, self.timelines(), self._budgets)

    def export_dialog(self) -> None:
        path, _filter = QFileDialog.getSaveFileName(
            self,
            "Export latency timeline",
            str(Path.home() / "parley-timeline.json"),
            "JSON (*.json);;CSV (*.csv)",
        )
        if not path:
            return
        chosen = Path(path)
        if not chosen.suffix:
            chosen = chosen.with_suffix(".csv" if "CSV" in _filter else ".json")
        self.export(chosen)

    def _refresh(self) -> None:
        rows = [(self.number(turn_id), t) for turn_id, t in self.timelines()]
        # The view knows turns by their number in the conversation.
        self.view.details = {self.number(i): d for i, d in self._details.items()}
        self.view.set_turns(rows)
        values = [
            (number, float(t["voice_to_voice_ms"]), "voice_to_voice" in t.get("over_budget", []))
            for number, t in rows
            if isinstance(t.get("voice_to_voice_ms"), int | float)
        ]
        self.chart.set_values(values)
        self.export_button.setEnabled(bool(rows))
        if values:
            recent = [v for _, v, _ in values[-10:]]
            median = sorted(recent)[len(recent) // 2]
            self.summary.setText(
                f"Last {values[-1][1]:.0f} ms · median of {len(recent)}: {median:.0f} ms · "
                f"budget {self._budgets.voice_to_voice:.0f} ms"
            )
        else:
            self.summary.setText(f"Budget {self._budgets.voice_to_voice:.0f} ms")
