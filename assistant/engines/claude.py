"""Anthropic's Claude as a ``LanguageModel``: the Messages API, streamed, through the official SDK.

Wire rules (``to_claude``, ``ClaudeEvents``; no I/O):

- System messages go to ``system`` (joined); the turns alternate user/assistant, so neighbours
  of one role are merged. An assistant's tool calls become ``tool_use`` blocks (their arguments
  parsed; an empty or broken text is ``{}``), and tool results a user turn that *starts* with one
  ``tool_result`` block per call, as the API demands. Empty text blocks are left out (the API
  refuses them). ``max_tokens`` is required (``DEFAULT_MAX_TOKENS``); ``temperature`` is clamped
  to [0, 1]. A ``response_format`` has no Messages API field: its schema becomes an instruction.
- Stream events: ``text_delta`` → ``TextDelta``; a ``tool_use`` block start → ``ToolCallDelta``
  with its id and name, each ``input_json_delta`` (often ``""`` first, split mid-token) → more
  arguments, and a block that got none → ``{}``; ``message_delta``'s usage replaces the counts
  (it is cumulative); its ``stop_reason`` → ``Finished`` (``end_turn`` → ``stop``,
  ``max_tokens`` → ``length``, ``tool_use`` → ``tool_calls``, ``refusal`` → ``content_filter``).
  ``ping`` and unknown events are skipped. Every reader is total.

Failures go through the shared table (``net.errors``): 401/403 name where to set the key, 429
carries ``retry-after`` (a spending limit is not retried), 529 says the service is overloaded,
and an ``error`` event after the 200 (the SDK raises it with status 200) becomes the error its
type names. The client never retries by itself: the fallback chain decides. ``warm_up`` opens
the pooled connection (a models list request), so the first turn pays no TLS handshake, and
reports a rejected key at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anthropic

from assistant import secrets
from assistant.config import Settings
from assistant.engines.base import (
    ChatRequest,
    EngineError,
    Finished,
    LLMEvent,
    Message,
    TextDelta,
    ToolCallDelta,
    ToolSpec,
    Usage,
)
from assistant.engines.net.errors import (
    RateLimited,
    ServerFailed,
    Service,
    error_detail,
    http_error,
    unreachable,
)
from assistant.engines.net.keyed import KeyedClient
from assistant.engines.net.messages import integer, obj, text
from assistant.engines.net.redact import describe
from assistant.engines.openai.chat import resend_budget

log = logging.getLogger(__name__)

PROVIDER = "anthropic"
SERVICE = Service.of(PROVIDER, "Claude", PROVIDER)
DEFAULT_MODEL = "claude-haiku-4-5"
#: The Messages API requires a limit; a spoken answer is far shorter.
DEFAULT_MAX_TOKENS = 1024
STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


# ------------------------------------------------------------------------------ requests


def to_claude(request: ChatRequest, model: str) -> dict[str, Any]:
    """The Messages API body of ``request`` (without ``stream``)."""
    system = [m.content for m in request.messages if m.role == "system" and m.content.strip()]
    if request.response_format is not None:
        system.append(_format_instruction(request.response_format))
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
        "messages": _turns(m for m in request.messages if m.role != "system"),
    }
    if system:
        body["system"] = "\n\n".join(system)
    if request.tools:
        body["tools"] = [_tool(t) for t in request.tools]
    if request.temperature is not None:
        body["temperature"] = min(1.0, max(0.0, request.temperature))
    return body


def _tool(spec: ToolSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "description": spec.description,
        "input_schema": dict(spec.parameters),
    }


def _format_instruction(response_format: Mapping[str, Any]) -> str:
    schema = obj(dict(response_format), "json_schema").get("schema")
    if schema is None:
        return "Answer with one JSON object and nothing else."
    return "Answer with one JSON object that matches this JSON Schema, and nothing else: " + (
        json.dumps(schema, ensure_ascii=False)
    )


def _blocks(message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [
            {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id or "",
                "content": message.content,
            }
        ]
    blocks: list[dict[str, Any]] = []
    if message.content.strip():
        blocks.append({"type": "text", "text": message.content})
    if message.role == "assistant":
        for call in message.tool_calls:
            blocks.append(
                {
                    "type": "tool_use",
                    "id": call.id,
                    "name": call.name,
                    "input": _input(call.arguments),
                }
            )
    return blocks


def _input(arguments: str) -> dict[str, Any]:
    """A call's arguments as sent back: the model's JSON object, or ``{}``."""
    try:
        value = json.loads(arguments or "{}")
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _turns(messages: Iterable[Message]) -> list[dict[str, Any]]:
    """Alternating user/assistant turns; tool results lead the user turn they are in."""
    turns: list[dict[str, Any]] = []
    for message in messages:
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        # Stable: results keep their order, and go before any text of the same turn.
        turn["content"].sort(key=lambda b: b["type"] != "tool_result")
    return turns


# ------------------------------------------------------------------------------ responses


@dataclass(slots=True)
class ClaudeEvents:
    """One streamed message's events → ``LLMEvent``s. Total: a field of the wrong type reads
    as absent, an unknown event is skipped."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    finished: bool = False
    #: Block index → arguments received so far, for each ``tool_use`` block.
    _tools: dict[int, str] = field(default_factory=dict)

    def read(self, event: Mapping[str, Any]) -> list[LLMEvent]:
        kind = text(dict(event), "type")
        event = dict(event)
        if kind == "message_start":
            self._usage(obj(obj(event, "message"), "usage"))
        elif kind == "content_block_start":
            return self._block_start(event)
        elif kind == "content_block_delta":
            return self._delta(event)
        elif kind == "content_block_stop":
            index = integer(event.get("index"))
            if self._tools.get(index) == "":
                self._tools[index] = "{}"
                return [ToolCallDelta(index, arguments="{}")]
        elif kind == "message_delta":
            self._usage(obj(event, "usage"))
            reason = text(obj(event, "delta"), "stop_reason")
            if reason:
                self.finished = True
                return [Finished(STOP_REASONS.get(reason, reason))]
        elif kind == "message_stop":
            return [Usage(self.input_tokens, self.output_tokens, self.cached_tokens)]
        return []

    def _block_start(self, event: dict[str, Any]) -> list[LLMEvent]:
        block = obj(event, "content_block")
        index = integer(event.get("index"))
        if text(block, "type") == "tool_use" and index >= 0:
            self._tools[index] = ""
            return [
                ToolCallDelta(index, id=text(block, "id") or None, name=text(block, "name") or None)
            ]
        if text(block, "type") == "text" and text(block, "text"):
            return [TextDelta(text(block, "text"))]
        return []

    def _delta(self, event: dict[str, Any]) -> list[LLMEvent]:
        delta = obj(event, "delta")
        kind = text(delta, "type")
        if kind == "text_delta" and text(delta, "text"):
            return [TextDelta(text(delta, "text"))]
        index = integer(event.get("index"))
        if kind == "input_json_delta" and index in self._tools:
            fragment = text(delta, "partial_json")
            self._tools[index] += fragment
            return [ToolCallDelta(index, arguments=fragment)] if fragment else []
        return []

    def _usage(self, usage: dict[str, Any]) -> None:
        # Cumulative counts: the last figures replace the earlier ones.
        self.input_tokens = _count(usage.get("input_tokens")) or self.input_tokens
        self.output_tokens = _count(usage.get("output_tokens")) or self.output_tokens
        self.cached_tokens = _count(usage.get("cache_read_input_tokens")) or self.cached_tokens


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _as_dict(event: Any) -> Mapping[str, Any]:
    """An SDK event (built without validation) as the JSON it came from."""
    if isinstance(event, Mapping):
        return event
    dump = getattr(event, "model_dump", None)
    try:
        value = dump(mode="python", warnings=False) if callable(dump) else {}
    except Exception:
        return {}
    return value if isinstance(value, dict) else {}


