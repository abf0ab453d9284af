"""A cloud engine chosen without its API key: the user hears of it as Parley starts (not at the
first question), the message names the real place to add the key and opens it, and the next
engine answers at once, without a failing request first."""

from __future__ import annotations

import pytest

from assistant import secrets
from assistant.app import EngineSet
from assistant.engines.fake import FakeLLM, FakeSTT, FakeTTS
from assistant.engines.fallback import FallbackLLM, FallbackSTT, FallbackTTS
from assistant.engines.openai.factories import KeyedChatLLM
from assistant.events import ErrorEvent, Notice, TurnFinished
from tests.ui.helpers import PATIENCE, collect, fake_settings, run, show_window, started, until

pytestmark = pytest.mark.gui


@pytest.fixture
def no_keys(monkeypatch):
    for variable in secrets.ENV_VARS.values():
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(secrets, "_backend_usable", lambda: False)


def test_missing_key_is_reported_at_start_and_the_fallback_answers_at_once(
    qtbot, qloop, assistants, no_keys
):
    # Nothing listens on this address: a request to it would fail only after a while.
    openai = KeyedChatLLM("openai", "http://127.0.0.1:9/v1", "gpt-4o-mini", required=True)
    offline = FakeLLM(ttft=0.01)

    def engines(_settings):
        return EngineSet(
            FallbackSTT([FakeSTT()]),
            FallbackLLM([openai, offline]),
            FallbackTTS([FakeTTS(realtime_factor=0.0)]),
        )

    assistant = assistants(fake_settings(llm="openai"), engine_factory=engines, persist=False)
    window = show_window(qtbot, assistant)
    notices = collect(assistant, Notice)
    errors = collect(assistant, ErrorEvent)
    finished = collect(assistant, TurnFinished)

    async def scenario() -> None:
        await started(assistant)
        # Told before any question, with the place to add the key.
        (told,) = [n.message for n in notices if "no API key" in n.message]
        assert "Settings → API keys → OpenAI" in told and "using fake instead" in told
        assert assistant.submit_text("Hello?")
        await until(lambda: finished, what="the answer")
        await assistant.close()

    run(qloop, scenario(), 4 * PATIENCE)
    assert finished[0].turn.assistant_text.startswith("You asked: Hello")
    assert finished[0].turn.error is None and errors == []
    assert len(offline.requests) == 1  # the offline engine answered the first question
    # The banner's button opens the settings at the OpenAI key.
    banner = next(b for b in window.banners.banners() if "no API key" in b.message)
    assert banner.action_button is not None and banner.action_button.text() == "Open settings"
    banner.action_button.click()
    dialog = window.settings_dialog
    assert dialog is not None and dialog.tabs.currentIndex() == 1
    assert dialog.focusWidget() is dialog.provider_rows["openai"].url  # no keyring: the URL
    dialog.reject()


def test_missing_key_without_a_fallback_is_an_error_at_start(qtbot, qloop, assistants, no_keys):
    openai = KeyedChatLLM("openai", "http://127.0.0.1:9/v1", "gpt-4o-mini", required=True)

    def engines(_settings):
        return EngineSet(
            FallbackSTT([FakeSTT()]),
            FallbackLLM([openai]),
            FallbackTTS([FakeTTS(realtime_factor=0.0)]),
        )

    assistant = assistants(
        fake_settings(llm="openai", fallback_to_local=False), engine_factory=engines, persist=False
    )
    errors = collect(assistant, ErrorEvent)

    async def scenario() -> None:
        await started(assistant)
        await assistant.close()

    run(qloop, scenario(), 4 * PATIENCE)
    (error,) = [e for e in errors if "API key" in e.message]
    assert error.source == "settings"
    assert error.message.startswith("OpenAI (language model) has no API key")
    assert "Settings → API keys → OpenAI" in error.message
