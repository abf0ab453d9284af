"""The language-model side of a reply: stream the model, run the tools it asks for, and cut
the text into speakable pieces.

``generate`` is an async generator of pieces for the TTS. It records what was generated and
which tools ran in a ``Generation`` as it goes, so a reply that is interrupted half-way still
knows both. Tool calls are never cut short: a call that has started runs to completion even if
the reply is interrupted meanwhile (its side effects happen whole or not at all).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from assistant.engines.base import (
    ChatRequest,
    LanguageModel,
    Message,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
    closing_stream,
)
from assistant.history import ToolRecord
from assistant.text import TextSplitter
from assistant.timeline import Timeline
from assistant.tools import ToolRegistry

#: A model that keeps calling tools gets this many rounds, then must answer.
MAX_TOOL_ROUNDS = 3


@dataclass(slots=True)
class Generation:
    """What the model produced for one reply so far."""

    text: str = ""
    tools: list[ToolRecord] = field(default_factory=list)


async def generate(
    llm: LanguageModel,
    messages: list[Message],
    *,
    tools: ToolRegistry | None,
    timeline: Timeline,
    into: Generation,
    before_tools: Callable[[], Awaitable[object]],
    hurry: Callable[[], bool],
    on_tool: Callable[[ToolRecord], None],
    splitter: TextSplitter | None = None,
) -> AsyncIterator[str]:
    """Speakable pieces of the reply to ``messages``, in order.

    ``before_tools`` is awaited before any tool runs (a reply prepared speculatively must not act
    before the user has really finished). ``hurry()`` asks the splitter to release the next
    clause early (playback is about to run dry). ``on_tool`` hears of each finished call.
    ``splitter`` cuts the text (default: first clause, then sentences).
    """
    splitter = splitter or TextSplitter()
    specs = tools.specs if tools is not None else []
    for round_ in range(MAX_TOOL_ROUNDS + 1):
        calls: dict[int, ToolCall] = {}
        timeline.mark("llm_request")
        stream = llm.stream(ChatRequest(messages, tools=specs))
        async with closing_stream(stream):
            async for event in stream:
                if isinstance(event, TextDelta):
                    timeline.mark("llm_first_token")
                    into.text += event.text
                    for piece in splitter.push(event.text, hurry=hurry()):
                        yield piece
                elif isinstance(event, ToolCallDelta):
                    timeline.mark("llm_first_token")
                    call = calls.setdefault(event.index, ToolCall("", "", ""))
                    call.id = event.id or call.id
                    call.name = event.name or call.name
                    call.arguments += event.arguments
                elif isinstance(event, Usage) and round_ == 0 and event.prompt_tokens:
                    # How much of the prompt the model had read ahead (its cache).
                    timeline.notes["prompt_tokens"] = event.prompt_tokens
                    timeline.notes["cached_tokens"] = event.cached_tokens
        if not calls or tools is None:
            break
        await before_tools()
        ordered = [calls[i] for i in sorted(calls)]
        for n, call in enumerate(ordered):
            call.id = call.id or f"call_{timeline.turn_id}_{n}"
        messages = [*messages, Message("assistant", "", tool_calls=ordered)]
        for call in ordered:
            # Shielded: a tool that has started runs to completion.
            result = await asyncio.shield(tools.run(call))
            record = ToolRecord(call.id, call.name, call.arguments, result)
            into.tools.append(record)
            on_tool(record)
            messages.append(Message("tool", result, tool_call_id=call.id))
    for piece in splitter.flush():
        yield piece
