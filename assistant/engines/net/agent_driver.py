"""The one driver of the speech-to-speech providers (OpenAI Realtime, AssemblyAI's Voice Agent).

``AgentWire`` is what their wire rules share (no I/O): the user's audio resampled from the
capture rate to the provider's and batched into messages (``audio_message`` says their shape),
the audio of the turn being answered kept until its reply brings output, so that a connection
lost before then sends the turn again on the next one (nothing was heard: nothing is lost), a
deadline for the reply's first output and one for a reply that goes quiet, the earlier turns
(given at the start and ``remember``\\ ed since) for a provider that must be told them again on
a new connection, and a reply cut off by a lost connection ending ``failed``.

``AgentConnection`` is an ``s2s.AgentSession`` that runs an ``AgentWire`` with the shared
``net.wire.WireDriver``; ``AgentEngine`` is the engine side (key, endpoint, policy).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Hashable, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import ClassVar, TypedDict

import numpy as np
import soxr

from assistant import secrets
from assistant.engines import s2s
from assistant.engines.base import PCM, EngineError, Message, queued
from assistant.engines.net.messages import Message as Json
from assistant.engines.net.messages import Outgoing
from assistant.engines.net.pacing import RealtimePacer
from assistant.engines.net.retry import Policy
from assistant.engines.net.wire import Wire, WireDriver

log = logging.getLogger(__name__)

#: The capture path's rate (what ``push`` takes).
INPUT_RATE = 16_000


class AudioBatcher:
    """16 kHz capture audio → the provider's rate, in batches of ``batch_ms``."""

    def __init__(self, rate: int, batch_ms: int) -> None:
        self.rate = rate
        self._resampler = soxr.ResampleStream(INPUT_RATE, rate, 1, dtype="int16")
        self._pending = bytearray()
        self._batch = max(1, batch_ms) * rate * 2 // 1000

    def add(self, pcm: PCM) -> list[bytes]:
        """Full batches of ``pcm`` (s16le at ``rate``); the rest waits for more."""
        samples = np.ascontiguousarray(pcm, dtype=np.int16).reshape(-1)
        self._pending += self._resampler.resample_chunk(samples).astype("<i2").tobytes()
        out = []
        while len(self._pending) >= self._batch:
            out.append(bytes(self._pending[: self._batch]))
            del self._pending[: self._batch]
        return out

    def flush(self) -> bytes:
        """Whatever is left, the resampler drained (the utterance ended)."""
        tail = self._resampler.resample_chunk(np.zeros(0, np.int16), last=True)
        data = bytes(self._pending) + tail.astype("<i2").tobytes()
        self.reset()
        return data

    def reset(self) -> None:
        self._resampler.clear()
        self._pending.clear()


class WireTimeouts(TypedDict, total=False):
    """How long an ``AgentWire`` waits for a reply's first output (``reply_timeout``) and for
    more of a reply that went quiet (``stall_timeout``); providers pass them on unchanged."""

    reply_timeout: float
    stall_timeout: float


