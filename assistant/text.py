"""Turn a streamed LLM reply into speakable pieces for text to speech.

Three stages, all streaming:

1. ``_Cleaner`` removes what should not be read aloud: markdown markers (emphasis, headings,
   bullets, rules, quotes, inline-code backticks), fenced code blocks, link targets and emoji.
   It holds back only the few characters whose meaning depends on what follows (a ``*`` run,
   a line-start ``#``, an unfinished link or fence line), and never more than a bounded amount.
2. ``_Spacer`` gives text without whitespace the breaks a piece may end at: after a CJK
   sentence end or clause mark directly followed by more text, and inside long runs (a URL,
   CJK without punctuation), preferably after a natural boundary.
3. ``TextSplitter`` cuts the spaced text into pieces: the first clause as soon as it is
   speakable (optionally a shorter first phrase, see ``phrase_starts``), then whole sentences;
   a newline is a hard break and very long sentences are capped.

Every decision depends only on the text (with a bounded look-ahead), never on where the deltas
were split, so any chunking of one reply yields the same pieces. Each stage resumes where the
previous delta left off, so the work grows linearly with the reply, whatever its shape.

The contract with ``speakable``: for any text, ``" ".join(pieces) == speakable(text)``, where
``speakable`` is the cleaned text with the spacer's breaks, each whitespace run collapsed to one
space, stripped (the breaks are the only places a piece ends without whitespace in the text).
Pieces are never empty, never start or end with whitespace, keep their trailing punctuation,
and are at most ``max_piece_chars`` (or ``_RUN_MAX``, if larger) characters long.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterable, AsyncIterator

__all__ = ["TextSplitter", "phrase_starts", "speakable", "split_stream"]

# ------------------------------------------------------------------------------- character classes

_CJK_TERMINALS = "。！？｡．"
_TERMINALS = ".!?…" + _CJK_TERMINALS
_CJK_TERMINAL_SET = frozenset(_CJK_TERMINALS)
# Closing quotes/brackets right after a sentence end belong to that sentence.
_CLOSERS = "\"')]}»”’」』）】〉》〕›"
_OPENERS = "\"'([{«“‘「『（【〈《¿¡"
# Clause marks count only when followed by whitespace ("12:30", "1,000" and "3,5" never split).
# CJK ones get that whitespace from ``_Spacer`` (CJK text has none).
_CJK_CLAUSE_MARKS = "，、；：､"
_CLAUSE_MARKS = ",;:" + _CJK_CLAUSE_MARKS
_DASHES = "-–—"  # a clause mark only when spaced: "so — but", "so - but"
# Marks that belong to the text before them: a break never goes in front of one.
_ATTACHED = frozenset(_TERMINALS + _CLOSERS + _CLAUSE_MARKS)

# Runs of text without whitespace (a URL, CJK without punctuation, a long compound) get breaks
# of their own so that no piece grows without bound: from _RUN_SOFT characters on, a run breaks
# after its next natural boundary (a URL or path separator, a CJK character); from _RUN_HARD on,
# before any character that does not belong to the one before it; at _RUN_MAX, anywhere.
_RUN_SOFT = 32
_RUN_HARD = 48
_RUN_MAX = 64
_SOFT_BREAKS = frozenset("/\\-_.,;:?&=#+@|~")
_ASCII_PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")

# Abbreviations after which a period never ends a sentence (lowercase, without the period).
_ABBREVIATIONS = frozenset(
    # English
    "mr mrs ms mx dr prof st jr sr vs etc approx dept inc ltd corp co mt ft capt lt col sgt gov "
    "rev hon jan feb apr jun jul aug sep sept oct nov dec mon tue tues thu thur thurs fri "
    # German
    "bzw usw ca evtl ggf inkl vgl str hr fr dipl bspw sog zzgl allg "
    # French
    "mme mlle mm cf env av apr "
    # Spanish
    "sra srta sres dra ud uds pág pag aprox ej avda".split()
)
# Abbreviations that are ordinary words elsewhere ("No.") and so only hold before a number.
_NUMBER_ABBREVIATIONS = frozenset("no nos nr núm vol art fig ch sec pt op tel pp".split())
# A single letter ("J. R. R. Tolkien") or dotted short letter groups ("e.g", "U.S", "z.B", "p.ej").
_INITIALS = re.compile(r"[^\W\d_]|(?:[^\W\d_]{1,2}\.)+[^\W\d_]{1,2}")

# Words that open a sentence's predicate: a short subject before one ("The capital of France |
# is Paris.") is a phrase a voice can say on its own, so a reply may start with it.
_PHRASE_STARTS = {
    "en": "is are was were has have had can could will would should does do did means lies "
    "stands became becomes lives lived",
    "de": "ist sind war waren hat haben hatte kann können wird werden liegt heißt",
    "fr": "est sont était étaient a ont avait peut peuvent sera seront se",
    "es": "es son era eran fue fueron está están tiene tienen puede pueden será se",
    "it": "è sono era erano ha hanno può possono sarà si",
    "pt": "é são era eram foi tem têm pode podem será se",
    "nl": "is zijn was waren heeft hebben kan kunnen wordt ligt",
}
#: A first phrase is cut before such a word only with this many words (2..5) in front of it.
_PHRASE_MIN_WORDS = 2
_PHRASE_MAX_WORDS = 5
_PHRASE_MAX_CHARS = 64  # past this, five words are behind us: stop looking (bounded work)
#: When the listener is about to run out of audio, a piece with no clause mark yet ends at the
#: first space this far in (six to eight words): a seam in the voice beats a silent gap.
_HURRY_CUT_CHARS = 40
# The word right after a space: letters and apostrophes up to the next other character.
_NEXT_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")


def phrase_starts(language: str) -> frozenset[str]:
    """Words before which a reply's first phrase may end, in ``language`` (empty: none known)."""
    code = language.replace("_", "-").split("-", 1)[0].lower()
    return frozenset(_PHRASE_STARTS.get(code, "").split())


