"""Engines that fail in every way they can, on the manual clock: before their output and after it,
every time or once, alone or with another engine to fall back to."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from assistant.clock import Clock
from assistant.engines.base import EngineError
from assistant.engines.fake import FakeLLM, FakeSTT, FakeTTS
from assistant.engines.fallback import FallbackLLM, FallbackSTT, FallbackTTS
from assistant.engines.net.errors import RateLimited
from assistant.events import Source
from tests.fakes.flaky import DroppingSTT
from tests.faults.matrix import Context, Observed, Scenario
from tests.faults.rig import fake_engines, short_reply
from tests.faults.scenarios.common import fault_then_recover

DOWN = "cloud: could not reach the service (connection refused)."


def _with(clock: Clock, *, stt: Any = None, llm: Any = None, tts: Any = None) -> Any:
    default = fake_engines(clock)
    return (stt or default[0], llm or default[1], tts or default[2])


def _spare(kind: str, clock: Clock) -> Any:
    stt, llm, tts = fake_engines(clock, name="local")
    return {"stt": stt, "llm": llm, "tts": tts}[kind]


def _falling_back(kind: str, clock: Clock, primary: Any) -> Any:
    """The fake engines, the ``kind`` one being ``primary`` with a local one to fall back to."""
    chain = {"stt": FallbackSTT, "llm": FallbackLLM, "tts": FallbackTTS}[kind]
    return _with(clock, **{kind: chain([primary, _spare(kind, clock)], clock=clock)})


async def _fails_with_fallback(
    ctx: Context, kind: str, primary: Callable[[Clock], Any]
) -> Observed | None:
    """The ``kind`` engine made by ``primary`` fails; a local one is configured behind it."""
    await fault_then_recover(ctx, engines=lambda clock: _falling_back(kind, clock, primary(clock)))
    return None


async def _breaks_off(
    ctx: Context, kind: str, make: Callable[[Clock], Any], fault: str
) -> Observed | None:
    """The ``kind`` engine made by ``make`` breaks off partway through its output until the
    service is back (its ``fault`` cleared)."""
    made: list[Any] = []

    def engines(clock: Clock) -> Any:
        made.append(make(clock))
        return _with(clock, **{kind: made[-1]})

    def fix(_rig: object) -> None:
        setattr(made[-1], fault, None)  # the service is back

    await fault_then_recover(ctx, engines=engines, fix=fix)
    return None


async def llm_down_with_fallback(ctx: Context) -> Observed | None:
    def primary(clock: Clock) -> FakeLLM:
        return FakeLLM(name="cloud", clock=clock, fail_before_first_token=EngineError(DOWN))

    return await _fails_with_fallback(ctx, "llm", primary)


async def llm_fails_mid_reply(ctx: Context) -> Observed | None:
    def llm(clock: Clock) -> FakeLLM:
        return FakeLLM(
            short_reply, ttft=0.05, tokens_per_second=400, clock=clock, fail_after_tokens=4
        )

    return await _breaks_off(ctx, "llm", llm, "fail_after_tokens")


async def llm_rate_limited_briefly(ctx: Context) -> Observed | None:
    class Limited(FakeLLM):
        limited = 1

        async def stream(self, request: Any) -> Any:
            if self.limited:
                self.limited -= 1
                raise RateLimited("cloud: rate limited (HTTP 429)", engine="cloud", retry_after=1.0)
            async for event in FakeLLM.stream(self, request):
                yield event

    def primary(clock: Clock) -> FakeLLM:
        return Limited(short_reply, name="cloud", ttft=0.05, tokens_per_second=400, clock=clock)

    return await _fails_with_fallback(ctx, "llm", primary)


async def llm_rate_limited_long(ctx: Context) -> Observed | None:
    def primary(clock: Clock) -> FakeLLM:
        limited = RateLimited("cloud: rate limited (HTTP 429; retry after 30 s).", retry_after=30)
        return FakeLLM(name="cloud", clock=clock, fail_before_first_token=limited)

    return await _fails_with_fallback(ctx, "llm", primary)


async def tts_down_with_fallback(ctx: Context) -> Observed | None:
    def primary(clock: Clock) -> FakeTTS:
        return FakeTTS(name="cloud", clock=clock, realtime_factor=0.0, fail_after_chunks=0)

    return await _fails_with_fallback(ctx, "tts", primary)


async def tts_fails_mid_reply(ctx: Context) -> Observed | None:
    def voice(clock: Clock) -> FakeTTS:
        return FakeTTS(clock=clock, chars_per_second=60, realtime_factor=0.0, fail_after_chunks=3)

    return await _breaks_off(ctx, "tts", voice, "fail_after_chunks")


async def stt_cannot_open(ctx: Context) -> Observed | None:
    def primary(clock: Clock) -> FakeSTT:
        return FakeSTT(name="cloud", clock=clock, fail_on_open=EngineError(DOWN))

    return await _fails_with_fallback(ctx, "stt", primary)


async def stt_final_fails(ctx: Context) -> Observed | None:
    def engines(clock: Clock) -> Any:
        broken = EngineError("fake: the connection closed (1011 internal error).")
        return _with(clock, stt=FakeSTT(clock=clock, fail_first_final=broken))

    await fault_then_recover(ctx, engines=engines)
    return None


async def stt_drops_with_fallback(ctx: Context) -> Observed | None:
    def engines(clock: Clock) -> Any:
        return _falling_back("stt", clock, DroppingSTT())

    await fault_then_recover(ctx, engines=engines, settle=3.0)
    return None


async def stt_drops_alone(ctx: Context) -> Observed | None:
    def engines(clock: Clock) -> Any:
        return _with(clock, stt=DroppingSTT())

    rig = await ctx.rig(engines=engines)
    rig.fault()
    await rig.step(20.0)  # the recognizer keeps dropping: the app stops retrying and says so
    await rig.turn("type")  # typing still works
    return None


async def reply_with_a_lone_surrogate(ctx: Context) -> Observed | None:
    def engines(clock: Clock) -> Any:
        llm = FakeLLM(ttft=0.05, tokens_per_second=400, clock=clock)
        llm.reply = lambda _r: "Here is an emoji cut in half: \ud83d. Anything else?"
        return _with(clock, llm=llm)

    await fault_then_recover(ctx, engines=engines)
    return None


async def transcript_with_a_lone_surrogate(ctx: Context) -> Observed | None:
    def engines(clock: Clock) -> Any:
        stt = FakeSTT(clock=clock, script=("Half an emoji \udc80 here?", "And now?"))
        return _with(clock, stt=stt)

    await fault_then_recover(ctx, engines=engines)
    return None


SCENARIOS = (
    Scenario(
        "llm down, fallback",
        "engines",
        "the chosen language model cannot be reached; another one is configured",
        r"notice \[llm\] cloud failed \(.*\); using local instead",
        Source.LLM,
        1.0,
        3.0,
        2,
        llm_down_with_fallback,
    ),
    Scenario(
        "llm fails mid-reply",
        "engines",
        "the language model breaks off after a few words (it works again later)",
        r"error \[llm\] The reply failed: the fake language model failed mid-reply",
        Source.LLM,
        1.0,
        6.0,
        2,
        llm_fails_mid_reply,
    ),
    Scenario(
        "llm rate limited for 1 s",
        "engines",
        "HTTP 429 with retry-after 1 s from the chosen language model: waited out",
        None,
        Source.LLM,
        0.0,
        4.0,
        2,
        llm_rate_limited_briefly,
    ),
    Scenario(
        "llm rate limited for 30 s",
        "engines",
        "HTTP 429 with retry-after 30 s: the next engine answers meanwhile",
        r"notice \[llm\] cloud failed \(.*429.*\); using local instead",
        Source.LLM,
        1.0,
        3.0,
        2,
        llm_rate_limited_long,
    ),
    Scenario(
        "tts down, fallback",
        "engines",
        "the chosen voice fails before any audio; another one is configured",
        r"notice \[tts\] cloud failed \(.*\); using local instead",
        Source.TTS,
        1.0,
        3.0,
        2,
        tts_down_with_fallback,
    ),
    Scenario(
        "tts fails mid-reply",
        "engines",
        "the voice breaks off after some audio (it works again later)",
        r"error \[tts\] The reply failed: the fake speech engine failed mid-reply",
        Source.TTS,
        1.0,
        6.0,
        2,
        tts_fails_mid_reply,
    ),
    Scenario(
        "stt cannot open, fallback",
        "engines",
        "the chosen recognizer cannot be reached; another one is configured",
        r"notice \[stt\] cloud failed \(.*\); using local instead",
        Source.STT,
        1.0,
        3.0,
        2,
        stt_cannot_open,
    ),
    Scenario(
        "stt stream breaks at the turn's end",
        "engines",
        "the recognizer's stream breaks while the final is awaited: the turn goes to a new one",
        None,
        Source.STT,
        0.0,
        4.0,
        2,
        stt_final_fails,
    ),
    Scenario(
        "stt accepts then drops, fallback",
        "engines",
        "the recognizer accepts every connection and drops it at once",
        r"notice \[stt\] flaky failed \(.*\); using local instead",
        Source.STT,
        3.0,
        6.0,
        2,
        stt_drops_with_fallback,
    ),
    Scenario(
        "stt accepts then drops, alone",
        "engines",
        "the only recognizer accepts every connection and drops it; the user types instead",
        r"error \[stt\] .*keeps dropping its connection",
        Source.STT,
        20.0,
        25.0,
        1,
        stt_drops_alone,
    ),
    Scenario(
        "reply with a lone surrogate",
        "engines",
        "the model's text holds half a surrogate pair",
        None,
        Source.LLM,
        0.0,
        3.0,
        2,
        reply_with_a_lone_surrogate,
    ),
    Scenario(
        "transcript with a lone surrogate",
        "engines",
        "the recognizer's text holds half a surrogate pair",
        None,
        Source.STT,
        0.0,
        3.0,
        2,
        transcript_with_a_lone_surrogate,
    ),
)
