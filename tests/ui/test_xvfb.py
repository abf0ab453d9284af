"""The real window on a real X display (Xvfb): it opens, hold-to-talk works with real key events
from xdotool, and screenshots of each state are saved to artifacts/screenshots/ for review."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtGui import QImage

from tests.ui.helpers import ROOT, SCREENSHOTS, seed_history

pytestmark = pytest.mark.gui

XVFB = shutil.which("Xvfb")
XDOTOOL = shutil.which("xdotool")
IMPORT = shutil.which("import")
MAIN_TITLE = "voice assistant"  # the window title is "Parley — voice assistant"


def _require_tools() -> None:
    if XVFB is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    if XDOTOOL is None:
        pytest.skip("xdotool is not installed (apt-get install xdotool)")
    if IMPORT is None:
        pytest.skip("ImageMagick's import is not installed (apt-get install imagemagick)")


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    """A fresh Xvfb server; its number is chosen by Xvfb itself (-displayfd)."""
    _require_tools()
    assert XVFB is not None
    read_fd, write_fd = os.pipe()
    server = subprocess.Popen(
        [XVFB, "-displayfd", str(write_fd), "-screen", "0", "1280x820x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()
    if not number:
        server.kill()
        pytest.skip("Xvfb did not start")
    try:
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(5)


def xdo(display: str, *args: str, timeout: float = 10.0) -> str:
    assert XDOTOOL is not None
    done = subprocess.run(
        [XDOTOOL, *args],
        env={**os.environ, "DISPLAY": display},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done.stdout.strip()


def find_window(display: str, title: str, timeout: float = 120.0, pid: int | None = None) -> str:
    end = time.monotonic() + timeout
    owner = ["--pid", str(pid)] if pid is not None else []
    while time.monotonic() < end:
        found = xdo(display, "search", "--onlyvisible", *owner, "--name", title).split()
        if found:
            return found[-1]
        time.sleep(0.1)
    raise AssertionError(f"no window titled {title!r} appeared")


def screenshot(display: str, window: str, name: str) -> Path:
    assert IMPORT is not None
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    subprocess.run(
        [IMPORT, "-window", window, str(path)],
        env={**os.environ, "DISPLAY": display},
        check=True,
        timeout=15,
        capture_output=True,
    )
    image = QImage(str(path))
    assert image.width() >= 800 or "settings" in name, (image.width(), image.height())
    # Not a blank or failed grab: a real window has many colours.
    colours = {
        image.pixel(x, y) for x in range(0, image.width(), 13) for y in range(0, image.height(), 13)
    }
    assert len(colours) > 20
    return path


def app_env(display: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    env.update(
        DISPLAY=display,
        PARLEY_CONFIG_DIR=str(home / "config"),
        PARLEY_DATA_DIR=str(home / "data"),
        PYTHONPATH=str(ROOT),
    )
    return env


@dataclass
class RunningApp:
    display: str
    process: subprocess.Popen[bytes]
    events_path: Path
    window: str = ""

    def events(self) -> list[dict[str, Any]]:
        if not self.events_path.exists():
            return []
        lines = self.events_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def wait_for(
        self,
        predicate: Callable[[list[dict[str, Any]]], object],
        timeout: float = 30.0,
        what: str = "",
    ) -> list[dict[str, Any]]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            events = self.events()
            if predicate(events):
                return events
            assert self.process.poll() is None, "the app exited"
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; events: {self.events()[-8:]}")

    def focus(self) -> None:
        xdo(self.display, "windowfocus", "--sync", self.window)

    def shot(self, name: str) -> Path:
        return screenshot(self.display, self.window, name)


def test_parley_command_opens_the_window_and_closes_cleanly(display: str, tmp_path: Path):
    """`parley` itself (no test doubles): this machine has no sound card, so it must say so."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "settings.toml").write_text('stt = "fake"\nllm = "fake"\ntts = "fake"\n')
    process = subprocess.Popen(
        [sys.executable, "-m", "assistant.cli"],
        cwd=ROOT,
        env=app_env(display, tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        window = find_window(display, MAIN_TITLE, pid=process.pid)
        time.sleep(1.5)  # engines warm up, devices are probed, banners appear
        screenshot(display, window, "0-parley-first-start.png")
        xdo(display, "windowfocus", "--sync", window)
        xdo(display, "key", "ctrl+q")
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
    stderr = process.stderr.read().decode() if process.stderr else ""
    assert "Traceback" not in stderr


@pytest.fixture(scope="module")
def app(display: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """The window with fake engines, a virtual microphone and a seeded past conversation."""
    home = tmp_path_factory.mktemp("xvfb-app")
    seed_history(home / "data")
    events = home / "events.jsonl"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "ui" / "xvfb_app.py"), str(events)],
        cwd=ROOT,
        env=app_env(display, home),
        stdout=subprocess.DEVNULL,
        stderr=(home / "app.log").open("wb"),
    )
    running = RunningApp(display, process, events)
    try:
        running.window = find_window(display, MAIN_TITLE)
        running.wait_for(
            lambda ev: any(e["kind"] == "ready" and e["ready"] for e in ev), what="ready"
        )
        yield running
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def test_window_opens_with_the_past_conversation(app: RunningApp):
    assert "Parley" in xdo(app.display, "getwindowname", app.window)
    time.sleep(0.3)  # let the level meter and layout settle
    app.shot("1-idle-history-reloaded.png")
    errors = [e for e in app.events() if e["kind"] == "error"]
    assert errors == []


