"""The language-model side of a reply: choose and run tools, stream the answer, and cut the
text into speakable pieces.

``generate`` is an async generator of pieces for the TTS: answer text as ``str``, and at most
one ``Filler`` ("One moment.") when a tool is slow. It records what was generated and which
tools ran in a ``Generation`` as it goes, so a reply that is interrupted half-way still knows
both. Tool calls are never cut short: a call that has started runs to completion even if the
reply is interrupted meanwhile (its side effects happen whole or not at all).

Tools reach the model in one of two ways (``assistant.tools.router``): natively, in the
request (cloud models), or through grammar-constrained routing calls before the answer (the
embedded models). Either way, a call whose tool changes something is not run: the reply asks
"Shall I go ahead?" instead and leaves the call in ``Generation.pending``; the session runs it
in the next turn if the user agrees (``confirmed``).

The filler is spoken but never added to the text, the history's answer or the model's context.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from assistant.clock import Clock
from assistant.engines.base import (
    ChatRequest,
    LanguageModel,
    Message,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    Usage,
    closing_stream,
)
from assistant.history import ToolRecord
from assistant.text import TextSplitter
from assistant.timeline import Timeline
from assistant.tools import ToolRegistry
from assistant.tools.router import (
    DecisionEcho,
    echoes_example,
    route,
    uses_router,
    with_tools_block,
    without_tools_block,
)

#: A model that keeps calling tools gets this many rounds, then must answer.
MAX_TOOL_ROUNDS = 3
#: A tool still running after this long gets a filler line.
FILLER_AFTER = 0.4
#: The sampling temperature of a routed model's answer once tools have returned: the answer
#: reads their results out. Sampled at the server's default, the small local model took the
#: result for the user's own words about one time in five ("That's correct!") or answered an
#: earlier question again; greedy, it said the result every time.
ANSWER_AFTER_TOOLS_TEMPERATURE = 0.0
#: Timeline notes a reply writes (a reply that replaces a dropped one starts without them).
REPLY_NOTES = (
    "prompt_tokens",
    "cached_tokens",
    "router_ms",
    "router_rejected",
    "filler",
    "answer_reasked",
)


@dataclass(frozen=True, slots=True)
class Filler:
    """A line to speak while a slow tool runs; not part of the answer."""

    text: str


@dataclass(frozen=True, slots=True)
class PendingAction:
    """A tool call that waits for the user's "yes"."""

    call: ToolCall
    #: What it will do, in a few words ("set a timer for 5 minutes").
    action: str
    #: The tool's user-facing name ("timer").
    title: str


@dataclass(slots=True)
class Generation:
    """What the model produced for one reply so far."""

    text: str = ""
    tools: list[ToolRecord] = field(default_factory=list)
    #: Set when the reply ended by asking whether to run this call.
    pending: PendingAction | None = None
    #: The filler said while a tool ran ("" if none was needed).
    filler: str = ""
    #: The prompt of the last model request (with tool calls and results): what the model's
    #: prompt cache holds, for a follow-up request that should reuse it.
    messages: list[Message] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Lines:
    """The fixed lines a reply may need, in the conversation's language (``tools.phrases``)."""

    filler: str = "One moment."
    #: "{action}" is replaced by what the tool will do.
    confirm: str = "I'm about to {action}. Shall I go ahead?"


