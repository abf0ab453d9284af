"""The window driving real sessions on fake engines: push-to-talk turns, interruption, typing,
no audio devices, loading, hands-free, new conversation, settings applied live."""

from __future__ import annotations

import asyncio
import types

import numpy as np
import pytest
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QApplication, QPushButton

from assistant.audio.player import DevicePlayer
from assistant.config import load_settings, settings_path
from assistant.engines.fake import FakeLLM, FakeSTT, FakeTTS
from assistant.events import Notice, StateChanged, TurnWithdrawn
from assistant.history import HistoryStore
from tests.ui.helpers import (
    PATIENCE,
    collect,
    fake_settings,
    finished_turns,
    reply,
    run,
    seed_history,
    show_window,
    started,
    until,
    user,
    virtual_player,
)
from ui import theme
from ui.main_window import MainWindow

pytestmark = pytest.mark.gui


make_window = show_window


def key(window: MainWindow, kind: QEvent.Type, key=Qt.Key.Key_Space, autorepeat=False) -> None:
    """Deliver a key event the way Qt does: to the focus widget, through the app's filters."""
    target = QApplication.focusWidget() or window
    text = " " if key == Qt.Key.Key_Space else ""
    event = QKeyEvent(kind, key, Qt.KeyboardModifier.NoModifier, text, autorepeat)
    QApplication.sendEvent(target, event)


def test_hold_to_talk_key_drives_a_turn_and_autorepeat_does_not_end_it(
    qtbot, qloop, assistants, tmp_path
):
    seed_history(tmp_path / "data")
    assistant = assistants()
    window = make_window(qtbot, assistant)
    finished = finished_turns(assistant)

    async def scenario() -> None:
        await assistant.start()
        assert window.conversation.turn_ids() == [1, 2, 3]  # the past conversation is back
        await assistant.wait_ready(PATIENCE)
        key(window, QEvent.Type.KeyPress)
        await until(lambda: assistant.state.value == "user_speaking", what="user speaking")
        # Held key: auto-repeat, flagged or as bare release/press pairs, must not end the turn.
        for _ in range(4):
            await asyncio.sleep(0.12)
            key(window, QEvent.Type.KeyRelease, autorepeat=True)
            key(window, QEvent.Type.KeyPress, autorepeat=True)
            key(window, QEvent.Type.KeyRelease)
            key(window, QEvent.Type.KeyPress)
        await until(lambda: window.conversation.user_bubble(4) is not None, what="a partial")
        assert assistant.state.value == "user_speaking"
        partial = user(window.conversation, 4)
        assert partial.partial and partial.plain.startswith("What")
        key(window, QEvent.Type.KeyRelease)
        await until(lambda: finished, what="the turn to finish")
        await assistant.close()

    run(qloop, scenario(), 4 * PATIENCE)
    record = finished[0]
    assert record.turn_id == 4 and not record.interrupted
    question = user(window.conversation, 4)
    assert not question.partial and question.plain == "What is a good name for a cat?"
    assistant = reply(window.conversation, 4)
    assert assistant.plain == record.assistant_text and "You asked" in record.assistant_text
    assert "voice-to-voice" in assistant.meta.text()
    assert [t for t, _ in window.timeline.timelines()] == [1, 2, 3, 4]
    # Durable: the turn is on disk in the conversation the window reloaded.
    conversation, _ = HistoryStore(tmp_path / "data" / "conversations").latest()
    assert [t.turn_id for t in conversation.turns] == [1, 2, 3, 4]


def test_esc_interrupts_and_the_bubble_is_cut(qtbot, qloop, assistants):
    assistant = assistants(player_factory=virtual_player("realtime"))
    window = make_window(qtbot, assistant)
    finished = finished_turns(assistant)
    changes = collect(assistant, StateChanged)

    async def scenario() -> None:
        await started(assistant)
        window.ptt_button.pressed.emit()
        await asyncio.sleep(0.8)
        window.ptt_button.released.emit()
        await until(lambda: assistant.state.value == "speaking", what="speaking")
        assert window.stop_button.isEnabled()
        player = assistant.session.player
        await until(lambda: player.position > 1.2, what="some of the answer heard")
        spoken = reply(window.conversation, 1).html
        assert f'<span style="color:{theme.UNSPOKEN_HTML}">' in spoken  # the rest is dimmed
        key(window, QEvent.Type.KeyPress, Qt.Key.Key_Escape)
        await until(lambda: finished, what="the interrupted turn")
        await assistant.close()

    run(qloop, scenario(), 4 * PATIENCE)
    record = finished[0]
    assert record.interrupted
    assert record.assistant_text and len(record.assistant_text) < len(record.generated_text)
    html = reply(window.conversation, 1).html
    assert html.index(record.assistant_text.split()[-1]) < html.index("— interrupted")
    states = [e.state.value for e in changes if e.state.value != "idle"]
    assert states[-3:] == ["speaking", "interrupted", "listening"]