# A markdown link: [text](target). Bounded, so the decision does not depend on the chunking.
_LINK_TEXT_MAX = 200
_LINK_URL_MAX = 1000
_LINK_TEXT_STOP = re.compile(r"[\[\]\n]")  # ends the link text: "]" or not a link
_LINK_URL_STOP = re.compile(r"[()\s]")  # ends the target: ")" or not a link
_RULE_LINE = {ch: re.compile(f"[{re.escape(ch)} \t\r]*") for ch in "-*_="}

# A line that is, or may still become, the closing fence of a block opened with ` or ~.
_FENCE_LINE = {ch: re.compile(rf"[^\S\n]*({re.escape(ch)}*)[^\S\n]*") for ch in "`~"}
_ZWJ = "\u200d"
# Text the cleaner passes on as it is: no markdown marker, newline, emoji or emoji part.
_CLEAN_PLAIN = re.compile(
    "[^\n`*_~\\\\!\\[\u200d\ufe0e\ufe0f\u20e3\u2300-\u23ff\u2600-\u27bf\u2b00-\u2bff"
    "\U0001f000-\U0001faff\U000e0020-\U000e007f]+"
)
# Characters that never start a decision in the splitter or the spacer.
_PLAIN_RUN = re.compile(f"[^\\s{re.escape(_TERMINALS + _CLOSERS + _CJK_CLAUSE_MARKS)}]+")
_SPLIT_STOP = re.compile(f"[\\s{re.escape(_TERMINALS + _CLAUSE_MARKS + _DASHES)}]")
_HOLD = -1  # a step needs more text before it can decide
# Bounds on how much text one decision may wait for, so that holding back costs no more than a
# fixed amount per delta (the decisions stay a function of the text alone): a run of one marker
# character longer than _MARK_MAX counts as several runs; a line that could still be a fence or
# a rule stops being one after _LINE_MAX characters.
_MARK_MAX = 32
_LINE_MAX = 256


