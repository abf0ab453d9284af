"""Fixtures of the provider conformance suite: every adapter, its fake server holding a canary
key, recorded policy waits, and a check that the key reached no log record."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from assistant import secrets
from tests.conformance.adapters import ADAPTERS, Sleeps
from tests.fakes.openai_server import FakeOpenAIServer


@pytest.fixture(params=ADAPTERS, ids=[a.name.replace(" ", "-") for a in ADAPTERS])
def adapter(request: pytest.FixtureRequest) -> Any:
    return request.param(Sleeps())


@pytest.fixture
def canary() -> str:
    return f"canary-{uuid.uuid4().hex}"


@pytest.fixture
async def fake(adapter: Any, canary: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    monkeypatch.setattr(secrets, "_backend_usable", lambda: False)  # never the real keyring
    monkeypatch.setenv(adapter.env, canary)
    async with adapter.serve(canary) as served:
        if isinstance(served, FakeOpenAIServer):
            monkeypatch.setenv("PARLEY_OPENAI_BASE_URL", served.http_url)
        yield served


@pytest.fixture(autouse=True)
def no_key_in_any_log(caplog: pytest.LogCaptureFixture, canary: str) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    assert canary not in caplog.text
    assert all(canary not in record.getMessage() for record in caplog.records)
