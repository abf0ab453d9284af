"""Which part of a reply has the user actually heard?

The TTS produces audio piece by piece; the player reports how many seconds of the reply it has
handed to the device. This maps that position back to text, cut at a word boundary, so the
history keeps only what was heard when the user interrupts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from assistant.engines.base import SpeechChunk

_WORD = re.compile(r"\S+")
#: A typical speaking rate, for estimating how long a partly synthesized piece will be.
SPEAKING_CHARS_PER_SECOND = 14.0


@dataclass(slots=True)
class _Piece:
    text: str
    start: float  # seconds into the reply's audio
    duration: float = 0.0
    complete: bool = False
    #: (character offset within the piece, seconds from the piece's start)
    alignment: list[tuple[int, float]] = field(default_factory=list)


class SpokenText:
    """Accumulates a reply's pieces with their place on the audio timeline."""

    def __init__(self) -> None:
        self._pieces: dict[int, _Piece] = {}
        self._order: list[int] = []
        self._audio_end = 0.0
        self._aside: set[int] = set()

    def set_aside(self, piece: int) -> None:
        """Piece ``piece`` is played but is not part of the reply's text (a filler line)."""
        self._aside.add(piece)

    def add(self, chunk: SpeechChunk) -> None:
        piece = self._pieces.get(chunk.piece)
        if piece is None:
            piece = _Piece(chunk.text, self._audio_end)
            self._pieces[chunk.piece] = piece
            self._order.append(chunk.piece)
        if chunk.alignment:
            offset = piece.duration
            piece.alignment.extend((c, offset + ms / 1000.0) for c, ms in chunk.alignment)
        piece.duration += chunk.duration
        piece.complete = piece.complete or chunk.last
        self._audio_end = piece.start + piece.duration

    def set_text(
        self, piece: int, text: str, *, at: tuple[int, float] | None = None, complete: bool = False
    ) -> None:
        """Give ``piece`` its text so far: a transcript that grows beside its audio (speech to
        speech). ``at``: (character offset, seconds into the piece's audio) where a part of it
        starts, when the provider says; ``complete``: the piece's text is final. A piece with
        no audio yet starts where the audio so far ends."""
        found = self._pieces.get(piece)
        if found is None:
            found = self._pieces[piece] = _Piece(text, self._audio_end)
            self._order.append(piece)
        found.text = text
        if at is not None:
            found.alignment.append(at)
        found.complete = found.complete or complete

    def start_of(self, piece: int) -> float:
        """Where ``piece``'s audio starts in the reply's audio (seconds; 0 if unknown)."""
        found = self._pieces.get(piece)
        return found.start if found is not None else 0.0

    def duration_of(self, piece: int) -> float:
        found = self._pieces.get(piece)
        return found.duration if found is not None else 0.0

    @property
    def audio_seconds(self) -> float:
        return self._audio_end

    @property
    def text(self) -> str:
        """All text that has audio so far (pieces set aside excluded)."""
        return " ".join(self._pieces[i].text for i in self._order if i not in self._aside)

    def heard(self, position: float) -> str:
        """Text spoken up to ``position`` seconds of reply audio, ending on a whole word."""
        parts: list[str] = []
        for i in self._order:
            piece = self._pieces[i]
            end = piece.start + piece.duration
            if position >= end - 1e-6 and piece.complete:
                if i not in self._aside:
                    parts.append(piece.text)
                continue
            if i in self._aside:
                break
            if position > piece.start:
                partial = _heard_within(piece, position - piece.start)
                if partial:
                    parts.append(partial)
            break
        return " ".join(parts)


def _heard_within(piece: _Piece, elapsed: float) -> str:
    """The words of ``piece`` whose audio has been fully played after ``elapsed`` seconds."""
    words = [(m.start(), m.end()) for m in _WORD.finditer(piece.text)]
    if not words or piece.duration <= 0:
        return ""
    if piece.alignment:
        # A word is heard once the next word has started (its own audio is over).
        starts = sorted(piece.alignment)
        heard_chars = 0
        for idx, (_, w_end) in enumerate(words):
            nxt = words[idx + 1][0] if idx + 1 < len(words) else None
            next_start = _time_of_char(starts, nxt) if nxt is not None else None
            if next_start is None:
                if not piece.complete:
                    break  # the rest of the piece has no audio yet
                next_start = piece.duration
            if next_start > elapsed:
                break
            heard_chars = w_end
        return piece.text[:heard_chars]
    # No word timings: assume characters are spoken at an even pace through the piece. While
    # the piece is still being synthesized, its full length is estimated from a speaking rate.
    total = piece.duration
    if not piece.complete:
        total = max(total, len(piece.text) / SPEAKING_CHARS_PER_SECOND)
    spoken_chars = len(piece.text) * min(1.0, elapsed / total)
    heard_chars = 0
    for _, w_end in words:
        if w_end > spoken_chars:
            break
        heard_chars = w_end
    return piece.text[:heard_chars]


def _time_of_char(alignment: list[tuple[int, float]], char: int) -> float | None:
    for c, t in alignment:
        if c >= char:
            return t
    return None
