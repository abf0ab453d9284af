"""Registry factories for the Chat Completions engines: OpenAI itself, and any compatible server."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from assistant import secrets
from assistant.config import Settings
from assistant.engines.base import ChatRequest, EngineError, LLMEvent, closing_stream
from assistant.engines.net.keyed import KeyedClient
from assistant.engines.openai.chat import OpenAIChatLLM

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gpt-4o-mini"
#: Local compatible servers (llama-server, vLLM) serve one model whatever the name; Ollama
#: needs a real one, set in ``providers.openai_compatible.model``.
COMPATIBLE_DEFAULT_MODEL = "default"


class KeyedChatLLM:
    """An OpenAI chat engine whose key is looked up when first used, not when built.

    A missing key then fails the first request (a ``MissingKeyError`` naming where to set it),
    which lets a fallback chain move on to the next engine instead of failing at start-up. The
    client is rebuilt if the key changes (the user saved a new one in the settings).
    """

    def __init__(
        self,
        provider: str,
        base_url: str,
        model: str,
        *,
        required: bool,
        name: str = "",
        build: Callable[[str | None], OpenAIChatLLM] | None = None,
        timeout_first_token: float = 20.0,
    ) -> None:
        """``provider`` is whose key is used; ``name`` the engine's (default: the provider's);
        ``build(key)`` makes the engine for a key (default: a plain chat engine)."""
        self.name = name or provider
        #: Seconds the first token may take before the request counts as stalled (for the
        #: default chat engine).
        self.timeout_first_token = timeout_first_token
        self._provider = provider
        self._base_url = base_url
        self._model = model
        self._required = required
        self._build = build or self._chat
        self._engines = KeyedClient(self._build, lambda engine: engine.aclose())

    def _chat(self, key: str | None) -> OpenAIChatLLM:
        return OpenAIChatLLM(
            self._base_url,
            key,
            self._model,
            name=self.name,
            timeout_first_token=self.timeout_first_token,
        )

    async def _current(self) -> OpenAIChatLLM:
        return self._engines.get(await self._read_key())

    async def _read_key(self) -> str | None:
        if self._required:
            return await secrets.arequire_key(self._provider)
        try:
            return await secrets.aget_key(self._provider)
        except secrets.KeyringProblem as problem:
            # The key is optional (a local server may want none): go on without it.
            log.warning("%s: %s; connecting without an API key", self.name, problem)
            return None

    async def stream(self, request: ChatRequest) -> AsyncIterator[LLMEvent]:
        engine = await self._current()
        async with closing_stream(engine.stream(request)) as events:
            async for event in events:
                yield event

    async def warm_up(self) -> None:
        try:
            engine = await self._current()
        except EngineError:
            return  # a missing or unreadable key is reported on first use, where the fallback
            # chain can act on it
        await engine.warm_up()

    async def aclose(self) -> None:
        await self._engines.aclose()


def make_llm(settings: Settings) -> KeyedChatLLM:
    """OpenAI Chat Completions; the key is required (MissingKeyError names where to set it)."""
    model = settings.provider("openai").model or DEFAULT_MODEL
    return KeyedChatLLM("openai", settings.endpoint("openai"), model, required=True)


def make_compatible_llm(settings: Settings) -> KeyedChatLLM:
    """Any OpenAI-compatible server (Ollama, llama-server, vLLM); a key only if it wants one."""
    model = settings.provider("openai_compatible").model or COMPATIBLE_DEFAULT_MODEL
    return KeyedChatLLM(
        "openai_compatible", settings.endpoint("openai_compatible"), model, required=False
    )
