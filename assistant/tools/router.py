"""Tool choice for models that only pick tools reliably under a grammar (the embedded ones).

The packaged Qwen2.5-Coder models never emit their template's ``<tool_call>`` tags; asked with
a JSON-schema grammar (llama-server's ``response_format``) they choose well. So for such a
model (``uses_router``) a turn with tools goes like this:

1. the tools and a few examples are described in the system prompt, before its language
   instruction (``with_tools_block``) — the same prompt the answer uses, so llama-server's
   prompt cache serves both, and the prefill made while the user spoke covers the routing call
   too;
2. ``route`` asks the model for ``{"tool": ..., "arguments": {...}}`` or ``{"tool": "none"}``
   under a schema generated from the registered tools (one alternative per tool);
3. after a tool ran, its result joins the conversation and ``route`` is asked again (a request
   may need two steps), until it says ``none``; then the answer streams as usual, with no tools.

A routing call costs one short constrained generation (≈ 6 tokens for ``none``). With no tool
registered none of this runs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from assistant.engines.base import (
    ChatRequest,
    LanguageModel,
    Message,
    NeedsToolRouter,
    TextDelta,
    ToolSpec,
    Usage,
    closing_stream,
)
from assistant.prompt import with_section

log = logging.getLogger(__name__)

NO_TOOL = "none"
#: Enough for any sensible call; a grammar cannot loop, but a long string argument can.
ROUTE_MAX_TOKENS = 160

#: (tool, request, arguments): shown only for tools that are registered.
EXAMPLES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("calculate", "what is 12 times 7", {"expression": "12*7"}),
    (
        "convert_units",
        "how many kilometers is 3 miles",
        {"value": 3, "from_unit": "mile", "to_unit": "kilometer"},
    ),
    ("set_timer", "set a timer for ten minutes", {"seconds": 600}),
    ("set_reminder", "remind me to call Anna at 6 pm", {"text": "call Anna", "at": "18:00"}),
    ("add_note", "note that the key is under the mat", {"text": "the key is under the mat"}),
)  # fmt: skip
#: Requests that need no tool, always shown: most questions are answered from knowledge, and
#: actions no tool can do are declined in words.
NO_TOOL_EXAMPLES = (
    "what is the capital of Spain",
    "tell me a joke",
    "who wrote Hamlet",
    "turn off the lights",
    "thanks, that's all",
)
#: A request with two steps: (request, first call, second call), shown when both tools exist.
TWO_STEP_EXAMPLE: tuple[str, tuple[str, dict[str, Any]], tuple[str, dict[str, Any]]] = (
    "what is 2 plus 3, and what time is it",
    ("calculate", {"expression": "2+3"}),
    ("get_time", {}),
)


@dataclass(frozen=True, slots=True)
class Route:
    """One routing decision: a tool to call, or ``tool is None`` to answer directly."""

    tool: str | None
    arguments: Mapping[str, Any] = field(default_factory=dict)


def echoes_example(choice: Route) -> bool:
    """The decision repeats one of the prompt's examples word for word.

    After a tool has run, the small models sometimes answer the follow-up routing call with an
    example from the prompt ("12*7"); such a call is not a second step of the request.
    """
    return any(
        choice.tool == tool and dict(choice.arguments) == arguments
        for tool, _request, arguments in EXAMPLES
    )


def uses_router(llm: LanguageModel) -> bool:
    """Whether ``llm`` needs its tools chosen by ``route`` rather than offered natively."""
    return isinstance(llm, NeedsToolRouter) and llm.needs_tool_router


# ------------------------------------------------------------------------------------ schema

#: JSON Schema keywords llama.cpp's grammar converter handles; others are dropped.
_GRAMMAR_KEYS = frozenset(
    "type properties required items enum const anyOf oneOf description minimum maximum "
    "minItems maxItems minLength maxLength".split()
)


def _grammar_safe(schema: Any) -> Any:
    """A copy of a parameter schema with only what a grammar can express (no $ref, formats)."""
    if not isinstance(schema, Mapping):
        return {}
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key not in _GRAMMAR_KEYS:
            continue
        if key == "properties" and isinstance(value, Mapping):
            out[key] = {k: _grammar_safe(v) for k, v in value.items()}
        elif key == "items":
            out[key] = _grammar_safe(value)
        elif key in ("anyOf", "oneOf") and isinstance(value, list):
            out[key] = [_grammar_safe(v) for v in value]
        else:
            out[key] = value
    if out.get("type") == "object":
        out.setdefault("properties", {})
        out["additionalProperties"] = False
    return out


def decision_schema(specs: Sequence[ToolSpec]) -> dict[str, Any]:
    """``{"tool": "none"}`` or one ``{"tool": NAME, "arguments": {...}}`` per tool."""
    options: list[dict[str, Any]] = [
        {
            "type": "object",
            "properties": {"tool": {"const": NO_TOOL}},
            "required": ["tool"],
            "additionalProperties": False,
        }
    ]
    for spec in specs:
        arguments = _grammar_safe(spec.parameters) or {"type": "object", "properties": {}}
        arguments["type"] = "object"
        arguments.setdefault("properties", {})
        arguments["additionalProperties"] = False
        options.append(
            {
                "type": "object",
                "properties": {"tool": {"const": spec.name}, "arguments": arguments},
                "required": ["tool", "arguments"],
                "additionalProperties": False,
            }
        )
    return {"anyOf": options}


def response_format(specs: Sequence[ToolSpec]) -> dict[str, Any]:
    return {
        "type": "json_schema",
        "json_schema": {"name": "tool_choice", "schema": decision_schema(specs)},
    }


# ------------------------------------------------------------------------------------ prompt


def tools_block(specs: Sequence[ToolSpec]) -> str:
    """The tool list and examples appended to the system prompt."""
    lines = ["", "", "You can use these tools:"]
    for spec in specs:
        params = ", ".join(dict(spec.parameters).get("properties", {}) or {})
        lines.append(f"- {spec.name}({params}): {spec.description}")
    lines.append("Tool choices are written as JSON. Examples:")
    names = {s.name for s in specs}
    for tool, request, arguments in EXAMPLES:
        if tool in names:
            choice = {"tool": tool, "arguments": arguments}
            lines.append(f"User: {request} -> {json.dumps(choice)}")
    request, first, second = TWO_STEP_EXAMPLE
    if first[0] in names and second[0] in names:
        one, two = ({"tool": t, "arguments": a} for t, a in (first, second))
        lines.append(
            f"User: {request} -> {json.dumps(one)}, then after its result -> {json.dumps(two)}"
        )
    for request in NO_TOOL_EXAMPLES:
        lines.append(f"User: {request} -> {json.dumps({'tool': NO_TOOL})}")
    lines.append(
        "Most requests need no tool: knowledge, chat and advice are answered directly, and "
        "actions no tool can do are declined in words. "
        f'Use {{"tool": "{NO_TOOL}"}} then, and also once the results you need are there. '
        "Answer the user in plain words, never in JSON, and say the results you got."
    )
    return "\n".join(lines)


def with_tools_block(messages: Sequence[Message], specs: Sequence[ToolSpec]) -> list[Message]:
    """``messages`` with the tools described in the (first) system message, before its
    language instruction."""
    out = list(messages)
    if not specs:
        return out
    block = tools_block(specs)
    if out and out[0].role == "system":
        # Before the language instruction: a change of language keeps the block cached.
        out[0] = replace(out[0], content=with_section(out[0].content, block))
    else:
        out.insert(0, Message("system", block.strip()))
    return out


def without_tools_block(history: Sequence[Message], messages: Sequence[Message]) -> list[Message]:
    """``history`` (made by ``with_tools_block(messages, ...)`` and grown since) with the
    original system message back in place of the one carrying the tools block."""
    if messages and messages[0].role == "system":
        return [messages[0], *history[1:]]
    return list(history[1:])


class DecisionEcho:
    """Keeps routing decisions out of the answer that follows them.

    The answer is asked with the same prompt as the routing calls (cache reuse). Unless its
    server keeps "{" out (``ChatRequest.plain_text``), a small model often starts it by
    writing its decision out again (``{"tool": "none"}``, or ``{"name": "none"}``), which must
    never be spoken. After
    one it was seen going on with the tools block's examples: one call after another, or the
    two-step example's ``, then after its result -> {"tool": "get_time", ...}``. ``push`` holds
    back the start of the answer while it could be such an object, drops each one that parses
    as one, and passes everything else through unchanged. After a dropped decision it also
    holds a few words that may lead to another one (``CONNECTOR_LIMIT`` characters, no end of
    sentence): when a decision follows, they go with it. ``dropped`` tells whether it dropped
    any; ``looping`` that the model wrote ``LOOP_AFTER`` in a row, so its answer should be
    abandoned (and asked again without the tools block when nothing else was said).
    """

    #: Longer than any decision the grammar allows (``ROUTE_MAX_TOKENS`` tokens).
    _LIMIT = 1000
    #: The keys of a tool decision: the router's, and a function call's as models write it
    #: (``{"name": "none"}`` was seen too). An object with only these keys is a decision.
    _DECISION_KEYS = frozenset({"tool", "name", "arguments"})
    #: How a written decision begins.
    _DECISION_OPENINGS = ('{"tool"', '{"name"')
    #: Decisions in a row that mean the model is reciting the tools block, not answering.
    LOOP_AFTER = 2
    #: What may separate one written decision from the next.
    _SEPARATORS = " \t\n,.;:"
    #: The longest run of words between two written decisions that is taken for a connector
    #: ("then after its result ->") rather than the answer. Longer, it is the answer.
    CONNECTOR_LIMIT = 48
    #: A connector never holds these: words up to one are an answer's sentence.
    _SENTENCE_ENDS = ".!?\n"

    def __init__(self) -> None:
        self._held = ""
        self._open = True
        self.dropped = False
        self._count = 0

    @property
    def looping(self) -> bool:
        return self._count >= self.LOOP_AFTER

    def push(self, text: str) -> str:
        if not self._open:
            return text
        self._held += text
        while not self.looping:
            start = self._held.lstrip(self._SEPARATORS if self._count else None)
            if not start:
                return ""
            brace = self._next_decision(start)
            if brace is None:
                return self._release(start if self._count else self._held)
            if brace < 0:
                return ""  # a few words after a decision: another may follow
            try:
                data, end = json.JSONDecoder().raw_decode(start, brace)
            except ValueError:
                if len(start) - brace <= self._LIMIT:
                    return ""
                if start.startswith(self._DECISION_OPENINGS, brace):
                    # A decision that never ends (a sum of ever more digits was seen): the
                    # model is not answering; abandon it like a recital.
                    self.dropped = True
                    self._count = self.LOOP_AFTER
                    return ""
                return self._release(self._held)
            if not self._is_decision(data):
                return self._release(self._held)
            self.dropped = True
            self._count += 1
            self._held = start[end:]
        return ""

    def flush(self) -> str:
        """What is still held at the end of the answer (an unfinished decision is dropped)."""
        if not self._open:
            return ""
        held = self._held.lstrip(self._SEPARATORS if self._count else None)
        if self.looping or held.startswith(self._DECISION_OPENINGS) or self._connects(held):
            self.dropped = True
            held = ""
        return self._release(held)

    def _connects(self, held: str) -> bool:
        """``held`` is a connector after a dropped decision that leads to another one, cut
        off by the end of the answer (", then -> {"tool": "get")."""
        at = self._next_decision(held)
        return bool(at and at > 0 and held[at:].startswith(self._DECISION_OPENINGS))

    def _next_decision(self, start: str) -> int | None:
        """Where in ``start`` (the held text, past separators) a decision may begin: 0 at once,
        further on after a connector, -1 when more text must tell, None when ``start`` is the
        answer's own words."""
        brace = start.find("{") if self._count else (0 if start.startswith("{") else -1)
        if brace < 0 and not self._count:
            return None
        head = start if brace < 0 else start[:brace]
        if len(head) > self.CONNECTOR_LIMIT or any(c in head for c in self._SENTENCE_ENDS):
            return None
        key = start[brace + 1 :].lstrip() if brace >= 0 else ""
        if key and not key.startswith('"'):
            return None  # braces, but not an object with keys: words
        return brace

    def _is_decision(self, data: object) -> bool:
        return isinstance(data, dict) and (
            "tool" in data or bool(data and data.keys() <= self._DECISION_KEYS)
        )

    def _release(self, text: str) -> str:
        self._open = False
        self._held = ""
        return text


# ----------------------------------------------------------------------------------- routing


#: The start of every decision; the model's next word names the tool.
DECISION_OPENING = '{"tool": "'


def continues_reply(llm: LanguageModel) -> bool:
    """Whether ``llm`` continues a conversation's last message when it is the assistant's
    (llama-server does), rather than answering after it."""
    return bool(getattr(llm, "continues_reply", False))


async def _says_none(
    llm: LanguageModel,
    messages: Sequence[Message],
    on_usage: Callable[[Usage], None] | None,
) -> bool:
    """Whether the most likely next token after ``DECISION_OPENING`` is ``none``."""
    request = ChatRequest(
        [*messages, Message("assistant", DECISION_OPENING)], max_tokens=1, temperature=0.0
    )
    text = await _text_of(llm, request, on_usage)
    # llama-server sends the continued message whole (the opening, then the new token).
    return text.removeprefix(DECISION_OPENING).strip().startswith(NO_TOOL)


async def _text_of(
    llm: LanguageModel, request: ChatRequest, on_usage: Callable[[Usage], None] | None
) -> str:
    """The whole text the model answers ``request`` with; its token counts go to ``on_usage``."""
    parts: list[str] = []
    stream = llm.stream(request)
    async with closing_stream(stream):
        async for event in stream:
            if isinstance(event, TextDelta):
                parts.append(event.text)
            elif isinstance(event, Usage) and on_usage is not None:
                on_usage(event)
    return "".join(parts)


def parse_route(text: str, specs: Sequence[ToolSpec]) -> Route:
    """The decision in the model's JSON; anything unusable means "answer directly"."""
    try:
        data = json.loads(text)
    except ValueError:
        log.warning("tool router: not JSON: %.200s", text)
        return Route(None)
    if not isinstance(data, dict):
        return Route(None)
    tool = data.get("tool")
    if tool == NO_TOOL or tool not in {s.name for s in specs}:
        return Route(None)
    arguments = data.get("arguments")
    return Route(str(tool), arguments if isinstance(arguments, dict) else {})


async def route(
    llm: LanguageModel,
    messages: Sequence[Message],
    specs: Sequence[ToolSpec],
    *,
    on_usage: Callable[[Usage], None] | None = None,
) -> Route:
    """Ask the model, under the decision grammar, which tool (if any) comes next.

    ``messages`` already carry the tools block. ``on_usage`` hears the requests' token counts.
    Engine errors propagate (the reply fails as it would on its answer request).

    A model that continues a reply it is given (``continues_reply``) is first asked for one
    token after the decision's opening, ``{"tool": "``: when that is ``none`` (most turns),
    the decision is made at the cost of one token instead of the whole object (about seven
    tokens, each a step of the model: half a second on two busy cores). At temperature 0 the
    grammar would have chosen ``none`` too, as it is the most likely of the words it allows.
    Anything else is decided under the grammar as before.
    """
    if continues_reply(llm) and await _says_none(llm, messages, on_usage):
        return Route(None)
    request = ChatRequest(
        messages,
        response_format=response_format(specs),
        max_tokens=ROUTE_MAX_TOKENS,
        temperature=0.0,
    )
    return parse_route(await _text_of(llm, request, on_usage), specs)
