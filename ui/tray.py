"""The tray icon: what Parley is doing and whether the system-wide talk key is on, at a glance.

Its menu shows or hides the window and reaches the commands that matter while the window is
hidden. It is shown only where the desktop has a tray (``available``); Parley works the same
without one.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QRectF, Qt, Signal
from PySide6.QtGui import QAction, QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import QMenu, QSystemTrayIcon, QWidget

from ui.resources import icon

SIZE = 64


def status_icon(color: QColor) -> QIcon:
    """Parley's icon with a dot of the state's colour in its corner."""
    pixmap = QPixmap(SIZE, SIZE)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    icon("parley").paint(painter, 0, 0, SIZE, SIZE)
    painter.setPen(QColor("#FFFFFF"))
    painter.setBrush(color)
    painter.drawEllipse(QRectF(SIZE * 0.56, SIZE * 0.56, SIZE * 0.4, SIZE * 0.4))
    painter.end()
    return QIcon(pixmap)


class Tray(QObject):
    """``toggle_window``/``quit`` and the command signals are connected by the window."""

    toggle_window = Signal()
    hands_free = Signal(bool)
    stop = Signal()
    new_conversation = Signal()
    quit = Signal()

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.icon = QSystemTrayIcon(icon("parley"), parent)
        self.menu = QMenu(parent)
        self.show_action = self.menu.addAction("Show Parley")
        self.show_action.triggered.connect(self.toggle_window.emit)
        self.menu.addSeparator()
        self.hands_free_action = QAction("Hands-free", self.menu)
        self.hands_free_action.setCheckable(True)
        self.hands_free_action.toggled.connect(self.hands_free.emit)
        self.menu.addAction(self.hands_free_action)
        self.stop_action = self.menu.addAction("Stop the answer")
        self.stop_action.triggered.connect(self.stop.emit)
        self.new_action = self.menu.addAction("New conversation")
        self.new_action.triggered.connect(self.new_conversation.emit)
        self.menu.addSeparator()
        self.quit_action = self.menu.addAction("Quit Parley")
        self.quit_action.triggered.connect(self.quit.emit)
        self.icon.setContextMenu(self.menu)
        self.icon.activated.connect(self._activated)
        self.tooltip = ""
        self.set_status("Loading…", QColor("#9CA3AF"), "")

    @staticmethod
    def available() -> bool:
        return QSystemTrayIcon.isSystemTrayAvailable()

    def show(self) -> bool:
        """Show the icon where there is a tray; False where there is none."""
        if not self.available():
            return False
        self.icon.show()
        return True

    def hide(self) -> None:
        self.icon.hide()

    def set_status(self, state: str, color: QColor, hotkey: str) -> None:
        """``hotkey``: how the system-wide talk key stands ("" when it is off)."""
        talk = hotkey or "System-wide talk key: off (Settings → Turns)"
        self.tooltip = f"Parley — {state}\n{talk}"
        self.icon.setToolTip(self.tooltip)
        self.icon.setIcon(status_icon(color))

    def set_window_visible(self, visible: bool) -> None:
        self.show_action.setText("Hide Parley" if visible else "Show Parley")

    def set_hands_free(self, on: bool) -> None:
        if self.hands_free_action.isChecked() != on:
            self.hands_free_action.blockSignals(True)
            self.hands_free_action.setChecked(on)
            self.hands_free_action.blockSignals(False)

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason in (
            QSystemTrayIcon.ActivationReason.Trigger,
            QSystemTrayIcon.ActivationReason.DoubleClick,
        ):
            self.toggle_window.emit()
