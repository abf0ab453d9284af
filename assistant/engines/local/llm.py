"""The offline language model: a packaged Qwen2.5-Coder GGUF served by a supervised llama-server.

It is reached through ``OpenAIChatLLM`` exactly like a cloud endpoint, with the key the server
was started with (a new one at each launch).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Literal

from assistant.emitter import Emitter
from assistant.engines.base import (
    ChatRequest,
    EngineAnnouncement,
    EngineError,
    EngineNotice,
    LLMEvent,
    Message,
    Usage,
    closing_stream,
)
from assistant.engines.local import end_of_turn
from assistant.engines.local.llama_server import LlamaServer
from assistant.engines.local.models import (
    DEFAULT_MODEL,
    Progress,
    cache_dir,
    ensure_model,
    resolve,
)
from assistant.engines.local.prompt_cache import PromptCache, slot_file_name
from assistant.engines.net.errors import ContextTooLong
from assistant.engines.openai.chat import OpenAIChatLLM
from assistant.history import drop_oldest_turns, message_tokens

log = logging.getLogger(__name__)

#: Context kept free for the reply when a prompt has to be shortened to fit.
REPLY_RESERVE = 512
#: llama-server's sampling grammar (GBNF) for a plain-text answer: anything but "{". The
#: answer after tool routing is asked with the routing calls' prompt (cached), and the small
#: model began it with a written-out decision in 10 of 15 answers to one question on one
#: machine; each had to be dropped and the answer asked again without the tools block, a
#: second or more later (``assistant.tools.router.DecisionEcho``). Under this grammar it
#: answered in words every time, at the same speed per token.
PLAIN_TEXT_GRAMMAR = "root ::= [^{]*"


def _root(server: LlamaServer) -> str:
    """The server's own address (its endpoints beside the OpenAI ones)."""
    return server.base_url.removesuffix("/v1")


def context_overflow(err: EngineError) -> tuple[int | None, int | None] | None:
    """(prompt tokens, context size) if ``err`` is the server refusing a too-long prompt; the
    sizes are None when the server did not say them."""
    if not isinstance(err, ContextTooLong):
        return None
    return err.prompt_tokens, err.context_tokens


