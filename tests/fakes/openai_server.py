"""A local stand-in for OpenAI's speech and Realtime transcription APIs, for tests.

It listens on 127.0.0.1 (random ports) in its own thread and event loop, and speaks the real wire
protocols: ``POST /v1/audio/speech`` answers raw 24 kHz PCM with chunked transfer encoding, read
in odd-sized chunks; ``/v1/realtime?intent=transcription`` is a websocket that "transcribes" each
committed buffer as the next scripted text, with deltas then ``completed``; ``POST
/v1/chat/completions`` streams ``chat_reply`` as SSE. All can be told to misbehave: error
statuses with ``retry-after``, stalls, connections hung up on before an answer or cut
mid-stream, handshakes refused, sessions closed right after they started, malformed messages,
failed items, abnormal closes. Requests and server-side timings are recorded so tests
can tell the adapter's own latency from the server's.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import re
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.fakes.base import drop
from tests.fakes.http_server import HttpFault, no_answer, read_request, send_json, wait_for_hangup
from tests.fakes.local import port_of

SPEECH_RATE = 24_000
VOICES = (
    "alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse",
)  # fmt: skip
MIN_COMMIT_BYTES = SPEECH_RATE * 2 // 10  # 100 ms of 24 kHz s16le

# The server side logs handshake headers at DEBUG; keep them out of the tests' log capture.
_server_log = logging.getLogger("tests.fakes.openai_server")
_server_log.propagate = False
_server_log.setLevel(logging.WARNING)


def speech_pcm(text: str) -> bytes:
    """The audio the fake synthesizes for ``text``: a tone, 40 ms per character (≥ 100 ms)."""
    samples = max(SPEECH_RATE // 10, int(len(text) * 0.04 * SPEECH_RATE))
    freq = 200.0 + sum(map(ord, text)) % 300
    t = np.arange(samples)
    tone = 0.3 * 32767 * np.sin(2 * np.pi * freq * t / SPEECH_RATE)
    return tone.astype("<i2").tobytes()


@dataclass
class SpeechRequest:
    headers: dict[str, str]
    body: dict[str, Any]
    received_at: float
    first_byte_at: float | None = None


@dataclass
class Commit:
    audio: bytes
    item_id: str
    received_at: float
    completed_at: float | None = None


RealtimeFault = Literal["malformed", "fail", "close_1011", "drop", "silent"]


class FakeOpenAIServer:
    def __init__(self, api_key: str | None = None) -> None:
        #: The only key accepted (None: any bearer token).
        self.api_key = api_key
        # speech
        self.first_byte_delay = 0.05
        self.chunk_sizes: tuple[int, ...] = (4801, 1, 2047, 3)
        self.chunk_delay = 0.001
        self.speech_faults: deque[HttpFault] = deque()
        self.speech_requests: list[SpeechRequest] = []
        self.model_requests = 0
        #: Requests and handshakes refused for a wrong or missing key.
        self.unauthorized = 0
        #: Speech responses the client hung up on before their end.
        self.speech_hangups = 0
        self.http_connections = 0
        # chat
        self.chat_reply = "Sure. Here is a short answer from the cloud model."
        self.chat_first_token_delay = 0.05
        self.chat_word_delay = 0.0
        #: (name, JSON arguments): a request offering tools, with no tool result yet, is
        #: answered with this call instead of text.
        self.chat_tool_call: tuple[str, str] | None = None
        self.chat_requests: list[dict[str, Any]] = []
        self.chat_faults: deque[HttpFault] = deque()
        #: Rewrites each streamed chat event before it is sent (None: sent as made).
        self.chat_mangle: Callable[[dict[str, Any]], Any] | None = None
        #: Chat responses the client hung up on before their end.
        self.chat_hangups = 0
        # realtime
        self.transcripts: deque[str] = deque()
        self.default_transcript = "hello there"
        self.transcribe_delay = 0.08  # commit → first delta
        self.delta_interval = 0.005
        self.realtime_faults: deque[RealtimeFault] = deque()  # one per commit
        #: (status, headers) answered to the next handshakes instead of accepting them.
        self.realtime_handshake_faults: deque[tuple[int, dict[str, str]]] = deque()
        #: Close every session right after ``session.updated``, with 1011.
        self.realtime_accept_then_close = False
        self.ws_connections = 0
        self.ws_paths: list[str] = []
        self.session_updates: list[dict[str, Any]] = []
        self.append_sizes: list[int] = []
        self.commits: list[Commit] = []
        self.cleared = 0
        self._sockets: set[ServerConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._events = itertools.count(1)
        self._items = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._http_port = 0
        self._ws_port = 0

    # ---------------------------------------------------------------------------- lifecycle

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self._http_port}/v1"

    @property
    def realtime_url(self) -> str:
        return f"ws://127.0.0.1:{self._ws_port}/v1/realtime"

    def start(self) -> FakeOpenAIServer:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._main, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake OpenAI server did not start")
        return self

    def stop(self) -> None:
        """Stop serving (idempotent). Call it off the clients' event loop thread, e.g. with
        ``asyncio.to_thread``, when clients on that loop are connected."""
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _main(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._serve(ready))
        finally:
            self._loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        self._stop = asyncio.Event()
        http = await asyncio.start_server(self._http_client, "127.0.0.1", 0)
        self._http_port = port_of(http)
        async with serve(
            self._ws_client,
            "127.0.0.1",
            0,
            process_request=self._ws_handshake,
            compression=None,
            logger=_server_log,
        ) as ws_server:
            self._ws_port = port_of(ws_server)
            ready.set()
            await self._stop.wait()
            for task in list(self._tasks):
                task.cancel()
            http.close()
            # Hang up on every client so each handler ends by itself.
            for writer in list(self._writers):
                writer.transport.abort()
            for ws in list(self._sockets):
                ws.transport.abort()
            await asyncio.sleep(0.05)

    def drop_realtime(self, code: int = 1011) -> None:
        """Close every realtime socket (1006: abruptly, without a close frame). Returns at once:
        the closing handshake needs the client's loop, which may be the caller's."""
        assert self._loop is not None

        async def close_all() -> None:
            for ws in list(self._sockets):
                if code == 1006:
                    ws.transport.abort()
                else:
                    await ws.close(code, "server restarting")

        asyncio.run_coroutine_threadsafe(close_all(), self._loop)

    def _authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        return self.api_key is None or header == f"Bearer {self.api_key}"

    def _auth_error(self, header: str | None) -> dict[str, Any]:
        # Like some servers, echo what was sent: the client must not repeat it anywhere.
        sent = (header or "").removeprefix("Bearer ")
        return {
            "error": {
                "message": f"Incorrect API key provided: {sent}.",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
        }

    # --------------------------------------------------------------------------------- HTTP

    async def _http_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.http_connections += 1
        self._writers.add(writer)
        try:
            while True:
                try:
                    request = await read_request(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                method, target, headers = request.method, request.path, request.headers
                if not await self._route(method, target, headers, request.body, reader, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _route(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        path = urllib.parse.urlsplit(target).path
        if not self._authorized(headers.get("authorization")):
            self.unauthorized += 1
            await send_json(writer, 401, self._auth_error(headers.get("authorization")))
            return True
        if method == "GET" and path.startswith("/v1/models/"):
            self.model_requests += 1
            await send_json(writer, 200, {"id": path.rsplit("/", 1)[1], "object": "model"})
            return True
        if method == "POST" and path == "/v1/audio/speech":
            return await self._speech(headers, body, reader, writer)
        if method == "POST" and path == "/v1/chat/completions":
            return await self._chat(body, reader, writer)
        await send_json(writer, 404, _error_body(f"Unknown path {path}", "not_found"))
        return True

    async def _chat(
        self, body: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Chat Completions, streamed as SSE: events split across writes, a keep-alive comment
        and a usage chunk, as the real API sends them."""
        request = json.loads(body)
        self.chat_requests.append(request)
        fault = self.chat_faults.popleft() if self.chat_faults else HttpFault()
        if (handled := await no_answer(fault, reader, writer, _failure(fault))) is not None:
            return handled
        try:
            return await self._chat_stream(request, fault, reader, writer)
        except ConnectionError:
            self.chat_hangups += 1
            return False

    async def _chat_stream(
        self,
        request: dict[str, Any],
        fault: HttpFault,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )

        async def send(data: bytes) -> None:
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            await writer.drain()

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            event = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "model": request.get("model", ""),
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if self.chat_mangle is not None:
                event = self.chat_mangle(event)
            return f"data: {json.dumps(event)}\n\n".encode()

        if fault.stall == "body":
            await wait_for_hangup(reader)
            return False
        await asyncio.sleep(self.chat_first_token_delay)
        await send(b": keep-alive\n\n")
        called = any(m.get("role") == "tool" for m in request.get("messages", []))
        if self.chat_tool_call is not None and request.get("tools") and not called:
            name, arguments = self.chat_tool_call
            await send(
                chunk(
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_fake1",
                                "type": "function",
                                "function": {"name": name, "arguments": ""},
                            }
                        ],
                    }
                )
            )
            half = len(arguments) // 2
            for part in (arguments[:half], arguments[half:]):  # arguments arrive in fragments
                await send(chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}))
            await send(chunk({}, "tool_calls"))
            await send(b"data: [DONE]\n\n")
            await send(b"")
            return True
        await send(chunk({"role": "assistant", "content": ""}))
        for sent, word in enumerate(re.findall(r"\s*\S+", self.chat_reply)):
            if fault.cut_after is not None and sent >= fault.cut_after:
                writer.close()
                return False
            if self.chat_word_delay:
                await asyncio.sleep(self.chat_word_delay)
            data = chunk({"content": word})
            half = len(data) // 2
            await send(data[:half])  # one event split across two reads
            await send(data[half:])
        await send(chunk({}, "stop"))
        usage = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "choices": [],
            "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29},
        }
        await send(f"data: {json.dumps(usage)}\n\n".encode())
        await send(b"data: [DONE]\n\n")
        await send(b"")
        return True

    async def _speech(
        self,
        headers: dict[str, str],
        raw: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        body = json.loads(raw)
        record = SpeechRequest(headers, body, time.monotonic())
        self.speech_requests.append(record)
        fault = self.speech_faults.popleft() if self.speech_faults else HttpFault()
        if (handled := await no_answer(fault, reader, writer, _failure(fault))) is not None:
            return handled
        if body.get("voice") not in VOICES:
            message = f"Invalid value for 'voice': {body.get('voice')!r}."
            await send_json(writer, 400, _error_body(message, "invalid_value", "voice"))
            return True
        if body.get("response_format") != "pcm" or not body.get("input"):
            await send_json(writer, 400, _error_body("bad request", "invalid_value"))
            return True
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: audio/pcm\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        await writer.drain()
        if fault.stall == "body":
            await wait_for_hangup(reader)
            return False
        await asyncio.sleep(self.first_byte_delay)
        try:
            return await self._stream_audio(record, fault, reader, writer)
        except ConnectionError:
            self.speech_hangups += 1  # the client went away mid-stream
            return False

    async def _stream_audio(
        self,
        record: SpeechRequest,
        fault: HttpFault,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        audio = speech_pcm(str(record.body["input"]))
        sizes = itertools.cycle(self.chunk_sizes)
        pos = 0
        while pos < len(audio):
            if fault.cut_after is not None and pos >= fault.cut_after:
                writer.close()
                return False
            size = next(sizes)
            if fault.cut_after is not None:
                size = min(size, fault.cut_after - pos)
            part = audio[pos : pos + size]
            writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            await writer.drain()
            if pos == 0:
                record.first_byte_at = time.monotonic()
            pos += len(part)
            if fault.stall == "rest":
                await wait_for_hangup(reader)
                raise ConnectionResetError("the client hung up")
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    # ---------------------------------------------------------------------------- realtime

    def _ws_handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        self.ws_paths.append(request.path)
        path = urllib.parse.urlsplit(request.path).path
        if path != "/v1/realtime":
            return connection.respond(HTTPStatus.NOT_FOUND, "no such endpoint\n")
        if self.realtime_handshake_faults:
            status, headers = self.realtime_handshake_faults.popleft()
            response = connection.respond(status, json.dumps(_error_body("fake", "fake")))
            for name, value in headers.items():
                response.headers[name] = value
            return response
        auth = request.headers.get("Authorization")
        if not self._authorized(auth):
            self.unauthorized += 1
            body = json.dumps(self._auth_error(auth))
            response = connection.respond(HTTPStatus.UNAUTHORIZED, body)
            response.headers["Content-Type"] = "application/json"
            return response
        return None

    async def _send(self, ws: ServerConnection, event: dict[str, Any]) -> None:
        await ws.send(json.dumps({"event_id": f"event_{next(self._events)}", **event}))

    async def _ws_client(self, ws: ServerConnection) -> None:
        self.ws_connections += 1
        self._sockets.add(ws)
        buffer = bytearray()
        previous: str | None = None
        try:
            await self._send(ws, {"type": "session.created", "session": {"type": "transcription"}})
            async for message in ws:
                try:
                    event = json.loads(message)
                except ValueError:
                    await self._send(ws, {"type": "error", "error": {"code": "invalid_json"}})
                    continue
                kind = event.get("type")
                if kind == "session.update":
                    self.session_updates.append(event)
                    await self._send(ws, {"type": "session.updated", "session": event["session"]})
                    if self.realtime_accept_then_close:
                        await drop(ws, 1011)
                        return
                elif kind == "input_audio_buffer.append":
                    data = base64.b64decode(event["audio"])
                    self.append_sizes.append(len(data))
                    buffer += data
                elif kind == "input_audio_buffer.clear":
                    buffer.clear()
                    self.cleared += 1
                    await self._send(ws, {"type": "input_audio_buffer.cleared"})
                elif kind == "input_audio_buffer.commit":
                    previous = await self._commit(ws, buffer, previous)
                    if previous == "":
                        return
                else:
                    error = {"code": "unknown_event", "message": f"unknown event {kind}"}
                    await self._send(ws, {"type": "error", "error": error})
        except ConnectionClosed:
            pass
        finally:
            self._sockets.discard(ws)

    async def _commit(
        self, ws: ServerConnection, buffer: bytearray, previous: str | None
    ) -> str | None:
        """Handle a commit; the item id, or "" when the fault script closed the socket."""
        received = time.monotonic()
        if len(buffer) < MIN_COMMIT_BYTES:
            error = {
                "type": "invalid_request_error",
                "code": "input_audio_buffer_commit_empty",
                "message": "Error committing input audio buffer: buffer too small. Expected at "
                f"least 100ms of audio, but buffer only has {len(buffer) / 48:.2f}ms of audio.",
            }
            await self._send(ws, {"type": "error", "error": error})
            return previous
        item_id = f"item_{next(self._items)}"
        commit = Commit(bytes(buffer), item_id, received)
        self.commits.append(commit)
        buffer.clear()
        fault = self.realtime_faults.popleft() if self.realtime_faults else None
        committed = {"item_id": item_id, "previous_item_id": previous}
        await self._send(ws, {"type": "input_audio_buffer.committed", **committed})
        await self._send(ws, {"type": "conversation.item.added", "item": {"id": item_id}})
        if fault == "close_1011":
            await ws.close(1011, "internal server error")
            return ""
        if fault == "drop":
            ws.transport.abort()
            return ""
        task = asyncio.create_task(self._transcribe(ws, commit, fault))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return item_id

    async def _transcribe(
        self, ws: ServerConnection, commit: Commit, fault: RealtimeFault | None
    ) -> None:
        async def item_event(kind: str, **fields: Any) -> None:
            event = {"type": f"conversation.item.input_audio_transcription.{kind}"}
            await self._send(ws, {**event, "item_id": commit.item_id, "content_index": 0, **fields})

        with contextlib.suppress(ConnectionClosed):
            await asyncio.sleep(self.transcribe_delay)
            text = self.transcripts.popleft() if self.transcripts else self.default_transcript
            if fault == "silent":
                return
            if fault == "malformed":
                delta = "conversation.item.input_audio_transcription.delta"
                await ws.send('{"type": "' + delta + '", "item_id": ')
                await ws.send("[1, 2, 3]")
                await ws.send('{"no_type": true}')
                await ws.send(b"\xff\xfe\x00 not json")
                await item_event("delta", delta=5)
            if fault == "fail":
                error = {"type": "transcription_error", "code": "audio_unintelligible",
                         "message": "Audio could not be transcribed."}  # fmt: skip
                await item_event("failed", error=error)
                return
            for i, word in enumerate(text.split(" ")):
                await item_event("delta", delta=word if i == 0 else f" {word}")
                if self.delta_interval:
                    await asyncio.sleep(self.delta_interval)
            commit.completed_at = time.monotonic()
            await item_event("completed", transcript=text)


def _error_body(message: str, code: str, param: str | None = None) -> dict[str, Any]:
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return {"error": error}


def _failure(fault: HttpFault) -> dict[str, Any]:
    return _error_body(f"fake failure {fault.status}", "fake")
