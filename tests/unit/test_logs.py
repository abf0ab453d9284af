"""No API key in a log line: not in a message, an argument, a traceback or a stack, whichever
handler Parley installed wrote it (the desktop app's ``parley.log``, ``parley``'s console)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant import secrets
from assistant.logs import ScrubbingFormatter, scrubbed
from ui.app import setup_logging

CANARY = "canary-log-5d41402abc4b2a76b9719d91"


@pytest.fixture
def canary(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DEEPGRAM_API_KEY", CANARY + "\r\n")
    assert secrets.get_key("deepgram") == CANARY  # the process has now seen the key
    return CANARY


@pytest.fixture
def app_log(tmp_path: Path) -> Iterator[Path]:
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    path = setup_logging()
    assert path is not None and path.is_relative_to(tmp_path)
    yield path
    for handler in root.handlers:
        if handler not in before:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def log_everything(log: logging.Logger, key: str) -> None:
    log.info("connecting with key %s", key)
    log.warning("headers: %r", {"Authorization": f"Bearer {key}\r"})
    try:
        raise RuntimeError(f"h11 refused the header value {(key + chr(13))!r}")
    except RuntimeError:
        log.exception("request failed")
    log.warning("where it was logged from", stack_info=True, extra={"key": key})


def test_the_app_log_file_never_holds_a_key(canary: str, app_log: Path) -> None:
    log_everything(logging.getLogger("assistant.engines.test"), canary)
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = app_log.read_text(encoding="utf-8")
    assert "request failed" in text and "Traceback" in text and "RuntimeError" in text
    assert canary not in text
    assert canary.encode("unicode_escape").decode() not in text
    assert text.count("[redacted]") >= 3


def test_a_traceback_is_scrubbed_where_the_record_caches_it(canary: str) -> None:
    plain = io.StringIO()
    scrubbing = io.StringIO()
    log = logging.getLogger("assistant.engines.cached")
    log.propagate = False
    first = scrubbed(logging.StreamHandler(scrubbing))
    second = logging.StreamHandler(plain)  # formats with the cached traceback text
    second.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(first)
    log.addHandler(second)
    try:
        log_everything(log, canary)
    finally:
        log.removeHandler(first)
        log.removeHandler(second)
        log.propagate = True
    assert canary not in scrubbing.getvalue()
    assert "Traceback" in plain.getvalue()
    traceback_part = plain.getvalue().split("Traceback", 1)[1]
    assert canary not in traceback_part


def test_the_formatter_keeps_the_usual_line_shape() -> None:
    record = logging.LogRecord(
        "assistant.x", logging.WARNING, __file__, 1, "hello %s", ("you",), None
    )
    line = ScrubbingFormatter().format(record)
    assert line.endswith(" WARNING assistant.x: hello you")
