"""The offline voice catalog and the rule that picks a voice for a language."""

from __future__ import annotations

import pytest

from assistant.engines.base import EngineError, TextToSpeech
from assistant.engines.local import voices
from assistant.engines.local.piper_voice import segments
from assistant.engines.local.tts import LocalTTS
from assistant.engines.local.voices import (
    languages,
    list_voices,
    normalize_language,
    resolve_voice,
)


def test_catalog_has_piper_pico_and_espeak_voices() -> None:
    catalog = list_voices()
    piper = [v for v in catalog if v.engine == "piper"]
    assert [(v.id, v.language, v.sample_rate) for v in piper] == [
        ("piper:en_US-joe-medium", "en-US", 22_050)
    ]
    pico = {v.language: v for v in catalog if v.engine == "pico"}
    assert {"en-GB", "de-DE", "es-ES", "fr-FR", "it-IT"} <= set(pico)
    assert all(v.sample_rate == 16_000 and v.id == f"pico:{v.language}" for v in pico.values())
    espeak = [v for v in catalog if v.engine == "espeak"]
    espeak_languages = {v.language.split("-")[0] for v in espeak}
    assert len(espeak) > 100
    assert {"de", "fr", "pt", "ru", "sv", "ja", "hi", "sw"} <= espeak_languages
    assert len({v.id for v in catalog}) == len(catalog)


def test_voices_of_a_language_start_with_its_default() -> None:
    german = list_voices("de")
    assert german[0].id == "pico:de-DE"
    assert "espeak:de" in [v.id for v in german]
    assert all(v.language.lower().startswith("de") for v in german)
    assert [v.id for v in list_voices("en")][:2] == ["piper:en_US-joe-medium", "pico:en-GB"]
    assert list_voices("en-GB")[0].id == "pico:en-GB"
    assert all(v.engine != "piper" for v in list_voices("en-GB"))


def test_regional_codes_fall_back_to_the_base_language() -> None:
    assert [v.id for v in list_voices("de-AT")] == [v.id for v in list_voices("de")]
    assert list_voices("fr-CA")[0].id == "pico:fr-FR"
    assert list_voices("xx") == []


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", "piper:en_US-joe-medium"),
        ("en-US", "piper:en_US-joe-medium"),
        ("en_us", "piper:en_US-joe-medium"),
        ("en-AU", "piper:en_US-joe-medium"),
        ("en-GB", "pico:en-GB"),
        ("de", "pico:de-DE"),
        ("de-CH", "pico:de-DE"),
        ("fr", "pico:fr-FR"),
        ("es", "pico:es-ES"),
        ("it", "pico:it-IT"),
        ("pt", "espeak:pt"),
        ("pt-BR", "espeak:pt-BR"),
        ("ru", "espeak:ru"),
        ("zh", "espeak:cmn"),
    ],
)
def test_default_voice_per_language(language: str, expected: str) -> None:
    assert resolve_voice(None, language).id == expected


@pytest.mark.parametrize(
    ("voice", "expected"),
    [
        ("pico:de-DE", "pico:de-DE"),
        ("PICO:de", "pico:de-DE"),
        ("espeak:fr", "espeak:fr"),
        ("espeak:pt-br", "espeak:pt-BR"),
        ("en_US-joe-medium", "piper:en_US-joe-medium"),
        ("espeak:en-US", "espeak:en-US"),
    ],
)
def test_a_voice_id_picks_the_engine(voice: str, expected: str) -> None:
    # The voice wins over the language.
    assert resolve_voice(voice, "de").id == expected


@pytest.mark.parametrize("voice", ["pico:xx-YY", "nosuch:de", "robot", "piper:de"])
def test_unknown_voice_lists_what_exists(voice: str) -> None:
    with pytest.raises(EngineError) as caught:
        resolve_voice(voice, "en")
    message = str(caught.value)
    assert voice in message
    assert "pico:de-DE" in message and "piper:en_US-joe-medium" in message
    assert len(message) < 400
    assert not caught.value.retryable


def test_unknown_language_lists_languages() -> None:
    with pytest.raises(EngineError) as caught:
        resolve_voice(None, "tlh-XX")
    message = str(caught.value)
    assert "'tlh-XX'" in message and "en-GB" in message and "de" in message
    assert len(message) < 300


def test_languages_are_distinct_choices_with_names() -> None:
    listed = languages()
    codes = [code for code, _ in listed]
    assert len(codes) == len(set(codes))
    names = dict(listed)
    assert names["en"] == "English" and names["en-GB"] == "English (UK)"
    assert names["de"] == "German" and names["pt-BR"] == "Portuguese (Brazil)"
    assert "de-DE" not in names  # spoken by the same voice as "de"
    assert [n.lower() for _, n in listed] == sorted(n.lower() for _, n in listed)
    for code in codes:
        resolve_voice(None, code)  # every listed language can be spoken


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("EN_us", "en-US"),
        ("de", "de"),
        ("es-419", "es-419"),
        ("cmn-latn-pinyin", "cmn-Latn-pinyin"),
        ("en-gb-x-rp", "en-GB-x-rp"),
        (" fr-fr ", "fr-FR"),
    ],
)
def test_normalize_language(raw: str, normal: str) -> None:
    assert normalize_language(raw) == normal


def test_local_tts_implements_the_protocol() -> None:
    tts = LocalTTS()
    try:
        assert isinstance(tts, TextToSpeech)
        assert tts.name == "local"
        assert tts.voices("it") == list_voices("it")
    finally:
        tts.close()


def word(text: str) -> list[str]:
    return list(text)


def test_piper_cuts_a_long_first_sentence_after_its_first_clause() -> None:
    head = word("ðə kwˈɪk bɹˈaʊn fˈɑːks,")
    tail = word("dʒˈʌmps ˌoʊvɚ ðə lˈeɪzi dˈɑːɡ.")
    runs = segments([[*head, " ", *tail], word("aɪ æm hˈɪɹ.")])
    assert runs == [head, tail, word("aɪ æm hˈɪɹ.")]


def test_piper_keeps_short_clauses_and_later_sentences_whole() -> None:
    short = word("jˈɛs, aɪ dˈuː.")
    second = word("wˈʌn, tˈuː, θɹˈiː, fˈɔːɹ, fˈaɪv, sˈɪks, sˈɛvən, ˈeɪt.")
    assert segments([short, second]) == [short, second]


def test_piper_splits_very_long_sentences_at_clauses() -> None:
    clause = word("ðɪs ɪz ɐ klˈɔz ðæt ɡˈoʊz ˌɑːn ænd ˈɑːn,")
    sentence = [s for _ in range(12) for s in [*clause, " "]][:-1]
    runs = segments([word("hˈaɪ."), sentence])
    assert runs[0] == word("hˈaɪ.")
    assert len(runs) > 2
    assert all(len(r) <= 300 for r in runs)
    assert [s for r in runs[1:] for s in r if s != " "] == [s for s in sentence if s != " "]


def test_catalog_is_built_once() -> None:
    assert voices.catalog() is voices.catalog()
