"""The frame of the window's side panels (conversations, latency): a column of widgets under a
header row whose title takes the style sheet's ``panelTitle`` look."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget


def panel_title(text: str) -> QLabel:
    """A title in a side panel (its header's, or one above a part of it)."""
    label = QLabel(text)
    label.setObjectName("panelTitle")
    return label


def titled_column(
    owner: QWidget, title: str, margins: tuple[int, int, int, int]
) -> tuple[QVBoxLayout, QHBoxLayout]:
    """``owner``'s layout: a column with ``margins`` (left, top, right, bottom) and 8 px between
    its items, first a header row holding ``title`` then a stretch. Returns the column, and the
    header row, to which a caller adds its buttons on the right."""
    column = QVBoxLayout(owner)
    column.setContentsMargins(*margins)
    column.setSpacing(8)
    header = QHBoxLayout()
    header.addWidget(panel_title(title))
    header.addStretch(1)
    column.addLayout(header)
    return column, header
