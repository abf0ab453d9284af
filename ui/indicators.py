"""The conversation state as a coloured pill, and the live microphone level meter."""

from __future__ import annotations

import math
import time

from PySide6.QtCore import QRectF, QSize, Qt, QTimer
from PySide6.QtGui import QColor, QFontMetrics, QLinearGradient, QPainter, QPaintEvent
from PySide6.QtWidgets import QSizePolicy, QWidget

from assistant.events import (
    AppEvent,
    AudioStatus,
    Doing,
    MicLevel,
    PauseJudged,
    StateChanged,
    UserSpeechStarted,
)
from ui import theme

STATE_LABELS: dict[str, str] = {
    "loading": "Loading…",
    "idle": "Idle",
    "listening": "Listening",
    "user_speaking": "You're speaking",
    "thinking": "Thinking…",
    "speaking": "Speaking",
    "interrupted": "Interrupted",
}
#: Shown instead of "You're speaking" while Parley waits because the user seems not to be done
#: (a thinking pause after "I'd like to book a table for…"), so they know they can go on.
TAKING_TIME_LABEL = "Listening… take your time"


#: What the pill says while the user waits, by what Parley is doing.
ACTIVITY_LABELS: dict[Doing, str] = {
    Doing.READING: "Reading your message…",
    Doing.THINKING: "Thinking…",
    Doing.TOOL: "Calling {detail}…",
    Doing.SWITCHING: "Switching engines…",
}
#: A tool's name is cut to this many characters in the pill.
TOOL_NAME_CHARS = 12


def activity_label(doing: Doing, detail: str, elapsed: float) -> str:
    """``"Thinking… 4 s"``: what Parley is doing and for how long (from the first second)."""
    name = detail if len(detail) <= TOOL_NAME_CHARS else detail[: TOOL_NAME_CHARS - 1] + "…"
    text = ACTIVITY_LABELS[doing].format(detail=name or "a tool")
    return f"{text} {int(elapsed)} s" if elapsed >= 1 else text


