"""The streaming text splitter: cleaning, sentence rules, chunking independence, CPU bounds."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assistant.text import _RUN_MAX, TextSplitter, phrase_starts, speakable, split_stream


def split(text: str, chunks: Sequence[str] | None = None, /, **options: object) -> list[str]:
    """Pieces of ``text`` fed as ``chunks`` (default: all at once), flush included."""
    splitter = TextSplitter(**options)  # type: ignore[arg-type]
    pieces: list[str] = []
    for chunk in [text] if chunks is None else chunks:
        pieces += splitter.push(chunk)
    return pieces + splitter.flush()


def check(text: str, expected: list[str]) -> None:
    """Whole-text, per-character and speakable() all agree with ``expected``."""
    assert split(text) == expected
    assert split(text, list(text)) == expected
    assert speakable(text) == " ".join(expected)


# ------------------------------------------------------------------------------- sentence rules

NO_SPLIT = [
    ("title", "Dr. Smith is here. He left.", ["Dr. Smith is here.", "He left."]),
    ("mr-mrs", "Mr. and Mrs. Li came. Ms. Wu too.", ["Mr. and Mrs. Li came.", "Ms. Wu too."]),
    (
        "prof-st",
        "Prof. Ada lives on St. James St. Nice.",
        ["Prof. Ada lives on St. James St. Nice."],
    ),
    ("vs", "It was Ali vs. Frazier. Epic.", ["It was Ali vs. Frazier.", "Epic."]),
    ("etc", "Apples, pears, etc. Everything. Done.", ["Apples, pears, etc. Everything.", "Done."]),
    ("z.B.", "Obst, z.B. Äpfel. Gut.", ["Obst, z.B. Äpfel.", "Gut."]),
    ("usw", "Äpfel usw. Alles da. Ja.", ["Äpfel usw. Alles da.", "Ja."]),
    ("bzw", "Eins bzw. Zwei. Ja.", ["Eins bzw. Zwei.", "Ja."]),
    ("sr-sra", "El Sr. Pérez y la Sra. Ruiz. Hola.", ["El Sr. Pérez y la Sra. Ruiz.", "Hola."]),
    ("p.ej.", "Frutas, p.ej. Manzanas. Bien.", ["Frutas, p.ej. Manzanas.", "Bien."]),
    ("mme", "Mme. Curie est là. Oui.", ["Mme. Curie est là.", "Oui."]),
    ("decimal", "Pi is 3.14 today. Yes.", ["Pi is 3.14 today.", "Yes."]),
    ("e.g.-i.e.", "Fruit, e.g. Apples, i.e. Food. Go.", ["Fruit, e.g. Apples, i.e. Food.", "Go."]),
    ("time", "We eat at 12:30 today. Then sleep.", ["We eat at 12:30 today.", "Then sleep."]),
    ("u.s.", "The U.S. Army is big. Yes.", ["The U.S. Army is big.", "Yes."]),
    ("initials", "J. R. R. Tolkien wrote it. Yes.", ["J. R. R. Tolkien wrote it.", "Yes."]),
    ("list", "1. First item\n2. Second item", ["1. First item", "2. Second item"]),
    ("list-dot-upper", "1. The first one. 2. Next", ["1. The first one.", "2. Next"]),
    (
        "ordinal",
        "He came in the 3. place overall. Good.",
        ["He came in the 3. place overall.", "Good."],
    ),
    ("number-abbrev", "See No. 5 here. No. I won't.", ["See No. 5 here.", "No.", "I won't."]),
    ("year", "I moved in 1990. Then I left.", ["I moved in 1990.", "Then I left."]),
    (
        "url",
        "Open https://example.com/a.b?x=1 now. Then wait.",
        ["Open https://example.com/a.b?x=1 now.", "Then wait."],
    ),
    (
        "url-end",
        "Visit https://example.com. Then wait.",
        ["Visit https://example.com.", "Then wait."],
    ),
    (
        "email",
        "Mail a.b@example.co.uk today. Thanks.",
        ["Mail a.b@example.co.uk today.", "Thanks."],
    ),
    ("ellipsis-lower", "Well... maybe not. Ok.", ["Well... maybe not.", "Ok."]),
    ("ellipsis-upper", "I waited... Then it came.", ["I waited...", "Then it came."]),
    ("ellipsis-char", "Hmm… okay. Hmm… Yes.", ["Hmm… okay.", "Hmm…", "Yes."]),
    ("bang-question", "Wow! Really?! Yes? Fine.", ["Wow!", "Really?!", "Yes?", "Fine."]),
    ("quote-lower", '"Really?" she asked. Yes.', ['"Really?" she asked.', "Yes."]),
    ("closing-quote", 'He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
    ("closing-paren", "(See above.) Next one.", ["(See above.)", "Next one."]),
    ("cjk", "你好。世界！好吗？", ["你好。", "世界！", "好吗？"]),
    ("cjk-quote", "「你好。」他说。", ["「你好。」", "他说。"]),
    ("cjk-mixed", "こんにちは。Hello there. 元気？", ["こんにちは。", "Hello there.", "元気？"]),
    ("no-space-after-dot", "Version 2.0.1 is out.Ok", ["Version 2.0.1 is out.Ok"]),
    ("trailing", "No end here", ["No end here"]),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in NO_SPLIT], ids=[c[0] for c in NO_SPLIT]
)
def test_sentence_rules(text: str, expected: list[str]) -> None:
    check(text, expected)


# -------------------------------------------------------------------------------------- cleaning

CLEANING = [
    ("bold", "This is **very** good.", ["This is very good."]),
    ("italic", "This is *quite* good.", ["This is quite good."]),
    ("underscores", "A __big__ and _small_ deal.", ["A big and small deal."]),
    ("bold-italic", "A ***huge*** deal.", ["A huge deal."]),
    ("strike", "A ~~bad~~ good idea.", ["A bad good idea."]),
    ("identifier", "Call snake_case_name now.", ["Call snake_case_name now."]),
    ("math", "It is 2 * 3 and 2*3.", ["It is 2 * 3 and 2*3."]),
    ("tilde", "About ~5 minutes.", ["About ~5 minutes."]),
    ("heading", "## Step one\nDo it.", ["Step one", "Do it."]),
    ("hashtag", "#hashtag trends.", ["#hashtag trends."]),
    (
        "bullets",
        "Items:\n- apples\n* pears\n+ plums\n• figs",
        ["Items:", "apples", "pears", "plums", "figs"],
    ),
    ("nested-bullet", "  - **Nested** item", ["Nested item"]),
    ("numbered-bold", "1. **Bold**: text here", ["1. Bold: text here"]),
    ("rule", "Above\n---\nBelow", ["Above", "Below"]),
    ("quote", "> Quoted text.\n> - quoted item", ["Quoted text.", "quoted item"]),
    ("inline-code", "Use `print()` and ``a`b`` here.", ["Use print() and ab here."]),
    ("code-keeps-markers", "Call `__init__` now.", ["Call __init__ now."]),
    (
        "fence",
        "Look at this:\n```python\nprint('Hi. There.')\n```\nDone.",
        ["Look at this:", "Done."],
    ),
    ("tilde-fence", "Code:\n~~~\nx = 1\n~~~\nEnd.", ["Code:", "End."]),
    ("unclosed-fence", "Code:\n```\nx = 1. Y = 2.", ["Code:"]),
    ("longer-closing-needed", "A\n````\n```\nstill code\n````\nB", ["A", "B"]),
    ("inline-triple", "```code``` here", ["code here"]),
    ("link", "Read [the docs](https://x.y/z?a=1) now.", ["Read the docs now."]),
    ("link-emphasis", "See [**this** one](http://a.b). Ok.", ["See this one.", "Ok."]),
    ("image", "Logo: ![a cat](cat.png) here.", ["Logo: a cat here."]),
    ("footnote", "True [1] indeed.", ["True [1] indeed."]),
    ("escape", r"Not \*bold\* at all.", ["Not *bold* at all."]),
    ("emoji", "Hello 👋 world 🌍.", ["Hello world ."]),
    ("emoji-sequences", "Family 👨‍👩‍👧 and 👍🏽 and 🇩🇪 and ❤️ ok.", ["Family and and and ok."]),
    ("dingbats", "Done ✅ star ⭐ sun ☀ clock ⏰.", ["Done star sun clock ."]),
    (
        "keep-symbols",
        "Costs €5, £3, ¥100 at 25°C © café ñ 東京.",
        ["Costs €5, £3, ¥100 at 25°C © café ñ 東京."],
    ),
    ("blank-lines", "One\n\n\nTwo", ["One", "Two"]),
    ("whitespace", "  Lots   of\tspace  here.  ", ["Lots of space here."]),
    ("only-markup", "**  **\n```\ncode\n```\n🎉", []),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in CLEANING], ids=[c[0] for c in CLEANING]
)
def test_cleaning(text: str, expected: list[str]) -> None:
    check(text, expected)


def test_speakable_is_defined_for_cjk_gaps() -> None:
    # The one place a piece ends without whitespace in the text: speakable() adds the space.
    assert speakable("你好。世界") == "你好。 世界"
    assert speakable("你好。」世界") == "你好。」 世界"
    assert speakable("你好。 世界") == "你好。 世界"
    assert speakable("3.14 and a.b") == "3.14 and a.b"


# ------------------------------------------------------------------------------------ streaming


def test_marker_split_across_deltas() -> None:
    assert split("a **bold** move.", ["a *", "*bold*", "*", " move."]) == ["a bold move."]


def test_fence_opening_split_across_deltas() -> None:
    chunks = ["Look:\n`", "`", "`py", "thon\nprint(1). X.\n`", "``\nDone."]
    assert split("".join(chunks), chunks) == ["Look:", "Done."]


def test_link_split_across_deltas() -> None:
    chunks = ["See [the", " docs](http", "s://x.y/a.b", ") now."]
    assert split("".join(chunks), chunks) == ["See the docs now."]


@pytest.mark.parametrize(
    ("pushes", "flushed"),
    [
        pytest.param(
            [("Pi is 3.", []), ("14 exactly.", [])],
            ["Pi is 3.14 exactly."],
            id="a decimal split across deltas is no sentence end",
        ),
        pytest.param(
            [("Hello there.", []), ("  ", []), ("How", ["Hello there."]), (" are you?", [])],
            ["How are you?"],
            id="a sentence end waits for the next non-space",
        ),
        pytest.param(
            [("你好。", []), ("」", []), ("他", ["你好。」"])],
            ["他"],
            id="a CJK end needs no space but waits for closers",
        ),
    ],
)
def test_a_sentence_is_released_once_its_end_is_certain(
    pushes: list[tuple[str, list[str]]], flushed: list[str]
) -> None:
    """Each push releases what it says; the flush at the end, the rest."""
    splitter = TextSplitter()
    for text, released in pushes:
        assert splitter.push(text) == released, text
    assert splitter.flush() == flushed


def test_first_clause_released_before_sentence_end() -> None:
    splitter = TextSplitter()
    assert splitter.push("Well, I think that") == []  # "Well," is too short a clause
    assert splitter.push(" we should go, ") == ["Well, I think that we should go,"]
    # After the first piece only whole sentences come out.
    assert splitter.push("and then, later, we eat") == []
    assert splitter.push(". Next") == ["and then, later, we eat."]
    assert splitter.flush() == ["Next"]


@pytest.mark.parametrize(
    ("text", "first"),
    [
        ("Here is the thing: it works. Yes.", "Here is the thing:"),
        ("One two three four; five six. Yes.", "One two three four;"),
        ("I really think so — but maybe not. Yes.", "I really think so —"),
        ("I really think so - but not. Yes.", "I really think so -"),
        ("One two three, four five. Yes.", "One two three, four five."),  # 3 words: too short
        ("We meet at 12:30 and then eat. Yes.", "We meet at 12:30 and then eat."),
        ("It costs 1,000 dollars and more. Yes.", "It costs 1,000 dollars and more."),
        ("So—called words here. Yes.", "So—called words here."),  # unspaced dash is a word
    ],
)
def test_first_clause_marks(text: str, first: str) -> None:
    pieces = split(text)
    assert pieces[0] == first
    assert " ".join(pieces) == speakable(text)


def test_min_first_clause_words_is_configurable() -> None:
    text = "Yes sir, we will do that now. Ok."
    assert split(text)[0] == "Yes sir, we will do that now."
    assert split(text, min_first_clause_words=2)[0] == "Yes sir,"


@pytest.mark.parametrize(
    ("language", "text", "first"),
    [
        ("en", "The capital of France is Paris.", "The capital of France"),
        ("en", "A spider has eight legs. They walk.", "A spider"),
        ("en", "Romeo and Juliet was written by Shakespeare.", "Romeo and Juliet"),
        ("de", "Die Hauptstadt von Deutschland ist Berlin.", "Die Hauptstadt von Deutschland"),
        ("fr", "La capitale de l'Italie est Rome.", "La capitale de l'Italie"),
        ("es", "La capital de España es Madrid.", "La capital de España"),
        # Not a plain subject of two to five words: the usual rules decide.
        ("en", "Paris is the capital of France.", "Paris is the capital of France."),
        (
            "en",
            "The old stone bridge over the river is closed.",
            "The old stone bridge over the river is closed.",
        ),
        ("en", "Sure, here is one tip: sleep.", "Sure, here is one tip:"),
        ("en", "This is an island.", "This is an island."),
        ("ja", "東京は日本の首都です。", "東京は日本の首都です。"),
    ],
)
def test_first_phrase_ends_before_the_predicate(language: str, text: str, first: str) -> None:
    options = {"min_first_clause_words": 2, "phrase_starts": phrase_starts(language)}
    pieces = split(text, **options)
    assert pieces[0] == first
    assert split(text, list(text), **options) == pieces
    assert " ".join(pieces) == speakable(text)


def test_only_the_first_piece_is_a_phrase() -> None:
    text = "A cat is small. A dog is big. A horse is bigger."
    pieces = split(text, phrase_starts=phrase_starts("en"))
    assert pieces == ["A cat", "is small.", "A dog is big.", "A horse is bigger."]
    assert phrase_starts("xx") == frozenset()


def test_long_sentence_is_capped_at_last_clause_boundary() -> None:
    clause = "this clause has quite a few words in it"
    text = ", ".join([clause] * 12) + ". End."
    pieces = split(text, max_piece_chars=100)
    assert all(len(p) <= 100 for p in pieces)
    assert all(p.endswith((",", ".")) for p in pieces)
    assert len(pieces) > 3
    assert " ".join(pieces) == speakable(text)


def test_long_sentence_without_clauses_is_capped_at_word_boundary() -> None:
    words = [f"word{i}" for i in range(100)]
    text = " ".join(words) + "."
    pieces = split(text, max_piece_chars=50)
    assert all(len(p) <= 50 for p in pieces)
    assert " ".join(pieces).split() == text.split()  # no word was cut


def test_overlong_run_without_spaces_is_broken_at_a_natural_boundary() -> None:
    url = "https://example.com/" + "/".join(["segment"] * 30)
    text = f"Go {url} now. Ok."
    pieces = split(text, max_piece_chars=50)
    assert all(len(p) <= 50 for p in pieces)
    assert " ".join(pieces) == speakable(text)
    assert "".join(" ".join(pieces).split()) == "".join(text.split())  # only spaces were added
    # Past the soft width a run breaks after its next separator, not in the middle of a word.
    assert all(w.endswith("/") for w in speakable(url).split()[:-1])


def test_run_of_letters_is_broken_at_the_hard_width() -> None:
    text = "a" * 1000
    pieces = split(text, list(text))
    assert all(len(p) <= 220 for p in pieces)
    words = " ".join(pieces).split()
    assert max(len(w) for w in words) <= 64
    assert "".join(words) == text


def test_combining_marks_stay_with_their_letter() -> None:
    word = "e\u0301" * 200  # "é" spelled with a combining accent: never cut between the two
    words = speakable(word).split()
    assert len(words) > 1
    assert not any(w.startswith("\u0301") for w in words)


def test_text_without_spaces_is_spoken_before_the_reply_ends() -> None:
    splitter = TextSplitter()
    released = [p for ch in "x" * 16_000 for p in splitter.push(ch)]
    assert len(released) > 60  # pieces come out while the text streams in, not at flush
    assert all(len(p) <= 220 for p in released)


def test_cjk_without_sentence_ends_is_spoken_while_streaming() -> None:
    text = "我们今天去公园玩然后回家吃饭" * 40
    splitter = TextSplitter()
    released = [p for ch in text for p in splitter.push(ch)]
    assert released, "nothing spoken before the end of the reply"
    assert " ".join(released + splitter.flush()) == speakable(text)


def test_cjk_first_clause_is_cut_at_a_cjk_comma() -> None:
    text = "我觉得我们应该先去公园，然后回家吃饭。好的。"
    splitter = TextSplitter()
    released: list[str] = []
    for ch in text[: text.index("。")]:
        released += splitter.push(ch)
    assert released == ["我觉得我们应该先去公园，"]
    rest = text[text.index("。") :]
    assert " ".join(released + splitter.push(rest) + splitter.flush()) == speakable(text)
    assert speakable("你好，世界") == "你好， 世界"


def test_japanese_clause_mark_counts_too() -> None:
    first = split("今日はとても良い天気ですね、散歩に行きましょう。")[0]
    assert first == "今日はとても良い天気ですね、"


def test_flush_resets_for_the_next_reply() -> None:
    splitter = TextSplitter()
    splitter.push("```\ncode without an end")
    assert splitter.flush() == []
    assert splitter.push("Fresh, clean start here, yes") == ["Fresh, clean start here,"]
    assert splitter.flush() == ["yes"]


def test_reset_drops_pending_text() -> None:
    splitter = TextSplitter()
    splitter.push("Half a sent")
    splitter.reset()
    assert splitter.push("New one. Two") == ["New one."]
    assert splitter.flush() == ["Two"]


def test_invalid_options_are_rejected() -> None:
    with pytest.raises(ValueError, match="min_first_clause_words"):
        TextSplitter(min_first_clause_words=0)
    with pytest.raises(ValueError, match="max_piece_chars"):
        TextSplitter(max_piece_chars=5)


async def test_split_stream() -> None:
    text = "Sure, here is what I would do: first, stretch. **Then** run 5.5 km! Done 🎉"

    async def deltas() -> AsyncIterator[str]:
        for i in range(0, len(text), 3):
            yield text[i : i + 3]

    pieces = [p async for p in split_stream(deltas())]
    assert pieces == [
        "Sure, here is what I would do:",
        "first, stretch.",
        "Then run 5.5 km!",
        "Done",
    ]


# ------------------------------------------------------------------------------------ properties

# fmt: off
FRAGMENTS = [
    # words, several scripts and cases
    "hello", "World", "the", "is", "has", "Über", "café", "año", "東京", "こんにちは", "大丈夫",
    # punctuation and spacing
    " ", " ", " ", "  ", "\n", "\n\n", "\t", ".", ",", "!", "?", "...", "…", ";", ":", " - ",
    " — ", "—", "。", "！", "？", "，", '"', "'", "(", ")", "」", "「", "¿", "¡",
    # abbreviations, numbers, times, addresses
    "Dr.", "Mr.", "etc.", "e.g.", "i.e.", "U.S.", "z.B.", "usw.", "Sra.", "p.ej.", "No.", "J.",
    "3.14", "12:30", "1,000", "1.", "42", "2.", "https://example.com/a.b?x=1",
    "a.b@example.co.uk",
    # markdown
    "**", "*", "_", "__", "~~", "`", "```", "```python\n", "\n```\n", "~~~\n", "# ", "\n## ",
    "\n- ", "\n* ", "\n+ ", "\n> ", "\n---\n", "[", "]", "](", "(http://a.b/c)", "[link](u.rl)",
    "![img](x.png)", "\\", "\\*", "snake_case",
    # emoji and friends
    "🎉", "👍🏽", "👨\u200d👩\u200d👧", "❤️", "🇩🇪", "\u200d", "\ufe0f", "✅", "€", "°",
]
# fmt: on

texts = st.lists(
    st.one_of(
        st.sampled_from(FRAGMENTS),
        st.text(st.sampled_from(" .!?,:*_`#-[]()\n。aB1é🎉"), max_size=4),
    ),
    max_size=40,
).map("".join)


@st.composite
def chunkings(draw: st.DrawFn, text: str) -> list[str]:
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=max(1, len(text) // 2))))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


options = st.fixed_dictionaries(
    {
        "min_first_clause_words": st.sampled_from([1, 4]),
        "max_piece_chars": st.sampled_from([20, 60, 220]),
        "phrase_starts": st.sampled_from([frozenset(), phrase_starts("en") | {"ab", "b"}]),
    }
)

PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(text=texts, data=st.data(), opts=options)
def test_pieces_join_to_speakable_text(
    text: str, data: st.DataObject, opts: dict[str, object]
) -> None:
    pieces = split(text, data.draw(chunkings(text)), **opts)
    assert " ".join(pieces) == speakable(text)


@PROPERTY_SETTINGS
@given(text=texts, data=st.data(), opts=options)
def test_no_piece_is_blank_or_padded(
    text: str, data: st.DataObject, opts: dict[str, object]
) -> None:
    for piece in split(text, data.draw(chunkings(text)), **opts):
        assert piece.strip()
        assert piece == piece.strip()


@PROPERTY_SETTINGS
@given(text=texts, data=st.data(), opts=options)
def test_pieces_do_not_depend_on_chunking(
    text: str, data: st.DataObject, opts: dict[str, object]
) -> None:
    whole = split(text, **opts)
    assert split(text, data.draw(chunkings(text)), **opts) == whole
    assert split(text, list(text), **opts) == whole


def test_hurry_without_a_clause_mark_cuts_at_a_space_rather_than_run_dry() -> None:
    rest = "your bedroom cool and dark and quiet every single night. Sleep well."
    splitter = TextSplitter()
    assert splitter.push("It is a good idea. Keep ") == ["It is a good idea."]
    pieces = splitter.push(rest, hurry=True)
    assert pieces[0] == "Keep your bedroom cool and dark and quiet"
    pieces += splitter.flush()
    assert " ".join(pieces) == speakable("Keep " + rest)
    # Without hurry the sentence stays whole.
    calm = TextSplitter()
    calm.push("It is a good idea. Keep ")
    assert calm.push(rest)[0] == "Keep your bedroom cool and dark and quiet every single night."


def test_hurry_releases_the_next_clause_early() -> None:
    splitter = TextSplitter()
    first = splitter.push("Paris is the capital of France, a city of art. ")
    assert first == ["Paris is the capital of France,"]
    calm = splitter.push("It has many museums, parks and cafés along the river")
    assert calm == ["a city of art."]
    assert splitter.push(", and", hurry=True) == ["It has many museums,"]
    assert splitter.flush() == ["parks and cafés along the river, and"]


# ------------------------------------------------------------------- hostile text (fuzzing, CPU)

# Everything the cleaner, the spacer and the splitter treat specially, and ordinary text.
ALPHABET = (
    "aZ9é \u200b\t\n.!?…。！？，、；：,;:-–—\"')]」』（「*_`~#=+>[]()!\\"
    "\u0301\u200d\ufe0f🎉👍🏽東京こんにちは한국"
)
HOSTILE_MARKUP = [
    "```",
    "~~~",
    "**",
    "[a](b)",
    "![x](y)",
    "https://example.com/a/b?c=d",
    "\n- ",
    "\n# ",
]

hostile_texts = st.lists(
    st.one_of(
        st.text(st.sampled_from(ALPHABET), max_size=12),
        st.sampled_from(HOSTILE_MARKUP),
        # long runs without whitespace: a letter, a CJK character, a marker, a combining mark
        st.builds(lambda ch, k: ch * k, st.sampled_from("a東.-*`[\u0301"), st.integers(1, 300)),
    ),
    max_size=30,
).map("".join)


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_a_long_marker_run_split_at_its_cap_waits_for_what_follows() -> None:
    """A run of more than ``_MARK_MAX`` stars is several runs; the first one's meaning depends
    on the character after it, which may come in the next delta."""
    text = "99 " + "*" * 33
    assert split(text, [text[:-1], "*"]) == split(text) == ["99"]


@FUZZ
@given(text=hostile_texts, data=st.data(), cap=st.sampled_from([20, 60, 220]))
def test_hostile_text_joins_to_speakable_text_in_bounded_pieces(
    text: str, data: st.DataObject, cap: int
) -> None:
    pieces = split(text, data.draw(chunkings(text)), max_piece_chars=cap)
    assert " ".join(pieces) == speakable(text)
    assert pieces == split(text, max_piece_chars=cap)  # the chunking changes nothing
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
def test_cpu_time_per_kb_does_not_grow_with_any_repeated_pattern(unit: str) -> None:
    """Any repeated pattern, in token-sized deltas: the CPU spent per KB on the event loop does
    not grow with the length of the reply (a quadratic scan would spend four times as much per
    KB on 32 KB as on 8 KB). A ratio inside one run, so a slow or busy machine cannot fail it."""

    def text(n: int) -> str:
        return (unit * (n // len(unit) + 1))[:n]

    short, long = cpu_ms_per_kb(text(8_000), 4), cpu_ms_per_kb(text(32_000), 4)
    assert long <= 2.0 * short + 0.5, (short, long)


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
    assert large <= 2.0 * small + 0.5, (small, large)
