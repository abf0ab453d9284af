"""The main window: past conversations, the conversation, state and level, talk controls,
latency panel, banners, menus and the tray icon.

Everything can be done from the keyboard: Tab reaches every control (each draws a focus ring
and has an accessible name), Enter presses the focused button, the talk key (Space) talks
unless a text field has the keyboard, Esc stops the answer or leaves the text field, and the
menus list the shortcuts (``ui/shortcuts.py``).
"""

from __future__ import annotations

import itertools
import time

import shiboken6
from PySide6.QtCore import QEvent, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeyEvent, QResizeEvent
from PySide6.QtWidgets import (
    QAbstractButton,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from assistant import mic_access
from assistant.app import Assistant
from assistant.app import messages as app_messages
from assistant.config import Settings
from assistant.events import (
    Activity,
    AppEvent,
    AudioStatus,
    DevicesChanged,
    Doing,
    ErrorEvent,
    Loading,
    Notice,
    Ready,
    SettingsApplied,
    Source,
    StateChanged,
    ToolServers,
    TurnModeChanged,
)
from assistant.history import ConversationSummary
from ui import about, shortcuts, theme
from ui.banner import BannerArea
from ui.bridge import Bridge
from ui.conversation import ConversationView
from ui.conversation_list import EXPORT_FILTERS, ConversationList
from ui.echo import EchoBadge
from ui.hotkeys import GlobalHotkey, HoldToTalkFilter, hotkey_label
from ui.indicators import LevelMeter, StateIndicator, activity_label
from ui.resources import icon
from ui.settings_dialog import SettingsDialog
from ui.timeline_view import TimelinePanel
from ui.tray import Tray
from ui.widgets import icon_button, styled_box

AUDIO_SOURCES = (Source.AUDIO, Source.AUDIO_INPUT, Source.AUDIO_OUTPUT)
SETTINGS_SOURCES = (Source.SETTINGS, Source.STT, Source.LLM, Source.TTS, Source.S2S)
#: Notices that only confirm something and may go by themselves; the others stay until read.
TRANSIENT_SOURCES = (Source.TALK, Source.DEVICES)
#: Below this width the conversation list closes by itself (it reopens when there is room).
LIST_MIN_WINDOW = 1000
UNDO_SECONDS = 12


class MainWindow(QMainWindow):
    """Renders the assistant's events and turns clicks and keys into its commands."""

    closed = Signal()

    def __init__(self, assistant: Assistant, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.assistant = assistant
        self.bridge = Bridge(assistant, self)
        self.settings_dialog: SettingsDialog | None = None
        self._state = "idle"
        self._loading: dict[str, tuple[float, str]] = {}
        self._activity: Activity | None = None
        self._list_wanted = True
        self.setWindowTitle("Parley — voice assistant")
        self.setWindowIcon(icon("parley"))
        self._build()
        # The layouts set the smallest size, so nothing is ever cut off.
        self.resize(1180, 760)
        self._menus()
        self._wire()
        self._describe_controls()
        self._tab_order()
        self.hold_filter = HoldToTalkFilter(self, assistant.settings.hotkey)
        self.hold_filter.pressed.connect(self._talk_pressed)
        self.hold_filter.released.connect(self._talk_released)
        self.hold_filter.escape.connect(self._escape)
        self.hold_filter.install()
        self.global_hotkey = GlobalHotkey(self)
        self.global_hotkey.pressed.connect(self._global_pressed)
        self.global_hotkey.released.connect(self._global_released)
        self._global_problem: str | None = None
        self.tray = Tray(self)
        self._wire_tray()
        self._ticker = QTimer(self)
        self._ticker.setInterval(500)
        self._ticker.timeout.connect(self._update_indicator)
        self._apply_settings_to_ui(assistant.settings)
        self._update_indicator()
        self.conversations.refresh()

    # ---------------------------------------------------------------------------------- layout

    def _build(self) -> None:
        central = QWidget()
        root = QVBoxLayout(central)
        root.setContentsMargins(0, 0, 0, 0)
        root.setSpacing(0)
        root.addWidget(self._header())
        self.banners = BannerArea()
        root.addWidget(self.banners)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setHandleWidth(1)
        self.conversations = ConversationList(self.assistant)
        # No minimum of its own: it closes in a narrow window rather than widening it.
        self.conversations.setMinimumWidth(1)
        self.conversation = ConversationView(titles=self._tool_title)
        self.timeline = TimelinePanel()
        self.timeline.setMinimumWidth(300)
        # In a short window the latency panel scrolls instead of drawing over itself.
        self.side = QScrollArea()
        self.side.setObjectName("sideScroll")
        self.side.setFrameShape(QFrame.Shape.NoFrame)
        self.side.setWidgetResizable(True)
        self.side.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.side.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.side.setWidget(self.timeline)
        self.side.setMinimumWidth(300 + self.side.verticalScrollBar().sizeHint().width())
        self.splitter.addWidget(self.conversations)
        self.splitter.addWidget(self.conversation)
        self.splitter.addWidget(self.side)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 3)
        self.splitter.setStretchFactor(2, 1)
        self.splitter.setCollapsible(1, False)
        self.splitter.setSizes([250, 620, 380])
        self.splitter.setMinimumHeight(260)
        self.conversation.setMinimumWidth(420)
        root.addWidget(self.splitter, 1)
        root.addWidget(self._controls())
        self.setCentralWidget(central)
        self.conversation.setFocus()

    def _header(self) -> QWidget:
        header, outer = styled_box("header", QVBoxLayout, (20, 12, 20, 10), 8)
        row = QHBoxLayout()
        row.setSpacing(12)
        logo = QLabel()
        logo.setPixmap(icon("parley").pixmap(QSize(34, 34)))
        row.addWidget(logo)
        titles = QVBoxLayout()
        titles.setSpacing(0)
        title = QLabel("Parley")
        title.setObjectName("appTitle")
        subtitle = QLabel("Talk to it — it answers out loud")
        subtitle.setObjectName("appSubtitle")
        titles.addWidget(title)
        titles.addWidget(subtitle)
        row.addLayout(titles)
        row.addSpacing(18)
        self.indicator = StateIndicator()
        row.addWidget(self.indicator)
        row.addSpacing(8)
        mic = QLabel("Mic")
        mic.setObjectName("appSubtitle")
        row.addWidget(mic)
        self.meter = LevelMeter()
        row.addWidget(self.meter, 0, Qt.AlignmentFlag.AlignVCenter)
        row.addSpacing(8)
        self.echo_badge = EchoBadge()
        row.addWidget(self.echo_badge)
        row.addStretch(1)
        self.list_button = icon_button("", "iconButton", "history", 20)
        self.list_button.setCheckable(True)
        self.list_button.setChecked(True)
        row.addWidget(self.list_button)
        self.new_button = QPushButton(" New conversation")
        self.new_button.setIcon(icon("new"))
        row.addWidget(self.new_button)
        self.settings_button = icon_button("", "iconButton", "settings", 20)
        row.addWidget(self.settings_button)
        outer.addLayout(row)
        loading = QHBoxLayout()
        loading.setSpacing(10)
        self.loading_label = QLabel("")
        self.loading_label.setObjectName("loadingLabel")
        self.loading_bar = QProgressBar()
        self.loading_bar.setObjectName("loadingBar")
        self.loading_bar.setRange(0, 100)
        self.loading_bar.setTextVisible(False)
        self.loading_bar.setFixedHeight(4)
        loading.addWidget(self.loading_label)
        loading.addWidget(self.loading_bar, 1)
        self.loading_row = QWidget()
        self.loading_row.setLayout(loading)
        loading.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.loading_row)
        return header

    def _controls(self) -> QWidget:
        bar, layout = styled_box("controls", QVBoxLayout, (20, 12, 20, 14), 10)
        typing = QHBoxLayout()
        self.message_box = QLineEdit()
        self.message_box.setObjectName("messageBox")
        self.message_box.setPlaceholderText("Type a message and press Enter…")
        self.send_button = icon_button(" Send", "sendButton", "send")
        typing.addWidget(self.message_box, 1)
        typing.addWidget(self.send_button)
        layout.addLayout(typing)
        talk = QHBoxLayout()
        talk.setSpacing(10)
        self.ptt_button = icon_button("  Hold to talk", "pttButton", "mic", 20)
        self.hands_free_button = icon_button("  Hands-free", "handsFreeButton", "handsfree")
        self.hands_free_button.setCheckable(True)
        self.stop_button = icon_button("  Stop", "stopButton", "stop")
        self.stop_button.setEnabled(False)
        talk.addWidget(self.ptt_button)
        talk.addWidget(self.hands_free_button)
        talk.addWidget(self.stop_button)
        talk.addSpacing(8)
        self.hint_label = QLabel("")
        self.hint_label.setObjectName("hintLabel")
        # Wraps onto a second line rather than squeezing the buttons in a narrow window.
        self.hint_label.setWordWrap(True)
        self.hint_label.setMinimumWidth(120)
        talk.addWidget(self.hint_label, 1)
        layout.addLayout(talk)
        return bar

    def _describe_controls(self) -> None:
        """Names and descriptions for screen readers; tooltips say the same to the mouse."""
        key = shortcuts.native
        for widget, name, description in (
            (
                self.list_button,
                "Conversations",
                f"Show or hide the past conversations ({key('Ctrl+K')} searches them)",
            ),
            (
                self.new_button,
                "New conversation",
                f"Start a new conversation ({key('Ctrl+N')}); the old one stays saved",
            ),
            (self.settings_button, "Settings", f"Settings ({key('Ctrl+,')})"),
            (
                self.message_box,
                "Message",
                "Type a message and press Enter; Esc goes back to talking",
            ),
            (self.send_button, "Send", "Send the typed message"),
            (
                self.ptt_button,
                "Hold to talk",
                "Hold this button, Enter on it, or the talk key while you speak",
            ),
            (
                self.hands_free_button,
                "Hands-free",
                "Talk without holding a key: Parley answers when you pause "
                f"({key('Ctrl+Shift+H')})",
            ),
            (self.stop_button, "Stop the answer", f"Stop the answer (Esc or {key('Ctrl+.')})"),
            (
                self.conversation,
                "Conversation",
                "The conversation so far; its text can be selected and copied",
            ),
            (
                self.timeline.export_button,
                "Export latency timelines",
                "Save the latency timelines as JSON or CSV",
            ),
            (self.meter, "Microphone level", "How loud the microphone hears you"),
        ):
            widget.setAccessibleName(name)
            widget.setAccessibleDescription(description)
            widget.setToolTip(description)

    def _tab_order(self) -> None:
        chain = [
            self.list_button,
            self.new_button,
            self.settings_button,
            self.conversations.search,
            self.conversations.list,
            self.conversation,
            self.message_box,
            self.send_button,
            self.ptt_button,
            self.hands_free_button,
            self.stop_button,
            self.timeline.export_button,
        ]
        for first, second in itertools.pairwise(chain):
            QWidget.setTabOrder(first, second)

    # ----------------------------------------------------------------------------------- menus

    def _action(self, menu: QMenu, text: str, slot: object, shortcut: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcuts(shortcuts.sequences(shortcut))
        action.triggered.connect(slot)
        menu.addAction(action)
        self.addAction(action)  # the shortcut works while the menu bar is hidden too
        return action

    def _menus(self) -> None:
        bar = self.menuBar()
        parley = bar.addMenu("&Parley")
        self.settings_action = self._action(parley, "Settings…", self.open_settings, "settings")
        parley.addSeparator()
        self._action(parley, "Quit", self.close, "quit")
        chats = bar.addMenu("&Conversation")
        self._action(chats, "New conversation", self._new_conversation, "new")
        self._action(chats, "Find a conversation…", self.find_conversation, "find")
        self._action(chats, "Export this conversation…", self.export_conversation, "export")
        self.list_action = QAction("Show the conversation list", self)
        self.list_action.setCheckable(True)
        self.list_action.setChecked(True)
        self.list_action.toggled.connect(self.set_list_visible)
        chats.addSeparator()
        chats.addAction(self.list_action)
        talk = bar.addMenu("&Talk")
        self._action(talk, "Type a message", self.focus_message_box, "type")
        self.hands_free_action = self._action(
            talk, "Hands-free", self.hands_free_button.click, "hands_free"
        )
        self._action(talk, "Stop the answer", self.assistant.interrupt, "stop")
        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "Keyboard shortcuts", self.show_shortcuts, "shortcuts")
        self._action(help_menu, "Microphone access…", self.show_microphone_help)
        self._action(help_menu, "About Parley", self.show_about)

    # ---------------------------------------------------------------------------------- wiring

    def _wire(self) -> None:
        for view in (
            self.conversation,
            self.timeline,
            self.meter,
            self.echo_badge,
            self.conversations,
            self.indicator,
        ):
            self.bridge.occurred.connect(view.on_event)
        self.bridge.occurred.connect(self.on_event)
        a = self.assistant
        self.ptt_button.pressed.connect(self._talk_pressed)
        self.ptt_button.released.connect(self._talk_released)
        self.hands_free_button.toggled.connect(lambda on: a.set_turn_mode("vad" if on else "ptt"))
        self.stop_button.clicked.connect(a.interrupt)
        self.send_button.clicked.connect(self.send_message)
        self.message_box.returnPressed.connect(self.send_message)
        self.new_button.clicked.connect(self._new_conversation)
        self.conversation.confirmed.connect(a.confirm)
        self.settings_button.clicked.connect(self.open_settings)
        self.list_button.toggled.connect(self.set_list_visible)
        self.conversations.deleted.connect(self._offer_undo)

    def _wire_tray(self) -> None:
        a = self.assistant
        self.tray.toggle_window.connect(self.toggle_visible)
        self.tray.hands_free.connect(lambda on: a.set_turn_mode("vad" if on else "ptt"))
        self.tray.stop.connect(a.interrupt)
        self.tray.new_conversation.connect(self._new_conversation)
        self.tray.quit.connect(self.close)

    def on_event(self, event: AppEvent) -> None:
        """What the window itself shows of the assistant's events (the views show the rest)."""
        match event:
            case StateChanged(state=state):
                self._on_state(state.value)
            case Activity():
                self._activity = event
                self._update_indicator()
            case ErrorEvent(message=message, source=source):
                self.show_error(message, source)
            case Notice(message=message, source=source):
                self.show_notice(message, source)
            case Loading(component=component, fraction=fraction, message=message):
                self._on_loading(component, fraction, message)
            case Ready(ready=ready):
                if ready and self._activity is not None:
                    if self._activity.doing is Doing.SWITCHING:
                        self._activity = None
                self._update_indicator()
            case AudioStatus(microphone_ok=mic_ok, microphone_silent=silent):
                self._on_audio(mic_ok, silent)
            case TurnModeChanged(mode=mode):
                self._on_turn_mode(mode)
            case SettingsApplied(settings=settings):
                self._apply_settings_to_ui(settings)
            case DevicesChanged(devices=found):
                dialog = self._open_dialog()
                if dialog is not None:
                    dialog.set_devices(found)
            case ToolServers(statuses=statuses):
                dialog = self._open_dialog()
                if dialog is not None:
                    dialog.tools_tab.set_statuses(statuses)

    # ------------------------------------------------------------------------------- commands

    def _talk_pressed(self) -> None:
        if self.assistant.turn_mode == "vad":
            return
        if self.assistant.press_to_talk():
            self._set_ptt_active(True)

    def _talk_released(self) -> None:
        self._set_ptt_active(False)
        self.assistant.release_to_talk()

    def _global_pressed(self) -> None:
        if not self.isActiveWindow():  # in the window, the in-window key already acts
            self._talk_pressed()

    def _global_released(self) -> None:
        if not self.isActiveWindow():
            self._talk_released()

    def _escape(self) -> None:
        self.assistant.interrupt()
        focused = self.focusWidget()
        if isinstance(focused, QLineEdit):
            self.conversation.setFocus()  # so the talk key works again at once

    def _set_ptt_active(self, active: bool) -> None:
        self.ptt_button.setProperty("active", "true" if active else "false")
        self.ptt_button.style().unpolish(self.ptt_button)
        self.ptt_button.style().polish(self.ptt_button)

    def send_message(self) -> None:
        text = self.message_box.text()
        if self.assistant.submit_text(text):
            self.message_box.clear()
            # Out of the text field: holding the talk key talks again, not types spaces.
            self.conversation.setFocus(Qt.FocusReason.OtherFocusReason)

    def focus_message_box(self) -> None:
        self.message_box.setFocus(Qt.FocusReason.ShortcutFocusReason)

    def _new_conversation(self) -> None:
        self.assistant.new_conversation()

    def set_list_visible(self, visible: bool) -> None:
        """Show or hide the past conversations; showing them widens a narrow window."""
        self._list_wanted = visible
        if visible and self.width() < LIST_MIN_WINDOW:
            self.resize(LIST_MIN_WINDOW + 80, self.height())
        self._sync_list()

    def _sync_list(self) -> None:
        show = self._list_wanted and self.width() >= LIST_MIN_WINDOW
        self.conversations.setVisible(show)
        for toggle in (self.list_button, self.list_action):
            if toggle.isChecked() != show:
                toggle.blockSignals(True)
                toggle.setChecked(show)
                toggle.blockSignals(False)

    def find_conversation(self) -> None:
        self.set_list_visible(True)
        self.conversations.focus_search()

    def export_conversation(self) -> None:
        chosen = self.assistant.conversation_id
        if not chosen:
            return
        path, chosen_filter = QFileDialog.getSaveFileName(
            self, "Export conversation", "conversation.md", EXPORT_FILTERS
        )
        if path:
            from pathlib import Path

            target = Path(path)
            if target.suffix.lower() not in (".md", ".json"):
                target = target.with_suffix(".json" if "JSON" in chosen_filter else ".md")
            self.conversations.export(target, chosen)

    def _offer_undo(self, summary: ConversationSummary, was_current: bool) -> None:
        a = self.assistant

        def undo() -> None:
            if a.restore_conversation(summary.id) and was_current:
                a.open_conversation(summary.id)
            banner.dismiss()

        banner = self.banners.show_message(
            f"Deleted “{summary.title}”.",
            "info",
            ("Undo", undo),
            timeout_ms=UNDO_SECONDS * 1000,
        )

    def open_settings(self, provider: str | None = None) -> SettingsDialog:
        """The settings dialog (a new one each time it is opened; raised if already open).

        ``provider``: show that provider's API key field.
        """
        dialog = self._open_dialog()
        if dialog is None:
            a = self.assistant
            dialog = SettingsDialog(
                a.settings,
                voices=a.voices,
                preview=a.preview_voice,
                devices=lambda: a.devices,
                refresh_devices=a.refresh_devices,
                tool_servers=a.tool_servers,
                parent=self,
            )
            dialog.applied.connect(
                lambda settings, keys: a.spawn(
                    a.apply_settings(settings, keys_changed=keys), Source.SETTINGS
                )
            )
            dialog.finished.connect(lambda _result, d=dialog: self._settings_closed(d))
            self.settings_dialog = dialog
            dialog.open()
        else:
            dialog.raise_()
            dialog.activateWindow()
        if provider:
            dialog.show_provider(provider)
        return dialog

    def _open_dialog(self) -> SettingsDialog | None:
        """The settings dialog while it is open (Qt deletes it once closed)."""
        dialog = self.settings_dialog
        if dialog is None or not shiboken6.isValid(dialog) or not dialog.isVisible():
            return None
        return dialog

    def _settings_closed(self, dialog: SettingsDialog) -> None:
        if self.settings_dialog is dialog:
            self.settings_dialog = None
        dialog.deleteLater()

    def show_shortcuts(self) -> None:
        rows = "".join(
            f"<tr><td><b>{keys}</b>&nbsp;&nbsp;</td><td>{what}</td></tr>"
            for keys, what in shortcuts.rows(hotkey_label(self.assistant.settings.hotkey))
        )
        box = QMessageBox(self)
        box.setWindowTitle("Keyboard shortcuts")
        box.setTextFormat(Qt.TextFormat.RichText)
        box.setText(f"<table cellpadding='3'>{rows}</table>")
        box.open()

    def show_about(self) -> None:
        """Help → About: the version and where the log, settings and conversations are."""
        about.show_about(self)

    def show_microphone_help(self) -> None:
        """Help → Microphone access: how to let Parley use the microphone on this system."""
        about.show_microphone_help(self)

    def toggle_visible(self) -> None:
        if self.isVisible() and not self.isMinimized():
            self.hide()
        else:
            self.showNormal()
            self.raise_()
            self.activateWindow()
        self.tray.set_window_visible(self.isVisible())

    # ---------------------------------------------------------------------------------- keys

    def keyPressEvent(self, event: QKeyEvent) -> None:
        """Enter presses the focused button (the talk key may be Space, a button's own key)."""
        if self._button_key(event):
            if self.focusWidget() is self.ptt_button:
                if not event.isAutoRepeat():
                    self.ptt_button.pressed.emit()
            else:
                button = self.focusWidget()
                assert isinstance(button, QAbstractButton)
                button.animateClick()
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if self._button_key(event) and self.focusWidget() is self.ptt_button:
            if not event.isAutoRepeat():
                self.ptt_button.released.emit()
            return
        super().keyReleaseEvent(event)

    def _button_key(self, event: QKeyEvent) -> bool:
        focused = self.focusWidget()
        return (
            event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
            and isinstance(focused, QAbstractButton)
            and focused.isEnabled()
            and focused.window() is self
        )

    def _tool_title(self, name: str) -> str:
        tool = self.assistant.tools.get(name)
        return tool.title if tool is not None else name.replace("_", " ")

    # -------------------------------------------------------------------------------- display

    def show_error(self, message: str, source: str = "") -> None:
        action = None
        if source == Source.AUDIO_INPUT and mic_access.looks_denied(message):
            action = ("Microphone access…", self.show_microphone_help)
        elif source in AUDIO_SOURCES:
            action = ("Retry", self._retry_audio)
        elif source in SETTINGS_SOURCES or "API key" in message:
            action = ("Open settings", lambda: self._open_settings_for(message))
        self.banners.show_message(message, "error", action)

    def show_notice(self, message: str, source: str = "") -> None:
        transient = source in TRANSIENT_SOURCES or message == app_messages.SETTINGS_APPLIED
        action = None
        if "API key" in message:
            action = ("Open settings", lambda: self._open_settings_for(message))
        elif message == app_messages.microphone_silent():
            action = ("Microphone access…", self.show_microphone_help)
        if transient:
            self.banners.show_message(message, "info", action, timeout_ms=8000)
        else:
            self.banners.show_message(message, "warning", action)

    def _open_settings_for(self, message: str) -> None:
        """Open the settings where the message points (a provider's API key, if named)."""
        from assistant import secrets

        named = [
            p for p, n in secrets.DISPLAY_NAMES.items() if n in message and "API key" in message
        ]
        self.open_settings(provider=max(named, key=len) if named else None)

    def _retry_audio(self) -> None:
        self.banners.clear("error")
        self.assistant.spawn(self.assistant.restart_audio(), Source.AUDIO)

    def _on_state(self, state: str) -> None:
        activity = self._activity
        if state != "thinking" and activity is not None and activity.turn_id is not None:
            self._activity = None  # a reply's wait ends with it; a change of engines when ready
        self._state = state
        self.stop_button.setEnabled(state in ("thinking", "speaking"))
        if state != "user_speaking":
            self._set_ptt_active(False)
        self._update_indicator()

    def _update_indicator(self) -> None:
        a = self.assistant
        activity = self._activity
        elapsed = time.monotonic() - activity.since if activity is not None else 0.0
        if not a.ready:
            if activity is not None and activity.doing is Doing.SWITCHING:
                self.indicator.set_state("loading", activity_label(Doing.SWITCHING, "", elapsed))
            else:
                self.indicator.set_state("loading", "Loading engines…")
        elif self._state == "thinking" and activity is not None:
            label = activity_label(activity.doing, activity.detail, elapsed)
            self.indicator.set_state("thinking", label)
        elif self._state == "listening" and a.turn_mode == "ptt":
            self.indicator.set_state("listening", "Ready")
        else:
            self.indicator.set_state(self._state)
        waiting = activity is not None and (not a.ready or self._state == "thinking")
        if waiting and not self._ticker.isActive():
            self._ticker.start()
        elif not waiting:
            self._ticker.stop()
        self._update_tray()
        self._update_hint()

    def _update_tray(self) -> None:
        if not hasattr(self, "tray"):
            return
        settings = self.assistant.settings
        if settings.global_hotkey and self._global_problem is None:
            hotkey = f"Hold {hotkey_label(settings.hotkey)} anywhere to talk"
        elif settings.global_hotkey:
            hotkey = f"System-wide talk key unavailable: {self._global_problem}"
        else:
            hotkey = ""
        state = self.indicator.state
        self.tray.set_status(self.indicator.text, theme.STATE_COLORS[state], hotkey)

    def _update_hint(self) -> None:
        a = self.assistant
        key = hotkey_label(a.settings.hotkey)
        if not a.ready:
            text = "Loading engines — you can type now; talking starts when they are ready."
        elif not a.microphone_ok:
            text = "No microphone — type your message above."
        elif a.microphone_silent:
            text = "The microphone sends only silence — see Help → Microphone access, or type."
        elif a.turn_mode == "vad":
            text = "Hands-free: just speak; Parley answers when you pause. Esc stops the answer."
        else:
            text = f"Hold {key} or the button to talk · Esc stops the answer"
        self.hint_label.setText(text)

    def _on_loading(self, component: str, fraction: float, message: str) -> None:
        self._loading[component] = (fraction, message)
        pending = [m or f"Loading {c}…" for c, (f, m) in self._loading.items() if f < 1.0]
        overall = sum(min(1.0, f) for f, _ in self._loading.values()) / max(1, len(self._loading))
        self.loading_bar.setValue(round(overall * 100))
        if pending:
            self.loading_label.setText(" · ".join(pending))
            self.loading_row.show()
        else:
            self.loading_row.hide()
            self._loading.clear()

    def _on_audio(self, mic_ok: bool, silent: bool) -> None:
        self.ptt_button.setToolTip(
            "Hold to talk" if mic_ok else "No microphone: connect one and choose Retry, or type"
        )
        if not silent:  # sound came back (or the microphone closed): the warning is past
            self.banners.dismiss(app_messages.microphone_silent())
        self._update_hint()

    def _on_turn_mode(self, mode: str) -> None:
        hands_free = mode == "vad"
        if self.hands_free_button.isChecked() != hands_free:
            self.hands_free_button.blockSignals(True)
            self.hands_free_button.setChecked(hands_free)
            self.hands_free_button.blockSignals(False)
        self.tray.set_hands_free(hands_free)
        self.ptt_button.setEnabled(not hands_free)
        self.conversation.set_turn_mode(mode)
        self._update_indicator()

    def _apply_settings_to_ui(self, settings: Settings) -> None:
        if not self.hold_filter.set_hotkey(settings.hotkey):
            self.show_notice(
                f"The hotkey {settings.hotkey!r} is not a single key; using the previous one."
            )
        label = hotkey_label(settings.hotkey)
        self.ptt_button.setText(f"  Hold to talk  ({label})")
        self.conversation.set_hotkey_name(label)
        self.timeline.set_budgets(settings.budgets)
        self._on_turn_mode(settings.turn_mode)
        self._global_problem = None
        if settings.global_hotkey:
            self._global_problem = self.global_hotkey.start(settings.hotkey)
            if self._global_problem is not None:
                self.banners.show_message(self._global_problem, "warning")
        else:
            self.global_hotkey.stop()
        self._update_tray()

    # -------------------------------------------------------------------------------- window

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._sync_list()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.WindowStateChange and hasattr(self, "tray"):
            self.tray.set_window_visible(self.isVisible() and not self.isMinimized())

    def closeEvent(self, event: QCloseEvent) -> None:
        self.hold_filter.remove()
        self.global_hotkey.stop()
        self.tray.hide()
        self.closed.emit()
        event.accept()