class StateIndicator(QWidget):
    """A pill with a coloured dot and the state's name, or what Parley is busy with.

    The window sets the state; the pill itself follows the session's pauses (``on_event``):
    while the user is mid-turn and Parley waits for more, it says so.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._state = "loading"
        self._label = STATE_LABELS["loading"]
        self._taking_time = False
        # As wide as its longest text when there is room; in a narrow window as wide as the
        # longest state, the text of a long wait then cut short.
        self.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Fixed)
        self.setAccessibleName("Status")
        self.setAccessibleDescription(self._label)

    @property
    def state(self) -> str:
        return self._state

    @property
    def text(self) -> str:
        return TAKING_TIME_LABEL if self._waits() else self._label

    def set_state(self, state: str, label: str | None = None) -> None:
        state = state if state in STATE_LABELS else "idle"
        label = label or STATE_LABELS[state]
        if (state, label) == (self._state, self._label):
            return
        self._state, self._label = state, label
        self._changed()

    def on_event(self, event: AppEvent) -> None:
        match event:
            case PauseJudged(waiting=waiting) if waiting != self._taking_time:
                self._taking_time = waiting
                self._changed()
            case UserSpeechStarted() | StateChanged() if self._taking_time:
                self._taking_time = False
                self._changed()

    def _waits(self) -> bool:
        return self._taking_time and self._state == "user_speaking"

    def _changed(self) -> None:
        self.setToolTip(f"State: {self.text}")
        self.setAccessibleDescription(self.text)
        self.updateGeometry()
        self.update()

    def color(self) -> QColor:
        return theme.STATE_COLORS["listening" if self._waits() else self._state]

    def sizeHint(self) -> QSize:
        # As wide as the longest state or wait, so the header does not shift as it changes.
        samples = [activity_label(d, "x" * TOOL_NAME_CHARS, 88) for d in ACTIVITY_LABELS]
        return self._fitting((*STATE_LABELS.values(), TAKING_TIME_LABEL, *samples))

    def minimumSizeHint(self) -> QSize:
        return self._fitting(tuple(STATE_LABELS.values()))

    def _fitting(self, texts: tuple[str, ...]) -> QSize:
        font = self.font()
        font.setBold(True)
        metrics = QFontMetrics(font)
        widest = max(metrics.horizontalAdvance(t) for t in texts)
        return QSize(widest + 42, max(28, metrics.height() + 12))

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        color = self.color()
        rect = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        fill = QColor(color)
        fill.setAlpha(28)
        border = QColor(color)
        border.setAlpha(90)
        painter.setPen(border)
        painter.setBrush(fill)
        radius = rect.height() / 2
        painter.drawRoundedRect(rect, radius, radius)
        font = painter.font()
        font.setBold(True)
        painter.setFont(font)
        room = int(rect.width()) - 42
        label = painter.fontMetrics().elidedText(self.text, Qt.TextElideMode.ElideMiddle, room)
        text_width = painter.fontMetrics().horizontalAdvance(label)
        left = rect.left() + max(10.0, (rect.width() - text_width - 16) / 2)  # dot + gap = 16
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(color)
        painter.drawEllipse(QRectF(left, rect.center().y() - 4.5, 9, 9))
        painter.setPen(color.darker(150))
        text_rect = QRectF(left + 16, rect.top(), text_width + 4, rect.height())
        painter.drawText(
            text_rect, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, label
        )


class LevelMeter(QWidget):
    """Microphone level on a dB scale, rising at once and falling smoothly."""

    FLOOR_DB = -60.0
    FALL_PER_SECOND = 1.2  # of the full scale

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._level = 0.0
        self._shown = 0.0
        self._at = time.monotonic()
        self._enabled_input = True
        self._timer = QTimer(self)
        self._timer.setInterval(33)
        self._timer.timeout.connect(self._decay)
        # Narrower than its preferred width when the header is short of room.
        self.setMinimumSize(80, 10)
        self.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Fixed)
        self.setToolTip("Microphone level")

    @property
    def level(self) -> float:
        """The displayed level, 0..1."""
        return self._shown

    def sizeHint(self) -> QSize:
        return QSize(140, 10)

    @classmethod
    def to_fraction(cls, rms: float) -> float:
        if rms <= 0:
            return 0.0
        db = 20.0 * math.log10(max(rms, 1e-9))
        return min(1.0, max(0.0, (db - cls.FLOOR_DB) / -cls.FLOOR_DB))

    def set_rms(self, rms: float) -> None:
        self._level = self.to_fraction(rms)
        if self._level >= self._shown:
            self._shown = self._level
        self._at = time.monotonic()
        if not self._timer.isActive():
            self._timer.start()
        self.update()

    def on_event(self, event: AppEvent) -> None:
        match event:
            case MicLevel(rms=rms):
                self.set_rms(rms)
            case AudioStatus(microphone_ok=available):
                self.set_input_available(available)

    def set_input_available(self, available: bool) -> None:
        self._enabled_input = available
        self.setToolTip("Microphone level" if available else "No microphone")
        if not available:
            self._level = self._shown = 0.0
        self.update()

    def _decay(self) -> None:
        now = time.monotonic()
        dt, self._at = now - self._at, now
        self._shown = max(self._level, self._shown - self.FALL_PER_SECOND * dt)
        self._level = max(0.0, self._level - self.FALL_PER_SECOND * dt)
        if self._shown <= 0.0:
            self._timer.stop()
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        radius = rect.height() / 2
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(theme.TRACK)
        painter.drawRoundedRect(rect, radius, radius)
        if not self._enabled_input or self._shown <= 0.0:
            return
        filled = QRectF(
            rect.left(), rect.top(), max(rect.height(), rect.width() * self._shown), rect.height()
        )
        gradient = QLinearGradient(rect.left(), 0, rect.right(), 0)
        gradient.setColorAt(0.0, QColor("#34D399"))
        gradient.setColorAt(0.7, QColor("#FBBF24"))
        gradient.setColorAt(1.0, QColor("#EF4444"))
        painter.setBrush(gradient)
        painter.drawRoundedRect(filled, radius, radius)
