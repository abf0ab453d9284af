"""Fuzzing the text splitter: joins, piece sizes and CPU time on arbitrary and hostile text."""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assistant.text import _RUN_MAX, TextSplitter, speakable

# Everything the cleaner, the spacer and the splitter treat specially, and ordinary text.
ALPHABET = (
    "aZ9é \u200b\t\n.!?…。！？，、；：,;:-–—\"')]」』（「*_`~#=+>[]()!\\"
    "\u0301\u200d\ufe0f🎉👍🏽東京こんにちは한국"
)
MARKUP = ["```", "~~~", "**", "[a](b)", "![x](y)", "https://example.com/a/b?c=d", "\n- ", "\n# "]

texts = st.lists(
    st.one_of(
        st.text(st.sampled_from(ALPHABET), max_size=12),
        st.sampled_from(MARKUP),
        # long runs without whitespace: a letter, a CJK character, a marker, a combining mark
        st.builds(lambda ch, k: ch * k, st.sampled_from("a東.-*`[\u0301"), st.integers(1, 300)),
    ),
    max_size=30,
).map("".join)


@st.composite
def chunkings(draw: st.DrawFn, text: str) -> list[str]:
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=max(1, len(text) // 3))))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def split(chunks: list[str], max_piece_chars: int = 220) -> list[str]:
    splitter = TextSplitter(max_piece_chars=max_piece_chars)
    pieces = [p for chunk in chunks for p in splitter.push(chunk)]
    return pieces + splitter.flush()


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(text=texts, data=st.data(), cap=st.sampled_from([20, 60, 220]))
def test_pieces_join_to_speakable_text_and_are_bounded(
    text: str, data: st.DataObject, cap: int
) -> None:
    pieces = split(data.draw(chunkings(text)), cap)
    assert " ".join(pieces) == speakable(text)
    assert pieces == split([text], cap)  # the chunking changes nothing
    for piece in pieces:
        assert piece and piece == piece.strip()
        assert len(piece) <= max(cap, _RUN_MAX)


def cpu_ms_per_kb(text: str, delta: int) -> float:
    """CPU time of this thread per KB of ``text`` fed in ``delta``-character pieces (best of 3)."""
    best = float("inf")
    for _ in range(3):
        splitter = TextSplitter()
        start = time.thread_time()
        for i in range(0, len(text), delta):
            splitter.push(text[i : i + delta])
        splitter.flush()
        best = min(best, time.thread_time() - start)
    return best * 1000 / (len(text) / 1000)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(unit=st.text(st.sampled_from(ALPHABET), min_size=1, max_size=40))
def test_cpu_time_is_at_most_5_ms_per_kb(unit: str) -> None:
    """8 KB of any repeated pattern, in token-sized deltas: bounded CPU on the event loop."""
    text = (unit * (8_000 // len(unit) + 1))[:8_000]
    assert cpu_ms_per_kb(text, 4) <= 5.0


HOSTILE = {
    "letters": "a",
    "dots": "a.",
    "cjk": "我们今天去公园玩然后回家吃饭",
    "cjk-commas": "我们今天去公园玩，",
    "stars": "*",
    "backticks": "`",
    "hashes": "#",
    "brackets": "[",
    "link-prefix": "[" + "a" * 199 + "](" + "b" * 999 + " ",
    "rule": "\n" + "-" * 300 + "x",
    "spaces-after-a-stop": ". " + " " * 1000 + "x",
    "combining": "e\u0301",
}


@pytest.mark.parametrize("unit", HOSTILE.values(), ids=HOSTILE.keys())
def test_cpu_time_grows_linearly_with_the_text(unit: str) -> None:
    """Four times the text costs about four times the CPU, even one character at a time."""

    def text(size: int) -> str:
        return (unit * (size // len(unit) + 1))[:size]

    small, large = cpu_ms_per_kb(text(4_000), 1), cpu_ms_per_kb(text(16_000), 1)
    # Per KB the cost stays flat (a quadratic splitter costs 4x more per KB here).
    assert large <= 2.0 * small + 0.5
    assert cpu_ms_per_kb(text(16_000), 4) <= 5.0
