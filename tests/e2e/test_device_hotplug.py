"""Sound devices that appear after Parley started are found and used without a restart, on a real
PulseAudio server: the server itself comes up late (no device at all at start), then a second
output appears and is chosen by its name; its stream really plays on that sink."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.pulse import SPEAKER, PulseServer, PulseUnavailable, missing_tools

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(bool(missing_tools()), reason=f"needs {missing_tools()}")


class App:
    """The hot-plug app in a process of its own, its JSON lines read on a thread."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "e2e" / "hotplug_app.py")],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: list[dict[str, Any]] = []
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)

    def wait_for(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        what: str,
        timeout: float = 30.0,
        *,
        earlier: bool = False,
    ) -> dict[str, Any]:
        """The first event from now on that satisfies ``predicate`` (``earlier``: or one
        already seen)."""
        if earlier:
            for event in self.events:
                if predicate(event):
                    return event
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self._lines.get(timeout=0.2)
            except queue.Empty:
                assert self.process.poll() is None, f"the app exited: {self.stderr()}"
                continue
            if not line.startswith("{"):
                continue
            event = json.loads(line)
            self.events.append(event)
            if predicate(event):
                return event
        raise AssertionError(f"timed out waiting for {what}; last events: {self.events[-6:]}")

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def stderr(self) -> str:
        if self.process.poll() is None or self.process.stderr is None:
            return ""
        return self.process.stderr.read()[-2000:]

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.send("quit")
                self.process.wait(15)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PulseServer]:
    pulse = PulseServer(tmp_path / "pulse")
    yield pulse
    pulse.stop()


def sink_of_our_stream(server: PulseServer) -> str | None:
    """The name of the sink Parley's output stream plays on (None when it has none)."""
    sinks = {
        line.split("\t")[0]: line.split("\t")[1]
        for line in server._pactl("list", "short", "sinks").stdout.splitlines()
    }
    inputs = server._pactl("list", "short", "sink-inputs").stdout.splitlines()
    for line in inputs:
        fields = line.split("\t")
        if len(fields) > 1:
            return sinks.get(fields[1])
    return None


def test_devices_that_appear_later_are_found_named_and_used(server: PulseServer, tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PULSE_")},
        **server.client_env(),
        "PARLEY_CONFIG_DIR": str(tmp_path / "config"),
        "PARLEY_DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": str(ROOT),
    }
    for chosen_elsewhere in ("PULSE_SINK", "PULSE_SOURCE"):
        env.pop(chosen_elsewhere)  # Parley chooses; the server's defaults otherwise
    app = App(env)
    try:
        app.wait_for(lambda e: e["kind"] == "started", "the app to start")
        # No sound server yet: no output device at all, and Parley says so.
        app.wait_for(
            lambda e: e["kind"] == "error" and "No audio output device" in e["message"],
            "the missing speaker to be reported",
            earlier=True,
        )
        try:
            server.start()
        except PulseUnavailable as exc:
            pytest.skip(str(exc))
        found = app.wait_for(
            lambda e: e["kind"] == "devices" and e["outputs"], "the server's devices to be found"
        )
        assert found["via"] == "PulseAudio"
        assert ("pulse:parley_out", "Parley-speaker") in [tuple(o) for o in found["outputs"]]
        # Monitors of outputs are not offered as microphones.
        assert all(not key.endswith(".monitor") for key, _label in found["inputs"])
        app.wait_for(lambda e: e["kind"] == "audio" and e["speaker"], "the speaker to open")
        app.wait_for(
            lambda e: e["kind"] == "notice" and "is connected" in e["message"],
            "the user to be told",
        )
        deadline = time.monotonic() + 10
        while sink_of_our_stream(server) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sink_of_our_stream(server) == SPEAKER

        # A headset is plugged in: it is listed by its description, and used once chosen.
        loaded = server._pactl(
            "load-module",
            "module-null-sink",
            "sink_name=usb_headset",
            "rate=48000",
            "channels=1",
            "sink_properties=device.description=USB-Headset",
        )
        assert loaded.returncode == 0, loaded.stderr
        found = app.wait_for(
            lambda e: e["kind"] == "devices" and any(o[1] == "USB-Headset" for o in e["outputs"]),
            "the headset to be listed",
        )
        key = next(o[0] for o in found["outputs"] if o[1] == "USB-Headset")
        assert key == "pulse:usb_headset"
        app.send(f"output {key}")
        app.wait_for(lambda e: e["kind"] == "applied", "the setting to be applied")
        deadline = time.monotonic() + 10
        while sink_of_our_stream(server) != "usb_headset" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sink_of_our_stream(server) == "usb_headset"
    finally:
        app.close()
    assert app.process.returncode == 0, app.stderr()
