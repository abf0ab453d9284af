"""A speech recognizer whose server accepts every connection and drops it at once."""

from __future__ import annotations

from collections.abc import AsyncIterator

from assistant.engines.base import PCM, EngineError, Transcript


class DroppingSTT:
    """A server that accepts every connection and drops it at once."""

    name = "flaky"
    provides_endpointing = False

    def __init__(self) -> None:
        self.opens = 0

    async def open(self, language: str) -> DroppingSession:
        self.opens += 1
        return DroppingSession()

    async def warm_up(self) -> None:
        return None


class DroppingSession:
    sample_rate = 16_000

    async def push(self, pcm: PCM) -> None:
        return None

    async def end_turn(self) -> None:
        return None

    async def clear(self) -> None:
        return None

    async def transcripts(self) -> AsyncIterator[Transcript]:
        raise EngineError("flaky: the connection closed (1006)")
        yield  # pragma: no cover

    async def aclose(self) -> None:
        return None
