"""A private PulseAudio server with virtual devices, and a recorder of what a sink plays.

The daemon runs in user mode with its own HOME, runtime and state directories, answers only on a
socket inside them, and never touches the machine's own sound setup. Two null sinks stand in for
the hardware: ``parley_out`` is the speaker (its monitor is what a listener would hear) and
``mic_in`` is the room (whatever is played into it comes out of its monitor, which serves as the
microphone). Programs reach it through ``client_env()``: libpulse reads ``PULSE_SERVER``, and
PortAudio's ALSA backend reaches it through the ALSA "pulse" plugin (libasound2-plugins), which
makes itself ALSA's default device whenever a server answers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tests.e2e.programs import Program, end

SPEAKER = "parley_out"
ROOM = "mic_in"
MICROPHONE = f"{ROOM}.monitor"
TOOLS = ("pulseaudio", "pactl", "paplay", "parec")

Int16 = npt.NDArray[np.int16]


class PulseUnavailable(RuntimeError):
    """The PulseAudio daemon could not be started here."""


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


class PulseServer(Program):
    """A PulseAudio daemon living entirely under ``root``; use as a context manager."""

    def __init__(self, root: Path, rate: int = 48_000) -> None:
        self.root = root
        self.rate = rate
        self.home = root / "home"
        self.runtime = root / "run"
        self.socket = self.runtime / "pulse" / "native"
        self.log_path = root / "pulseaudio.log"

    # ---------------------------------------------------------------------------- environment

    def client_env(self) -> dict[str, str]:
        """Variables that point a program (and its ALSA default device) at this server only."""
        return {
            "HOME": str(self.home),
            "XDG_RUNTIME_DIR": str(self.runtime),
            "PULSE_SERVER": f"unix:{self.socket}",
            "PULSE_CLIENTCONFIG": str(self.root / "client.conf"),
            "PULSE_COOKIE": str(self.home / ".config" / "pulse" / "cookie"),
            "PULSE_SINK": SPEAKER,
            "PULSE_SOURCE": MICROPHONE,
        }

    def _daemon_env(self) -> dict[str, str]:
        # No DISPLAY or session bus: the daemon must not start a D-Bus session of its own.
        keep = ("PATH", "LANG", "LC_ALL", "TZ")
        env = {k: os.environ[k] for k in keep if k in os.environ}
        env.update(
            HOME=str(self.home),
            XDG_RUNTIME_DIR=str(self.runtime),
            XDG_CONFIG_HOME=str(self.home / ".config"),
            PULSE_RUNTIME_PATH=str(self.runtime / "pulse"),
            PULSE_STATE_PATH=str(self.root / "state"),
        )
        return env

    def _write_config(self) -> Path:
        for d in (self.home, self.runtime / "pulse", self.root / "state"):
            d.mkdir(parents=True, exist_ok=True)
        self.runtime.chmod(0o700)
        script = self.root / "parley-e2e.pa"
        sink = f"rate={self.rate} channels=1"
        script.write_text(
            f"load-module module-native-protocol-unix auth-anonymous=1 socket={self.socket}\n"
            f"load-module module-null-sink sink_name={SPEAKER} {sink} "
            "sink_properties=device.description=Parley-speaker\n"
            f"load-module module-null-sink sink_name={ROOM} {sink} "
            "sink_properties=device.description=Parley-microphone\n"
            f"set-default-sink {SPEAKER}\n"
            f"set-default-source {MICROPHONE}\n",
            encoding="utf-8",
        )
        # Clients must never start a daemon of their own (in the real HOME) if this one dies.
        (self.root / "client.conf").write_text("autospawn = no\n", encoding="utf-8")
        return script

    # ------------------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 10.0) -> None:
        script = self._write_config()
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [
                    "pulseaudio",
                    "--daemonize=no",
                    "--system=false",
                    "--exit-idle-time=-1",
                    "--use-pid-file=false",
                    # A sound card's clock is never late: where the system allows it, the
                    # server runs ahead of the busy programs around it.
                    "--realtime=true",
                    "--high-priority=true",
                    "--log-target=stderr",
                    "-n",
                    "-F",
                    str(script),
                ],
                env=self._daemon_env(),
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self._process.poll() is not None:
                break
            if self._pactl("info").returncode == 0:
                return
            time.sleep(0.1)
        self.stop()
        raise PulseUnavailable(f"PulseAudio did not start: {self.log_tail()}")

    def log_tail(self, limit: int = 1500) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return text[-limit:].strip() or "(empty log)"

    # ------------------------------------------------------------------------------ utilities

    def _run(self, *args: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args),
            env={**os.environ, **self.client_env()},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def _pactl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self._run("pactl", *args, timeout=5.0)

    def sinks(self) -> list[str]:
        listed = self._pactl("list", "short", "sinks").stdout.splitlines()
        return [line.split("\t")[1] for line in listed if "\t" in line]

    def play(self, wav: Path, sink: str = ROOM, timeout: float = 30.0) -> None:
        """Play a sound file into ``sink``; returns when it has been played."""
        done = self._run("paplay", "-d", sink, str(wav), timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"paplay failed: {done.stderr.strip()}")

    def recorder(self, source: str = f"{SPEAKER}.monitor", rate: int = 16_000) -> Recorder:
        return Recorder(self, source, rate)


class Recorder:
    """Records a source (16-bit mono) with ``parec`` into memory while the test goes on."""

    def __init__(self, server: PulseServer, source: str, rate: int) -> None:
        self.rate = rate
        #: ``time.monotonic()`` at which the first recorded sample was played (estimated from
        #: the chunks' arrival times: the least delayed one tells best).
        self.started_at = float("inf")
        self._chunks: list[bytes] = []
        self._received = 0
        self._lock = threading.Lock()
        self._process = subprocess.Popen(
            [
                "parec",
                "-d",
                source,
                "--raw",
                "--format=s16le",
                "--channels=1",
                f"--rate={rate}",
                "--latency-msec=50",
            ],
            env={**os.environ, **server.client_env()},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._thread = threading.Thread(target=self._read, name="parec-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        stream = self._process.stdout
        assert stream is not None
        while chunk := os.read(stream.fileno(), 8192):
            now = time.monotonic()
            with self._lock:
                self._chunks.append(chunk)
                self._received += len(chunk)
                self.started_at = min(self.started_at, now - self._received / 2 / self.rate)

    def samples(self) -> Int16:
        with self._lock:
            data = b"".join(self._chunks)
        usable = len(data) // 2 * 2
        return np.frombuffer(data[:usable], dtype="<i2").astype(np.int16)

    def stop(self) -> Int16:
        end(self._process)
        self._thread.join(5)
        return self.samples()


def speech_spans(
    pcm: Int16, rate: int, threshold: float = 300.0, window: float = 0.05
) -> list[tuple[float, float]]:
    """(start, end) seconds of the stretches louder than ``threshold`` RMS, in 50 ms windows.

    A null sink's monitor is digital silence between sounds, so any real signal stands out.
    """
    size = max(1, int(rate * window))
    count = len(pcm) // size
    if count == 0:
        return []
    blocks = pcm[: count * size].astype(np.float64).reshape(count, size)
    loud = np.sqrt((blocks**2).mean(axis=1)) > threshold
    spans: list[tuple[float, float]] = []
    start: int | None = None
    for i, is_loud in enumerate(loud):
        if is_loud and start is None:
            start = i
        elif not is_loud and start is not None:
            spans.append((start * window, i * window))
            start = None
    if start is not None:
        spans.append((start * window, count * window))
    return spans


class LaptopEcho(Program):
    """The speaker heard again by the microphone, as on a laptop: ``echo_relay.py`` records
    ``parley_out``'s monitor and plays it into ``mic_in`` (mild loudspeaker distortion,
    attenuation, a little reverberation, a delay), where it mixes with whatever the user says
    into the room.

    The relay's stream adds its own latency to ``delay_ms``; ``delay_ms_measured`` is the whole
    path's delay as its timestamps tell it.
    """

    def __init__(self, server: PulseServer, delay_ms: float = 80.0, gain_db: float = -8.0) -> None:
        self.server = server
        self.delay_ms = delay_ms
        self.gain_db = gain_db
        self._status = server.root / "echo-relay.json"
        self._log = server.root / "echo-relay.log"

    def start(self, timeout: float = 20.0) -> None:
        env = {**os.environ, **self.server.client_env()}
        env.update(PULSE_SOURCE=f"{SPEAKER}.monitor", PULSE_SINK=ROOM)
        relay = Path(__file__).with_name("echo_relay.py")
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(
                [sys.executable, str(relay), str(self.delay_ms), str(self.gain_db),
                 str(self._status)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.ready():
                return
            if self._process.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        log_text = self._log.read_text(encoding="utf-8", errors="replace")[-1500:]
        raise PulseUnavailable(f"the echo relay did not start: {log_text}")

    def status(self) -> dict[str, Any]:
        """The relay's last report: ``ready``, ``moves`` (its streams restarted), and
        ``missing_ms`` (echo lost to stalls)."""
        try:
            status: dict[str, Any] = json.loads(self._status.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return status

    def ready(self) -> bool:
        return bool(self.status().get("ready"))


def find(haystack: Int16, needle: Int16, lags: range) -> int:
    """The lag (samples) at which ``needle`` best matches ``haystack``: ``haystack[k + lag]``
    is ``needle[k]`` (the peak of their cross-correlation within ``lags``)."""
    a = haystack.astype(np.float64)
    b = needle.astype(np.float64)
    size = 1 << (len(a) + len(b)).bit_length()
    corr = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)
    candidates = np.arange(lags.start, lags.stop) % size
    return int(lags.start + np.argmax(corr[candidates]))
