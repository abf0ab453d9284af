"""Parley's embedded text to speech: Piper, SVOX Pico and eSpeak NG, all offline.

``voices.py`` decides which engine speaks a language. Synthesis runs on one worker thread per
``LocalTTS`` (the engines keep global or per-voice state and the machine has few cores), never on
the event loop: audio is handed back with ``call_soon_threadsafe`` as soon as each block exists.
Cancelling the consumer (task cancel or ``aclose``) sets the piece's stop flag and interrupts the
engine, which stops within one block (Piper: within its current model run).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, AsyncIterable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np

from assistant.engines.base import PCM, EngineError, SpeechChunk, Voice

from .espeak import EspeakBackend
from .pico import PicoBackend
from .piper_voice import PiperBackend
from .voices import VoiceEntry, list_voices, resolve_voice

Progress = Callable[[float, str], None]

#: After the first block of a piece (sent as soon as it exists), blocks are gathered up to this.
_BLOCK_SECONDS = 0.2


class Backend(Protocol):
    """What each engine module provides; ``key`` is the engine's own voice name."""

    engine: str

    def is_loaded(self, key: str) -> bool: ...

    def load(self, key: str) -> None: ...

    def sample_rate(self, key: str) -> int: ...

    def synthesize(
        self, key: str, text: str, emit: Callable[[PCM, bool | None], None], stop: threading.Event
    ) -> None:
        """Blocking. Calls ``emit(pcm, last)`` per block: ``last`` is True/False when the engine
        knows whether more audio follows for this text, None when it does not."""
        ...

    def interrupt(self, stop: threading.Event) -> None:
        """Called from another thread after ``stop`` is set: cut the running synthesis short."""
        ...


class _Piece:
    """One text piece being synthesized on the worker thread, delivering chunks to the loop.

    Blocks whose ``last`` is unknown are held back one step so that the piece's final block can
    carry ``last=True``; the engines produce blocks far faster than real time, so the hold costs
    a few milliseconds at most.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, index: int, text: str, rate: int) -> None:
        self.loop = loop
        self.index = index
        self.text = text
        self.rate = rate
        self.stop = threading.Event()
        self.queue: asyncio.Queue[SpeechChunk | BaseException | None] = asyncio.Queue()
        self._held: list[PCM] = []
        self._held_samples = 0
        self._sent = 0
        self._closed = False

    # -- worker thread

    def emit(self, pcm: PCM, last: bool | None) -> None:
        if self.stop.is_set() or self._closed:
            return
        if last is None:
            target = 1 if self._sent == 0 else int(self.rate * _BLOCK_SECONDS)
            if self._held and self._held_samples >= target:
                self._release(last=False)
            self._held.append(pcm)
            self._held_samples += len(pcm)
            return
        self._held.append(pcm)
        self._held_samples += len(pcm)
        self._release(last=last)
        self._closed = last

    def finish(self) -> None:
        if not self._closed and not self.stop.is_set():
            self._release(last=True)
        self._put(None)

    def fail(self, error: BaseException) -> None:
        self._put(error)

    def _release(self, *, last: bool) -> None:
        pcm = np.concatenate(self._held) if self._held else np.zeros(0, np.int16)
        self._held, self._held_samples = [], 0
        self._sent += 1
        self._put(
            SpeechChunk(pcm=pcm, sample_rate=self.rate, piece=self.index, text=self.text, last=last)
        )

    def _put(self, item: SpeechChunk | BaseException | None) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the loop is gone: nobody is listening any more
            self.stop.set()


class LocalTTS:
    """The ``TextToSpeech`` engine named "local": offline voices from pip packages only.

    ``language`` and ``voice`` are the defaults ``warm_up`` prepares; ``stream`` takes its own.
    ``threads`` is Piper's ONNX thread count (1 suits a 2-core machine shared with STT and LLM).
    """

    name = "local"

    def __init__(self, *, language: str = "en", voice: str | None = None, threads: int = 1) -> None:
        self._language = language
        self._voice = voice
        self._backends: dict[str, Backend] = {
            "piper": PiperBackend(threads=threads),
            "pico": PicoBackend(),
            "espeak": EspeakBackend(),
        }
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parley-tts")

    def voices(self, language: str | None = None) -> list[Voice]:
        return list_voices(language)

    async def warm_up(
        self,
        on_progress: Progress | None = None,
        *,
        language: str | None = None,
        voice: str | None = None,
    ) -> None:
        """Load the default (or given) voice so the first reply starts fast. Idempotent.

        Piper takes 0.5-3 s (the first time after boot reads ~60 MB); Pico and eSpeak a few ms.
        ``on_progress(fraction, message)`` is called at the start and the end.
        """
        entry = await asyncio.to_thread(
            resolve_voice, voice or self._voice, language or self._language
        )
        if on_progress is not None:
            on_progress(0.0, f"Loading voice {entry.voice.name}")
        await self._load(entry)
        if on_progress is not None:
            on_progress(1.0, f"Voice {entry.voice.name} ready")

    async def _load(self, entry: VoiceEntry) -> Backend:
        backend = self._backends[entry.engine]
        if not backend.is_loaded(entry.key):
            # A thread of its own: the synthesis worker stays free for voices already loaded.
            await asyncio.to_thread(backend.load, entry.key)
        return backend

    async def stream(
        self, pieces: AsyncIterable[str], *, voice: str | None, language: str
    ) -> AsyncGenerator[SpeechChunk, None]:
        """Speak each piece as it arrives; every piece ends with a chunk marked ``last``
        (an empty one when the piece has nothing to say)."""
        # The first call builds the catalog (asks eSpeak for its voices): keep that off the loop.
        entry = await asyncio.to_thread(resolve_voice, voice, language)
        backend = await self._load(entry)
        rate = entry.voice.sample_rate
        loop = asyncio.get_running_loop()
        index = 0
        async for text in pieces:
            if not text.strip():
                yield SpeechChunk(np.zeros(0, np.int16), rate, index, text, last=True)
                index += 1
                continue
            piece = _Piece(loop, index, text, rate)
            try:
                self._worker.submit(_synthesize, backend, entry.key, piece)
            except RuntimeError:
                raise EngineError(
                    "The offline voices were shut down (LocalTTS.close); create a new LocalTTS.",
                    engine="local",
                    retryable=False,
                ) from None
            finished = False
            try:
                while True:
                    item = await piece.queue.get()
                    if item is None:
                        finished = True
                        break
                    if isinstance(item, BaseException):
                        finished = True
                        raise _as_engine_error(item, entry)
                    yield item
            finally:
                if not finished:  # cancelled or closed mid-piece: stop the engine now
                    piece.stop.set()
                    backend.interrupt(piece.stop)
            index += 1

    def close(self) -> None:
        """Stop the worker thread (after the synthesis in progress, which a cancel cuts short)."""
        self._worker.shutdown(wait=False, cancel_futures=True)

    async def aclose(self) -> None:
        self.close()


def _synthesize(backend: Backend, key: str, piece: _Piece) -> None:
    """Runs on the worker thread."""
    try:
        if piece.stop.is_set():
            return
        backend.synthesize(key, piece.text, piece.emit, piece.stop)
        piece.finish()
    except BaseException as exc:
        piece.fail(exc)


def _as_engine_error(error: BaseException, entry: VoiceEntry) -> EngineError:
    if isinstance(error, EngineError):
        return error
    return EngineError(f"Offline voice {entry.id} failed: {error}", engine="local")