def _is_emoji_modifier(ch: str) -> bool:
    """Variation selectors, the keycap mark and tag characters: parts of emoji sequences."""
    cp = ord(ch)
    return cp in (0xFE0E, 0xFE0F, 0x20E3) or 0xE0020 <= cp <= 0xE007F


def _is_emoji(ch: str) -> bool:
    """Pictographs and emoji symbols. Letters (CJK too), digits, currency and °, ©, ™ stay."""
    cp = ord(ch)
    if cp < 0x2300:
        return False
    category = unicodedata.category(ch)
    if 0x1F000 <= cp <= 0x1FAFF:  # emoticons, pictographs, flags, skin tones (Sk)
        return category in ("So", "Sk")
    return category == "So" and (
        0x2300 <= cp <= 0x23FF  # ⌚ ⏰ ⏳
        or 0x2600 <= cp <= 0x27BF  # ☀ ★ ✅ ✔ ❤ ✨
        or 0x2B00 <= cp <= 0x2BFF  # ⬆ ⭐
    )


def _run_length(s: str, i: int) -> int:
    """Length of the run of s[i] starting at i, at most _MARK_MAX."""
    ch, j, end = s[i], i, min(len(s), i + _MARK_MAX)
    while j < end and s[j] == ch:
        j += 1
    return j - i


def _run_open(s: str, i: int, k: int, final: bool) -> bool:
    """True if the run s[i:i+k] may still grow: it reaches the end of the text so far."""
    return i + k == len(s) and k < _MARK_MAX and not final


def _collapse(s: str) -> str:
    return " ".join(s.split())


# --------------------------------------------------------------------------------------- cleaning


def _scan_link(s: str, i: int, close: int, pos: int) -> tuple[int, int] | None:
    """Scan the markdown link that may start with the "[" at ``s[i]``, from ``pos`` on.

    ``close`` is the index of its "]" once known, else -1. Returns (end, close) for a complete
    link, (-1, close) when it is still incomplete at the end of ``s``, None when it is not a
    link: at most ``_LINK_TEXT_MAX`` characters without "[", "]" or newlines, then "](", then at
    most ``_LINK_URL_MAX`` characters without parentheses or whitespace, then ")".
    """
    n = len(s)
    if close < 0:
        stop = i + 2 + _LINK_TEXT_MAX
        m = _LINK_TEXT_STOP.search(s, pos, min(n, stop))
        if m is None:
            return (-1, -1) if n < stop else None
        if m.group() != "]":
            return None
        close = pos = m.start()
    if close + 1 == n:
        return -1, close
    if s[close + 1] != "(":
        return None
    start = close + 2
    stop = start + _LINK_URL_MAX + 1
    m = _LINK_URL_STOP.search(s, max(pos, start), min(n, stop))
    if m is None:
        return (-1, close) if n < stop else None
    return (m.end(), close) if m.group() == ")" else None


