"""Built-in tools that need no storage: the date and time, a calculator, unit conversion."""

from __future__ import annotations

import ast
import datetime as dt
import math
import operator
import re
from collections.abc import Callable
from typing import Any

from assistant.tools.grounding import expression_grounded, value_grounded
from assistant.tools.registry import ToolRegistry, parameters
from assistant.tools.units import convert_units

#: An exponent larger than this is refused (a spoken "ten to the power of a million").
MAX_EXPONENT = 100


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

_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
}

#: Spellings a model or a transcript may use for the operators.
_SYMBOLS = str.maketrans({"×": "*", "÷": "/", "−": "-"})
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")


def calculate(expression: str) -> str:
    """Evaluate arithmetic safely: numbers, + - * / // % ** (or ^), sqrt, abs and round only."""

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            if isinstance(node.op, ast.Pow) and abs(ev(node.right)) > MAX_EXPONENT:
                raise ValueError("exponent too large")
            return _OPERATORS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](ev(node.operand))
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _FUNCTIONS
            and not node.keywords
        ):
            return _FUNCTIONS[node.func.id](*(ev(a) for a in node.args))
        raise ValueError("only arithmetic is supported")

    text = _THOUSANDS.sub("", expression.translate(_SYMBOLS)).replace("^", "**")
    value = ev(ast.parse(text, mode="eval").body)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(round(value, 10) if isinstance(value, float) else value)


def register_builtins(registry: ToolRegistry) -> ToolRegistry:
    registry.register(
        "get_time",
        "Get the current local date and time (only for questions about the time or date).",
        parameters(),
        current_time,
        title="clock",
    )
    registry.register(
        "calculate",
        "Evaluate an arithmetic expression, e.g. '17 * 23' or 'sqrt(144)'.",
        parameters(("expression",), expression={"type": "string"}),
        calculate,
        title="calculator",
        grounded=expression_grounded,
    )
    registry.register(
        "convert_units",
        "Convert a quantity from one unit to another (length, weight, volume, temperature, "
        "speed, area, time, data).",
        parameters(
            ("value", "from_unit", "to_unit"),
            value={"type": "number"},
            from_unit={"type": "string"},
            to_unit={"type": "string"},
        ),
        convert_units,
        timeout=15.0,  # the unit tables load on first use
        title="unit converter",
        grounded=value_grounded,
    )
    return registry


def default_tools() -> ToolRegistry:
    """The tools that need no storage: clock, calculator, unit converter."""
    return register_builtins(ToolRegistry())
