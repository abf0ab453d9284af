"""A sound card whose streams fail the ways real ones do, for ``MicrophoneCapture`` and
``DevicePlayer`` (their ``stream_factory``).

The microphone calls back every 20 ms from a thread of its own, as PortAudio does, with silence
or (while ``talking``) speech-like noise; the speaker's callback is pulled by a thread faster than
real time. Faults, for the streams open now and those opened later, until ``repair()``:

- ``silent``: the stream stops calling back and says nothing (no finished callback, no error);
- ``malformed``: the stream hands its callback a buffer of the wrong shape; the speaker's
  callback then raises, and the stream aborts as sounddevice's does (finished callback);
- ``missing``: the device is gone: opening a stream fails.

With ``hang_closes``, closing any stream blocks inside the backend until the card is released.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Literal

import numpy as np

DeviceFault = Literal["", "silent", "malformed", "missing"]
BLOCK_SECONDS = 0.02
#: How much faster than real time the speaker plays.
SPEEDUP = 8.0


class _Stream:
    def __init__(self, card: SoundCard, kind: str, **kwargs: Any) -> None:
        self.card = card
        self.kind = kind
        self.kwargs = kwargs
        self.running = threading.Event()
        self.closed = False
        self._thread: threading.Thread | None = None

    @property
    def fault(self) -> DeviceFault:
        return self.card.faults[self.kind]

    def start(self) -> None:
        self.running.set()
        self._thread = threading.Thread(target=self._run, name=f"card-{self.kind}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self.card.hang_closes:
            self.card.released.wait(60)
        self.running.clear()
        self.closed = True
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2)

    def _abort(self) -> None:
        """What sounddevice does when a callback raises: stop, and call the finished callback."""
        self.running.clear()
        self.kwargs["finished_callback"]()

    def _run(self) -> None:
        rate = self.kwargs["samplerate"]
        block = self.kwargs.get("blocksize") or int(rate * BLOCK_SECONDS)
        rng = np.random.default_rng(3)
        while self.running.is_set():
            fault = self.fault
            if fault != "silent":
                if self.kind == "input":
                    loud = 0.1 if self.card.talking else 0.001
                    data = (rng.standard_normal((block, 1)) * loud).astype(np.float32)
                else:
                    data = np.zeros((block, 1), dtype=np.float32)
                if fault == "malformed":
                    data = data[:, 0]  # one dimension where two are expected
                try:
                    self.kwargs["callback"](data, block, None, None)
                except Exception:
                    self._abort()
                    return
                if self.kind == "output" and data.ndim == 2:
                    self.card.played += int(np.count_nonzero(data))
            pace = SPEEDUP if self.kind == "output" else 1.0
            time.sleep(block / rate / pace)


class SoundCard:
    def __init__(self) -> None:
        self.faults: dict[str, DeviceFault] = {"input": "", "output": ""}
        self.talking = False
        self.hang_closes = False
        self.played = 0
        self.released = threading.Event()
        self.streams: list[_Stream] = []

    def _open(self, kind: str, **kwargs: Any) -> _Stream:
        if self.faults[kind] == "missing":
            raise OSError(f"Error querying device -1 (no {kind} device is plugged in)")
        stream = _Stream(self, kind, **kwargs)
        self.streams.append(stream)
        return stream

    def input_stream(self, **kwargs: Any) -> _Stream:
        return self._open("input", **kwargs)

    def output_stream(self, **kwargs: Any) -> _Stream:
        return self._open("output", **kwargs)

    def break_(self, kind: Literal["input", "output"], fault: DeviceFault) -> None:
        self.faults[kind] = fault

    def repair(self) -> None:
        """Streams opened from now on work (closes still hang until ``release``)."""
        self.faults = {"input": "", "output": ""}

    def release(self) -> None:
        """Let every stuck close finish and every stream thread end (at the end of a test)."""
        self.faults = {"input": "", "output": ""}
        self.hang_closes = False
        self.released.set()
        for stream in self.streams:
            stream.running.clear()
