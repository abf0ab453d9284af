"""Shared test fixtures: isolated settings/data directories, a scripted conversation harness, and
a check that no test leaves tasks, threads or file descriptors behind (``tests.leaks``)."""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Self

import numpy as np
import pytest
from hypothesis import settings as hypothesis_settings

from assistant import secrets
from assistant.audio.frames import CAPTURE_RATE, FRAME_SAMPLES, AudioFrame
from assistant.audio.player import VirtualPlayer
from assistant.config import Settings
from assistant.engines.fake import FakeLLM, FakeSTT, FakeTTS
from assistant.events import SessionEvent, State, StateChanged, TurnFinished
from assistant.history import HistoryStore
from assistant.session import Session
from assistant.session.s2s import SpeechSession
from assistant.tools import ToolRegistry
from tests.leaks import (
    check_every_test,
    no_leaked_tasks,
    no_leaked_threads_or_fds,
    report_stragglers,
    warm_singletons,
)
from tests.scenario import ScriptVAD

# Property tests explore the same examples on every run, so that a red run stays red when run
# again; ``pytest --hypothesis-profile=explore`` draws new ones.
hypothesis_settings.register_profile("suite", derandomize=True)
hypothesis_settings.register_profile("explore", derandomize=False)
hypothesis_settings.load_profile("suite")

__all__ = ["no_leaked_tasks", "no_leaked_threads_or_fds"]  # fixtures, used by name

os.environ.setdefault("HF_HUB_OFFLINE", "1")
FRAME_SECONDS = FRAME_SAMPLES / CAPTURE_RATE


def pytest_sessionstart(session: pytest.Session) -> None:
    warm_singletons()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    check_every_test(items)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    report_stragglers(terminalreporter)


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings and history never touch the real user directories, and what one test's keyring
    said is not remembered in the next."""
    monkeypatch.setenv("PARLEY_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path / "data"))
    secrets.forget_keys()
    yield
    secrets.forget_keys()


class LiveHarness[S: (Session, SpeechSession)]:
    """Drives a real session, cascaded or speech to speech, on a real-time virtual audio device:
    frames of speech-like noise or silence at real-time pace, with the scripted VAD saying which.
    ``open_session`` makes the session from the harness's player, conversation, settings, VAD and
    ``tools``; ``settings`` get the short turn-taking timings the tests expect."""

    #: How long ``until`` waits by default (seconds).
    patience = 30.0

    def __init__(
        self,
        tmp_path: Path,
        open_session: Callable[..., S],
        *,
        mode: str,
        settings: Settings,
        tools: ToolRegistry | None,
    ) -> None:
        self.settings = settings
        self.settings.turn_mode = mode  # type: ignore[assignment]
        self.settings.vad.end_silence_ms = 300
        self.settings.vad.min_speech_ms = 100
        self.vad = ScriptVAD()
        self.player = VirtualPlayer(pace="realtime")
        self.store = HistoryStore(tmp_path / "history")
        conversation, _ = self.store.latest()
        self.session = open_session(
            player=self.player,
            conversation=conversation,
            settings=self.settings,
            vad=self.vad,
            tools=tools,
        )
        self.events: list[SessionEvent] = []
        self.session.subscribe(self.events.append)
        self._offset = 0.0
        self._deadline = 0.0
        self._rng = np.random.default_rng(0)

    async def __aenter__(self) -> Self:
        await self.session.start()
        self._deadline = time.monotonic()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()

    async def audio(self, seconds: float, *, speech: bool) -> None:
        """Feed ``seconds`` of (speech-like noise | silence) at real-time pace."""
        self.vad.speaking = speech
        for _ in range(round(seconds / FRAME_SECONDS)):
            self._deadline = max(self._deadline + FRAME_SECONDS, time.monotonic() - 0.1)
            delay = self._deadline - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            scale = 4000 if speech else 30
            pcm = (self._rng.standard_normal(FRAME_SAMPLES) * scale).astype(np.int16)
            await self.session.feed(AudioFrame(pcm, time.monotonic(), self._offset))
            self._offset += FRAME_SECONDS

    async def ptt(self, seconds: float) -> None:
        """Hold the talk key over ``seconds`` of speech, then let it go."""
        self.session.press_to_talk()
        await self.audio(seconds, speech=True)
        self.session.release_to_talk()

    async def until(self, predicate: object, timeout: float | None = None) -> None:
        """Keep feeding silence until ``predicate()`` holds (for ``patience`` by default)."""
        end = time.monotonic() + (self.patience if timeout is None else timeout)
        while not predicate():  # type: ignore[operator]
            if time.monotonic() > end:
                raise AssertionError(f"timed out; states: {self.states()}")
            await self.audio(FRAME_SECONDS * 3, speech=False)

    async def until_state(self, state: State, timeout: float | None = None) -> None:
        await self.until(lambda: self.session.state is state, timeout)

    def states(self) -> list[str]:
        return [e.state.value for e in self.events if isinstance(e, StateChanged)]

    def finished(self) -> list:
        return [e.turn for e in self.events if isinstance(e, TurnFinished)]

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


class Harness(LiveHarness[Session]):
    """A real cascaded ``Session`` with fake engines (quick ones unless given)."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        mode: str = "ptt",
        stt: object | None = None,
        llm: object | None = None,
        tts: object | None = None,
        settings: Settings | None = None,
        tools: ToolRegistry | None = None,
    ) -> None:
        settings = settings or Settings()
        settings.interruption.min_duration_ms = 400
        settings.interruption.resume_timeout_ms = 500
        session = functools.partial(
            Session,
            stt=stt or FakeSTT(),
            llm=llm or FakeLLM(ttft=0.05, tokens_per_second=200),
            tts=tts or FakeTTS(first_audio_delay=0.02, chars_per_second=40),
        )
        super().__init__(tmp_path, session, mode=mode, settings=settings, tools=tools)


@pytest.fixture
def harness_factory(tmp_path: Path):
    def make(**kwargs: object) -> Harness:
        return Harness(tmp_path, **kwargs)  # type: ignore[arg-type]

    return make
