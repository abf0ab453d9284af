"""The network between Parley and a cloud provider misbehaves: a fault proxy sits in front of the
fake provider server (Deepgram for speech recognition, OpenAI chat for the language model,
ElevenLabs for the voice), and the app uses it as the user set it up, with the offline engine
configured as the fallback. Wall-clock time: the sockets are real."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from assistant.clock import Clock
from assistant.engines.deepgram import DeepgramSTT
from assistant.engines.elevenlabs import ElevenLabsTTS
from assistant.engines.fallback import FallbackLLM, FallbackSTT, FallbackTTS
from assistant.engines.openai.factories import KeyedChatLLM
from assistant.events import Source
from tests.cloud import fast
from tests.fakes.deepgram_server import FakeDeepgram
from tests.fakes.elevenlabs_server import FakeElevenLabs
from tests.fakes.openai_server import FakeOpenAIServer
from tests.faults.matrix import Context, Observed, Scenario
from tests.faults.proxy import Fault, FaultProxy
from tests.faults.rig import fake_engines
from tests.faults.scenarios.common import fault_then_recover

#: Short deadlines, for servers on 127.0.0.1 — with room for the 150 ms latency scenarios on a
#: loaded machine.
DEADLINE = 1.5
POLICY = fast(first_message_timeout=DEADLINE, stall_timeout=DEADLINE)
PROVIDER = {"stt": "deepgram", "llm": "openai", "tts": "elevenlabs"}


@dataclass
class Served:
    """A fake provider behind a fault proxy, and the app's engines pointed at the proxy."""

    kind: str
    url: str
    proxy: FaultProxy
    fake: Any

    def engines(self, clock: Clock) -> tuple[Any, Any, Any]:
        stt, llm, tts = fake_engines(clock)
        cloud: Any
        spare = dict(zip(("stt", "llm", "tts"), fake_engines(clock, name="local"), strict=True))
        if self.kind == "stt":
            cloud = DeepgramSTT(self.url, policy=POLICY, final_timeout=DEADLINE)
            stt = FallbackSTT([cloud, spare["stt"]])
        elif self.kind == "llm":
            cloud = KeyedChatLLM(
                "openai", self.url, "gpt-4o-mini", required=True, timeout_first_token=DEADLINE
            )
            llm = FallbackLLM([cloud, spare["llm"]])
        else:
            cloud = ElevenLabsTTS(self.url, policy=POLICY)
            tts = FallbackTTS([cloud, spare["tts"]])
        return stt, llm, tts


@contextlib.asynccontextmanager
async def serve(kind: str, key: str, **fake_options: Any) -> AsyncIterator[Served]:
    """The fake server of ``kind`` accepting ``key``, behind a proxy (not misbehaving yet)."""
    if kind == "llm":
        openai = FakeOpenAIServer(api_key=key).start()
        for name, value in fake_options.items():
            setattr(openai, name, value)
        try:
            async with FaultProxy(openai.http_url) as proxy:
                yield Served(kind, proxy.url(openai.http_url), proxy, openai)
        finally:
            await asyncio.to_thread(openai.stop)
        return
    server: Any = (
        FakeDeepgram(key=key, endpointing=None, utterance_end=None, **fake_options)
        if kind == "stt"
        else FakeElevenLabs(key=key, **fake_options)
    )
    async with server, FaultProxy(server.url) as proxy:
        yield Served(kind, proxy.url(server.url), proxy, server)


def provider_run(
    kind: str, arm: Callable[[Served], object], **fake_options: Any
) -> Callable[[Context], Any]:
    """A scenario run: the app on ``kind``'s provider (behind the proxy, every key the canary),
    a good turn, ``arm(served)``, a turn that meets the fault, then one that must succeed."""

    async def run(ctx: Context) -> Observed | None:
        ctx.keys_in_environment()
        served = await ctx.stack.enter_async_context(serve(kind, ctx.canary, **fake_options))
        how = "talk" if kind == "stt" else "type"
        await fault_then_recover(
            ctx,
            engines=served.engines,
            virtual=False,
            warm=True,
            arm=lambda _rig: arm(served),
            settle=1.5,
            fault_turn=how,
            recover_turn=how,
        )
        return None

    return run


def through(kind: str, fault: Fault) -> Callable[[Context], Any]:
    """A run with ``fault`` armed on the proxy before the second turn."""
    return provider_run(kind, lambda served: served.proxy.arm(fault))


