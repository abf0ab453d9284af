"""Word error rates: transcripts normalized (case, punctuation and digits don't count), and how
far apart two rates measured on few utterances may be."""

from __future__ import annotations

import re
import unicodedata

import jiwer
import numpy as np
import numpy.typing as npt
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


def word_errors(
    references: list[str], hypotheses: list[str], language: str = "en"
) -> list[tuple[int, int]]:
    """Per pair, after normalization: (word errors, words in the reference). Summed over
    pairs they give ``word_error_rate``'s figure; kept apart they can be resampled."""
    out = []
    for ref, hyp in zip(references, hypotheses, strict=True):
        r, h = normalize(ref, language), normalize(hyp, language)
        if not r:
            out.append((0, 0))
            continue
        m = jiwer.process_words(r, h)
        out.append((m.substitutions + m.deletions + m.insertions, len(r.split())))
    return out


def wer_gap_interval(
    errors: list[tuple[int, int]],
    baseline: list[tuple[int, int]],
    *,
    level: float = 0.9,
    draws: int = 4000,
    seed: int = 0,
) -> tuple[float, float]:
    """The ``level`` interval (WER points) of the corpus WER of ``errors`` minus that of
    ``baseline`` (each a list of ``word_errors`` pairs, one an utterance), by resampling each
    side's utterances with replacement (the bootstrap): how far the difference one run
    measures may be from the one many runs would."""
    if not errors or not baseline:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)

    def wers(pairs: list[tuple[int, int]]) -> npt.NDArray[np.float64]:
        table = np.array(pairs, dtype=np.float64)
        picks = rng.integers(0, len(table), size=(draws, len(table)))
        return 100.0 * table[picks, 0].sum(axis=1) / np.maximum(1.0, table[picks, 1].sum(axis=1))

    gaps = wers(errors) - wers(baseline)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(gaps, [tail, 100.0 - tail])
    return float(low), float(high)
