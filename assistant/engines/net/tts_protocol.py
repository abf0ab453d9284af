"""The sans-I/O side of a multi-context TTS socket (ElevenLabs, Async).

A reply is one context on a socket shared by a voice's replies. A provider's ``TtsWire`` says
which messages open a context with its first text, add text, close it (the end of a reply, or a
barge-in), keep it alive, and greet a new socket; ``context_of`` says which context a server
message belongs to and ``read`` what it means (``ContextEvent``). ``ContextReader`` turns a
context's messages into ``SpeechChunk``s (base64 audio decoded, cut per piece by
``PieceTracker``). None of it does I/O: ``tts_driver.speak`` runs it over a socket; tests feed it
tables of messages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

from assistant.engines.base import SpeechChunk
from assistant.engines.net.errors import Service
from assistant.engines.net.messages import Message, decode_pcm, items, obj
from assistant.engines.pieces import PieceTracker


@dataclass(frozen=True, slots=True)
class ContextEvent:
    """One server message of a context, read."""

    audio: str = ""  # base64 PCM
    chars: list[str] | None = None
    starts_ms: list[float] | None = None
    final: bool = False
    error: str | None = None


class TtsWire(Protocol):
    """The provider-specific messages of a multi-context TTS socket."""

    service: Service

    def greeting(self) -> list[Message]:
        """Sent first on every new socket."""
        ...

    def opening(self, context: str, text: str) -> list[Message]: ...
    def text(self, context: str, text: str) -> Message: ...
    def closing(self, context: str) -> Message: ...
    def keepalive(self, context: str) -> Message | None: ...
    def goodbye(self) -> Message | None: ...
    def context_of(self, msg: Message) -> str | None: ...
    def read(self, msg: Message) -> ContextEvent: ...


def context_of(msg: Message) -> str | None:
    """The context a multi-context TTS message names (both spellings of the key occur)."""
    for key in ("contextId", "context_id"):
        value = msg.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def alignment(block: Any) -> tuple[list[str], list[float]] | None:
    """Characters and their start times (ms) from an alignment block, if it holds a usable one.

    Start times missing? They follow from the durations, whichever way the server spells that
    key. Lists of other types, of different lengths, or with non-finite times give None."""
    block = block if isinstance(block, dict) else {}
    chars = items(block.get("chars"))
    if not chars or not all(isinstance(c, str) for c in chars):
        return None
    starts = items(block.get("charStartTimesMs") or block.get("char_start_times_ms"))
    if not starts:
        durations = items(
            block.get("charDurationsMs")
            or block.get("charsDurationsMs")
            or block.get("char_durations_ms")
        )
        t, starts = 0.0, []
        for d in durations:
            starts.append(t)
            t += d if _finite(d) else math.nan
    if len(starts) != len(chars) or not all(_finite(s) for s in starts):
        return None
    return list(chars), [float(s) for s in starts]


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def alignment_in(
    msg: Message, keys: tuple[str, ...]
) -> tuple[list[str] | None, list[float] | None]:
    """The first usable alignment among ``keys`` of ``msg`` (None, None without one)."""
    for key in keys:
        found = alignment(obj(msg, key))
        if found is not None:
            return found
    return None, None


class ContextReader:
    """A context's server messages → ``SpeechChunk``s, and whether the context is finished.

    ``receive`` raises ``EngineError`` when the server reports an error for the context or
    sends audio that is not base64; nothing else escapes, whatever the message holds."""

    def __init__(self, wire: TtsWire, tracker: PieceTracker) -> None:
        self.wire = wire
        self.tracker = tracker
        self._carry = bytearray()

    def receive(self, msg: Message) -> tuple[list[SpeechChunk], bool]:
        event = self.wire.read(msg)
        service = self.wire.service
        if event.error is not None:
            raise service.error(f"reported an error: {event.error}")
        chunks: list[SpeechChunk] = []
        pcm = decode_pcm(service, event.audio, self._carry)
        if len(pcm) and self.tracker.texts:
            chunks = self.tracker.audio(pcm, event.chars, event.starts_ms)
        if event.final:
            chunks += self.tracker.finish()
        return chunks, event.final
