"""Non-modal messages at the top of the window: what went wrong and what to do about it."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ui.resources import icon
from ui.widgets import icon_button

KINDS = ("error", "warning", "info")
_ICONS = {"error": "alert", "warning": "warning", "info": "info"}


class Banner(QFrame):
    """One message with an optional action button and a close button."""

    closed = Signal()

    def __init__(
        self,
        message: str,
        kind: str = "error",
        action: tuple[str, Callable[[], None]] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        self.kind = kind if kind in KINDS else "error"
        self.setProperty("kind", self.kind)
        self.count = 1
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 8, 8, 8)
        layout.setSpacing(10)
        badge = QLabel()
        badge.setPixmap(icon(_ICONS[self.kind]).pixmap(QSize(18, 18)))
        badge.setAlignment(Qt.AlignmentFlag.AlignTop)
        layout.addWidget(badge)
        self.message = message
        self.label = QLabel(message)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.label, 1)
        self.action_button: QPushButton | None = None
        if action is not None:
            text, callback = action
            self.action_button = QPushButton(text)
            self.action_button.setAccessibleDescription(message)
            self.action_button.clicked.connect(callback)
            layout.addWidget(self.action_button, 0, Qt.AlignmentFlag.AlignVCenter)
        close = icon_button("", "iconButton", "close")
        close.setToolTip("Dismiss")
        close.setAccessibleName("Dismiss message")
        close.setAccessibleDescription(message)
        close.clicked.connect(self.dismiss)
        self.close_button = close
        self.setAccessibleName(f"{self.kind.capitalize()} message")
        self.setAccessibleDescription(message)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)

    def repeat(self) -> None:
        self.count += 1
        self.label.setText(f"{self.message} (×{self.count})")

    def dismiss(self) -> None:
        self.hide()
        self.closed.emit()
        self.deleteLater()


class BannerArea(QWidget):
    """A stack of banners; the same message twice is counted, not repeated."""

    MAX_VISIBLE = 3

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(16, 10, 16, 0)
        self._layout.setSpacing(6)
        self._banners: list[Banner] = []
        self.hide()

    def show_message(
        self,
        message: str,
        kind: str = "error",
        action: tuple[str, Callable[[], None]] | None = None,
        timeout_ms: int | None = None,
    ) -> Banner:
        for banner in self._banners:
            if banner.message == message:
                banner.repeat()
                return banner
        banner = Banner(message, kind, action, self)
        banner.closed.connect(lambda b=banner: self._forget(b))
        self._banners.append(banner)
        self._layout.addWidget(banner)
        while len(self._banners) > self.MAX_VISIBLE:
            self._banners[0].dismiss()
        if timeout_ms:
            QTimer.singleShot(timeout_ms, banner, banner.dismiss)
        self.show()
        return banner

    def messages(self) -> list[str]:
        return [b.message for b in self._banners]

    def banners(self) -> list[Banner]:
        return list(self._banners)

    def dismiss(self, message: str) -> None:
        """Take away the banner showing ``message``, if one does (its cause went away)."""
        for banner in list(self._banners):
            if banner.message == message:
                banner.dismiss()

    def clear(self, kind: str | None = None) -> None:
        for banner in list(self._banners):
            if kind is None or banner.kind == kind:
                banner.dismiss()

    def _forget(self, banner: Banner) -> None:
        if banner in self._banners:
            self._banners.remove(banner)
        if not self._banners:
            self.hide()
