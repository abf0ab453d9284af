"""The shared network policy as tables: retry-after, backoff, retry budgets, quick failures,
the error table (HTTP statuses, close codes), and redaction of keys in every spelling."""

from __future__ import annotations

import email.utils
import logging
from typing import Any

import httpx
import pytest

from assistant import secrets
from assistant.engines.base import EngineError
from assistant.engines.net.errors import (
    RateLimited,
    ServerFailed,
    Service,
    Unreachable,
    close_error,
    error_detail,
    http_error,
    unreachable,
)
from assistant.engines.net.redact import describe, scrub, scrubbing_logger
from assistant.engines.net.retry import Backoff, QuickFailures, RetryBudget, retry_after

NOW = 1_800_000_000.0
AAI = Service.of("assemblyai")

# ------------------------------------------------------------------------------- retry-after

RETRY_AFTER = [
    ({"retry-after": "7"}, 7.0),
    ({"Retry-After": "0.3"}, 0.3),
    ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # the finer figure wins
    ({"retry-after-ms": "soon", "retry-after": "2"}, 2.0),
    ({"retry-after": email.utils.formatdate(NOW + 30, usegmt=True)}, 30.0),
    ({"retry-after": email.utils.formatdate(NOW - 30, usegmt=True)}, 0.0),  # already past
    ({"retry-after": "-5"}, 0.0),
    ({"retry-after": "nan"}, None),
    ({"retry-after": "tomorrow"}, None),
    ({"retry-after": ""}, None),
    ({}, None),
    (None, None),
    (httpx.Headers({"Retry-After": "4"}), 4.0),
]


@pytest.mark.parametrize(("headers", "seconds"), RETRY_AFTER)
def test_retry_after(headers: Any, seconds: float | None) -> None:
    found = retry_after(headers, now=lambda: NOW)
    assert found == (pytest.approx(seconds, abs=1.0) if seconds else seconds)