# ------------------------------------------------------------------------------- errors


def map_error(err: anthropic.APIError, url: str, model: str, *, opened: bool) -> EngineError:
    """The SDK's error → the shared table's ``EngineError``."""
    if isinstance(err, anthropic.APITimeoutError):
        return SERVICE.error(f": {url} stopped answering (timed out). Try again.")
    if isinstance(err, anthropic.APIConnectionError):
        if opened:
            cause = err.__cause__ or err
            return SERVICE.error(
                f": the connection to {url} broke off ({describe(cause)}); try again."
            )
        return unreachable(SERVICE, url, err.__cause__ or err)
    if isinstance(err, anthropic.APIStatusError):
        if err.status_code < 400:
            return streamed_error(err.body)
        return status_error(err.status_code, err.response.headers, err.body, url, model)
    detail = error_detail(err.body if isinstance(err.body, dict) else err.message)[0]
    return SERVICE.error(f" reported an error: {detail or type(err).__name__}.")


def status_error(status: int, headers: Any, body: Any, url: str, model: str) -> EngineError:
    """A refused request: the shared table, with Anthropic's own overload and spending limit."""
    detail, _, _ = error_detail(body)
    said = f": {detail}" if detail else ""
    code = text(obj(obj(body if isinstance(body, dict) else {}, "error"), "details"), "error_code")
    if status == 529:
        return SERVICE.error(
            f"is overloaded (HTTP 529){said}. Try again in a moment.", kind=ServerFailed
        )
    if status == 429 and code == "enforced_spend_limit_reached":
        return SERVICE.error(
            f": the account's spending limit is reached (HTTP 429){said}.", retryable=False
        )
    return http_error(SERVICE, status, headers=headers, body=body, url=url, model=model)


