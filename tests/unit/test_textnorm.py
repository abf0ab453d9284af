"""Transcript normalization for word error rates and for comparing what was said with what was
heard."""

from __future__ import annotations

import math

import pytest

from assistant.bench.textnorm import normalize, wer_gap_interval, word_error_rate, word_errors


def test_case_punctuation_digits_and_spellings_do_not_count() -> None:
    assert normalize("Go forward 10 meters.") == "go forward ten meters"
    assert normalize("Cold-hearted, isn't it?") == "cold hearted isn't it"
    assert normalize("OK.") == normalize("Okay!") == "okay"
    assert normalize("Ok, book it") == "okay book it"  # a whole word only
    assert word_error_rate(["okay go on"], ["OK, go on."]) == 0.0
    assert normalize("Alright.") == normalize("All right.") == "all right"
    assert word_error_rate(["go forward ten meters"], ["Forward 10 meters."]) == 0.25


def test_word_errors_add_up_to_the_corpus_rate() -> None:
    refs = ["go forward ten meters", "seven of clubs", ""]
    hyps = ["Forward 10 meters.", "7 of close, please", "anything"]
    counts = word_errors(refs, hyps)
    assert counts == [(1, 4), (2, 3), (0, 0)]
    errors, words = map(sum, zip(*counts, strict=True))
    assert errors / words == pytest.approx(word_error_rate(refs, hyps))


def test_the_gap_interval_is_wide_for_few_utterances_and_narrow_for_many() -> None:
    same = [(1, 10), (0, 10), (2, 10), (0, 10)]
    low, high = wer_gap_interval(same, same)
    assert low < 0.0 < high  # the same rate: no gap either way
    worse = [(3, 10), (2, 10), (4, 10), (3, 10)]
    assert wer_gap_interval(worse * 10, same * 10)[0] > 0.0  # plainly worse, often enough
    few = wer_gap_interval(worse, same)
    many = wer_gap_interval(worse * 10, same * 10)
    assert many[1] - many[0] < (few[1] - few[0]) / 2
    assert all(math.isnan(x) for x in wer_gap_interval([], same))  # nothing to compare
