"""Hold-to-talk keys: one that works while the window is focused, and an optional system-wide one.

The in-window key is an application-level event filter, so a focused button cannot swallow it,
and it ignores the keyboard's auto-repeat, so holding the key does not end the turn. It leaves
text fields alone (Space types a space there) unless the hotkey has a modifier.

The system-wide key uses pynput when it is installed and the display server allows it.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, cast

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QKeySequenceEdit,
    QLineEdit,
    QPlainTextEdit,
    QTextEdit,
    QWidget,
)

log = logging.getLogger(__name__)

#: A key release followed by a press within this time is keyboard auto-repeat, not a let-go.
RELEASE_DEBOUNCE_MS = 35

_MODIFIERS = (
    Qt.KeyboardModifier.ControlModifier
    | Qt.KeyboardModifier.AltModifier
    | Qt.KeyboardModifier.MetaModifier
    | Qt.KeyboardModifier.ShiftModifier
)


def parse_hotkey(text: str) -> tuple[Qt.Key, Qt.KeyboardModifier] | None:
    """``"Space"``, ``"F8"``, ``"Ctrl+Space"`` → (key, modifiers); None if not a single key."""
    sequence = QKeySequence.fromString(
        text.strip() or "Space", QKeySequence.SequenceFormat.PortableText
    )
    if sequence.count() != 1:
        return None
    combination = cast(Any, sequence)[0]  # QKeySequence is indexable; the stubs miss it
    key = combination.key()
    if key == Qt.Key.Key_unknown:
        return None
    return key, combination.keyboardModifiers()


def hotkey_label(text: str) -> str:
    """How to show the hotkey to the user (in the platform's own notation)."""
    sequence = QKeySequence.fromString(text or "Space", QKeySequence.SequenceFormat.PortableText)
    return sequence.toString(QKeySequence.SequenceFormat.NativeText) or text


def _is_text_input(widget: QWidget | None) -> bool:
    if widget is None:
        return False
    if isinstance(widget, QComboBox):
        return widget.isEditable()
    return isinstance(
        widget, QLineEdit | QTextEdit | QPlainTextEdit | QAbstractSpinBox | QKeySequenceEdit
    )


class HoldToTalkFilter(QObject):
    """Application-wide event filter: the hotkey held → ``pressed``, let go → ``released``.

    Also sends ``escape`` for Esc. Acts only while ``window`` is the active window.
    """

    pressed = Signal()
    released = Signal()
    escape = Signal()

    def __init__(self, window: QWidget, hotkey: str = "Space") -> None:
        super().__init__(window)
        self._window = window
        self._key: Qt.Key = Qt.Key.Key_Space
        self._modifiers = Qt.KeyboardModifier.NoModifier
        self.held = False
        # Some X servers do not flag auto-repeat; their repeats arrive as a release immediately
        # followed by a press. A release therefore counts only once no press follows it.
        self._release_timer = QTimer(self)
        self._release_timer.setSingleShot(True)
        self._release_timer.setInterval(RELEASE_DEBOUNCE_MS)
        self._release_timer.timeout.connect(self._finish_release)
        self.set_hotkey(hotkey)

    def set_hotkey(self, hotkey: str) -> bool:
        parsed = parse_hotkey(hotkey)
        if parsed is None:
            log.warning("hotkey %r is not a single key; keeping the previous one", hotkey)
            return False
        self._key, self._modifiers = parsed
        return True

    @property
    def key(self) -> Qt.Key:
        return self._key

    def install(self) -> None:
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self)

    def remove(self) -> None:
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self)

    def release_if_held(self) -> None:
        """The window lost focus while the key was down: end the turn, do not get stuck."""
        if self.held:
            self._finish_release()

    def _finish_release(self) -> None:
        self._release_timer.stop()
        if self.held:
            self.held = False
            self.released.emit()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind not in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease):
            if kind == QEvent.Type.ApplicationDeactivate:
                self.release_if_held()
            return False
        # A key event reaches the filter once per widget it propagates through; act once.
        if not isinstance(event, QKeyEvent) or not isinstance(watched, QWidget):
            return False
        if watched.window() is not self._window or QApplication.activeWindow() is not self._window:
            return False
        if watched is not (QApplication.focusWidget() or self._window):
            return False
        return self._handle(event)

    def _handle(self, event: QKeyEvent) -> bool:
        key = event.key()
        press = event.type() == QEvent.Type.KeyPress
        if key == Qt.Key.Key_Escape and press:
            if not event.isAutoRepeat():
                self.escape.emit()
            return False  # let text fields and menus see Esc too
        if key != self._key:
            return False
        if press and not self.held:
            wanted = self._modifiers & _MODIFIERS
            if (event.modifiers() & _MODIFIERS) != wanted:
                return False
            if not wanted and _is_text_input(QApplication.focusWidget()):
                return False
            if event.isAutoRepeat():
                return True  # still held from before the window took the keyboard
            self.held = True
            self.pressed.emit()
            return True
        if not self.held:
            return False
        # Auto-repeat sends release/press pairs while the key is held: ignore both.
        if event.isAutoRepeat():
            return True
        if press:
            self._release_timer.stop()  # the release just before was a repeat
        else:
            self._release_timer.start()
        return True


