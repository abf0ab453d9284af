"""Tools the assistant may call, and their execution.

A tool result, once obtained, belongs to the turn even if the user interrupts the reply: calls
are not cancelled half-way, and the session records each result as soon as it exists.
"""

from __future__ import annotations

import ast
import asyncio
import datetime as dt
import inspect
import json
import operator
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from assistant.engines.base import ToolCall, ToolSpec

ToolFunction = Callable[..., Any] | Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Tool:
    spec: ToolSpec
    function: ToolFunction
    timeout: float = 10.0


class ToolRegistry:
    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}

    def register(
        self,
        name: str,
        description: str,
        parameters: dict[str, Any],
        function: ToolFunction,
        timeout: float = 10.0,
    ) -> None:
        self._tools[name] = Tool(ToolSpec(name, description, parameters), function, timeout)

    @property
    def specs(self) -> list[ToolSpec]:
        return [t.spec for t in self._tools.values()]

    def __contains__(self, name: str) -> bool:
        return name in self._tools

    async def run(self, call: ToolCall) -> str:
        """Run one call; failures come back as a result text the model can read, not as errors."""
        tool = self._tools.get(call.name)
        if tool is None:
            return f"error: there is no tool named {call.name!r}"
        try:
            args = json.loads(call.arguments or "{}")
            if not isinstance(args, dict):
                raise ValueError("arguments must be a JSON object")
        except ValueError as exc:
            return f"error: invalid arguments ({exc})"
        try:
            if inspect.iscoroutinefunction(tool.function):
                result = await asyncio.wait_for(tool.function(**args), tool.timeout)
            else:
                result = await asyncio.wait_for(
                    asyncio.to_thread(tool.function, **args), tool.timeout
                )
        except TimeoutError:
            return f"error: {call.name} took longer than {tool.timeout:g} s"
        except Exception as exc:
            return f"error: {call.name} failed ({exc})"
        return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)


# ---------------------------------------------------------------------------------- built-in tools


def current_time() -> str:
    now = dt.datetime.now().astimezone()
    return now.strftime("%A %d %B %Y, %H:%M %Z")


_OPERATORS: dict[type, Callable[..., Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


def calculate(expression: str) -> str:
    """Evaluate arithmetic safely (numbers and + - * / // % ** only)."""

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            if isinstance(node.op, ast.Pow) and abs(ev(node.right)) > 100:
                raise ValueError("exponent too large")
            return _OPERATORS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](ev(node.operand))
        raise ValueError("only arithmetic is supported")

    value = ev(ast.parse(expression.replace("^", "**"), mode="eval").body)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(round(value, 10) if isinstance(value, float) else value)


def default_tools() -> ToolRegistry:
    registry = ToolRegistry()
    registry.register(
        "get_time",
        "Get the current local date and time.",
        {"type": "object", "properties": {}, "additionalProperties": False},
        current_time,
    )
    registry.register(
        "calculate",
        "Evaluate an arithmetic expression, e.g. '17 * 23'.",
        {
            "type": "object",
            "properties": {"expression": {"type": "string"}},
            "required": ["expression"],
            "additionalProperties": False,
        },
        calculate,
    )
    return registry