class _Cleaner:
    """Streaming markdown/emoji remover. ``feed`` returns the cleaned text decided so far."""

    def __init__(self, *, line_start: bool = True, prev: str = "\n") -> None:
        self._buf = ""
        self._line_start = line_start  # only indentation/quote marks seen on this line so far
        self._prev = prev  # last source character consumed (emphasis flanking looks at it)
        self._fence = ""  # the opening fence ("```", "~~~~") while inside a fenced block
        self._code = 0  # backtick-run length of the open inline code span, 0 if none
        self._after_emoji = False  # a following zero-width joiner belongs to the emoji
        self._link_scan: tuple[int, int] | None = None  # see _link

    def feed(self, text: str, final: bool) -> str:
        s = self._buf + text
        out: list[str] = []
        i = 0
        while i < len(s):
            j = self._step(s, i, final, out)
            if j == _HOLD:
                break
            i = j
        self._buf = s[i:]
        return "".join(out)

    def _step(self, s: str, i: int, final: bool, out: list[str]) -> int:
        if self._fence:
            return self._fence_step(s, i, final)
        c = s[i]
        if c == "\n":
            out.append(c)
            self._line_start, self._code, self._prev, self._after_emoji = True, 0, c, False
            return i + 1
        if self._line_start:
            if c in " \t":
                out.append(c)
                self._prev = c
                return i + 1
            j = self._block_marker(s, i, final)
            if j is not None:
                return j
            self._line_start = False
        return self._inline(s, i, final, out)

    def _fence_step(self, s: str, i: int, final: bool) -> int:
        """Inside a fenced block: drop every line until the closing fence line."""
        end = s.find("\n", i)
        stop = len(s) if end < 0 else end
        if self._line_start and stop - i <= _LINE_MAX:
            m = _FENCE_LINE[self._fence[0]].fullmatch(s, i, stop)
            if m is not None:  # this line is, or may still become, the closing fence
                if end < 0 and not final:
                    return _HOLD
                if len(m.group(1)) >= len(self._fence):
                    self._fence = ""
        if end < 0:
            self._line_start = False
            return len(s)
        self._line_start, self._prev = True, "\n"
        return end + 1

    def _block_marker(self, s: str, i: int, final: bool) -> int | None:
        """Handle a line-start marker; None when the line starts with ordinary text."""
        c, n = s[i], len(s)
        if c in "`~":
            k = _run_length(s, i)
            if _run_open(s, i, k, final):
                return _HOLD
            if k < 3:
                return None
            end = s.find("\n", i, i + _LINE_MAX)
            if end < 0 and n - i < _LINE_MAX and not final:
                return _HOLD
            line_end = end if end >= 0 else min(n, i + _LINE_MAX)
            if c == "`" and "`" in s[i + k : line_end]:  # "```code```" on one line is inline code
                return None
            self._fence = c * k
            if end < 0:  # the rest of the opening line is dropped by _fence_step
                self._line_start = False
                return line_end
            self._line_start, self._prev = True, "\n"
            return end + 1
        if c == "#":
            k = _run_length(s, i)
            if _run_open(s, i, k, final):
                return _HOLD
            if k <= 6 and (i + k == n or s[i + k].isspace()):
                self._line_start, self._prev = False, " "
                return i + k
            return None
        if c in "-*_=":
            end = s.find("\n", i, i + _LINE_MAX + 1)
            line = s[i : i + _LINE_MAX + 1] if end < 0 else s[i:end]
            if len(line) <= _LINE_MAX and _RULE_LINE[c].fullmatch(line):
                # a rule ("---", "* * *") so far
                if end < 0 and not final:
                    return _HOLD
                if line.count(c) >= 3:
                    self._line_start = False
                    return n if end < 0 else end
        if c in "-*+•":
            if i + 1 == n:
                return None if final else _HOLD
            if s[i + 1].isspace():
                self._line_start, self._prev = False, " "
                return i + 1
            return None
        if c == ">":  # block quote; stays at line start for "> - item"
            self._prev = " "
            return i + 1
        return None

    def _inline(self, s: str, i: int, final: bool, out: list[str]) -> int:
        m = _CLEAN_PLAIN.match(s, i)
        if m is not None:  # the common case, a stretch of plain text, in one step
            out.append(m.group())
            self._prev, self._after_emoji = s[m.end() - 1], False
            return m.end()
        c, n = s[i], len(s)
        if c == "`":  # inline code: drop the backticks, keep the content
            k = _run_length(s, i)
            if _run_open(s, i, k, final):
                return _HOLD
            if not self._code:
                self._code = k
            elif k == self._code:
                self._code = 0
            self._prev = c
            return i + k
        if self._code:
            return self._plain(s, i, out)
        if c == "\\":  # an escaped punctuation mark is literal text
            if i + 1 == n:
                return self._plain(s, i, out) if final else _HOLD
            if s[i + 1] in _ASCII_PUNCT:
                out.append(s[i + 1])
                self._prev, self._after_emoji = s[i + 1], False
                return i + 2
            return self._plain(s, i, out)
        if c in "*_~":
            return self._emphasis(s, i, final, out)
        if c == "!":  # ![alt](src) keeps the alt text
            if i + 1 == n:
                return self._plain(s, i, out) if final else _HOLD
            if s[i + 1] == "[":
                j = self._link(s, i + 1, final, out)
                if j is not None:
                    return j
            return self._plain(s, i, out)
        if c == "[":
            j = self._link(s, i, final, out)
            if j is not None:
                return j
        return self._plain(s, i, out)

    def _emphasis(self, s: str, i: int, final: bool, out: list[str]) -> int:
        """Drop a delimiter run that touches a word on one side (CommonMark's flanking idea).

        Runs are not paired up: that would hold text back until the closer arrives. Runs inside
        words stay ("snake_case", "2*3"), and so does a free-standing one ("2 * 3"). A single "~"
        is text ("~5 min"); "~~" is strikethrough.
        """
        c, n = s[i], len(s)
        k = _run_length(s, i)
        if i + k == n and not final:
            # The run may still grow, and even a run cut at _MARK_MAX is decided by the
            # character after it: wait for that one.
            return _HOLD
        nxt = s[i + k] if i + k < n else ""
        left = nxt != "" and not nxt.isspace()
        right = not self._prev.isspace()
        inside_word = self._prev.isalnum() and nxt.isalnum()
        is_marker = (left or right) and not inside_word and not (c == "~" and k < 2)
        if not is_marker:
            out.append(s[i : i + k])
        self._prev, self._after_emoji = c, False
        return i + k

    def _link(self, s: str, i: int, final: bool, out: list[str]) -> int | None:
        """[text](target) → text. None when s[i] "[" is not a link.

        While the link is incomplete the text is held back; the scan then resumes where it
        stopped (``_link_scan``, relative to the "["), so a long link costs one pass, not one per
        delta.
        """
        close, pos = self._link_scan if self._link_scan else (-1, 1)
        self._link_scan = None
        found = _scan_link(s, i, close if close < 0 else i + close, i + pos)
        if found is None:
            return None
        end, close = found
        if end < 0:  # incomplete so far
            if final:
                return None
            self._link_scan = (close if close < 0 else close - i, len(s) - i)
            return _HOLD
        text = s[i + 1 : close]
        out.append(_Cleaner(line_start=False, prev="[").feed(text, final=True))
        self._prev, self._after_emoji = ")", False
        return end

    def _plain(self, s: str, i: int, out: list[str]) -> int:
        c = s[i]
        if _is_emoji_modifier(c) or (c == _ZWJ and self._after_emoji):
            pass
        elif _is_emoji(c):
            self._after_emoji = True
        else:
            out.append(c)
            self._after_emoji = False
        self._prev = c
        return i + 1


