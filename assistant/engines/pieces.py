"""Cutting a reply's synthesized audio into the text pieces it speaks.

A TTS socket speaks a reply's pieces as one stream of audio; the player and the record of what
was heard need each piece's own audio (``SpeechChunk.piece``). ``PieceTracker`` places the
audio by the server's character alignment when it sends one, else by an estimate from each
piece's length. Pure: no I/O, no clock.
"""

from __future__ import annotations

import bisect

import numpy as np

from assistant.engines.base import PCM, SpeechChunk


class PieceTracker:
    """Cuts a context's audio stream into per-piece ``SpeechChunk``s.

    With character alignment, each character is located in the text sent so far, and the audio
    is split where the next piece's first character starts. Without it, a piece is given the
    audio its length suggests at ``chars_per_second``, but never audio before the next piece
    was even sent.
    """

    def __init__(self, rate: int, chars_per_second: float = 15.0) -> None:
        self.rate = rate
        self.chars_per_second = chars_per_second
        self.texts: list[str] = []
        self._sent = ""
        self._starts: list[int] = []
        self._cursor = 0
        self._current = 0
        self._in_current = 0.0
        self.audio_seconds = 0.0

    def add(self, text: str) -> str:
        """Record the next piece; returns its wire form (ending with one space)."""
        wire = text.rstrip() + " "
        self._starts.append(len(self._sent))
        self.texts.append(text)
        self._sent += wire
        return wire

    @property
    def sent_text(self) -> str:
        return self._sent

    def audio(
        self, pcm: PCM, chars: list[str] | None = None, starts_ms: list[float] | None = None
    ) -> list[SpeechChunk]:
        """The chunks of ``pcm``; audio after ``finish`` belongs to no piece and is dropped."""
        if self._current >= len(self.texts):
            return []
        self.audio_seconds += len(pcm) / self.rate
        if chars and starts_ms and len(chars) == len(starts_ms):
            return self._aligned(pcm, chars, starts_ms)
        return self._estimated(pcm)

    def finish(self) -> list[SpeechChunk]:
        """Closing marks for the current piece and any that got no audio."""
        empty = np.zeros(0, dtype=np.int16)
        out = [self._chunk(i, empty, (), True) for i in range(self._current, len(self.texts))]
        self._current = len(self.texts)
        return out

    # ----------------------------------------------------------------------------------- internals

    def _chunk(
        self, piece: int, pcm: PCM, alignment: tuple[tuple[int, float], ...], last: bool
    ) -> SpeechChunk:
        return SpeechChunk(pcm, self.rate, piece, self.texts[piece], last, alignment)

    def _advance(self, to: int) -> list[SpeechChunk]:
        """Pieces before ``to`` are complete (the ones skipped got no audio of their own)."""
        empty = np.zeros(0, dtype=np.int16)
        out = [self._chunk(i, empty, (), True) for i in range(self._current + 1, to)]
        self._current, self._in_current = to, 0.0
        return out

    def _locate(self, ch: str) -> int:
        sent, cursor = self._sent, self._cursor
        if ch.isspace():  # a space belongs with what precedes it, never opens a piece
            if cursor < len(sent) and sent[cursor].isspace():
                self._cursor += 1
                return cursor
            return max(0, cursor - 1)
        while cursor < len(sent) and sent[cursor].isspace():
            cursor += 1
        found = sent.find(ch, cursor, cursor + 8)  # normalization may have changed a little
        pos = found if found >= 0 else min(cursor, max(0, len(sent) - 1))
        self._cursor = min(len(sent), pos + 1)
        return pos

    def _aligned(self, pcm: PCM, chars: list[str], starts_ms: list[float]) -> list[SpeechChunk]:
        last_piece = len(self.texts) - 1
        # (piece, offset in piece or -1 for a space, ms in this audio)
        marks: list[tuple[int, int, float]] = []
        for ch, ms in zip(chars, starts_ms, strict=True):
            pos = self._locate(ch)
            piece = min(last_piece, max(self._current, bisect.bisect_right(self._starts, pos) - 1))
            if marks and piece < marks[-1][0]:
                piece = marks[-1][0]
            offset = -1 if ch.isspace() else pos - self._starts[piece]
            marks.append((piece, offset, float(ms)))
        out: list[SpeechChunk] = []
        seg_start_ms, seg_start = 0.0, 0
        align: list[tuple[int, float]] = []
        for piece, offset, ms in marks:
            if piece != self._current:
                cut = min(len(pcm), max(seg_start, round(ms * self.rate / 1000.0)))
                out.append(self._chunk(self._current, pcm[seg_start:cut], tuple(align), True))
                out += self._advance(piece)
                seg_start, seg_start_ms, align = cut, cut * 1000.0 / self.rate, []
            if 0 <= offset < len(self.texts[piece]):
                align.append((offset, max(0.0, ms - seg_start_ms)))
        rest = pcm[seg_start:]
        out.append(self._chunk(self._current, rest, tuple(align), False))
        self._in_current += len(rest) / self.rate
        return out

    def _estimated(self, pcm: PCM) -> list[SpeechChunk]:
        out: list[SpeechChunk] = []
        while True:
            expected = max(0.3, len(self.texts[self._current]) / self.chars_per_second)
            room = round((expected - self._in_current) * self.rate)
            if self._current + 1 < len(self.texts) and len(pcm) > max(0, room):
                take = max(0, room)
                out.append(self._chunk(self._current, pcm[:take], (), True))
                out += self._advance(self._current + 1)
                pcm = pcm[take:]
                continue
            out.append(self._chunk(self._current, pcm, (), False))
            self._in_current += len(pcm) / self.rate
            return out