def test_backoff_doubles_with_jitter_up_to_its_cap() -> None:
    backoff = Backoff(base=0.25, cap=1.0)
    for attempt, ceiling in [(1, 0.25), (2, 0.5), (3, 1.0), (9, 1.0)]:
        delays = [backoff.delay(attempt) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered
    assert Backoff(base=0.0).delay(3) == 0.0


# --------------------------------------------------------------------------- retry budgets


def error(kind: type[EngineError] = EngineError, **kw: Any) -> EngineError:
    return kind("failed", **kw)


def test_budget_retries_each_kind_as_allowed() -> None:
    budget = RetryBudget(Backoff(base=0.1, cap=0.1), max_retries=5,
                         limits={RateLimited: 3, ServerFailed: 1})  # fmt: skip
    assert budget.next_delay(error(ServerFailed)) is not None
    assert budget.next_delay(error(ServerFailed)) is None  # once
    assert budget.next_delay(error(Unreachable)) is None  # not named: not retried
    assert budget.next_delay(error(EngineError)) is None
    assert budget.next_delay(error(RateLimited, retryable=False)) is None


def test_budget_honours_retry_after_within_its_patience() -> None:
    budget = RetryBudget(max_retries=3, limits={RateLimited: 3}, max_retry_after=5.0)
    delay = budget.next_delay(error(RateLimited, retry_after=2.0))
    assert delay is not None and 2.0 <= delay <= 2.25
    assert budget.next_delay(error(RateLimited, retry_after=60.0)) is None  # fail at once


def test_budget_stops_at_its_total_wait_and_count() -> None:
    budget = RetryBudget(max_retries=9, limits={RateLimited: 9}, max_wait=3.0)
    assert budget.next_delay(error(RateLimited, retry_after=2.0)) is not None
    assert budget.next_delay(error(RateLimited, retry_after=2.0)) is None  # 4 s > 3 s
    counted = RetryBudget(Backoff(0.01, 0.01), max_retries=2, limits={ServerFailed: 9})
    assert [counted.next_delay(error(ServerFailed)) is not None for _ in range(3)] == [
        True, True, False,
    ]  # fmt: skip


def test_quick_failures_in_a_row_give_up_and_a_stable_connection_resets() -> None:
    quick = QuickFailures(stable_after=5.0, limit=3)
    assert [quick.record(0.1), quick.record(0.2)] == [False, False]
    assert not quick.record(60.0)  # a connection that held
    assert [quick.record(0.1), quick.record(0.1), quick.record(0.1)] == [False, False, True]


# --------------------------------------------------------------------------------- errors

STATUSES = [
    (401, {}, b"", False, None, ["AssemblyAI rejected the API key (HTTP 401)",
                                 "Settings → API keys → AssemblyAI", "ASSEMBLYAI_API_KEY"]),
    (403, {}, b'{"error": "Forbidden"}', False, None, ["refused access (HTTP 403): Forbidden",
                                                       "permissions"]),
    (404, {}, b"", False, None, ["nothing at wss://h/v3/ws (HTTP 404)", "Check the URL"]),
    (429, {"retry-after": "3"}, b"", True, 3.0, ["rate limiting", "HTTP 429; retry after 3 s"]),
    (429, {}, b'{"error": {"code": "insufficient_quota", "message": "Out of quota."}}', False,
     None, ["no quota left (HTTP 429): Out of quota."]),
    (500, {}, b"upstream timeout", True, None, ["server error (HTTP 500): upstream timeout"]),
    (503, {}, b'{"err_msg": "busy"}', True, None, ["server error (HTTP 503): busy"]),
    (400, {}, b'{"detail": {"message": "bad sample rate"}}', False, None,
     ["refused the request (HTTP 400): bad sample rate"]),
]  # fmt: skip


@pytest.mark.parametrize(("status", "headers", "body", "retryable", "wait", "phrases"), STATUSES)
def test_http_statuses(
    status: int, headers: dict[str, str], body: bytes, retryable: bool, wait: float | None,
    phrases: list[str],
) -> None:  # fmt: skip
    found = http_error(AAI, status, headers=headers, body=body, url="wss://h/v3/ws?key=x")
    assert found.retryable is retryable and found.retry_after == wait
    assert found.engine == "assemblyai"
    for phrase in phrases:
        assert phrase in str(found)


def test_404_names_the_model_when_there_is_one() -> None:
    found = http_error(Service.of("openai", "OpenAI speech"), 404, url="https://h/v1/audio/speech",
                       model="tts-9")  # fmt: skip
    assert "does not know the model 'tts-9'" in str(found) and not found.retryable


CLOSES = [
    (1008, "Unauthorized connection: Invalid API key", False, "rejected the API key"),
    (4001, "", False, "rejected the API key (close code 4001)"),
    (1008, "Too many contexts", False, "closed the connection (code 1008: Too many contexts)"),
    (3007, "Input duration violation", False, "closed the connection (code 3007"),
    (1002, "", False, "closed the connection (code 1002)"),
    (1011, "Internal error", True, "connection dropped (code 1011: Internal error)"),
    (1006, "", True, "connection dropped (code 1006)"),
    (1000, "", True, "connection dropped (code 1000)"),
    (1001, "going away", True, "connection dropped"),
    (None, "", True, "connection dropped (code None)"),
]


@pytest.mark.parametrize(("code", "reason", "retryable", "phrase"), CLOSES)
def test_close_codes(code: int | None, reason: str, retryable: bool, phrase: str) -> None:
    found = close_error(AAI, code, reason)
    assert found.retryable is retryable and phrase in str(found)


def test_transport_failures_name_the_url_without_its_query() -> None:
    found = unreachable(
        AAI, "wss://h:8443/v3/ws?token=abc123456", ConnectionRefusedError(111, "Refused")
    )
    assert isinstance(found, Unreachable) and found.retryable
    assert "could not reach wss://h:8443/v3/ws (ConnectionRefusedError: Refused)" in str(found)
    assert "abc123456" not in str(found)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"error": {"message": "m", "code": "c", "param": "voice"}}', ("m", "c", "voice")),
        (
            b'{"code": "model_not_supported", "message": "flat"}',
            ("flat", "model_not_supported", ""),
        ),
        (b'{"error": "plain", "status": "error"}', ("plain", "", "")),
        (b'{"detail": "Not Found"}', ("Not Found", "", "")),
        (b'{"err_code": "INVALID_AUTH"}', ("", "INVALID_AUTH", "")),
        (b"<html>502</html>", ("<html>502</html>", "", "")),
        (b'{"error": {"message": 5}}', ("", "", "")),
        ({"message": "a dict"}, ("a dict", "", "")),
        (None, ("", "", "")),
    ],
)
def test_error_bodies_of_every_provider(body: Any, detail: tuple[str, str, str]) -> None:
    assert error_detail(body) == detail


