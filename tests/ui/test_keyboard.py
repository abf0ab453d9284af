"""The window from the keyboard and through Qt's accessibility interface: every control is
reachable, named and focusable; the shortcuts act; Enter presses the focused button; Space talks
again after a message is sent; the settings open again after OK, Cancel and Esc."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QAccessible, QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QDialogButtonBox,
    QKeySequenceEdit,
    QLineEdit,
    QPlainTextEdit,
    QScrollArea,
    QTabBar,
    QWidget,
)

from assistant.events import SettingsApplied
from tests.ui.helpers import PATIENCE, collect, fake_settings, run, show_window, started, until
from ui.main_window import MainWindow
from ui.settings_dialog import SettingsDialog

pytestmark = pytest.mark.gui

INTERACTIVE = (
    QAbstractButton,
    QComboBox,
    QLineEdit,
    QAbstractSpinBox,
    QPlainTextEdit,
    QKeySequenceEdit,
    QAbstractItemView,
    QTabBar,
)


make_window = show_window


def press(target: QWidget, key: Qt.Key, modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    """A key press and release sent the way Qt delivers them (through the app's filters)."""
    for kind in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease):
        QApplication.sendEvent(target, QKeyEvent(kind, key, modifiers, ""))


def shortcut(window: MainWindow, keys: str) -> None:
    """Trigger the window's action bound to ``keys`` (as the shortcut system would)."""
    wanted = QKeySequence(keys)
    matching = [a for a in window.actions() if wanted in a.shortcuts()]
    assert matching, f"no action for {keys}"
    matching[0].trigger()


def interactive_widgets(root: QWidget) -> list[QWidget]:
    """The controls a user can operate, as shown (parts of other controls left out)."""
    found = []
    for widget in root.findChildren(QWidget):
        if not isinstance(widget, INTERACTIVE) or not widget.isVisibleTo(root):
            continue
        parent = widget.parentWidget()
        if isinstance(parent, QLineEdit | QTabBar | QAbstractSpinBox | QKeySequenceEdit):
            continue  # a field's clear button, a tab bar's scroll arrows, an inner editor
        if widget.focusProxy() is not None:
            continue  # the proxy is checked instead
        found.append(widget)
    return found


def accessible_problems(root: QWidget) -> list[str]:
    """Every interactive control without keyboard focus or a name in the accessibility tree."""
    problems = []
    for widget in interactive_widgets(root):
        label = f"{type(widget).__name__} {widget.objectName()!r}"
        if not widget.focusPolicy() & Qt.FocusPolicy.TabFocus:
            problems.append(f"{label}: not reachable with Tab")
        interface = QAccessible.queryAccessibleInterface(widget)
        if interface is None:
            problems.append(f"{label}: no accessible interface")
            continue
        name = interface.text(QAccessible.Text.Name).strip()
        if not name:
            problems.append(f"{label}: no accessible name")
        if not interface.state().focusable:
            problems.append(f"{label}: not focusable to assistive technology")
    return problems


def test_every_control_in_the_window_is_focusable_and_named(qtbot, assistants):
    window = make_window(qtbot, assistants())
    window.banners.show_message("No microphone.", "error", ("Retry", lambda: None))
    widgets = interactive_widgets(window)
    names = {QAccessible.queryAccessibleInterface(w).text(QAccessible.Text.Name) for w in widgets}
    # The icon-only buttons are named too.
    assert {"Settings", "Conversations", "New conversation", "Hold to talk"} <= names
    assert {"Stop the answer", "Hands-free", "Send", "Message", "Search conversations"} <= names
    assert {"Retry", "Dismiss message", "Past conversations", "Export latency timelines"} <= names
    assert accessible_problems(window) == []
    # Descriptions say what each does (and the shortcut).
    settings = QAccessible.queryAccessibleInterface(window.settings_button)
    assert "Ctrl+," in settings.text(QAccessible.Text.Description)


def test_every_control_in_the_settings_is_focusable_and_named(qtbot, assistants):
    dialog = SettingsDialog(fake_settings())
    qtbot.addWidget(dialog)
    dialog.show()
    for index in range(dialog.tabs.count()):
        dialog.tabs.setCurrentIndex(index)
        page = dialog.tabs.widget(index)
        assert accessible_problems(page) == [], dialog.tabs.tabText(index)
    dialog.tabs.setCurrentIndex(0)
    assert accessible_problems(dialog) == []
    box = dialog.findChild(QDialogButtonBox)
    assert box is not None and accessible_problems(box) == []


def test_tab_reaches_every_control_of_the_window_in_order(qtbot, assistants):
    window = make_window(qtbot, assistants())
    window.list_button.setFocus()
    qtbot.waitUntil(window.list_button.hasFocus)
    seen = []
    for _ in range(30):
        focused = QApplication.focusWidget()
        if focused in seen:
            break
        seen.append(focused)
        press(focused, Qt.Key.Key_Tab)
    wanted = [
        window.list_button,
        window.new_button,
        window.settings_button,
        window.conversations.search,
        window.conversations.list,
        window.conversation,
        window.message_box,
        window.send_button,
        window.ptt_button,
        window.hands_free_button,
    ]
    assert [w for w in seen if w in wanted] == wanted
    assert isinstance(window.conversation, QScrollArea)