def streamed_error(body: Any) -> EngineError:
    """An ``error`` event that arrived after the 200: the kind its ``error.type`` names."""
    error = obj(body if isinstance(body, dict) else {}, "error")
    kind, detail = text(error, "type"), error_detail(body)[0]
    said = f" ({detail})" if detail else ""
    if kind == "overloaded_error":
        return SERVICE.error(
            f"is overloaded and stopped mid-answer{said}. Try again.", kind=ServerFailed
        )
    if kind == "rate_limit_error":
        return SERVICE.error(
            f"is rate limiting requests and stopped mid-answer{said}.", kind=RateLimited
        )
    if kind in ("api_error", ""):
        return SERVICE.error(f"failed mid-answer{said}. Try again.", kind=ServerFailed)
    return SERVICE.error(f"stopped mid-answer with {kind}{said}.", retryable=False)


# ------------------------------------------------------------------------------- engine


class ClaudeLLM:
    """Streams answers from Anthropic's Messages API (see the module docstring).

    The key is looked up when first used, not when built: a missing one fails the first request
    with a ``MissingKeyError`` (a fallback chain moves on), and a key saved meanwhile in the
    settings is picked up (the client is rebuilt)."""

    def __init__(
        self,
        base_url: str,
        model: str = DEFAULT_MODEL,
        *,
        timeout_first_token: float = 20.0,
        timeout_idle: float = 60.0,
        warm_up_timeout: float = 5.0,
    ) -> None:
        self.name = PROVIDER
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_first_token = timeout_first_token
        self._timeout_idle = timeout_idle
        self._warm_up_timeout = warm_up_timeout
        self._clients = KeyedClient(self._make_client, lambda client: client.close())

    def _make_client(self, key: str | None) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            api_key=key,
            base_url=self.base_url,
            timeout=self._timeout_idle,
            max_retries=0,  # the fallback chain decides about retrying, not the client
        )

    def _current(self, key: str) -> anthropic.AsyncAnthropic:
        return self._clients.get(secrets.register(key))

    async def warm_up(self) -> None:
        """Open the pooled connection and check the key (a rejected one is reported now)."""
        try:
            key = await secrets.aget_key(PROVIDER)
        except secrets.KeyringProblem:
            key = None
        if not key:
            return  # missing or unreadable: reported on first use, where the fallback chain
            # can act on it
        client = self._current(key)
        try:
            async with asyncio.timeout(self._warm_up_timeout):
                await client.models.list(limit=1)
        except TimeoutError:
            log.warning(
                "Claude: no answer from %s within %g s while warming up",
                self.base_url,
                self._warm_up_timeout,
            )
        except anthropic.APIError as err:
            error = map_error(err, self.base_url, self.model, opened=False)
            if not error.retryable:
                raise error from None
            log.warning("%s", error)

    async def aclose(self) -> None:
        await self._clients.aclose()

    async def stream(self, request: ChatRequest) -> AsyncIterator[LLMEvent]:
        client = self._current(await secrets.arequire_key(PROVIDER))
        body = to_claude(request, self.model)
        reader = ClaudeEvents()
        opened = False
        # One deadline covers connecting, the response headers and the first event.
        deadline = asyncio.get_running_loop().time() + self.timeout_first_token
        try:
            async with asyncio.timeout_at(deadline):
                stream = await self._open(client, body)
            async with stream:
                opened = True
                events = aiter(stream)
                async with asyncio.timeout_at(deadline):
                    event = await anext(events, None)
                while event is not None:
                    for item in reader.read(_as_dict(event)):
                        yield item
                    event = await anext(events, None)
        except TimeoutError:
            raise SERVICE.error(
                f": no answer from {self.base_url} within {self.timeout_first_token:g} s. The "
                "service may be overloaded; try again."
            ) from None
        except EngineError:
            raise
        except anthropic.APIError as err:
            raise map_error(err, self.base_url, self.model, opened=opened) from None
        except (json.JSONDecodeError, RecursionError):
            raise SERVICE.error(
                f": {self.base_url} sent a malformed streaming response (not JSON). Check that "
                "the URL points to Anthropic's API (without /v1)."
            ) from None
        except Exception as err:  # transport errors some versions let escape while iterating
            raise SERVICE.error(
                f": the connection to {self.base_url} broke off ({describe(err)}); try again."
            ) from None
        if not reader.finished:
            raise SERVICE.error(f": the answer from {self.base_url} ended before it was complete.")

    async def _open(self, client: anthropic.AsyncAnthropic, body: dict[str, Any]) -> Any:
        """Send the request; a pooled connection closed just as it was reused is tried once
        more (the request never reached the server)."""
        budget = resend_budget()
        while True:
            try:
                return await client.messages.create(**body, stream=True)
            except anthropic.APITimeoutError:
                raise
            except anthropic.APIConnectionError as err:
                error = map_error(err, self.base_url, self.model, opened=False)
                delay = budget.next_delay(error)
                if delay is None:
                    raise error from None
                await asyncio.sleep(delay)


def make_llm(settings: Settings) -> ClaudeLLM:
    """Claude; ``providers.anthropic`` may set the model, ``PARLEY_ANTHROPIC_URL`` the base."""
    model = settings.provider(PROVIDER).model or DEFAULT_MODEL
    return ClaudeLLM(settings.endpoint(PROVIDER), model)
