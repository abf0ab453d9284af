"""A TCP proxy that misbehaves on purpose, in front of a fake provider server.

Standard library only (asyncio streams). Each connection a client opens is forwarded to the
target, and one ``Fault`` decides what happens on the way:

- ``latency``: every piece of data arrives ``delay`` seconds late (order and throughput kept);
- ``bandwidth``: at most ``rate`` bytes per second;
- ``slice``: data arrives in pieces of 1 to 7 bytes (every framing boundary lands mid-read);
- ``stall``: after ``after`` bytes, nothing more is forwarded, and the connection stays open;
- ``reset``: after ``after`` bytes, both sides get a TCP reset (RST, not FIN);
- ``close``: after ``after`` bytes, both sides are closed cleanly (FIN);
- ``garble``: after ``after`` bytes, every byte forwarded has its bits flipped;
- ``accept_close``: the connection is accepted and closed at once, before any byte.

Bytes are counted in the direction the fault applies to (``down``: server to client, the default;
``up``: client to server). ``connections`` limits the fault to the first N connections (later
ones are forwarded untouched), so a fault can be a passing one or a lasting one.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
import urllib.parse
from dataclasses import dataclass
from typing import Literal

FaultKind = Literal[
    "none", "latency", "bandwidth", "slice", "stall", "reset", "close", "garble", "accept_close"
]


@dataclass(frozen=True)
class Fault:
    kind: FaultKind = "none"
    #: Bytes forwarded untouched before the fault acts (stall, reset, close, garble).
    after: int = 0
    direction: Literal["down", "up"] = "down"
    delay: float = 0.1
    rate: float = 50_000.0
    #: Only the first N connections misbehave (None: all of them).
    connections: int | None = None


class _Connection:
    def __init__(
        self,
        fault: Fault,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        server: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.fault = fault
        self.client = client
        self.server = server
        self.forwarded = 0
        self.done = asyncio.Event()

    async def run(self) -> None:
        down = self._pump(self.server[0], self.client[1], self.fault.direction == "down")
        up = self._pump(self.client[0], self.server[1], self.fault.direction == "up")
        tasks = [asyncio.create_task(down), asyncio.create_task(up)]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.close()

    def close(self) -> None:
        for _, writer in (self.client, self.server):
            with contextlib.suppress(Exception):
                writer.close()

    def reset(self) -> None:
        """RST both ways: linger 0, then drop the sockets."""
        for _, writer in (self.client, self.server):
            sock = writer.get_extra_info("socket")
            with contextlib.suppress(Exception):
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, faulty: bool
    ) -> None:
        fault = self.fault if faulty else Fault()
        if fault.kind == "latency":
            await self._delayed(reader, writer, fault.delay)
            return
        while data := await reader.read(65536):
            if fault.kind in ("stall", "reset", "close", "garble"):
                room = max(0, fault.after - self.forwarded)
                head, tail = data[:room], data[room:]
                if head:
                    await self._write(writer, head, fault)
                if not tail:
                    continue
                if fault.kind == "stall":
                    await asyncio.Event().wait()  # forward nothing, ever; keep the socket open
                if fault.kind == "reset":
                    self.reset()
                    return
                if fault.kind == "close":
                    return
                data = bytes(b ^ 0x5A for b in tail)
            await self._write(writer, data, fault)
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()
        await asyncio.Event().wait()  # half closed: let the other direction finish

    async def _write(self, writer: asyncio.StreamWriter, data: bytes, fault: Fault) -> None:
        self.forwarded += len(data)
        if fault.kind == "slice":
            i = 0
            while i < len(data):
                n = 1 + (i * 7 + len(data)) % 7
                writer.write(data[i : i + n])
                await writer.drain()
                await asyncio.sleep(0)
                i += n
            return
        if fault.kind == "bandwidth":
            for i in range(0, len(data), 1024):
                piece = data[i : i + 1024]
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(len(piece) / fault.rate)
            return
        writer.write(data)
        await writer.drain()

    async def _delayed(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float
    ) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    with contextlib.suppress(Exception):
                        if writer.can_write_eof():
                            writer.write_eof()
                    return
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()

        delivering = asyncio.create_task(deliver())
        try:
            while True:
                data = await reader.read(65536)
                queue.put_nowait((time.monotonic() + delay, data))
                if not data:
                    break
            await delivering
            await asyncio.Event().wait()
        finally:
            delivering.cancel()
            await asyncio.gather(delivering, return_exceptions=True)


class FaultProxy:
    """``async with FaultProxy(target_url, fault) as proxy``: ``proxy.url(target_url)`` is the
    same URL through the proxy. ``fault`` may be changed at any time (new connections use it)."""

    def __init__(self, target: str, fault: Fault = Fault()) -> None:
        parts = urllib.parse.urlsplit(target)
        self.target_host = parts.hostname or "127.0.0.1"
        self.target_port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
        self.fault = fault
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._connections: set[_Connection] = set()

    async def __aenter__(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for connection in list(self._connections):
            connection.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2.0)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def url(self, target: str) -> str:
        """``target`` (a URL on the proxied server) reached through the proxy."""
        parts = urllib.parse.urlsplit(target)
        return urllib.parse.urlunsplit(parts._replace(netloc=f"127.0.0.1:{self.port}"))

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            self.accepted += 1
            fault = self.fault
            if fault.connections is not None and self.accepted > fault.connections:
                fault = Fault()
            if fault.kind == "accept_close":
                writer.close()
                return
            try:
                server = await asyncio.open_connection(self.target_host, self.target_port)
            except OSError:
                writer.close()
                return
            connection = _Connection(fault, (reader, writer), server)
            self._connections.add(connection)
            try:
                await connection.run()
            finally:
                self._connections.discard(connection)
        except asyncio.CancelledError:
            writer.close()
        finally:
            self._handlers.discard(task)
