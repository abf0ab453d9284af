"""Parley's log file: where it lives on each OS, how it rotates, and why it holds no secrets.

The file is ``parley.log`` in the platform's log folder:

* Linux: ``$XDG_STATE_HOME/Parley/log`` (``~/.local/state/Parley/log``)
* macOS: ``~/Library/Logs/Parley`` (Console.app lists it)
* Windows: ``%LOCALAPPDATA%\\Parley\\Logs``

With ``PARLEY_DATA_DIR`` set, the log goes to ``<that folder>/logs`` instead, so a moved data
folder keeps everything of Parley's together. The file rotates at 1 MB, keeping three old ones.
Every record passes through ``RedactSecrets`` on its way in, so an API key that slipped into a
message, an argument or a traceback is written as ``[redacted]``.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
from pathlib import Path

import platformdirs

from assistant.config import APP_NAME
from assistant.secrets import redact

FILE_NAME = "parley.log"
MAX_BYTES = 1_000_000
BACKUPS = 3
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

log = logging.getLogger(__name__)


def log_dir() -> Path:
    """The folder holding the log file (it may not exist yet)."""
    data = os.environ.get("PARLEY_DATA_DIR")
    if data:
        return Path(data) / "logs"
    return Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))


def log_path() -> Path:
    """The log file's path: the place to point a user at (Help → About, error banners)."""
    return log_dir() / FILE_NAME


class RedactSecrets(logging.Filter):
    """Scrub known API keys from a record's message, traceback and stack before it is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def start_file_log(level: int = logging.INFO) -> Path | None:
    """Send the root logger's records at ``level`` and above to the rotating log file.

    Other handlers already on the root logger keep their own, quieter level. Returns the file's
    path, or None (with a warning on the console) when it cannot be written.
    """
    path = log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8"
        )
    except OSError as exc:
        log.warning("cannot write the log file %s: %s", path, exc)
        return None
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.setLevel(level)
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > level or root.level == logging.NOTSET:
        root.setLevel(level)
        for other in root.handlers:  # the console keeps its own, quieter level
            if other is not handler and other.level == logging.NOTSET:
                other.setLevel(logging.WARNING)
    return path
