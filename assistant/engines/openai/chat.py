"""A ``LanguageModel`` for any OpenAI-compatible Chat Completions endpoint, streamed.

Works with OpenAI itself and with local servers that speak the same protocol (llama-server,
Ollama, vLLM). The official SDK does the HTTP (over httpx); its chunks become typed events:
``TextDelta``, ``ToolCallDelta`` (one per streamed fragment), ``Usage`` and ``Finished``.
Failures go through the shared network policy (``net.errors``): an ``EngineError`` with a
message a user can act on, scrubbed of keys; the client itself never retries, except a request
whose pooled connection was closed before it left.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import openai

from assistant import secrets
from assistant.engines.base import (
    ChatRequest,
    EngineError,
    Finished,
    LLMEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from assistant.engines.net.errors import (
    Service,
    Unreachable,
    error_detail,
    http_error,
    unreachable,
)
from assistant.engines.net.redact import describe
from assistant.engines.net.retry import Backoff, RetryBudget


def resend_budget() -> RetryBudget:
    """A pooled keep-alive connection can be closed by the server just as it is reused; the
    request never reached the server then, so it is sent again at once, once. Anything else is
    left to the fallback chain."""
    return RetryBudget(Backoff(base=0.0), max_retries=1, limits={Unreachable: 1})


class OpenAIChatLLM:
    """Streams chat completions from ``{base_url}/chat/completions``.

    ``extra_body``: fields added to every request. ``plain_text_body``: fields added to a
    request whose answer must be plain text (``ChatRequest.plain_text``), for a server that can
    constrain its sampling to it.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        model: str,
        name: str = "openai",
        timeout_first_token: float = 20.0,
        timeout_idle: float = 60.0,
        extra_body: dict[str, Any] | None = None,
        *,
        plain_text_body: Mapping[str, Any] | None = None,
        service: Service | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_first_token = timeout_first_token
        self._service = service or Service.of(name)
        if api_key:
            secrets.register(api_key)
        self._extra_body = dict(extra_body or {})
        self._plain_text_body = dict(plain_text_body or {})
        # The client insists on a key; keyless local servers ignore whatever is sent. Headers
        # given here replace the client's own (a service that wants the key without "Bearer").
        self._client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=api_key or "sk-no-key-required",
            timeout=timeout_idle,
            max_retries=0,  # fallback chains decide about retrying, not the client
            default_headers=dict(headers or {}),
        )

    async def warm_up(self) -> None:
        """Nothing to load: the first request opens the connection."""

    async def post_json(self, url: str, body: dict[str, Any]) -> object:
        """POST ``body`` to ``url`` (absolute, or relative to the base URL) with this client's
        connection and key, and return the decoded answer: a server's own endpoints beside
        the OpenAI ones (llama-server's ``/completion``). Failures raise ``EngineError``."""
        try:
            return await self._client.post(url, body=body, cast_to=object)
        except openai.APIError as err:
            raise self._map_error(err) from None

    async def aclose(self) -> None:
        await self._client.close()

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [m.to_openai() for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.tools:
            body["tools"] = [t.to_openai() for t in request.tools]
        if request.response_format is not None:
            body["response_format"] = dict(request.response_format)
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        extra = self._extra_body
        if request.plain_text and self._plain_text_body:
            extra = {**extra, **self._plain_text_body}
        if extra:
            body["extra_body"] = extra
        return body

    async def stream(self, request: ChatRequest) -> AsyncIterator[LLMEvent]:
        body = self._body(request)
        finished = opened = said = False
        unreadable = ""
        # One deadline covers connecting, the response headers and the first chunk.
        deadline = asyncio.get_running_loop().time() + self.timeout_first_token
        try:
            async with asyncio.timeout_at(deadline):
                stream = await self._open(body)
            # ``async with`` closes the HTTP response however this generator ends, including
            # when the consumer stops early or its task is cancelled.
            async with stream:
                opened = True
                whole = await self._whole_answer(stream)
                if whole is not None:
                    for event in whole:
                        finished = finished or isinstance(event, Finished)
                        yield event
                    return
                chunks = aiter(stream)
                async with asyncio.timeout_at(deadline):
                    chunk = await anext(chunks, None)
                while chunk is not None:
                    unreadable = unreadable or _unreadable(chunk)
                    for event in _events(chunk):
                        if isinstance(event, Finished):
                            finished = True
                            if not said and unreadable:
                                raise self._unreadable_answer(unreadable)
                        said = said or isinstance(event, TextDelta | ToolCallDelta)
                        yield event
                    chunk = await anext(chunks, None)
        except TimeoutError:
            raise self._service.error(
                f": no answer from {self.base_url} within {self.timeout_first_token:g} s. The "
                "server may be overloaded or the model still loading; try again."
            ) from None
        except EngineError:
            raise
        except openai.APIError as err:
            if opened and type(err) is openai.APIConnectionError:
                raise self._broke_off(err) from None
            raise self._map_error(err) from None
        except (json.JSONDecodeError, RecursionError):
            raise self._service.error(
                f": {self.base_url} sent a malformed streaming response (not JSON). Check that "
                "the URL points to an OpenAI-compatible API."
            ) from None
        except Exception as err:
            # Transport errors that some client versions let escape while iterating a stream.
            raise self._broke_off(err) from None
        if not finished and not said and unreadable:
            raise self._unreadable_answer(unreadable)
        if not finished:
            raise self._service.error(
                f": the answer from {self.base_url} ended before it was complete."
            )

    def _unreadable_answer(self, what: str) -> EngineError:
        return self._service.error(
            f": {self.base_url} sent an answer Parley cannot read ({what}). Check that the URL "
            "points to an OpenAI-compatible API."
        )

    async def _whole_answer(self, stream: Any) -> list[LLMEvent] | None:
        """The events of an answer that came whole instead of streamed (None: it streams).

        Servers that stream every model never need this; see ``assemblyai_gateway``."""
        return None

    async def _open(self, body: dict[str, Any]) -> Any:
        """Send the request, retrying what the shared policy allows before any response."""
        budget = resend_budget()
        while True:
            try:
                return await self._client.chat.completions.create(**body)
            except openai.APITimeoutError:
                raise
            except openai.APIConnectionError as err:
                error = self._map_error(err)
                delay = budget.next_delay(error)
                if delay is None:
                    raise error from None
                await asyncio.sleep(delay)

    def _broke_off(self, err: BaseException) -> EngineError:
        cause = err.__cause__ or err
        return self._service.error(
            f": the connection to {self.base_url} broke off ({describe(cause)}); try again."
        )

    def _map_error(self, err: openai.APIError) -> EngineError:
        """The SDK's error → the shared table's ``EngineError`` (``net.errors``)."""
        service = self._service
        if isinstance(err, openai.APITimeoutError):
            return service.error(f": {self.base_url} stopped answering (timed out). Try again.")
        if isinstance(err, openai.APIConnectionError):
            return unreachable(service, self.base_url, err.__cause__ or err)
        if isinstance(err, openai.APIStatusError):
            return http_error(
                service,
                err.status_code,
                headers=err.response.headers,
                body=err.body if err.body is not None else err.message,
                url=self.base_url,
                model=self.model,
            )
        detail = error_detail(err.body if isinstance(err.body, dict) else err.message)[0]
        return service.error(f" reported an error: {detail or type(err).__name__}.")


def _events(chunk: Any) -> Iterable[LLMEvent]:
    """The events of one streamed chunk. Total: the SDK builds chunks without validating them,
    so a field of the wrong type is read as absent rather than raising."""
    for choice in _list(getattr(chunk, "choices", None)):
        delta = getattr(choice, "delta", None)
        content = getattr(delta, "content", None)
        if isinstance(content, str) and content:
            yield TextDelta(content)
        for tc in _list(getattr(delta, "tool_calls", None)):
            index = getattr(tc, "index", None)
            if not isinstance(index, int) or isinstance(index, bool):
                continue
            fn = getattr(tc, "function", None)
            yield ToolCallDelta(
                index=index,
                id=_str(getattr(tc, "id", None)) or None,
                name=_str(getattr(fn, "name", None)) or None,
                arguments=_str(getattr(fn, "arguments", None)),
            )
        reason = _str(getattr(choice, "finish_reason", None))
        if reason:
            yield Finished(FINISH_REASONS.get(reason, reason))
    usage = _usage(getattr(chunk, "usage", None))
    if usage is not None:
        yield usage


#: Finish reasons of servers that pass on their model's own (Claude's through a gateway).
FINISH_REASONS = {"end_turn": "stop", "tool_use": "tool_calls", "max_tokens": "length"}


def _usage(usage: Any) -> Usage | None:
    """Token counts under either naming (``prompt_tokens``, or ``input_tokens`` as gateways
    that front several providers report them)."""
    if usage is None or isinstance(usage, str | int | float | list):
        return None
    details = getattr(usage, "prompt_tokens_details", None)
    prompt = getattr(usage, "prompt_tokens", None)
    completion = getattr(usage, "completion_tokens", None)
    return Usage(
        prompt_tokens=_count(
            prompt if prompt is not None else getattr(usage, "input_tokens", None)
        ),
        completion_tokens=_count(
            completion if completion is not None else getattr(usage, "output_tokens", None)
        ),
        cached_tokens=_count(getattr(details, "cached_tokens", None)),
    )


def _unreadable(chunk: Any) -> str:
    """What in a streamed chunk is there but of the wrong type ("" when all is readable)."""
    choices = getattr(chunk, "choices", None)
    if choices is not None and not isinstance(choices, list):
        return "choices that are not a list"
    for choice in _list(choices):
        content = getattr(getattr(choice, "delta", None), "content", None)
        if content is not None and not isinstance(content, str):
            return "text that is not a string"
    return ""


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def assemble_tool_calls(deltas: Iterable[LLMEvent]) -> list[ToolCall]:
    """Join streamed ``ToolCallDelta`` fragments (other events are ignored) into whole calls.

    Fragments are grouped by ``index``; the first ``id`` and ``name`` seen for an index win and
    ``arguments`` fragments are concatenated. Calls come out in index order; a call whose id never
    arrived gets ``call_<index>``.
    """
    calls: dict[int, ToolCall] = {}
    for d in deltas:
        if not isinstance(d, ToolCallDelta):
            continue
        call = calls.get(d.index)
        if call is None:
            call = calls[d.index] = ToolCall(id=d.id or "", name=d.name or "", arguments="")
        else:
            if d.id and not call.id:
                call.id = d.id
            if d.name and not call.name:
                call.name = d.name
        call.arguments += d.arguments
    out = []
    for index in sorted(calls):
        call = calls[index]
        if not call.id:
            call.id = f"call_{index}"
        out.append(call)
    return out
