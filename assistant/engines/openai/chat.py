"""A ``LanguageModel`` for any OpenAI-compatible Chat Completions endpoint, streamed.

Works with OpenAI itself and with local servers that speak the same protocol (llama-server,
Ollama, vLLM). Wire chunks become typed events: ``TextDelta``, ``ToolCallDelta`` (one per streamed
fragment), ``Usage`` and ``Finished``. Failures become ``EngineError`` with a message a user can act
on; the API key never appears in one.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import re
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import openai

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

# Anything shaped like a secret key that a server might echo back in an error message.
_KEY_LIKE = re.compile(r"\b(sk|pk|rk|key)[-_][A-Za-z0-9_\-*.]{6,}", re.IGNORECASE)


class OpenAIChatLLM:
    """Streams chat completions from ``{base_url}/chat/completions``."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        model: str,
        name: str = "openai",
        timeout_first_token: float = 20.0,
        timeout_idle: float = 60.0,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_first_token = timeout_first_token
        self._api_key = api_key or ""
        self._extra_body = dict(extra_body or {})
        # The client insists on a key; keyless local servers ignore whatever is sent.
        self._client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=api_key or "sk-no-key-required",
            timeout=timeout_idle,
            max_retries=0,  # fallback chains decide about retrying, not the client
        )

    async def warm_up(self) -> None:
        """Nothing to load: the first request opens the connection."""

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
        return body

    async def stream(self, request: ChatRequest) -> AsyncIterator[LLMEvent]:
        body = self._body(request)
        finished = False
        # One deadline covers connecting, the response headers and the first chunk.
        deadline = asyncio.get_running_loop().time() + self.timeout_first_token
        try:
            async with asyncio.timeout_at(deadline):
                stream = await self._open(body)
            # ``async with`` closes the HTTP response however this generator ends, including
            # when the consumer stops early or its task is cancelled.
            async with stream:
                chunks = aiter(stream)
                async with asyncio.timeout_at(deadline):
                    chunk = await anext(chunks, None)
                while chunk is not None:
                    for event in _events(chunk):
                        if isinstance(event, Finished):
                            finished = True
                        yield event
                    chunk = await anext(chunks, None)
        except TimeoutError:
            raise EngineError(
                f"{self.name}: no answer from {self.base_url} within "
                f"{self.timeout_first_token:g} s. The server may be overloaded or the model "
                "still loading; try again.",
                engine=self.name,
                retryable=True,
            ) from None
        except EngineError:
            raise
        except openai.APIError as err:
            raise self._map_error(err) from err
        except json.JSONDecodeError:
            raise EngineError(
                f"{self.name}: {self.base_url} sent a malformed streaming response "
                "(not JSON). Check that the URL points to an OpenAI-compatible API.",
                engine=self.name,
                retryable=True,
            ) from None
        except Exception as err:
            # Transport errors that some client versions let escape while iterating a stream.
            raise EngineError(
                f"{self.name}: the connection to {self.base_url} broke off "
                f"({type(err).__name__}); try again.",
                engine=self.name,
                retryable=True,
            ) from err
        if not finished:
            raise EngineError(
                f"{self.name}: the answer from {self.base_url} ended before it was complete.",
                engine=self.name,
                retryable=True,
            )

    async def _open(self, body: dict[str, Any]) -> Any:
        """Send the request; once more if the connection failed before any response.

        A pooled keep-alive connection can be closed by the server just as it is reused; the
        request never reached the server then, so sending it again is safe.
        """
        try:
            return await self._client.chat.completions.create(
                **body, extra_body=self._extra_body or None
            )
        except openai.APITimeoutError:
            raise
        except openai.APIConnectionError:
            return await self._client.chat.completions.create(
                **body, extra_body=self._extra_body or None
            )

    def _map_error(self, err: openai.APIError) -> EngineError:
        where = self.base_url
        if isinstance(err, openai.APITimeoutError):
            return self._error(f"{where} stopped answering (timed out). Try again.", True)
        if isinstance(err, openai.APIConnectionError):
            return self._error(
                f"could not reach {where}. Check the URL and that the server is running.", True
            )
        detail = self._scrub(_server_message(err))
        if isinstance(err, openai.AuthenticationError):
            return self._error(
                f"{where} rejected the API key (401). Check the key in Settings.", False
            )
        if isinstance(err, openai.PermissionDeniedError):
            return self._error(
                f"{where} refused access (403): {detail}. Check the key's permissions.", False
            )
        if isinstance(err, openai.RateLimitError):
            retry_after = _retry_after(err.response.headers)
            wait = f" Retry in {retry_after:g} s." if retry_after is not None else ""
            e = self._error(f"{where} is rate limiting requests (429): {detail}.{wait}", True)
            e.retry_after = retry_after
            return e
        if isinstance(err, openai.NotFoundError):
            return self._error(
                f"{where} does not know model {self.model!r} or the path (404): {detail}. "
                "Check the model name and the URL.",
                False,
            )
        if isinstance(err, openai.APIStatusError):
            status = err.status_code
            if status >= 500:
                return self._error(f"{where} had a server error ({status}): {detail}.", True)
            return self._error(f"{where} refused the request ({status}): {detail}.", False)
        return self._error(f"{where} reported an error: {detail}.", True)

    def _error(self, message: str, retryable: bool) -> EngineError:
        return EngineError(f"{self.name}: {message}", engine=self.name, retryable=retryable)

    def _scrub(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return _KEY_LIKE.sub("***", text)


def _events(chunk: Any) -> Iterable[LLMEvent]:
    for choice in chunk.choices or ():
        delta = choice.delta
        if delta is not None:
            if delta.content:
                yield TextDelta(delta.content)
            for tc in delta.tool_calls or ():
                fn = tc.function
                yield ToolCallDelta(
                    index=tc.index,
                    id=tc.id or None,
                    name=(fn.name or None) if fn else None,
                    arguments=(fn.arguments or "") if fn else "",
                )
        if choice.finish_reason:
            yield Finished(choice.finish_reason)
    usage = getattr(chunk, "usage", None)
    if usage is not None:
        details = getattr(usage, "prompt_tokens_details", None)
        cached = getattr(details, "cached_tokens", None) if details is not None else None
        yield Usage(
            prompt_tokens=usage.prompt_tokens or 0,
            completion_tokens=usage.completion_tokens or 0,
            cached_tokens=cached or 0,
        )


def _server_message(err: openai.APIError) -> str:
    body = err.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
        if isinstance(body.get("message"), str):
            return str(body["message"])
    return err.message or type(err).__name__


def _retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``retry-after`` (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


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
