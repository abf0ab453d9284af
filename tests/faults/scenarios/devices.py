"""Sound devices that fail: a speaker or microphone that dies without a word, a close that hangs in
the audio backend, a stream whose callback breaks, a device missing at start. The real
``DevicePlayer`` and ``MicrophoneCapture`` over a software sound card, in wall-clock time (the
card's streams run on threads, as PortAudio's do); the user presses Retry when told to."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from assistant.events import Source
from tests.faults.devices import DeviceFault, SoundCard
from tests.faults.matrix import Context, Observed, Scenario

Kind = Literal["input", "output"]

#: The watchdog's stall (2 s) plus room for the thread scheduling of a loaded machine.
NOTICE_WITHIN = 4.0


def broken(
    kind: Kind, fault: DeviceFault, *, hang_closes: bool = False, at_start: bool = False
) -> Callable[[Context], Any]:
    """A run: the device of ``kind`` fails with ``fault`` (from the start, or after a good
    turn), the user waits for the message, reconnects the device and presses Retry; then a turn
    must succeed — spoken if the microphone works, typed otherwise."""

    async def run(ctx: Context) -> Observed | None:
        card = SoundCard()
        ctx.stack.callback(card.release)
        if at_start:
            card.break_(kind, fault)
            card.hang_closes = hang_closes
        rig = await ctx.rig(virtual=False, card=card)
        rig.fault()
        if not at_start:
            await rig.turn("talk")
            card.break_(kind, fault)
            card.hang_closes = hang_closes
            rig.fault()
        # The app keeps being used while the device is broken: a typed message works.
        await rig.turn("type", within=NOTICE_WITHIN + 6.0)
        await rig.until(
            lambda: any(s.event.source == f"audio-{kind}" for s in rig.shown()),
            within=NOTICE_WITHIN,
        )
        await rig.step(2.0)  # the user reads the message, reconnects the device, presses Retry
        card.repair()
        await rig.retry()
        # Success is judged, not speed: restarting the streams on a loaded machine takes seconds.
        await rig.turn("talk", within=30.0)
        return None

    return run


def _scenario(
    name: str,
    kind: Kind,
    fault: DeviceFault,
    what: str,
    message: str,
    *,
    hang_closes: bool = False,
    at_start: bool = False,
) -> Scenario:
    return Scenario(
        name,
        "devices",
        what,
        message,
        Source.AUDIO_INPUT if kind == "input" else Source.AUDIO_OUTPUT,
        NOTICE_WITHIN,
        NOTICE_WITHIN + 10.0,
        2 if at_start else 3,
        broken(kind, fault, hang_closes=hang_closes, at_start=at_start),
        virtual=False,
    )


LOST_OUTPUT = r"error \[audio-output\] Audio output stopped: the output device was lost"
LOST_INPUT = r"error \[audio-input\] .*(microphone|input).*(lost|stopped)"

SCENARIOS = (
    _scenario(
        "speaker dies silently",
        "output",
        "silent",
        "the speaker's stream stops calling back; no error, no finished callback",
        LOST_OUTPUT,
    ),
    _scenario(
        "speaker dies, close hangs",
        "output",
        "silent",
        "the speaker dies silently and closing its stream hangs in the backend",
        LOST_OUTPUT,
        hang_closes=True,
    ),
    _scenario(
        "speaker callback raises",
        "output",
        "malformed",
        "the backend hands the speaker's callback a buffer of the wrong shape",
        LOST_OUTPUT,
    ),
    _scenario(
        "speaker missing at start",
        "output",
        "missing",
        "no output device when Parley starts",
        r"error \[audio-output\] .*No audio output device",
        at_start=True,
    ),
    _scenario(
        "microphone dies silently",
        "input",
        "silent",
        "the microphone's stream stops calling back; no error, no finished callback",
        LOST_INPUT,
    ),
    _scenario(
        "microphone dies, close hangs",
        "input",
        "silent",
        "the microphone dies silently and closing its stream hangs in the backend",
        LOST_INPUT,
        hang_closes=True,
    ),
    _scenario(
        "microphone sends malformed blocks",
        "input",
        "malformed",
        "the backend hands the microphone's callback blocks of the wrong shape",
        LOST_INPUT,
    ),
    _scenario(
        "microphone missing at start",
        "input",
        "missing",
        "no input device when Parley starts",
        r"error \[audio-input\] .*(No microphone|No audio input device)",
        at_start=True,
    ),
)
