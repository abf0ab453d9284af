"""What every fake server on 127.0.0.1 needs: the port it listens on, and a bounded wait for it
to close (asyncio's and websockets' servers alike)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any, Protocol


class LocalServer(Protocol):
    @property
    def sockets(self) -> Iterable[Any]: ...

    async def wait_closed(self) -> None: ...


def port_of(server: LocalServer) -> int:
    """The port ``server`` listens on (the system picked it: the server was given port 0)."""
    return int(next(iter(server.sockets)).getsockname()[1])


async def wait_closed(server: LocalServer, timeout: float = 2.0) -> None:
    """Wait up to ``timeout`` s for a server already told to close to finish; one that takes
    longer (a client still holding on) is left to end by itself."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(server.wait_closed(), timeout)