async def generate(
    llm: LanguageModel,
    messages: Sequence[Message],
    *,
    tools: ToolRegistry | None,
    timeline: Timeline,
    into: Generation,
    before_tools: Callable[[], Awaitable[object]],
    hurry: Callable[[], bool],
    on_tool: Callable[[ToolRecord], None],
    clock: Clock,
    lines: Lines | None = None,
    confirmed: ToolCall | None = None,
    on_tool_start: Callable[[str], None] | None = None,
    splitter: TextSplitter | None = None,
) -> AsyncIterator[str | Filler]:
    """Speakable pieces of the reply to ``messages``, in order.

    ``before_tools`` is awaited before any tool runs (a reply prepared speculatively must not act
    before the user has really finished). ``hurry()`` asks the splitter to release the next
    clause early (playback is about to run dry). ``on_tool`` hears of each finished call,
    ``on_tool_start`` of each call about to run (by the tool's name). ``confirmed`` is a call
    the user agreed to: it runs first, without asking again. ``splitter`` cuts the text
    (default: first clause, then sentences).
    """
    turn = _Turn(tools, timeline, into, before_tools, on_tool, clock, lines or Lines())
    turn.on_start = on_tool_start
    splitter = splitter or TextSplitter()
    has_tools = tools is not None and len(tools) > 0
    routed = has_tools and uses_router(llm)
    specs = tools.specs if tools is not None and has_tools else []
    history = with_tools_block(messages, specs) if routed else list(messages)
    into.messages = history
    if confirmed is not None:
        async for filler in turn.run([confirmed], history, confirmed=confirmed):
            yield filler
    if routed:
        async for filler in turn.route_all(llm, history, specs):
            yield filler
        if turn.asked is not None:
            yield turn.asked
            return
        specs = []  # the answer itself is plain text
    # A routed answer shares the routing calls' prompt (cached). It is asked as plain text,
    # which the embedded model's server enforces; should a model write its decision out
    # instead of answering all the same, that is dropped, and with nothing else said the answer
    # is asked once more without the tools block. A model that writes decision after decision
    # is stopped at the second, rather than let to recite for as long as it likes.
    echo = DecisionEcho() if routed else None
    for _round in range(MAX_TOOL_ROUNDS + 1):
        calls: dict[int, ToolCall] = {}
        timeline.mark("llm_request")
        readout = routed and bool(into.tools)
        temperature = ANSWER_AFTER_TOOLS_TEMPERATURE if readout else None
        # Routed, the answer is words: a model that can be kept from writing "{" is.
        request = ChatRequest(history, tools=specs, temperature=temperature, plain_text=routed)
        stream = llm.stream(request)
        async with closing_stream(stream):
            async for event in stream:
                if isinstance(event, TextDelta):
                    timeline.mark("llm_first_token")
                    text = echo.push(event.text) if echo is not None else event.text
                    if echo is not None and echo.looping:
                        break  # reciting the tools block: abandon this answer
                    if echo is not None and not text:
                        continue  # held back while it may be a decision
                    into.text += text
                    for piece in splitter.push(text, hurry=hurry()):
                        yield piece
                elif isinstance(event, ToolCallDelta):
                    timeline.mark("llm_first_token")
                    call = calls.setdefault(event.index, ToolCall("", "", ""))
                    call.id = event.id or call.id
                    call.name = event.name or call.name
                    call.arguments += event.arguments
                elif isinstance(event, Usage):
                    _note_read_ahead(timeline, event)
        if echo is not None:
            text = echo.flush()
            if text:
                into.text += text
                for piece in splitter.push(text, hurry=hurry()):
                    yield piece
            if echo.dropped and not into.text.strip():
                timeline.notes["answer_reasked"] = True
                history = without_tools_block(history, messages)
                into.messages = history
                echo = None
                continue
        if not calls or tools is None:
            break
        for text in splitter.flush():  # what the model said before calling is heard first
            yield text
        ordered = [calls[i] for i in sorted(calls)]
        async for filler in turn.run(ordered, history):
            yield filler
        if turn.asked is not None:
            yield turn.asked
            return
    for text in splitter.flush():
        yield text


def request_words(history: Sequence[Message]) -> str:
    """The words of the request being answered: the last user message and what the tools run
    for it since returned (a second step may compute with the first one's result)."""
    last = max((i for i, m in enumerate(history) if m.role == "user"), default=len(history))
    return "\n".join(m.content for m in history[last:] if m.role in ("user", "tool"))


def request_for(
    llm: LanguageModel, messages: Sequence[Message], tools: ToolRegistry | None
) -> ChatRequest:
    """The request ``generate`` opens a reply with (the routing call's prompt when the model
    needs a router): a prefill with it leaves exactly the right prompt in the model's cache."""
    specs = tools.specs if tools is not None else []
    if specs and uses_router(llm):
        return ChatRequest(with_tools_block(messages, specs))
    return ChatRequest(list(messages), tools=specs)


