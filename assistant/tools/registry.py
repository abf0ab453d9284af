"""The tools the assistant may call, where they come from, and how a call is run.

A tool is a JSON-Schema-described function with a *safety* class that decides whether the user
is asked first (``Safety``), a short title the user sees ("used calculator"), and the source
that registered it (``"builtin"`` or an MCP server's name), so a whole source can disappear at
once when its server goes away.

``ToolRegistry.run`` never raises: a failure (unknown tool, bad arguments, timeout, an
exception in the tool) comes back as a result text beginning with ``error:`` that the model can
read and talk about. A tool result, once obtained, belongs to the turn even if the user
interrupts the reply: calls are not cancelled half-way (see ``assistant.session.generate``).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from assistant.engines.base import ToolCall, ToolSpec

ToolFunction = Callable[..., Any] | Callable[..., Awaitable[Any]]
#: Says in a few words what a call will do, for a confirmation ("set a timer for 5 minutes").
Describe = Callable[[Mapping[str, Any]], str]
#: Whether a call with these arguments can come from the request's words (the user's message
#: and the results of the tools already run for it): ``assistant.tools.grounding``.
Grounded = Callable[[Mapping[str, Any], str], bool]

BUILTIN = "builtin"


class Safety(StrEnum):
    """What running a tool does to the world (MCP's ``readOnlyHint`` / ``destructiveHint``)."""

    #: Only looks things up.
    READ_ONLY = "read_only"
    #: Adds something (a timer, a note) without touching what exists.
    ADDITIVE = "additive"
    #: May change or delete what exists.
    DESTRUCTIVE = "destructive"


class ConfirmPolicy(StrEnum):
    """Which tools wait for the user's "yes" before they run."""

    #: Every tool that changes something (additive or destructive). The default.
    CHANGES = "changes"
    #: Only tools that may change or delete what exists.
    DESTRUCTIVE = "destructive"
    #: None (for scripted runs and benchmarks).
    NEVER = "never"

    def requires(self, safety: Safety) -> bool:
        if self is ConfirmPolicy.NEVER or safety is Safety.READ_ONLY:
            return False
        return self is ConfirmPolicy.CHANGES or safety is Safety.DESTRUCTIVE


@dataclass(frozen=True, slots=True)
class Tool:
    spec: ToolSpec
    function: ToolFunction
    timeout: float = 10.0
    safety: Safety = Safety.READ_ONLY
    #: What the user sees in the reply bubble ("used calculator").
    title: str = ""
    describe: Describe | None = None
    source: str = BUILTIN
    grounded: Grounded | None = None

    def description_of(self, arguments: Mapping[str, Any]) -> str:
        """The action in a few words, for the confirmation question."""
        if self.describe is not None:
            try:
                return self.describe(arguments)
            except Exception:
                pass
        shown = ", ".join(f"{k} {v}" for k, v in arguments.items())
        return f"use {self.title or self.spec.name}" + (f" with {shown}" if shown else "")


def parameters(required: tuple[str, ...] = (), **properties: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of a tool's arguments: an object with ``properties``, nothing else."""
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    schema["additionalProperties"] = False
    return schema


def parse_arguments(call: ToolCall) -> dict[str, Any]:
    """The call's arguments as a dict; raises ValueError with a readable reason."""
    args = json.loads(call.arguments or "{}")
    if not isinstance(args, dict):
        raise ValueError("arguments must be a JSON object")
    return args


#: Runs a blocking tool off the event loop.
Offload = Callable[..., Awaitable[Any]]


class ToolRegistry:
    def __init__(self, offload: Offload = asyncio.to_thread) -> None:
        self._tools: dict[str, Tool] = {}
        self.policy = ConfirmPolicy.CHANGES
        #: Plain (non-async) tools run through this: a worker thread by default.
        self.offload = offload
        #: Called after tools were added or removed (the window's tool list, the router).
        self.on_change: list[Callable[[], None]] = []

    def register(
        self,
        name: str,
        description: str,
        parameters: dict[str, Any],
        function: ToolFunction,
        timeout: float = 10.0,
        *,
        safety: Safety = Safety.READ_ONLY,
        title: str = "",
        describe: Describe | None = None,
        source: str = BUILTIN,
        grounded: Grounded | None = None,
    ) -> None:
        spec = ToolSpec(name, description, parameters)
        title = title or name.replace("_", " ")
        self._tools[name] = Tool(spec, function, timeout, safety, title, describe, source, grounded)
        self._changed()

    def remove_source(self, source: str) -> list[str]:
        """Forget every tool ``source`` registered; returns their names."""
        gone = [n for n, t in self._tools.items() if t.source == source]
        for name in gone:
            del self._tools[name]
        if gone:
            self._changed()
        return gone

    def _changed(self) -> None:
        for listener in list(self.on_change):
            listener()

    @property
    def specs(self) -> list[ToolSpec]:
        return [t.spec for t in self._tools.values()]

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def tools(self, source: str | None = None) -> list[Tool]:
        return [t for t in self._tools.values() if source is None or t.source == source]

    def __contains__(self, name: str) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def plausible(self, name: str, arguments: Mapping[str, Any], said: str) -> bool:
        """Whether a chosen call of ``name`` fits the request's words ``said`` (its tool's
        ``grounded`` check; True for tools without one, and for unknown tools, which fail
        when run)."""
        tool = self._tools.get(name)
        if tool is None or tool.grounded is None:
            return True
        try:
            return tool.grounded(arguments, said)
        except Exception:
            return True  # a broken check must not take the tool away

    def needs_confirmation(self, call: ToolCall) -> str | None:
        """What the call would do, when the policy says the user must agree first; else None.

        A call whose arguments cannot be read runs (and fails) without asking.
        """
        tool = self._tools.get(call.name)
        if tool is None or not self.policy.requires(tool.safety):
            return None
        try:
            args = parse_arguments(call)
        except ValueError:
            return None
        return tool.description_of(args)

    async def run(self, call: ToolCall) -> str:
        """Run one call; failures come back as a result text the model can read, not as errors."""
        tool = self._tools.get(call.name)
        if tool is None:
            return f"error: there is no tool named {call.name!r}"
        try:
            args = parse_arguments(call)
        except ValueError as exc:
            return f"error: invalid arguments ({exc})"
        try:
            if inspect.iscoroutinefunction(tool.function):
                result = await asyncio.wait_for(tool.function(**args), tool.timeout)
            else:
                result = await asyncio.wait_for(
                    self.offload(functools.partial(tool.function, **args)), tool.timeout
                )
        except TimeoutError:
            return f"error: {call.name} took longer than {tool.timeout:g} s"
        except TypeError as exc:
            return f"error: invalid arguments for {call.name} ({exc})"
        except Exception as exc:
            return f"error: {call.name} failed ({exc})"
        return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)