class AgentWire(Wire[s2s.AgentEvent]):
    """Rules every speech-to-speech provider shares; see the module docstring.

    Providers implement the message shapes (``audio_message``, ``answer_messages``, …) and
    ``receive``; they call ``_reply_started``, ``_output``, ``_reply_done`` as replies go."""

    #: The provider's audio rate, both ways.
    rate = 24_000
    batch_ms = 100

    def __init__(
        self,
        url: str,
        setup: s2s.AgentSetup,
        *,
        reply_timeout: float = 10.0,
        stall_timeout: float = 8.0,
    ) -> None:
        super().__init__()
        self._url = url
        self.setup = setup
        self.history: list[Message] = list(setup.history)
        self._reply_timeout = reply_timeout
        self._stall_timeout = stall_timeout
        self._batcher = AudioBatcher(self.rate, self.batch_ms)
        #: Audio of the open utterance queued or sent on this connection.
        self._utterance: list[Outgoing] = []
        #: What the turn being answered sent (audio and the answer request), until output.
        self._asked: list[Outgoing] = []
        self._asked_out = False  # the answer request left on this connection
        self._resend = False
        #: The reply in progress (its id), and whether it produced output yet.
        self._reply: str | None = None
        self._output = False
        #: Seconds of audio sent on this connection (the provider's input clock).
        self.sent_seconds = 0.0

    def url(self) -> str:
        return self._url

    # --------------------------------------------------------------------- for the session

    def audio(self, pcm: PCM, now: float) -> None:
        for batch in self._batcher.add(pcm):
            self._queue_audio(batch)

    def _queue_audio(self, data: bytes) -> None:
        audio = base64.b64encode(data).decode("ascii")
        item = Outgoing(self.audio_message(audio), len(data) / (2 * self.rate))
        if not self.setup.server_turns:  # the provider's turns are not sent again
            self._utterance.append(item)
        self._out.append(item)

    def commit(self, now: float) -> bool:
        """The user's turn ended; False when there was nothing to answer (too short)."""
        tail = self._batcher.flush()
        if tail:
            self._queue_audio(tail)
        seconds = sum(item.audio for item in self._utterance)
        if seconds < self.min_commit_seconds():
            self._drop_utterance()
            return False
        self._ask(self.commit_messages(seconds))
        return True

    def clear(self, now: float) -> None:
        self._batcher.reset()
        self._drop_utterance()

    def say(self, text: str, now: float) -> None:
        self._ask(self.say_messages(text))

    def interrupt(
        self, reply: str, heard: Sequence[s2s.Heard], heard_text: str, now: float
    ) -> None:
        self._out.extend(self.interrupt_messages(reply, heard, heard_text))
        if reply == self._reply:
            self._deadlines.pop("reply", None)

    def tool_results(self, reply: str, results: Sequence[tuple[str, str]], now: float) -> None:
        self._ask(self.result_messages(reply, results))

    def remember(self, messages: Sequence[Message]) -> None:
        """A finished turn, as heard: part of the context a new connection starts from."""
        self.history.extend(messages)

    def _ask(self, messages: list[Outgoing]) -> None:
        """Ask for an answer: ``messages`` (and the utterance's audio) are kept until output."""
        self._asked = [*self._utterance, *messages]
        self._utterance = []
        self._asked_out = False
        self._output = False
        self._out.extend(messages)

    def _drop_utterance(self) -> None:
        if self._utterance:
            self._out.extend(self.clear_messages())
        self._utterance = []

    # ----------------------------------------------------------------------------- connection

    def sent(self, item: Outgoing, now: float) -> None:
        self.sent_seconds += item.audio
        if self._asked and item is self._asked[-1]:
            # The answer is owed from when the request left, not from when it was queued.
            self._asked_out = True
            if self._reply is None:
                self._deadlines["reply"] = now + self._reply_timeout

    def dropped(self, error: EngineError, now: float) -> bool:
        self.sent_seconds = 0.0
        self._deadlines.pop("reply", None)
        if self._reply is not None and self._output:
            # ``error`` already names the service.
            cut = EngineError(f"{error} The reply was cut short.", engine=self.service.engine)
            self._reply_done(self._reply, "failed", cut)
            self._asked = []
        elif self._asked:
            # Nothing of the answer was heard: the turn goes out again on the next connection.
            self._resend = self._asked_out
            self._reply = None
        return False

    def reconnected(self, now: float) -> list[Outgoing]:
        resend, self._resend = self._resend, False
        if not resend:
            return []
        log.info("%s: sending the unanswered turn again", self.service.label)
        self._asked_out = False
        return list(self._asked)

    # --------------------------------------------------------------------------- replies

    def _reply_started(self, reply: str, now: float) -> None:
        self._reply = reply
        self._output = False
        self._deadlines["reply"] = now + self._reply_timeout
        self._events.append(s2s.ReplyStarted(reply))

    def _got_output(self, now: float) -> None:
        """Audio or text of the reply arrived: the turn need not be sent again."""
        self._output = True
        self._asked = []
        self._deadlines["reply"] = now + self._stall_timeout

    def _reply_done(
        self, reply: str, status: s2s.ReplyStatus, error: EngineError | None = None
    ) -> None:
        if reply == self._reply or self._reply is None:
            self._reply = None
            self._deadlines.pop("reply", None)
        if status != "failed" or self._output:
            self._asked = []
        self._events.append(s2s.ReplyDone(reply, status, error))

    def _on_deadline(self, key: Hashable, now: float) -> None:
        if key != "reply":
            return
        reply = self._reply or ""
        if self._output:
            error = self.service.error(
                f"went quiet mid-reply (nothing for {self._stall_timeout:g} s); the reply was "
                "cut short."
            )
        else:
            error = self.service.error(
                f": no reply within {self._reply_timeout:g} s; please try again."
            )
        if self._reply:
            # The provider may still think it is answering, and refuse the next turn's request.
            self._out.extend(self.cancel_messages(self._reply))
        self._asked = []
        self._output = False
        self._reply = None
        self._events.append(s2s.ReplyDone(reply, "failed", error))

    # --------------------------------------------------------------------------- providers

    def audio_message(self, audio: str) -> str:
        """The JSON text of one audio message carrying base64 ``audio``."""
        raise NotImplementedError

    def min_commit_seconds(self) -> float:
        return 0.0

    def cancel_messages(self, reply: str) -> list[Outgoing]:
        """What stops ``reply`` at the provider once Parley gave up waiting for it (default:
        nothing; the next turn supersedes it)."""
        return []

    def commit_messages(self, seconds: float) -> list[Outgoing]:
        """What ends the user's turn and asks for the answer."""
        raise NotImplementedError

    def clear_messages(self) -> list[Outgoing]:
        return []

    def say_messages(self, text: str) -> list[Outgoing]:
        raise NotImplementedError

    def interrupt_messages(
        self, reply: str, heard: Sequence[s2s.Heard], heard_text: str
    ) -> list[Outgoing]:
        raise NotImplementedError

    def result_messages(self, reply: str, results: Sequence[tuple[str, str]]) -> list[Outgoing]:
        raise NotImplementedError


