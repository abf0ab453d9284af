"""The sound devices PortAudio can see.

Never raises because of the machine: no PortAudio library, or no devices at all, is an empty
list (headless servers and CI have no sound card).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from assistant.engines.base import EngineUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    index: int
    name: str
    inputs: int  # max input channels
    outputs: int  # max output channels
    default_samplerate: float
    is_default_input: bool
    is_default_output: bool


def _sounddevice() -> Any | None:
    try:
        import sounddevice
    except OSError:  # the PortAudio library itself is missing
        return None
    return sounddevice


def _defaults(sd: Any) -> tuple[int, int]:
    try:
        d_in, d_out = sd.default.device
        return int(d_in if d_in is not None else -1), int(d_out if d_out is not None else -1)
    except Exception:
        return -1, -1


def list_devices() -> list[DeviceInfo]:
    """All input and output devices, in PortAudio's order."""
    sd = _sounddevice()
    if sd is None:
        return []
    try:
        raw = sd.query_devices()
    except Exception:  # PortAudioError when the host API cannot be initialised
        return []
    d_in, d_out = _defaults(sd)
    out: list[DeviceInfo] = []
    for i, dev in enumerate(raw):
        idx = int(dev.get("index", i))
        out.append(
            DeviceInfo(
                index=idx,
                name=str(dev.get("name", f"device {idx}")),
                inputs=int(dev.get("max_input_channels", 0)),
                outputs=int(dev.get("max_output_channels", 0)),
                default_samplerate=float(dev.get("default_samplerate", 0.0)),
                is_default_input=idx == d_in,
                is_default_output=idx == d_out,
            )
        )
    return out


_HEADSET = re.compile(
    r"head(set|phone)|earphone|earbud|ear-?piece|in-?ear|airpods|buds\b|hands-?free|\bhfp\b"
    r"|\bhsp\b|\bbt\b|bluetooth|jabra|plantronics|poly\b|sennheiser|steelseries|hyperx|arctis",
    re.IGNORECASE,
)


def looks_like_headset(name: str) -> bool:
    """The output device's name suggests a headset or headphones (no speaker in the room)."""
    return bool(_HEADSET.search(name))


def output_name(device: object = None) -> str:
    """The name of an output device (the default one for None); "" when it cannot be told."""
    outputs = [d for d in list_devices() if d.outputs > 0]
    if isinstance(device, int):
        match = [d for d in outputs if d.index == device]
    elif isinstance(device, str) and device:
        match = [d for d in outputs if device.lower() in d.name.lower()]
    else:
        match = [d for d in outputs if d.is_default_output]
    return match[0].name if match else ""


def has_input_device() -> bool:
    return any(d.inputs > 0 for d in list_devices())


def has_output_device() -> bool:
    return any(d.outputs > 0 for d in list_devices())


def describe_missing(kind: str, error: object | None = None, device: object = None) -> str:
    """A one-line message for a missing or unusable ``kind`` ("input"/"output") device."""
    what = "microphone" if kind == "input" else "speaker or headphones"
    devices = list_devices()
    usable = [d for d in devices if (d.inputs if kind == "input" else d.outputs) > 0]
    if not usable:
        detail = "the system reports no audio devices" if not devices else f"none has {kind}s"
        return f"No audio {kind} device: {detail}. Connect a {what} or check the sound settings."
    names = "; ".join(f"{d.index}: {d.name}" for d in usable[:6])
    which = "the default device" if device is None else f"device {device!r}"
    reason = str(error).splitlines()[0] if error else "it is unavailable"
    return f"Cannot open audio {kind} on {which}: {reason}. Available {kind}s: {names}."


# ------------------------------------------------------------------------------------ streams

Kind = Literal["input", "output"]


def _unavailable(kind: Kind, error: Exception, device: object) -> EngineUnavailable:
    return EngineUnavailable(
        describe_missing(kind, error, device), engine=f"audio-{kind}", retryable=False
    )


def stream_defaults(
    kind: Kind, device: object, factory: Callable[..., Any] | None, rate: int | None
) -> tuple[Callable[..., Any], int]:
    """The sounddevice stream class and the device's default rate, unless given."""
    try:
        if factory is None or rate is None:
            import sounddevice as sd

            factory = factory or (sd.InputStream if kind == "input" else sd.OutputStream)
            if rate is None:
                rate = int(sd.query_devices(device, kind)["default_samplerate"])
    except Exception as e:
        raise _unavailable(kind, e, device) from e
    return factory, rate


def start_stream(kind: Kind, device: object, factory: Callable[..., Any], **options: Any) -> Any:
    """Open and start a stream; on failure close what was opened and say what is missing."""
    stream: Any = None
    try:
        stream = factory(device=device, **options)
        stream.start()
    except Exception as e:
        if stream is not None:
            close_quietly(stream)
        raise _unavailable(kind, e, device) from e
    return stream


def close_quietly(stream: Any) -> None:
    try:
        stream.close()
    except Exception as e:  # the device may already be gone
        log.debug("closing audio stream: %s", e)


#: How long closing a stream may take before the caller stops waiting for it.
CLOSE_TIMEOUT = 2.0


async def close_off_loop(stream: Any, timeout: float = CLOSE_TIMEOUT) -> bool:
    """Close ``stream`` on a daemon thread; stop waiting after ``timeout`` seconds.

    Closing a stream whose device died can hang inside the audio backend. The loop (and any
    lock its caller holds) must not hang with it, and the process must still be able to exit,
    so the close runs on a daemon thread rather than the default executor. True if it closed
    in time.
    """
    loop = asyncio.get_running_loop()
    closed: asyncio.Future[None] = loop.create_future()

    def finished() -> None:
        if not closed.done():
            closed.set_result(None)

    def run() -> None:
        close_quietly(stream)
        try:
            loop.call_soon_threadsafe(finished)
        except RuntimeError:  # the loop is gone: nobody is waiting any more
            pass

    threading.Thread(target=run, name="audio-close", daemon=True).start()
    try:
        await asyncio.wait_for(asyncio.shield(closed), timeout)
    except TimeoutError:
        log.warning("closing an audio stream did not finish within %.0f s; left behind", timeout)
        return False
    return True
