"""Small constructors for what the window builds again and again: a box the style sheet names,
and a push button with an icon."""

from __future__ import annotations

from PySide6.QtCore import QSize
from PySide6.QtWidgets import QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from ui.resources import icon


def styled_box[L: (QHBoxLayout, QVBoxLayout)](
    name: str, layout: type[L], margins: tuple[int, int, int, int], spacing: int
) -> tuple[QWidget, L]:
    """A widget with the object name ``name`` (its style sheet selector), laid out by a new
    ``layout`` with ``margins`` (left, top, right, bottom) and ``spacing`` px between items.
    Returns the widget and its layout."""
    box = QWidget()
    box.setObjectName(name)
    laid = layout(box)
    laid.setContentsMargins(*margins)
    laid.setSpacing(spacing)
    return box, laid


def icon_button(text: str, name: str, icon_name: str, icon_px: int | None = None) -> QPushButton:
    """A push button showing ``text`` after the icon ``icon_name`` (drawn ``icon_px`` square,
    or at the style's size when None), with the object name ``name``."""
    button = QPushButton(text)
    button.setObjectName(name)
    button.setIcon(icon(icon_name))
    if icon_px is not None:
        button.setIconSize(QSize(icon_px, icon_px))
    return button
