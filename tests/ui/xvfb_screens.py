"""The real window on an X display, put into the states the screenshot test looks at.

Started by ``test_xvfb.py`` as ``python tests/ui/xvfb_screens.py`` with a seeded history. For
each state it prints ``ready NAME [X Y W H]`` (an area of the window to look at, in window
pixels; ``screen`` for the whole screen) and waits for a line on stdin before going on:

- ``conversation-list``: several past conversations in the list, the current one in bold;
- ``settings-language-tab``, ``settings-languages``: the settings at Language & voice, then
  with the list of languages open;
- ``focus-N-NAME``: each control of the window in Tab order, with the keyboard on it;
- ``progress-long-message``: a 5,000-character typed message being read by a slow model.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QWidget

from assistant.app import Assistant
from assistant.audio.player import VirtualPlayer
from assistant.config import Settings
from assistant.engines.fake import FakeLLM, FakeSTT, FakeTTS
from tests.ui.xvfb_app import noise_microphone

LONG_MESSAGE = "Please summarise this report for me. " + "Sales rose in every region. " * 190


async def step(name: str, area: str = "") -> None:
    print(f"ready {name} {area}".strip(), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


def area_of(widget: QWidget, margin: int = 10) -> str:
    window = widget.window()
    corner = widget.mapTo(window, QPoint(0, 0))
    x, y = max(0, corner.x() - margin), max(0, corner.y() - margin)
    width = min(window.width() - x, widget.width() + 2 * margin)
    height = min(window.height() - y, widget.height() + 2 * margin)
    return f"{x} {y} {width} {height}"


async def settle(seconds: float = 0.4) -> None:
    """Let Qt lay out and paint (the loop runs Qt's events while it waits)."""
    await asyncio.sleep(seconds)


async def main() -> int:
    from ui.main_window import MainWindow

    llm = FakeLLM(reply=lambda _r: "Sales rose everywhere, most in the north.", ttft=8.0)

    assistant = Assistant(
        # The offline engines as the settings show them; scripted ones stand in for them.
        Settings(stt="local", llm="local", tts="local"),
        engine_factory=lambda _s: (FakeSTT(), llm, FakeTTS()),
        player_factory=lambda _s: VirtualPlayer(pace="realtime"),
        source_factory=noise_microphone,
        persist=False,
    )
    window = MainWindow(assistant)
    window.resize(1240, 780)
    window.show()
    await assistant.start()
    await assistant.wait_ready(10)
    await settle(1.0)
    await step("conversation-list")

    dialog = window.open_settings()
    dialog.tabs.setCurrentIndex(2)
    dialog.detect_language.setChecked(True)
    await settle()
    await step("settings-language-tab", "screen")
    dialog.language_combo.showPopup()
    await settle()
    await step("settings-languages", "screen")
    dialog.language_combo.hidePopup()
    dialog.reject()
    await settle()

    window.banners.show_message(
        "No microphone could be opened. You can still type messages.",
        "error",
        ("Retry", lambda: None),
    )
    await settle()
    banner = window.banners.banners()[-1]
    chain: list[tuple[str, Any]] = [
        ("conversations-toggle", window.list_button),
        ("new-conversation", window.new_button),
        ("settings", window.settings_button),
        ("banner-retry", banner.action_button),
        ("banner-dismiss", banner.close_button),
        ("search", window.conversations.search),
        ("conversation-list", window.conversations.list),
        ("conversation", window.conversation),
        ("message-box", window.message_box),
        ("send", window.send_button),
        ("hold-to-talk", window.ptt_button),
        ("hands-free", window.hands_free_button),
        ("export-timelines", window.timeline.export_button),
    ]
    window.activateWindow()
    for n, (name, widget) in enumerate(chain, 1):
        widget.setFocus(Qt.FocusReason.TabFocusReason)
        await settle(0.3)
        await step(f"focus-{n:02d}-{name}", area_of(widget))
    banner.dismiss()

    window.message_box.setText(LONG_MESSAGE)
    window.send_button.click()
    await asyncio.sleep(3.2)  # a few seconds of reading, counted in the pill
    await step("progress-long-message")
    assistant.interrupt()
    await assistant.close()
    window.close()
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    import qasync

    from ui.app import create_application

    app = create_application([sys.argv[0]])
    sys.exit(asyncio.run(main(), loop_factory=lambda: qasync.QEventLoop(app)))
