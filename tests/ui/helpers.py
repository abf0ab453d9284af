"""Shared by the window tests: coroutines on the Qt loop, fake audio, a seeded history."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from assistant.app import Assistant
from assistant.audio.capture import ArraySource
from assistant.audio.frames import CAPTURE_RATE
from assistant.audio.player import VirtualPlayer
from assistant.config import Settings
from assistant.events import AppEvent, TurnFinished
from assistant.history import HistoryStore, TurnRecord
from assistant.timeline import Budgets, Timeline
from ui.conversation import Bubble, ConversationView

if TYPE_CHECKING:
    from ui.main_window import MainWindow

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"


#: How long a wait may take before it is called a hang (never the thing a test asserts).
PATIENCE = 30.0


def run(loop: asyncio.AbstractEventLoop, coro: Any, timeout: float = 2 * PATIENCE) -> Any:
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


async def until(predicate: Callable[[], object], timeout: float = PATIENCE, what: str = "") -> None:
    """Let the loop (and Qt) run until ``predicate()`` holds."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.02)


async def started(assistant: Assistant) -> None:
    """Start ``assistant`` and wait until it is ready for a question."""
    await assistant.start()
    await assistant.wait_ready(PATIENCE)


def collect[E: AppEvent](assistant: Assistant, kind: type[E]) -> list[E]:
    """A list that receives every later event of ``kind`` the assistant publishes."""
    seen: list[E] = []

    def keep(event: AppEvent) -> None:
        if isinstance(event, kind):
            seen.append(event)

    assistant.events.subscribe(keep)
    return seen


def finished_turns(assistant: Assistant) -> list[TurnRecord]:
    """A list that receives the record of every turn that finishes from now on."""
    records: list[TurnRecord] = []

    def keep(event: AppEvent) -> None:
        if isinstance(event, TurnFinished):
            records.append(event.turn)

    assistant.events.subscribe(keep)
    return records


def show_window(qtbot: Any, assistant: Assistant) -> MainWindow:
    """The main window over ``assistant``, shown and active."""
    from ui.main_window import MainWindow

    window = MainWindow(assistant)
    qtbot.addWidget(window)
    window.show()
    window.activateWindow()
    qtbot.waitActive(window)
    return window


def user(view: ConversationView, turn_id: int) -> Bubble:
    bubble = view.user_bubble(turn_id)
    assert bubble is not None, f"no user bubble for turn {turn_id}"
    return bubble


def reply(view: ConversationView, turn_id: int) -> Bubble:
    bubble = view.assistant_bubble(turn_id)
    assert bubble is not None, f"no assistant bubble for turn {turn_id}"
    return bubble


def fake_settings(**changes: Any) -> Settings:
    settings = Settings(stt="fake", llm="fake", tts="fake")
    for key, value in changes.items():
        setattr(settings, key, value)
    return settings


def noise_source(seconds: float = 30.0) -> Callable[[Settings], ArraySource]:
    """A virtual microphone: speech-like noise at real-time pace."""

    def make(_settings: Settings) -> ArraySource:
        rng = np.random.default_rng(3)
        pcm = (rng.standard_normal(int(seconds * CAPTURE_RATE)) * 3000).astype(np.int16)
        return ArraySource(pcm, pace="realtime")

    return make


def virtual_player(pace: str = "fast") -> Callable[[Settings], VirtualPlayer]:
    return lambda _settings: VirtualPlayer(pace=pace)  # type: ignore[arg-type]


def timeline(
    turn_id: int, marks_ms: dict[str, float], budgets: Budgets | None = None
) -> dict[str, Any]:
    """A stored timeline dict with the given marks (ms from the end of speech)."""
    t = Timeline(turn_id, {name: 100.0 + ms / 1000.0 for name, ms in marks_ms.items()})
    return t.to_dict(budgets or Budgets())


SEEDED = [
    TurnRecord(
        turn_id=1,
        user_text="What's the weather usually like in Lisbon in October?",
        assistant_text=(
            "October in Lisbon is mild: days around 22 degrees, cooler evenings, and the first "
            "autumn rain now and then. Pack a light jacket."
        ),
        timeline=timeline(
            1,
            {
                "speech_start": -2100,
                "speech_end": 0,
                "stt_final": 210,
                "llm_request": 215,
                "llm_first_token": 520,
                "first_text_to_tts": 600,
                "tts_first_audio": 690,
                "playback_start": 742,
                "playback_end": 6900,
            },
        ),
    ),
    TurnRecord(
        turn_id=2,
        user_text="Can you suggest a name for my new cat?",
        assistant_text=(
            "How about Miso? It's short, warm and easy to call out. If you'd like something "
            "grander, Captain Whiskers never fails."
        ),
        timeline=timeline(
            2,
            {
                "speech_start": -1500,
                "speech_end": 0,
                "stt_final": 190,
                "llm_request": 195,
                "llm_first_token": 690,
                "first_text_to_tts": 760,
                "tts_first_audio": 850,
                "playback_start": 913,
                "playback_end": 5200,
            },
        ),
    ),
    TurnRecord(
        turn_id=3,
        user_text="Tell me a fun fact about octopuses.",
        assistant_text="Octopuses have three hearts and blue blood,",
        interrupted=True,
        generated_text=(
            "Octopuses have three hearts and blue blood, and two of those hearts stop beating "
            "while they swim, which is why they prefer crawling."
        ),
        timeline=timeline(
            3,
            {
                "speech_start": -1700,
                "speech_end": 0,
                "stt_final": 180,
                "llm_request": 184,
                "llm_first_token": 440,
                "first_text_to_tts": 505,
                "tts_first_audio": 610,
                "playback_start": 688,
                "playback_end": 2900,
                "interrupted": 2900,
            },
        ),
    ),
]


def seed_history(data_dir: Path) -> list[TurnRecord]:
    """Write a past conversation where the app looks for it (``data_dir/conversations``)."""
    store = HistoryStore(data_dir / "conversations")
    conversation = store.new()
    for record in SEEDED:
        conversation.append(record)
    return SEEDED