# ---------------------------------------------------------------------------------------- spacing


def _joins_previous(ch: str) -> bool:
    """Combining marks, joiners and emoji modifiers: never the first character of a run."""
    return ord(ch) >= 0x300 and (
        ch == _ZWJ
        or _is_emoji_modifier(ch)
        or 0x1F3FB <= ord(ch) <= 0x1F3FF  # skin tones
        or unicodedata.category(ch).startswith("M")
    )


def _is_wide(ch: str) -> bool:
    """CJK ideographs, kana, Hangul and fullwidth forms: each one a syllable or a word."""
    return unicodedata.east_asian_width(ch) in ("W", "F")


class _Spacer:
    """Give text without whitespace the breaks a piece may end at; see ``_RUN_SOFT``.

    Adds one space after a CJK sentence end or clause mark that is directly followed by more
    text, and inside a run without whitespace once it grows long. Shrinks each whitespace run to
    its first character (plus its first newline, a hard break). Each decision is kept in a few
    flags and needs at most the next character, so nothing is held back and the output depends
    only on the text, never on how it was chunked.
    """

    def __init__(self) -> None:
        self._width = 0  # characters since the last whitespace or break
        self._space = True  # inside a whitespace run (or before any text)
        self._newline = True  # that run already has its newline
        self._ends = False  # inside a run of sentence-end marks and the closers after them
        self._ends_cjk = False  # ... which holds a CJK sentence end
        self._due = False  # break before the next character that can start a run

    def feed(self, text: str) -> str:
        out: list[str] = []
        i, n = 0, len(text)
        while i < n:
            ch = text[i]
            if ch.isspace():
                if not self._space or (ch == "\n" and not self._newline):
                    out.append(ch)
                self._newline = (self._newline and self._space) or ch == "\n"
                self._space = True
                self._width, self._ends, self._due = 0, False, False
                i += 1
                continue
            room = _RUN_SOFT - 1 - self._width
            if room > 0 and not self._ends and not self._due:
                # Fast path: a stretch that cannot reach a decision is copied as it is.
                m = _PLAIN_RUN.match(text, i, i + room)
                if m is not None:
                    out.append(m.group())
                    self._width += m.end() - i
                    self._space = self._newline = False
                    i = m.end()
                    continue
            self._char(ch, out)
            i += 1
        return "".join(out)

    def _char(self, ch: str, out: list[str]) -> None:
        brk = False
        if self._ends:
            if ch in _TERMINALS or ch in _CLOSERS:
                self._ends_cjk = self._ends_cjk or ch in _CJK_TERMINALS
            else:
                self._ends = False
                brk = self._ends_cjk
        if not brk and not _joins_previous(ch) and ch not in _ATTACHED:
            brk = self._due or self._width >= _RUN_HARD
        if brk or self._width >= _RUN_MAX:
            out.append(" ")
            self._width, self._due = 0, False
        out.append(ch)
        self._width += 1
        self._space = self._newline = False
        if ch in _TERMINALS and not self._ends:
            self._ends, self._ends_cjk = True, ch in _CJK_TERMINALS
        if ch in _CJK_CLAUSE_MARKS or (
            self._width >= _RUN_SOFT and (ch in _SOFT_BREAKS or _is_wide(ch))
        ):
            self._due = True


