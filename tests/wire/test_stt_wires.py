"""The streaming STT wire rules as tables: messages in → events out, calls → messages out.

No sockets and no clock: each wire is driven with explicit times, as the driver would."""

from __future__ import annotations

import base64
import json
import urllib.parse
from typing import Any

import numpy as np
import pytest

from assistant.engines.assemblyai import (
    ENGLISH_MODEL,
    MULTILINGUAL_MODEL,
    AssemblyAIWire,
    speech_model,
)
from assistant.engines.base import EngineError
from assistant.engines.deepgram import DeepgramWire
from assistant.engines.net.messages import Outgoing
from assistant.engines.net.stt_protocol import (
    Failed,
    Final,
    Finished,
    Partial,
    Ready,
    SttEvent,
    SttWire,
    TurnFailed,
)
from assistant.engines.openai.realtime import CLEAR, COMMIT, RealtimeWire

KEY = "key-0123456789"


def feed(wire: SttWire, *messages: Any, now: float = 0.0) -> list[SttEvent]:
    for message in messages:
        raw = message if isinstance(message, str | bytes) else json.dumps(message)
        wire.receive(raw, now)
    return wire.events_received()


def sent(wire: SttWire, now: float = 0.0) -> list[Outgoing]:
    """Drain what the wire wants sent, and tell it everything left at ``now``."""
    out = wire.data_to_send()
    for item in out:
        wire.sent(item, now)
    return out


def speech(seconds: float) -> np.ndarray:
    return np.full(int(seconds * 16_000), 1000, dtype=np.int16)


