"""Starting the app: no display → one line pointing to `parley talk`; errors → a banner."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from tests.ui.helpers import ROOT
from ui.app import describe_unexpected, display_problem, install_error_handlers
from ui.hotkeys import global_hotkey_status


def test_display_check():
    message = display_problem({}, "linux")
    assert message is not None and "parley talk" in message
    assert display_problem({"DISPLAY": ":0"}, "linux") is None
    assert display_problem({"WAYLAND_DISPLAY": "wayland-0"}, "linux") is None
    assert display_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux") is None
    assert display_problem({}, "darwin") is None
    assert display_problem({}, "win32") is None


def test_parley_without_a_display_exits_with_one_line():
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    }
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "assistant.cli"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "no display" in lines[0] and "parley talk" in lines[0]
    assert "Traceback" not in done.stderr and "qt.qpa" not in done.stderr


def test_uncaught_exceptions_are_logged_and_reported_not_raised(tmp_path, caplog):
    reports: list[str] = []
    before = sys.excepthook, threading.excepthook
    restore = install_error_handlers(reports.append, tmp_path / "parley.log")
    try:
        try:
            raise RuntimeError("the widget fell over")
        except RuntimeError as exc:
            sys.excepthook(type(exc), exc, exc.__traceback__)
        worker = threading.Thread(target=lambda: 1 / 0)
        worker.start()
        worker.join()
    finally:
        restore()
    assert reports[0].startswith("Something went wrong (RuntimeError: the widget fell over)")
    assert str(tmp_path / "parley.log") in reports[0]
    assert "ZeroDivisionError" in reports[1]
    assert "the widget fell over" in caplog.text  # the traceback went to the log
    assert (sys.excepthook, threading.excepthook) == before


def test_unexpected_error_message_never_shows_a_key():
    from assistant import secrets

    secrets._remember("sk-secret-abcdef123456")
    message = describe_unexpected(ValueError("bad header sk-secret-abcdef123456"), None)
    assert "sk-secret" not in message and "[redacted]" in message


@pytest.mark.skipif(sys.platform != "linux", reason="the X11/Wayland rule is Linux's")
def test_global_hotkey_explains_why_it_is_unavailable(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    assert "Wayland" in (global_hotkey_status() or "")
    monkeypatch.setenv("DISPLAY", ":99")
    status = global_hotkey_status()
    # Either pynput works here, or the reason is a sentence (not an exception).
    assert status is None or "pynput" in status or "display" in status
