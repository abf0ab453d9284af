"""What the latency benchmark says to Parley: spoken questions, and the facts a good answer holds.

Questions are spoken by the project's own offline voices (Piper for English, Pico for the other
languages) into 16 kHz WAVs, plus real read speech from the test data. A question with an
``expected`` pattern is part of the quality set: its answer should contain that fact.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from assistant.audio.wav import resample, write_wav

ROOT = Path(__file__).resolve().parents[2]
REAL_SPEECH = ROOT / "tests" / "data" / "speech"

#: Silence before and after each synthesized question (a talk key is pressed a little before
#: speaking and let go a little after).
LEAD_SILENCE = 0.4
TAIL_SILENCE = 0.25


@dataclass(frozen=True, slots=True)
class Question:
    language: str
    text: str
    #: A regular expression the answer must match (case-insensitive); None: no single fact.
    expected: str | None = None


#: The spoken questions; the first of each language makes the quick set.
QUESTIONS: tuple[Question, ...] = (
    Question("en", "What is the capital of France?", r"\bparis\b"),
    Question("en", "Give me one tip for sleeping better."),
    Question("en", "How many legs does a spider have?", r"\b(eight|8)\b"),
    Question("en", "Who wrote Romeo and Juliet?", r"shakespeare"),
    Question("en", "Which planet is known as the red planet?", r"\bmars\b"),
    Question("en", "What is the largest ocean on Earth?", r"pacific"),
    Question("es", "¿Cuál es la capital de España?", r"madrid"),
    Question("es", "Dime algo interesante sobre la luna."),
    Question("de", "Was ist die Hauptstadt von Deutschland?", r"berlin"),
    Question("de", "Erzähl mir etwas über Katzen."),
    Question("fr", "Quelle est la capitale de l'Italie ?", r"\brom[ea]\b"),
    Question("fr", "Donne-moi une idée de dîner rapide."),
)

#: Said over a reply to measure how fast Parley falls silent.
BARGE_IN = Question("en", "Wait, stop, tell me about Mars instead.")
#: Asked before each barge-in: an answer long enough to be talked over.
LONG_ANSWER = Question("en", "Tell me a short story about a dragon and a knight.")


@dataclass(frozen=True, slots=True)
class Utterance:
    path: Path
    language: str
    reference: str
    real: bool
    expected: str | None = None

    def has_fact(self, answer: str) -> bool | None:
        """Whether ``answer`` holds the expected fact (None: this question has none)."""
        if self.expected is None:
            return None
        return re.search(self.expected, answer, re.IGNORECASE) is not None


class _InALanguage(Protocol):
    @property
    def language(self) -> str: ...


def first_per_language[T: _InALanguage](items: Iterable[T]) -> list[T]:
    """The first of ``items`` in each language, in order (a benchmark's quick set)."""
    seen: set[str] = set()
    out = []
    for item in items:
        if item.language not in seen:
            seen.add(item.language)
            out.append(item)
    return out


def quick_set(questions: tuple[Question, ...] = QUESTIONS) -> tuple[Question, ...]:
    """The first question of each language."""
    return tuple(first_per_language(questions))


async def synthesize(
    directory: Path,
    questions: tuple[Question, ...],
    *,
    lead: float = LEAD_SILENCE,
    prefix: str = "",
) -> list[Utterance]:
    """The questions spoken by the offline voices, as 16 kHz WAVs in ``directory`` (named
    ``{prefix}{language}-{index}.wav``)."""
    from assistant.engines.local.tts import LocalTTS

    tts = LocalTTS()
    out = []
    try:
        for i, question in enumerate(questions):

            async def one(text: str = question.text) -> AsyncIterator[str]:
                yield text

            chunks = [c async for c in tts.stream(one(), voice=None, language=question.language)]
            rate = chunks[0].sample_rate
            pcm = resample(np.concatenate([c.pcm for c in chunks]), rate, 16_000)
            before = np.zeros(int(lead * 16_000), np.int16)
            after = np.zeros(int(TAIL_SILENCE * 16_000), np.int16)
            wav = directory / f"{prefix}{question.language}-{i}.wav"
            write_wav(wav, np.concatenate([before, pcm, after]), 16_000)
            out.append(Utterance(wav, question.language, question.text, False, question.expected))
    finally:
        tts.close()
    return out


def real_recordings(quick: bool) -> list[Utterance]:
    """Real read speech with reference transcripts (tests/data/speech/transcripts.json)."""
    index = REAL_SPEECH / "transcripts.json"
    if not index.exists():
        return []
    entries = json.loads(index.read_text(encoding="utf-8"))
    out = [
        Utterance(REAL_SPEECH / e["file"], e.get("language", "en"), e["text"], real=True)
        for e in entries
        if (REAL_SPEECH / e["file"]).exists()
    ]
    return out[:2] if quick else out
