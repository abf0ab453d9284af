"""Transcript normalization for word error rates: case, punctuation and digits don't count."""

from __future__ import annotations

import re
import unicodedata

import jiwer
from num2words import num2words

_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_NOT_WORD = re.compile(r"[^\w\s']")
#: Words a transcriber writes one way or the other ("OK" or "okay"): one spelling each, so a
#: variant is not counted as a different word.
_SPELLINGS = {"en": {"ok": "okay", "alright": "all right"}}


def normalize(text: str, language: str = "en") -> str:
    """Lower-case words with numbers spelled out, punctuation removed, and one spelling of
    words written two ways."""
    lang = language.split("-")[0].lower()

    def spell(match: re.Match[str]) -> str:
        raw = match.group().replace(",", ".")
        try:
            value: float | int = float(raw) if "." in raw else int(raw)
            return f" {num2words(value, lang=lang)} "
        except (NotImplementedError, OverflowError, ValueError):
            return f" {raw} "

    text = unicodedata.normalize("NFKC", text).lower()
    text = _NUMBER.sub(spell, text)
    text = text.replace("-", " ")
    text = _NOT_WORD.sub(" ", text)
    spellings = _SPELLINGS.get(lang, {})
    return " ".join(spellings.get(word, word) for word in text.split())


def word_error_rate(references: list[str], hypotheses: list[str], language: str = "en") -> float:
    """Corpus WER over pairs of texts, after normalization."""
    refs = [normalize(r, language) for r in references]
    hyps = [normalize(h, language) for h in hypotheses]
    pairs = [(r, h) for r, h in zip(refs, hyps, strict=True) if r]
    if not pairs:
        return 0.0
    return float(jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]))
