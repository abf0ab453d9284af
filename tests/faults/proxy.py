"""A TCP proxy that misbehaves on purpose, in front of a fake provider server.

Standard library only (asyncio streams). Each connection a client opens is forwarded to the
target, and the proxy's current ``Fault`` decides what happens on the way — also on connections
opened before it was armed, as on a real network that breaks under a long-lived websocket:

- ``latency``: every piece of data arrives ``delay`` seconds late (order and throughput kept);
- ``bandwidth``: at most ``rate`` bytes per second;
- ``slice``: data arrives in pieces of 1 to 7 bytes (every framing boundary lands mid-read);
- ``stall``: after ``after`` bytes, nothing more is forwarded, and the connection stays open;
- ``reset``: after ``after`` bytes, both sides get a TCP reset (RST, not FIN);
- ``close``: after ``after`` bytes, both sides are closed cleanly (FIN);
- ``garble``: after ``after`` bytes, every byte forwarded has its bits flipped;
- ``accept_close``: a new connection is accepted and closed at once, before any byte (arming it
  closes the open connections too: the server went away).

Bytes are counted per connection in the direction the fault applies to (``down``: server to
client, the default; ``up``: client to server), from the moment the connection meets the fault
and never within the HTTP head (the request or response line and headers always pass), so
``after=0`` hits the next byte of a websocket's frames or of a response body. ``times`` limits how
often a stall, reset, close, garble or accept-close strikes (once per connection; None: always),
so a fault can be a passing one or a lasting one.
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

from tests.fakes.local import port_of, wait_closed

FaultKind = Literal[
    "none", "latency", "bandwidth", "slice", "stall", "reset", "close", "garble", "accept_close"
]
Direction = Literal["down", "up"]
_STRIKES = ("stall", "reset", "close", "garble")


@dataclass(frozen=True)
class Fault:
    kind: FaultKind = "none"
    #: Bytes forwarded untouched before the fault strikes (stall, reset, close, garble).
    after: int = 0
    direction: Direction = "down"
    delay: float = 0.1
    rate: float = 50_000.0
    #: How many connections it strikes (None: every one).
    times: int | None = None


class _Connection:
    def __init__(
        self,
        proxy: FaultProxy,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        server: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.proxy = proxy
        self.client = client
        self.server = server
        #: (fault, bytes it let through) per direction
        self._seen: dict[Direction, tuple[Fault | None, int]] = {"down": (None, 0), "up": (None, 0)}
        self._struck: dict[Direction, Fault | None] = {"down": None, "up": None}

    async def run(self) -> None:
        tasks = [
            asyncio.create_task(self._pump(self.server[0], self.client[1], "down")),
            asyncio.create_task(self._pump(self.client[0], self.server[1], "up")),
        ]
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

    def _strike(self, fault: Fault, direction: Direction, data: bytes) -> tuple[bytes, bytes]:
        """(what passes untouched, what the fault takes) of ``data``."""
        struck = self._struck[direction]
        if struck is fault:
            return b"", data
        seen, passed = self._seen[direction]
        if seen is not fault:
            passed = 0
        room = max(0, fault.after - passed)
        self._seen[direction] = (fault, passed + min(room, len(data)))
        if len(data) <= room or not self.proxy.spend(fault):
            return data, b""
        self._struck[direction] = fault
        return data[:room], data[room:]

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: Direction
    ) -> None:
        outbox: asyncio.Queue[tuple[float, bytes, Fault]] = asyncio.Queue()
        delivering = asyncio.create_task(self._deliver(outbox, writer))
        head = b""
        in_head = True
        try:
            while data := await reader.read(65536):
                now = time.monotonic()
                if in_head:
                    head += data
                    end = head.find(b"\r\n\r\n")
                    if end < 0:
                        outbox.put_nowait((now, data, Fault()))
                        continue
                    in_head = False
                    cut = len(data) - (len(head) - (end + 4))
                    outbox.put_nowait((now, data[:cut], Fault()))
                    data = data[cut:]
                    if not data:
                        continue
                fault = self.proxy.fault
                if fault.direction != direction:
                    fault = Fault()
                if fault.kind == "latency":
                    outbox.put_nowait((now + fault.delay, data, fault))
                    continue
                if fault.kind not in _STRIKES:
                    outbox.put_nowait((now, data, fault))
                    continue
                passing, taken = self._strike(fault, direction, data)
                if passing:
                    outbox.put_nowait((now, passing, Fault()))
                if not taken:
                    continue
                if fault.kind == "stall":
                    continue  # forward nothing more; the socket stays open
                if fault.kind == "garble":
                    outbox.put_nowait((now, bytes(b ^ 0x5A for b in taken), Fault()))
                    continue
                await asyncio.wait_for(outbox.join(), 5.0)
                if fault.kind == "reset":
                    self.reset()
                return  # close: FIN both ways (``run`` closes)
            outbox.put_nowait((time.monotonic(), b"", Fault()))  # EOF, after what is queued
            await delivering
            await asyncio.Event().wait()  # half closed: let the other direction finish
        finally:
            delivering.cancel()
            await asyncio.gather(delivering, return_exceptions=True)

    async def _deliver(
        self, outbox: asyncio.Queue[tuple[float, bytes, Fault]], writer: asyncio.StreamWriter
    ) -> None:
        while True:
            due, data, fault = await outbox.get()
            try:
                if not data:
                    with contextlib.suppress(Exception):
                        if writer.can_write_eof():
                            writer.write_eof()
                    return
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._write(writer, data, fault)
            finally:
                outbox.task_done()

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, data: bytes, fault: Fault) -> None:
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


class FaultProxy:
    """``async with FaultProxy(target_url) as proxy``: ``proxy.url(target_url)`` is the same URL
    through the proxy; ``proxy.arm(fault)`` makes it misbehave (``arm(Fault())`` stops it)."""

    def __init__(self, target: str, fault: Fault = Fault()) -> None:
        parts = urllib.parse.urlsplit(target)
        self.target_host = parts.hostname or "127.0.0.1"
        self.target_port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
        self.fault = fault
        self.accepted = 0
        self.strikes = 0
        self._left: int | None = fault.times
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._connections: set[_Connection] = set()

    def arm(self, fault: Fault) -> None:
        self.fault = fault
        self._left = fault.times
        if fault.kind == "accept_close":
            for connection in list(self._connections):
                connection.close()

    def spend(self, fault: Fault) -> bool:
        """The fault strikes once more: True if it still may."""
        if fault is not self.fault:
            return False
        if self._left is not None:
            if self._left <= 0:
                return False
            self._left -= 1
        self.strikes += 1
        return True

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
        await wait_closed(self._server)

    @property
    def port(self) -> int:
        assert self._server is not None
        return port_of(self._server)

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
            if fault.kind == "accept_close" and self.spend(fault):
                writer.close()
                return
            try:
                server = await asyncio.open_connection(self.target_host, self.target_port)
            except OSError:
                writer.close()
                return
            connection = _Connection(self, (reader, writer), server)
            self._connections.add(connection)
            try:
                await connection.run()
            finally:
                self._connections.discard(connection)
        except asyncio.CancelledError:
            writer.close()
        finally:
            self._handlers.discard(task)
