"""The one HTTP client of the cloud adapters (httpx, which the ``openai`` SDK uses too).

``HttpClient`` keeps one pooled ``httpx.AsyncClient`` per engine (opened at warm-up, so no turn
pays a TLS handshake) and applies the shared policy: ``stream`` sends a request whose answer is
read as it arrives (speech), waits for its first bytes under a deadline, maps a refusal to an
``EngineError`` (``errors.http_error``) and retries what a ``RetryBudget`` allows before any byte
of the answer exists; ``request_json`` makes one small request (voice lists) on a client of its
own, so it also works from a short-lived event loop. Transport errors are described scrubbed:
httpx and h11 may quote a header in them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from assistant.engines.base import EngineError
from assistant.engines.net.errors import Service, error_detail, http_error, unreachable
from assistant.engines.net.retry import Policy, RetryBudget
from assistant.engines.net.urls import host_of

log = logging.getLogger(__name__)

#: (status, body, headers) → a more specific error than the table's, or None.
Refine = Callable[[int, bytes, httpx.Headers], EngineError | None]


@dataclass(slots=True)
class Streamed:
    """A response being read: its first bytes, and the rest as they come."""

    response: httpx.Response
    first: bytes
    chunks: AsyncIterator[bytes]

    async def next(self, timeout: float) -> bytes | None:
        """The next bytes within ``timeout`` (``TimeoutError`` otherwise), None at the end."""
        async with asyncio.timeout(timeout):
            return await anext(self.chunks, None)

    async def aclose(self) -> None:
        """Finished: back to the pool; unfinished (barge-in): the connection is dropped."""
        await self.response.aclose()


class HttpClient:
    """A pooled HTTP client with the shared error and retry policy; see the module docstring."""

    def __init__(
        self,
        service: Service,
        policy: Policy,
        *,
        keepalive_connections: int = 4,
        keepalive_expiry: float = 120.0,
    ) -> None:
        self.service = service
        self.policy = policy
        self._limits = httpx.Limits(
            max_keepalive_connections=keepalive_connections, keepalive_expiry=keepalive_expiry
        )
        self._client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        if self._client is None or self._client.is_closed:
            self._client = httpx.AsyncClient(timeout=self._timeout(), limits=self._limits)
        return self._client

    def _timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.policy.stall_timeout, connect=self.policy.open_timeout)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def stream(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        json: Any,
        budget: RetryBudget,
        what: str = "answer",
        model: str = "",
        refine: Refine | None = None,
        extensions: Callable[[], dict[str, Any]] | None = None,
    ) -> Streamed:
        """Send a request and read its first bytes, retrying what ``budget`` allows.

        Raises ``EngineError``: the table's (or ``refine``'s) for a refusal, ``Unreachable``
        when no connection could be made, and a retryable error when no byte came within the
        policy's ``first_message_timeout``."""
        while True:
            try:
                return await self._attempt(
                    method, url, headers, json, what, model, refine, extensions
                )
            except EngineError as error:
                delay = budget.next_delay(error)
                if delay is None:
                    raise
                log.info("%s Retrying in %.2f s.", error, delay)
                await self.policy.sleep(delay)

    async def _attempt(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        json: Any,
        what: str,
        model: str,
        refine: Refine | None,
        extensions: Callable[[], dict[str, Any]] | None,
    ) -> Streamed:
        client = self.client()
        request = client.build_request(
            method, url, json=json, headers=headers, extensions=extensions() if extensions else None
        )
        response: httpx.Response | None = None
        opened = False
        try:
            async with asyncio.timeout(self.policy.first_message_timeout):
                response = await client.send(request, stream=True)
                if response.status_code >= 300:
                    raw = await response.aread()
                    status, found = response.status_code, response.headers
                    refined = refine(status, raw, found) if refine is not None else None
                    raise refined or http_error(
                        self.service, status, headers=found, body=raw, url=url, model=model
                    )
                chunks = response.aiter_bytes()
                first = b""
                while not first:
                    got = await anext(chunks, None)
                    if got is None:
                        break
                    first = got
            opened = True
            return Streamed(response, first, chunks)
        except TimeoutError:
            waited = self.policy.first_message_timeout
            raise self.service.error(
                f": no {what} from {host_of(url)} within {waited:g} s; the service may be "
                "overloaded. Try again."
            ) from None
        except httpx.TransportError as exc:
            raise unreachable(self.service, url, exc) from None
        finally:
            if not opened and response is not None:
                await response.aclose()

    async def request_json(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        body: bytes | None = None,
    ) -> Any:
        """One small request whose answer is JSON; raises ``EngineError``."""
        try:
            async with httpx.AsyncClient(timeout=self._timeout()) as client:
                response = await client.request(method, url, headers=headers, content=body)
        except httpx.HTTPError as exc:
            raise unreachable(self.service, url, exc) from None
        if response.status_code >= 300:
            raise http_error(
                self.service,
                response.status_code,
                headers=response.headers,
                body=response.content,
                url=url,
            )
        try:
            return response.json()
        except (ValueError, RecursionError):
            detail, _, _ = error_detail(response.content)
            raise self.service.error(
                f": {host_of(url)} answered with something that is not JSON ({detail[:80]})."
            ) from None