def test_typed_message_works_without_any_audio_device(qtbot, qloop, assistants):
    def no_device(**_kwargs):
        raise OSError("Error querying device -1")

    def no_microphone(_settings):
        from assistant.audio.capture import MicrophoneCapture

        return MicrophoneCapture(samplerate=16_000, stream_factory=no_device)

    assistant = assistants(
        player_factory=lambda _s: DevicePlayer(samplerate=48_000, stream_factory=no_device),
        source_factory=no_microphone,
    )
    window = make_window(qtbot, assistant)
    finished = finished_turns(assistant)

    async def scenario() -> None:
        await started(assistant)
        assert not assistant.microphone_ok and not assistant.speaker_ok
        assert not assistant.press_to_talk()  # says why instead of starting a silent turn
        window.message_box.setText("How do I boil an egg?")
        window.send_button.click()
        await until(lambda: finished, what="the typed turn")
        await assistant.close()

    run(qloop, scenario(), 4 * PATIENCE)
    messages = " | ".join(window.banners.messages())
    assert "No audio output device" in messages
    assert "type" in messages.lower()  # what to do without a microphone
    assert window.message_box.text() == ""
    assert user(window.conversation, 1).plain == "How do I boil an egg?"
    assert finished[0].assistant_text.startswith("You asked: How do I boil an egg")
    assert "No microphone" in window.hint_label.text()
    actions = [b.action_button.text() for b in window.banners.banners() if b.action_button]
    assert "Retry" in actions


def test_a_microphone_sending_only_silence_is_explained_until_sound_comes_back(
    qtbot, qloop, assistants
):
    """What a Mac user who has not allowed the microphone sees: exact zeros from the device."""
    from assistant.app import messages
    from assistant.audio.capture import MicrophoneCapture

    callbacks = []

    def stream(**kwargs):
        callbacks.append(kwargs["callback"])
        return types.SimpleNamespace(start=lambda: None, close=lambda: None)

    def feed(block: np.ndarray) -> None:
        callbacks[0](block.reshape(-1, 1), len(block), None, None)

    assistant = assistants(
        source_factory=lambda _s: MicrophoneCapture(samplerate=16_000, stream_factory=stream)
    )
    window = make_window(qtbot, assistant)
    silent = messages.microphone_silent()
    banners = []

    async def scenario() -> None:
        await started(assistant)
        for _ in range(5):  # 2.5 s of exact zeros, in half-second callbacks
            feed(np.zeros(8000, np.float32))
            await asyncio.sleep(0.05)
        await until(lambda: silent in window.banners.messages(), what="the silence banner")
        [banner] = [b for b in window.banners.banners() if b.message == silent]
        button = banner.action_button
        banners.append((banner.kind, button.text() if button is not None else None))
        assert "only silence" in window.hint_label.text()
        feed(np.random.default_rng(0).normal(0, 1e-3, 8000).astype(np.float32))
        await until(lambda: silent not in window.banners.messages(), what="sound again")
        await assistant.close()

    run(qloop, scenario(), 4 * PATIENCE)
    assert banners == [("warning", "Microphone access…")]
    assert "only silence" not in window.hint_label.text()


class SlowLLM(FakeLLM):
    """A language model that takes until ``loaded`` is set to warm up."""

    def __init__(self) -> None:
        super().__init__(ttft=0.01, tokens_per_second=500)
        self.loaded = asyncio.Event()

    async def warm_up(self) -> None:
        await self.loaded.wait()


def test_window_is_usable_while_engines_load_and_says_talking_waits(qtbot, qloop, assistants):
    llm = SlowLLM()
    assistant = assistants(engine_factory=lambda _s: (FakeSTT(), llm, FakeTTS(realtime_factor=0.0)))
    window = make_window(qtbot, assistant)
    notices = collect(assistant, Notice)

    async def scenario() -> None:
        await assistant.start()
        await asyncio.sleep(0.1)
        assert not assistant.ready
        assert window.indicator.state == "loading"
        assert window.loading_row.isVisibleTo(window)
        assert "language model" in window.loading_label.text()
        assert "talking starts when they are ready" in window.hint_label.text()
        key(window, QEvent.Type.KeyPress)
        key(window, QEvent.Type.KeyRelease)
        assert any("still loading" in n.message for n in notices)
        llm.loaded.set()
        await assistant.wait_ready(PATIENCE)
        await until(lambda: not window.loading_row.isVisibleTo(window), what="loading to end")
        assert window.indicator.text == "Ready"
        await assistant.close()

    run(qloop, scenario(), 4 * PATIENCE)