def test_hold_space_with_xdotool_drives_a_turn_then_esc_interrupts(app: RunningApp):
    app.focus()
    start = len(app.events())
    xdo(app.display, "keydown", "space")
    try:
        app.wait_for(
            lambda ev: sum(1 for e in ev[start:] if e["kind"] == "partial") >= 2,
            what="live partial transcripts",
        )
        time.sleep(0.9)  # held long past the keyboard's auto-repeat delay
        app.shot("2-user-speaking-partials.png")
    finally:
        xdo(app.display, "keyup", "space")
    events = app.wait_for(
        lambda ev: any(
            e["kind"] == "assistant" and len(e["spoken"].split()) >= 4 for e in ev[start:]
        ),
        what="the answer being spoken",
    )
    app.shot("3-mid-answer.png")
    finals = [e for e in events[start:] if e["kind"] == "final"]
    assert len(finals) == 1, "auto-repeat of the held key must not end the turn"
    assert finals[0]["text"] == "What is a good name for a cat?"
    xdo(app.display, "key", "Escape")
    events = app.wait_for(
        lambda ev: any(e["kind"] == "finished" for e in ev[start:]), what="the interruption"
    )
    finished = next(e for e in events[start:] if e["kind"] == "finished")
    assert finished["interrupted"] and finished["heard"]
    states = [e["state"] for e in events[start:] if e["kind"] == "state"]
    assert states[:4] == ["user_speaking", "thinking", "speaking", "interrupted"]
    time.sleep(0.3)
    app.shot("4-interrupted.png")


def test_settings_panel_opens_from_the_keyboard(app: RunningApp):
    app.focus()
    xdo(app.display, "key", "ctrl+comma")
    dialog = find_window(app.display, "Settings")
    time.sleep(0.4)
    screenshot(app.display, dialog, "5-settings.png")
    xdo(app.display, "windowfocus", "--sync", dialog)
    xdo(app.display, "key", "ctrl+Tab")
    time.sleep(0.3)
    screenshot(app.display, dialog, "6-settings-api-keys.png")
    xdo(app.display, "key", "Escape")
    end = time.monotonic() + 5
    while (
        xdo(app.display, "search", "--onlyvisible", "--name", "Settings") and time.monotonic() < end
    ):
        time.sleep(0.1)
    assert not xdo(app.display, "search", "--onlyvisible", "--name", "Settings")


def test_system_wide_hotkey_under_x11(display: str):
    """Held F9 anywhere on the display: one press and one release, delivered on the GUI thread."""
    if importlib.util.find_spec("pynput") is None:
        pytest.skip("the optional system-wide hotkey needs pynput, which is not installed")
    env = {
        **os.environ,
        "DISPLAY": display,
        "QT_QPA_PLATFORM": "offscreen",
        "PYTHONPATH": str(ROOT),
    }
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "ui" / "xvfb_hotkey.py")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline().strip()
    if first.startswith("unavailable"):
        process.wait(5)
        pytest.skip(first)
    assert first == "listening"
    time.sleep(0.3)
    xdo(display, "keydown", "F9")
    time.sleep(1.0)  # past the auto-repeat delay: repeats must not count as releases
    xdo(display, "keyup", "F9")
    out, _ = process.communicate(timeout=10)
    assert out.split("\n")[:2] == ["pressed True", "released True"]
    assert out.count("pressed") == 1
