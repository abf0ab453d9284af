"""OpenAI text to speech: ``POST {base}/audio/speech`` with raw 24 kHz PCM read as it streams.

Each text piece from the reply's splitter is one request; its audio is handed on read by read, so
the first sound plays while the rest of the sentence is still being synthesized. A pooled HTTP
client is created (and its connection opened) at warm-up, so no turn pays for a TLS handshake.
Rate limits and server errors are retried before any audio of a piece exists, within a small
budget; after that, a failure ends the reply with an error the user can act on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import numpy as np

from assistant import secrets
from assistant.config import Settings, SettingsError
from assistant.engines.base import PCM, EngineError, SpeechChunk, Voice
from assistant.engines.netpolicy import Backoff, RetryBudget, next_within, retry_after

log = logging.getLogger(__name__)

SAMPLE_RATE = 24_000  # what ``response_format: "pcm"`` always returns
DEFAULT_MODEL = "gpt-4o-mini-tts"
DEFAULT_VOICE = "alloy"
#: The documented voices; every one speaks every supported language.
VOICES = (
    "alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse",
)  # fmt: skip
PROVIDER = "openai"
_EMPTY: PCM = np.zeros(0, dtype=np.int16)
_KEY_HINT = (
    f"Set a valid key in Settings → API keys → OpenAI or in the {secrets.ENV_VARS[PROVIDER]} "
    "environment variable."
)

FailureKind = Literal["rate", "server", "transport", "final"]


@dataclass(slots=True)
class ConnectionStats:
    """How requests used the connection pool (for benchmarks and diagnostics)."""

    requests: int = 0
    connections_opened: int = 0
    last_connect_ms: float | None = None
    last_reused: bool = False
    #: Request sent → first audio byte received, for the last piece.
    last_first_byte_ms: float | None = None


class _Trace:
    """httpx/httpcore trace hook: did this request open a connection, and how long did it take?"""

    def __init__(self) -> None:
        self.connect_started: float | None = None
        self.connect_ms: float | None = None

    async def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event == "connection.connect_tcp.started":
            self.connect_started = time.perf_counter()
        elif event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            if self.connect_started is not None:
                self.connect_ms = (time.perf_counter() - self.connect_started) * 1000.0


class _Failed(Exception):
    """One attempt failed; ``kind`` tells whether another attempt may help."""

    def __init__(self, error: EngineError, kind: FailureKind) -> None:
        super().__init__(str(error))
        self.error = error
        self.kind = kind


class OpenAISpeechTTS:
    """Streams speech for text pieces from OpenAI's speech endpoint."""

    name = PROVIDER
    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        base_url: str,
        *,
        model: str = DEFAULT_MODEL,
        voice: str = DEFAULT_VOICE,
        instructions: str | None = None,
        first_byte_timeout: float = 10.0,
        read_timeout: float = 15.0,
        connect_timeout: float = 5.0,
        rate_limit_retries: int = 3,
        max_retry_wait: float = 8.0,
        backoff: Backoff | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.voice = voice
        self.instructions = instructions
        self.first_byte_timeout = first_byte_timeout
        self.read_timeout = read_timeout
        self.connect_timeout = connect_timeout
        self.rate_limit_retries = rate_limit_retries
        self.max_retry_wait = max_retry_wait
        self.backoff = backoff or Backoff(base=0.5, cap=4.0)
        self.stats = ConnectionStats()
        self._client: httpx.AsyncClient | None = None
        self._warmed = False

    # ---------------------------------------------------------------------------- lifecycle

    def _ensure_client(self) -> httpx.AsyncClient:
        if self._client is None or self._client.is_closed:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.read_timeout, connect=self.connect_timeout),
                limits=httpx.Limits(max_keepalive_connections=4, keepalive_expiry=120.0),
            )
        return self._client

    async def warm_up(self) -> None:
        """Create the pooled client and open its connection with a cheap request.

        Best effort: without a key, or when the service cannot be reached, the first reply
        reports the problem instead (and a fallback engine can take over there).
        """
        client = self._ensure_client()
        key = secrets.get_key(PROVIDER)
        if not key or self._warmed:
            return
        trace = _Trace()
        try:
            async with asyncio.timeout(self.connect_timeout + self.first_byte_timeout):
                response = await client.get(
                    f"{self.base_url}/models/{self.model}",
                    headers={"Authorization": f"Bearer {key}"},
                    extensions={"trace": trace},
                )
        except (httpx.HTTPError, TimeoutError) as exc:
            log.warning(
                "%s",
                secrets.redact(
                    f"OpenAI speech: could not pre-connect to {self.base_url} "
                    f"({type(exc).__name__}); the first reply will connect instead."
                ),
            )
            return
        self._note_connection(trace)
        self._warmed = True
        if response.status_code == 401:
            log.warning("OpenAI speech: the API key was rejected (HTTP 401). %s", _KEY_HINT)
        elif response.status_code == 404:
            log.warning("OpenAI speech: %s does not list the model %r.", self.base_url, self.model)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self._warmed = False

    def voices(self, language: str | None = None) -> list[Voice]:
        return [
            Voice(
                f"{PROVIDER}:{v}", v.capitalize(), language or "mul", self.name, SAMPLE_RATE,
                "OpenAI voice; speaks every supported language",
            )
            for v in VOICES
        ]  # fmt: skip

    def _voice_for(self, requested: str | None) -> str:
        """``openai:coral`` or ``coral``; a voice of another engine falls back to ours."""
        if requested:
            engine, sep, name = requested.partition(":")
            if not sep:
                return requested
            if engine == PROVIDER and name:
                return name
            log.info("voice %s is another engine's; OpenAI uses %s", requested, self.voice)
        return self.voice

    # ------------------------------------------------------------------------------- speech

    async def stream(
        self, pieces: AsyncIterable[str], *, voice: str | None, language: str
    ) -> AsyncIterator[SpeechChunk]:
        key = secrets.require_key(PROVIDER)
        chosen = self._voice_for(voice)
        client = self._ensure_client()
        index = -1
        async for text in pieces:
            index += 1
            if not text.strip():
                continue
            response, chunks, first = await self._open(client, key, text, chosen)
            try:
                carry = b""
                data: bytes | None = first
                while data is not None:
                    pcm, carry = _samples(carry + data)
                    if len(pcm):
                        yield SpeechChunk(pcm, SAMPLE_RATE, index, text)
                    data = await next_within(chunks, self.read_timeout)
                if carry:
                    log.debug("OpenAI speech: dropped a trailing odd byte of piece %d", index)
                yield SpeechChunk(_EMPTY, SAMPLE_RATE, index, text, last=True)
            except TimeoutError:
                raise self._error(
                    f"{self.base_url} stopped sending audio mid-sentence "
                    f"(nothing for {self.read_timeout:g} s). Try again.",
                    retryable=True,
                ) from None
            except httpx.TransportError as exc:
                raise self._error(
                    f"the connection to {self.base_url} broke off mid-sentence "
                    f"({type(exc).__name__}). Try again.",
                    retryable=True,
                ) from None
            finally:
                # Closing an unfinished response drops its connection at once (cancellation,
                # barge-in); a finished one goes back to the pool.
                await response.aclose()

    async def _open(
        self, client: httpx.AsyncClient, key: str, text: str, voice: str
    ) -> tuple[httpx.Response, AsyncIterator[bytes], bytes]:
        """Send one piece's request and read its first audio, retrying what may pass."""
        budget = RetryBudget(self.rate_limit_retries, self.max_retry_wait, self.backoff)
        once: set[FailureKind] = set()
        while True:
            try:
                return await self._attempt(client, key, text, voice)
            except _Failed as failed:
                delay: float | None = None
                if failed.kind == "rate":
                    delay = budget.next_delay(failed.error.retry_after)
                elif failed.kind in ("server", "transport") and failed.kind not in once:
                    once.add(failed.kind)
                    delay = budget.next_delay()
                if delay is None:
                    raise failed.error from None
                log.info("%s Retrying in %.2f s.", failed.error, delay)
                await asyncio.sleep(delay)

    async def _attempt(
        self, client: httpx.AsyncClient, key: str, text: str, voice: str
    ) -> tuple[httpx.Response, AsyncIterator[bytes], bytes]:
        body: dict[str, Any] = {
            "model": self.model,
            "input": text,
            "voice": voice,
            "response_format": "pcm",
        }
        if self.instructions:
            body["instructions"] = self.instructions
        trace = _Trace()
        request = client.build_request(
            "POST",
            f"{self.base_url}/audio/speech",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            extensions={"trace": trace},
        )
        response: httpx.Response | None = None
        opened = False
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.first_byte_timeout):
                response = await client.send(request, stream=True)
                self._note_connection(trace)
                if response.status_code != 200:
                    raw = await response.aread()
                    raise self._status_failure(response.status_code, raw, response.headers, voice)
                chunks = response.aiter_bytes()
                first = b""
                while not first:
                    got = await anext(chunks, None)
                    if got is None:
                        break
                    first = got
            self.stats.last_first_byte_ms = (time.perf_counter() - started) * 1000.0
            opened = True
            return response, chunks, first
        except TimeoutError:
            raise _Failed(
                self._error(
                    f"no audio from {self.base_url} within {self.first_byte_timeout:g} s; the "
                    "service may be overloaded. Try again.",
                    retryable=True,
                ),
                "final",
            ) from None
        except httpx.TransportError as exc:
            raise _Failed(
                self._error(
                    f"could not reach {self.base_url} ({type(exc).__name__}). Check the network "
                    "and the OpenAI URL in Settings.",
                    retryable=True,
                ),
                "transport",
            ) from None
        finally:
            if not opened and response is not None:
                await response.aclose()

    # ------------------------------------------------------------------------------- errors

    def _note_connection(self, trace: _Trace) -> None:
        self.stats.requests += 1
        self.stats.last_reused = trace.connect_started is None
        if not self.stats.last_reused:
            self.stats.connections_opened += 1
            self.stats.last_connect_ms = trace.connect_ms

    def _error(
        self, message: str, *, retryable: bool, retry_after: float | None = None
    ) -> EngineError:
        return EngineError(
            secrets.redact(f"OpenAI speech: {message}"),
            engine=self.name,
            retryable=retryable,
            retry_after=retry_after,
        )

    def _status_failure(
        self, status: int, raw: bytes, headers: httpx.Headers, voice: str
    ) -> _Failed:
        detail, code, param = _server_error(raw)
        final: FailureKind = "final"
        if status == 401:
            message = f"the API key was rejected (HTTP 401). {_KEY_HINT}"
            return _Failed(self._error(message, retryable=False), final)
        if status == 403:
            message = f"access refused (HTTP 403): {detail}. Check the key's permissions."
            return _Failed(self._error(message, retryable=False), final)
        if status == 400 and (param == "voice" or "voice" in detail.lower()):
            message = (
                f"the voice {voice!r} is not available ({detail}). "
                f"Choose one of: {', '.join(VOICES)}."
            )
            return _Failed(self._error(message, retryable=False), final)
        if status == 404:
            message = (
                f"{self.base_url} does not know the model {self.model!r} or the path "
                f"(HTTP 404): {detail}. Check the model and URL in Settings."
            )
            return _Failed(self._error(message, retryable=False), final)
        if status == 429 and code == "insufficient_quota":
            message = f"the account has no quota left (HTTP 429): {detail}."
            return _Failed(self._error(message, retryable=False), final)
        if status == 429:
            wait = retry_after(headers)
            hint = f" Retry in {wait:g} s." if wait is not None else ""
            message = f"rate limited (HTTP 429): {detail}.{hint}"
            return _Failed(self._error(message, retryable=True, retry_after=wait), "rate")
        if status >= 500:
            message = f"server error (HTTP {status}): {detail}."
            return _Failed(self._error(message, retryable=True), "server")
        message = f"request refused (HTTP {status}): {detail}."
        return _Failed(self._error(message, retryable=False), final)