# ------------------------------------------------------------------------------ redaction


@pytest.fixture
def canary(monkeypatch: pytest.MonkeyPatch) -> str:
    """A key read from the environment with a trailing CR, as a Windows-edited file gives it."""
    key = "canary-9f8e7d6c5b4a"
    monkeypatch.setenv("DEEPGRAM_API_KEY", key + "\r\n")
    monkeypatch.setattr(secrets, "_backend_usable", lambda: False)
    return key


def test_environment_keys_are_stripped(canary: str) -> None:
    assert secrets.get_key("deepgram") == canary
    assert secrets.key_source("deepgram") == "environment"


def test_blank_environment_key_is_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPGRAM_API_KEY", " \r\n")
    monkeypatch.setattr(secrets, "_backend_usable", lambda: False)
    assert secrets.get_key("deepgram") is None
    assert secrets.key_source("deepgram") is None


@pytest.mark.parametrize(
    "spelling",
    [
        "{key}",
        "{key}\r",
        repr("{key}\r"),  # 'canary…\\r', as h11 quotes a refused header value
        "b'Bearer {key}\\r\\n'",
        '"{key}\\r\\n"',  # JSON
    ],
)
def test_every_spelling_of_a_key_is_scrubbed(canary: str, spelling: str) -> None:
    secrets.get_key("deepgram")
    text = f"Illegal header value {spelling.format(key=canary)}"
    assert canary not in scrub(text) and "[redacted]" in scrub(text)


SCRUBBED = [
    ("> Authorization: Bearer sk-live-abcdef123", "> Authorization: Bearer [redacted]"),
    ("> Authorization: Token dg-live-xyz", "> Authorization: Token [redacted]"),
    ("> xi-api-key: el-live-xyz", "> xi-api-key: [redacted]"),
    ("GET /ws?api_key=live-123&version=v1", "GET /ws?api_key=[redacted]&version=v1"),
    ("headers [(b'authorization', b'Bearer zz-top')]",
     "headers [(b'authorization', b'Bearer [redacted]')]"),
    ("{'x-api-key': 'async-live-1'}", "{'x-api-key': '[redacted]'}"),
    ("Incorrect API key provided: sk-proj-abcdef123.", "Incorrect API key provided: [redacted]."),
    ("nothing secret here", "nothing secret here"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "scrubbed"), SCRUBBED)
def test_scrub_patterns(text: str, scrubbed: str) -> None:
    assert scrub(text) == scrubbed


def test_transport_exception_texts_are_scrubbed(canary: str) -> None:
    secrets.get_key("deepgram")
    exc = httpx.LocalProtocolError(f"Illegal header value b'Token {canary}\\r'")
    assert canary not in describe(exc) and describe(exc).startswith("LocalProtocolError: ")


def test_scrubbing_logger_scrubs_messages_and_tracebacks(
    canary: str, caplog: pytest.LogCaptureFixture
) -> None:
    secrets.get_key("deepgram")
    log = scrubbing_logger("tests.net.scrub")
    with caplog.at_level(logging.DEBUG, logger="tests.net.scrub"):
        log.debug("> Authorization: Token %s", canary)
        try:
            raise ValueError(f"bad key {canary!r}")
        except ValueError:
            log.exception("failed")
    assert canary not in caplog.text
    assert "> Authorization: Token [redacted]" in caplog.text and "ValueError" in caplog.text
