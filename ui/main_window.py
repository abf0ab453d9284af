"""The main window: conversation, state and level, talk controls, latency panel, banners."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from assistant.app import Assistant
from assistant.config import Settings
from assistant.events import (
    AppEvent,
    AudioStatus,
    ErrorEvent,
    Loading,
    Notice,
    Ready,
    SettingsApplied,
    Source,
    StateChanged,
    TurnModeChanged,
)
from ui.banner import BannerArea
from ui.bridge import Bridge
from ui.conversation import ConversationView
from ui.echo import EchoBadge
from ui.hotkeys import GlobalHotkey, HoldToTalkFilter, hotkey_label
from ui.indicators import LevelMeter, StateIndicator
from ui.resources import icon
from ui.settings_dialog import SettingsDialog
from ui.timeline_view import TimelinePanel

AUDIO_SOURCES = (Source.AUDIO, Source.AUDIO_INPUT, Source.AUDIO_OUTPUT)
SETTINGS_SOURCES = (Source.SETTINGS, Source.STT, Source.LLM, Source.TTS)


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
        self.setWindowTitle("Parley — voice assistant")
        self.setWindowIcon(icon("parley"))
        self._build()
        # The layouts set the smallest size, so nothing is ever cut off.
        self.resize(1180, 760)
        self._wire()
        self.hold_filter = HoldToTalkFilter(self, assistant.settings.hotkey)
        self.hold_filter.pressed.connect(self._talk_pressed)
        self.hold_filter.released.connect(self._talk_released)
        self.hold_filter.escape.connect(self._escape)
        self.hold_filter.install()
        self.global_hotkey = GlobalHotkey(self)
        self.global_hotkey.pressed.connect(self._global_pressed)
        self.global_hotkey.released.connect(self._global_released)
        self._apply_settings_to_ui(assistant.settings)
        self._update_indicator()

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
        self.conversation = ConversationView()
        self.timeline = TimelinePanel()
        self.timeline.setMinimumWidth(300)
        # In a short window the latency panel scrolls instead of drawing over itself.
        self.side = QScrollArea()
        self.side.setObjectName("sideScroll")
        self.side.setFrameShape(QFrame.Shape.NoFrame)
        self.side.setWidgetResizable(True)
        self.side.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.side.setWidget(self.timeline)
        self.side.setMinimumWidth(300 + self.side.verticalScrollBar().sizeHint().width())
        self.splitter.addWidget(self.conversation)
        self.splitter.addWidget(self.side)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([800, 380])
        self.splitter.setMinimumHeight(260)
        self.conversation.setMinimumWidth(420)
        root.addWidget(self.splitter, 1)
        root.addWidget(self._controls())
        self.setCentralWidget(central)
        self.conversation.setFocus()

    def _header(self) -> QWidget:
        header = QWidget()
        header.setObjectName("header")
        outer = QVBoxLayout(header)
        outer.setContentsMargins(20, 12, 20, 10)
        outer.setSpacing(8)
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
        self.new_button = QPushButton(" New conversation")
        self.new_button.setIcon(icon("new"))
        self.new_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.new_button.setToolTip("Start a new conversation (Ctrl+N); the old one stays saved")
        row.addWidget(self.new_button)
        self.settings_button = QPushButton()
        self.settings_button.setObjectName("iconButton")
        self.settings_button.setIcon(icon("settings"))
        self.settings_button.setIconSize(QSize(20, 20))
        self.settings_button.setToolTip("Settings (Ctrl+,)")
        self.settings_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
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
        bar = QWidget()
        bar.setObjectName("controls")
        layout = QVBoxLayout(bar)
        layout.setContentsMargins(20, 12, 20, 14)
        layout.setSpacing(10)
        typing = QHBoxLayout()
        self.message_box = QLineEdit()
        self.message_box.setObjectName("messageBox")
        self.message_box.setPlaceholderText("Type a message and press Enter…")
        self.send_button = QPushButton(" Send")
        self.send_button.setObjectName("sendButton")
        self.send_button.setIcon(icon("send"))
        self.send_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        typing.addWidget(self.message_box, 1)
        typing.addWidget(self.send_button)
        layout.addLayout(typing)
        talk = QHBoxLayout()
        talk.setSpacing(10)
        self.ptt_button = QPushButton("  Hold to talk")
        self.ptt_button.setObjectName("pttButton")
        self.ptt_button.setIcon(icon("mic"))
        self.ptt_button.setIconSize(QSize(20, 20))
        self.ptt_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.hands_free_button = QPushButton("  Hands-free")
        self.hands_free_button.setObjectName("handsFreeButton")
        self.hands_free_button.setIcon(icon("handsfree"))
        self.hands_free_button.setCheckable(True)
        self.hands_free_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.hands_free_button.setToolTip(
            "Talk without holding a key: Parley answers when you pause"
        )
        self.stop_button = QPushButton("  Stop")
        self.stop_button.setObjectName("stopButton")
        self.stop_button.setIcon(icon("stop"))
        self.stop_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.stop_button.setToolTip("Stop the answer (Esc)")
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

    # ---------------------------------------------------------------------------------- wiring

    def _wire(self) -> None:
        for view in (self.conversation, self.timeline, self.meter, self.echo_badge):
            self.bridge.occurred.connect(view.on_event)
        self.bridge.occurred.connect(self.on_event)
        a = self.assistant
        self.ptt_button.pressed.connect(self._talk_pressed)
        self.ptt_button.released.connect(self._talk_released)
        self.hands_free_button.toggled.connect(lambda on: a.set_turn_mode("vad" if on else "ptt"))
        self.stop_button.clicked.connect(a.interrupt)
        self.send_button.clicked.connect(self.send_message)
        self.message_box.returnPressed.connect(self.send_message)
        self.new_button.clicked.connect(a.new_conversation)
        self.settings_button.clicked.connect(self.open_settings)
        for keys, slot in (
            (
                [QKeySequence(QKeySequence.StandardKey.Preferences), QKeySequence("Ctrl+,")],
                self.open_settings,
            ),
            ([QKeySequence("Ctrl+N")], a.new_conversation),
            ([QKeySequence("Ctrl+Q")], self.close),
        ):
            action = QAction(self)
            action.setShortcuts([k for k in keys if not k.isEmpty()])
            action.triggered.connect(slot)
            self.addAction(action)

    def on_event(self, event: AppEvent) -> None:
        """What the window itself shows of the assistant's events (the views show the rest)."""
        match event:
            case StateChanged(state=state):
                self._on_state(state.value)
            case ErrorEvent(message=message, source=source):
                self.show_error(message, source)
            case Notice(message=message, source=source):
                self.show_notice(message, source)
            case Loading(component=component, fraction=fraction, message=message):
                self._on_loading(component, fraction, message)
            case Ready():
                self._update_indicator()
            case AudioStatus(microphone_ok=mic_ok, speaker_ok=speaker_ok):
                self._on_audio(mic_ok, speaker_ok)
            case TurnModeChanged(mode=mode):
                self._on_turn_mode(mode)
            case SettingsApplied(settings=settings):
                self._apply_settings_to_ui(settings)

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
        if self.message_box.hasFocus():
            self.conversation.setFocus()  # so the talk key works again at once

    def _set_ptt_active(self, active: bool) -> None:
        self.ptt_button.setProperty("active", "true" if active else "false")
        self.ptt_button.style().unpolish(self.ptt_button)
        self.ptt_button.style().polish(self.ptt_button)

    def send_message(self) -> None:
        text = self.message_box.text()
        if self.assistant.submit_text(text):
            self.message_box.clear()

    def open_settings(self) -> SettingsDialog:
        if self.settings_dialog is not None and self.settings_dialog.isVisible():
            self.settings_dialog.raise_()
            self.settings_dialog.activateWindow()
            return self.settings_dialog
        a = self.assistant
        dialog = SettingsDialog(a.settings, voices=a.voices, preview=a.preview_voice, parent=self)
        dialog.applied.connect(
            lambda settings, keys: a.spawn(
                a.apply_settings(settings, keys_changed=keys), Source.SETTINGS
            )
        )
        dialog.finished.connect(lambda _r: dialog.deleteLater())
        self.settings_dialog = dialog
        dialog.open()
        return dialog

    # -------------------------------------------------------------------------------- display

    def show_error(self, message: str, source: str = "") -> None:
        action = None
        if source in AUDIO_SOURCES:
            action = ("Retry", self._retry_audio)
        elif source in SETTINGS_SOURCES or "API key" in message:
            action = ("Open settings", self._open_settings_from_banner)
        self.banners.show_message(message, "error", action)

    def show_notice(self, message: str, source: str = "") -> None:
        kind = (
            "warning" if source in (Source.HISTORY, Source.STT, Source.LLM, Source.TTS) else "info"
        )
        self.banners.show_message(message, kind, timeout_ms=8000 if kind == "info" else None)

    def _open_settings_from_banner(self) -> None:
        self.open_settings()

    def _retry_audio(self) -> None:
        self.banners.clear("error")
        self.assistant.spawn(self.assistant.restart_audio(), Source.AUDIO)

    def _on_state(self, state: str) -> None:
        self._state = state
        self.stop_button.setEnabled(state in ("thinking", "speaking"))
        if state != "user_speaking":
            self._set_ptt_active(False)
        self._update_indicator()

    def _update_indicator(self) -> None:
        a = self.assistant
        if not a.ready:
            self.indicator.set_state("loading", "Loading engines…")
        elif self._state == "listening" and a.turn_mode == "ptt":
            self.indicator.set_state("listening", "Ready")
        else:
            self.indicator.set_state(self._state)
        self._update_hint()

    def _update_hint(self) -> None:
        a = self.assistant
        key = hotkey_label(a.settings.hotkey)
        if not a.ready:
            text = "Loading engines — you can type now; talking starts when they are ready."
        elif not a.microphone_ok:
            text = "No microphone — type your message above."
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

    def _on_audio(self, mic_ok: bool, speaker_ok: bool) -> None:
        self.ptt_button.setToolTip(
            "Hold to talk" if mic_ok else "No microphone: connect one and choose Retry, or type"
        )
        self._update_hint()

    def _on_turn_mode(self, mode: str) -> None:
        hands_free = mode == "vad"
        if self.hands_free_button.isChecked() != hands_free:
            self.hands_free_button.blockSignals(True)
            self.hands_free_button.setChecked(hands_free)
            self.hands_free_button.blockSignals(False)
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
        if settings.global_hotkey:
            problem = self.global_hotkey.start(settings.hotkey)
            if problem is not None:
                self.banners.show_message(problem, "warning")
        else:
            self.global_hotkey.stop()

    # -------------------------------------------------------------------------------- closing

    def closeEvent(self, event: QCloseEvent) -> None:
        self.hold_filter.remove()
        self.global_hotkey.stop()
        self.closed.emit()
        event.accept()
