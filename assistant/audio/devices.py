"""The sound devices, and opening streams on them.

PortAudio finds the devices once, when it starts, and keeps that list: a sound server that
comes back or a headset plugged in later stays invisible until PortAudio is started again,
which must not happen while a stream is open. So every stream opened here is counted, and
``rescan`` restarts PortAudio only when none is. ``scan`` gives the devices as a user knows
them: a PulseAudio or PipeWire server's sinks and sources by their descriptions (asked of the
server, which is possible at any time), else PortAudio's devices of one host API (WASAPI on
Windows, whose names are not cut short), without ALSA's "(hw:0,0)" suffixes. A device is
remembered in the settings by a key that survives restarts: ``pulse:<server name>``, or
PortAudio's ``<name>, <host API>``.

Never raises because of the machine: no PortAudio library, or no devices at all, is an empty
list (headless servers and CI have no sound card).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from assistant.audio import pulse_devices
from assistant.engines.base import EngineUnavailable
from assistant.environment import temporarily

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
    host_api: str = ""


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
    try:
        apis = [str(api.get("name", "")) for api in sd.query_hostapis()]
    except Exception:
        apis = []
    out: list[DeviceInfo] = []
    for i, dev in enumerate(raw):
        idx = int(dev.get("index", i))
        api = int(dev.get("hostapi", -1))
        out.append(
            DeviceInfo(
                index=idx,
                name=str(dev.get("name", f"device {idx}")),
                inputs=int(dev.get("max_input_channels", 0)),
                outputs=int(dev.get("max_output_channels", 0)),
                default_samplerate=float(dev.get("default_samplerate", 0.0)),
                is_default_input=idx == d_in,
                is_default_output=idx == d_out,
                host_api=apis[api] if 0 <= api < len(apis) else "",
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
    """The name of an output device (the default one for None); "" when it cannot be told.

    A sound server's device (a ``pulse:`` setting, or the default while a server answers) is
    named by its description, which says what it is ("USB Headset Analog Stereo").
    """
    chosen = pulse_devices.server_name(device) if isinstance(device, str) else None
    if chosen is not None or device is None or device == "":
        served = pulse_devices.list_devices()
        if served is not None:
            sinks = [d for d in served if d.kind == "output"]
            match_ = [d for d in sinks if (d.name == chosen if chosen else d.is_default)]
            if match_:
                return match_[0].description
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


# ------------------------------------------------------------------------- as a user sees them

Kind = Literal["input", "output"]


@dataclass(frozen=True, slots=True)
class DeviceChoice:
    """A device to offer: ``key`` goes into the settings, ``label`` is shown."""

    key: str
    label: str
    is_default: bool = False


@dataclass(frozen=True, slots=True)
class DeviceList:
    """The microphones and speakers found, and who was asked ("PulseAudio", "PortAudio")."""

    inputs: tuple[DeviceChoice, ...] = ()
    outputs: tuple[DeviceChoice, ...] = ()
    via: str = ""

    def choices(self, kind: Kind) -> tuple[DeviceChoice, ...]:
        return self.inputs if kind == "input" else self.outputs

    def has(self, kind: Kind, key: str) -> bool:
        """Whether ``key`` is connected ("" — the system default — is whenever any is)."""
        found = self.choices(kind)
        return bool(found) if not key else any(c.key == key for c in found)

    def label(self, kind: Kind, key: str) -> str | None:
        return next((c.label for c in self.choices(kind) if c.key == key), None)


#: Host APIs whose device names are the ones the system shows, best first.
_PREFERRED_APIS = ("Windows WASAPI", "Core Audio", "ALSA", "JACK Audio Connection Kit")
_ALSA_SUFFIX = re.compile(r"\s*\((hw|plughw):\d+,\d+\)$")


def _portaudio_choices(found: list[DeviceInfo]) -> DeviceList:
    apis = {d.host_api for d in found}
    preferred = next((api for api in _PREFERRED_APIS if api in apis), None)
    shown = [d for d in found if preferred is None or d.host_api == preferred]

    def choice(d: DeviceInfo, default: bool) -> DeviceChoice:
        key = f"{d.name}, {d.host_api}" if d.host_api else d.name
        return DeviceChoice(key, _ALSA_SUFFIX.sub("", d.name) or d.name, default)

    return DeviceList(
        inputs=tuple(choice(d, d.is_default_input) for d in shown if d.inputs > 0),
        outputs=tuple(choice(d, d.is_default_output) for d in shown if d.outputs > 0),
        via="PortAudio",
    )


def scan(restart_portaudio: bool = True) -> DeviceList:
    """The devices as a user knows them, looked for now (see the module docstring).

    ``restart_portaudio``: when no sound server answers, restart PortAudio first if no stream
    is open, so devices that appeared since it started are found.
    """
    pulse = pulse_devices.list_devices()
    if pulse is not None:
        return DeviceList(
            inputs=tuple(
                DeviceChoice(pulse_devices.key(d.name), d.description, d.is_default)
                for d in pulse
                if d.kind == "input"
            ),
            outputs=tuple(
                DeviceChoice(pulse_devices.key(d.name), d.description, d.is_default)
                for d in pulse
                if d.kind == "output"
            ),
            via="PulseAudio",
        )
    if restart_portaudio:
        rescan()
    return _portaudio_choices(list_devices())


# ------------------------------------------------------------------------------------ streams

_streams_lock = threading.Lock()
#: Streams opened here and not closed yet (by id): PortAudio may not restart while any is.
_open_streams: set[int] = set()


def open_streams() -> int:
    with _streams_lock:
        return len(_open_streams)


def rescan() -> bool:
    """Restart PortAudio so it finds the devices present now; False when it cannot (a stream
    is open, or there is no PortAudio)."""
    sd = _sounddevice()
    if sd is None:
        return False
    with _streams_lock:
        if _open_streams:
            return False
        try:
            sd._terminate()
            sd._initialize()
        except Exception as exc:
            log.warning("restarting PortAudio failed: %s", exc)
            return False
    log.info("PortAudio restarted to find new devices")
    return True


def _portaudio_target(kind: Kind, device: object) -> tuple[object, dict[str, str]]:
    """What to open through PortAudio for a device setting, and the environment the sound
    server's ALSA plugin reads while the stream connects."""
    if isinstance(device, str) and (name := pulse_devices.server_name(device)) is not None:
        variable = "PULSE_SOURCE" if kind == "input" else "PULSE_SINK"
        names = {d.name for d in list_devices()}
        target = "pulse" if "pulse" in names else None
        return target, {variable: name}
    return device, {}


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
                target, _env = _portaudio_target(kind, device)
                rate = int(sd.query_devices(target, kind)["default_samplerate"])
    except Exception as e:
        raise _unavailable(kind, e, device) from e
    return factory, rate


