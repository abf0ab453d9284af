"""The settings dialog: keys only through the keyring (never on disk), a clear message without
one, voices filtered by language with a spoken preview, and settings applied and saved."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest
from keyring.backends import fail
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

from assistant import secrets
from assistant.app import Assistant
from assistant.config import Settings, load_settings
from assistant.engines.base import Voice
from tests.cloud import files_containing
from tests.fakes.keyrings import LockedKeyring, MemoryKeyring, SlowKeyring, installed
from tests.ui.helpers import fake_settings, noise_source, run, virtual_player
from ui.settings_dialog import SettingsDialog

pytestmark = pytest.mark.gui

SECRET = "sk-test-Zq8v3LkW0pX9mN2rT5yU"


@pytest.fixture
def no_environment_keys(monkeypatch):
    for var in secrets.ENV_VARS.values():
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def memory_keyring(no_environment_keys):
    with installed(MemoryKeyring()) as backend:
        yield backend


@pytest.fixture
def no_keyring(no_environment_keys):
    with installed(fail.Keyring()):
        yield


def test_keys_go_to_the_keyring_and_never_to_disk(qtbot, memory_keyring, tmp_path):
    started = time.time() - 1
    applied: list[tuple[Settings, bool]] = []
    dialog = SettingsDialog(fake_settings())
    qtbot.addWidget(dialog)
    dialog.applied.connect(lambda s, k: applied.append((s, k)))
    row = dialog.provider_rows["openai"]
    assert row.status and row.key_edit and row.save_button and row.remove_button
    assert row.status.text() == "No key stored"
    row.key_edit.setText(SECRET)
    row.save_button.click()
    assert memory_keyring.store[(secrets.SERVICE, "openai")] == SECRET
    assert row.key_edit.text() == ""  # the field never shows the key again
    assert row.status.text() == "Key stored in the system keyring"
    assert secrets.key_source("openai") == "keyring"
    row.url.setText("http://127.0.0.1:8080/v1")
    dialog.tabs.setCurrentIndex(0)
    dialog.llm_combo.setCurrentIndex(dialog.llm_combo.findData("openai"))
    dialog.buttons.button(dialog.buttons.StandardButton.Ok).click()

    settings, keys_changed = applied[-1]
    assert keys_changed and settings.llm == "openai"
    assert settings.providers["openai"].url == "http://127.0.0.1:8080/v1"
    from assistant.config import save_settings

    save_settings(settings)
    assert load_settings().settings.providers["openai"].url == "http://127.0.0.1:8080/v1"
    # Nowhere on disk: not in the settings, the data directory or any new temporary file.
    roots = [tmp_path, Path(tempfile.gettempdir())]
    assert files_containing(roots, SECRET, since=started) == []
    for label in dialog.findChildren(QLabel):
        assert SECRET not in label.text()

    row.remove_button.click()
    assert (secrets.SERVICE, "openai") not in memory_keyring.store
    assert row.status.text() == "No key stored"


def test_environment_key_is_reported_without_showing_it(qtbot, memory_keyring, monkeypatch):
    monkeypatch.setenv("DEEPGRAM_API_KEY", SECRET)
    dialog = SettingsDialog(fake_settings())
    qtbot.addWidget(dialog)
    status = dialog.provider_rows["deepgram"].status
    assert status is not None
    assert status.text() == "Key set by the environment variable DEEPGRAM_API_KEY"


def test_without_a_keyring_the_dialog_says_so_and_stores_nothing(qtbot, no_keyring):
    dialog = SettingsDialog(fake_settings())
    qtbot.addWidget(dialog)
    assert "No system keyring is available" in dialog.keyring_note.text()
    row = dialog.provider_rows["elevenlabs"]
    assert row.key_edit and row.save_button
    assert not row.key_edit.isEnabled() and not row.save_button.isEnabled()
    assert "no system keyring" in row.key_edit.placeholderText()
    row.key_edit.setText(SECRET)
    row.save_key()  # even if forced, nothing is stored and the reason is shown
    assert secrets.get_key("elevenlabs") is None


def test_a_slow_keyring_never_holds_up_the_dialog(qtbot, qloop, no_environment_keys):
    stored = {(secrets.SERVICE, "openai"): SECRET}
    with installed(SlowKeyring(stored, delay=None)) as backend:

        async def scenario() -> None:
            dialog = SettingsDialog(fake_settings())  # opens while the keyring says nothing
            qtbot.addWidget(dialog)
            row = dialog.provider_rows["openai"]
            assert row.status and row.key_edit and row.save_button
            assert row.status.text() == "Checking the system keyring…"
            assert not row.key_edit.isEnabled()
            backend.release()  # the keyring answers
            assert dialog.keyring_check is not None
            await dialog.keyring_check
            assert row.status.text() == "Key stored in the system keyring"
            assert row.key_edit.isEnabled()
            row.key_edit.setText("sk-another-key-0123456789")
            saving = row.save_key()
            assert saving is not None and row.key_edit.text() == ""
            await saving
            assert backend.store[(secrets.SERVICE, "openai")] == "sk-another-key-0123456789"

        run(qloop, scenario())


def test_a_locked_keyring_is_not_shown_as_no_key(qtbot, qloop, no_environment_keys):
    with installed(LockedKeyring({(secrets.SERVICE, "openai"): SECRET})):

        async def scenario() -> None:
            dialog = SettingsDialog(fake_settings())
            qtbot.addWidget(dialog)
            assert dialog.keyring_check is not None
            await dialog.keyring_check
            status = dialog.provider_rows["openai"].status
            assert status is not None and status.text() == (
                "Cannot read the key: the system keyring is locked. Unlock the keyring, or set "
                "OPENAI_API_KEY."
            )

        run(qloop, scenario())


def test_voices_follow_the_language_and_the_preview_speaks(qtbot, qloop, memory_keyring):
    catalog = {
        "en": [Voice("piper:joe", "Joe", "en-US", "piper", 22050)],
        "de": [Voice("pico:de-DE", "Pico Deutsch", "de-DE", "pico", 16000)],
    }
    asked: list[tuple[str, str]] = []

    def voices(engine: str, language: str) -> list[Voice]:
        asked.append((engine, language))
        return catalog.get(language.split("-")[0], [])

    assistant = Assistant(
        fake_settings(), player_factory=virtual_player("fast"), source_factory=noise_source()
    )
    dialog = SettingsDialog(
        fake_settings(language="en"), voices=voices, preview=assistant.preview_voice
    )
    qtbot.addWidget(dialog)
    assert dialog.voice_combo.findData("piper:joe") > 0
    dialog.language_combo.setCurrentIndex(dialog.language_combo.findData("de"))
    assert asked[-1] == ("fake", "de")
    assert dialog.voice_combo.findData("piper:joe") < 0
    dialog.voice_combo.setCurrentIndex(dialog.voice_combo.findData("pico:de-DE"))
    assert dialog.result_settings().voice == "pico:de-DE"
    assert dialog.result_settings().language == "de"

    async def preview() -> None:
        task = dialog.start_preview()
        assert task is not None and not dialog.preview_button.isEnabled()
        await task

    run(qloop, preview())
    assert dialog.preview_status.text().startswith("Played ")
    seconds = float(dialog.preview_status.text().split()[1])
    assert seconds > 1.0  # the fake engine speaks the German sample sentence
    assert dialog.preview_button.isEnabled()


def test_every_setting_round_trips_through_the_dialog(qtbot, memory_keyring):
    original = fake_settings(turn_mode="vad", hotkey="F9", system_prompt="Be brief.")
    original.vad.end_silence_ms = 900
    original.interruption.min_duration_ms = 700
    dialog = SettingsDialog(original)
    qtbot.addWidget(dialog)
    unchanged = dialog.result_settings()
    assert unchanged == original
    dialog.ptt_radio.setChecked(True)
    dialog.budget_v2v.setValue(1200)
    dialog.vad_threshold.setValue(0.7)
    dialog.prompt_edit.setPlainText("Speak French.")
    edited = dialog.result_settings()
    assert edited.turn_mode == "ptt" and edited.budgets.voice_to_voice == 1200
    assert edited.vad.threshold == 0.7 and edited.vad.end_silence_ms == 900
    assert edited.system_prompt == "Speak French."
    assert original.turn_mode == "vad"  # the dialog edits a copy


def test_languages_offered_are_those_the_engines_can_converse_in(qtbot, memory_keyring):
    offline = Settings(language="fr")  # every engine offline
    dialog = SettingsDialog(offline)
    qtbot.addWidget(dialog)
    combo = dialog.language_combo
    codes = [combo.itemData(i) for i in range(combo.count())]
    assert {"en", "en-GB", "de", "es", "fr", "it"} <= set(codes)
    assert combo.itemText(codes.index("en")).startswith("English (US)   ·   Piper (natural)")
    assert "tlh" not in codes and "qya" not in codes  # no Klingon, no Quenya
    assert len(codes) < 10
    assert combo.currentData() == "fr"
    assert "SVOX Pico (clear) voice" in combo.currentText()
    assert "recognition good · answers good" in combo.currentText()
    marks = dialog.language_marks.text()
    assert "Recognition: Whisper, good" in marks and "Answers: good" in marks
    assert combo.itemData(combo.currentIndex(), Qt.ItemDataRole.ToolTipRole) == marks
    # With cloud engines the provider handles more languages.
    dialog.llm_combo.setCurrentIndex(dialog.llm_combo.findData("openai"))
    dialog.stt_combo.setCurrentIndex(dialog.stt_combo.findData("openai"))
    dialog.tts_combo.setCurrentIndex(dialog.tts_combo.findData("openai"))
    codes = [combo.itemData(i) for i in range(combo.count())]
    assert {"ja", "pt", "ru"} <= set(codes) and combo.currentData() == "fr"
    dialog.detect_language.setChecked(True)
    edited = dialog.result_settings()
    assert edited.language == "fr" and edited.detect_language


def test_a_language_the_engines_cannot_hold_is_kept_but_marked(qtbot, memory_keyring):
    dialog = SettingsDialog(Settings(language="tlh"))
    qtbot.addWidget(dialog)
    assert dialog.language_combo.currentData() == "tlh"
    assert "not fully supported" in dialog.language_combo.currentText()
    assert dialog.result_settings().language == "tlh"  # nothing changes unless the user does


def test_engines_tab_hides_the_test_engine_and_picks_the_offline_model(qtbot, memory_keyring):
    dialog = SettingsDialog(Settings())
    qtbot.addWidget(dialog)
    assert dialog.llm_combo.findData("fake") < 0 and dialog.stt_combo.findData("fake") < 0
    models = [dialog.local_model.itemData(i) for i in range(dialog.local_model.count())]
    assert models == ["qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"]
    dialog.local_model.setCurrentIndex(1)
    assert dialog.result_settings().local_llm_model == "qwen2.5-coder-0.5b"
    # A test engine already chosen stays listed (and chosen).
    kept = SettingsDialog(fake_settings())
    qtbot.addWidget(kept)
    assert kept.llm_combo.currentData() == "fake"


def test_a_cloud_engine_without_its_key_is_pointed_out(qtbot, memory_keyring):
    dialog = SettingsDialog(Settings())
    qtbot.addWidget(dialog)
    dialog.show()
    assert not dialog.key_warning.isVisible()
    dialog.llm_combo.setCurrentIndex(dialog.llm_combo.findData("openai"))
    assert dialog.key_warning.isVisible()
    text = dialog.key_warning.text()
    assert "OpenAI (language model) has no API key" in text and "API keys → OpenAI" in text
    assert "offline engine answers" in text
    row = dialog.provider_rows["openai"]
    assert row.key_edit is not None and row.save_button is not None
    row.key_edit.setText(SECRET)
    row.save_button.click()
    assert not dialog.key_warning.isVisible()  # the key is there now
    dialog.show_provider("elevenlabs")
    assert dialog.tabs.currentIndex() == 1
    assert dialog.focusWidget() is dialog.provider_rows["elevenlabs"].key_edit


def test_echo_cancellation_and_noise_suppression_are_edited_in_the_audio_tab(qtbot) -> None:
    from assistant.config import Settings
    from ui.settings_dialog import SettingsDialog

    settings = Settings()
    dialog = SettingsDialog(settings)
    qtbot.addWidget(dialog)
    box = dialog.echo_settings
    assert box.echo_combo.currentData() == "auto" and not box.noise_check.isChecked()
    box.echo_combo.setCurrentIndex(box.echo_combo.findData("off"))
    box.noise_check.setChecked(True)
    edited = dialog.result_settings()
    assert edited.echo_cancellation == "off" and edited.noise_suppression
    assert settings.echo_cancellation == "auto"  # the original is untouched


def test_the_window_shows_echo_cancellation_while_it_works(qtbot) -> None:
    from assistant.events import EchoStatus
    from ui.echo import EchoBadge

    badge = EchoBadge()
    qtbot.addWidget(badge)
    badge.on_event(EchoStatus(True, False, False, "Echo cancellation is learning the room"))
    assert not badge.isHidden() and badge.text() == "Echo: learning the room"
    badge.on_event(EchoStatus(True, True, True, "Echo cancellation is on"))
    assert badge.text() == "Echo cancelled · Noise suppressed"
    assert badge.toolTip() == "Echo cancellation is on"
    badge.on_event(EchoStatus(False, False, False, "Echo cancellation is off: headset"))
    assert badge.isHidden()


def test_the_pipeline_choice_offers_every_speech_to_speech_engine(qtbot, memory_keyring):
    original = fake_settings()
    dialog = SettingsDialog(original)
    qtbot.addWidget(dialog)
    pipeline = dialog.pipeline
    assert pipeline.chained_radio.isChecked() and not pipeline.engine.isEnabled()
    assert dialog.llm_combo.findData("anthropic") >= 0
    assert dialog.llm_combo.findData("assemblyai-gateway") >= 0
    engines = [pipeline.engine.itemData(i) for i in range(pipeline.engine.count())]
    assert {"openai-realtime", "assemblyai-agent"} <= set(engines)
    assert {"anthropic", "assemblyai_gateway", "assemblyai_agent"} <= set(dialog.provider_rows)
    assert dialog.provider_rows["anthropic"].key_edit is not None  # its own key
    assert dialog.provider_rows["assemblyai_agent"].key_edit is None  # AssemblyAI's key
    assert dialog.result_settings() == original
    pipeline.s2s_radio.setChecked(True)
    assert pipeline.engine.isEnabled() and not dialog.stt_combo.isEnabled()
    pipeline.engine.setCurrentIndex(pipeline.engine.findData("openai-realtime"))
    pipeline.voice.setCurrentIndex(pipeline.voice.findData("cedar"))
    pipeline.model.setText("gpt-realtime-mini")
    pipeline.turns.setCurrentIndex(pipeline.turns.findData("provider"))
    pipeline.greeting.setText("Hello!")
    edited = dialog.result_settings()
    assert edited.pipeline == "s2s"
    assert (edited.s2s.engine, edited.s2s.model, edited.s2s.voice) == (
        "openai-realtime",
        "gpt-realtime-mini",
        "cedar",
    )
    assert edited.s2s.turn_detection == "provider" and edited.s2s.greeting == "Hello!"
    again = SettingsDialog(edited)
    qtbot.addWidget(again)
    assert again.result_settings() == edited  # and it reads back
