"""The state pill tells a user who paused mid-sentence that Parley is waiting for the rest."""

from __future__ import annotations

import pytest

from assistant.app import Assistant
from assistant.events import PauseJudged, State, StateChanged, UserSpeechStarted
from tests.ui.helpers import fake_settings, noise_source, run, until, virtual_player
from ui import theme
from ui.indicators import TAKING_TIME_LABEL
from ui.main_window import MainWindow

pytestmark = pytest.mark.gui


def test_the_pill_says_take_your_time_while_parley_waits_for_more(qtbot, qloop) -> None:
    assistant = Assistant(
        fake_settings(turn_mode="vad"),
        player_factory=virtual_player("fast"),
        source_factory=noise_source(),
    )
    window = MainWindow(assistant)
    qtbot.addWidget(window)
    pill = window.indicator
    events = assistant.events

    async def scenario() -> None:
        await assistant.start()
        await assistant.wait_ready(5)
        await until(lambda: pill.text in ("Listening", "You're speaking"), what="listening")
        events.emit(StateChanged(State.USER_SPEAKING, State.LISTENING))
        assert pill.text == "You're speaking"
        # "I'd like to book a table for" … the user thinks.
        events.emit(PauseJudged(7, ending=False, waiting=True, wait_ms=2500, silence_ms=320))
        assert pill.text == TAKING_TIME_LABEL
        assert pill.color() == theme.STATE_COLORS["listening"]
        assert TAKING_TIME_LABEL in pill.toolTip()
        assert pill.sizeHint().width() >= pill.fontMetrics().horizontalAdvance(TAKING_TIME_LABEL)
        events.emit(UserSpeechStarted(8))  # "… four people at seven"
        assert pill.text == "You're speaking"
        # A pause that ends the turn at once says nothing special.
        events.emit(PauseJudged(8, ending=True, waiting=False, wait_ms=None, silence_ms=280))
        assert pill.text == "You're speaking"
        events.emit(PauseJudged(8, ending=False, waiting=True, wait_ms=1500, silence_ms=300))
        events.emit(StateChanged(State.THINKING, State.USER_SPEAKING))
        assert pill.text == "Thinking…"
        await assistant.close()

    try:
        run(qloop, scenario(), 15)
    finally:
        run(qloop, assistant.close())
