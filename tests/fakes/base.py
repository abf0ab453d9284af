"""What the fake websocket provider servers share: serving on 127.0.0.1 at a random port, the
handshakes they received, refusing the next handshakes with given statuses (``handshake_faults``),
and ending a client's connection the way a fault asks (``drop_code``: a close frame with that
code, or ``ABORT`` for a cut TCP connection), including right after accepting it
(``accept_then_close``), and rewriting every JSON message before it goes out (``mangle``: a field
of the wrong type, audio cut short). The server side of the websocket library logs handshake
headers (the key) at DEBUG: that log is kept out of the tests' log capture."""

from __future__ import annotations

import contextlib
import json
import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.fakes.local import port_of, wait_closed

#: ``drop_code`` for a connection cut without a close frame.
ABORT = None


async def drop(ws: ServerConnection, code: int | None, reason: str = "internal error") -> None:
    """End a client's connection: a close frame with ``code``, or (None) a cut TCP connection."""
    if code is None:
        ws.transport.abort()
    else:
        await ws.close(code, reason)


def json_response(status: int, body: Any) -> Response:
    data = json.dumps(body).encode()
    headers = Headers({"Content-Type": "application/json", "Content-Length": str(len(data))})
    return Response(status, "fake", headers, data)


@dataclass
class FakeWebsocketServer:
    PATH: ClassVar[str] = ""

    key: str = ""
    #: (status, headers) answered to the next handshakes instead of accepting them.
    handshake_faults: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    #: How a dropped connection ends: a close code, or ``ABORT``.
    drop_code: int | None = 1011
    #: Close every connection right after the session started (as ``drop_code`` says).
    accept_then_close: bool = False
    #: Rewrites each JSON message before it is sent (None: sent as made).
    mangle: Callable[[dict[str, Any]], Any] | None = None
    requests: list[Request] = field(default_factory=list)
    #: The JSON messages clients sent, for servers that keep them.
    received: list[dict[str, Any]] = field(default_factory=list)
    connections: int = 0
    _server: Server | None = None

    async def __aenter__(self) -> Self:
        log = logging.getLogger(type(self).__module__)
        log.propagate = False
        log.setLevel(logging.CRITICAL)
        self._server = await serve(
            self._connected, "127.0.0.1", 0, process_request=self._process_request, logger=log
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await wait_closed(self._server)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"ws://127.0.0.1:{port_of(self._server)}{self.PATH}"

    def query(self, index: int = -1) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.requests[index].path).query))

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.requests.append(request)
        if self.handshake_faults:
            status, headers = self.handshake_faults.pop(0)
            response = self._refusal(connection, status)
            for name, value in headers.items():
                response.headers[name] = value
            return response
        return self._check(connection, request)

    def _refusal(self, connection: ServerConnection, status: int) -> Response:
        """The answer to a refused handshake, in the provider's style."""
        return connection.respond(status, f"fake error {status}\n")

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse a handshake the provider would refuse (a wrong key, say)."""
        return None

    async def _connected(self, ws: ServerConnection) -> None:
        self.connections += 1
        await self._handle(ws)

    async def _handle(self, ws: ServerConnection) -> None:
        raise NotImplementedError

    async def _closed_for_key(self, ws: ServerConnection, header: str, reason: str) -> bool:
        """Close the connection with 1008 and ``reason`` when its handshake's ``header`` is not
        the key, as providers that check the key after the upgrade do; True when it did."""
        assert ws.request is not None
        if ws.request.headers.get(header) == self.key:
            return False
        await ws.close(1008, reason)
        return True

    async def _accepted(self, ws: ServerConnection) -> bool:
        """Called once the session started: False (the connection dropped) when
        ``accept_then_close`` says so."""
        if self.accept_then_close:
            await drop(ws, self.drop_code)
            return False
        return True

    async def serve_events(
        self, ws: ServerConnection, on_event: Callable[[dict[str, Any]], Awaitable[bool]]
    ) -> None:
        """Hand each JSON event the client sends to ``on_event``, keeping it in ``received``,
        until ``on_event`` returns False or the connection closes (quietly)."""
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                event = json.loads(raw)
                self.received.append(event)
                if not await on_event(event):
                    return

    def outgoing(self, msg: dict[str, Any]) -> str:
        """``msg`` as it goes out: mangled when told so, then JSON."""
        return json.dumps(self.mangle(msg) if self.mangle is not None else msg)

    async def drop(self, ws: ServerConnection, reason: str = "internal error") -> None:
        await drop(ws, self.drop_code, reason)
