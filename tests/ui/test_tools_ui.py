"""Tools in the window: "used calculator", the filler shown lighter, confirmation chips,
alarm bubbles, the Tools tab of the settings dialog, and a turn's structured object in the
latency panel's details."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPushButton

from assistant.config import McpServerSettings, Settings
from assistant.events import (
    Announcement,
    AssistantText,
    ConfirmationRequested,
    ConfirmationResolved,
    FillerSpoken,
    FinalTranscript,
    StructuredExtracted,
    ToolCalled,
    TurnFinished,
)
from assistant.history import ToolRecord, TurnRecord
from assistant.timeline import Budgets
from assistant.tools.mcp import ServerState, ServerStatus
from ui import theme
from ui.conversation import ConversationView
from ui.settings_dialog import SettingsDialog
from ui.timeline_view import TimelinePanel, TurnDetails, tooltip_html

pytestmark = pytest.mark.gui


@pytest.fixture
def view(qtbot):
    v = ConversationView(titles={"calculate": "calculator"}.get)
    qtbot.addWidget(v)
    v.resize(700, 500)
    v.show()
    return v


def test_tool_use_and_the_filler_show_in_the_reply_bubble(view) -> None:
    view.on_event(FinalTranscript(3, "Where is my order?"))
    view.on_event(FillerSpoken(3, "One moment."))
    bubble = view.assistant_bubble(3)
    assert bubble is not None and "One moment." in bubble.html
    assert theme.FILLER_HTML in bubble.html and "<i>" in bubble.html
    view.on_event(ToolCalled(3, "get_order", "{}", "ships tomorrow", "order lookup", 812.0))
    view.on_event(AssistantText(3, "It ships", "It ships tomorrow."))
    assert "One moment." in bubble.html  # still there, lighter, above the answer
    record = TurnRecord(
        3,
        "Where is my order?",
        "It ships tomorrow.",
        generated_text="It ships tomorrow.",
        tool_calls=[ToolRecord("c1", "calculate", "{}", "1", 812.0)],
        timeline={"voice_to_voice_ms": 1500.0, "notes": {"filler": "One moment."}},
    )
    view.on_event(TurnFinished(record))
    assert bubble.meta.text().startswith("used calculator")
    assert "One moment." in bubble.html and theme.FILLER_HTML in bubble.html
    assert bubble.plain == "It ships tomorrow."  # copying the conversation leaves it out
    assert "Parley: It ships tomorrow." in view.plain_text()


def test_a_pending_confirmation_gets_chips_that_answer_it(view, qtbot) -> None:
    view.on_event(FinalTranscript(5, "Set a timer for five minutes."))
    view.on_event(AssistantText(5, "", "I'm about to set a timer. Shall I go ahead?"))
    view.on_event(ConfirmationRequested(5, "set_timer", "timer", "{}", "Shall I go ahead?"))
    bubble = view.pending_choices()
    assert bubble is view.assistant_bubble(5) and bubble.choices is not None
    yes, no = bubble.choices.findChildren(QPushButton)
    assert (yes.text(), no.text()) == ("Yes, go ahead", "No")
    with qtbot.waitSignal(view.confirmed) as signal:
        qtbot.mouseClick(yes, Qt.MouseButton.LeftButton)
    assert signal.args == [True]
    view.on_event(ConfirmationResolved("set_timer", True))
    assert view.pending_choices() is None and bubble.choices is None


def test_an_alarm_speaks_in_a_bubble_of_its_own(view) -> None:
    view.on_event(Announcement(9, "Your tea timer is done."))
    bubble = view.assistant_bubble(9)
    assert bubble is not None and bubble.plain == "Your tea timer is done."
    assert view.user_bubble(9) is None
    view.on_event(AssistantText(9, "Your", "Your tea timer is done."))
    assert "⏰" in bubble.html  # not replaced by the live rendering


def test_tools_tab_adds_edits_and_removes_servers(qtbot) -> None:
    settings = Settings()
    settings.tools.mcp_servers["shop"] = McpServerSettings(command="python", args=["shop.py"])
    dialog = SettingsDialog(
        settings,
        tool_servers=lambda: [
            ServerStatus("shop", ServerState.READY, ("shop__get_order", "shop__refund"), "python")
        ],
    )
    qtbot.addWidget(dialog)
    tab = dialog.tools_tab
    assert tab.server_list.count() == 1 and "running" in tab.server_list.item(0).text()
    assert tab.tool_list.text() == "get_order, refund"
    name = tab.add_server("web")
    assert name == "web" and tab.server_list.currentItem().text().startswith("web")
    tab.url.setText("http://127.0.0.1:8000/mcp")
    tab.env.setPlainText("TOKEN=${TOKEN}\nbroken line")
    tab.server_enabled.setChecked(False)
    tab.confirm.setCurrentIndex(tab.confirm.findData("destructive"))
    tab.structured_enabled.setChecked(True)
    tab.schema_path.setText("/tmp/schema.json")
    result = dialog.result_settings()
    assert result.tools.confirm == "destructive"
    assert result.tools.mcp_servers["shop"] == McpServerSettings(command="python", args=["shop.py"])
    web = result.tools.mcp_servers["web"]
    assert (web.url, web.env, web.enabled) == (
        "http://127.0.0.1:8000/mcp",
        {"TOKEN": "${TOKEN}"},
        False,
    )
    assert result.structured.enabled and result.structured.schema_path == "/tmp/schema.json"
    tab.server_list.setCurrentRow(0)
    tab.remove_server()
    assert list(dialog.result_settings().tools.mcp_servers) == ["web"]
    tab.set_statuses([ServerStatus("web", ServerState.FAILED, (), "did not answer within 30 s")])
    assert "did not answer" in tab.status.text()


def test_turn_details_show_tools_and_the_structured_object(qtbot) -> None:
    panel = TimelinePanel()
    qtbot.addWidget(panel)
    timeline = {
        "marks_ms": {"speech_end": 0.0, "playback_start": 900.0, "structured_request": 1400.0,
                     "structured_done": 2600.0},
        "voice_to_voice_ms": 900.0,
        "stages_ms": {"voice_to_voice": 900.0},
        "notes": {"router_ms": [310.0, 120.0], "filler": "One moment."},
    }  # fmt: skip
    record = TurnRecord(
        2,
        "hi",
        "hello",
        tool_calls=[ToolRecord("c", "calculate", "{}", "4", 3.0)],
        timeline=timeline,
    )
    panel.on_event(TurnFinished(record))
    panel.on_event(StructuredExtracted(2, {"intent": "greet", "urgency": "low"}))
    details = panel.view.details[panel.number(2)]
    assert details == TurnDetails((("calculate", 3.0),), {"intent": "greet", "urgency": "low"})
    tip = tooltip_html(2, timeline, Budgets(), details)
    assert "calculate (3 ms)" in tip and "310 ms, 120 ms" in tip and "One moment." in tip
    assert "&quot;intent&quot;: &quot;greet&quot;" in tip and "extracted 1400–2600 ms" in tip
