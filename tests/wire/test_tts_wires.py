"""The multi-context TTS wire rules as tables: calls → messages out, messages in → events, and
a context's messages → the audio of each piece. No sockets."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest

from assistant.engines.asyncai import KEEPALIVE, AsyncTTS, AsyncWire, init_message
from assistant.engines.base import EngineError
from assistant.engines.elevenlabs import (
    DEFAULT_VOICE,
    VOICE_SETTINGS,
    ElevenLabsTTS,
    ElevenLabsWire,
    alignment_of,
)
from assistant.engines.net.tts_protocol import ContextEvent, ContextReader, TtsWire
from assistant.engines.pieces import PieceTracker

EL = ElevenLabsWire()
ASYNC = AsyncWire(init_message("async_flash_v1.5", "voice-1", "en"))


def pcm64(samples: int) -> str:
    return base64.b64encode(np.ones(samples, dtype="<i2").tobytes()).decode()


# ------------------------------------------------------------------------------ messages out

MESSAGES_OUT = [
    ("elevenlabs opens with a space and the voice settings", EL.opening("c1", "Hi. "),
     [{"text": " ", "voice_settings": VOICE_SETTINGS, "context_id": "c1"},
      {"text": "Hi. ", "context_id": "c1", "flush": True}]),
    ("elevenlabs flushes every piece", [EL.text("c1", "More. ")],
     [{"text": "More. ", "context_id": "c1", "flush": True}]),
    ("elevenlabs closes a context, not the socket", [EL.closing("c1")],
     [{"context_id": "c1", "close_context": True}]),
    ("elevenlabs keeps a waiting context alive", [EL.keepalive("c1")],
     [{"context_id": "c1", "text": ""}]),
    ("elevenlabs says goodbye with close_socket", [EL.goodbye()], [{"close_socket": True}]),
    ("elevenlabs greets no socket", EL.greeting(), []),
    ("async greets a socket with its voice", ASYNC.greeting(),
     [{"model_id": "async_flash_v1.5", "voice": {"mode": "id", "id": "voice-1"},
       "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000},
       "language": "en"}]),
    ("async forces every piece out", ASYNC.opening("c1", "Hi. "),
     [{"transcript": "Hi. ", "context_id": "c1", "force": True}]),
    ("async closes a context with empty text", [ASYNC.closing("c1")],
     [{"context_id": "c1", "close_context": True, "transcript": ""}]),
    ("async keeps contexts alive with the socket", [ASYNC.keepalive("c1"), ASYNC.goodbye()],
     [None, None]),
]  # fmt: skip


@pytest.mark.parametrize(("made", "expected"), [c[1:] for c in MESSAGES_OUT],
                         ids=[c[0] for c in MESSAGES_OUT])  # fmt: skip
def test_messages_out(made: list[Any], expected: list[Any]) -> None:
    assert made == expected


def test_async_socket_keepalive() -> None:
    assert KEEPALIVE == {"transcript": " "}


# -------------------------------------------------------------------------------- messages in

ALIGNED = {"chars": ["H", "i"], "charStartTimesMs": [0, 50], "charDurationsMs": [50, 50]}

MESSAGES_IN: list[tuple[str, TtsWire, dict[str, Any], str | None, ContextEvent]] = [
    ("elevenlabs audio with its alignment", EL,
     {"audio": "AAA=", "isFinal": None, "normalizedAlignment": ALIGNED, "contextId": "c1"},
     "c1", ContextEvent("AAA=", ["H", "i"], [0.0, 50.0])),
    ("the alignment of the text as sent is preferred", EL,
     {"audio": "", "alignment": {"chars": ["a"], "charStartTimesMs": [5]},
      "normalizedAlignment": ALIGNED, "context_id": "c2"},
     "c2", ContextEvent("", ["a"], [5.0])),
    ("start times follow from durations (either spelling)", EL,
     {"normalizedAlignment": {"chars": ["a", "b", "c"], "charsDurationsMs": [10, 20, 30]}},
     None, ContextEvent("", ["a", "b", "c"], [0.0, 10.0, 30.0])),
    ("an alignment of other types is ignored", EL,
     {"audio": "AAA=", "normalizedAlignment": {"chars": 5, "charStartTimesMs": "x"}},
     None, ContextEvent("AAA=")),
    ("times that do not match the characters are ignored", EL,
     {"normalizedAlignment": {"chars": ["a", "b"], "charStartTimesMs": [0]}},
     None, ContextEvent()),
    ("non-finite times are ignored", EL,
     {"normalizedAlignment": {"chars": ["a", "b"], "charDurationsMs": [float("nan"), 5]}},
     None, ContextEvent()),
    ("isFinal ends the context", EL, {"isFinal": True, "contextId": "c1"}, "c1",
     ContextEvent(final=True)),
    ("a truthy string is not final", EL, {"isFinal": "false"}, None, ContextEvent()),
    ("an error is reported", EL, {"error": "quota_exceeded", "message": "Out of credits."},
     None, ContextEvent(error="quota_exceeded")),
    ("audio that is not a string is none", EL, {"audio": 5}, None, ContextEvent()),
    ("async audio with its context", ASYNC, {"audio": "AAA=", "context_id": "c1"}, "c1",
     ContextEvent("AAA=")),
    ("async audio of older servers names no context", ASYNC,
     {"type": "audioOutput", "audio": "AAA="}, None, ContextEvent("AAA=")),
    ("async final", ASYNC, {"final": True, "context_id": "c1"}, "c1", ContextEvent(final=True)),
    ("async error", ASYNC, {"error": {"message": "Bad voice."}}, None,
     ContextEvent(error="Bad voice.")),
    ("a context id of another type names none", ASYNC, {"context_id": 7}, None, ContextEvent()),
]  # fmt: skip


@pytest.mark.parametrize(("wire", "message", "context", "event"), [c[1:] for c in MESSAGES_IN],
                         ids=[c[0] for c in MESSAGES_IN])  # fmt: skip
def test_messages_in(
    wire: TtsWire, message: dict[str, Any], context: str | None, event: ContextEvent
) -> None:
    assert wire.context_of(message) == context
    assert wire.read(message) == event


def test_alignment_of_durations_alone() -> None:
    for key in ("charDurationsMs", "charsDurationsMs"):
        chars, starts = alignment_of(
            {"normalizedAlignment": {"chars": ["a", "b", "c"], key: [10, 20, 30]}}
        )
        assert chars == ["a", "b", "c"] and starts == [0.0, 10.0, 30.0]


# ------------------------------------------------------------------------ a context's audio


def reader(wire: TtsWire, *pieces: str, rate: int = 24_000) -> ContextReader:
    tracker = PieceTracker(rate)
    for piece in pieces:
        tracker.add(piece)
    return ContextReader(wire, tracker)


def test_audio_is_decoded_and_an_odd_byte_waits_for_the_next_message() -> None:
    context = reader(EL, "Hi.")
    raw = np.arange(5, dtype="<i2").tobytes()
    first, final = context.receive({"audio": base64.b64encode(raw[:3]).decode()})
    assert [c.pcm.tolist() for c in first] == [[0]] and not final
    second, _ = context.receive({"audio": base64.b64encode(raw[3:]).decode()})
    assert [c.pcm.tolist() for c in second] == [[1, 2, 3, 4]]
    last, final = context.receive({"isFinal": True})
    assert final and [(c.piece, c.last, len(c.pcm)) for c in last] == [(0, True, 0)]


def test_base64_without_padding_is_accepted() -> None:
    chunks, _ = reader(ASYNC, "Hi.").receive({"audio": "AAAB"[:3]})  # two bytes, unpadded
    assert [len(c.pcm) for c in chunks] == [1]


@pytest.mark.parametrize("audio", ["A", "!!!!", "AAA=AAA=A", "Zm9v\n"])
def test_audio_that_is_not_base64_is_a_clear_error(audio: str) -> None:
    with pytest.raises(EngineError, match="not valid base64") as caught:
        reader(EL, "Hi.").receive({"audio": audio})
    assert caught.value.retryable and "ElevenLabs" in str(caught.value)


def test_a_reported_error_fails_the_context() -> None:
    with pytest.raises(EngineError, match=r"Async reported an error: Bad voice\."):
        reader(ASYNC, "Hi.").receive({"error": "Bad voice."})


def test_audio_spanning_two_pieces_is_cut_where_the_next_begins() -> None:
    """A server that merges pieces into one generation: the alignment says where to cut."""
    tracker = PieceTracker(1000)
    tracker.add("Hi there.")
    tracker.add("Bye.")
    chars = list(" Hi there. Bye. ")
    chunks = tracker.audio(np.ones(1000, dtype=np.int16), chars, [i * 60.0 for i in range(16)])
    assert [(c.piece, len(c.pcm), c.last) for c in chunks] == [(0, 660, True), (1, 340, False)]
    assert chunks[0].alignment[0] == (0, 60.0)  # "H", after the leading space
    assert chunks[1].alignment[0] == (0, 0.0)  # "B" starts the second chunk
    assert [(c.piece, c.last) for c in tracker.finish()] == [(1, True)]


def test_voice_ids() -> None:
    tts = ElevenLabsTTS("wss://api.elevenlabs.io", voice="elevenlabs:abc")
    assert tts.voice_id(None) == "abc"
    assert tts.voice_id("elevenlabs:xyz") == "xyz"
    assert tts.voice_id("piper:en_US-amy") == "abc"  # another engine's voice: the default
    assert ElevenLabsTTS("wss://x").voice_id(None) == DEFAULT_VOICE
    assert AsyncTTS("wss://x").voice_id("async:v2") == "v2"
