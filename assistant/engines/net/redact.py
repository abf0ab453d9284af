"""Keys out of every text the network layer produces: log lines, error messages, exception texts.

``scrub`` is the one filter: every key this process has read (in any spelling, see
``secrets.redact``), the values of auth headers (``Authorization``, ``xi-api-key``,
``x-api-key``, ``api-key``, in a header dump or in a library's ``repr`` of one), key-bearing query
parameters (``api_key=``, ``token=``, ``key=``) and anything shaped like a provider key
(``sk-…``) become ``[redacted]``. ``ScrubbingLogger`` formats a record eagerly and scrubs it
(traceback included) before it reaches any handler; the websocket library logs handshake headers
through it. ``describe`` turns an exception from httpx, h11 or websockets — whose texts may quote
a header — into a short scrubbed phrase for an error message.
"""

from __future__ import annotations

import logging
import re
import traceback
from typing import Any

from assistant.secrets import redact

_HEADER_NAMES = r"authorization|xi-api-key|x-api-key|api-key"
#: The authorization scheme stays visible: it tells a reader which form of the header was sent.
_SCHEME = r"(?:(?:bearer|token|basic)\s+)?"
#: ``Authorization: Bearer KEY`` on a line of its own (a header dump, a debug log line).
_HEADER_LINE = re.compile(rf"^((?:[<>] )?(?:{_HEADER_NAMES}):\s*{_SCHEME})[^\r\n]*$", re.I | re.M)
#: A header quoted inside a text: ``(b'authorization', b'Bearer KEY\r')``,
#: ``'xi-api-key': 'KEY'``, ``Authorization=KEY``.
_VALUE = r"""(?!\[redacted\]|(?:bearer|token|basic)\b|b['"])[^'"\s,)}\]]+"""
_HEADER_QUOTED = re.compile(
    rf"""(\b(?:{_HEADER_NAMES})['"]?\s*[,:=]\s*(?:b?['"])?{_SCHEME}){_VALUE}""", re.I
)
#: A bearer token wherever it stands (h11 quotes a refused header value without its name).
_BEARER = re.compile(rf"(\bbearer\s+){_VALUE}", re.I)
_SECRET_QUERY = re.compile(r"((?:api_key|token|key)=)[^&\s'\"]+", re.I)
#: Anything shaped like a secret key that a server might echo back in an error message.
_KEY_LIKE = re.compile(r"\b(?:sk|pk|rk|key)[-_][A-Za-z0-9_\-*.]{5,}[A-Za-z0-9*]", re.I)
PLACEHOLDER = "[redacted]"


def scrub(text: str) -> str:
    """``text`` without known keys, auth header values, key query parameters or key-like tokens.

    A header keeps its name and scheme so a reader still sees what was sent
    (``Authorization: Bearer [redacted]``)."""
    text = redact(text)
    text = _BEARER.sub(rf"\1{PLACEHOLDER}", text)
    text = _HEADER_LINE.sub(rf"\1{PLACEHOLDER}", text)
    text = _HEADER_QUOTED.sub(rf"\1{PLACEHOLDER}", text)
    text = _SECRET_QUERY.sub(rf"\1{PLACEHOLDER}", text)
    return _KEY_LIKE.sub(PLACEHOLDER, text)


def describe(exc: BaseException, limit: int = 200) -> str:
    """``TypeName: text`` of ``exc`` for an error message, scrubbed and cut to ``limit``.

    Transport libraries put request details in their texts (h11 quotes a header value it
    refuses, with the key in it); nothing of that may reach a message unscrubbed."""
    text = scrub(str(exc)).strip()
    if isinstance(exc, OSError) and exc.strerror:
        text = scrub(exc.strerror)
    name = type(exc).__name__
    return f"{name}: {text[:limit]}" if text else name


class ScrubbingLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger that formats each message (and its traceback) eagerly and scrubs it."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = " ".join(str(a) for a in (msg, *args))
        exc_info = kwargs.pop("exc_info", None)
        if isinstance(exc_info, BaseException):
            text += "\n" + "".join(traceback.format_exception(exc_info))
        elif exc_info:
            text += "\n" + traceback.format_exc()
        kwargs.pop("stack_info", None)
        kwargs.pop("stacklevel", None)
        self.logger.log(level, "%s", scrub(text), stacklevel=2, **kwargs)


def scrubbing_logger(name: str) -> ScrubbingLogger:
    return ScrubbingLogger(logging.getLogger(name), {})
