"""Which language an utterance is in, with the configured one as the first guess: the rule on
its own, then Whisper base on real English recordings and synthesized German and Spanish,
through the engine as a conversation uses it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from assistant.audio.wav import read_wav, resample
from assistant.engines.local.stt import LocalSTT, WhisperRunner, choose_language

SPEECH = Path(__file__).resolve().parents[1] / "data" / "speech"
OFFERED = {"en", "de", "es", "fr", "it", "id", "ru"}


def test_the_configured_language_wins_unless_another_is_much_likelier() -> None:
    # Sure of another language: it is chosen.
    assert choose_language({"de": 0.71, "en": 0.28}, "en", OFFERED) == "de"
    # Likelier, but not twice as likely: the configured language stays.
    assert choose_language({"de": 0.62, "en": 0.34}, "en", OFFERED) == "en"
    # A language nobody can converse in here is never chosen; among the rest Spanish is sure.
    assert choose_language({"ca": 0.49, "es": 0.35, "en": 0.004}, "en", OFFERED) == "es"
    # A short clip of English taken for Chinese: Chinese is not offered, English stays.
    assert choose_language({"zh": 0.91, "en": 0.03}, "en", OFFERED) == "en"
    # Spread thin among many: no change.
    assert choose_language({"pl": 0.3, "ru": 0.2, "de": 0.2, "en": 0.2}, "en", OFFERED) == "en"
    assert choose_language({}, "fr", OFFERED) == "fr"


def _audio(name: str) -> np.ndarray:
    pcm, rate = read_wav(SPEECH / name)
    return resample(pcm, rate, 16_000).astype(np.float32) / 32768.0


@pytest.fixture(scope="module")
def base() -> WhisperRunner:
    return WhisperRunner("base", 2)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [e["file"] for e in json.loads((SPEECH / "transcripts.json").read_text())],
)
def test_real_english_stays_english(base: WhisperRunner, name: str) -> None:
    for seconds in (1.0, 2.0, None):
        audio = _audio(name)
        clip = audio if seconds is None else audio[: int(seconds * 16_000)]
        heard = base.language_probabilities(clip)
        assert choose_language(heard, "en", OFFERED) == "en", (seconds, heard)
        # Even where German is the first guess, clear English is heard as English.
        assert choose_language(heard, "de", OFFERED) == "en" or seconds == 1.0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "language"), [("espeak_de_kino.wav", "de"), ("espeak_es_alarma.wav", "es")]
)
def test_another_language_spoken_whole_is_recognized(
    base: WhisperRunner, name: str, language: str
) -> None:
    """The language is Whisper's first guess, and it is chosen over a configured language the
    clip is clearly not in. (Over configured English the margin rule decides, and how sure
    Whisper is of a short synthesized clip depends on the CPU's int8 kernels: German scored 0.62
    against English 0.37 on an AVX2-only machine, under the margin, so English stayed; the rule
    itself is tested above.)"""
    heard = base.language_probabilities(_audio(name))
    assert max(heard, key=heard.__getitem__) == language, heard
    assert choose_language(heard, "ru", OFFERED) == language, heard


@pytest.mark.slow
async def test_the_engine_transcribes_in_the_language_it_hears() -> None:
    engine = LocalSTT(language="en", detect_language=True, languages=OFFERED)
    session = await engine.open("en")
    pcm = (_audio("espeak_es_alarma.wav") * 32767).astype(np.int16)
    await session.push(pcm)
    await session.end_turn()
    final = None
    async for transcript in session.transcripts():
        if transcript.is_final:
            final = transcript
            break
    await session.aclose()
    engine.close()
    assert final is not None and final.language == "es"
    assert "alarma" in final.text.lower()
