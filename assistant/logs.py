"""How Parley's log lines look, and why no API key is ever in one.

Every handler Parley installs (the console of ``parley``/``parley talk``, the desktop app's
``parley.log``) formats with ``ScrubbingFormatter``: the message, its arguments, the traceback
and the stack are formatted first and then pass ``redact.scrub``, so a key that slipped into any
of them — in any spelling, ``repr``-escaped or JSON-quoted, or as an auth header's value — is
written as ``[redacted]``. The traceback is scrubbed where the record caches it, so a second
handler that reuses the cached text never sees the key either.
"""

from __future__ import annotations

import logging
import types

from assistant.engines.net.redact import scrub

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

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
        return scrub(super().format(record))


def scrubbed[H: logging.Handler](handler: H) -> H:
    """``handler``, formatting with ``ScrubbingFormatter``."""
    handler.setFormatter(ScrubbingFormatter())
    return handler


def log_to_console(level: int) -> None:
    """Log records at ``level`` and above to stderr, scrubbed (``parley``'s own console)."""
    logging.basicConfig(level=level, handlers=[scrubbed(logging.StreamHandler())])
