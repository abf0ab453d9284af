"""The settings dialog: engines, providers and keys, language and voice, audio devices, turns,
budgets, prompt, tools (``ui.tools_tab``). Each tab is built by a method of its own.

API keys go straight to the OS keyring through ``assistant.secrets`` and are never shown, kept in
the settings or written anywhere else; without a keyring the dialog says so and stores nothing.
The keyring may block (a locked one waits for a password), so on the app's event loop it is
asked on a thread of its own: the dialog opens at once and fills in the keys' status when the
keyring answers. Without a running loop (a script) it is asked directly. A cloud engine chosen
without its key is pointed out before the settings are applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Literal

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QAbstractButton,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QKeySequenceEdit,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from assistant import languages, secrets
from assistant.app.engines import KEYED
from assistant.audio import devices
from assistant.audio.devices import DeviceList
from assistant.config import (
    DEFAULT_ENDPOINTS,
    DEFAULT_SYSTEM_PROMPT,
    ProviderSettings,
    Settings,
    SpeechToSpeechSettings,
)
from assistant.engines.base import Voice
from assistant.engines.local.models import MODELS
from assistant.engines.registry import LLM_FACTORIES, S2S_FACTORIES, STT_FACTORIES, TTS_FACTORIES
from assistant.timeline import Budgets
from assistant.tools.mcp import ServerStatus
from ui.echo import EchoSettings
from ui.hotkeys import global_hotkey_note, global_hotkey_status
from ui.resources import icon
from ui.tools_tab import ToolsTab

log = logging.getLogger(__name__)

#: An engine named after its provider shows the provider's name.
ENGINE_NAMES: dict[str, str] = {
    "local": "Offline (on this computer)",
    **secrets.DISPLAY_NAMES,
    "anthropic": "Anthropic Claude",
    "assemblyai-gateway": "AssemblyAI LLM Gateway",
    "openai-realtime": "OpenAI Realtime",
    "assemblyai-agent": "AssemblyAI Voice Agent",
    "fake": "Test engine (scripted, no real speech)",
}
#: Engines for trying Parley out, not for use: offered only when already chosen.
HIDDEN_ENGINES = frozenset({"fake"})
#: What sets each offline language model apart, for the picker.
MODEL_NOTES = {
    "qwen2.5-coder-1.5b": "better answers (default)",
    "qwen2.5-coder-0.5b": "about twice as fast, weaker answers",
}
PROVIDER_NAMES: dict[str, str] = {
    **secrets.DISPLAY_NAMES,
    "openai_realtime": "OpenAI Realtime (speech recognition, speech to speech)",
    "assemblyai_gateway": "AssemblyAI LLM Gateway",
    "assemblyai_agent": "AssemblyAI Voice Agent",
}
#: Providers whose key is another provider's.
SHARED_KEYS = {
    "openai_realtime": "openai",
    "assemblyai_gateway": "assemblyai",
    "assemblyai_agent": "assemblyai",
}
#: Voices to offer for each speech-to-speech engine (the field also takes any other name).
S2S_VOICES: dict[str, tuple[str, ...]] = {
    "openai-realtime": (
        "marin", "cedar", "alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse",
    ),
    "assemblyai-agent": ("ivy",),
}  # fmt: skip

VoiceLister = Callable[[str, str], list[Voice]]
Previewer = Callable[[str, str, str], Coroutine[Any, Any, float]]
DeviceSource = Callable[[], DeviceList]
DeviceRefresher = Callable[[], Awaitable[DeviceList]]


def missing_keys(settings: Settings) -> list[tuple[str, str]]:
    """(kind, provider) of each chosen cloud engine whose API key is not set. Never asks the
    keyring: a key not read yet, or a keyring that could not be read, is not called missing."""
    chosen = (
        ("speech recognition", settings.stt),
        ("language model", settings.llm),
        ("speech synthesis", settings.tts),
    )
    return [
        (kind, name) for kind, name in chosen if name in KEYED and secrets.key_state(name) == "none"
    ]


def key_status_text(provider: str) -> tuple[str, bool]:
    """(What to show about the provider's key, whether one is set) — never the key itself.
    Never asks the keyring: it says what the last read found."""
    state = secrets.key_state(provider)
    env = secrets.ENV_VARS.get(provider, "")
    if state == "environment":
        return f"Key set by the environment variable {env}", True
    if state == "keyring":
        return "Key stored in the system keyring", True
    if state == "unknown":
        return "Checking the system keyring…", False
    if state == "unreadable":
        problem = secrets.key_problem(provider) or "the system keyring cannot be read"
        return f"Cannot read the key: {problem}. Unlock the keyring, or set {env}.", False
    return "No key stored", False


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _note(text: str, name: str = "fieldNote") -> QLabel:
    label = QLabel(text)
    label.setObjectName(name)
    label.setWordWrap(True)
    return label


def _spin(low: int, high: int, value: int, suffix: str = " ms", step: int = 50) -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setSingleStep(step)
    box.setSuffix(suffix)
    box.setValue(value)
    return box


class ProviderRow(QGroupBox):
    """A provider's endpoint URL, model and API key controls."""

    keyChanged = Signal()

    def __init__(self, provider: str, settings: ProviderSettings) -> None:
        title = PROVIDER_NAMES.get(provider, provider)
        super().__init__(title)
        self.provider = provider
        form = QFormLayout(self)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.url = QLineEdit(settings.url)
        self.url.setPlaceholderText(DEFAULT_ENDPOINTS.get(provider, ""))
        self.url.setToolTip(
            "Leave empty for the default endpoint. Point it at a local server to test."
        )
        form.addRow("Endpoint URL", self.url)
        self.url.setAccessibleName(f"{title} endpoint URL")
        self.model = QLineEdit(settings.model)
        self.model.setPlaceholderText("provider default")
        self.model.setAccessibleName(f"{title} model")
        form.addRow("Model", self.model)
        self._voice = settings.voice
        self.key_edit: QLineEdit | None = None
        self.status: QLabel | None = None
        self.save_button: QPushButton | None = None
        self.remove_button: QPushButton | None = None
        shared = SHARED_KEYS.get(provider)
        if shared is not None:
            form.addRow("API key", _note(f"Uses the {PROVIDER_NAMES.get(shared, shared)} key."))
            return
        if provider not in secrets.ENV_VARS:
            return
        self.status = QLabel()
        self.status.setObjectName("keyStatus")
        self.key_edit = QLineEdit()
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_edit.setObjectName(f"key_{provider}")
        self.key_edit.setAccessibleName(f"{title} API key")
        self.save_button = QPushButton("Save key")
        self.save_button.setAccessibleName(f"Save the {title} key")
        self.remove_button = QPushButton("Remove")
        self.remove_button.setAccessibleName(f"Remove the {title} key")
        self.save_button.clicked.connect(self.save_key)
        self.remove_button.clicked.connect(self.remove_key)
        self.key_edit.returnPressed.connect(self.save_key)
        row = QHBoxLayout()
        row.addWidget(self.key_edit, 1)
        row.addWidget(self.save_button)
        row.addWidget(self.remove_button)
        form.addRow("API key", row)
        form.addRow("", self.status)
        # Until the keyring has answered, nothing can be stored.
        self.key_edit.setEnabled(False)
        self.save_button.setEnabled(False)
        self.remove_button.setEnabled(False)
        self.key_edit.setPlaceholderText("checking the system keyring…")
        self.refresh()

    def keyring_checked(self, problem: str | None) -> None:
        """The keyring has answered: ``problem`` says why keys cannot be stored (None: they can)."""
        if self.key_edit is None or self.save_button is None:
            return
        usable = problem is None
        self.key_edit.setEnabled(usable)
        self.save_button.setEnabled(usable)
        self.key_edit.setPlaceholderText(
            "paste a new key to store it in the system keyring"
            if usable
            else "no system keyring: cannot store keys"
        )
        self.refresh()

    def refresh(self) -> None:
        if self.status is None:
            return
        text, stored = key_status_text(self.provider)
        self.status.setText(text)
        self.status.setProperty("stored", "true" if stored else "false")
        self.status.style().unpolish(self.status)
        self.status.style().polish(self.status)
        if (
            self.remove_button is not None
            and self.key_edit is not None
            and self.key_edit.isEnabled()
        ):
            self.remove_button.setEnabled(secrets.key_state(self.provider) == "keyring")

    def save_key(self) -> asyncio.Future[None] | None:
        """Store the typed key (off the loop when it runs: the returned task)."""
        if self.key_edit is None or self.status is None:
            return None
        value = self.key_edit.text().strip()
        self.key_edit.clear()  # the field never shows the key again
        if not value:
            return None
        return self._keyring_call(secrets.set_key, self.provider, value)

    def remove_key(self) -> asyncio.Future[None] | None:
        return self._keyring_call(secrets.delete_key, self.provider)

    def _keyring_call(self, call: Callable[..., None], *args: str) -> asyncio.Future[None] | None:
        if _running_loop() is None:
            self._finish_keyring_call(self._try(call, *args))
            return None
        return asyncio.ensure_future(self._call_off_loop(call, *args))

    async def _call_off_loop(self, call: Callable[..., None], *args: str) -> None:
        try:
            await secrets.off_loop(call, *args)
        except (secrets.KeyringUnavailable, secrets.KeyringProblem) as exc:
            self._finish_keyring_call(f"Cannot change the key: {exc}")
            return
        self._finish_keyring_call(None)

    @staticmethod
    def _try(call: Callable[..., None], *args: str) -> str | None:
        try:
            call(*args)
        except secrets.KeyringUnavailable as exc:
            return str(exc)
        return None

    def _finish_keyring_call(self, problem: str | None) -> None:
        if self.status is None:
            return
        if problem is not None:
            self.status.setText(problem)
            return
        self.refresh()
        self.keyChanged.emit()

    def value(self) -> ProviderSettings:
        return ProviderSettings(
            url=self.url.text().strip(), model=self.model.text().strip(), voice=self._voice
        )


class PipelineChoice(QGroupBox):
    """Chained (speech recognition → language model → speech synthesis) or one
    speech-to-speech engine, with its model, voice, turn detection and greeting."""

    def __init__(
        self, s: Settings, engine_combo: Callable[[dict[str, str], str], QComboBox]
    ) -> None:
        super().__init__("Pipeline")
        self.setObjectName("pipelineChoice")
        self.chained_widgets: list[QWidget] = []
        layout = QVBoxLayout(self)
        self.chained_radio = QRadioButton(
            "Chained: speech recognition → language model → speech synthesis"
        )
        self.s2s_radio = QRadioButton("Speech to speech: one engine hears, answers and speaks")
        group = QButtonGroup(self)
        for radio in (self.chained_radio, self.s2s_radio):
            group.addButton(radio)
            layout.addWidget(radio)
        (self.s2s_radio if s.pipeline == "s2s" else self.chained_radio).setChecked(True)
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.engine = engine_combo(S2S_FACTORIES, s.s2s.engine)
        self.model = QLineEdit(s.s2s.model)
        self.model.setPlaceholderText("provider default")
        self.voice = QComboBox()
        self.voice.setEditable(True)
        edit = self.voice.lineEdit()
        if edit is not None:
            edit.setPlaceholderText("provider default")
        self.turns = QComboBox()
        self.turns.addItem("Parley's (on this computer)", "parley")
        self.turns.addItem("The provider's", "provider")
        self.turns.setCurrentIndex(max(0, self.turns.findData(s.s2s.turn_detection)))
        self.turns.setToolTip(
            "Hands-free: who decides that you finished speaking, or that you are cutting in"
        )
        self.greeting = QLineEdit(s.s2s.greeting)
        self.greeting.setPlaceholderText("none")
        form.addRow("Engine", self.engine)
        form.addRow("Model", self.model)
        form.addRow("Voice", self.voice)
        form.addRow("Turn detection", self.turns)
        form.addRow("Greeting", self.greeting)
        layout.addLayout(form)
        self._s2s_widgets: list[QWidget] = [
            self.engine, self.model, self.voice, self.turns, self.greeting,
        ]  # fmt: skip
        self._fill_voices(s.s2s.voice)
        self.engine.currentIndexChanged.connect(lambda _i: self._fill_voices(""))
        self.s2s_radio.toggled.connect(lambda _on: self.refresh())

    def _fill_voices(self, current: str) -> None:
        self.voice.clear()
        self.voice.addItem("provider default", "")
        for name in S2S_VOICES.get(str(self.engine.currentData()), ()):
            self.voice.addItem(name, name)
        index = self.voice.findData(current)
        if index < 0:
            self.voice.addItem(current, current)
            index = self.voice.count() - 1
        self.voice.setCurrentIndex(index)

    def refresh(self) -> None:
        """Only the chosen pipeline's fields are editable."""
        s2s = self.s2s_radio.isChecked()
        for widget in self._s2s_widgets:
            widget.setEnabled(s2s)
        for widget in self.chained_widgets:
            widget.setEnabled(not s2s)

    def value(self) -> tuple[Literal["chained", "s2s"], SpeechToSpeechSettings]:
        voice = self.voice.currentText().strip()
        if voice == "provider default":
            voice = ""
        chosen = SpeechToSpeechSettings(
            engine=str(self.engine.currentData()),
            model=self.model.text().strip(),
            voice=voice,
            turn_detection="provider" if self.turns.currentData() == "provider" else "parley",
            greeting=self.greeting.text().strip(),
        )
        return ("s2s" if self.s2s_radio.isChecked() else "chained"), chosen


class SettingsDialog(QDialog):
    """Edits a copy of the settings; ``applied(settings, keys_changed)`` on OK or Apply."""

    applied = Signal(object, bool)

    def __init__(
        self,
        settings: Settings,
        *,
        voices: VoiceLister | None = None,
        preview: Previewer | None = None,
        devices: DeviceSource | None = None,
        refresh_devices: DeviceRefresher | None = None,
        tool_servers: Callable[[], list[ServerStatus]] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Parley — Settings")
        self.setObjectName("settingsDialog")
        self.resize(760, 620)
        self._original = copy.deepcopy(settings)
        self._voices = voices
        self._preview = preview
        self._devices = devices
        self._refresh_devices = refresh_devices
        self._refresh_task: asyncio.Future[Any] | None = None
        self._preview_task: asyncio.Future[Any] | None = None
        self._keys_changed = False
        #: Why keys cannot be stored (None: they can, or the keyring has not answered yet).
        self.keyring_problem: str | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 16, 16, 12)
        self.tabs = QTabWidget()
        self.tabs.tabBar().setAccessibleName("Settings sections")
        layout.addWidget(self.tabs)
        self.tabs.addTab(self._engines_tab(settings), "Engines")
        self.tabs.addTab(self._providers_tab(settings), "API keys")
        self.tabs.addTab(self._voice_tab(settings), "Language && voice")
        self.tabs.addTab(self._audio_tab(settings), "Audio")
        self.tabs.addTab(self._turns_tab(settings), "Turns")
        self.tabs.addTab(self._budgets_tab(settings.budgets), "Budgets")
        self.tabs.addTab(self._prompt_tab(settings), "Prompt")
        self.tools_tab = ToolsTab(settings)
        if tool_servers is not None:
            self.tools_tab.set_statuses(tool_servers())
        self.tabs.addTab(self.tools_tab, "Tools")
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok
            | QDialogButtonBox.StandardButton.Apply
            | QDialogButtonBox.StandardButton.Cancel
        )
        ok = buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setObjectName("primaryButton")
        buttons.clicked.connect(self._on_button)
        self.buttons = buttons
        layout.addWidget(buttons)
        self._update_key_warning()

    # ----------------------------------------------------------------------------------- tabs

    def _page(self) -> tuple[QWidget, QVBoxLayout]:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(18, 18, 18, 18)
        layout.setSpacing(12)
        return page, layout

    def _engine_combo(self, table: dict[str, str], current: str) -> QComboBox:
        combo = QComboBox()
        for name in table:
            if name in HIDDEN_ENGINES and name != current:
                continue
            combo.addItem(ENGINE_NAMES.get(name, name), name)
        index = combo.findData(current)
        if index < 0:
            combo.addItem(f"{current} (unknown)", current)
            index = combo.count() - 1
        combo.setCurrentIndex(index)
        return combo

    def _engines_tab(self, s: Settings) -> QWidget:
        page, layout = self._page()
        self.pipeline = PipelineChoice(s, self._engine_combo)
        layout.addWidget(self.pipeline)
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.stt_combo = self._engine_combo(STT_FACTORIES, s.stt)
        self.llm_combo = self._engine_combo(LLM_FACTORIES, s.llm)
        self.tts_combo = self._engine_combo(TTS_FACTORIES, s.tts)
        form.addRow("Speech recognition", self.stt_combo)
        form.addRow("Language model", self.llm_combo)
        form.addRow("Speech synthesis", self.tts_combo)
        self.local_model = QComboBox()
        for name, model in MODELS.items():
            self.local_model.addItem(f"{model.title} — {MODEL_NOTES.get(name, '')}", name)
        index = self.local_model.findData(s.local_llm_model)
        if index < 0:
            self.local_model.addItem(f"{s.local_llm_model} (unknown)", s.local_llm_model)
            index = self.local_model.count() - 1
        self.local_model.setCurrentIndex(index)
        form.addRow("Offline language model", self.local_model)
        layout.addLayout(form)
        self.key_warning = _note("", "warningNote")
        self.key_warning.hide()
        layout.addWidget(self.key_warning)
        self.fallback = QCheckBox("When a cloud engine fails before answering, use the offline one")
        self.fallback.setChecked(s.fallback_to_local)
        self.fallback.toggled.connect(self._update_key_warning)
        layout.addWidget(self.fallback)
        layout.addWidget(
            _note(
                "Offline engines run on this computer and need no account. Cloud engines need the "
                "provider's API key (API keys tab). Changes apply without restarting; the "
                "conversation is kept."
            )
        )
        layout.addStretch(1)
        self.tts_combo.currentIndexChanged.connect(self._refresh_voices)
        for combo in (self.stt_combo, self.llm_combo, self.tts_combo):
            combo.currentIndexChanged.connect(self._update_key_warning)
            combo.currentIndexChanged.connect(self._refresh_languages)
        self.pipeline.chained_widgets = [self.stt_combo, self.llm_combo, self.tts_combo]
        self.pipeline.refresh()
        return page

    def _providers_tab(self, s: Settings) -> QWidget:
        outer = QWidget()
        outer_layout = QVBoxLayout(outer)
        outer_layout.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        page, layout = self._page()
        page.setObjectName("settingsPage")
        self.keyring_note = _note("API keys are stored in the system keyring, never in files.")
        layout.addWidget(self.keyring_note)
        self.provider_rows: dict[str, ProviderRow] = {}
        for provider in DEFAULT_ENDPOINTS:
            row = ProviderRow(provider, s.provider(provider))
            row.keyChanged.connect(self._on_key_changed)
            self.provider_rows[provider] = row
            layout.addWidget(row)
        layout.addStretch(1)
        scroll.setWidget(page)
        outer_layout.addWidget(scroll)
        #: Asking the keyring, when it happens in the background.
        self.keyring_check = self._check_keyring()
        return outer

    def _check_keyring(self) -> asyncio.Future[None] | None:
        """Ask the keyring whether it works and which keys it holds (see the module docstring)."""
        keyed = [p for p, row in self.provider_rows.items() if row.key_edit is not None]
        if _running_loop() is not None:
            return asyncio.ensure_future(self._check_keyring_off_loop(keyed))
        for provider in keyed:
            with contextlib.suppress(secrets.KeyringProblem):
                secrets.get_key(provider)
        self._keyring_checked(secrets.keyring_status())
        return None

    async def _check_keyring_off_loop(self, providers: list[str]) -> None:
        try:
            problem = await secrets.off_loop(secrets.keyring_status)
        except secrets.KeyringProblem as exc:
            problem = f"Cannot use the system keyring: {exc}."
        if problem is None:
            for provider in providers:
                with contextlib.suppress(secrets.KeyringProblem):
                    await secrets.aget_key(provider)
        self._keyring_checked(problem)

    def _keyring_checked(self, problem: str | None) -> None:
        self.keyring_problem = problem
        self.keyring_note.setText(
            problem or "API keys are stored in the system keyring, never in files."
        )
        self.keyring_note.setObjectName("warningNote" if problem else "fieldNote")
        self.keyring_note.style().unpolish(self.keyring_note)
        self.keyring_note.style().polish(self.keyring_note)
        for row in self.provider_rows.values():
            row.keyring_checked(problem)

    def _voice_tab(self, s: Settings) -> QWidget:
        page, layout = self._page()
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.language_combo = QComboBox()
        self.language_combo.setMinimumWidth(320)
        form.addRow("Language", self.language_combo)
        self.language_marks = _note("", "languageMarks")
        form.addRow("", self.language_marks)
        self.detect_language = QCheckBox(
            "Answer in the language I speak (detected; the language above is the first guess)"
        )
        self.detect_language.setChecked(s.detect_language)
        self.detect_language.setToolTip(
            "Each question is answered in the language it was spoken in, among the languages "
            "listed. The offline speech recognition then uses its multilingual model, which is "
            "slower for English."
        )
        form.addRow("", self.detect_language)
        self.voice_combo = QComboBox()
        self.voice_combo.setMinimumWidth(320)
        voice_row = QHBoxLayout()
        voice_row.addWidget(self.voice_combo, 1)
        self.preview_button = QPushButton(" Preview")
        self.preview_button.setIcon(icon("play"))
        self.preview_button.setToolTip("Speak a sample sentence in this voice")
        self.preview_button.setAccessibleDescription("Speak a sample sentence in this voice")
        self.preview_button.clicked.connect(self.start_preview)
        self.preview_button.setEnabled(self._preview is not None)
        voice_row.addWidget(self.preview_button)
        form.addRow("Voice", voice_row)
        voice_label = form.labelForField(voice_row)
        if isinstance(voice_label, QLabel):
            voice_label.setBuddy(self.voice_combo)
        layout.addLayout(form)
        self.preview_status = _note("")
        layout.addWidget(self.preview_status)
        layout.addWidget(
            _note(
                "The languages listed are those Parley can hold a conversation in with the "
                "chosen engines: speech recognition, a voice and the language model all handle "
                "them. Answers follow a change of language from the next question, in any "
                "conversation. The voices listed are the ones the chosen speech engine has for "
                "the language."
            )
        )
        layout.addStretch(1)
        self._wanted_voice = s.voice
        self._wanted_language = s.language
        self._refresh_languages()
        self.language_combo.currentIndexChanged.connect(self._language_chosen)
        self._refresh_voices()
        return page

    def _engine_choice(self) -> Settings:
        """The settings as far as the engines chosen so far (for what they support)."""
        s = copy.deepcopy(self._original)
        for attr in ("stt", "llm", "tts"):
            combo = getattr(self, f"{attr}_combo", None)
            if combo is not None:
                setattr(s, attr, str(combo.currentData()))
        return s

    def _refresh_languages(self) -> None:
        """Offer the languages the chosen engines can hold a conversation in."""
        if not hasattr(self, "language_combo"):
            return
        combo = self.language_combo
        wanted = str(combo.currentData()) if combo.count() else self._wanted_language
        offered = languages.conversation_languages(self._engine_choice())
        combo.blockSignals(True)
        combo.clear()
        for lang in offered:
            combo.addItem(f"{lang.label}   ·   {lang.brief}", lang.code)
            combo.setItemData(combo.count() - 1, lang.marks, Qt.ItemDataRole.ToolTipRole)
        index = combo.findData(wanted)
        if index < 0:
            close = languages.find(self._engine_choice(), wanted)
            index = combo.findData(close.code) if close is not None else -1
        if index < 0:
            combo.insertItem(0, f"{wanted} (not fully supported by these engines)", wanted)
            combo.setItemData(
                0,
                "Speech recognition, a voice or the language model lacks this language.",
                Qt.ItemDataRole.ToolTipRole,
            )
            index = 0
        combo.setCurrentIndex(index)
        combo.blockSignals(False)
        self._show_marks()

    def _language_chosen(self) -> None:
        self._wanted_language = str(self.language_combo.currentData() or "en")
        self._show_marks()
        self._refresh_voices()

    def _show_marks(self) -> None:
        index = self.language_combo.currentIndex()
        marks = self.language_combo.itemData(index, Qt.ItemDataRole.ToolTipRole)
        self.language_marks.setText(str(marks or ""))
        self.language_combo.setAccessibleDescription(str(marks or ""))

    def _audio_tab(self, s: Settings) -> QWidget:
        page, layout = self._page()
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.input_combo = QComboBox()
        self.output_combo = QComboBox()
        form.addRow("Microphone", self.input_combo)
        form.addRow("Speaker", self.output_combo)
        layout.addLayout(form)
        self.devices_note = _note("")
        layout.addWidget(self.devices_note)
        self.refresh_button = QPushButton("Refresh list")
        self.refresh_button.setAccessibleDescription("Look for microphones and speakers again")
        self.refresh_button.clicked.connect(self.refresh_devices)
        row = QHBoxLayout()
        row.addWidget(self.refresh_button)
        row.addStretch(1)
        layout.addLayout(row)
        layout.addWidget(
            _note(
                "Devices plugged in while Parley runs appear here by themselves, and are used "
                "at once when nothing else works or when they are the ones chosen. A chosen "
                "device that is not connected is replaced by the system default until it is."
            )
        )
        self.echo_settings = EchoSettings(s)
        layout.addWidget(self.echo_settings)
        layout.addStretch(1)
        self._wanted_devices = (s.input_device, s.output_device)
        found = self._devices() if self._devices is not None else None
        if found is None or (not found.inputs and not found.outputs and not found.via):
            found = devices.scan(restart_portaudio=False)
        self.set_devices(found)
        return page

    def set_devices(self, found: DeviceList) -> None:
        """Show ``found``, keeping the devices chosen so far (listed as not connected if gone)."""
        if self.input_combo.count():
            self._wanted_devices = (
                self._device_choice(self.input_combo),
                self._device_choice(self.output_combo),
            )
        for combo, current, kind in (
            (self.input_combo, self._wanted_devices[0], "input"),
            (self.output_combo, self._wanted_devices[1], "output"),
        ):
            combo.clear()
            combo.addItem("System default", "")
            choices = found.choices("input" if kind == "input" else "output")
            for choice in choices:
                combo.addItem(
                    choice.label + ("  (default)" if choice.is_default else ""), choice.key
                )
            index = combo.findData(current)
            if index < 0:
                shown = current.removeprefix("pulse:")
                combo.addItem(f"{shown} (not connected)", current)
                index = combo.count() - 1
            combo.setCurrentIndex(index)
        if not found.inputs and not found.outputs:
            self.devices_note.setText(
                "No audio devices were found. Parley still works for typed messages; replies are "
                "shown as text until a speaker is connected."
            )
        else:
            via = f" (from {found.via})" if found.via else ""
            self.devices_note.setText(
                f"{len(found.inputs)} microphone(s) and {len(found.outputs)} speaker(s) found{via}."
            )

    def refresh_devices(self) -> asyncio.Future[Any] | None:
        """Look for devices again (in the background); returns the running look."""
        if self._refresh_task is not None and not self._refresh_task.done():
            return self._refresh_task
        if self._refresh_devices is None:
            self.set_devices(devices.scan())
            return None
        self.refresh_button.setEnabled(False)
        self.devices_note.setText("Looking for devices…")

        async def look() -> None:
            assert self._refresh_devices is not None
            try:
                self.set_devices(await self._refresh_devices())
            finally:
                self.refresh_button.setEnabled(True)

        self._refresh_task = asyncio.ensure_future(look())
        return self._refresh_task

    @staticmethod
    def _device_choice(combo: QComboBox) -> str:
        data = combo.currentData()
        return str(data) if data is not None else ""

    def _turns_tab(self, s: Settings) -> QWidget:
        page, layout = self._page()
        mode_box = QGroupBox("Turn taking")
        mode_layout = QVBoxLayout(mode_box)
        self.ptt_radio = QRadioButton("Push to talk: hold the hotkey or the microphone button")
        self.vad_radio = QRadioButton("Hands-free: Parley answers when you pause")
        group = QButtonGroup(self)
        group.addButton(self.ptt_radio)
        group.addButton(self.vad_radio)
        (self.vad_radio if s.turn_mode == "vad" else self.ptt_radio).setChecked(True)
        mode_layout.addWidget(self.ptt_radio)
        mode_layout.addWidget(self.vad_radio)
        hotkey_form = QFormLayout()
        self.hotkey_edit = QKeySequenceEdit(
            QKeySequence.fromString(s.hotkey, QKeySequence.SequenceFormat.PortableText)
        )
        self.hotkey_edit.setMaximumSequenceLength(1)
        hotkey_form.addRow("Hold-to-talk key (in the window)", self.hotkey_edit)
        mode_layout.addLayout(hotkey_form)
        self.global_hotkey = QCheckBox(
            "Also work when Parley is in the background (system-wide hotkey)"
        )
        problem = global_hotkey_status()
        self.global_hotkey.setChecked(s.global_hotkey and problem is None)
        self.global_hotkey.setEnabled(problem is None)
        mode_layout.addWidget(self.global_hotkey)
        self.global_note = _note(
            problem or global_hotkey_note(), "warningNote" if problem else "fieldNote"
        )
        mode_layout.addWidget(self.global_note)
        self.start_in_tray = QCheckBox("Start with only the tray icon showing (minimized)")
        self.start_in_tray.setChecked(s.start_in_tray)
        self.start_in_tray.setToolTip(
            "The tray icon shows what Parley is doing; click it to open the window. Without a "
            "tray on this desktop the window opens as usual."
        )
        mode_layout.addWidget(self.start_in_tray)
        layout.addWidget(mode_box)

        columns = QHBoxLayout()
        vad_box = QGroupBox("Voice detection (hands-free)")
        vad_form = QFormLayout(vad_box)
        self.vad_threshold = QDoubleSpinBox()
        self.vad_threshold.setRange(0.05, 0.95)
        self.vad_threshold.setSingleStep(0.05)
        self.vad_threshold.setValue(s.vad.threshold)
        vad_form.addRow("Speech threshold", self.vad_threshold)
        self.vad_min_speech = _spin(0, 2000, s.vad.min_speech_ms)
        vad_form.addRow("Shortest speech", self.vad_min_speech)
        self.vad_end_silence = _spin(100, 5000, s.vad.end_silence_ms)
        vad_form.addRow("Silence that ends a turn", self.vad_end_silence)
        self.vad_preroll = _spin(0, 2000, s.vad.preroll_ms)
        vad_form.addRow("Audio kept before speech", self.vad_preroll)
        columns.addWidget(vad_box)
        barge_box = QGroupBox("Interrupting Parley")
        barge_form = QFormLayout(barge_box)
        self.interrupt_enabled = QCheckBox("Speaking interrupts the answer")
        self.interrupt_enabled.setChecked(s.interruption.enabled)
        barge_form.addRow(self.interrupt_enabled)
        self.interrupt_min = _spin(0, 3000, s.interruption.min_duration_ms)
        barge_form.addRow("Speech that counts", self.interrupt_min)
        self.interrupt_resume = _spin(0, 5000, s.interruption.resume_timeout_ms)
        barge_form.addRow("Resume after a false alarm", self.interrupt_resume)
        columns.addWidget(barge_box)
        layout.addLayout(columns)
        layout.addStretch(1)
        return page

    def _budgets_tab(self, budgets: Budgets) -> QWidget:
        page, layout = self._page()
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.budget_stt = _spin(0, 10_000, int(budgets.stt_final), step=25)
        self.budget_llm = _spin(0, 20_000, int(budgets.llm_first_token), step=25)
        self.budget_tts = _spin(0, 10_000, int(budgets.tts_first_audio), step=25)
        self.budget_v2v = _spin(0, 30_000, int(budgets.voice_to_voice), step=50)
        form.addRow("Final transcript after speech ends", self.budget_stt)
        form.addRow("Language model first token", self.budget_llm)
        form.addRow("Speech synthesis first audio", self.budget_tts)
        form.addRow("Voice-to-voice", self.budget_v2v)
        layout.addLayout(form)
        layout.addWidget(
            _note("Stages slower than their budget are drawn red in the latency timeline.")
        )
        layout.addStretch(1)
        return page

    def _prompt_tab(self, s: Settings) -> QWidget:
        page, layout = self._page()
        self.prompt_edit = QPlainTextEdit(s.system_prompt)
        self.prompt_edit.setAccessibleName("System prompt")
        self.prompt_edit.setTabChangesFocus(True)  # Tab leaves the field; it never types a tab
        layout.addWidget(
            _note(
                "How Parley should behave. Sent at the start of every request, followed by "
                "the language to answer in."
            )
        )
        layout.addWidget(self.prompt_edit, 1)
        row = QHBoxLayout()
        reset = QPushButton("Restore default")
        reset.clicked.connect(lambda: self.prompt_edit.setPlainText(DEFAULT_SYSTEM_PROMPT))
        row.addWidget(reset)
        row.addStretch(1)
        self.context_tokens = _spin(500, 128_000, s.context_tokens, suffix=" tokens", step=500)
        context_label = QLabel("Context budget")
        context_label.setBuddy(self.context_tokens)
        row.addWidget(context_label)
        row.addWidget(self.context_tokens)
        layout.addLayout(row)
        return page

    # ---------------------------------------------------------------------------------- voice

    def _refresh_voices(self) -> None:
        if not hasattr(self, "voice_combo"):
            return
        wanted = self.voice_combo.currentData() if self.voice_combo.count() else self._wanted_voice
        language = str(self.language_combo.currentData() or self._wanted_language or "en")
        engine = str(self.tts_combo.currentData() or "local")
        self.voice_combo.clear()
        self.voice_combo.addItem("Default voice for the language", "")
        found: list[Voice] = []
        if self._voices is not None:
            try:
                found = self._voices(engine, language)
            except Exception as exc:
                log.info("voice list unavailable: %s", exc)
        for voice in found:
            label = voice.name if not voice.description else f"{voice.name} — {voice.description}"
            self.voice_combo.addItem(label, voice.id)
        index = self.voice_combo.findData(wanted or "")
        self.voice_combo.setCurrentIndex(max(0, index))
        if not found:
            self.preview_status.setText(
                "No voice list for this engine and language; the engine's default voice is used."
            )
        else:
            self.preview_status.setText(f"{len(found)} voice(s) for this language.")

    def start_preview(self) -> asyncio.Future[Any] | None:
        """Speak the sample sentence (in the background); returns the running task."""
        if self._preview is None or (
            self._preview_task is not None and not self._preview_task.done()
        ):
            return None
        voice = str(self.voice_combo.currentData() or "")
        language = str(self.language_combo.currentData() or "en")
        engine = str(self.tts_combo.currentData() or "local")
        self.preview_button.setEnabled(False)
        self.preview_status.setText("Playing a sample…")
        self._preview_task = asyncio.ensure_future(self._run_preview(voice, language, engine))
        return self._preview_task

    async def _run_preview(self, voice: str, language: str, engine: str) -> None:
        assert self._preview is not None
        try:
            seconds = await self._preview(voice, language, engine)
            self.preview_status.setText(f"Played {seconds:.1f} s of speech.")
        except Exception as exc:
            log.info("voice preview failed: %s", exc)
            self.preview_status.setText(
                f"Preview failed: {secrets.redact(str(exc)) or type(exc).__name__}"
            )
        finally:
            self.preview_button.setEnabled(True)

    # ---------------------------------------------------------------------------------- result

    def _on_key_changed(self) -> None:
        self._keys_changed = True
        self._update_key_warning()

    def _update_key_warning(self) -> None:
        """Say which chosen cloud engines have no key, and where to add it."""
        if not hasattr(self, "key_warning"):
            return
        missing = missing_keys(self._engine_choice())
        if not missing:
            self.key_warning.hide()
            return
        lines = [
            f"{secrets.DISPLAY_NAMES.get(name, name)} ({kind}) has no API key yet: add it under "
            f"API keys → {secrets.DISPLAY_NAMES.get(name, name)}."
            for kind, name in missing
        ]
        fallback = (
            " Until then the offline engine answers."
            if self.fallback.isChecked()
            else " Until then it cannot work."
        )
        self.key_warning.setText(" ".join(lines) + fallback)
        self.key_warning.show()

    def show_provider(self, provider: str) -> None:
        """Open the API keys tab at ``provider``'s key field."""
        row = self.provider_rows.get(provider)
        self.tabs.setCurrentIndex(1)
        if row is None:
            return
        page = self.tabs.widget(1)
        scroll = page.findChild(QScrollArea) if page is not None else None
        if scroll is not None:
            scroll.ensureWidgetVisible(row)
        target = row.key_edit if row.key_edit is not None and row.key_edit.isEnabled() else row.url
        target.setFocus(Qt.FocusReason.OtherFocusReason)

    def result_settings(self) -> Settings:
        """The settings as edited (the original object is left untouched)."""
        s = copy.deepcopy(self._original)
        s.pipeline, s.s2s = self.pipeline.value()
        s.stt = str(self.stt_combo.currentData())
        s.llm = str(self.llm_combo.currentData())
        s.tts = str(self.tts_combo.currentData())
        s.local_llm_model = str(self.local_model.currentData() or s.local_llm_model)
        s.fallback_to_local = self.fallback.isChecked()
        providers = dict(s.providers)
        for name, row in self.provider_rows.items():
            value = row.value()
            if value != ProviderSettings() or name in providers:
                providers[name] = value
        s.providers = {k: v for k, v in providers.items() if v != ProviderSettings()}
        s.language = str(self.language_combo.currentData() or "en")
        s.detect_language = self.detect_language.isChecked()
        s.voice = str(self.voice_combo.currentData() or "")
        s.input_device = self._device_choice(self.input_combo)
        s.output_device = self._device_choice(self.output_combo)
        self.echo_settings.apply_to(s)
        s.turn_mode = "vad" if self.vad_radio.isChecked() else "ptt"
        sequence = self.hotkey_edit.keySequence()
        s.hotkey = sequence.toString(QKeySequence.SequenceFormat.PortableText) or "Space"
        s.global_hotkey = self.global_hotkey.isChecked()
        s.start_in_tray = self.start_in_tray.isChecked()
        s.vad.threshold = round(self.vad_threshold.value(), 3)
        s.vad.min_speech_ms = self.vad_min_speech.value()
        s.vad.end_silence_ms = self.vad_end_silence.value()
        s.vad.preroll_ms = self.vad_preroll.value()
        s.interruption.enabled = self.interrupt_enabled.isChecked()
        s.interruption.min_duration_ms = self.interrupt_min.value()
        s.interruption.resume_timeout_ms = self.interrupt_resume.value()
        s.budgets = Budgets(
            stt_final=float(self.budget_stt.value()),
            llm_first_token=float(self.budget_llm.value()),
            tts_first_audio=float(self.budget_tts.value()),
            voice_to_voice=float(self.budget_v2v.value()),
        )
        s.system_prompt = self.prompt_edit.toPlainText().strip() or DEFAULT_SYSTEM_PROMPT
        s.context_tokens = self.context_tokens.value()
        self.tools_tab.apply_to(s)
        return s

    def apply(self) -> Settings:
        settings = self.result_settings()
        self._original = copy.deepcopy(settings)
        self.applied.emit(settings, self._keys_changed)
        self._keys_changed = False
        return settings

    def _on_button(self, button: QAbstractButton) -> None:
        role = self.buttons.buttonRole(button)
        if role == QDialogButtonBox.ButtonRole.ApplyRole:
            self.apply()
        elif role == QDialogButtonBox.ButtonRole.AcceptRole:
            self.apply()
            self.accept()
        else:
            if self._keys_changed:  # keys are stored at once; engines must still pick them up
                self.applied.emit(copy.deepcopy(self._original), True)
                self._keys_changed = False
            self.reject()
