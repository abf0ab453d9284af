"""What the fake streaming speech-to-text servers (AssemblyAI, Deepgram) share.

They "recognize" a script: audio at ``speech_rms`` or louder is speech, and the words of the turn
being heard are revealed at ``words_per_second``. Each connection is a ``ListeningSession`` that
counts the audio it heard (and all connections together in ``audio_seconds``), keeps the control
messages in ``controls``, and can drop the connection after ``drop_after_audio`` seconds of audio
(once), as ``drop_code`` says.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from tests.fakes.base import FakeWebsocketServer

RATE = 16_000


def duration(data: bytes) -> float:
    """The length in seconds of 16-bit mono PCM ``data``."""
    return len(data) / 2 / RATE


def level(data: bytes) -> float:
    """The RMS of 16-bit PCM ``data`` (0 for none)."""
    pcm = np.frombuffer(data, dtype="<i2").astype(np.float32)
    return float(np.sqrt(np.mean(pcm * pcm))) if len(pcm) else 0.0


@dataclass
class FakeListeningServer(FakeWebsocketServer):
    words_per_second: float = 4.0
    speech_rms: float = 300.0
    #: Send malformed messages before the results.
    garbage: bool = False
    #: Drop the connection after receiving this much audio (once), as ``drop_code`` says.
    drop_after_audio: float | None = None

    controls: list[dict[str, Any]] = field(default_factory=list)
    audio_seconds: float = 0.0


@dataclass
class ListeningSession[S: FakeListeningServer]:
    """One connection: the audio heard, the speech and silence of the turn being heard, and the
    tasks (delayed answers, watchdogs) that end with the connection."""

    server: S
    ws: ServerConnection
    audio: float = 0.0
    speech: float = 0.0
    silence: float = 0.0
    #: monotonic time the client last sent anything
    last_activity: float = field(default_factory=time.monotonic)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def serve(self) -> None:
        """Take the client's messages until the connection or the session ends; a closed
        connection ends it quietly, and the session's tasks end with it."""
        try:
            async for message in self.ws:
                self.last_activity = time.monotonic()
                if isinstance(message, bytes):
                    going = await self._audio(message)
                else:
                    going = await self._text(message)
                if not going:
                    return
        except ConnectionClosed:
            pass
        finally:
            for task in self.tasks:
                task.cancel()

    async def _text(self, message: str) -> bool:
        """A control message, kept in ``controls``; False when it ended the session."""
        try:
            msg = json.loads(message)
        except ValueError:
            return await self._not_json(message)
        self.server.controls.append(msg)
        return await self._control(msg)

    async def _not_json(self, message: str) -> bool:
        """Answer a text message that is no JSON; False when that ended the session. Unless the
        provider answers it, the connection fails as on any server error."""
        raise ValueError(f"not JSON: {message[:40]!r}")

    async def _control(self, msg: dict[str, Any]) -> bool:
        """Answer a control message; False when it ended the session."""
        raise NotImplementedError

    async def _audio(self, data: bytes) -> bool:
        """Take an audio message; False when it ended the session."""
        raise NotImplementedError

    def hear(self, seconds: float) -> None:
        """Count ``seconds`` of audio as heard, on this connection and on the server."""
        self.audio += seconds
        self.server.audio_seconds += seconds

    async def dropped(self, reason: str) -> bool:
        """Drop the connection (once) when the server has heard ``drop_after_audio`` seconds;
        True when it did."""
        server = self.server
        if server.drop_after_audio is None or server.audio_seconds < server.drop_after_audio:
            return False
        server.drop_after_audio = None
        await server.drop(self.ws, reason)
        return True
