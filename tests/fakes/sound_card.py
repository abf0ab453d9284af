"""A sound card in software, for the real ``MicrophoneCapture`` and ``DevicePlayer``.

Its ``input_stream``/``output_stream`` stand in for ``sounddevice.InputStream``/``OutputStream``
(the ``stream_factory`` of both): the microphone hears what the test ``speak``s, the speaker's
callback is pulled by a thread faster than real time, and ``unplug()`` kills every open stream
the way PortAudio reports a vanished device (its ``finished_callback``) and makes new ones fail
until ``plug()``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np

from assistant.audio.player import OUTPUT_LOST, BufferedPlayer

#: How much faster than real time the speaker plays.
SPEEDUP = 8.0


def report_output_lost(player: BufferedPlayer) -> None:
    """Tell ``player``'s listeners its device vanished, as a ``DevicePlayer`` does when
    PortAudio ends its stream (for players with no sound card behind them)."""
    for listener in list(player.on_error):
        listener(OUTPUT_LOST)


class Unplugged(OSError):
    def __init__(self, kind: str) -> None:
        super().__init__(f"Error querying device -1 (no {kind} device is plugged in)")


class FakeInputStream:
    def __init__(self, card: FakeSoundCard, **kwargs: Any) -> None:
        self.card = card
        self.kwargs = kwargs
        self.open = False

    def start(self) -> None:
        self.open = True

    def close(self) -> None:
        self.open = False

    def feed(self, block: np.ndarray) -> None:
        """What PortAudio does: call the callback with a (frames, channels) block."""
        data = block.reshape(-1, 1).astype(np.float32)
        self.kwargs["callback"](data, len(data), None, None)

    def die(self) -> None:
        if self.open:
            self.open = False
            self.kwargs["finished_callback"]()


class FakeOutputStream:
    def __init__(self, card: FakeSoundCard, **kwargs: Any) -> None:
        self.card = card
        self.kwargs = kwargs
        self.latency = 0.0
        self.rendered = 0
        self.peak = 0.0
        self._running = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._running.set()
        self._thread = threading.Thread(target=self._render, daemon=True)
        self._thread.start()

    def _render(self) -> None:
        blocksize, rate = self.kwargs["blocksize"], self.kwargs["samplerate"]
        out = np.zeros((blocksize, 1), dtype=np.float32)
        while self._running.is_set():
            self.kwargs["callback"](out, blocksize, None, None)
            self.rendered += blocksize
            self.peak = max(self.peak, float(np.abs(out).max()))
            time.sleep(blocksize / rate / SPEEDUP)

    def close(self) -> None:
        self._running.clear()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2)

    def die(self) -> None:
        if self._running.is_set():
            self.close()
            self.kwargs["finished_callback"]()


class FakeSoundCard:
    def __init__(self) -> None:
        self.plugged = True
        self.inputs: list[FakeInputStream] = []
        self.outputs: list[FakeOutputStream] = []
        self._rng = np.random.default_rng(5)

    def input_stream(self, **kwargs: Any) -> FakeInputStream:
        if not self.plugged:
            raise Unplugged("input")
        self.inputs.append(FakeInputStream(self, **kwargs))
        return self.inputs[-1]

    def output_stream(self, **kwargs: Any) -> FakeOutputStream:
        if not self.plugged:
            raise Unplugged("output")
        self.outputs.append(FakeOutputStream(self, **kwargs))
        return self.outputs[-1]

    @property
    def microphone(self) -> FakeInputStream:
        live = [s for s in self.inputs if s.open]
        assert live, "no microphone stream is open"
        return live[-1]

    async def speak(self, seconds: float, block: int = 320) -> None:
        """Speech-like noise into the open microphone, a block at a time with the loop running
        in between (as a capture thread would), faster than real time."""
        rate = self.microphone.kwargs["samplerate"]
        for _ in range(round(seconds * rate / block)):
            noise = self._rng.standard_normal(block).astype(np.float32) * 0.1
            self.microphone.feed(noise)
            await asyncio.sleep(0.001)

    def unplug(self) -> None:
        self.plugged = False
        for stream in [*self.inputs, *self.outputs]:
            stream.die()

    def plug(self) -> None:
        self.plugged = True
