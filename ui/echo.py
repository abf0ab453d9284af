"""Echo cancellation in the window: its settings (Audio tab) and a badge while it works.

``EchoSettings`` is the Audio tab's group for echo cancellation (on / automatic / off) and noise
suppression; ``EchoBadge`` is a small label in the header that shows, from ``EchoStatus``
events, that the assistant's own voice is being cancelled from the microphone (and whether it is
still learning the room), with the details in its tooltip and accessible description.
"""

from __future__ import annotations

from PySide6.QtWidgets import QCheckBox, QComboBox, QFormLayout, QGroupBox, QLabel, QWidget

from assistant.config import Settings
from assistant.events import AppEvent, EchoStatus

ECHO_CHOICES = (
    ("auto", "Automatic (on unless a headset is used)"),
    ("on", "On"),
    ("off", "Off (headphones)"),
)


class EchoSettings(QGroupBox):
    """Echo cancellation and noise suppression, as edited in the settings dialog."""

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__("Hands-free on speakers", parent)
        form = QFormLayout(self)
        self.echo_combo = QComboBox()
        for value, label in ECHO_CHOICES:
            self.echo_combo.addItem(label, value)
        index = self.echo_combo.findData(settings.echo_cancellation)
        self.echo_combo.setCurrentIndex(max(0, index))
        self.echo_combo.setToolTip(
            "Removes Parley's own voice from the microphone, so on a laptop's speakers it does "
            "not hear itself and you can talk over it. Not needed with headphones."
        )
        self.echo_combo.setAccessibleName("Echo cancellation")
        form.addRow("Echo cancellation", self.echo_combo)
        self.noise_check = QCheckBox("Suppress background noise (fans, hum)")
        self.noise_check.setChecked(settings.noise_suppression)
        self.noise_check.setAccessibleName("Noise suppression")
        form.addRow("", self.noise_check)

    def apply_to(self, settings: Settings) -> None:
        """Write the choices into ``settings``."""
        value = str(self.echo_combo.currentData() or "auto")
        settings.echo_cancellation = value  # type: ignore[assignment]
        settings.noise_suppression = self.noise_check.isChecked()


class EchoBadge(QLabel):
    """ "Echo cancelled" in the header while echo cancellation works; hidden otherwise."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("appSubtitle")
        self.setAccessibleName("Echo cancellation")
        self.hide()

    def on_event(self, event: AppEvent) -> None:
        if not isinstance(event, EchoStatus):
            return
        parts = []
        if event.cancelling:
            parts.append("Echo cancelled" if event.settled else "Echo: learning the room")
        if event.noise_suppression:
            parts.append("Noise suppressed")
        self.setText(" · ".join(parts))
        self.setToolTip(event.detail)
        self.setAccessibleDescription(event.detail)
        self.setVisible(bool(parts))
