"""What the fake HTTP provider servers share: an HTTP/1.1 server on 127.0.0.1 (a random port) in
the test's own event loop, requests parsed by hand so that a fake controls every byte and every
TCP write (an SSE event split across writes, a UTF-8 character cut in two), chunked streaming,
JSON answers, the faults every HTTP request can meet (``HttpFault``: an error status with
headers, no answer at all, a hang-up before or during the answer), and the routing every chat
model API shares (``FakeChatApi``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal, Self

from tests.fakes.local import port_of, wait_closed


@dataclass
class HttpFault:
    """What the next request gets instead of a normal answer."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    #: "headers": never answer; "body": send the headers, then nothing; "rest": send the first
    #: part of the answer, then nothing (until the client hangs up).
    stall: Literal["", "headers", "body", "rest"] = ""
    #: Close the socket after this many units of the answer (bytes of audio, chat events).
    cut_after: int | None = None
    #: Close the connection without any answer.
    hangup: bool = False


@dataclass
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"{}")


async def read_request(reader: asyncio.StreamReader) -> HttpRequest:
    """The next request on a connection (raises ``IncompleteReadError`` when it closed)."""
    head = await reader.readuntil(b"\r\n\r\n")
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, target, _ = request_line.split(" ", 2)
    headers = {}
    for line in lines:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return HttpRequest(method, target, headers, body)


async def send_json(
    writer: asyncio.StreamWriter,
    status: int,
    body: Any,
    headers: dict[str, str] | None = None,
) -> None:
    data = json.dumps(body).encode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    head = (
        f"HTTP/1.1 {status} {_phrase(status)}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n{extra}\r\n"
    )
    writer.write(head.encode("latin-1") + data)
    await writer.drain()


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"  # 529 has no standard phrase


class Chunked:
    """A chunked response body, each ``send`` one chunk (one TCP write)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    async def start(self, content_type: str, headers: dict[str, str] | None = None) -> None:
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.writer.write(
            f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n"
            f"Transfer-Encoding: chunked\r\n{extra}\r\n".encode("latin-1")
        )
        await self.writer.drain()

    async def send(self, data: bytes) -> None:
        self.writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        await self.writer.drain()

    async def end(self) -> None:
        await self.send(b"")


class EventStream:
    """The events of a streamed answer, each sent in two writes (split at ``cut``, or halfway,
    so a client must join reads); once ``fault.cut_after`` events have gone out, the connection
    is closed instead."""

    def __init__(self, out: Chunked, fault: HttpFault) -> None:
        self._out = out
        self._fault = fault
        self.sent = 0

    async def send(self, raw: bytes, cut: int | None = None) -> bool:
        """Send one event; False when the fault ends the stream here (the socket is closed)."""
        limit = self._fault.cut_after
        if limit is not None and self.sent >= limit:
            self._out.writer.close()
            return False
        self.sent += 1
        at = len(raw) // 2 if cut is None else cut
        await self._out.send(raw[:at])
        await self._out.send(raw[at:])
        return True


async def no_answer(
    fault: HttpFault,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    error_body: Any = None,
) -> bool | None:
    """Act on a fault that leaves a request without its answer: hung up on, refused with an
    error status, or never answered. The handler's result, or None when there is no such fault."""
    if fault.hangup:
        return False
    if fault.status != 200:
        body = fault.error if fault.error is not None else error_body
        await send_json(
            writer, fault.status, body or {"error": f"fake failure {fault.status}"}, fault.headers
        )
        return True
    if fault.stall == "headers":
        await wait_for_hangup(reader)
        return False
    return None


async def wait_for_hangup(reader: asyncio.StreamReader) -> None:
    """Say nothing until the client gives up and closes the connection."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(reader.read(), 60)


class FakeHttpServer:
    """A provider's HTTP API on 127.0.0.1, served in the running loop (``async with``).

    Subclasses answer each request in ``route`` (True: keep the connection for the next one).
    ``faults`` are taken one per request by the routes that honour them."""

    def __init__(self) -> None:
        self.faults: list[HttpFault] = []
        self.requests: list[HttpRequest] = []
        #: Answers the client hung up on before their end.
        self.hangups = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await wait_closed(self._server)

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{port_of(self._server)}"

    def fault(self) -> HttpFault:
        return self.faults.pop(0) if self.faults else HttpFault()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                request = await read_request(reader)
                self.requests.append(request)
                try:
                    keep = await self.route(request, reader, writer)
                except ConnectionError:
                    self.hangups += 1
                    return
                if not keep:
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    async def route(
        self, request: HttpRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        raise NotImplementedError


class FakeChatApi(FakeHttpServer):
    """A model provider's HTTP API: the key checked on every request (a refusal counted in
    ``unauthorized``), ``GET /v1/models`` answering the warm-up (counted in ``model_requests``),
    and one ``POST`` path for chat requests (their bodies kept in ``chat_requests``), each of
    which takes the next fault.

    Subclasses set ``chat_path`` and give the provider's own words: ``authorized``, the bodies of
    a refusal, of the model list and of a wrong path, and ``answer`` for a chat request."""

    chat_path = ""

    def __init__(self, key: str, *, refusal: Any, models: Any) -> None:
        super().__init__()
        self.key = key
        #: The bodies of a 401 and of the model list.
        self.refusal = refusal
        self.models = models
        self.chat_requests: list[dict[str, Any]] = []
        self.model_requests = 0
        self.unauthorized = 0

    def authorized(self, request: HttpRequest) -> bool:
        raise NotImplementedError

    def not_found(self, path: str) -> Any:
        """The body of a 404 for ``path``."""
        raise NotImplementedError

    async def answer(
        self, request: HttpRequest, fault: HttpFault, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer the chat ``request`` under ``fault``, one that leaves an answer."""
        raise NotImplementedError

    async def route(
        self, request: HttpRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        if not self.authorized(request):
            self.unauthorized += 1
            await send_json(writer, 401, self.refusal)
            return True
        path = request.path.split("?")[0]
        if request.method == "GET" and path == "/v1/models":
            self.model_requests += 1
            await send_json(writer, 200, self.models)
            return True
        if request.method != "POST" or path != self.chat_path:
            await send_json(writer, 404, self.not_found(path))
            return True
        self.chat_requests.append(request.json())
        fault = self.fault()
        if (handled := await no_answer(fault, reader, writer)) is not None:
            return handled
        return await self.answer(request, fault, writer)
