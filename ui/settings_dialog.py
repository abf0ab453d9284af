"""The settings dialog: engines, providers and keys, voice, audio devices, turns, budgets, prompt.

API keys go straight to the OS keyring through ``assistant.secrets`` and are never shown, kept in
the settings or written anywhere else; without a keyring the dialog says so and stores nothing.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable, Coroutine
from typing import Any

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

from assistant import secrets
from assistant.audio import devices
from assistant.config import DEFAULT_ENDPOINTS, DEFAULT_SYSTEM_PROMPT, ProviderSettings, Settings
from assistant.engines.base import Voice
from assistant.engines.registry import LLM_FACTORIES, STT_FACTORIES, TTS_FACTORIES
from assistant.timeline import Budgets
from ui.echo import EchoSettings
from ui.hotkeys import global_hotkey_note, global_hotkey_status
from ui.resources import icon

log = logging.getLogger(__name__)

ENGINE_NAMES: dict[str, str] = {
    "local": "Offline (on this computer)",
    "openai": "OpenAI",
    "openai_compatible": "OpenAI-compatible server",
    "assemblyai": "AssemblyAI",
    "deepgram": "Deepgram",
    "elevenlabs": "ElevenLabs",
    "async": "Async",
    "fake": "Test engine (scripted, no real speech)",
}
PROVIDER_NAMES: dict[str, str] = {
    **secrets.DISPLAY_NAMES,
    "openai_realtime": "OpenAI Realtime (speech recognition)",
}
#: Providers whose key is another provider's.
SHARED_KEYS = {"openai_realtime": "openai"}

VoiceLister = Callable[[str, str], list[Voice]]
Previewer = Callable[[str, str, str], Coroutine[Any, Any, float]]


def fallback_languages() -> list[tuple[str, str]]:
    """The offline voices' languages, or a short list when they are not installed."""
    try:
        from assistant.engines.local.voices import languages

        found = languages()
    except Exception as exc:  # the offline voices are optional
        log.info("offline voice catalog unavailable: %s", exc)
        found = []
    return found or [
        ("en", "English"),
        ("de", "German"),
        ("es", "Spanish"),
        ("fr", "French"),
        ("it", "Italian"),
    ]


def key_status_text(provider: str) -> tuple[str, bool]:
    """(What to show about the provider's key, whether one is set) — never the key itself."""
    source = secrets.key_source(provider)
    if source == "environment":
        return f"Key set by the environment variable {secrets.ENV_VARS.get(provider, '')}", True
    if source == "keyring":
        return "Key stored in the system keyring", True
    return "No key stored", False


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

    def __init__(
        self, provider: str, settings: ProviderSettings, keyring_problem: str | None
    ) -> None:
        super().__init__(PROVIDER_NAMES.get(provider, provider))
        self.provider = provider
        form = QFormLayout(self)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.url = QLineEdit(settings.url)
        self.url.setPlaceholderText(DEFAULT_ENDPOINTS.get(provider, ""))
        self.url.setToolTip(
            "Leave empty for the default endpoint. Point it at a local server to test."
        )
        form.addRow("Endpoint URL", self.url)
        self.model = QLineEdit(settings.model)
        self.model.setPlaceholderText("provider default")
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
        self.save_button = QPushButton("Save key")
        self.remove_button = QPushButton("Remove")
        self.save_button.clicked.connect(self.save_key)
        self.remove_button.clicked.connect(self.remove_key)
        self.key_edit.returnPressed.connect(self.save_key)
        row = QHBoxLayout()
        row.addWidget(self.key_edit, 1)
        row.addWidget(self.save_button)
        row.addWidget(self.remove_button)
        form.addRow("API key", row)
        form.addRow("", self.status)
        if keyring_problem is not None:
            self.key_edit.setEnabled(False)
            self.key_edit.setPlaceholderText("no system keyring: cannot store keys")
            self.save_button.setEnabled(False)
            self.remove_button.setEnabled(False)
        else:
            self.key_edit.setPlaceholderText("paste a new key to store it in the system keyring")
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
            self.remove_button.setEnabled(secrets.key_source(self.provider) == "keyring")

    def save_key(self) -> None:
        if self.key_edit is None or self.status is None:
            return
        value = self.key_edit.text().strip()
        if not value:
            return
        try:
            secrets.set_key(self.provider, value)
        except secrets.KeyringUnavailable as exc:
            self.status.setText(str(exc))
            return
        finally:
            self.key_edit.clear()
        self.refresh()
        self.keyChanged.emit()

    def remove_key(self) -> None:
        secrets.delete_key(self.provider)
        self.refresh()
        self.keyChanged.emit()

    def value(self) -> ProviderSettings:
        return ProviderSettings(
            url=self.url.text().strip(), model=self.model.text().strip(), voice=self._voice
        )


