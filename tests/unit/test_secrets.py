"""Reading API keys from the keyring: never on the event loop, one read at a time, and a locked,
failing or silent keyring told apart from a key that is not set."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from assistant import secrets
from assistant.config import Settings
from assistant.engines.base import (
    ChatRequest,
    KeyUnreadableError,
    LanguageModel,
    Message,
    MissingKeyError,
)
from tests.fakes.keyrings import BrokenKeyring, LockedKeyring, MemoryKeyring, SlowKeyring, installed

KEY = "sk-keyring-0123456789abcdef"
STORED = {(secrets.SERVICE, "openai"): KEY}


@pytest.fixture(autouse=True)
def no_environment_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in secrets.ENV_VARS.values():
        monkeypatch.delenv(var, raising=False)


def test_a_locked_keyring_is_not_a_missing_key() -> None:
    with installed(LockedKeyring(STORED)) as backend:
        with pytest.raises(secrets.KeyringProblem, match="locked"):
            secrets.get_key("openai")
        with pytest.raises(KeyUnreadableError) as info:
            secrets.require_key("openai")
        message = str(info.value)
        assert not isinstance(info.value, MissingKeyError) and "no API key" not in message
        assert message.startswith("OpenAI: the system keyring is locked")
        assert "OPENAI_API_KEY" in message and "\n" not in message
        assert info.value.retryable is False and info.value.engine == "OpenAI"
        assert secrets.key_state("openai") == "unreadable"
        assert secrets.key_problem("openai") == "the system keyring is locked"
        backend.unlock()  # a failure is not remembered: the next read asks again
        assert secrets.require_key("openai") == KEY
        assert secrets.key_state("openai") == "keyring"


def test_a_failing_keyring_says_so() -> None:
    with installed(BrokenKeyring(STORED)):
        with pytest.raises(KeyUnreadableError, match=r"keyring failed \(KeyringError\)"):
            secrets.require_key("openai")


def test_a_key_that_is_not_stored_is_missing() -> None:
    with installed(MemoryKeyring()):
        with pytest.raises(MissingKeyError, match="OpenAI: no API key"):
            secrets.require_key("openai")
        assert secrets.key_state("openai") == "none"


async def test_a_slow_keyring_never_blocks_the_loop_and_is_read_once() -> None:
    with installed(SlowKeyring(STORED, delay=None)) as backend:
        assert secrets.key_state("openai") == "unknown"
        readers = [asyncio.create_task(secrets.arequire_key("openai")) for _ in range(5)]
        for _ in range(20):
            await asyncio.sleep(0)  # the loop runs on while the keyring has not answered
        assert not any(r.done() for r in readers)
        backend.release()
        assert await asyncio.gather(*readers) == [KEY] * 5
        assert backend.reads == 1  # five callers, one read
        assert await secrets.aget_key("openai") == KEY and backend.reads == 1  # remembered


async def test_a_keyring_that_never_answers_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(secrets, "KEYRING_TIMEOUT", 0.2)
    with installed(SlowKeyring(STORED, delay=None)):
        with pytest.raises(KeyUnreadableError) as info:
            await secrets.arequire_key("openai")
        assert "did not answer within 0.2 s (it may be waiting to be unlocked)" in str(info.value)


def test_storing_and_removing_keep_what_is_known_right() -> None:
    with installed(MemoryKeyring()) as backend:
        assert secrets.get_key("openai") is None
        secrets.set_key("openai", f"  {KEY}\r\n")
        assert backend.store[(secrets.SERVICE, "openai")] == KEY
        assert secrets.key_state("openai") == "keyring" and secrets.get_key("openai") == KEY
        secrets.delete_key("openai")
        assert secrets.key_state("openai") == "none" and secrets.get_key("openai") is None


def test_the_environment_wins_without_asking_the_keyring(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment\r")
    with installed(LockedKeyring(STORED)) as backend:
        assert secrets.require_key("openai") == "sk-from-the-environment"
        assert secrets.key_state("openai") == "environment"
        assert backend.reads == 0


def _claude() -> Any:
    from assistant.engines.claude import ClaudeLLM

    return ClaudeLLM("http://127.0.0.1:9/")


def _realtime() -> Any:
    from assistant.engines.openai.agent import make_s2s

    return make_s2s(Settings())


def _voice_agent() -> Any:
    from assistant.engines.assemblyai_agent import make_s2s

    return make_s2s(Settings())


KEYED_ENGINES = [_claude, _realtime, _voice_agent]


@pytest.mark.parametrize("make", KEYED_ENGINES, ids=["claude", "realtime", "voice-agent"])
async def test_engines_warm_up_without_blocking_the_loop_on_the_keyring(make: Any) -> None:
    engine = make()
    with installed(SlowKeyring({}, delay=None)) as backend:
        warming = asyncio.create_task(engine.warm_up())
        for _ in range(20):
            await asyncio.sleep(0)  # the loop runs on while the keyring has not answered
        assert not warming.done()
        backend.release()
        with contextlib.suppress(MissingKeyError):  # no key stored: said now or at first use
            await warming
    await engine.aclose()


@pytest.mark.parametrize("make", KEYED_ENGINES, ids=["claude", "realtime", "voice-agent"])
async def test_engines_tell_a_locked_keyring_from_a_missing_key(make: Any) -> None:
    engine = make()
    with installed(LockedKeyring({})):
        try:
            await engine.warm_up()  # quiet, or the reason as an engine error
        except KeyUnreadableError as error:
            assert "the system keyring is locked" in str(error)
        if isinstance(engine, LanguageModel):
            request = ChatRequest([Message("user", "hello")])
            with pytest.raises(KeyUnreadableError, match="the system keyring is locked"):
                await anext(aiter(engine.stream(request)))
    await engine.aclose()