def _network(
    kind: str, label: str, fault: Fault, what: str, message: str | None, ci: bool
) -> Scenario:
    """A proxy fault in front of ``kind``'s provider: ``message`` within 4 s (none: absorbed),
    recovery within 8 s when absorbed and 10 s otherwise, three turns on disk."""
    return Scenario(
        f"{kind} {label}", "network", what, message, Source(kind),
        4.0 if message else 0.0, 10.0 if message else 8.0, 3, through(kind, fault),
        virtual=False, ci=ci,
    )  # fmt: skip


def _absorbed(kind: str, label: str, fault: Fault, what: str, ci: bool = True) -> Scenario:
    return _network(kind, label, fault, what, None, ci)


def _fallback(kind: str, label: str, fault: Fault, what: str, ci: bool = True) -> Scenario:
    message = rf"notice \[{kind}\] {PROVIDER[kind]} failed \(.+\); using local instead"
    return _network(kind, label, fault, what, message, ci)


def _mid_reply(kind: str, label: str, fault: Fault, what: str, ci: bool = True) -> Scenario:
    return _network(kind, label, fault, what, rf"error \[{kind}\] The reply failed: .+", ci)


SLOW = Fault("latency", delay=0.15)
SLICED = Fault("slice")
KILLED = Fault("accept_close")


#: Every fault of the proxy runs in CI against at least one provider (the websocket recognizer
#: or voice, or the HTTP language model); ``parley bench faults`` runs them against all three.
SCENARIOS = (
    # speech recognition: every fault hits a session the recognizer opened at once
    _absorbed("stt", "latency 150 ms", SLOW, "every packet 150 ms late, both ways", ci=False),
    _absorbed(
        "stt",
        "slow uplink",
        Fault("bandwidth", direction="up", rate=64_000),
        "the uplink carries 64 KB/s (audio needs 32 KB/s)",
    ),
    _absorbed("stt", "sliced", SLICED, "data arrives 1 to 7 bytes at a time", ci=False),
    _fallback("stt", "stall", Fault("stall"), "the server goes silent after the handshake"),
    _fallback("stt", "reset", Fault("reset"), "a TCP reset right after the handshake"),
    _fallback("stt", "close", Fault("close"), "the connection is closed right after the handshake"),
    _fallback("stt", "garble", Fault("garble"), "the frames after the handshake are garbled"),
    _fallback("stt", "accept then close", KILLED, "every TCP connection is closed on accept"),
    # the language model
    _absorbed("llm", "latency 150 ms", SLOW, "every packet 150 ms late, both ways", ci=False),
    _absorbed(
        "llm",
        "slow downlink",
        Fault("bandwidth", rate=2_000),
        "the reply streams at 2 KB/s",
        ci=False,
    ),
    _absorbed("llm", "sliced", SLICED, "data arrives 1 to 7 bytes at a time"),
    _fallback("llm", "stall", Fault("stall"), "the response headers come, then nothing"),
    _fallback("llm", "reset", Fault("reset"), "a TCP reset before the first token"),
    _mid_reply(
        "llm",
        "close mid-reply",
        Fault("close", after=700, times=1),
        "the connection closes after a few tokens (once)",
    ),
    _fallback("llm", "garble", Fault("garble"), "the response body is garbled"),
    _fallback(
        "llm", "accept then close", KILLED, "every TCP connection is closed on accept", ci=False
    ),
    # the voice
    _absorbed("tts", "latency 150 ms", SLOW, "every packet 150 ms late, both ways"),
    _absorbed(
        "tts", "slow downlink", Fault("bandwidth", rate=100_000), "the audio streams at 100 KB/s"
    ),
    _absorbed("tts", "sliced", SLICED, "data arrives 1 to 7 bytes at a time", ci=False),
    _fallback(
        "tts", "stall", Fault("stall"), "the server goes silent after the handshake", ci=False
    ),
    _mid_reply(
        "tts",
        "reset mid-reply",
        Fault("reset", after=20_000, times=1),
        "a TCP reset after some audio (once)",
    ),
    _fallback(
        "tts",
        "close",
        Fault("close"),
        "the connection is closed right after the handshake",
        ci=False,
    ),
    _fallback(
        "tts", "garble", Fault("garble"), "the frames after the handshake are garbled", ci=False
    ),
    _fallback(
        "tts", "accept then close", KILLED, "every TCP connection is closed on accept", ci=False
    ),
)