class SettingsDialog(QDialog):
    """Edits a copy of the settings; ``applied(settings, keys_changed)`` on OK or Apply."""

    applied = Signal(object, bool)

    def __init__(
        self,
        settings: Settings,
        *,
        voices: VoiceLister | None = None,
        preview: Previewer | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Parley — Settings")
        self.setObjectName("settingsDialog")
        self.resize(760, 620)
        self._original = copy.deepcopy(settings)
        self._voices = voices
        self._preview = preview
        self._preview_task: asyncio.Future[Any] | None = None
        self._keys_changed = False
        self.keyring_problem = secrets.keyring_status()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 16, 16, 12)
        self.tabs = QTabWidget()
        layout.addWidget(self.tabs)
        self.tabs.addTab(self._engines_tab(settings), "Engines")
        self.tabs.addTab(self._providers_tab(settings), "API keys")
        self.tabs.addTab(self._voice_tab(settings), "Voice")
        self.tabs.addTab(self._audio_tab(settings), "Audio")
        self.tabs.addTab(self._turns_tab(settings), "Turns")
        self.tabs.addTab(self._budgets_tab(settings.budgets), "Budgets")
        self.tabs.addTab(self._prompt_tab(settings), "Prompt")
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
            combo.addItem(ENGINE_NAMES.get(name, name), name)
        index = combo.findData(current)
        if index < 0:
            combo.addItem(f"{current} (unknown)", current)
            index = combo.count() - 1
        combo.setCurrentIndex(index)
        return combo

    def _engines_tab(self, s: Settings) -> QWidget:
        page, layout = self._page()
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.stt_combo = self._engine_combo(STT_FACTORIES, s.stt)
        self.llm_combo = self._engine_combo(LLM_FACTORIES, s.llm)
        self.tts_combo = self._engine_combo(TTS_FACTORIES, s.tts)
        form.addRow("Speech recognition", self.stt_combo)
        form.addRow("Language model", self.llm_combo)
        form.addRow("Speech synthesis", self.tts_combo)
        self.local_model = QLineEdit(s.local_llm_model)
        form.addRow("Offline language model", self.local_model)
        layout.addLayout(form)
        self.fallback = QCheckBox("When a cloud engine fails before answering, use the offline one")
        self.fallback.setChecked(s.fallback_to_local)
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
        self.keyring_note = _note(
            self.keyring_problem or "API keys are stored in the system keyring, never in files.",
            "warningNote" if self.keyring_problem else "fieldNote",
        )
        layout.addWidget(self.keyring_note)
        self.provider_rows: dict[str, ProviderRow] = {}
        for provider in DEFAULT_ENDPOINTS:
            row = ProviderRow(provider, s.provider(provider), self.keyring_problem)
            row.keyChanged.connect(self._on_key_changed)
            self.provider_rows[provider] = row
            layout.addWidget(row)
        layout.addStretch(1)
        scroll.setWidget(page)
        outer_layout.addWidget(scroll)
        return outer

    def _voice_tab(self, s: Settings) -> QWidget:
        page, layout = self._page()
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.language_combo = QComboBox()
        languages = fallback_languages()
        for code, name in languages:
            self.language_combo.addItem(f"{name}  ({code})", code)
        index = self.language_combo.findData(s.language)
        if index < 0:
            self.language_combo.insertItem(0, s.language, s.language)
            index = 0
        self.language_combo.setCurrentIndex(index)
        form.addRow("Language", self.language_combo)
        self.voice_combo = QComboBox()
        self.voice_combo.setMinimumWidth(320)
        voice_row = QHBoxLayout()
        voice_row.addWidget(self.voice_combo, 1)
        self.preview_button = QPushButton(" Preview")
        self.preview_button.setIcon(icon("play"))
        self.preview_button.setToolTip("Speak a sample sentence in this voice")
        self.preview_button.clicked.connect(self.start_preview)
        self.preview_button.setEnabled(self._preview is not None)
        voice_row.addWidget(self.preview_button)
        form.addRow("Voice", voice_row)
        layout.addLayout(form)
        self.preview_status = _note("")
        layout.addWidget(self.preview_status)
        layout.addWidget(
            _note(
                "The language is what you speak and what Parley answers in. The voices listed are "
                "the ones the chosen speech engine has for that language."
            )
        )
        layout.addStretch(1)
        self._wanted_voice = s.voice
        self.language_combo.currentIndexChanged.connect(self._refresh_voices)
        self._refresh_voices()
        return page

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
        refresh = QPushButton("Refresh list")
        refresh.clicked.connect(
            lambda: self._fill_devices(
                self._device_choice(self.input_combo), self._device_choice(self.output_combo)
            )
        )
        row = QHBoxLayout()
        row.addWidget(refresh)
        row.addStretch(1)
        layout.addLayout(row)
        self.echo_settings = EchoSettings(s)
        layout.addWidget(self.echo_settings)
        layout.addStretch(1)
        self._fill_devices(s.input_device, s.output_device)
        return page

    def _fill_devices(self, current_in: str, current_out: str) -> None:
        found = devices.list_devices()
        for combo, current, want in (
            (self.input_combo, current_in, "inputs"),
            (self.output_combo, current_out, "outputs"),
        ):
            combo.clear()
            combo.addItem("System default", "")
            for device in found:
                if getattr(device, want) > 0:
                    combo.addItem(device.name, device.name)
            index = combo.findData(current)
            if index < 0:
                combo.addItem(f"{current} (not connected)", current)
                index = combo.count() - 1
            combo.setCurrentIndex(index)
        if not found:
            self.devices_note.setText(
                "No audio devices were found. Parley still works for typed messages; replies are "
                "shown as text until a speaker is connected."
            )
        else:
            ins = sum(1 for d in found if d.inputs > 0)
            outs = sum(1 for d in found if d.outputs > 0)
            self.devices_note.setText(f"{ins} microphone(s) and {outs} speaker(s) found.")

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
        layout.addWidget(_note("How Parley should behave. Sent at the start of every request."))
        layout.addWidget(self.prompt_edit, 1)
        row = QHBoxLayout()
        reset = QPushButton("Restore default")
        reset.clicked.connect(lambda: self.prompt_edit.setPlainText(DEFAULT_SYSTEM_PROMPT))
        row.addWidget(reset)
        row.addStretch(1)
        self.context_tokens = _spin(500, 128_000, s.context_tokens, suffix=" tokens", step=500)
        row.addWidget(QLabel("Context budget"))
        row.addWidget(self.context_tokens)
        layout.addLayout(row)
        return page

    # ---------------------------------------------------------------------------------- voice

    def _refresh_voices(self) -> None:
        if not hasattr(self, "voice_combo"):
            return
        wanted = self.voice_combo.currentData() if self.voice_combo.count() else self._wanted_voice
        language = str(self.language_combo.currentData() or "en")
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

    def result_settings(self) -> Settings:
        """The settings as edited (the original object is left untouched)."""
        s = copy.deepcopy(self._original)
        s.stt = str(self.stt_combo.currentData())
        s.llm = str(self.llm_combo.currentData())
        s.tts = str(self.tts_combo.currentData())
        s.local_llm_model = self.local_model.text().strip() or s.local_llm_model
        s.fallback_to_local = self.fallback.isChecked()
        providers = dict(s.providers)
        for name, row in self.provider_rows.items():
            value = row.value()
            if value != ProviderSettings() or name in providers:
                providers[name] = value
        s.providers = {k: v for k, v in providers.items() if v != ProviderSettings()}
        s.language = str(self.language_combo.currentData() or "en")
        s.voice = str(self.voice_combo.currentData() or "")
        s.input_device = self._device_choice(self.input_combo)
        s.output_device = self._device_choice(self.output_combo)
        self.echo_settings.apply_to(s)
        s.turn_mode = "vad" if self.vad_radio.isChecked() else "ptt"
        sequence = self.hotkey_edit.keySequence()
        s.hotkey = sequence.toString(QKeySequence.SequenceFormat.PortableText) or "Space"
        s.global_hotkey = self.global_hotkey.isChecked()
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
