"""A local stand-in for Anthropic's Messages API, for tests.

``POST /v1/messages`` streams the scripted ``reply`` as the real service does: ``event:`` and
``data:`` lines, a ``ping`` after the first block starts, every event split across two TCP
writes, a UTF-8 character cut in two, trailing spaces after the JSON, cumulative usage in
``message_delta``. With ``tool_call`` set, a request offering tools (and carrying no result yet)
is answered with a text block and then a ``tool_use`` block whose arguments arrive as an empty
first ``input_json_delta`` and fragments split mid-token. It checks what the real service
checks: the key (``x-api-key`` or ``Authorization: Bearer``), ``anthropic-version``, the
required fields, alternating roles, and tool results leading the user turn after a tool call.
``GET /v1/models`` answers the warm-up. Faults: an ``HttpFault`` per request (429 with
``retry-after`` and rate-limit headers, 529, stalls, hang-ups, a stream cut after N events) and
``error_after_start`` (an ``error`` event after the 200).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from tests.fakes.http_server import (
    Chunked,
    EventStream,
    FakeChatApi,
    HttpFault,
    HttpRequest,
    send_json,
)

REPLY = "Sure. Here is a short answer from Claude, served café-fresh."
RATE_LIMIT_HEADERS = {
    "anthropic-ratelimit-requests-limit": "50",
    "anthropic-ratelimit-requests-remaining": "0",
    "anthropic-ratelimit-requests-reset": "2026-08-01T12:00:30Z",
}


MODEL = {"type": "model", "id": "claude-haiku-4-5", "display_name": "Claude Haiku 4.5"}
MODELS = {"data": [MODEL], "has_more": False, "first_id": MODEL["id"]}


def error_body(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fake"}


def rate_limited(seconds: float) -> HttpFault:
    headers = {"retry-after": f"{seconds:g}", **RATE_LIMIT_HEADERS}
    return HttpFault(
        429,
        headers,
        error_body("rate_limit_error", "Number of requests has exceeded your rate limit."),
    )


OVERLOADED = HttpFault(529, {}, error_body("overloaded_error", "Overloaded"))


class FakeAnthropic(FakeChatApi):
    chat_path = "/v1/messages"

    def __init__(self, key: str = "sk-ant-test") -> None:
        super().__init__(
            key, refusal=error_body("authentication_error", "invalid x-api-key"), models=MODELS
        )
        self.reply = REPLY
        #: (name, JSON arguments) a request offering tools is answered with (until a result).
        self.tool_call: tuple[str, str] | None = None
        #: The error event type sent right after ``message_start`` of the next answer.
        self.error_after_start: str | None = None
        self.word_delay = 0.0

    @property
    def url(self) -> str:
        return self.base_url  # the SDK adds /v1 itself

    def authorized(self, request: HttpRequest) -> bool:
        sent = request.headers.get("x-api-key") or request.headers.get(
            "authorization", ""
        ).removeprefix("Bearer ")
        return sent == self.key

    def not_found(self, path: str) -> Any:
        return error_body("not_found_error", f"Not found: {path}")

    async def answer(
        self, request: HttpRequest, fault: HttpFault, writer: asyncio.StreamWriter
    ) -> bool:
        body = request.json()
        problem = _invalid(body, request.headers)
        if problem is not None:
            await send_json(writer, 400, error_body("invalid_request_error", problem))
            return True
        return await self._stream(body, fault, writer)

    async def _stream(
        self, body: dict[str, Any], fault: HttpFault, writer: asyncio.StreamWriter
    ) -> bool:
        out = Chunked(writer)
        await out.start("text/event-stream", {"request-id": "req_fake", **RATE_LIMIT_HEADERS})
        stream = EventStream(out, fault)

        async def event(name: str, data: dict[str, Any]) -> bool:
            """Send one event in two writes (the second cuts a UTF-8 character when it can);
            False when the fault says the stream ends here."""
            payload = json.dumps({**data, "type": name}, ensure_ascii=False)
            raw = f"event: {name}\ndata: {payload}  \n\n".encode()
            cut = next((i + 1 for i, b in enumerate(raw) if b >= 0xC0), len(raw) // 2)
            return await stream.send(raw, cut)

        usage = {"input_tokens": 25, "output_tokens": 1, "cache_read_input_tokens": 0}
        message = {"id": "msg_fake", "type": "message", "role": "assistant", "content": [],
                   "model": body.get("model"), "stop_reason": None, "usage": usage}  # fmt: skip
        if not await event("message_start", {"message": message}):
            return False
        if self.error_after_start is not None:
            kind, self.error_after_start = self.error_after_start, None
            await event("error", {"error": {"type": kind, "message": "Overloaded"}})
            await out.end()
            return True
        calling = self.tool_call is not None and body.get("tools") and not _has_result(body)
        text = "Let me check." if calling else self.reply
        if not await event(
            "content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}
        ):
            return False
        if not await event("ping", {}):
            return False
        for word in re.findall(r"\s*\S+", text):
            if self.word_delay:
                await asyncio.sleep(self.word_delay)
            if not await event(
                "content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": word}}
            ):
                return False
        if not await event("content_block_stop", {"index": 0}):
            return False
        stop = "end_turn"
        if calling:
            assert self.tool_call is not None
            name, arguments = self.tool_call
            block = {"type": "tool_use", "id": "toolu_fake1", "name": name, "input": {}}
            if not await event("content_block_start", {"index": 1, "content_block": block}):
                return False
            third = max(1, len(arguments) // 3)
            for part in (
                "",
                arguments[:third],
                arguments[third : 2 * third],
                arguments[2 * third :],
            ):
                delta = {"type": "input_json_delta", "partial_json": part}
                if not await event("content_block_delta", {"index": 1, "delta": delta}):
                    return False
            if not await event("content_block_stop", {"index": 1}):
                return False
            stop = "tool_use"
        delta = {
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": 12},
        }
        if not await event("message_delta", delta) or not await event("message_stop", {}):
            return False
        await out.end()
        return True


def _has_result(body: dict[str, Any]) -> bool:
    return any(
        isinstance(m.get("content"), list)
        and any(b.get("type") == "tool_result" for b in m["content"])
        for m in body.get("messages", [])
    )


def _invalid(body: dict[str, Any], headers: dict[str, str]) -> str | None:
    """What the real service would refuse in this request (None: nothing)."""
    if "anthropic-version" not in headers:
        return "anthropic-version: header is required"
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            return f"{name}: Field required"
    messages = body["messages"]
    if not messages or messages[0].get("role") != "user":
        return "messages: the first message must use the user role"
    for i, message in enumerate(messages):
        if message.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        if i and message["role"] == messages[i - 1]["role"]:
            return f"messages.{i}: roles must alternate between user and assistant"
        content = message.get("content")
        blocks = content if isinstance(content, list) else [{"type": "text", "text": content}]
        if any(b.get("type") == "text" and not str(b.get("text", "")).strip() for b in blocks):
            return f"messages.{i}: text content blocks must be non-empty"
        uses = [b for b in blocks if b.get("type") == "tool_use"]
        if uses:
            if not body.get("tools"):
                return (
                    "Requests which include `tool_use` or `tool_result` blocks must define tools."
                )
            following = messages[i + 1] if i + 1 < len(messages) else None
            results = following.get("content") if following else None
            leading = results[: len(uses)] if isinstance(results, list) else []
            if following is not None and (
                [b.get("type") for b in leading] != ["tool_result"] * len(uses)
                or {b.get("tool_use_id") for b in leading} != {u["id"] for u in uses}
            ):
                return (
                    f"messages.{i + 1}: Did not find {len(uses)} `tool_result` block(s) at the "
                    "beginning of this message."
                )
    return None
