"""Transcript normalization for word error rates and for comparing what was said with what was
heard."""

from __future__ import annotations

from assistant.bench.textnorm import normalize, word_error_rate


def test_case_punctuation_digits_and_spellings_do_not_count() -> None:
    assert normalize("Go forward 10 meters.") == "go forward ten meters"
    assert normalize("Cold-hearted, isn't it?") == "cold hearted isn't it"
    assert normalize("OK.") == normalize("Okay!") == "okay"
    assert normalize("Ok, book it") == "okay book it"  # a whole word only
    assert word_error_rate(["okay go on"], ["OK, go on."]) == 0.0
    assert normalize("Alright.") == normalize("All right.") == "all right"
    assert word_error_rate(["go forward ten meters"], ["Forward 10 meters."]) == 0.25