# -------------------------------------------------------------------------------------- splitting


def _ends_sentence(t: str, start: int, i: int, run: str, j: int, final: bool) -> bool | None:
    """Does the terminal run t[i:j] (followed by whitespace) end a sentence? None: need more."""
    k = j
    while k < len(t) and t[k].isspace() and t[k] != "\n":
        k += 1
    if k == len(t):
        return True if final else None
    nxt = t[k]
    if nxt == "\n":
        return True
    if "".join(ch for ch in run if ch in _TERMINALS) == ".":
        w = i
        while w > start and not t[w - 1].isspace():
            w -= 1
        word = t[w:i].lstrip(_OPENERS)
        low = word.lower()
        if low in _ABBREVIATIONS or _INITIALS.fullmatch(word):
            return False
        if low in _NUMBER_ABBREVIATIONS and nxt.isdigit():
            return False
        if word.isdigit() and w == start:  # "1. First item": a list marker
            return False
    # "Well... maybe", "the 3. place", '"Really?" she asked', "etc. and so on"
    return unicodedata.category(nxt) != "Ll"


def _word_count(s: str) -> int:
    """Words in ``s``; CJK text has no spaces, so two of its characters count as one word."""
    count = 0
    for w in s.split():
        wide = sum(1 for ch in w if _is_wide(ch) and ch.isalnum())
        if wide:
            count += (wide + 1) // 2
        elif any(ch.isalnum() for ch in w):
            count += 1
    return count