def test_hands_free_toggle_new_conversation_and_live_settings(qtbot, qloop, assistants, tmp_path):
    seed_history(tmp_path / "data")
    assistant = assistants()
    window = make_window(qtbot, assistant)

    async def scenario() -> None:
        await started(assistant)
        assert window.conversation.hint_text.startswith("Hold <b>Space</b>")
        window.hands_free_button.click()
        assert assistant.session.turn_mode == "vad"
        assert not window.ptt_button.isEnabled()
        assert window.conversation.hint_text.startswith("Just start speaking")
        assert load_settings().settings.turn_mode == "vad"  # persisted
        window.hands_free_button.click()
        assert assistant.session.turn_mode == "ptt"

        first_session = assistant.session
        conversation = assistant.conversation
        changed = fake_settings(system_prompt="Answer like a pirate.", hotkey="F8")
        await assistant.apply_settings(changed)
        assert assistant.session is not first_session  # rebuilt without restarting the app
        assert assistant.session.settings.system_prompt == "Answer like a pirate."
        assert assistant.conversation is conversation
        assert window.conversation.turn_ids() == [1, 2, 3]  # the conversation is kept
        assert "F8" in window.ptt_button.text()
        assert "Answer like a pirate." in settings_path().read_text()

        window.new_button.click()
        assert window.conversation.turn_ids() == []
        assert assistant.session.conversation.turns == []
        await assistant.close()

    run(qloop, scenario(), 4 * PATIENCE)
    store = HistoryStore(tmp_path / "data" / "conversations")
    assert len(store.conversations()) == 2  # the old conversation stays on disk


def test_speaking_on_before_the_answer_merges_into_one_bubble(qtbot, qloop, assistants):
    stt = FakeSTT(script=("Book a table", "for two people tonight."))
    llm = FakeLLM(ttft=1.0, tokens_per_second=200)  # slow enough to speak on before it answers
    assistant = assistants(engine_factory=lambda _s: (stt, llm, FakeTTS(realtime_factor=0.0)))
    window = make_window(qtbot, assistant)
    withdrawals = collect(assistant, TurnWithdrawn)
    finished = finished_turns(assistant)

    async def scenario() -> None:
        await started(assistant)
        window.ptt_button.pressed.emit()
        await asyncio.sleep(0.6)
        window.ptt_button.released.emit()
        await until(lambda: window.conversation.assistant_bubble(1) is not None, what="thinking")
        window.ptt_button.pressed.emit()
        await until(lambda: withdrawals, what="the first reply withdrawn")
        assert window.conversation.assistant_bubble(1) is None
        await asyncio.sleep(0.8)
        window.ptt_button.released.emit()
        await until(lambda: finished, what="the merged turn")
        await assistant.close()

    run(qloop, scenario(), 4 * PATIENCE)
    assert [(e.turn_id, e.user_text) for e in withdrawals] == [(1, "Book a table")]
    (record,) = finished
    view = window.conversation
    assert view.turn_ids() == [record.turn_id]  # one question, one answer
    assert user(view, record.turn_id).plain == "Book a table for two people tonight."
    assert reply(view, record.turn_id).plain == record.assistant_text


def test_focused_button_does_not_swallow_the_talk_key_and_text_box_types(qtbot, qloop, assistants):
    assistant = assistants()
    window = make_window(qtbot, assistant)
    clicks = []
    focusable = QPushButton("focus me", window.centralWidget())
    focusable.clicked.connect(lambda: clicks.append(1))
    focusable.show()

    async def scenario() -> None:
        await started(assistant)
        focusable.setFocus()
        await until(focusable.hasFocus, what="focus")
        key(window, QEvent.Type.KeyPress)
        await until(lambda: assistant.state.value == "user_speaking", what="talking")
        key(window, QEvent.Type.KeyRelease)
        await until(lambda: assistant.state.value != "user_speaking", what="release")

        window.message_box.setFocus()
        await until(window.message_box.hasFocus, what="focus")
        qtbot.keyClicks(window.message_box, "hi there")
        assert window.message_box.text() == "hi there"
        key(window, QEvent.Type.KeyPress, Qt.Key.Key_Escape)
        assert not window.message_box.hasFocus()  # Esc hands the keyboard back to talking
        assistant.interrupt()
        await assistant.close()

    run(qloop, scenario(), 4 * PATIENCE)
    assert clicks == []


def test_notices_to_read_stay_and_confirmations_are_info(qtbot, assistants):
    from assistant.app import messages

    window = make_window(qtbot, assistants())
    window.show_notice("Your settings file was invalid (bad key); it was kept aside.", "settings")
    window.show_notice(messages.SETTINGS_APPLIED, "settings")
    kinds = {b.message: b.kind for b in window.banners.banners()}
    assert kinds["Your settings file was invalid (bad key); it was kept aside."] == "warning"
    assert kinds[messages.SETTINGS_APPLIED] == "info"  # info banners close after 8 s