def json_item(message: Json) -> Outgoing:
    return Outgoing.json(message)


class AgentConnection(WireDriver[s2s.AgentEvent]):
    """An ``s2s.AgentSession`` over a provider's websocket; see the module docstring."""

    what = "the speech-to-speech session"

    def __init__(
        self, wire: AgentWire, *, key: str, policy: Policy, pacer: RealtimePacer | None = None
    ) -> None:
        super().__init__(wire, key=key, policy=policy, pacer=pacer)
        self._agent = wire
        self._queue: asyncio.Queue[s2s.AgentEvent | EngineError | None] = asyncio.Queue()

    @property
    def sample_rate(self) -> int:
        return INPUT_RATE

    def push(self, pcm: PCM) -> None:
        self._check()
        self._agent.audio(pcm, self._loop.time())
        self._pump()

    def commit(self) -> bool:
        self._check()
        answered = self._agent.commit(self._loop.time())
        self._pump()
        return answered

    def clear(self) -> None:
        self._check()
        self._socket.drop_audio()
        self._agent.clear(self._loop.time())
        self._pump()

    def interrupt(self, reply: str, heard: Sequence[s2s.Heard], heard_text: str) -> None:
        if self._socket.failure is not None or self._closed:
            return  # nothing to tell a session that is gone; the reply is stopped locally
        self._agent.interrupt(reply, heard, heard_text, self._loop.time())
        self._pump()

    def tool_results(self, reply: str, results: Sequence[tuple[str, str]]) -> None:
        self._check()
        self._agent.tool_results(reply, results, self._loop.time())
        self._pump()

    def say(self, text: str) -> None:
        self._check()
        self._agent.say(text, self._loop.time())
        self._pump()

    def remember(self, messages: Sequence[Message]) -> None:
        self._agent.remember(messages)

    def events(self) -> AsyncIterator[s2s.AgentEvent]:
        return queued(self._queue)

    async def aclose(self) -> None:
        if self._closed:
            return
        await self._close_socket()
        self._queue.put_nowait(None)

    def _dispatch(self, event: s2s.AgentEvent) -> None:
        self._queue.put_nowait(event)

    def _failed(self, error: EngineError) -> None:
        self._queue.put_nowait(error)


@dataclass(eq=False)
class AgentEngine:
    """A speech-to-speech engine over a websocket: the key, the endpoint, the policy.

    Subclasses say how to build the wire (``_wire``), whose key it uses (``provider``) and
    whether audio must be paced to real time (``_pacer``)."""

    name: ClassVar[str]
    provider: ClassVar[str]

    endpoint: str
    _: KW_ONLY
    policy: Policy = field(default_factory=Policy)
    reply_timeout: float = 10.0

    def _wire(self, setup: s2s.AgentSetup) -> AgentWire:
        raise NotImplementedError

    def _timeouts(self) -> WireTimeouts:
        """The wire's timeouts: the engine's wait for a reply, the policy's for a stall."""
        return WireTimeouts(
            reply_timeout=self.reply_timeout, stall_timeout=self.policy.stall_timeout
        )

    def _pacer(self) -> RealtimePacer | None:
        return None

    async def open(self, setup: s2s.AgentSetup) -> AgentConnection:
        key = await secrets.arequire_key(self.provider)
        connection = AgentConnection(
            self._wire(setup), key=key, policy=self.policy, pacer=self._pacer()
        )
        try:
            await connection.start()
        except BaseException:
            await connection.aclose()
            raise
        return connection

    async def warm_up(self) -> None:
        """Check that a key is set (the session itself opens with the conversation)."""
        await secrets.arequire_key(self.provider)

    async def aclose(self) -> None:
        """Nothing is held between sessions (each session closes its own socket)."""
