"""Turn a streamed LLM reply into speakable pieces for text to speech.

Two stages, both streaming:

1. ``_Cleaner`` removes what should not be read aloud: markdown markers (emphasis, headings,
   bullets, rules, quotes, inline-code backticks), fenced code blocks, link targets and emoji.
   It holds back only the few characters whose meaning depends on what follows (a ``*`` run,
   a line-start ``#``, an unfinished link or fence line).
2. ``TextSplitter`` cuts the cleaned text into pieces: the first clause as soon as it is
   speakable, then whole sentences; a newline is a hard break and very long sentences are capped.

Every decision depends only on the text (with a bounded look-ahead), never on where the deltas
were split, so any chunking of one reply yields the same pieces.

The contract with ``speakable``: for any text, ``" ".join(pieces) == speakable(text)``, where
``speakable`` is the cleaned text with each whitespace run collapsed to one space, stripped, and
one space added after a CJK sentence end that is directly followed by more text (the only place
a piece ends without whitespace in the text). Pieces are never empty, never start or end with
whitespace, and keep their trailing punctuation.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterable, AsyncIterator

__all__ = ["TextSplitter", "speakable", "split_stream"]

# ------------------------------------------------------------------------------- character classes

_CJK_TERMINALS = "。！？｡．"
_TERMINALS = ".!?…" + _CJK_TERMINALS
# Closing quotes/brackets right after a sentence end belong to that sentence.
_CLOSERS = "\"')]}»”’」』）】〉》〕›"
_OPENERS = "\"'([{«“‘「『（【〈《¿¡"
# Clause marks count only when followed by whitespace ("12:30", "1,000" and "3,5" never split).
_CLAUSE_MARKS = ",;:，；："
_DASHES = "-–—"  # a clause mark only when spaced: "so — but", "so - but"
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

# A markdown link: [text](target). Bounded, so the decision does not depend on the chunking.
_LINK_TEXT_MAX = 200
_LINK_URL_MAX = 1000
_LINK = re.compile(rf"\[([^\[\]\n]{{0,{_LINK_TEXT_MAX}}})\]\(([^()\s]{{0,{_LINK_URL_MAX}}})\)")
_LINK_PREFIX = re.compile(
    rf"\[[^\[\]\n]{{0,{_LINK_TEXT_MAX}}}(?:\]|\]\([^()\s]{{0,{_LINK_URL_MAX}}})?"
)
_CJK_GAP = re.compile(f"[{re.escape(_TERMINALS)}][{re.escape(_TERMINALS + _CLOSERS)}]*")

# A line that is, or may still become, the closing fence of a block opened with ` or ~.
_FENCE_LINE = {ch: re.compile(rf"[^\S\n]*({re.escape(ch)}*)[^\S\n]*") for ch in "`~"}
_ZWJ = "\u200d"
_HOLD = -1  # a step needs more text before it can decide


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
    ch, j = s[i], i
    while j < len(s) and s[j] == ch:
        j += 1
    return j - i


def _collapse(s: str) -> str:
    return " ".join(s.split())


# --------------------------------------------------------------------------------------- cleaning


class _Cleaner:
    """Streaming markdown/emoji remover. ``feed`` returns the cleaned text decided so far."""

    def __init__(self, *, line_start: bool = True, prev: str = "\n") -> None:
        self._buf = ""
        self._line_start = line_start  # only indentation/quote marks seen on this line so far
        self._prev = prev  # last source character consumed (emphasis flanking looks at it)
        self._fence = ""  # the opening fence ("```", "~~~~") while inside a fenced block
        self._code = 0  # backtick-run length of the open inline code span, 0 if none
        self._after_emoji = False  # a following zero-width joiner belongs to the emoji

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
        if self._line_start:
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
            if i + k == n and not final:
                return _HOLD
            if k < 3:
                return None
            end = s.find("\n", i)
            if end < 0 and not final:
                return _HOLD
            info = s[i + k : n if end < 0 else end]
            if c == "`" and "`" in info:  # "```code```" on one line is inline code
                return None
            self._fence = c * k
            if end < 0:
                self._line_start = False
                return n
            self._line_start, self._prev = True, "\n"
            return end + 1
        if c == "#":
            k = _run_length(s, i)
            if i + k == n and not final:
                return _HOLD
            if k <= 6 and (i + k == n or s[i + k].isspace()):
                self._line_start, self._prev = False, " "
                return i + k
            return None
        if c in "-*_=":
            end = s.find("\n", i)
            line = s[i:] if end < 0 else s[i:end]
            if all(ch == c or ch in " \t\r" for ch in line):  # a rule ("---", "* * *") so far
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
        c, n = s[i], len(s)
        if c == "`":  # inline code: drop the backticks, keep the content
            k = _run_length(s, i)
            if i + k == n and not final:
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
        """[text](target) → text. None when s[i] "[" is not a link."""
        m = _LINK.match(s, i)
        if m is not None:
            out.append(_Cleaner(line_start=False, prev="[").feed(m.group(1), final=True))
            self._prev, self._after_emoji = ")", False
            return m.end()
        if not final and _LINK_PREFIX.fullmatch(s, i) is not None:
            return _HOLD
        return None

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
    return sum(1 for w in s.split() if any(ch.isalnum() for ch in w))


class TextSplitter:
    """Cut a streamed reply into speakable pieces: first clause early, then whole sentences.

    ``push`` each text delta and speak what it returns; call ``flush`` at the end of the reply
    for the rest (this also resets the splitter for the next reply). ``reset`` drops everything
    pending, for a reply that was interrupted.
    """

    def __init__(self, *, min_first_clause_words: int = 4, max_piece_chars: int = 220) -> None:
        if min_first_clause_words < 1:
            raise ValueError(f"min_first_clause_words must be >= 1, got {min_first_clause_words}")
        if max_piece_chars < 20:
            raise ValueError(f"max_piece_chars must be >= 20, got {max_piece_chars}")
        self.min_first_clause_words = min_first_clause_words
        self.max_piece_chars = max_piece_chars
        self.reset()

    def reset(self) -> None:
        """Forget the reply in progress."""
        self._cleaner = _Cleaner()
        self._text = ""  # cleaned text not yet released
        self._first = True

    def push(self, delta: str, *, hurry: bool = False) -> list[str]:
        """Add a delta; return the pieces that became ready (often none).

        ``hurry``: the listener is about to run out of audio, so release the next clause as
        soon as it is speakable (as for the first one) instead of waiting for the sentence.
        """
        if hurry:
            self._first = True
        self._text += self._cleaner.feed(delta, final=False)
        return self._release(final=False)

    def flush(self) -> list[str]:
        """End of the reply: return every remaining piece and reset."""
        self._text += self._cleaner.feed("", final=True)
        pieces = self._release(final=True)
        rest = _collapse(self._text)
        if rest:
            pieces.append(rest)
        self.reset()
        return pieces

    def _release(self, final: bool) -> list[str]:
        pieces: list[str] = []
        while (cut := self._find_cut(self._text, final)) is not None:
            piece = _collapse(self._text[:cut])
            self._text = self._text[cut:]
            if piece:
                pieces.append(piece)
                self._first = False
        return pieces

    def _find_cut(self, t: str, final: bool) -> int | None:
        """End of the next piece in ``t``, or None if it is not decided yet.

        Cuts fall on whitespace or right after a CJK sentence end, never inside a word.
        """
        n = len(t)
        start = n - len(t.lstrip())
        limit = start + self.max_piece_chars
        clause_cut = space_cut = 0
        over_cap = False
        i = start
        while i < n:
            c = t[i]
            if c == "\n":
                return i + 1
            if c.isspace():
                if over_cap:
                    return i
                space_cut = i
                i += 1
            elif c in _TERMINALS:
                j = i + 1
                while j < n and (t[j] in _TERMINALS or t[j] in _CLOSERS):
                    j += 1
                if j == n and not final:
                    return None  # closers or more marks may follow
                if j == n or any(ch in _CJK_TERMINALS for ch in t[i:j]):
                    return j
                if t[j].isspace():  # "3.14", "example.com", "U.S" are not ends
                    ends = _ends_sentence(t, start, i, t[i:j], j, final)
                    if ends is None:
                        return None
                    if ends:
                        return j
                i = j
            elif c in _CLAUSE_MARKS or (c in _DASHES and i > start and t[i - 1].isspace()):
                if i + 1 == n:
                    if not final:
                        return None
                elif t[i + 1].isspace():
                    clause_cut = i + 1
                    if self._first and _word_count(t[start:i]) >= self.min_first_clause_words:
                        return i + 1
                i += 1
            else:
                i += 1
            if i >= limit and not over_cap:
                # Too long without an end: cut at the last clause mark, else the last space.
                if clause_cut or space_cut:
                    return clause_cut or space_cut
                over_cap = True  # one long token: cut at the next space
        return None


# ------------------------------------------------------------------------------------- conveniences


def speakable(text: str) -> str:
    """The text as spoken: what the pieces of ``text`` joined with single spaces equal."""
    flat = _collapse(_Cleaner().feed(text, final=True))

    def gap(m: re.Match[str]) -> str:
        run = m.group()
        followed = m.end() < len(flat) and not flat[m.end()].isspace()
        return run + " " if followed and any(ch in _CJK_TERMINALS for ch in run) else run

    return _CJK_GAP.sub(gap, flat)


async def split_stream(
    deltas: AsyncIterable[str], *, min_first_clause_words: int = 4, max_piece_chars: int = 220
) -> AsyncIterator[str]:
    """Yield speakable pieces from a stream of text deltas as soon as each is ready."""
    splitter = TextSplitter(
        min_first_clause_words=min_first_clause_words, max_piece_chars=max_piece_chars
    )
    async for delta in deltas:
        for piece in splitter.push(delta):
            yield piece
    for piece in splitter.flush():
        yield piece
