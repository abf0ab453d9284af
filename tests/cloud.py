"""Helpers the cloud adapter tests share: a fast policy, a recorder of the waits it asks for,
audio to push, a transcript collector, text pieces to speak, the samples a fake speaks, the
fixtures that serve a fake provider with its key in the environment, a canary key and the proof
it leaked nowhere, and a fake served from a thread of its own (for a subprocess).

Time limits here are safety nets for a hang, never the assertion under test: what a test proves
holds however slow the machine is."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import stat
import subprocess
import threading
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from assistant.engines.base import PCM, EngineError, Transcript
from assistant.engines.net.retry import Backoff, Policy
from tests.fakes.contexts import synthesize_parts

#: Short deadlines and waits, for servers on 127.0.0.1.
FAST = Policy(
    open_timeout=2.0,
    first_message_timeout=0.5,
    stall_timeout=0.5,
    attempts=3,
    backoff=Backoff(base=0.02, cap=0.1),
    max_retry_after=1.0,
    reconnects=3,
    close_timeout=0.5,
)
RNG = np.random.default_rng(7)
#: How long a waiting helper waits before calling it a hang.
PATIENCE = 20.0


class Sleeps(list[float]):
    """The waits a policy asked for, recorded instead of slept through (``fast(sleep=...)``)."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)
        await asyncio.sleep(0)


class HeldSleeps(Sleeps):
    """Recorded waits that last until the test ends them (``release``): the state while a
    connection waits to retry can be looked at for as long as the test likes."""

    def __init__(self) -> None:
        super().__init__()
        self._released = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)
        await self._released.wait()

    def release(self) -> None:
        self._released.set()


def fast(**changes: Any) -> Policy:
    return dataclasses.replace(FAST, **changes)


def speech(seconds: float, rate: int = 16_000) -> PCM:
    """Noise loud enough for the fakes to hear speech in it."""
    return (RNG.standard_normal(int(seconds * rate)) * 3000).astype(np.int16)


def silence(seconds: float, rate: int = 16_000) -> PCM:
    return np.zeros(int(seconds * rate), dtype=np.int16)


async def push(session: Any, pcm: PCM) -> None:
    """Push as the capture path does: 32 ms frames, as fast as the caller likes."""
    for i in range(0, len(pcm), 512):
        await session.push(pcm[i : i + 512])


class Collector:
    """Everything a session's ``transcripts()`` yields, read in the background."""

    def __init__(self, session: Any) -> None:
        self.items: list[Transcript] = []
        self.error: EngineError | None = None
        self.task = asyncio.create_task(self._run(session))

    async def _run(self, session: Any) -> None:
        try:
            async for item in session.transcripts():
                self.items.append(item)
        except EngineError as exc:
            self.error = exc

    @property
    def finals(self) -> list[Transcript]:
        return [t for t in self.items if t.is_final]

    def final_texts(self) -> list[str]:
        return [t.text for t in self.finals]

    def partials(self) -> list[str]:
        return [t.text for t in self.items if not t.is_final]

    async def wait_items(self, timeout: float = PATIENCE) -> None:
        end = time.monotonic() + timeout
        while not self.items:
            assert time.monotonic() < end, f"nothing transcribed; error {self.error}"
            await asyncio.sleep(0.005)

    async def wait_finals(self, count: int = 1, timeout: float = PATIENCE) -> list[Transcript]:
        end = time.monotonic() + timeout
        while len(self.finals) < count:
            assert time.monotonic() < end, f"no final; got {self.items}, error {self.error}"
            await asyncio.sleep(0.005)
        return self.finals


async def listening(stt: Any, language: str = "en") -> tuple[Any, Collector]:
    """A new session of ``stt`` in ``language``, and a collector of all it transcribes."""
    session = await stt.open(language)
    return session, Collector(session)


async def spoken_turn(stt: Any, seconds: float, pause: float = 0.0) -> tuple[Collector, Any]:
    """Open an English session of ``stt``, speak ``seconds`` of speech (then ``pause`` of
    silence), end the turn and wait for its final: the collector and the still open session."""
    session, collector = await listening(stt)
    await push(session, speech(seconds))
    if pause:
        await push(session, silence(pause))
    await session.end_turn()
    await collector.wait_finals()
    return collector, session


async def turn_survives_a_drop(
    server: Any, stt: Any, code: int | None, *, after: float, seconds: float
) -> None:
    """``server`` drops the connection (with close ``code``, or aborted) ``after`` seconds of
    audio into a spoken turn of ``seconds``: ``stt`` reconnects once and the turn's final comes
    all the same, with no error."""
    server.drop_after_audio = after
    server.drop_code = code
    collector, session = await spoken_turn(stt, seconds)
    finals = collector.final_texts()
    await session.aclose()
    assert server.connections == 2
    assert collector.error is None
    assert finals == ["What time is it?"]


async def texts(pieces: Sequence[str], delay: float = 0.0) -> AsyncIterator[str]:
    """Text pieces as a reply's splitter hands them over."""
    for piece in pieces:
        if delay:
            await asyncio.sleep(delay)
        yield piece


def expected_samples(pieces: Sequence[str], fake: Any) -> int:
    """Every sample a multi-context fake speaks for ``pieces``."""
    return sum(
        len(part.pcm) // 2
        for piece in pieces
        for part in synthesize_parts(piece + " ", fake.chars_per_second, fake.chunk_ms)
    )


