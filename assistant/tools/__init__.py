"""Tools the assistant may call: the registry, the built-in tools, and their sources.

- ``registry``: ``ToolRegistry``, ``Tool``, the safety classes and the confirmation policy;
- ``builtins`` / ``units``: clock, calculator, unit converter (``default_tools()``);
- ``alarms`` / ``notes``: timers and reminders, and notes, stored beside the history;
- ``router``: tool choice for models that need a grammar (the embedded ones);
- ``confirm``: understanding a spoken "yes" or "no";
- ``phrases``: the assistant's fixed lines (filler, confirmation, alarms) per language;
- ``mcp``: tools from Model Context Protocol servers;
- ``structured``: a JSON object extracted from each turn beside the spoken reply.
"""

from assistant.tools.builtins import calculate, current_time, default_tools, register_builtins
from assistant.tools.registry import (
    BUILTIN,
    ConfirmPolicy,
    Safety,
    Tool,
    ToolFunction,
    ToolRegistry,
)

__all__ = [
    "BUILTIN",
    "ConfirmPolicy",
    "Safety",
    "Tool",
    "ToolFunction",
    "ToolRegistry",
    "calculate",
    "current_time",
    "default_tools",
    "register_builtins",
]
