"""OpenAI text to speech: ``POST {base}/audio/speech`` with raw 24 kHz PCM read as it streams.

Each text piece from the reply's splitter is one request; its audio is handed on read by read, so
the first sound plays while the rest of the sentence is still being synthesized. The pooled HTTP
client (``net.http``) opens its connection at warm-up, so no turn pays for a TLS handshake.
Rate limits and server errors are retried before any audio of a piece exists, within a small
budget; after that, a failure ends the reply with an error the user can act on.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from assistant import secrets
from assistant.config import Settings, SettingsError
from assistant.engines.base import PCM, EngineError, SpeechChunk, Voice
from assistant.engines.net.errors import (
    RateLimited,
    ServerFailed,
    Service,
    Unreachable,
    error_detail,
)
from assistant.engines.net.http import HttpClient
from assistant.engines.net.redact import describe
from assistant.engines.net.retry import Backoff, Policy, RetryBudget

log = logging.getLogger(__name__)

SAMPLE_RATE = 24_000  # what ``response_format: "pcm"`` always returns
DEFAULT_MODEL = "gpt-4o-mini-tts"
DEFAULT_VOICE = "alloy"
#: The documented voices; every one speaks every supported language.
VOICES = (
    "alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse",
)  # fmt: skip
PROVIDER = "openai"
SERVICE = Service.of(PROVIDER, "OpenAI speech")
_EMPTY: PCM = np.zeros(0, dtype=np.int16)
#: Connect within 5 s, first audio within 10 s, no gap over 15 s; up to three retries of a rate
#: limit (one of a server error or a failed connection) waiting 8 s at most in all.
DEFAULT_POLICY = Policy(
    open_timeout=5.0,
    first_message_timeout=10.0,
    stall_timeout=15.0,
    attempts=3,
    backoff=Backoff(base=0.5, cap=4.0),
    max_retry_after=8.0,
)
MAX_RETRY_WAIT = 8.0


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
        policy: Policy | None = None,
        max_retry_wait: float = MAX_RETRY_WAIT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.voice = voice
        self.instructions = instructions
        self.policy = policy or DEFAULT_POLICY
        self.max_retry_wait = max_retry_wait
        self.stats = ConnectionStats()
        self._http = HttpClient(SERVICE, self.policy)
        self._warmed = False

    # ---------------------------------------------------------------------------- lifecycle

    async def warm_up(self) -> None:
        """Create the pooled client and open its connection with a cheap request.

        Best effort: without a key, or when the service cannot be reached, the first reply
        reports the problem instead (and a fallback engine can take over there).
        """
        client = self._http.client()
        if self._warmed:
            return
        try:
            key = await secrets.aget_key(PROVIDER)
        except secrets.KeyringProblem as problem:
            log.warning("OpenAI speech: %s; the first reply will say so.", problem)
            return
        if not key:
            return
        trace = _Trace()
        policy = self.policy
        try:
            async with asyncio.timeout(policy.open_timeout + policy.first_message_timeout):
                response = await client.get(
                    f"{self.base_url}/models/{self.model}",
                    headers={"Authorization": f"Bearer {key}"},
                    extensions={"trace": trace},
                )
        except (httpx.HTTPError, TimeoutError) as exc:
            log.warning(
                "OpenAI speech: could not pre-connect to %s (%s); the first reply will connect "
                "instead.",
                self.base_url,
                describe(exc),
            )
            return
        self._note_connection(trace)
        self._warmed = True
        if response.status_code == 401:
            log.warning("%s", SERVICE.key_rejected("HTTP 401"))
        elif response.status_code == 404:
            log.warning("OpenAI speech: %s does not list the model %r.", self.base_url, self.model)

    async def aclose(self) -> None:
        await self._http.aclose()
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
        key = await secrets.arequire_key(PROVIDER)
        chosen = self._voice_for(voice)
        index = -1
        async for text in pieces:
            index += 1
            if not text.strip():
                continue
            started = time.perf_counter()
            traces: list[_Trace] = []
            streamed = await self._http.stream(
                "POST",
                f"{self.base_url}/audio/speech",
                headers={"Authorization": f"Bearer {key}"},
                json=self._body(text, chosen),
                budget=self._budget(),
                what="audio",
                model=self.model,
                refine=lambda status, raw, _headers: _voice_error(status, raw, chosen),
                extensions=functools.partial(_traced, traces),
            )
            self.stats.last_first_byte_ms = (time.perf_counter() - started) * 1000.0
            for trace in traces:
                self._note_connection(trace)
            try:
                carry = b""
                data: bytes | None = streamed.first
                while data is not None:
                    pcm, carry = _samples(carry + data)
                    if len(pcm):
                        yield SpeechChunk(pcm, SAMPLE_RATE, index, text)
                    data = await streamed.next(self.policy.stall_timeout)
                if carry:
                    log.debug("OpenAI speech: dropped a trailing odd byte of piece %d", index)
                yield SpeechChunk(_EMPTY, SAMPLE_RATE, index, text, last=True)
            except TimeoutError:
                raise SERVICE.error(
                    f": {self.base_url} stopped sending audio mid-sentence "
                    f"(nothing for {self.policy.stall_timeout:g} s). Try again."
                ) from None
            except httpx.TransportError as exc:
                raise SERVICE.error(
                    f": the connection to {self.base_url} broke off mid-sentence "
                    f"({describe(exc)}). Try again."
                ) from None
            finally:
                # Closing an unfinished response drops its connection at once (cancellation,
                # barge-in); a finished one goes back to the pool.
                await streamed.aclose()

    def _body(self, text: str, voice: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "input": text,
            "voice": voice,
            "response_format": "pcm",
        }
        if self.instructions:
            body["instructions"] = self.instructions
        return body

    def _budget(self) -> RetryBudget:
        """Rate limits retried as the server asks, a server error or a lost connection once."""
        return RetryBudget(
            self.policy.backoff,
            max_retries=self.policy.attempts,
            limits={RateLimited: self.policy.attempts, ServerFailed: 1, Unreachable: 1},
            max_wait=self.max_retry_wait,
            max_retry_after=self.max_retry_wait,
        )

    def _note_connection(self, trace: _Trace) -> None:
        self.stats.requests += 1
        self.stats.last_reused = trace.connect_started is None
        if not self.stats.last_reused:
            self.stats.connections_opened += 1
            self.stats.last_connect_ms = trace.connect_ms


def _traced(traces: list[_Trace]) -> dict[str, Any]:
    """Request extensions that trace the connection into a new entry of ``traces``."""
    traces.append(_Trace())
    return {"trace": traces[-1]}


def _voice_error(status: int, raw: bytes, voice: str) -> EngineError | None:
    """A 400 about the voice, with the voices to choose from."""
    detail, _, param = error_detail(raw)
    if status == 400 and (param == "voice" or "voice" in detail.lower()):
        return SERVICE.error(
            f": the voice {voice!r} is not available ({detail}). Choose one of: "
            f"{', '.join(VOICES)}.",
            retryable=False,
        )
    return None


def _samples(data: bytes) -> tuple[PCM, bytes]:
    """Whole little-endian int16 samples of ``data``, and the odd byte left for the next read."""
    whole = len(data) & ~1
    pcm: PCM = np.frombuffer(data, dtype="<i2", count=whole // 2).astype(np.int16)
    return pcm, data[whole:]


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