def espeak_wav(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "utterance.wav"
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    return path


def files_containing(
    roots: Path | Sequence[Path], needle: str, since: float = 0.0, largest: int = 5_000_000
) -> list[Path]:
    """Regular files under ``roots`` changed at or after ``since`` whose bytes contain ``needle``.

    The walk stays on each root's file system and never opens anything but a regular file: a
    shared temporary directory may hold another program's chroot with ``/proc`` mounted in it,
    where reading ``kmsg`` blocks for ever.
    """
    hits = []
    wanted = needle.encode()
    for root in [roots] if isinstance(roots, Path) else roots:
        device = root.stat().st_dev
        for dirpath, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if _on_device(Path(dirpath, d), device)]
            for name in files:
                path = Path(dirpath, name)
                try:
                    status = path.lstat()
                    if (
                        not stat.S_ISREG(status.st_mode)
                        or status.st_mtime < since
                        or status.st_size > largest
                    ):
                        continue
                    if wanted in path.read_bytes():
                        hits.append(path)
                except OSError:
                    continue
    return hits


def _on_device(path: Path, device: int) -> bool:
    try:
        status = path.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(status.st_mode) and status.st_dev == device


def served(
    env: str, key: str, fake: Callable[[str], AbstractAsyncContextManager[Any]]
) -> tuple[Any, Any]:
    """The ``key_env`` and ``server`` fixtures of a provider: its key in ``env``, and its fake
    serving with that key."""

    @pytest.fixture
    def key_env(monkeypatch: pytest.MonkeyPatch) -> str:
        monkeypatch.setenv(env, key)
        return key

    @pytest.fixture
    async def server(key_env: str) -> AsyncIterator[Any]:
        async with fake(key_env) as running:
            yield running

    return key_env, server


def openai_served(key: str) -> tuple[Any, Any]:
    """The ``server`` fixture (the OpenAI fake accepting ``key``) and an autouse fixture that
    points the environment at it (key, HTTP and realtime URLs; never the real keyring)."""
    from assistant import secrets
    from tests.fakes.openai_server import FakeOpenAIServer

    @pytest.fixture
    def server() -> Iterator[FakeOpenAIServer]:
        with FakeOpenAIServer(api_key=key) as fake:
            yield fake

    @pytest.fixture(autouse=True)
    def openai_env(monkeypatch: pytest.MonkeyPatch, server: FakeOpenAIServer) -> None:
        monkeypatch.setattr(secrets, "_backend_usable", lambda: False)
        monkeypatch.setenv("OPENAI_API_KEY", key)
        monkeypatch.setenv("PARLEY_OPENAI_BASE_URL", server.http_url)
        monkeypatch.setenv("PARLEY_OPENAI_REALTIME_URL", server.realtime_url)

    return server, openai_env


async def until(predicate: Callable[[], bool], seconds: float = PATIENCE) -> bool:
    """Wait until ``predicate`` holds or ``seconds`` passed (a condition, not a measured time)."""
    for _ in range(int(seconds / 0.01)):
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()


async def eventually(predicate: Callable[[], bool], seconds: float = PATIENCE) -> None:
    """Wait until ``predicate`` holds, and fail if it never does."""
    assert await until(predicate, seconds)


async def talk(
    tmp_path: Path,
    engines: tuple[Any, Any, Any],
    *,
    settings: Any = None,
    pace: str = "fast",
    output: bool = True,
) -> Any:
    """``parley talk`` on a spoken "What time is it?" with ``engines``; history (and the reply's
    audio, with ``output``) under ``tmp_path``."""
    from assistant.config import Settings
    from assistant.talk import run_talk

    return await run_talk(
        espeak_wav(tmp_path, "What time is it?"),
        settings=settings or Settings(),
        pace=pace,  # type: ignore[arg-type]
        engines=engines,
        history_dir=tmp_path / "history",
        output_path=tmp_path / "out.wav" if output else None,
        idle_timeout=20,
    )


def canary_key(env: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> str:
    """A fresh key no other text can hold by chance, set in ``env``, with every log record down
    to DEBUG captured: what ``assert_unleaked`` then searches for."""
    canary = f"canary-{uuid.uuid4().hex}"
    monkeypatch.setenv(env, canary)
    caplog.set_level(logging.DEBUG)
    return canary


def without_key(env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The key of ``env`` missing wherever Parley looks: not in the environment, no keyring."""
    monkeypatch.delenv(env, raising=False)
    monkeypatch.setattr("assistant.secrets._backend_usable", lambda: False)


def failure_text(error: BaseException) -> str:
    """Everything a user could see of ``error``: its message and its whole traceback."""
    return "".join(traceback.format_exception(error))


def assert_unleaked(key: str, log: str, texts: Sequence[str], root: Path) -> None:
    """``key`` is in no log line, no message or traceback, no file under ``root``."""
    assert key not in log
    assert all(key not in text for text in texts)
    assert files_containing(root, key) == []


class InThread:
    """Serves an async fake server from its own thread and loop while a subprocess uses it."""

    def __init__(self, fake: Any) -> None:
        self.fake = fake
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self.fake:
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> Any:
        self._thread.start()
        assert self._ready.wait(10), "the fake server did not start"
        return self.fake

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
