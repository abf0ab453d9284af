"""AssemblyAI's LLM Gateway as a ``LanguageModel``: one key for Claude, GPT and Gemini models.

The gateway speaks OpenAI's Chat Completions at ``{base}/chat/completions``, so the chat engine
does the HTTP; this module holds what differs:

- The key goes in ``Authorization`` as it is, without ``Bearer``; it is the AssemblyAI key
  (``ASSEMBLYAI_API_KEY``). Model ids have no provider prefix (``MODELS``; the live list is at
  ``{base}/models``, asked at warm-up, which also opens the pooled connection).
- Streaming where the gateway streams, the whole answer where it does not: a stream request
  answered with one JSON completion is read as such, and one refused with a 400 that names
  streaming is sent again without it. Either way the model is remembered and not streamed
  again. A whole answer may carry its text and its tool calls in separate choices: every
  choice is read.
- Usage comes as ``input_tokens``/``output_tokens`` and finish reasons as the model's own
  (``tool_use``, ``end_turn``): the chat engine's readers accept both. Errors have a flat body
  (``{"code","message"}``) or ``{"error": "…"}``; the shared table reads both.
- ``response_format`` (a JSON schema) and tools are passed as in Chat Completions.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

import openai

from assistant.config import Settings
from assistant.engines.base import (
    ChatRequest,
    EngineError,
    Finished,
    LLMEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from assistant.engines.net.errors import Service
from assistant.engines.net.messages import integer, items, obj, text
from assistant.engines.openai.chat import FINISH_REASONS, OpenAIChatLLM
from assistant.engines.openai.factories import KeyedChatLLM

log = logging.getLogger(__name__)

NAME = "assemblyai-gateway"
#: Whose settings (URL, model) the engine reads: ``PARLEY_ASSEMBLYAI_GATEWAY_URL``.
PROVIDER = "assemblyai_gateway"
#: Whose key it uses.
KEY_PROVIDER = "assemblyai"
SERVICE = Service(NAME, "AssemblyAI LLM Gateway", KEY_PROVIDER)
DEFAULT_MODEL = "gpt-4.1"
#: Models the gateway serves (it changes monthly; ``{base}/models`` has the live list).
MODELS = (
    "gpt-4.1",
    "gpt-5.2",
    "gpt-5-mini",
    "claude-sonnet-4-6",
    "claude-haiku-4-5-20251001",
    "gemini-2.5-flash",
)


class StreamingRefused(EngineError):
    """The gateway refused to stream this model: ask for the whole answer instead."""


class GatewayLLM(OpenAIChatLLM):
    """Chat completions through the gateway (see the module docstring)."""

    def __init__(self, base_url: str, api_key: str | None, model: str = DEFAULT_MODEL) -> None:
        headers = {"Authorization": api_key} if api_key else None
        super().__init__(base_url, api_key, model, name=NAME, service=SERVICE, headers=headers)
        #: Models answered whole: not streamed again.
        self.unstreamed: set[str] = set()

    async def warm_up(self) -> None:
        """Open the pooled connection and check the key and the model against the live list."""
        try:
            listed = await self._client.models.list()
        except openai.APIStatusError as err:
            error = self._map_error(err)
            if not error.retryable:
                raise error from None
            log.warning("%s", error)
            return
        except openai.APIError as err:
            log.warning("%s", self._map_error(err))
            return
        ids = {getattr(m, "id", None) for m in getattr(listed, "data", None) or []}
        if ids and self.model not in ids:
            log.warning(
                "the LLM Gateway does not list the model %r (it lists %d)", self.model, len(ids)
            )

    async def stream(self, request: ChatRequest) -> AsyncIterator[LLMEvent]:
        if self.model not in self.unstreamed:
            try:
                async for event in super().stream(request):
                    yield event
                return
            except StreamingRefused:
                log.info("the LLM Gateway does not stream %s; asking for whole answers", self.model)
                self.unstreamed.add(self.model)
        for event in await self._complete(request):
            yield event

    async def _open(self, body: dict[str, Any]) -> Any:
        try:
            return await super()._open(body)
        except openai.BadRequestError as err:
            if "stream" in str(err.message).lower():
                raise StreamingRefused(str(self._map_error(err))) from None
            raise

    async def _whole_answer(self, stream: Any) -> list[LLMEvent] | None:
        response = getattr(stream, "response", None)
        kind = str(getattr(response, "headers", {}).get("content-type", ""))
        if response is None or "json" not in kind.lower():
            return None
        self.unstreamed.add(self.model)
        raw = await response.aread()
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise SERVICE.error(": the answer was not JSON; try again.") from None
        return list(completion_events(data))

    async def _complete(self, request: ChatRequest) -> list[LLMEvent]:
        body = self._body(request)
        body.pop("stream", None)
        body.pop("stream_options", None)
        try:
            completion = await self._client.chat.completions.create(**body)
        except openai.APIError as err:
            raise self._map_error(err) from None
        dump = getattr(completion, "model_dump", None)
        data = dump(mode="python", warnings=False) if callable(dump) else {}
        return list(completion_events(data if isinstance(data, dict) else {}))


def completion_events(data: Any) -> Iterable[LLMEvent]:
    """The events of one whole completion: every choice's text and tool calls, the finish
    reason (``tool_calls`` whenever a call is there) and the usage. Total."""
    data = data if isinstance(data, dict) else {}
    reasons: list[str] = []
    calls = 0
    for choice in items(data.get("choices")):
        choice = choice if isinstance(choice, dict) else {}
        message = obj(choice, "message")
        if text(message, "content"):
            yield TextDelta(text(message, "content"))
        for call in items(message.get("tool_calls")):
            function = obj(call if isinstance(call, dict) else {}, "function")
            arguments = function.get("arguments")
            if isinstance(arguments, dict):  # some models' calls come parsed
                arguments = json.dumps(arguments)
            yield ToolCallDelta(
                calls,
                id=text(call, "id") or None,
                name=text(function, "name") or None,
                arguments=arguments if isinstance(arguments, str) else "",
            )
            calls += 1
        reason = text(choice, "finish_reason")
        if reason:
            reasons.append(FINISH_REASONS.get(reason, reason))
    reason = "tool_calls" if calls else next((r for r in reasons if r != "tool_calls"), "stop")
    yield Finished(reason)
    usage = obj(data, "usage")
    if usage:
        prompt = usage.get("prompt_tokens") or usage.get("input_tokens")
        completion = usage.get("completion_tokens") or usage.get("output_tokens")
        yield Usage(max(0, integer(prompt, 0)), max(0, integer(completion, 0)))


def make_llm(settings: Settings) -> KeyedChatLLM:
    """The gateway; ``providers.assemblyai_gateway`` may set the model and URL."""
    model = settings.provider(PROVIDER).model or DEFAULT_MODEL
    base_url = settings.endpoint(PROVIDER)
    return KeyedChatLLM(
        KEY_PROVIDER,
        base_url,
        model,
        required=True,
        name=NAME,
        build=lambda key: GatewayLLM(base_url, key, model),
    )
