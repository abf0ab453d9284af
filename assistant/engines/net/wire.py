"""What every sans-I/O provider wire shares, and the driver that runs one over a socket.

A wire holds a provider's protocol rules with no sockets, no tasks and no clock of its own (the
time is passed in), in the manner of ``websockets``' ``Protocol``: the driver feeds it server
messages (``receive``), tells it what left (``sent``) and what happened to the connection
(``dropped`` / ``reconnected``), then drains ``data_to_send()`` and ``events_received()``;
``deadline()`` says when ``expire`` is due next. ``Wire`` keeps those buffers and deadlines.

Events every wire may report besides its own: ``Ready`` (the server started the session: send
on), ``Finished`` (it acknowledged the goodbye) and ``Failed`` (the session cannot go on).

``WireDriver`` runs a wire over a ``ReconnectingSocket``: it connects with the wire's URL and
headers, sends the wire's opening messages and, when the server speaks first, waits for
``Ready``; every server message goes into the wire, the wire's messages into the socket's
outbox, its events to ``_dispatch``, and one timer is armed for its next deadline. The
streaming STT session and the speech-to-speech session are drivers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from assistant.engines.base import EngineError
from assistant.engines.net.errors import Service
from assistant.engines.net.messages import Outgoing
from assistant.engines.net.pacing import RealtimePacer
from assistant.engines.net.retry import Policy
from assistant.engines.net.websocket import ReconnectingSocket, closed_error, connect


@dataclass(frozen=True, slots=True)
class Ready:
    """The server has started the session: messages may flow."""


@dataclass(frozen=True, slots=True)
class Finished:
    """The server acknowledged the goodbye: closing need not wait any longer."""


@dataclass(frozen=True, slots=True)
class Failed:
    """The session cannot go on (the server rejected the key mid-session, say)."""

    error: EngineError


class Wire[E]:
    """The outgoing messages, events and deadlines of a wire; see the module docstring."""

    service: Service
    #: The server speaks first on a new connection: wait for ``Ready`` before sending on.
    greets = False
    #: (interval, message) sent whenever nothing else went out for that long.
    keepalive: tuple[float, Outgoing] | None = None

    def __init__(self) -> None:
        self._out: list[Outgoing] = []
        self._events: list[E | Ready | Finished | Failed] = []
        self._deadlines: dict[Hashable, float] = {}

    def data_to_send(self) -> list[Outgoing]:
        out, self._out = self._out, []
        return out

    def events_received(self) -> list[E | Ready | Finished | Failed]:
        events, self._events = self._events, []
        return events

    def deadline(self) -> float | None:
        """When ``expire`` is next due (None: nothing is waiting)."""
        return min(self._deadlines.values(), default=None)

    def expire(self, now: float) -> None:
        """Act on every deadline that has passed by ``now``."""
        # In time order; keys of different kinds (a name, a (name, turn) pair) are not compared.
        due = sorted(((at, key) for key, at in self._deadlines.items() if at <= now), key=_first)
        for _, key in due:
            if self._deadlines.pop(key, None) is not None:
                self._on_deadline(key, now)

    def _on_deadline(self, key: Hashable, now: float) -> None:
        raise NotImplementedError

    # ---------------------------------------------------------------------------- connection

    def url(self) -> str:
        raise NotImplementedError

    def headers(self, key: str) -> dict[str, str]:
        raise NotImplementedError

    def start(self) -> list[Outgoing]:
        """Sent first on every new connection, before waiting for ``Ready``."""
        return []

    def goodbye(self) -> Outgoing | None:
        """Sent on close; the server answers with what becomes ``Finished``."""
        return None

    def receive(self, raw: str | bytes, now: float) -> None:
        raise NotImplementedError

    def sent(self, item: Outgoing, now: float) -> None:
        """``item`` has left (deadlines run from when a request left, not when it was queued)."""

    def dropped(self, error: EngineError, now: float) -> bool:
        """The connection dropped with ``error``. True when the audio still queued is lost and
        must not be sent."""
        return False

    def reconnected(self, now: float) -> list[Outgoing]:
        """A new connection is ready: the messages to send before anything queued."""
        return []


def _first(pair: tuple[float, Hashable]) -> float:
    return pair[0]


class WireDriver[E]:
    """Runs a ``Wire`` over a ``ReconnectingSocket``; see the module docstring.

    Subclasses act on the wire's own events in ``_dispatch`` and on a session that gave up in
    ``_failed``; ``Ready``, ``Finished`` and ``Failed`` are handled here."""

    #: What the session is called in errors ("the transcription session").
    what = "the session"

    def __init__(
        self,
        wire: Wire[E],
        *,
        key: str,
        policy: Policy,
        pacer: RealtimePacer | None = None,
    ) -> None:
        self.key = key
        self.policy = policy
        self._wire = wire
        self._loop = asyncio.get_running_loop()
        self._finished = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._closed = False
        self._socket = ReconnectingSocket(
            wire.service,
            connect=self._connect,
            policy=policy,
            on_message=self._on_message,
            handshake=self._handshake,
            on_sent=self._on_sent,
            on_drop=self._on_drop,
            on_reconnect=self._on_reconnect,
            on_failure=self._on_failure,
            pacer=pacer,
            keepalive=wire.keepalive,
        )

    @property
    def usable(self) -> bool:
        """Connected (or reconnecting) and not closed: a pre-warmed session can be handed out."""
        return self._socket.failure is None and not self._closed

    @property
    def connections(self) -> int:
        """Connections opened so far (reconnects included)."""
        return self._socket.connections

    async def start(self) -> None:
        """Connect and let the server start the session; raises ``EngineError``."""
        await self._socket.ensure()
        self._pump()  # what the wire queued while the session started

    def _check(self) -> None:
        if self._socket.failure is not None:
            raise self._socket.failure
        if self._closed:
            raise self._wire.service.error(f": {self.what} was closed.")

    async def _close_socket(self) -> None:
        self._closed = True
        self._cancel_timer()
        await self._socket.close(self._wire.goodbye(), self._finished)

    # ------------------------------------------------------------------------------ socket

    async def _connect(self) -> ClientConnection:
        wire = self._wire
        return await connect(wire.service, wire.url(), wire.headers(self.key), self.policy)

    async def _handshake(self, ws: ClientConnection) -> None:
        """Send the wire's opening messages; if the server speaks first, wait for it."""
        wire = self._wire
        try:
            for item in wire.start():
                await ws.send(item.data)
            if not wire.greets:
                return
            async with asyncio.timeout(self.policy.first_message_timeout):
                while True:
                    wire.receive(await ws.recv(), self._loop.time())
                    for item in wire.data_to_send():  # the wire's answers during the handshake
                        await ws.send(item.data)
                    events = wire.events_received()
                    for event in events:
                        if isinstance(event, Failed):
                            raise event.error
                        self._handle(event)
                    if any(isinstance(event, Ready) for event in events):
                        return
        except TimeoutError:
            waited = self.policy.first_message_timeout
            raise wire.service.error(f"did not start the session within {waited:g} s.") from None
        except ConnectionClosed as exc:
            raise closed_error(wire.service, exc) from None

    def _on_message(self, raw: str | bytes) -> None:
        self._wire.receive(raw, self._loop.time())
        self._pump()

    def _on_sent(self, item: Outgoing) -> None:
        self._wire.sent(item, self._loop.time())
        self._arm()

    def _on_drop(self, error: EngineError) -> None:
        if self._wire.dropped(error, self._loop.time()):
            self._socket.drop_audio()
        self._pump()

    def _on_reconnect(self) -> list[Outgoing]:
        items = self._wire.reconnected(self._loop.time())
        self._pump()
        return items

    def _on_failure(self, error: EngineError) -> None:
        self._cancel_timer()
        self._failed(error)

    # ---------------------------------------------------------------------------- plumbing

    def _pump(self) -> None:
        """Send what the wire wants sent, act on its events, and arm its next deadline."""
        wire, socket = self._wire, self._socket
        for item in wire.data_to_send():
            if socket.failure is None:
                socket.send(item)
        for event in wire.events_received():
            self._handle(event)
        self._arm()

    def _handle(self, event: E | Ready | Finished | Failed) -> None:
        match event:
            case Ready():
                pass
            case Finished():
                self._finished.set()
            case Failed(error):
                self._socket.abort(error)
            case _:
                self._dispatch(event)

    def _dispatch(self, event: E) -> None:
        raise NotImplementedError

    def _failed(self, error: EngineError) -> None:
        raise NotImplementedError

    def _arm(self) -> None:
        at = self._wire.deadline()
        if at == self._timer_at:
            return
        self._cancel_timer()
        if at is not None:
            self._timer_at = at
            self._timer = self._loop.call_at(at, self._expire)

    def _expire(self) -> None:
        self._timer = self._timer_at = None
        self._wire.expire(self._loop.time())
        self._pump()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None