def default_threads() -> tuple[int, int]:
    """(generation threads, prompt threads) for this machine.

    On 2 cores the model generates with one thread and reads prompts with two. Generating, each
    token makes llama.cpp's threads meet at a barrier many times, and the voice synthesizes at
    the same moment: two threads then wait for each other (1-3 tokens/s on a busy machine, 7-12
    with one). Reading a prompt is one large batch that both cores speed up: on an idle 2-core
    machine the 1.5B model read the ~700 tokens of the system prompt with its tools in 8 s with
    two threads and 15-17 s with one, which is the first reply after a start.
    Larger machines leave half their cores to the speech engines.
    """
    cores = os.cpu_count() or 1
    if cores <= 2:
        return 1, min(2, cores)
    half = min(8, cores // 2)
    return half, half


class LocalLLM:
    """``LanguageModel`` backed by llama-server on 127.0.0.1.

    ``warm_prompt``: messages (the system prompt) the server reads into its prompt cache as
    soon as it is up, in the background, so the first reply after a start does not wait for
    them. ``continues_reply``: llama-server continues a trailing assistant message, which lets
    the tool router ask for one word (``assistant.tools.router.continues_reply``).
    ``prompt_cache_dir``: where the read prompt is kept for the next launch
    (``assistant.engines.local.prompt_cache``; default ``$PARLEY_CACHE_DIR/prompt-cache``, None:
    not kept).
    """

    name = "local"
    #: The packaged models write tool calls as plain text: route tools with a grammar.
    needs_tool_router = True

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        threads: int | None = None,
        threads_batch: int | None = None,
        context: int = 4096,
        timeout_first_token: float = 90.0,
        progress: Progress | None = None,
        warm_prompt: Sequence[Message] = (),
        continues_reply: bool = True,
        prompt_cache_dir: Path | Literal["default"] | None = "default",
    ) -> None:
        self.model = resolve(model)
        auto_threads, auto_batch = default_threads()
        self.threads = threads or auto_threads
        self.threads_batch = threads_batch or (auto_batch if threads is None else threads)
        self.context = context
        self.timeout_first_token = timeout_first_token
        self.progress = progress
        self.warm_prompt = list(warm_prompt)
        self.continues_reply = continues_reply
        self.prompt_cache_dir = (
            cache_dir() / "prompt-cache" if prompt_cache_dir == "default" else prompt_cache_dir
        )
        self._prompt_cache: PromptCache | None = None
        self._restored_pid: int | None = None
        self._saving: set[asyncio.Task[bool]] = set()
        self._warming: asyncio.Task[None] | None = None
        #: The prompt to read first once the server is up (a prefill asked for before that).
        self._early: ChatRequest | None = None
        #: What the user should hear about the server (a crash, a restart, giving up).
        self.notices: Emitter[EngineNotice] = Emitter("local language model")
        self._server: LlamaServer | None = None
        self._chat: OpenAIChatLLM | None = None
        self._chat_key = ""
        self._retired: list[OpenAIChatLLM] = []  # clients of earlier launches, closed at the end
        self._warm_lock = asyncio.Lock()
        #: The end-of-message token ids of each marker, for the launch they were looked up in.
        self._end_ids: dict[tuple[str, str], tuple[int, ...]] = {}

    @property
    def server(self) -> LlamaServer | None:
        return self._server

    async def warm_up(self) -> None:
        """Assemble the model file if needed and start the server. Idempotent."""
        async with self._warm_lock:
            if self._server is None:
                path = await asyncio.to_thread(ensure_model, self.model.name, self.progress)
                server = LlamaServer(
                    path,
                    alias=self.model.name,
                    threads=self.threads,
                    threads_batch=self.threads_batch,
                    context=self.context,
                    slot_dir=self.prompt_cache_dir,
                )
                server.on_notice.append(self._server_notice)
                self._server = server
            await self._server.start(self.progress)
            restored = await self._restore_prompt(self._server)
            request = self._early
            # A restored prompt holds the system prompt and more (the tools, the language):
            # reading the bare system prompt over it would throw that away.
            if request is None and self.warm_prompt and not restored:
                request = ChatRequest([*self.warm_prompt, Message("user", "")])
            if request is not None and self._warming is None:
                self._warming = asyncio.create_task(self.prefill(request), name="warm prompt")

    async def _restore_prompt(self, server: LlamaServer) -> int:
        """Read the prompt saved by an earlier launch into a newly started server; how many
        tokens it holds (0: none was restored)."""
        if server.slot_dir is None or server.pid is None or server.pid == self._restored_pid:
            return 0
        self._restored_pid = server.pid
        if self._prompt_cache is None:
            try:
                name = slot_file_name(server.model_path, server.binary)
            except EngineError:
                return 0
            self._prompt_cache = PromptCache(server.slot_dir, name)
        return await self._prompt_cache.restore(self._client(server).post_json, _root(server))

    def _keep_prompt(self, server: LlamaServer, usage: Usage | None) -> None:
        """Save the slot for the next launch after a request that read a long new prompt, in
        the background: the server may hold the save until its slot is free, and no reply
        waits for that."""
        cache = self._prompt_cache
        if cache is None or usage is None or not cache.worth_saving(usage):
            return
        save = cache.save(self._client(server).post_json, _root(server))
        task = asyncio.create_task(save, name="save the read prompt")
        self._saving.add(task)
        task.add_done_callback(self._saving.discard)

    def _server_notice(self, message: str, failure: bool) -> None:
        self.notices.emit(EngineAnnouncement("llm", message, failure))

    def _client(self, server: LlamaServer) -> OpenAIChatLLM:
        # A restart may move the server to another port, and always brings a new key.
        if self._chat is None or (self._chat.base_url, self._chat_key) != (
            server.base_url,
            server.api_key,
        ):
            if self._chat is not None:
                self._retired.append(self._chat)
            self._chat = OpenAIChatLLM(
                server.base_url,
                server.api_key,
                self.model.name,
                name=self.name,
                timeout_first_token=self.timeout_first_token,
                plain_text_body={"grammar": PLAIN_TEXT_GRAMMAR},
            )
            self._chat_key = server.api_key
        return self._chat

    async def stream(self, request: ChatRequest) -> AsyncIterator[LLMEvent]:
        """Stream one completion.

        A prompt longer than the model's context (a long conversation, CJK text) is not fatal:
        the oldest earlier turns are dropped until it fits, and the request is sent once more.
        """
        if self._server is None:
            await self.warm_up()
        server = self._server
        assert server is not None
        await server.ensure_running()
        pid = server.pid
        shortened = False
        while True:
            started = False
            usage: Usage | None = None
            try:
                async with closing_stream(self._client(server).stream(request)) as events:
                    async for event in events:
                        started = True
                        if isinstance(event, Usage):
                            usage = event
                        yield event
                self._keep_prompt(server, usage)
                return
            except EngineError as err:
                overflow = None if started or shortened else context_overflow(err)
                if overflow is not None:
                    request = self._fit_context(request, *overflow, err)
                    shortened = True
                    continue
                if server.pid != pid or not await server.healthy():
                    raise EngineError(
                        "The local language model stopped while answering; it is being "
                        "restarted. Try again in a moment.",
                        engine=self.name,
                        retryable=True,
                    ) from err
                raise

    def _fit_context(
        self, request: ChatRequest, prompt: int | None, size: int | None, err: EngineError
    ) -> ChatRequest:
        """``request`` without the oldest turns that made it overflow the context, or raise."""
        size = size or self.context
        room = size - max(REPLY_RESERVE, request.max_tokens or 0)
        estimated = sum(message_tokens(m) for m in request.messages)
        # The server counted the real tokens; scale the estimate to them.
        budget = int(room * estimated / prompt) if prompt else room
        messages = drop_oldest_turns(request.messages, budget)
        if messages is None:
            raise EngineError(
                f"{self.name}: the message is too long for the local model's context "
                f"({prompt or 'more than ' + str(size)} tokens, at most {size}). Shorten it, "
                "or pick a model with a larger context.",
                engine=self.name,
                retryable=False,
            ) from err
        log.info(
            "prompt of %s tokens exceeded the %d-token context; dropped %d oldest messages",
            prompt,
            size,
            len(request.messages) - len(messages),
        )
        return dataclasses.replace(request, messages=messages)

    async def prefill(self, request: ChatRequest) -> None:
        """Process ``request``'s prompt now so the real request finds it in the server's cache.

        Called while the user is still talking: when the final transcript arrives, only the
        tokens after the common prefix (the end of the user's message) remain to be processed.
        Asked before the server has started, the newest such request is what it reads first
        once up (instead of ``warm_prompt``). Best effort: never raises.
        """
        server = self._server
        if server is None or not server.running:
            if self._warming is None:
                self._early = request
            return
        warm = ChatRequest(request.messages, request.tools, request.response_format, max_tokens=1)
        usage: Usage | None = None
        try:
            async for event in self._client(server).stream(warm):
                if isinstance(event, Usage):
                    usage = event
            self._keep_prompt(server, usage)
        except EngineError as err:
            log.debug("prefill failed: %s", err)

    async def end_of_turn_probability(self, request: ChatRequest) -> float | None:
        """How likely the user's words (``request``'s last message) end their sentence: read
        from the next-token probabilities after them (``end_of_turn``). Tens of milliseconds
        with a warm prompt cache. None while the server is not up or when it cannot tell."""
        server = self._server
        last = request.messages[-1] if request.messages else None
        if server is None or not server.running or last is None or last.role != "user":
            return None
        chat = self._client(server)
        root = _root(server)
        body: dict[str, Any] = {"messages": [m.to_openai() for m in request.messages]}
        if request.tools:
            body["tools"] = [t.to_openai() for t in request.tools]
        try:
            rendered = await chat.post_json(f"{root}/apply-template", body)
            prompt = rendered.get("prompt") if isinstance(rendered, dict) else None
            cut = end_of_turn.scoring_prompt(prompt, last.content) if prompt else None
            if cut is None:
                return None
            text, marker = cut
            end_ids = await self._end_token_ids(chat, root, server.api_key, marker)
            answer = await chat.post_json(
                f"{root}/completion",
                {
                    "prompt": text,
                    "n_predict": 1,
                    "n_probs": end_of_turn.TOP_TOKENS,
                    "temperature": 0,
                    "cache_prompt": True,
                },
            )
        except EngineError as err:
            log.debug("end-of-turn reading failed: %s", err)
            return None
        top = end_of_turn.top_tokens(answer)
        return end_of_turn.ending_probability(top, end_ids) if top else None

    async def _end_token_ids(
        self, chat: OpenAIChatLLM, root: str, launch: str, marker: str
    ) -> tuple[int, ...]:
        """The token of the template's end-of-message marker (none if it is not one token)."""
        key = (launch, marker)
        if key not in self._end_ids:
            ids: tuple[int, ...] = ()
            if marker:
                answer = await chat.post_json(
                    f"{root}/tokenize", {"content": marker, "parse_special": True}
                )
                tokens = answer.get("tokens") if isinstance(answer, dict) else None
                if isinstance(tokens, list) and len(tokens) == 1 and isinstance(tokens[0], int):
                    ids = (tokens[0],)
            self._end_ids = {key: ids}  # one launch's ids at a time
        return self._end_ids[key]

    async def aclose(self) -> None:
        """Stop the server (the model file stays cached)."""
        if self._warming is not None:
            self._warming.cancel()
        for task in list(self._saving):
            task.cancel()
        if self._server is not None:
            await self._server.stop()
        for chat in [*self._retired, *([self._chat] if self._chat is not None else [])]:
            await chat.aclose()
        self._retired.clear()
        self._chat = None
