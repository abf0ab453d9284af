"""Screenshots under Xvfb, looked at by a person: the conversation list, the language picker,
the focus ring on each control of the window, and the state pill during a long typed message.
The app (``xvfb_screens.py``) sets each state up; X itself captures the screen."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PySide6.QtGui import QImage, QPainter

from tests.ui.helpers import ROOT, SCREENSHOTS, seed_history
from tests.ui.test_xvfb import MAIN_TITLE, app_env, display, find_window, screenshot

pytestmark = pytest.mark.gui
__all__ = ["display"]  # the fixture: a display of this module's own


def settled_screenshot(display: str, window: str, name: str, timeout: float = 10.0) -> Path:
    """A screenshot once the window shows something (a busy machine may paint it late)."""
    end = time.monotonic() + timeout
    while True:
        try:
            return screenshot(display, window, name)
        except AssertionError:
            if time.monotonic() > end:
                raise
            time.sleep(0.3)


def _seed_conversations(data_dir: Path) -> None:
    """Several past conversations, the Lisbon one (with timings) the latest."""
    from assistant.history import HistoryStore, TurnRecord

    store = HistoryStore(data_dir / "conversations")
    for n, questions in enumerate(
        (
            ["Which plants like shade?", "And which need full sun?"],
            ["Help me plan a birthday dinner for six"],
            ["What is the capital of Australia?"],
            ["Write a short poem about autumn", "Make it rhyme", "Shorter please"],
        )
    ):
        conversation = store.new()
        for i, question in enumerate(questions, 1):
            conversation.append(TurnRecord(i, question, "Here is an answer.", at=1.7e9 + n))
        stamp = time.time() - 86400 * (5 - n)
        os.utime(conversation.path, (stamp, stamp))
    store.rename(store.summaries()[1].id, "Birthday dinner")
    seed_history(data_dir)


def test_screenshots_of_the_list_the_languages_the_focus_rings_and_a_long_wait(
    display: str, tmp_path: Path
):
    """Each state is set up by the app; the screen is captured by X itself and looked at."""
    _seed_conversations(tmp_path / "data")
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "ui" / "xvfb_screens.py")],
        cwd=ROOT,
        env=app_env(display, tmp_path),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "app.log").open("wb"),
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    shots: dict[str, Path] = {}
    focus_rings: list[QImage] = []
    try:
        window = find_window(display, MAIN_TITLE, pid=process.pid)
        for line in process.stdout:
            words = line.split()
            if not words or words[0] != "ready":
                assert words == ["done"], line
                break
            name, area = words[1], words[2:]
            if area == ["screen"]:
                shots[name] = settled_screenshot(display, "root", f"8-{name}.png")
            elif area:
                path = settled_screenshot(display, window, f"9-{name}.png")
                x, y, w, h = (int(v) for v in area)
                crop = QImage(str(path)).copy(x, y, w, h)
                crop.save(str(path))
                focus_rings.append(crop)
                shots[name] = path
            else:
                number = {"conversation-list": 7, "progress-long-message": 10}[name]
                shots[name] = settled_screenshot(display, window, f"{number}-{name}.png")
            process.stdin.write("next\n")
            process.stdin.flush()
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
    wanted = {"conversation-list", "settings-language-tab", "settings-languages"}
    assert wanted | {"progress-long-message"} <= set(shots)
    assert len(focus_rings) == 13
    # One sheet with every focus ring, for looking at them together.
    width = max(i.width() for i in focus_rings)
    sheet = QImage(width, sum(i.height() + 6 for i in focus_rings), QImage.Format.Format_RGB32)
    sheet.fill(0xFFFFFF)
    painter = QPainter(sheet)
    top = 0
    for image in focus_rings:
        painter.drawImage(0, top, image)
        top += image.height() + 6
    painter.end()
    sheet.save(str(SCREENSHOTS / "9-focus-rings.png"))