def start_stream(kind: Kind, device: object, factory: Callable[..., Any], **options: Any) -> Any:
    """Open and start a stream; on failure close what was opened and say what is missing.

    ``device`` may be any setting ``scan`` offers (a ``pulse:`` key reaches that sink or
    source through the sound server). The stream counts as open until ``close_quietly``.
    """
    stream: Any = None
    target, env = _portaudio_target(kind, device)
    try:
        with _streams_lock:  # PortAudio does not restart while a stream is being opened
            with temporarily(env):
                stream = factory(device=target, **options)
            _open_streams.add(id(stream))
        stream.start()
    except Exception as e:
        if stream is not None:
            close_quietly(stream)
        raise _unavailable(kind, e, device) from e
    return stream


def start_mono_stream(
    kind: Kind,
    device: object,
    factory: Callable[..., Any],
    *,
    samplerate: int,
    blocksize: int,
    latency: str | float,
    callback: Callable[..., None],
    finished_callback: Callable[[], None],
) -> tuple[Any, float]:
    """Open and start a float32 mono stream (see ``start_stream``).

    Returns the stream and its nominal latency in seconds: what ``stream.latency`` says, or 0
    when it says nothing usable (a fake stream, a backend that reports none).
    """
    stream = start_stream(
        kind,
        device,
        factory,
        samplerate=samplerate,
        blocksize=blocksize,
        channels=1,
        dtype="float32",
        latency=latency,
        callback=callback,
        finished_callback=finished_callback,
    )
    lat = getattr(stream, "latency", 0.0)
    return stream, float(lat) if isinstance(lat, (int, float)) else 0.0


def call_listeners(listeners: Sequence[Callable[..., None]], what: str, *args: Any) -> None:
    """Call each listener with ``args``, in order; one that raises is logged (as a ``what``
    listener) and the others still run: a broken listener must not silence a device's news."""
    for cb in list(listeners):
        try:
            cb(*args)
        except Exception:
            log.exception("%s listener failed", what)


def report_error(listeners: Sequence[Callable[[str], None]], message: str) -> None:
    """Log a stream's failure as an error and tell its ``on_error`` listeners."""
    log.error("%s", message)
    call_listeners(listeners, "audio error", message)


def close_quietly(stream: Any) -> None:
    try:
        stream.close()
    except Exception as e:  # the device may already be gone
        log.debug("closing audio stream: %s", e)
    finally:
        with _streams_lock:
            _open_streams.discard(id(stream))


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
