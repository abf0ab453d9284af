"""Long waits show what Parley is doing and for how long: reading a long typed message,
thinking, calling a tool, switching engines after a change of settings."""

from __future__ import annotations

import asyncio
import copy

import pytest

from assistant.engines.fake import FakeLLM, FakeSTT, FakeTTS
from assistant.events import Activity, Doing, Notice
from tests.ui.helpers import PATIENCE, collect, fake_settings, run, show_window, started, until

pytestmark = pytest.mark.gui

LONG_MESSAGE = "Please summarise this for me. " + "The quick brown fox jumps over it. " * 150


class GatedTTS(FakeTTS):
    """A voice whose loading waits for ``loaded`` (a change of settings that takes a while)."""

    def __init__(self, loaded: asyncio.Event | None = None) -> None:
        super().__init__(realtime_factor=0.0)
        self.loaded = loaded

    async def warm_up(self) -> None:
        if self.loaded is not None:
            await self.loaded.wait()


make_window = show_window


def test_a_long_typed_message_is_accepted_and_the_wait_is_shown(qtbot, qloop, assistants):
    llm = FakeLLM(reply=lambda _r: "Here is the gist in one line.", ttft=1.5)
    # The offline model is chosen (the factory stands in for it): long reads are announced.
    assistant = assistants(
        fake_settings(llm="local"),
        engine_factory=lambda _s: (FakeSTT(), llm, FakeTTS(realtime_factor=0.0)),
        persist=False,
    )
    window = make_window(qtbot, assistant)
    notices = collect(assistant, Notice)
    activities = collect(assistant, Activity)

    async def scenario() -> None:
        await started(assistant)
        assert len(LONG_MESSAGE) > 5000
        window.message_box.setText(LONG_MESSAGE)
        window.send_button.click()
        await until(lambda: window.indicator.text.startswith("Reading your message…"))
        assert window.indicator.state == "thinking"
        await asyncio.sleep(1.1)  # the pill counts the seconds
        await until(lambda: window.indicator.text.endswith(" s"), what="elapsed time")
        await assistant.wait_idle(PATIENCE)
        assert window.indicator.text == "Ready"
        assert any("long message" in m for m in window.banners.messages())
        await assistant.close()

    run(qloop, scenario(), 4 * PATIENCE)
    assert activities[0].doing is Doing.READING
    (long,) = [n.message for n in notices if "long message" in n.message]
    assert "5," in long and "takes about" in long
    assert llm.requests[-1].messages[-1].content == LONG_MESSAGE.strip()  # taken whole


def test_thinking_and_calling_a_tool_are_shown(qtbot, qloop, assistants):
    llm = FakeLLM(ttft=0.05, tool_call=("calculate", '{"expression": "6*7"}'))
    assistant = assistants(
        engine_factory=lambda _s: (FakeSTT(), llm, FakeTTS(realtime_factor=0.0)), persist=False
    )
    window = make_window(qtbot, assistant)
    activities = collect(assistant, Activity)
    labels: list[str] = []
    assistant.events.subscribe(lambda _e: labels.append(window.indicator.text))

    async def scenario() -> None:
        await started(assistant)
        assistant.submit_text("What is six times seven?")
        await assistant.wait_idle(PATIENCE)
        await assistant.close()

    run(qloop, scenario(), 4 * PATIENCE)
    kinds = [(a.doing, a.detail) for a in activities]
    assert kinds[:3] == [(Doing.THINKING, ""), (Doing.TOOL, "calculate"), (Doing.THINKING, "")]
    assert "Calling calculate…" in labels and "Thinking…" in labels


def test_switching_engines_after_a_change_of_settings(qtbot, qloop, assistants):
    loaded = asyncio.Event()
    loaded.set()
    voices = [GatedTTS(loaded)]

    def engines(_settings):
        return FakeSTT(), FakeLLM(), voices[-1]

    assistant = assistants(engine_factory=engines, persist=False)
    window = make_window(qtbot, assistant)

    async def scenario() -> None:
        await started(assistant)
        slow = asyncio.Event()
        voices.append(GatedTTS(slow))
        changed = copy.deepcopy(assistant.settings)
        changed.language = "de"
        applying = asyncio.ensure_future(assistant.apply_settings(changed))
        await until(lambda: window.indicator.text.startswith("Switching engines…"))
        assert window.indicator.state == "loading"
        slow.set()
        await applying
        await until(lambda: window.indicator.text == "Ready", what="ready again")
        await assistant.close()

    run(qloop, scenario(), 4 * PATIENCE)