def _samples(data: bytes) -> tuple[PCM, bytes]:
    """Whole little-endian int16 samples of ``data``, and the odd byte left for the next read."""
    whole = len(data) & ~1
    pcm: PCM = np.frombuffer(data, dtype="<i2", count=whole // 2).astype(np.int16)
    return pcm, data[whole:]


def _server_error(raw: bytes) -> tuple[str, str, str]:
    """(message, code, param) of an OpenAI error body; the raw text when it is not JSON."""
    message, code, param = "", "", ""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            message = str(inner.get("message") or "")
            code = str(inner.get("code") or "")
            param = str(inner.get("param") or "")
        elif isinstance(inner, str):
            message = inner
    if not message:
        message = raw.decode("utf-8", "replace").strip() or "no details"
    return secrets.redact(message)[:300], code, param


# ------------------------------------------------------------------------------------- factory


def make_tts(settings: Settings) -> OpenAISpeechTTS:
    """OpenAI speech, configured by ``providers.openai_tts`` (model, voice, url) when set."""
    configured = settings.provider("openai_tts")
    try:
        base_url = settings.endpoint("openai_tts")
    except SettingsError:
        base_url = settings.endpoint("openai")
    return OpenAISpeechTTS(
        base_url,
        model=configured.model or DEFAULT_MODEL,
        voice=configured.voice or DEFAULT_VOICE,
    )
