"""Fault switches the fake provider servers share."""

from __future__ import annotations

from websockets.asyncio.server import ServerConnection

#: ``accept_then_close`` / ``drop_code`` value for a connection cut without a close frame.
ABORT = None


async def drop(ws: ServerConnection, code: int | None, reason: str = "internal error") -> None:
    """End a client's connection: a close frame with ``code``, or (None) a cut TCP connection."""
    if code is None:
        ws.transport.abort()
    else:
        await ws.close(code, reason)
