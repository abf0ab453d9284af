"""The reply language follows the settings from the next turn, with every engine offline.

An English conversation is on disk. The language is switched to French: the language model's
server is not restarted (the same process answers), and a French question, spoken by the
offline French voice, is answered in French, read by the French voice (the reply's audio,
transcribed, gives back its words). Then the language goes back to English with detection of
the spoken language: a German question is answered in German.
"""

from __future__ import annotations

import copy
import re
import time
from pathlib import Path

import numpy as np
import pytest

from assistant.app import Assistant
from assistant.audio.frames import CAPTURE_RATE, FRAME_SAMPLES, AudioFrame
from assistant.audio.player import VirtualPlayer
from assistant.audio.push import PushSource
from assistant.audio.wav import resample
from assistant.config import Settings
from assistant.events import AppEvent, TurnFinished
from assistant.history import HistoryStore, TurnRecord

pytestmark = pytest.mark.slow

#: Words that tell a short answer's language.
COMMON_WORDS = {
    "en": set("the is a of and it has to you in are for".split()),
    "fr": set("le la les est une un de des et a pour vous il elle du en".split()),
    "de": set("die der das ist ein eine und hat sie es für zu nicht ich von mit".split()),
}


def language_of(text: str) -> str | None:
    words = re.findall(r"\w+", text.lower())
    scores = {code: sum(w in common for w in words) for code, common in COMMON_WORDS.items()}
    best = max(scores, key=lambda code: scores[code])
    return best if scores[best] > 0 else None


def _local_engines_available() -> bool:
    from assistant.engines.local.llama_server import find_binary

    try:
        find_binary()
        from assistant.engines.local import pico  # noqa: F401
    except Exception:
        return False
    return True


async def spoken(text: str, language: str) -> np.ndarray:
    """``text`` in the offline voice for ``language``, as 16 kHz int16."""
    from assistant.engines.local.tts import LocalTTS

    tts = LocalTTS(language=language)

    async def pieces():
        yield text

    chunks, rate = [], CAPTURE_RATE
    async for chunk in tts.stream(pieces(), voice=None, language=language):
        chunks.append(chunk.pcm)
        rate = chunk.sample_rate
    tts.close()
    return resample(np.concatenate(chunks), rate, CAPTURE_RATE).astype(np.int16)


class Microphone:
    """A push-to-talk user: holds the key over the audio, then lets go."""

    def __init__(self) -> None:
        self.source = PushSource()
        self.offset = 0.0

    async def say(self, assistant: Assistant, pcm: np.ndarray) -> None:
        silence = np.zeros(int(0.3 * CAPTURE_RATE), np.int16)
        audio = np.concatenate([pcm, silence])
        audio = np.pad(audio, (0, -len(audio) % FRAME_SAMPLES))
        assert assistant.press_to_talk()
        for start in range(0, len(audio), FRAME_SAMPLES):
            frame = audio[start : start + FRAME_SAMPLES]
            self.offset += FRAME_SAMPLES / CAPTURE_RATE
            await self.source.push(AudioFrame(frame, time.monotonic(), self.offset))
        assistant.release_to_talk()


@pytest.mark.timeout(900)
@pytest.mark.skipif(not _local_engines_available(), reason="the offline engines are not built")
async def test_a_french_question_in_an_english_conversation_is_answered_in_french(
    tmp_path: Path,
) -> None:
    store = HistoryStore(tmp_path / "conversations")
    english = store.new()
    english.append(
        TurnRecord(1, "What is the capital of Spain?", "The capital of Spain is Madrid.")
    )
    english.append(TurnRecord(2, "And of Portugal?", "Lisbon is the capital of Portugal."))

    microphone = Microphone()
    players: list[VirtualPlayer] = []

    def player(_settings: Settings) -> VirtualPlayer:
        players.append(VirtualPlayer(pace="fast"))
        return players[-1]

    assistant = Assistant(
        Settings(stt="local", llm="local", tts="local", language="en"),
        history_dir=tmp_path / "conversations",
        player_factory=player,
        source_factory=lambda _s: microphone.source,
        persist=False,
    )
    finished: list[TurnRecord] = []

    def keep(event: AppEvent) -> None:
        if isinstance(event, TurnFinished):
            finished.append(event.turn)

    assistant.events.subscribe(keep)
    try:
        await assistant.start()
        await assistant.wait_ready(600)
        assert [t.turn_id for t in assistant.conversation.turns] == [1, 2]
        llm = assistant.engines.llm
        server = llm.engines[0].server
        pid = server.pid
        assert pid is not None

        french = copy.deepcopy(assistant.settings)
        french.language = "fr"
        await assistant.apply_settings(french)
        await assistant.wait_ready(600)
        # Only recognition and the voices were rebuilt: the same model server answers.
        assert assistant.engines.llm is llm and llm.engines[0].server.pid == pid

        question = await spoken("Quelle est la capitale de la France ?", "fr")
        await microphone.say(assistant, question)
        await _until(lambda: finished, 600)
        (turn,) = finished
        assert "capitale" in turn.user_text.lower() and "france" in turn.user_text.lower()
        assert language_of(turn.assistant_text) == "fr", turn.assistant_text
        assert turn in assistant.conversation.turns  # the same, once English, conversation
        # Read by the French voice: the reply's audio, heard as French, gives its words back.
        heard = _transcribe(players[-1], "fr")
        said = set(re.findall(r"\w+", turn.assistant_text.lower()))
        assert len(said & set(re.findall(r"\w+", heard.lower()))) >= max(2, len(said) // 3), (
            heard,
            turn.assistant_text,
        )

        # Answer in the language spoken: English first, but a German question gets German.
        detecting = copy.deepcopy(assistant.settings)
        detecting.language = "en"
        detecting.detect_language = True
        await assistant.apply_settings(detecting)
        await assistant.wait_ready(600)
        assert assistant.engines.llm is llm and llm.engines[0].server.pid == pid
        question = await spoken("Wie viele Beine hat eine Spinne?", "de")
        await microphone.say(assistant, question)
        await _until(lambda: len(finished) == 2, 600)
        german = finished[1]
        assert "beine" in german.user_text.lower()
        assert german.timeline["notes"]["language"] == "de"
        assert language_of(german.assistant_text) == "de", german.assistant_text
    finally:
        await assistant.close()


def _transcribe(player: VirtualPlayer, language: str) -> str:
    from assistant.engines.local.stt import WhisperRunner

    audio = resample(player.recorded(), player.rate, CAPTURE_RATE).astype(np.float32) / 32768.0
    return WhisperRunner("base", 2).transcribe(audio, language).text


async def _until(predicate, timeout: float) -> None:
    import asyncio

    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        await asyncio.sleep(0.05)
