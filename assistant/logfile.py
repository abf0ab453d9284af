"""Parley's log file: where it lives on each OS, how it rotates, and why it holds no secrets.

The file is ``parley.log`` in the platform's log folder:

* Linux: ``$XDG_STATE_HOME/Parley/log`` (``~/.local/state/Parley/log``)
* macOS: ``~/Library/Logs/Parley`` (Console.app lists it)
* Windows: ``%LOCALAPPDATA%\\Parley\\Logs``

With ``PARLEY_DATA_DIR`` set, the log goes to ``<that folder>/logs`` instead, so a moved data
folder keeps everything of Parley's together. The file rotates at 1 MB, keeping three old ones.

Every handler Parley installs (this file, and the console of ``parley``/``parley talk``, see
``log_to_console``) formats with ``ScrubbingFormatter``: the message, its arguments, the
traceback and the stack are formatted first and then pass ``redact.scrub``, so an API key that
slipped into any of them — in any spelling, ``repr``-escaped or JSON-quoted, or as an auth
header's value — is written as ``[redacted]``. The traceback is scrubbed where the record caches
it too, so a handler after this one that reuses the cached text never sees the key either.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import types
from pathlib import Path

import platformdirs

from assistant.config import APP_NAME
from assistant.engines.net.redact import scrub

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


ExcInfo = tuple[type[BaseException], BaseException, types.TracebackType | None]


class ScrubbingFormatter(logging.Formatter):
    """``logging.Formatter`` whose every output passes ``scrub``."""

    def __init__(self, fmt: str = FORMAT) -> None:
        super().__init__(fmt)

    def formatException(self, ei: ExcInfo | tuple[None, None, None]) -> str:
        return scrub(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return scrub(super().formatStack(stack_info))

    def format(self, record: logging.LogRecord) -> str:
        text = scrub(super().format(record))
        if record.exc_text:  # cached for the handlers after this one, perhaps by another's format
            record.exc_text = scrub(record.exc_text)
        return text


def scrubbed[H: logging.Handler](handler: H) -> H:
    """``handler``, formatting with ``ScrubbingFormatter``."""
    handler.setFormatter(ScrubbingFormatter())
    return handler


def log_to_console(level: int) -> None:
    """Log records at ``level`` and above to stderr, scrubbed (``parley``'s own console)."""
    logging.basicConfig(level=level, handlers=[scrubbed(logging.StreamHandler())])


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
    scrubbed(handler)
    handler.setLevel(level)
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > level or root.level == logging.NOTSET:
        root.setLevel(level)
        for other in root.handlers:  # the console keeps its own, quieter level
            if other is not handler and other.level == logging.NOTSET:
                other.setLevel(logging.WARNING)
    return path
