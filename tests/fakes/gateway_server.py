"""A local stand-in for AssemblyAI's LLM Gateway (OpenAI-style chat completions), for tests.

``POST /v1/chat/completions`` checks the key in ``Authorization`` (raw, or after ``Bearer``:
the documentation disagrees, so both pass) and the model (a retired one gets the real 400).
Models in ``streaming`` stream OpenAI SSE chunks, split across writes with a keep-alive
comment; for the others a stream request gets the whole completion as JSON (``unstreamed =
"json"``) or a 400 that names streaming (``"refuse"``). Claude models report their own finish
reasons (``tool_use``, ``end_turn``); usage is ``{input_tokens, output_tokens}``; a whole answer
carries its text and its tool calls in separate choices, with the gateway's extra fields. With
``tool_call`` set, a request offering tools (and no result yet) is answered with that call;
with a ``response_format``, the reply is a JSON object. Errors use the flat body
(``{"code","message","request_id"}``), 401 ``{"error","status"}``, 429 the X-RateLimit headers.
``GET /v1/models`` lists the models. Faults: an ``HttpFault`` per request.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any, Literal

from tests.fakes.http_server import (
    Chunked,
    EventStream,
    FakeChatApi,
    HttpFault,
    HttpRequest,
    send_json,
)

MODELS = ("gpt-4.1", "gpt-5.2", "gpt-5-mini", "claude-sonnet-4-6", "claude-haiku-4-5-20251001")
REPLY = "Sure. Here is a short answer through the gateway."


def flat_error(code: str, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "request_id": "req_fake", "metadata": {"errors": []}}


def rate_limited(seconds: float) -> HttpFault:
    limits = {"X-RateLimit-Limit": "30", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "30"}
    headers = {"retry-after": f"{seconds:g}", **limits}
    return HttpFault(429, headers, flat_error("rate_limited", "Too many requests for this model."))


class FakeGateway(FakeChatApi):
    chat_path = "/v1/chat/completions"

    def __init__(self, key: str = "aai-test-key") -> None:
        super().__init__(
            key,
            refusal={"error": "Invalid API key", "status": "error"},
            models={"object": "list", "data": [{"id": m, "object": "model"} for m in MODELS]},
        )
        self.reply = REPLY
        self.streaming: set[str] = {m for m in MODELS if m.startswith("gpt")}
        self.unstreamed: Literal["json", "refuse"] = "json"
        self.tool_call: tuple[str, str] | None = None
        self.word_delay = 0.0
        #: Every Authorization header sent, as sent.
        self.auth_headers: list[str] = []

    @property
    def url(self) -> str:
        return f"{self.base_url}/v1"

    def authorized(self, request: HttpRequest) -> bool:
        sent = request.headers.get("authorization", "")
        self.auth_headers.append(sent)
        return sent.removeprefix("Bearer ") == self.key

    def not_found(self, path: str) -> Any:
        return flat_error("not_found", f"Not found: {path}")

    async def answer(
        self, request: HttpRequest, fault: HttpFault, writer: asyncio.StreamWriter
    ) -> bool:
        body = request.json()
        model = body.get("model")
        if model not in MODELS:
            await send_json(
                writer, 400, flat_error("invalid_model", f"model {model} is not supported")
            )
            return True
        streamed = bool(body.get("stream"))
        if streamed and model not in self.streaming and self.unstreamed == "refuse":
            message = f"Streaming is not supported for model {model}"
            await send_json(writer, 400, flat_error("invalid_request", message))
            return True
        calling = (
            self.tool_call is not None
            and body.get("tools")
            and not any(m.get("role") == "tool" for m in body.get("messages", []))
        )
        reply = self.reply
        if body.get("response_format"):
            reply = json.dumps({"answer": self.reply})
        if streamed and model in self.streaming:
            return await self._stream(body, reply if not calling else "", calling, fault, writer)
        await send_json(writer, 200, self._whole(body, reply, calling))
        return True

    def _whole(self, body: dict[str, Any], reply: str, calling: bool) -> dict[str, Any]:
        claude = str(body["model"]).startswith("claude")
        choices: list[dict[str, Any]] = []
        if calling:
            assert self.tool_call is not None
            name, arguments = self.tool_call
            text = {"role": "assistant", "content": "Let me check."}
            call = {
                "id": "call_fake1",
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
            finish = "tool_use" if claude else "tool_calls"
            calls = {"role": "assistant", "content": None, "tool_calls": [call]}
            choices = [
                {"index": 0, "message": text, "finish_reason": finish},
                {"index": 1, "message": calls, "finish_reason": finish},
            ]
        else:
            message = {"role": "assistant", "content": reply}
            choices = [
                {"index": 0, "message": message, "finish_reason": "end_turn" if claude else "stop"}
            ]
        return {
            "request_id": "req_fake",
            "choices": choices,
            "request": {"model": body["model"]},
            "http_status_code": 200,
            "response_time": 412,
            "llm_status_code": 200,
            "usage": {"input_tokens": 22, "output_tokens": 11, "total_tokens": 33},
        }

    async def _stream(
        self,
        body: dict[str, Any],
        reply: str,
        calling: bool,
        fault: HttpFault,
        writer: asyncio.StreamWriter,
    ) -> bool:
        out = Chunked(writer)
        await out.start("text/event-stream")
        stream = EventStream(out, fault)

        async def chunk(delta: dict[str, Any], finish: str | None = None) -> bool:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            event = {"id": "chatcmpl-gw", "object": "chat.completion.chunk", "choices": [choice]}
            return await stream.send(f"data: {json.dumps(event)}\n\n".encode())

        await out.send(b": keep-alive\n\n")
        if not await chunk({"role": "assistant", "content": ""}):
            return False
        if calling:
            assert self.tool_call is not None
            name, arguments = self.tool_call
            first = {
                "index": 0,
                "id": "call_fake1",
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
            if not await chunk({"tool_calls": [first]}):
                return False
            half = len(arguments) // 2
            for part in (arguments[:half], arguments[half:]):
                if not await chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}):
                    return False
            finish = "tool_calls"
        else:
            for word in re.findall(r"\s*\S+", reply):
                if self.word_delay:
                    await asyncio.sleep(self.word_delay)
                if not await chunk({"content": word}):
                    return False
            finish = "stop"
        if not await chunk({}, finish):
            return False
        counts = {"input_tokens": 22, "output_tokens": 11, "total_tokens": 33}
        usage = {
            "id": "chatcmpl-gw",
            "object": "chat.completion.chunk",
            "choices": [],
            "usage": counts,
        }
        await out.send(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
        await out.end()
        return True
