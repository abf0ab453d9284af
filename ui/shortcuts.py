"""The window's keyboard shortcuts, in one table: the menus, the Help list and the README agree.

The talk key itself (Space by default) is not here: it is held, not pressed, and it is set in
the settings (``ui/hotkeys.py`` handles it).
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtGui import QKeySequence


@dataclass(frozen=True, slots=True)
class Shortcut:
    name: str
    keys: tuple[str, ...]  # portable text, first one shown in menus
    what: str


SHORTCUTS: tuple[Shortcut, ...] = (
    Shortcut("new", ("Ctrl+N",), "Start a new conversation (the current one stays saved)"),
    Shortcut("find", ("Ctrl+K",), "Show the conversation list and search it"),
    Shortcut("export", ("Ctrl+E",), "Export the current conversation (Markdown or JSON)"),
    Shortcut("type", ("Ctrl+L",), "Type a message (Esc leaves the message box)"),
    Shortcut("hands_free", ("Ctrl+Shift+H",), "Hands-free on or off"),
    Shortcut("stop", ("Ctrl+.",), "Stop the answer (Esc does too)"),
    Shortcut("settings", ("Ctrl+,",), "Settings"),
    Shortcut("shortcuts", ("F1",), "This list of shortcuts"),
    Shortcut("quit", ("Ctrl+Q",), "Quit Parley"),
)
BY_NAME = {s.name: s for s in SHORTCUTS}


def sequences(name: str) -> list[QKeySequence]:
    """The key sequences of a shortcut (Settings also gets the platform's Preferences key)."""
    keys = [QKeySequence(k) for k in BY_NAME[name].keys]
    if name == "settings":
        keys.insert(0, QKeySequence(QKeySequence.StandardKey.Preferences))
    return [k for k in dict.fromkeys(keys) if not k.isEmpty()]


def native(keys: str) -> str:
    """``keys`` as the platform writes them (Ctrl on Linux and Windows, ⌘ on macOS)."""
    return QKeySequence(keys).toString(QKeySequence.SequenceFormat.NativeText) or keys


def rows(talk_key: str) -> list[tuple[str, str]]:
    """(keys, what they do) for the Help list, the held talk key first."""
    held = [
        (f"Hold {talk_key}", "Talk (push-to-talk), unless a text field has the keyboard"),
        ("Esc", "Stop the answer; in a text field, leave it so the talk key works again"),
        ("Tab, Shift+Tab", "Move between the controls; Enter or Space presses a button"),
    ]
    return held + [(", ".join(native(k) for k in s.keys), s.what) for s in SHORTCUTS]
