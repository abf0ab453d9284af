"""The speech-to-speech provider misbehaves: OpenAI Realtime's fake, behind the fault proxy, is
the app's engine (no fallback: the same engine must come back). Wall-clock time: the sockets are
real."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from assistant.app.engines import AgentEngineSet
from assistant.engines.openai.agent import OpenAIRealtimeAgent
from assistant.events import Source
from tests.fakes.realtime_agent_server import FakeRealtimeAgent
from tests.faults.matrix import Context, Observed, Scenario
from tests.faults.proxy import Fault, FaultProxy
from tests.faults.scenarios.common import fault_then_recover
from tests.faults.scenarios.network import DEADLINE, POLICY

Arm = Callable[[FakeRealtimeAgent, FaultProxy], object]


def realtime_run(arm: Arm) -> Callable[[Context], Any]:
    """The app on the Realtime fake (behind the proxy, every key the canary): a good turn,
    ``arm``, a turn that meets the fault, then a turn that must succeed."""

    async def run(ctx: Context) -> Observed | None:
        ctx.keys_in_environment()
        fake = await ctx.stack.enter_async_context(FakeRealtimeAgent(key=ctx.canary))
        proxy = await ctx.stack.enter_async_context(FaultProxy(fake.url))
        url = proxy.url(fake.url)
        await fault_then_recover(
            ctx,
            engines=lambda _clock: AgentEngineSet(
                cast(Any, OpenAIRealtimeAgent(url, policy=POLICY, reply_timeout=DEADLINE))
            ),
            virtual=False,
            warm=True,
            arm=lambda _rig: arm(fake, proxy),
            settle=1.5,
        )
        return None

    return run


def _scenario(name: str, what: str, message: str | None, arm: Arm, turns: int = 3) -> Scenario:
    return Scenario(
        f"s2s {name}", "s2s", what, message, Source.S2S, 4.0 if message else 0.0, 12.0, turns,
        realtime_run(arm), virtual=False,
    )  # fmt: skip


def _reply_fault(fault: Any) -> Arm:
    return lambda fake, _proxy: fake.reply_faults.append(fault)


def _proxy_fault(fault: Fault) -> Arm:
    return lambda _fake, proxy: proxy.arm(fault)


SCENARIOS = (
    _scenario(
        "drop mid-reply",
        "the provider drops the session after some audio (once)",
        r"error \[s2s\] The reply failed: .+ The reply was cut short\.",
        _reply_fault("drop_mid_reply"),
    ),
    _scenario(
        "silent reply",
        "the provider starts an answer and never sends it (once)",
        r"error \[s2s\] The reply failed: OpenAI Realtime: no reply within .+",
        _reply_fault("silent"),
    ),
    _scenario(
        "reset",
        "a TCP reset on the open session between turns (once)",
        None,
        _proxy_fault(Fault("reset", times=1)),
    ),
    _scenario(
        "garble",
        "the frames of the session are garbled while a turn waits for its answer (once); the "
        "turn is withdrawn and the user asked to say it again",
        r"error \[s2s\] Speech to speech failed before answering; please say that again\.",
        _proxy_fault(Fault("garble", times=1)),
        turns=2,
    ),
)