class TextSplitter:
    """Cut a streamed reply into speakable pieces: first clause early, then whole sentences.

    ``push`` each text delta and speak what it returns; call ``flush`` at the end of the reply
    for the rest (this also resets the splitter for the next reply). ``reset`` drops everything
    pending, for a reply that was interrupted.

    A piece is at most ``max_piece_chars`` long, or one run of text without whitespace, which
    the splitter breaks itself after at most ``_RUN_MAX`` characters. The work per delta is
    proportional to the delta plus a bounded amount: the text is scanned once, resuming where
    the last delta left off.

    ``phrase_starts`` (see ``phrase_starts()``): the first piece may also end after two to five
    words, right before one of these words ("A spider | has eight legs."), so the voice can
    start before the sentence is written.
    """

    def __init__(
        self,
        *,
        min_first_clause_words: int = 4,
        max_piece_chars: int = 220,
        phrase_starts: frozenset[str] = frozenset(),
    ) -> None:
        if min_first_clause_words < 1:
            raise ValueError(f"min_first_clause_words must be >= 1, got {min_first_clause_words}")
        if max_piece_chars < 20:
            raise ValueError(f"max_piece_chars must be >= 20, got {max_piece_chars}")
        self.min_first_clause_words = min_first_clause_words
        self.max_piece_chars = max_piece_chars
        self.phrase_starts = frozenset(w.lower() for w in phrase_starts)
        self.reset()

    def reset(self) -> None:
        """Forget the reply in progress."""
        self._cleaner = _Cleaner()
        self._spacer = _Spacer()
        self._text = ""  # spaced text not yet released, from ``_base`` on
        self._base = 0  # where the piece being scanned begins in ``_text``
        self._first = True
        self._hurried = False  # the piece being scanned was asked for early (``hurry``)
        self._new_piece()

    def _new_piece(self) -> None:
        """Scan the next piece from ``_base``. Positions below are indices into ``_text``."""
        self._pos = self._base  # where scanning resumes
        self._start = -1  # the piece's first non-space character, once found
        self._clause_cut = 0  # just after the last clause mark followed by whitespace; 0: none
        self._space_cut = 0  # the last whitespace inside the piece; 0: none
        self._over_cap = False  # past the cap with no place to cut yet

    def push(self, delta: str, *, hurry: bool = False) -> list[str]:
        """Add a delta; return the pieces that became ready (often none).

        ``hurry``: the listener is about to run out of audio, so release the next clause as
        soon as it is speakable (as for the first one) instead of waiting for the sentence, and
        with no clause mark in sight, at a space some six to eight words in.
        """
        if hurry and not self._first:
            self._first = self._hurried = True
            self._new_piece()  # look at the piece's clause marks again
        self._text += self._spacer.feed(self._cleaner.feed(delta, final=False))
        return self._release(final=False)

    def flush(self) -> list[str]:
        """End of the reply: return every remaining piece and reset."""
        self._text += self._spacer.feed(self._cleaner.feed("", final=True))
        pieces = self._release(final=True)
        rest = _collapse(self._text)
        if rest:
            pieces.append(rest)
        self.reset()
        return pieces

    def _release(self, final: bool) -> list[str]:
        pieces: list[str] = []
        while (cut := self._find_cut(final)) is not None:
            piece = _collapse(self._text[self._base : cut])
            self._base = cut
            self._new_piece()
            if piece:
                pieces.append(piece)
                self._first = self._hurried = False
        if self._base:  # drop the released text once per delta, not once per piece
            shift = self._base
            self._text = self._text[shift:]
            self._base = 0
            self._pos -= shift
            if self._start >= 0:
                self._start -= shift
            if self._clause_cut:
                self._clause_cut -= shift
            if self._space_cut:
                self._space_cut -= shift
        return pieces

    def _find_cut(self, final: bool) -> int | None:
        """End of the next piece, or None if it is not decided yet (scanning resumes there).

        Cuts fall on whitespace or right after a CJK sentence end, never inside a word.
        """
        t, n = self._text, len(self._text)
        i = self._pos
        if self._start < 0:
            while i < n and t[i].isspace():
                i += 1
            if i == n:
                self._pos = i
                return None
            self._start = i
        start = self._start
        limit = start + self.max_piece_chars
        while i < n:
            c = t[i]
            if c == "\n":
                return i + 1
            if c.isspace():
                if self._over_cap or (self._hurried and i - start >= _HURRY_CUT_CHARS):
                    return i
                if self._first and self.phrase_starts:
                    phrase = self._phrase_ends_here(t, start, i, final)
                    if phrase is None:
                        self._pos = i  # the next word is not complete yet
                        return None
                    if phrase:
                        return i
                self._space_cut = i
                i += 1
            elif c in _TERMINALS:
                j = i + 1
                while j < n and (t[j] in _TERMINALS or t[j] in _CLOSERS):
                    j += 1
                if j == n and not final:
                    self._pos = i  # closers or more marks may follow
                    return None
                if j == n or not _CJK_TERMINAL_SET.isdisjoint(t[i:j]):
                    return self._within_cap(j, limit)
                if t[j].isspace():  # "3.14", "example.com", "U.S" are not ends
                    ends = _ends_sentence(t, start, i, t[i:j], j, final)
                    if ends is None:
                        self._pos = i
                        return None
                    if ends:
                        return self._within_cap(j, limit)
                i = j
            elif c in _CLAUSE_MARKS or (c in _DASHES and i > start and t[i - 1].isspace()):
                if i + 1 == n:
                    if not final:
                        self._pos = i
                        return None
                elif t[i + 1].isspace():
                    self._clause_cut = i + 1
                    if self._first and _word_count(t[start:i]) >= self.min_first_clause_words:
                        return i + 1
                i += 1
            else:  # ordinary characters change nothing: skip to the next one that may
                m = _SPLIT_STOP.search(t, i + 1)
                i = m.start() if m is not None else n
            if i >= limit and not self._over_cap:
                # Too long without an end: cut at the last clause mark, else the last space.
                if self._clause_cut or self._space_cut:
                    return self._clause_cut or self._space_cut
                self._over_cap = True  # one long run: cut at the next space
        self._pos = i
        return None

    def _phrase_ends_here(self, t: str, start: int, i: int, final: bool) -> bool | None:
        """Does a first phrase end at the space ``t[i]`` (the next word opens a predicate)?
        None: that word is not complete yet."""
        if i - start > _PHRASE_MAX_CHARS or self._clause_cut:
            return False  # long, or a clause mark in it: not a plain subject
        if i + 1 >= len(t):
            return False if final else None
        if not _PHRASE_MIN_WORDS <= _word_count(t[start:i]) <= _PHRASE_MAX_WORDS:
            return False
        if t[i - 1] in _ATTACHED or t[i - 1] in _DASHES:
            return False  # a clause or sentence mark decides there
        m = _NEXT_WORD.match(t, i + 1)
        if m is None:
            return False
        if m.end() == len(t) and not final:
            return None
        return m.group().lower() in self.phrase_starts

    def _within_cap(self, end: int, limit: int) -> int:
        """``end``, or the last clause or space cut if a sentence end ran past the cap."""
        if end > limit and (self._clause_cut or self._space_cut):
            return self._clause_cut or self._space_cut
        return end


# ------------------------------------------------------------------------------------- conveniences


def speakable(text: str) -> str:
    """The text as spoken: what the pieces of ``text`` joined with single spaces equal."""
    return _collapse(_Spacer().feed(_Cleaner().feed(text, final=True)))


async def split_stream(
    deltas: AsyncIterable[str],
    *,
    min_first_clause_words: int = 4,
    max_piece_chars: int = 220,
    phrase_starts: frozenset[str] = frozenset(),
) -> AsyncIterator[str]:
    """Yield speakable pieces from a stream of text deltas as soon as each is ready."""
    splitter = TextSplitter(
        min_first_clause_words=min_first_clause_words,
        max_piece_chars=max_piece_chars,
        phrase_starts=phrase_starts,
    )
    async for delta in deltas:
        for piece in splitter.push(delta):
            yield piece
    for piece in splitter.flush():
        yield piece
