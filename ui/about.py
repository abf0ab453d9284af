"""Help → About, and the microphone-permission explanation, as dialogs the window can open.

``about_html`` says which Parley this is and where its files are (the log file first: it is what
a bug report needs); ``show_microphone_help`` explains the OS's microphone privacy setting and
offers to open it.
"""

from __future__ import annotations

import html
import sys

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QMessageBox, QWidget

from assistant import __version__, config, logfile, mic_access

CREDITS = (
    "Speech recognition: Whisper (MIT) via faster-whisper and CTranslate2. "
    "Language model: Qwen2.5-Coder (Apache-2.0) in llama.cpp (MIT). "
    "Voices: Piper (GPL-3.0), SVOX Pico (Apache-2.0), eSpeak NG (GPL-3.0). "
    "Voice activity: Silero VAD (MIT); end of turn: Smart Turn (BSD-2-Clause)."
)


def about_html() -> str:
    """The About box's text: version, where the log, settings and conversations live, credits."""
    rows = (
        ("Log file", logfile.log_path()),
        ("Settings", config.settings_path()),
        ("Conversations", config.data_dir() / "conversations"),
    )
    places = "".join(
        f"<tr><td><b>{name}</b>&nbsp;</td><td>{html.escape(str(path))}</td></tr>"
        for name, path in rows
    )
    return (
        f"<h3>{config.APP_NAME} {html.escape(__version__)}</h3>"
        "<p>A voice assistant that talks with you, locally by default.</p>"
        f"<table>{places}</table>"
        "<p>Attach the log file when you report a problem: it never contains API keys.</p>"
        f"<p><small>{html.escape(CREDITS)}</small></p>"
    )


def show_about(parent: QWidget | None) -> None:
    QMessageBox.about(parent, f"About {config.APP_NAME}", about_html())


def show_microphone_help(parent: QWidget | None, platform: str | None = None) -> None:
    """Explain the microphone permission; "Open settings" opens the OS's privacy page."""
    platform = platform or sys.platform
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Information)
    box.setWindowTitle("Microphone access")
    box.setText(mic_access.microphone_help(platform))
    uri = mic_access.privacy_settings_uri(platform)
    open_button = box.addButton("Open settings", QMessageBox.ButtonRole.AcceptRole) if uri else None
    box.addButton(QMessageBox.StandardButton.Close)
    box.exec()
    if uri and box.clickedButton() is open_button:
        QDesktopServices.openUrl(QUrl(uri))