# ------------------------------------------------------------------------------ system-wide


def global_hotkey_status() -> str | None:
    """None when a system-wide hotkey can work here; else a sentence saying why not."""
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        if os.environ.get("WAYLAND_DISPLAY"):
            return (
                "Wayland does not let applications watch keys system-wide; use the in-window "
                "hotkey (or run Parley under XWayland with DISPLAY set)."
            )
        return "No X11 display, so a system-wide hotkey is not possible here."
    try:
        from pynput import keyboard  # noqa: F401
    except ImportError:
        return (
            "The system-wide hotkey needs the 'pynput' package, which is not installed "
            "(pip install pynput)."
        )
    except Exception as exc:  # pynput's backends fail at import when the display refuses them
        return f"The system-wide hotkey is not available on this display ({exc})."
    return None


def global_hotkey_note() -> str:
    """What the user must allow for a system-wide hotkey on this system."""
    if sys.platform == "darwin":
        return (
            "macOS asks for permission: System Settings → Privacy & Security → Accessibility "
            "(and Input Monitoring) must allow Parley or the terminal that runs it."
        )
    if sys.platform == "win32":
        return (
            "Works while Parley runs; keys typed into elevated (administrator) windows are "
            "not seen."
        )
    return "Works under X11. Wayland sessions do not allow it."


def _pynput_key(key: Qt.Key) -> Any:
    from pynput import keyboard

    names = {
        Qt.Key.Key_Space: keyboard.Key.space,
        Qt.Key.Key_Pause: keyboard.Key.pause,
        Qt.Key.Key_ScrollLock: keyboard.Key.scroll_lock,
        Qt.Key.Key_Insert: keyboard.Key.insert,
    }
    if key in names:
        return names[key]
    if Qt.Key.Key_F1 <= key <= Qt.Key.Key_F20:
        return getattr(keyboard.Key, f"f{int(key) - int(Qt.Key.Key_F1) + 1}")
    text = QKeySequence(key).toString().lower()
    if len(text) == 1:
        return keyboard.KeyCode.from_char(text)
    raise ValueError(f"the key {text!r} cannot be used as a system-wide hotkey")


class GlobalHotkey(QObject):
    """A system-wide hold-to-talk key: a pynput listener thread, debounced on the Qt thread."""

    pressed = Signal()
    released = Signal()
    # Emitted on pynput's thread; Qt queues them to this object's (the GUI) thread.
    _key_down = Signal()
    _key_up = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._listener: Any = None
        self.held = False
        self._release_timer = QTimer(self)
        self._release_timer.setSingleShot(True)
        self._release_timer.setInterval(RELEASE_DEBOUNCE_MS)
        self._release_timer.timeout.connect(self._finish_release)
        self._key_down.connect(self._on_down)
        self._key_up.connect(self._on_up)

    @property
    def running(self) -> bool:
        return self._listener is not None

    def start(self, hotkey: str) -> str | None:
        """Start listening; returns None, or why it cannot (shown in the settings)."""
        self.stop()
        problem = global_hotkey_status()
        if problem is not None:
            return problem
        parsed = parse_hotkey(hotkey)
        if parsed is None:
            return f"{hotkey!r} is not a single key."
        try:
            from pynput import keyboard

            target = _pynput_key(parsed[0])

            # pynput's thread: only emit signals, never touch widgets.
            def on_press(key: Any) -> None:
                if key == target:
                    self._key_down.emit()

            def on_release(key: Any) -> None:
                if key == target:
                    self._key_up.emit()

            listener = keyboard.Listener(on_press=on_press, on_release=on_release)
            listener.daemon = True
            listener.start()
        except Exception as exc:
            log.warning("system-wide hotkey unavailable: %s", exc)
            return f"The system-wide hotkey could not start: {exc}"
        self._listener = listener
        return None

    def _on_down(self) -> None:
        if self._release_timer.isActive():
            self._release_timer.stop()  # auto-repeat: the key never went up
        elif not self.held:
            self.held = True
            self.pressed.emit()

    def _on_up(self) -> None:
        if self.held:
            self._release_timer.start()

    def _finish_release(self) -> None:
        if self.held:
            self.held = False
            self.released.emit()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.stop()
            except Exception as exc:
                log.debug("stopping the hotkey listener: %s", exc)
        self._release_timer.stop()
        self._finish_release()