def query(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


# -------------------------------------------------------------------------------- AssemblyAI


def turn(order: int, text: str, *, end: bool = False, formatted: bool = False, **extra: Any):
    return {"type": "Turn", "turn_order": order, "transcript": text, "end_of_turn": end,
            "turn_is_formatted": formatted, "words": [], **extra}  # fmt: skip


AAI_MESSAGES = [
    ("begin starts the session", [{"type": "Begin", "id": "s", "expires_at": 1}], [Ready()]),
    ("partials carry the turn so far", [turn(0, "what"), turn(0, "what time")],
     [Partial("what"), Partial("what time")]),
    ("a repeated partial is reported once", [turn(0, "what"), turn(0, "what")], [Partial("what")]),
    ("the formatted end answers the turn",
     [turn(0, "what time", end=True), turn(0, "What time?", end=True, formatted=True)],
     [Partial("what time"), Final("What time?")]),
    ("a formatted end sent twice answers once",
     [turn(0, "hi", end=True), *[turn(0, "Hi.", end=True, formatted=True)] * 2],
     [Partial("hi"), Final("Hi.")]),
    ("words give the span",
     [turn(0, "hi there", words=[{"start": 500, "end": 700}, {"start": 800, "end": 1200}])],
     [Partial("hi there", 0.5, 1.2)]),
    ("the language of a formatted end",
     [turn(1, "Hola.", end=True, formatted=True, language_code="es")],
     [Final("Hola.", language="es")]),
    ("a server end without words is no turn", [turn(0, "", end=True, formatted=True)], []),
    ("termination acknowledges the goodbye", [{"type": "Termination"}], [Finished()]),
    ("an error is logged, not an event", [{"type": "Error", "error": "Too fast"}], []),
    ("what is not JSON is skipped", ["{oops", "[1, 2]", b"\xff\xfe"], []),
    ("wrong field types read as absent",
     [{"type": "Turn", "turn_order": "x", "transcript": 5, "end_of_turn": "yes", "words": "ab"}],
     []),
    ("unknown types are ignored", [{"type": "SpeechStarted"}], []),
]  # fmt: skip


def test_assemblyai_connection() -> None:
    wire = AssemblyAIWire("wss://streaming.assemblyai.com/v3/ws", "en")
    assert query(wire.url()) == {"sample_rate": "16000", "encoding": "pcm_s16le",
                                 "speech_model": ENGLISH_MODEL, "format_turns": "true"}  # fmt: skip
    assert wire.headers(KEY) == {"Authorization": KEY}  # no "Bearer"
    assert wire.greets and wire.start() == []
    assert wire.goodbye() == Outgoing('{"type": "Terminate"}')
    spanish = AssemblyAIWire("wss://x/v3/ws", "es")
    assert query(spanish.url())["speech_model"] == MULTILINGUAL_MODEL
    assert query(spanish.url())["language_detection"] == "true"


def test_speech_model_follows_language() -> None:
    assert speech_model("en") == ENGLISH_MODEL
    assert speech_model("en-GB") == ENGLISH_MODEL
    assert speech_model("de") == MULTILINGUAL_MODEL
    assert speech_model("es-MX") == MULTILINGUAL_MODEL
    assert speech_model("de", "universal-3-pro") == "universal-3-pro"


def test_assemblyai_audio_is_batched_and_padded() -> None:
    wire = AssemblyAIWire("wss://x/v3/ws", "en")
    wire.audio(speech(0.21), 0.0)
    assert [m.audio for m in sent(wire)] == [0.1, 0.1]
    wire.end_turn(0.0)
    out = sent(wire)
    assert [m.audio for m in out] == [0.05, 0.0]  # the last 10 ms, padded to the minimum
    assert out[-1] == AssemblyAIWire.END_TURN == Outgoing('{"type": "ForceEndpoint"}')


def test_assemblyai_turn_end_without_audio_needs_no_server() -> None:
    wire = AssemblyAIWire("wss://x/v3/ws", "en")
    assert wire.end_turn(0.0) == 1
    assert sent(wire) == []
    assert wire.events_received() == [Final("", turn=1)]


def test_assemblyai_late_formatted_end_falls_back_to_the_raw_one() -> None:
    wire = AssemblyAIWire("wss://x/v3/ws", "en", format_timeout=0.3)
    assert feed(wire, turn(0, "what time", end=True), now=1.0) == [Partial("what time")]
    assert wire.deadline() == pytest.approx(1.3)
    wire.expire(1.29)
    assert wire.events_received() == []
    wire.expire(1.3)
    assert wire.events_received() == [Final("what time")]
    assert feed(wire, turn(0, "What time?", end=True, formatted=True)) == []  # already answered


def test_assemblyai_unanswered_turn_end_uses_the_last_partial() -> None:
    wire = AssemblyAIWire("wss://x/v3/ws", "en", final_timeout=1.0)
    wire.audio(speech(0.3), 0.0)
    feed(wire, turn(0, "what time"))
    wire.end_turn(0.5)
    sent(wire, now=2.0)  # the deadline runs from when the request left
    assert wire.deadline() == pytest.approx(3.0)
    wire.expire(3.0)
    assert wire.events_received() == [Final("what time", turn=1)]
    assert sent(wire) == []  # the turn end was already requested: nothing more to ask


def test_assemblyai_clear_abandons_the_turn_and_swallows_its_end() -> None:
    wire = AssemblyAIWire("wss://x/v3/ws", "en")
    wire.audio(speech(0.3), 0.0)
    feed(wire, turn(0, "uh huh"))
    sent(wire)
    wire.clear(0.0)
    assert sent(wire) == [AssemblyAIWire.END_TURN]  # the server finishes it; nobody answers it
    assert (
        feed(wire, turn(0, "uh huh", end=True), turn(0, "Uh huh.", end=True, formatted=True)) == []
    )
    assert feed(wire, turn(1, "Thank you.", end=True, formatted=True)) == [Final("Thank you.")]


def test_assemblyai_reconnect_sends_the_turn_again() -> None:
    wire = AssemblyAIWire("wss://x/v3/ws", "en")
    wire.audio(speech(0.2), 0.0)
    wire.end_turn(0.0)
    audio_and_end = sent(wire)
    assert [m.audio for m in audio_and_end] == [0.1, 0.1, 0.0]
    assert wire.reconnected(1.0) == audio_and_end  # turn numbers restart: the same turn again
    assert wire.deadline() is None  # until the turn end has left again


# ----------------------------------------------------------------------------------- Deepgram


def results(text: str, *, start: float = 0.0, duration: float = 0.5, **flags: bool):
    return {"type": "Results", "start": start, "duration": duration, "is_final": False,
            "speech_final": False, "from_finalize": False,
            "channel": {"alternatives": [{"transcript": text}]}, **flags}  # fmt: skip


DG_MESSAGES = [
    ("interim results are partials", [results("what"), results("what time")],
     [Partial("what", 0.0, 0.5), Partial("what time", 0.0, 0.5)]),
    ("final segments accumulate into the partial",
     [results("What time", is_final=True), results("is", start=0.5)],
     [Partial("What time", 0.0, 0.5), Partial("What time is", 0.0, 1.0)]),
    ("speech_final ends the turn with every segment",
     [results("What time", is_final=True), results("is it?", start=0.5, is_final=True,
                                                  speech_final=True)],
     [Partial("What time", 0.0, 0.5), Final("What time is it?", 0.0, 1.0)]),
    ("utterance end ends the turn",
     [results("Thank you.", is_final=True), {"type": "UtteranceEnd", "last_word_end": 0.4}],
     [Partial("Thank you.", 0.0, 0.5), Final("Thank you.", 0.0, 0.5)]),
    ("utterance end without words is no turn", [{"type": "UtteranceEnd"}], []),
    ("empty finals in silence are nothing", [results("", is_final=True, speech_final=True)], []),
    ("metadata acknowledges the goodbye", [{"type": "Metadata", "duration": 1.0}], [Finished()]),
    ("speech started is no event", [{"type": "SpeechStarted", "timestamp": 0.1}], []),
    ("what is not JSON is skipped", ["<html>not json", "[]"], []),
    ("wrong field types read as absent",
     [{"type": "Results", "start": "x", "duration": None, "is_final": 1,
       "channel": {"alternatives": "nope"}}, {"type": "Results", "channel": []}],
     []),
]  # fmt: skip


WIRES = {"assemblyai": AssemblyAIWire, "deepgram": DeepgramWire}
TABLES = [("assemblyai", *case) for case in AAI_MESSAGES] + [
    ("deepgram", *case) for case in DG_MESSAGES
]


@pytest.mark.parametrize(("provider", "messages", "events"), [(c[0], *c[2:]) for c in TABLES],
                         ids=[f"{c[0]}: {c[1]}" for c in TABLES])  # fmt: skip
def test_endpointed_messages(provider: str, messages: list[Any], events: list[SttEvent]) -> None:
    assert feed(WIRES[provider]("wss://x/ws", "en"), *messages) == events


def test_deepgram_connection() -> None:
    wire = DeepgramWire("wss://api.deepgram.com/v1/listen", "en")
    assert urllib.parse.urlsplit(wire.url()).query == (
        "model=nova-3&language=en-US&encoding=linear16&sample_rate=16000&channels=1"
        "&interim_results=true&punctuate=true&smart_format=true&vad_events=true&endpointing=300"
        "&utterance_end_ms=1000"
    )
    assert wire.headers(KEY) == {"Authorization": f"Token {KEY}"}
    assert not wire.greets and wire.start() == []
    assert wire.keepalive == (4.0, Outgoing('{"type": "KeepAlive"}'))
    assert wire.goodbye() == Outgoing('{"type": "CloseStream"}')


def test_deepgram_finalize_answers_the_turn() -> None:
    wire = DeepgramWire("wss://x/v1/listen", "en")
    wire.audio(speech(0.12), 0.0)
    wire.end_turn(0.0)
    assert [m.audio for m in sent(wire)] == [0.06, 0.06, 0.0]
    final = results("What time is it?", is_final=True, from_finalize=True)
    assert feed(wire, final) == [Final("What time is it?", 0.0, 0.5, turn=1)]


def test_deepgram_turn_end_met_by_silence_means_a_stalled_connection() -> None:
    wire = DeepgramWire("wss://x/v1/listen", "en", final_timeout=0.5)
    wire.audio(speech(0.12), 0.0)
    wire.end_turn(0.0)
    sent(wire, now=1.0)
    wire.expire(1.5)
    (event,) = wire.events_received()  # not an empty final that passes for silence
    assert isinstance(event, Failed)
    assert "sent nothing within 0.5 s of the turn's end" in str(event.error)


def test_deepgram_transcripts_that_are_not_text_fail_the_turn() -> None:
    wire = DeepgramWire("wss://x/v1/listen", "en")
    wire.audio(speech(0.12), 0.0)
    wire.end_turn(0.0)
    sent(wire)
    garbled = results("x", is_final=True, from_finalize=True)
    garbled["channel"]["alternatives"][0]["transcript"] = 5
    interim = results("y") | {"channel": {"alternatives": [{"transcript": []}]}}
    (event,) = feed(wire, interim, garbled)
    assert isinstance(event, Failed)
    assert "sent a transcript that is not text" in str(event.error)


def test_deepgram_clear_ignores_the_abandoned_audio() -> None:
    wire = DeepgramWire("wss://x/v1/listen", "en")
    wire.audio(speech(0.6), 0.0)
    sent(wire)
    feed(wire, results("uh"))
    wire.clear(0.0)
    assert sent(wire) == [DeepgramWire.END_TURN]  # Finalize flushes the abandoned audio out
    assert feed(wire, results("uh huh", is_final=True, from_finalize=True, duration=0.6)) == []
    later = results("Yes.", start=0.6, is_final=True, speech_final=True)
    assert feed(wire, later) == [Final("Yes.", 0.6, 1.1)]


# ------------------------------------------------------------------------------ OpenAI Realtime


def item(kind: str, item_id: str = "item_1", **fields: Any) -> dict[str, Any]:
    return {"type": f"conversation.item.input_audio_transcription.{kind}", "item_id": item_id,
            **fields}  # fmt: skip


def committed_turn(wire: RealtimeWire, seconds: float = 0.5, now: float = 0.0) -> int:
    wire.audio(speech(seconds), now)
    number = wire.end_turn(now)
    sent(wire, now)
    return number


def test_realtime_connection() -> None:
    wire = RealtimeWire("wss://api.openai.com/v1/realtime", "en-US", model="gpt-4o-transcribe")
    assert wire.url() == "wss://api.openai.com/v1/realtime?intent=transcription"
    assert RealtimeWire("ws://h/v1/realtime?intent=x", "en").url() == "ws://h/v1/realtime?intent=x"
    assert wire.headers(KEY) == {"Authorization": f"Bearer {KEY}"}
    (update,) = wire.start()
    session = json.loads(update.data)["session"]
    assert session["type"] == "transcription"
    assert session["audio"]["input"] == {
        "format": {"type": "audio/pcm", "rate": 24000},
        "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
        "turn_detection": None,
    }
    assert wire.greets and wire.awaits_final
    assert feed(wire, {"type": "session.created"}, {"type": "session.updated"}) == [Ready()]


def test_realtime_language_switch_updates_the_session() -> None:
    wire = RealtimeWire("ws://h/v1/realtime", "en")
    assert wire.reconfigure("de-DE")
    (update,) = wire.data_to_send()
    language = json.loads(update.data)["session"]["audio"]["input"]["transcription"]["language"]
    assert language == "de"
    assert wire.reconfigure("de-DE") and wire.data_to_send() == []


def test_realtime_turn_is_committed_and_transcribed() -> None:
    wire = RealtimeWire("ws://h/v1/realtime", "en", final_timeout=5.0)
    wire.audio(speech(0.5), 0.0)
    assert wire.end_turn(0.0) == 1
    out = sent(wire, now=1.0)
    assert out[-1] == COMMIT
    appended = b"".join(base64.b64decode(json.loads(m.data)["audio"]) for m in out[:-1])
    assert len(appended) == pytest.approx(0.5 * 48_000, abs=16)  # 24 kHz s16le
    assert wire.deadline() == pytest.approx(6.0)
    events = feed(
        wire,
        {"type": "input_audio_buffer.committed", "item_id": "item_1"},
        item("delta", delta="what"),
        item("delta", delta=" time"),
        item("completed", transcript="what time"),
    )
    assert events == [Partial("what", 0.0, 0.5), Partial("what time", 0.0, 0.5),
                      Final("what time", 0.0, 0.5, turn=1)]  # fmt: skip
    assert wire.deadline() is None


def test_realtime_second_turn_starts_where_the_first_ended() -> None:
    wire = RealtimeWire("ws://h/v1/realtime", "en")
    committed_turn(wire, 0.5)
    feed(wire, {"type": "input_audio_buffer.committed", "item_id": "a"}, item("completed", "a"))
    committed_turn(wire, 0.3)
    events = feed(wire, {"type": "input_audio_buffer.committed", "item_id": "b"},
                  item("completed", "b", transcript="two"))  # fmt: skip
    assert events == [Final("two", 0.5, 0.8, turn=2)]


REALTIME_OUTCOMES = [
    ("a failed item fails the turn with an empty final",
     [item("failed", error={"code": "audio_unintelligible", "message": "Audio unclear."})],
     "could not transcribe that (Audio unclear.)"),
    ("an empty commit gives an empty final",
     [{"type": "error", "error": {"code": "input_audio_buffer_commit_empty"}}], None),
    ("another error refuses the audio",
     [{"type": "error", "error": {"code": "invalid_value", "message": "Bad audio."}}],
     "the service refused the audio (Bad audio.)"),
]  # fmt: skip


@pytest.mark.parametrize(("messages", "failure"), [c[1:] for c in REALTIME_OUTCOMES],
                         ids=[c[0] for c in REALTIME_OUTCOMES])  # fmt: skip
def test_realtime_turn_outcomes(messages: list[Any], failure: str | None) -> None:
    wire = RealtimeWire("ws://h/v1/realtime", "en")
    committed_turn(wire)
    committed = {"type": "input_audio_buffer.committed", "item_id": "item_1"}
    if messages[0]["type"] == "error":  # the commit itself was refused: no item
        committed = {"type": "rate_limits.updated"}
    events = feed(wire, committed, *messages)
    assert events[-1] == Final("", 0.0, 0.5, turn=1)
    failed = [e for e in events if isinstance(e, TurnFailed)]
    if failure is None:
        assert failed == []
    else:
        assert len(failed) == 1 and failure in str(failed[0].error)


def test_realtime_rejected_key_ends_the_session() -> None:
    wire = RealtimeWire("ws://h/v1/realtime", "en")
    (event,) = feed(wire, {"type": "error", "error": {"code": "invalid_api_key", "message": KEY}})
    assert isinstance(event, Failed) and not event.error.retryable
    assert "rejected the API key" in str(event.error) and "OPENAI_API_KEY" in str(event.error)


def test_realtime_no_transcript_in_time_fails_the_turn_without_a_final() -> None:
    wire = RealtimeWire("ws://h/v1/realtime", "en", final_timeout=0.3)
    committed_turn(wire, now=1.0)
    wire.expire(1.3)
    (event,) = wire.events_received()
    assert isinstance(event, TurnFailed) and event.turn == 1
    assert "no transcript within 0.3 s" in str(event.error)
    assert feed(wire, item("completed", transcript="late")) == []  # nobody waits any more


def test_realtime_a_click_is_not_committed() -> None:
    wire = RealtimeWire("ws://h/v1/realtime", "en")
    wire.audio(speech(0.05), 0.0)
    wire.end_turn(0.0)
    assert sent(wire) == []
    assert wire.events_received() == [Final("", 0.0, 0.05, turn=1)]


def test_realtime_clear_drops_audio_already_queued() -> None:
    wire = RealtimeWire("ws://h/v1/realtime", "en")
    wire.audio(speech(0.3), 0.0)
    sent(wire)
    wire.clear(0.0)
    assert sent(wire) == [CLEAR]
    wire.audio(speech(0.01), 0.0)
    wire.clear(0.0)
    assert sent(wire) == []  # nothing of that one reached the socket


def test_realtime_drop_loses_the_utterance_and_the_pending_turn() -> None:
    wire = RealtimeWire("ws://h/v1/realtime", "en")
    committed_turn(wire)
    wire.audio(speech(0.2), 0.0)
    sent(wire)  # audio of the next utterance went out on the socket that drops
    drop = EngineError("OpenAI transcription connection dropped (code 1011).", engine="openai")
    assert wire.dropped(drop, 0.0)  # the queued rest of it must not be sent either
    (failed,) = wire.events_received()
    assert isinstance(failed, TurnFailed) and failed.turn == 1 and failed.error.retryable
    assert "1011" in str(failed.error) and "say that again" in str(failed.error)
    with pytest.raises(EngineError, match="dropped"):
        wire.audio(speech(0.1), 0.0)
    wire.clear(0.0)
    wire.audio(speech(0.1), 0.0)  # a fresh utterance goes through


def test_realtime_drop_while_idle_loses_nothing() -> None:
    wire = RealtimeWire("ws://h/v1/realtime", "en")
    wire.audio(speech(0.2), 0.0)  # queued while the socket is down: never sent
    assert not wire.dropped(EngineError("dropped"), 0.0)
    assert wire.events_received() == []
    wire.audio(speech(0.1), 0.0)