def test_shortcuts_and_enter_on_a_focused_button(qtbot, qloop, assistants):
    assistant = assistants()
    window = make_window(qtbot, assistant)

    async def scenario() -> None:
        await started(assistant)
        shortcut(window, "Ctrl+Shift+H")
        assert assistant.turn_mode == "vad" and window.hands_free_button.isChecked()
        shortcut(window, "Ctrl+Shift+H")
        assert assistant.turn_mode == "ptt"
        shortcut(window, "Ctrl+K")
        assert window.conversations.search.hasFocus()
        press(window.conversations.search, Qt.Key.Key_Escape)
        assert not window.conversations.search.hasFocus()  # Esc leaves the field
        shortcut(window, "Ctrl+L")
        assert window.message_box.hasFocus()
        first = assistant.conversation_id
        window.message_box.setText("Hello there")
        press(window.message_box, Qt.Key.Key_Return)
        # The message went, and the keyboard is back with the conversation: Space talks again.
        assert window.message_box.text() == "" and window.conversation.hasFocus()
        await until(lambda: assistant.state.value == "thinking", what="thinking")
        shortcut(window, "Ctrl+.")
        await until(lambda: assistant.state.value != "thinking", what="stopped")
        await assistant.wait_idle(PATIENCE)
        window.new_button.setFocus()
        press(window.new_button, Qt.Key.Key_Return)  # Enter presses the focused button
        await until(lambda: assistant.conversation_id != first, what="a new conversation")
        shortcut(window, "Ctrl+N")
        await assistant.close()

    run(qloop, scenario(), 4 * PATIENCE)


def test_space_talks_from_a_focused_button_and_enter_holds_the_talk_button(
    qtbot, qloop, assistants
):
    assistant = assistants()
    window = make_window(qtbot, assistant)

    async def scenario() -> None:
        await started(assistant)
        window.hands_free_button.setFocus()
        QApplication.sendEvent(
            window.hands_free_button,
            QKeyEvent(QEvent.Type.KeyPress, Qt.Key.Key_Space, Qt.KeyboardModifier.NoModifier, " "),
        )
        await until(lambda: assistant.state.value == "user_speaking", what="talking")
        assert not window.hands_free_button.isChecked()  # Space talked, it did not press
        QApplication.sendEvent(
            window.hands_free_button,
            QKeyEvent(
                QEvent.Type.KeyRelease, Qt.Key.Key_Space, Qt.KeyboardModifier.NoModifier, " "
            ),
        )
        await until(lambda: assistant.state.value != "user_speaking", what="released")
        await assistant.wait_idle(PATIENCE)
        window.ptt_button.setFocus()
        QApplication.sendEvent(
            window.ptt_button,
            QKeyEvent(QEvent.Type.KeyPress, Qt.Key.Key_Return, Qt.KeyboardModifier.NoModifier),
        )
        await until(lambda: assistant.state.value == "user_speaking", what="talking by Enter")
        QApplication.sendEvent(
            window.ptt_button,
            QKeyEvent(QEvent.Type.KeyRelease, Qt.Key.Key_Return, Qt.KeyboardModifier.NoModifier),
        )
        await until(lambda: assistant.state.value != "user_speaking", what="released")
        await assistant.close()

    run(qloop, scenario(), 4 * PATIENCE)


def test_settings_open_again_after_ok_cancel_and_escape(qtbot, qloop, assistants):
    assistant = assistants()
    window = make_window(qtbot, assistant)
    applied = collect(assistant, SettingsApplied)

    async def scenario() -> None:
        await started(assistant)
        seen: list[SettingsDialog] = []
        # 1: the gear, then OK.
        window.settings_button.click()
        first = window.settings_dialog
        assert first is not None and first.isVisible()
        seen.append(first)
        first.prompt_edit.setPlainText("Be brief.")
        first.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
        await until(lambda: applied, what="the settings applied")
        await until(lambda: window.settings_dialog is None, what="the dialog closed")
        # 2: the keyboard shortcut, then Cancel.
        shortcut(window, "Ctrl+,")
        second = window.settings_dialog
        assert second is not None and second.isVisible() and second is not first
        second.buttons.button(QDialogButtonBox.StandardButton.Cancel).click()
        await until(lambda: window.settings_dialog is None, what="the dialog closed")
        # 3: the menu, then Esc.
        window.settings_action.trigger()
        third = window.settings_dialog
        assert third is not None and third.isVisible()
        assert window.open_settings() is third  # opening again raises the open one
        press(third, Qt.Key.Key_Escape)
        await until(lambda: window.settings_dialog is None, what="the dialog closed")
        # 4: and once more, to apply a change after all that.
        fourth = window.open_settings()
        fourth.prompt_edit.setPlainText("Be very brief.")
        fourth.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
        await until(lambda: len(applied) == 2, what="the second change applied")
        await assistant.close()

    run(qloop, scenario(), 4 * PATIENCE)
    assert assistant.settings.system_prompt == "Be very brief."


def test_tray_shows_the_state_and_the_system_wide_key(qtbot, qloop, assistants):
    assistant = assistants()
    window = make_window(qtbot, assistant)

    async def scenario() -> None:
        await started(assistant)
        assert window.tray.tooltip.startswith("Parley — Ready")
        assert "System-wide talk key: off" in window.tray.tooltip
        window.tray.hands_free_action.trigger()
        assert assistant.turn_mode == "vad" and window.hands_free_button.isChecked()
        assert "Listening" in window.tray.tooltip
        window.tray.show_action.trigger()  # the window is shown: the tray hides it
        assert not window.isVisible()
        window.tray.show_action.trigger()
        assert window.isVisible()
        await assistant.close()

    run(qloop, scenario(), 4 * PATIENCE)
