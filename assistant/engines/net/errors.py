"""Failures of a cloud request or connection → ``EngineError``s a user can act on.

One table for every adapter: an HTTP status (a refused request or websocket handshake), a
websocket close code, or a transport failure becomes an error that names the service, says what
to do, and tells a fallback chain whether trying again may help (``retryable``, ``retry_after``).
The subclasses ``RateLimited``, ``ServerFailed`` and ``Unreachable`` mark the transient kinds a
``retry.RetryBudget`` may retry. Every text passes ``redact.scrub``.

| failure | retryable | message says |
| --- | --- | --- |
| HTTP 401, close 4001/4003, close 1008 about a key | no | the key was rejected; where to set it |
| HTTP 403 | no | access refused; check the key's permissions |
| HTTP 404 | no | nothing there (or no such model); check the URL |
| HTTP 429 with ``insufficient_quota`` | no | no quota left |
| HTTP 429 | yes, after ``retry-after`` | rate limited, and for how long |
| HTTP 5xx | yes | server error |
| other HTTP 4xx | no | the request was refused, with the server's reason |
| close 1002/1003/1007/1008/1009/1010, 3000–3999 | no | the server closed the connection |
| other closes (1000, 1001, 1006, 1011–1014, 4xxx) | yes | the connection dropped |
| connection refused, DNS, TLS, timeout | yes | could not reach the URL |
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from assistant.engines.base import EngineError, EngineUnavailable
from assistant.engines.net.redact import describe, scrub
from assistant.engines.net.retry import retry_after
from assistant.engines.net.urls import host_of
from assistant.secrets import DISPLAY_NAMES, ENV_VARS

#: Close codes reconnecting will not cure: the two ends disagree (protocol error, unsupported
#: or invalid data, policy violation such as a bad key, message too big, missing extension).
FATAL_CLOSE_CODES = frozenset({1002, 1003, 1007, 1008, 1009, 1010})
#: Close codes some providers use for a rejected key.
KEY_CLOSE_CODES = frozenset({4001, 4003})
_ABOUT_KEY = ("auth", "api key", "api_key", "invalid key", "credent", "unauthorized")


class RateLimited(EngineError):
    """HTTP 429: worth another try after ``retry_after`` (or a backoff)."""


class ServerFailed(EngineError):
    """HTTP 5xx: the server failed; another try may pass."""


class ContextTooLong(EngineError):
    """HTTP 400: the prompt does not fit the model's context window. ``prompt_tokens`` and
    ``context_tokens`` are the sizes the server named (None when it did not say)."""

    prompt_tokens: int | None = None
    context_tokens: int | None = None


_CONTEXT_SIZES = re.compile(r"\((\d+) tokens\).*\((\d+) tokens\)")


def _context_overflow(body: Any, message: str, code: str) -> tuple[int | None, int | None] | None:
    """The sizes of a "prompt too long" refusal (llama-server's ``exceed_context_size_error``,
    OpenAI's ``context_length_exceeded``), or None when the body is about something else."""
    inner = body.get("error", body) if isinstance(body, dict) else None
    kind = inner.get("type") if isinstance(inner, dict) else None
    if (
        kind != "exceed_context_size_error"
        and code != "context_length_exceeded"
        and "context size" not in message
        and "context length" not in message
    ):
        return None
    sizes: list[int | None] = [None, None]
    if isinstance(inner, dict):
        for i, key in enumerate(("n_prompt_tokens", "n_ctx")):
            value = inner.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                sizes[i] = value
    if None in sizes and (m := _CONTEXT_SIZES.search(message)):
        sizes = [int(m[1]), int(m[2])]
    return sizes[0], sizes[1]


class Unreachable(EngineUnavailable):
    """No connection could be made (refused, DNS, TLS, timeout) or it broke before an answer."""


@dataclass(frozen=True, slots=True)
class Service:
    """Who failed, as errors name it.

    ``engine`` is the engine name errors carry, ``label`` how messages name the service
    ("AssemblyAI", "OpenAI speech"), ``provider`` whose API key it uses (for "where to set it")."""

    engine: str
    label: str = ""
    provider: str = ""

    @classmethod
    def of(cls, engine: str, label: str = "", provider: str = "") -> Service:
        return cls(engine, label or DISPLAY_NAMES.get(engine, engine), provider or engine)

    def error(
        self,
        text: str,
        *,
        retryable: bool = True,
        retry_after: float | None = None,
        kind: type[EngineError] = EngineError,
    ) -> EngineError:
        """An error whose message is ``label`` followed by ``text``, scrubbed."""
        message = scrub(f"{self.label}{'' if text[:1] in ':,' else ' '}{text}")
        return kind(message, engine=self.engine, retryable=retryable, retry_after=retry_after)

    @property
    def where_to_set(self) -> str:
        """Where the user sets this service's key."""
        env = ENV_VARS.get(self.provider)
        where = f"Settings → API keys → {DISPLAY_NAMES.get(self.provider, self.provider)}"
        return f"{where} or the {env} environment variable" if env else where

    def key_rejected(self, how: str) -> EngineError:
        return self.error(
            f"rejected the API key ({how}). Check it in {self.where_to_set}.", retryable=False
        )


def error_detail(body: Any) -> tuple[str, str, str]:
    """(message, code, param) of an error body in any provider's shape; the text when it is not
    JSON. Never raises, whatever ``body`` holds."""
    if isinstance(body, bytes | bytearray):
        raw = bytes(body[:4000]).decode("utf-8", "replace")
        try:
            body = json.loads(raw)
        except ValueError:
            return scrub(raw.strip())[:300], "", ""
    message = code = param = ""
    if isinstance(body, dict):
        inner: Any = body.get("error", body.get("detail", body))
        if isinstance(inner, dict):
            message = _text(inner.get("message")) or _text(inner.get("status"))
            code, param = _text(inner.get("code")), _text(inner.get("param"))
        elif isinstance(inner, str):
            message = inner
        message = message or _text(body.get("message")) or _text(body.get("err_msg"))
        code = code or _text(body.get("code")) or _text(body.get("err_code"))
    elif isinstance(body, str):
        message = body
    return scrub(message.strip())[:300], code, param


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def http_error(
    service: Service,
    status: int,
    *,
    headers: Any = None,
    body: Any = b"",
    url: str = "",
    model: str = "",
) -> EngineError:
    """The error for an HTTP status refusing a request or a websocket handshake."""
    detail, code, _ = error_detail(body)
    said = f": {detail}" if detail else ""
    if status == 401:
        return service.key_rejected("HTTP 401")
    if status == 403:
        return service.error(
            f"refused access (HTTP 403){said}. Check the API key and its permissions in "
            f"{service.where_to_set}.",
            retryable=False,
        )
    if status == 404:
        where = host_of(url) if url else "the configured URL"
        if model:
            text = f": {where} does not know the model {model!r} or the path (HTTP 404){said}."
            return service.error(
                f"{text} Check the model and the URL in Settings.", retryable=False
            )
        return service.error(
            f": nothing at {where} (HTTP 404){said}. Check the URL in Settings.", retryable=False
        )
    if status == 400 and (sizes := _context_overflow(body, detail, code)) is not None:
        error = service.error(
            f"refused the request: it is longer than the model's context (HTTP 400){said}.",
            retryable=False,
            kind=ContextTooLong,
        )
        if isinstance(error, ContextTooLong):
            error.prompt_tokens, error.context_tokens = sizes
        return error
    if status == 429 and code == "insufficient_quota":
        return service.error(f": the account has no quota left (HTTP 429){said}.", retryable=False)
    if status == 429:
        wait = retry_after(headers)
        hint = f"; retry after {wait:g} s" if wait is not None else ""
        return service.error(
            f"is rate limiting requests (HTTP 429{hint}){said}.",
            retry_after=wait,
            kind=RateLimited,
        )
    if status >= 500:
        return service.error(f"had a server error (HTTP {status}){said}.", kind=ServerFailed)
    return service.error(f"refused the request (HTTP {status}){said}.", retryable=False)


def close_error(service: Service, code: int | None, reason: str = "") -> EngineError:
    """The error for a websocket the server closed (or that broke) while it was still needed."""
    reason = scrub(reason or "").strip()[:200]
    said = f": {reason}" if reason else ""
    about_key = any(word in reason.lower() for word in _ABOUT_KEY)
    if code in KEY_CLOSE_CODES or (code == 1008 and about_key):
        return service.key_rejected(f"close code {code}{said}")
    if code in FATAL_CLOSE_CODES or (code is not None and 3000 <= code < 4000):
        return service.error(f"closed the connection (code {code}{said}).", retryable=False)
    return service.error(f"connection dropped (code {code}{said}).")


def unreachable(service: Service, url: str, exc: BaseException) -> EngineError:
    """The error for a connection that could not be made (refused, DNS, TLS, timeout)."""
    return service.error(
        f"is unreachable: could not reach {host_of(url)} ({describe(exc)}). "
        "Check the network and the URL in Settings.",
        kind=Unreachable,
    )


def invalid_url(service: Service, url: str, expected: str) -> EngineError:
    return service.error(
        f": {host_of(url)!r} is not a valid URL here ({expected}). Check it in Settings.",
        retryable=False,
    )
