"""Tools through ``Assistant``, as the window and ``parley talk`` use them: the same registry
with built-ins, alarms and notes beside the history; an alarm rings, speaks and notifies; a
confirmation answered with a click; MCP servers following the settings; structured output
switched on by the settings."""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from assistant.app import Assistant
from assistant.audio.player import DevicePlayer
from assistant.config import McpServerSettings, Settings
from assistant.engines.fake import FakeLLM, FakeSTT, FakeTTS
from assistant.events import (
    Announcement,
    ConfirmationRequested,
    ConfirmationResolved,
    Notice,
    StructuredExtracted,
    ToolServers,
)
from assistant.tools.mcp import ServerState
from tests.fakes.sound_card import FakeSoundCard
from tests.integration.test_assistant import Recorder

SERVER = Path(__file__).resolve().parents[1] / "fakes" / "mcp_server.py"


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[tuple[Assistant, FakeLLM, list[tuple[str, str]]]]:
    llm = FakeLLM(ttft=0.01, tokens_per_second=400)
    notified: list[tuple[str, str]] = []
    assistant = Assistant(
        Settings(stt="fake", llm="fake", tts="fake"),
        history_dir=tmp_path / "conversations",
        engine_factory=lambda _s: (FakeSTT(), llm, FakeTTS(realtime_factor=0.0)),
        source_factory=lambda _s: None,
        player_factory=lambda _s: DevicePlayer(stream_factory=FakeSoundCard().output_stream),
        notifier=lambda title, body: notified.append((title, body)),
        persist=False,
    )
    try:
        await assistant.start()
        await assistant.wait_ready(10)
        yield assistant, llm, notified
    finally:
        await assistant.close()


async def test_every_built_in_tool_is_offered_and_stored_beside_the_history(app, tmp_path) -> None:
    assistant, _, _ = app
    names = {t.spec.name for t in assistant.tools.tools()}
    assert names == {
        "get_time", "calculate", "convert_units", "set_timer", "set_reminder", "list_timers",
        "cancel_timer", "add_note", "find_notes",
    }  # fmt: skip
    assert assistant.toolbox.alarms.path == tmp_path / "conversations" / "tools" / "timers.json"
    assert assistant.toolbox.notes.path.name == "notes.jsonl"


async def test_an_alarm_rings_speaks_and_notifies(app) -> None:
    assistant, _, notified = app
    seen = Recorder(assistant)
    assistant.toolbox.alarms.add("timer", time.time() + 0.3, "tea", seconds=0.3)
    await seen.until(lambda: seen.of(Announcement), "the alarm")
    assert seen.of(Announcement)[0].text == "Your tea timer is done."
    assert notified == [("Parley", "Your tea timer is done.")]
    await assistant.wait_idle(10)
    assert assistant.toolbox.alarms.pending() == []


async def test_a_click_confirms_a_tool_that_changes_something(app) -> None:
    assistant, llm, _ = app
    seen = Recorder(assistant)
    llm.tool_call = ("add_note", '{"text": "buy milk"}')
    assert not assistant.confirm(True)  # nothing asked yet
    assert assistant.submit_text("Note that I need to buy milk.")
    await seen.turn(1)
    (asked,) = seen.of(ConfirmationRequested)
    assert asked.title == "notes" and "save the note: buy milk" in asked.prompt
    assert assistant.toolbox.notes.notes() == []
    assert assistant.confirm(True)
    second = await seen.turn(2)
    assert [t.name for t in second.tool_calls] == ["add_note"]
    assert [n.text for n in assistant.toolbox.notes.notes()] == ["buy milk"]
    assert [e.accepted for e in seen.of(ConfirmationResolved)] == [True]


async def test_mcp_servers_and_structured_output_follow_the_settings(app) -> None:
    assistant, _, _ = app
    seen = Recorder(assistant)
    new = copy.deepcopy(assistant.settings)
    new.tools.mcp_servers["shop"] = McpServerSettings(
        command=sys.executable, args=[str(SERVER), "stdio"], timeout=20
    )
    new.structured.enabled = True
    await assistant.apply_settings(new)
    (status,) = assistant.tool_servers()
    assert status.state is ServerState.READY and "shop__get_order_status" in assistant.tools
    assert seen.of(ToolServers)[-1].statuses[0].state is ServerState.READY
    assert assistant.session is not None and assistant.session.structured is not None
    assert assistant.submit_text("Where is my order?")
    await seen.until(lambda: seen.of(StructuredExtracted), "the structured object")
    # The scripted model answers in prose: the extraction says why there is no object.
    assert "invalid JSON" in (seen.of(StructuredExtracted)[0].error or "")

    off = copy.deepcopy(assistant.settings)
    off.tools.mcp_servers["shop"].enabled = False
    await assistant.apply_settings(off)
    assert [s.state for s in assistant.tool_servers()] == [ServerState.DISABLED]
    assert "shop__get_order_status" not in assistant.tools
    none = copy.deepcopy(assistant.settings)
    none.tools.enabled = False
    await assistant.apply_settings(none)
    assert assistant.session is not None and assistant.session.tools is None
    assert not [m for m in seen.of(Notice) if "tool server" in m.message]
