"""Claude and AssemblyAI's LLM Gateway against their fakes: each provider's own behaviour beyond
the shared faults (which ``tests/conformance`` runs)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from assistant import secrets
from assistant.config import Settings
from assistant.engines.assemblyai_gateway import make_llm as make_gateway
from assistant.engines.base import (
    ChatRequest,
    EngineError,
    Finished,
    Message,
    TextDelta,
    ToolCallDelta,
    ToolSpec,
)
from assistant.engines.claude import ClaudeLLM
from assistant.engines.net.errors import ServerFailed
from assistant.engines.openai.chat import assemble_tool_calls
from tests.fakes.anthropic_server import OVERLOADED, FakeAnthropic
from tests.fakes.gateway_server import FakeGateway

pytestmark = pytest.mark.timeout(60)
CALC = ToolSpec("calculate", "Arithmetic.", {"type": "object", "properties": {}})
HELLO = ChatRequest([Message("system", "Be brief."), Message("user", "Hi")])


@pytest.fixture(autouse=True)
def no_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets, "_backend_usable", lambda: False)


@pytest.fixture
async def claude(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic(key="sk-ant-canary-0123456789") as fake:
        monkeypatch.setenv("ANTHROPIC_API_KEY", fake.key)
        yield fake


@pytest.fixture
async def gateway(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeGateway]:
    async with FakeGateway(key="aai-canary-0123456789") as fake:
        monkeypatch.setenv("ASSEMBLYAI_API_KEY", fake.key)
        monkeypatch.setenv("PARLEY_ASSEMBLYAI_GATEWAY_URL", fake.url)
        yield fake


async def events(llm: Any, request: ChatRequest = HELLO) -> list[Any]:
    return [event async for event in llm.stream(request)]


def text(found: list[Any]) -> str:
    return "".join(e.text for e in found if isinstance(e, TextDelta))


async def test_claude_streams_split_events_and_utf8_and_calls_tools(claude: FakeAnthropic) -> None:
    llm = ClaudeLLM(claude.url)
    try:
        found = await events(llm)
        assert text(found) == claude.reply and found[-2] == Finished("stop")
        claude.tool_call = ("calculate", '{"expression": "17 * 23"}')
        found = await events(llm, ChatRequest([Message("user", "17 times 23?")], tools=[CALC]))
        (call,) = assemble_tool_calls(found)
        assert (call.id, call.name, call.arguments) == (
            "toolu_fake1",
            "calculate",
            '{"expression": "17 * 23"}',
        )
        assert Finished("tool_calls") in found
        assert all(isinstance(e, TextDelta | ToolCallDelta) for e in found[:-2])
    finally:
        await llm.aclose()
    body = claude.chat_requests[0]
    assert body["system"] == "Be brief." and body["stream"] is True


async def test_claude_errors_after_the_answer_started_and_overload(claude: FakeAnthropic) -> None:
    llm = ClaudeLLM(claude.url)
    try:
        claude.error_after_start = "overloaded_error"
        with pytest.raises(ServerFailed, match="overloaded and stopped mid-answer") as caught:
            await events(llm)
        assert caught.value.retryable
        claude.faults.append(OVERLOADED)
        with pytest.raises(ServerFailed, match=r"overloaded \(HTTP 529\)"):
            await events(llm)
        assert text(await events(llm)) == claude.reply  # and the next answer goes through
    finally:
        await llm.aclose()


async def test_claude_warm_up_opens_the_connection_and_reports_a_rejected_key(
    claude: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    llm = ClaudeLLM(claude.url)
    try:
        await llm.warm_up()
        assert claude.model_requests == 1
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-wrong-0123456789")
        with pytest.raises(EngineError, match="rejected the API key") as caught:
            await llm.warm_up()
        assert "ANTHROPIC_API_KEY" in str(caught.value) and claude.key not in str(caught.value)
    finally:
        await llm.aclose()


async def test_the_gateway_streams_what_it_streams_and_answers_the_rest_whole(
    gateway: FakeGateway,
) -> None:
    settings = Settings()
    llm = make_gateway(settings)
    try:
        assert text(await events(llm)) == gateway.reply  # gpt-4.1 streams
    finally:
        await llm.aclose()
    assert gateway.auth_headers == [gateway.key]  # the raw key, no "Bearer"
    for refusal in ("json", "refuse"):
        gateway.unstreamed = refusal  # type: ignore[assignment]
        gateway.chat_requests.clear()
        settings.providers["assemblyai_gateway"] = type(settings.provider("x"))(
            model="claude-sonnet-4-6"
        )
        llm = make_gateway(settings)
        try:
            gateway.tool_call = ("calculate", '{"expression": "2"}')
            found = await events(llm, ChatRequest([Message("user", "2?")], tools=[CALC]))
            assert text(found) == "Let me check." and Finished("tool_calls") in found
            assert [c.name for c in assemble_tool_calls(found)] == ["calculate"]
            gateway.tool_call = None
            assert text(await events(llm)) == gateway.reply
        finally:
            await llm.aclose()
        streamed = [r.get("stream") for r in gateway.chat_requests]
        # Asked to stream once; from then on the model is asked for whole answers.
        assert streamed == ([True, None] if refusal == "json" else [True, None, None])


async def test_the_gateway_passes_the_response_format(gateway: FakeGateway) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}}}
    llm = make_gateway(Settings())
    try:
        found = await events(llm, ChatRequest([Message("user", "Hi")], response_format=fmt))
    finally:
        await llm.aclose()
    assert text(found).startswith('{"answer"')
    assert gateway.chat_requests[0]["response_format"] == fmt
