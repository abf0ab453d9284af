"""Total readers for what a server sends: every function here accepts anything and never raises
but ``EngineError``.

A provider's JSON can carry a number where a string belongs, a string where a list belongs,
``NaN``, truncated base64 or no object at all. The wire protocols read fields through these
helpers, so such a message is skipped (with a log line) or becomes a clear ``EngineError``; no
``TypeError``, ``KeyError`` or ``binascii.Error`` reaches a fallback chain.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from assistant.engines.base import PCM
from assistant.engines.net.errors import Service
from assistant.engines.net.redact import scrub

log = logging.getLogger(__name__)

Message = dict[str, Any]
_EMPTY: PCM = np.zeros(0, dtype=np.int16)


def parse_json(label: str, raw: object) -> Message | None:
    """A server's JSON object, or None (logged) when the message is not one."""
    if not isinstance(raw, str | bytes | bytearray):
        return None
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        log.warning("%s sent a message that is not JSON (%d bytes); skipped", label, len(raw))
        return None
    if not isinstance(value, dict):
        log.warning("%s sent JSON that is not an object; skipped", label)
        return None
    return value


def text(msg: Message, key: str) -> str:
    """A string field; anything else (missing, a number, a list) reads as ``""``."""
    value = msg.get(key)
    return value if isinstance(value, str) else ""


def number(value: Any, default: float = 0.0) -> float:
    """A finite number (a numeric string too); anything else reads as ``default``."""
    if isinstance(value, bool):
        return default
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value)
        except ValueError:
            return default
    else:
        return default
    return result if math.isfinite(result) else default


def integer(value: Any, default: int = -1) -> int:
    """An integer field (a whole float or a numeric string too); else ``default``."""
    result = number(value, math.nan)
    return int(result) if math.isfinite(result) and result == int(result) else default


def flag(msg: Message, *keys: str) -> bool:
    """True when any of ``keys`` holds JSON ``true`` (not a truthy string or number)."""
    return any(msg.get(key) is True for key in keys)


def obj(msg: Message, key: str) -> Message:
    """An object field; anything else reads as ``{}``."""
    value = msg.get(key)
    return value if isinstance(value, dict) else {}


def items(value: Any) -> list[Any]:
    """A list field; anything else reads as ``[]``."""
    return value if isinstance(value, list) else []


def server_error_text(msg: Message) -> str | None:
    """The error a server reports in a message (``error`` / ``message`` fields), if any."""
    error = msg.get("error")
    if not error and msg.get("type") not in ("Error", "error"):
        return None
    if isinstance(error, dict):
        error = error.get("message") or json.dumps(error)[:300]
    found = error or msg.get("message") or msg.get("description") or "unknown error"
    return scrub(str(found))[:300]


def decode_pcm(service: Service, data: Any, carry: bytearray) -> PCM:
    """Base64 s16le audio → int16 samples; an odd trailing byte waits in ``carry``.

    Missing padding is tolerated (some servers leave it off); anything else that is not base64
    raises a retryable ``EngineError``. A non-string reads as no audio."""
    if not isinstance(data, str) or not data:
        return _EMPTY
    try:
        raw = base64.b64decode(data + "=" * (-len(data) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise service.error(
            f"sent audio that is not valid base64 ({len(data)} characters); the reply was cut "
            "short."
        ) from None
    joined = bytes(carry) + raw
    usable = len(joined) & ~1
    carry[:] = joined[usable:]
    return np.frombuffer(joined, dtype="<i2", count=usable // 2).astype(np.int16)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to send: a text frame (JSON) or a binary frame (audio).

    ``audio`` is the seconds of audio the message carries (0 for control messages): the pacer
    and a turn's bookkeeping read it."""

    data: str | bytes
    audio: float = 0.0

    @classmethod
    def json(cls, message: Message) -> Outgoing:
        return cls(json.dumps(message))
