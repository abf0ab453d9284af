"""The sound devices of a PulseAudio or PipeWire server, by the names people know them by.

PortAudio sees such a server as one ALSA device ("pulse"/"default") whatever is plugged in;
the server itself knows every sink and source and its description ("USB Headset Analog
Stereo"). ``pactl -f json`` (PulseAudio 16 and later, and PipeWire's pipewire-pulse) lists them
without touching PortAudio, so it can be asked while streams are open. A stream reaches a
chosen one through the ALSA "pulse" plugin, which honours ``PULSE_SINK``/``PULSE_SOURCE`` when
it connects (``devices.start_stream`` sets them for the call).

Never raises: no ``pactl``, no server, or output it does not understand is None.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: How long ``pactl`` may take before the server counts as unreachable.
TIMEOUT = 2.0
PREFIX = "pulse:"


@dataclass(frozen=True, slots=True)
class PulseDevice:
    kind: str  # "input" or "output"
    name: str  # the server's name for it, stable across restarts
    description: str
    is_default: bool


def _pactl(*args: str) -> str | None:
    binary = shutil.which("pactl")
    if binary is None:
        return None
    try:
        done = subprocess.run(
            [binary, *args],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("pactl %s failed: %s", " ".join(args), exc)
        return None
    return done.stdout if done.returncode == 0 else None


def _entries(text: str | None) -> list[dict[str, object]] | None:
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else None


def is_monitor(entry: dict[str, object]) -> bool:
    """A source that only repeats what a sink plays: not a microphone."""
    monitor_of = entry.get("monitor_of_sink")
    return bool(monitor_of and monitor_of != "n/a") or str(entry.get("name", "")).endswith(
        ".monitor"
    )


def list_devices() -> list[PulseDevice] | None:
    """Every sink (output) and source (input, monitors left out), or None without a server."""
    sinks = _entries(_pactl("-f", "json", "list", "sinks"))
    sources = _entries(_pactl("-f", "json", "list", "sources"))
    if sinks is None or sources is None:
        return None
    info = _pactl("-f", "json", "info")
    defaults: dict[str, object] = {}
    try:
        parsed = json.loads(info) if info else {}
        defaults = parsed if isinstance(parsed, dict) else {}
    except ValueError:
        pass
    out: list[PulseDevice] = []
    for kind, entries, default_key in (
        ("output", sinks, "default_sink_name"),
        ("input", sources, "default_source_name"),
    ):
        for entry in entries:
            if kind == "input" and is_monitor(entry):
                continue
            name = str(entry.get("name", ""))
            if not name:
                continue
            description = str(entry.get("description") or name)
            out.append(PulseDevice(kind, name, description, name == defaults.get(default_key)))
    return out


def key(name: str) -> str:
    """How a server device is remembered in the settings."""
    return f"{PREFIX}{name}"


def server_name(setting: str) -> str | None:
    """The server's device name in a setting made by ``key``, else None."""
    return setting[len(PREFIX) :] if setting.startswith(PREFIX) else None
