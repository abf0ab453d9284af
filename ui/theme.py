"""Colours shared by the custom-painted widgets (the stylesheet covers the standard ones)."""

from __future__ import annotations

from PySide6.QtGui import QColor

TEXT = QColor("#1F2330")
TEXT_SECONDARY = QColor("#6B7280")
TEXT_FAINT = QColor("#A3A9B5")
GRID = QColor("#E6E8EE")
TRACK = QColor("#EEF0F4")
SURFACE = QColor("#FFFFFF")
ACCENT = QColor("#5B5BD6")

#: Text of the reply generated but not yet spoken (dimmed), and the interruption marker.
UNSPOKEN_HTML = "#9AA0AC"
INTERRUPTED_HTML = "#D14343"
#: The filler said while a tool runs ("One moment."): heard, but not part of the answer.
FILLER_HTML = "#A3A9B5"

STATE_COLORS: dict[str, QColor] = {
    "loading": QColor("#9CA3AF"),
    "idle": QColor("#9CA3AF"),
    "listening": QColor("#10B981"),
    "user_speaking": QColor("#3B82F6"),
    "thinking": QColor("#F59E0B"),
    "speaking": QColor("#8B5CF6"),
    "interrupted": QColor("#EF4444"),
}

#: Pipeline stages of the latency timeline, in order.
STAGE_COLORS: dict[str, QColor] = {
    "stt": QColor("#60A5FA"),
    "llm": QColor("#F5B544"),
    "text": QColor("#2DD4BF"),
    "tts": QColor("#A78BFA"),
    "output": QColor("#6EE7B7"),
}
OVER_BUDGET = QColor("#EF4444")
BUDGET_LINE = QColor("#EF4444")
CHART_BAR = QColor("#818CF8")
