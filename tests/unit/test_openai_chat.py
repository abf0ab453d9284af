"""OpenAIChatLLM against a fake Chat Completions server on 127.0.0.1 speaking real SSE."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from assistant.engines.base import (
    ChatRequest,
    EngineError,
    Finished,
    LanguageModel,
    LLMEvent,
    Message,
    TextDelta,
    ToolCallDelta,
    ToolSpec,
    Usage,
)
from assistant.engines.openai.chat import OpenAIChatLLM, assemble_tool_calls
from tests.fakes.local import port_of

API_KEY = "sk-test-SECRET-0123456789abcdef"

Handler = Callable[[asyncio.StreamWriter], Coroutine[Any, Any, None]]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeServer:
    """Answers each POST with the next scripted handler; records what it received."""

    handlers: list[Handler] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            raw = await reader.readexactly(int(headers.get("content-length", "0")))
            self.received.append(Received(path, headers, json.loads(raw or b"{}")))
            reply = asyncio.create_task(self.handlers.pop(0)(writer))
            # Read until the client goes away: only the client's close ends a connection.
            await reader.read()
            reply.cancel()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.disconnected.set()
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    fake = FakeServer()
    srv = await asyncio.start_server(fake.serve, "127.0.0.1", 0)
    fake.port = port_of(srv)
    async with srv:
        yield fake
        srv.close()


def llm_for(server: FakeServer, **kw: Any) -> OpenAIChatLLM:
    return OpenAIChatLLM(server.base_url, API_KEY, "test-model", name="fake", **kw)


SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Connection: close\r\n\r\n"
)


DONE = b"data: [DONE]\n\n"
#: How long a wait may take before it is called a hang (never the thing a test asserts).
PATIENCE = 20.0


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "test-model",
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}],
    }


def event(data: dict[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data)
    return f"data: {text}\n\n".encode()


async def write_split(writer: asyncio.StreamWriter, payload: bytes, piece: int = 7) -> None:
    """Send in small TCP writes so events arrive split across reads."""
    for i in range(0, len(payload), piece):
        writer.write(payload[i : i + piece])
        await writer.drain()
        await asyncio.sleep(0.001)


def sse(*events: bytes, split: int = 0) -> Handler:
    async def handle(writer: asyncio.StreamWriter) -> None:
        writer.write(SSE_HEAD)
        for ev in events:
            if split:
                await write_split(writer, ev, split)
            else:
                writer.write(ev)
                await writer.drain()
        writer.close()

    return handle


def error_reply(status: int, reason: str, body: dict[str, Any], extra: str = "") -> Handler:
    async def handle(writer: asyncio.StreamWriter) -> None:
        data = json.dumps(body).encode()
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
            + data
        )
        await writer.drain()
        writer.close()

    return handle


async def collect(llm: LanguageModel, request: ChatRequest) -> list[LLMEvent]:
    return [e async for e in llm.stream(request)]


HELLO = ChatRequest(messages=[Message("system", "Be brief."), Message("user", "Hi")])


async def test_streams_text_usage_and_finish_across_split_writes(server: FakeServer) -> None:
    words = ["Hel", "lo", " there", ", ", "how can I help?"]
    usage = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "test-model",
        "choices": [],
        "usage": {
            "prompt_tokens": 21,
            "completion_tokens": 5,
            "total_tokens": 26,
            "prompt_tokens_details": {"cached_tokens": 16},
        },
    }
    server.handlers.append(
        sse(
            b": keep-alive\n\n",
            event(chunk({"role": "assistant", "content": ""})),
            *[event(chunk({"content": w})) for w in words[:2]],
            b": keep-alive\n\n",
            *[event(chunk({"content": w})) for w in words[2:]],
            event(chunk({}, finish="stop")),
            event(usage),
            b"data: [DONE]\n\n",
            split=5,
        )
    )
    llm = llm_for(server)
    request = ChatRequest(
        messages=HELLO.messages,
        tools=[ToolSpec("get_time", "Current time", {"type": "object", "properties": {}})],
        response_format={"type": "json_object"},
        max_tokens=64,
        temperature=0.2,
    )
    events = await collect(llm, request)

    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == "".join(words)
    assert [e for e in events if isinstance(e, Finished)] == [Finished("stop")]
    assert [e for e in events if isinstance(e, Usage)] == [Usage(21, 5, 16)]

    sent = server.received[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.body["model"] == "test-model"
    assert sent.body["stream"] is True
    assert sent.body["stream_options"] == {"include_usage": True}
    assert sent.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    assert sent.body["tools"][0]["function"]["name"] == "get_time"
    assert sent.body["response_format"] == {"type": "json_object"}
    assert sent.body["max_tokens"] == 64
    assert sent.body["temperature"] == 0.2


async def test_plain_text_fields_go_only_with_a_plain_text_request(server: FakeServer) -> None:
    answer = sse(event(chunk({"content": "Paris."})), event(chunk({}, finish="stop")), DONE)
    server.handlers += [answer, answer]
    llm = llm_for(server, extra_body={"top_k": 1}, plain_text_body={"grammar": "root ::= [^{]*"})
    await collect(llm, HELLO)
    await collect(llm, replace(HELLO, plain_text=True))
    free, plain = (r.body for r in server.received)
    assert free["top_k"] == 1 and "grammar" not in free
    assert plain["top_k"] == 1 and plain["grammar"] == "root ::= [^{]*"


async def test_tool_call_fragments_over_two_indexes(server: FakeServer) -> None:
    def tc(index: int, **fields: Any) -> dict[str, Any]:
        if "id" in fields:
            fields["type"] = "function"
        return chunk({"tool_calls": [{"index": index, **fields}]})

    server.handlers.append(
        sse(
            event(chunk({"role": "assistant"})),
            event(tc(0, id="call_a", function={"name": "get_weather", "arguments": ""})),
            event(tc(0, function={"arguments": '{"city": '})),
            event(tc(1, id="call_b", function={"name": "get_time", "arguments": '{"tz"'})),
            event(tc(0, function={"arguments": '"Paris"}'})),
            event(tc(1, function={"arguments": ': "UTC"}'})),
            event(chunk({}, finish="tool_calls")),
            b"data: [DONE]\n\n",
            split=11,
        )
    )
    events = await collect(llm_for(server), HELLO)

    fragments = [e for e in events if isinstance(e, ToolCallDelta)]
    assert len(fragments) == 5
    assert fragments[0] == ToolCallDelta(index=0, id="call_a", name="get_weather", arguments="")
    assert fragments[1] == ToolCallDelta(index=0, arguments='{"city": ')
    assert events[-1] == Finished("tool_calls")

    calls = assemble_tool_calls(events)
    assert [(c.id, c.name) for c in calls] == [("call_a", "get_weather"), ("call_b", "get_time")]
    assert json.loads(calls[0].arguments) == {"city": "Paris"}
    assert json.loads(calls[1].arguments) == {"tz": "UTC"}


def test_assemble_tool_calls_orders_by_index_and_fills_missing_ids() -> None:
    deltas: list[LLMEvent] = [
        ToolCallDelta(index=2, name="b", arguments="{}"),
        TextDelta("ignored"),
        ToolCallDelta(index=0, id="x", name="a", arguments='{"n":'),
        ToolCallDelta(index=0, arguments="1}"),
    ]
    calls = assemble_tool_calls(deltas)
    assert [(c.id, c.name, c.arguments) for c in calls] == [
        ("x", "a", '{"n":1}'),
        ("call_2", "b", "{}"),
    ]


async def test_401_says_key_rejected_without_leaking_it(server: FakeServer) -> None:
    server.handlers.append(
        error_reply(
            401,
            "Unauthorized",
            {
                "error": {
                    "message": f"Incorrect API key provided: {API_KEY}.",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                    "param": None,
                }
            },
        )
    )
    with pytest.raises(EngineError) as info:
        await collect(llm_for(server), HELLO)
    err = info.value
    assert "rejected the API key" in str(err)
    assert err.retryable is False
    assert err.engine == "fake"
    assert API_KEY not in str(err) and "SECRET" not in repr(err)


async def test_error_detail_from_server_is_scrubbed_of_keys(server: FakeServer) -> None:
    server.handlers.append(
        error_reply(400, "Bad Request", {"error": {"message": f"bad request for key {API_KEY}"}})
    )
    with pytest.raises(EngineError) as info:
        await collect(llm_for(server), HELLO)
    assert "bad request for key" in str(info.value)
    assert "SECRET" not in str(info.value)
    assert info.value.retryable is False


async def test_stall_before_first_byte_times_out(server: FakeServer) -> None:
    async def stall(writer: asyncio.StreamWriter) -> None:
        await asyncio.Event().wait()  # never a byte

    server.handlers.append(stall)
    with pytest.raises(EngineError) as info:
        # Only the first-token deadline can end this (the safety net only catches a hang).
        await asyncio.wait_for(collect(llm_for(server, timeout_first_token=0.4), HELLO), PATIENCE)
    assert "no answer" in str(info.value) and "within 0.4 s" in str(info.value)
    assert info.value.retryable is True
    # The abandoned request's connection is closed, not left hanging.
    await asyncio.wait_for(server.disconnected.wait(), PATIENCE)


async def test_malformed_chunk_is_an_engine_error(server: FakeServer) -> None:
    server.handlers.append(
        sse(event(chunk({"content": "ok"})), b'data: {"choices": [{"delta": {"content\n\n')
    )
    with pytest.raises(EngineError) as info:
        await collect(llm_for(server), HELLO)
    assert "malformed" in str(info.value)


async def test_error_event_inside_the_stream(server: FakeServer) -> None:
    server.handlers.append(
        sse(event(chunk({"content": "par"})), event({"error": {"message": "model crashed"}}))
    )
    with pytest.raises(EngineError) as info:
        await collect(llm_for(server), HELLO)
    assert "model crashed" in str(info.value)


async def test_stream_cut_before_finish_is_an_error(server: FakeServer) -> None:
    server.handlers.append(sse(event(chunk({"content": "Half an"}))))
    with pytest.raises(EngineError) as info:
        await collect(llm_for(server), HELLO)
    assert "ended before it was complete" in str(info.value)


async def test_an_answer_of_the_wrong_type_is_an_error_not_silence(server: FakeServer) -> None:
    server.handlers.append(
        sse(event(chunk({"content": 5})), event(chunk({}, finish="stop")), b"data: [DONE]\n\n")
    )
    with pytest.raises(EngineError) as info:
        await collect(llm_for(server), HELLO)
    assert "sent an answer Parley cannot read (text that is not a string)" in str(info.value)


async def test_unreachable_server_names_the_url() -> None:
    # A port that was just free: nothing listens there.
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = port_of(probe)
    probe.close()
    await probe.wait_closed()
    llm = OpenAIChatLLM(f"http://127.0.0.1:{port}/v1", None, "m", name="fake")
    with pytest.raises(EngineError) as info:
        await collect(llm, HELLO)
    assert f"could not reach http://127.0.0.1:{port}/v1" in str(info.value)
    assert info.value.retryable is True


async def endless(writer: asyncio.StreamWriter) -> None:
    """An answer that never ends: a number every 20 ms."""
    writer.write(SSE_HEAD)
    for i in range(1000):
        writer.write(event(chunk({"content": f"{i} "})))
        await writer.drain()
        await asyncio.sleep(0.02)


async def test_stopping_early_closes_the_http_stream(server: FakeServer) -> None:
    server.handlers.append(endless)
    gen = llm_for(server).stream(HELLO)
    first = await anext(gen)
    assert first == TextDelta("0 ")
    await gen.aclose()  # type: ignore[attr-defined]
    # The server keeps the connection until the client closes it: only the client ends this.
    await asyncio.wait_for(server.disconnected.wait(), PATIENCE)


async def test_cancelling_the_consumer_closes_the_http_stream(server: FakeServer) -> None:
    server.handlers.append(endless)
    streaming = asyncio.Event()

    async def consume() -> None:
        async for _ in llm_for(server).stream(HELLO):
            streaming.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(streaming.wait(), PATIENCE)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(server.disconnected.wait(), PATIENCE)


def test_satisfies_the_language_model_protocol() -> None:
    llm = OpenAIChatLLM("http://127.0.0.1:9/v1", None, "m")
    assert isinstance(llm, LanguageModel)
    assert llm.name == "openai"