class _Turn:
    """Runs one reply's tool calls: confirmation, filler, timing, records."""

    def __init__(
        self,
        tools: ToolRegistry | None,
        timeline: Timeline,
        into: Generation,
        before_tools: Callable[[], Awaitable[object]],
        on_tool: Callable[[ToolRecord], None],
        clock: Clock,
        lines: Lines,
    ) -> None:
        self.tools = tools
        self.timeline = timeline
        self.into = into
        self.before_tools = before_tools
        self.on_tool = on_tool
        self.clock = clock
        self.lines = lines
        #: The confirmation question, once a call needs one (the reply ends with it).
        self.asked: str | None = None
        self._count = 0
        #: Results of the calls made so far, by (tool, arguments): a call asked for again is
        #: answered from here, never run (or confirmed) twice.
        self._done: dict[tuple[str, str], str] = {}
        #: Hears of each call about to run (by the tool's name).
        self.on_start: Callable[[str], None] | None = None

    async def route_all(
        self, llm: LanguageModel, history: list[Message], specs: list[ToolSpec]
    ) -> AsyncIterator[Filler]:
        """Routing rounds until the model answers directly (or asks for confirmation)."""
        notes = self.timeline.notes
        for _round in range(MAX_TOOL_ROUNDS):
            self.timeline.mark("llm_request")
            started = self.clock.now()
            choice = await route(
                llm, history, specs, on_usage=lambda u: _note_read_ahead(self.timeline, u)
            )
            notes.setdefault("router_ms", []).append(round((self.clock.now() - started) * 1e3, 1))
            if choice.tool is None or (self._done and echoes_example(choice)):
                return
            if self.tools is not None and not self.tools.plausible(
                choice.tool, choice.arguments, request_words(history)
            ):
                # Computing with numbers nobody said: the model recalled a fact as a sum.
                notes.setdefault("router_rejected", []).append(choice.tool)
                return
            call = ToolCall("", choice.tool, json.dumps(dict(choice.arguments), ensure_ascii=False))
            if _key(call) in self._done:
                return  # the same call again: its result is already there
            async for filler in self.run([call], history):
                yield filler
            if self.asked is not None:
                return

    async def run(
        self, calls: list[ToolCall], history: list[Message], confirmed: ToolCall | None = None
    ) -> AsyncIterator[Filler]:
        """Run ``calls`` in order, appending each call and its result to ``history``.

        Stops at the first call that needs the user's agreement (``asked`` is then set).
        """
        tools = self.tools
        assert tools is not None
        for call in calls:
            call.id = call.id or f"call_{self.timeline.turn_id}_{self._count}"
            self._count += 1
            earlier = self._done.get(_key(call))
            if earlier is not None:
                history.append(Message("assistant", "", tool_calls=[call]))
                history.append(Message("tool", earlier, tool_call_id=call.id))
                continue
            action = tools.needs_confirmation(call) if call is not confirmed else None
            if action is not None:
                tool = tools.get(call.name)
                title = tool.title if tool is not None else call.name
                self.into.pending = PendingAction(call, action, title)
                self.asked = self.lines.confirm.format(action=action)
                self.into.text += ("" if not self.into.text else " ") + self.asked
                return
            await self.before_tools()
            if self.on_start is not None:
                self.on_start(call.name)
            started = self.clock.now()
            # Shielded: a tool that has started runs to completion.
            running = asyncio.ensure_future(tools.run(call))
            if not self.into.filler and not await _done_within(running, FILLER_AFTER, self.clock):
                self.into.filler = self.lines.filler
                self.timeline.notes["filler"] = self.lines.filler
                yield Filler(self.lines.filler)
            result = await asyncio.shield(running)
            ms = round((self.clock.now() - started) * 1e3, 1)
            record = ToolRecord(call.id, call.name, call.arguments, result, ms)
            self._done[_key(call)] = result
            self.into.tools.append(record)
            self.on_tool(record)
            history.append(Message("assistant", "", tool_calls=[call]))
            history.append(Message("tool", result, tool_call_id=call.id))


def _note_read_ahead(timeline: Timeline, usage: Usage) -> None:
    """Note how much of the reply's first prompt the model had read ahead (its cache); later
    requests of the same reply find the first one's prompt cached anyway."""
    if usage.prompt_tokens and "prompt_tokens" not in timeline.notes:
        timeline.notes["prompt_tokens"] = usage.prompt_tokens
        timeline.notes["cached_tokens"] = usage.cached_tokens


def _key(call: ToolCall) -> tuple[str, str]:
    """A call's identity: its tool and its arguments, however they were spaced or ordered
    (and 300.0 is 300)."""

    def plain(value: Any) -> Any:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    try:
        arguments = json.dumps(plain(json.loads(call.arguments or "{}")), sort_keys=True)
    except ValueError:
        arguments = call.arguments
    return call.name, arguments


async def _done_within(task: asyncio.Future[str], seconds: float, clock: Clock) -> bool:
    """Wait until ``task`` is done or ``seconds`` have passed on ``clock``; True if done."""
    if task.done():
        return True
    timer: asyncio.Future[Any] = asyncio.ensure_future(clock.sleep(seconds))
    waiting: list[asyncio.Future[Any]] = [task, timer]
    try:
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
    return task.done()
