"""A small MCP server for the tests, written with the official SDK.

Run as ``python tests/fakes/mcp_server.py stdio`` or ``… http PORT`` (streamable HTTP on
127.0.0.1). Its tools: ``get_order_status`` (read-only), ``slow_lookup`` (read-only, takes
``seconds``), ``create_ticket`` (additive) and ``delete_ticket`` (destructive). With
``MCP_TEST_PID_FILE`` set, it writes its process id there, so a test can kill it mid-call.
"""

from __future__ import annotations

import os
import sys
import time

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

server = MCPServer("shop")
tickets: list[str] = []


@server.tool(annotations=ToolAnnotations(read_only_hint=True, title="Order status"))
def get_order_status(order_id: str) -> str:
    """Look up where a customer's order is."""
    return f"Order {order_id.upper()} left the warehouse and arrives tomorrow."


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def slow_lookup(seconds: float) -> str:
    """A lookup that takes a while."""
    time.sleep(seconds)
    return f"looked up in {seconds:g} s"


@server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False))
def create_ticket(summary: str) -> str:
    """Open a support ticket."""
    tickets.append(summary)
    return f"ticket {len(tickets)} opened: {summary}"


@server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True))
def delete_ticket(number: int) -> str:
    """Delete a support ticket."""
    return f"ticket {number} deleted"


if __name__ == "__main__":
    pid_file = os.environ.get("MCP_TEST_PID_FILE")
    if pid_file:
        with open(pid_file, "w") as f:
            f.write(str(os.getpid()))
    if sys.argv[1:2] == ["http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
