"""The log file: its place, its rotation, and no API key ever written into it."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant import logfile, secrets

SECRET = "sk-test-0123456789abcdef"


@pytest.fixture
def file_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    assert secrets.get_key("openai") == SECRET  # the process has now seen the key
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    path = logfile.start_file_log()
    assert path is not None
    yield path
    for handler in root.handlers:
        if handler not in before:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def test_a_moved_data_folder_takes_the_log_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path))
    assert logfile.log_path() == tmp_path / "logs" / "parley.log"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG state folder")
def test_linux_logs_go_to_the_xdg_state_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PARLEY_DATA_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert logfile.log_path() == tmp_path / "state" / "Parley" / "log" / "parley.log"


def test_keys_are_redacted_from_messages_arguments_and_tracebacks(file_log: Path) -> None:
    log = logging.getLogger("assistant.test")
    log.info("connecting with key %s", SECRET)
    log.warning(f"header Authorization: Bearer {SECRET}")
    try:
        raise RuntimeError(f"server refused {SECRET}")
    except RuntimeError:
        log.exception("request failed")
    text = file_log.read_text(encoding="utf-8")
    assert SECRET not in text
    assert text.count("[redacted]") == 3
    assert "RuntimeError: server refused [redacted]" in text


def test_escaped_keys_headers_and_stacks_are_redacted(file_log: Path) -> None:
    log = logging.getLogger("assistant.test")
    log.warning("headers: %r", {"Authorization": f"Bearer {SECRET}\r"})
    try:
        raise RuntimeError(f"h11 refused the header value {(SECRET + chr(13))!r}")
    except RuntimeError:
        log.exception("request failed")
    log.warning("where it was logged from", stack_info=True)
    text = file_log.read_text(encoding="utf-8")
    assert "Traceback" in text and "Stack (most recent call last)" in text
    assert SECRET not in text and SECRET.encode("unicode_escape").decode() not in text


def test_a_traceback_is_redacted_where_the_record_caches_it(file_log: Path) -> None:
    plain = io.StringIO()
    second = logging.StreamHandler(plain)  # reuses the traceback text the file handler cached
    second.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.addHandler(second)
    try:
        try:
            raise RuntimeError(f"server refused {SECRET}")
        except RuntimeError:
            logging.getLogger("assistant.test").exception("request failed")
    finally:
        root.removeHandler(second)
    assert "Traceback" in plain.getvalue()
    assert SECRET not in plain.getvalue().split("Traceback", 1)[1]


def test_the_console_is_redacted_too(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    handler = logfile.scrubbed(logging.StreamHandler(stream))
    log = logging.getLogger("assistant.console-test")
    log.addHandler(handler)
    monkeypatch.setattr(log, "propagate", False)
    try:
        log.warning("hello %s", SECRET)
    finally:
        log.removeHandler(handler)
    assert stream.getvalue().endswith(" WARNING assistant.console-test: hello [redacted]\n")


def test_the_file_rotates(file_log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    handler = next(
        h for h in logging.getLogger().handlers if getattr(h, "baseFilename", "") == str(file_log)
    )
    monkeypatch.setattr(handler, "maxBytes", 2000)
    for i in range(100):
        logging.getLogger("assistant.test").info("line %d %s", i, "x" * 50)
    assert file_log.with_name("parley.log.1").is_file()
    assert not file_log.with_name(f"parley.log.{logfile.BACKUPS + 1}").exists()


def test_an_unwritable_folder_is_a_warning_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("PARLEY_DATA_DIR", str(blocker))
    assert logfile.start_file_log() is None


def test_the_app_notes_when_it_is_ready_to_talk(caplog: pytest.LogCaptureFixture) -> None:
    from ui.app import log_ready

    with caplog.at_level(logging.INFO, logger="ui.app"):
        log_ready(False)
        log_ready(True)
    [record] = caplog.records
    assert record.getMessage().startswith("ready to talk, ")
    assert record.getMessage().endswith(" s after launch")
