"""Every parser of what a server sends is total: whatever the message holds — wrong types,
``NaN``, truncated base64, no JSON at all — only ``EngineError`` may escape."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai._models import construct_type
from openai.types.chat import ChatCompletionChunk

from assistant.engines import s2s
from assistant.engines.assemblyai import AssemblyAIWire
from assistant.engines.assemblyai_agent import VoiceAgentWire
from assistant.engines.assemblyai_gateway import completion_events
from assistant.engines.asyncai import AsyncWire
from assistant.engines.base import EngineError
from assistant.engines.claude import ClaudeEvents
from assistant.engines.deepgram import DeepgramWire
from assistant.engines.elevenlabs import ElevenLabsWire
from assistant.engines.net.agent_driver import AgentWire
from assistant.engines.net.errors import error_detail
from assistant.engines.net.messages import parse_json, server_error_text
from assistant.engines.net.retry import retry_after
from assistant.engines.net.stt_protocol import SttWire
from assistant.engines.net.tts_protocol import ContextReader, TtsWire
from assistant.engines.openai.agent import RealtimeAgentWire
from assistant.engines.openai.chat import _events
from assistant.engines.openai.realtime import RealtimeWire
from assistant.engines.pieces import PieceTracker

#: Field names and message types the providers use, so that generated messages reach the
#: branches that read them.
FIELDS = (
    "type", "turn_order", "transcript", "end_of_turn", "turn_is_formatted", "words", "start",
    "end", "language_code", "error", "message", "is_final", "speech_final", "from_finalize",
    "duration", "channel", "alternatives", "item_id", "delta", "code", "audio", "isFinal",
    "is_final", "final", "contextId", "context_id", "alignment", "normalizedAlignment", "chars",
    "charStartTimesMs", "charDurationsMs", "charsDurationsMs", "choices", "index", "tool_calls",
    "function", "name", "arguments", "id", "finish_reason", "usage", "prompt_tokens",
    "completion_tokens", "prompt_tokens_details", "cached_tokens", "detail", "err_msg", "status",
    "message", "content_block", "partial_json", "stop_reason", "input_tokens", "output_tokens",
    "response", "response_id", "call_id", "audio_end_ms", "session_id", "reply_id", "data",
    "start_ms", "interrupted", "text", "param", "content",
)  # fmt: skip
TYPES = (
    "Begin", "Turn", "Termination", "Error", "Results", "UtteranceEnd", "Metadata",
    "SpeechStarted", "session.updated", "input_audio_buffer.committed", "error",
    "conversation.item.input_audio_transcription.delta",
    "conversation.item.input_audio_transcription.completed",
    "conversation.item.input_audio_transcription.failed", "audioOutput",
    "message_start", "content_block_start", "content_block_delta", "content_block_stop",
    "message_delta", "message_stop", "ping", "response.created", "response.done",
    "response.output_audio.delta", "response.audio.delta", "response.output_audio_transcript.delta",
    "response.audio_transcript.done", "response.function_call_arguments.done",
    "response.output_item.added", "input_audio_buffer.speech_stopped", "session.ready",
    "reply.started", "reply.audio", "transcript.agent.delta", "transcript.agent", "reply.done",
    "tool.call", "session.error", "transcript.user", "input.speech.started", "reply.error",
)  # fmt: skip

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["AAA=", "A", "!!", "item_1", "c1", "inf"])
)
keys = st.sampled_from(FIELDS) | st.text(max_size=6)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=8,
)
messages = st.builds(
    lambda kind, rest: {**rest, "type": kind} if kind is not None else rest,
    st.none() | st.sampled_from(TYPES) | scalars,
    st.dictionaries(keys, values, max_size=5),
)


def shaped(kind: st.SearchStrategy[Any], **fields: st.SearchStrategy[Any]) -> st.SearchStrategy:
    """Messages of a provider's shape whose fields may hold anything."""
    return st.fixed_dictionaries({"type": kind}, optional=fields)


def some(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return strategy | values


block = st.fixed_dictionaries({}, optional={
    key: some(st.lists(values, max_size=4))
    for key in ("chars", "charStartTimesMs", "charDurationsMs", "charsDurationsMs")
})  # fmt: skip
provider_messages = (
    shaped(st.just("Turn"), turn_order=values, transcript=values, end_of_turn=values,
           turn_is_formatted=values, language_code=values,
           words=some(st.lists(st.fixed_dictionaries({}, optional={"start": values,
                                                                  "end": values}))))
    | shaped(st.just("Results"), start=values, duration=values, is_final=values,
             speech_final=values, from_finalize=values,
             channel=some(st.fixed_dictionaries({}, optional={"alternatives": some(st.lists(
                 st.fixed_dictionaries({}, optional={"transcript": values}), max_size=2))})))
    | shaped(st.sampled_from(TYPES), item_id=some(st.just("item_1")), delta=values,
             transcript=values, error=some(st.fixed_dictionaries({}, optional={
                 "code": some(st.sampled_from(["invalid_api_key",
                                               "input_audio_buffer_commit_empty"])),
                 "message": values})))
    | shaped(st.none() | st.sampled_from(["audioOutput"]), audio=some(st.sampled_from(["AAA=",
             "AAAB", "A", "AAA=AAA="])), isFinal=values, final=values, contextId=values,
             context_id=values, alignment=some(block), normalizedAlignment=some(block),
             error=values)
)  # fmt: skip
raw = (
    provider_messages.map(json.dumps)
    | messages.map(json.dumps)
    | st.text(max_size=40)
    | st.binary(max_size=40)
    | values.map(json.dumps)
)
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def total(parse: Callable[..., object], *args: Any) -> None:
    """Call ``parse``; an ``EngineError`` is an allowed outcome, any other exception fails."""
    try:
        parse(*args)
    except EngineError:
        pass


def waiting(wires: list[Any], end: Callable[[Any], object]) -> list[Any]:
    """``wires`` in a state where they wait for the server: audio sent, the turn ended by
    ``end(wire)``, every message out."""
    for wire in wires:
        wire.audio(np.full(8000, 900, dtype=np.int16), 0.0)
        end(wire)
        for item in wire.data_to_send():
            wire.sent(item, 0.0)
    return wires


def stt_wires() -> list[SttWire]:
    """Each STT wire waiting for a transcript."""
    wires = [
        AssemblyAIWire("wss://x/v3/ws", "en"),
        DeepgramWire("wss://x/v1/listen", "en"),
        RealtimeWire("wss://x/v1/realtime", "en"),
    ]
    return waiting(wires, lambda wire: wire.end_turn(0.0))


def agent_wires() -> list[AgentWire]:
    """Each speech-to-speech wire waiting for the answer to a turn."""
    wires = [
        RealtimeAgentWire("wss://x/v1/realtime", s2s.AgentSetup("x")),
        VoiceAgentWire("wss://x/v1/ws", s2s.AgentSetup("x")),
    ]
    return waiting(wires, lambda wire: wire.commit(0.0))


@FUZZ
@given(st.lists(raw, min_size=1, max_size=4), st.sampled_from([stt_wires, agent_wires]))
def test_stt_and_agent_wires_read_anything(
    batch: list[str | bytes], wires: Callable[[], list[Any]]
) -> None:
    for wire in wires():
        for message in batch:
            total(wire.receive, message, 1.0)
        total(wire.expire, 100.0)
        wire.events_received()


@FUZZ
@given(st.lists(provider_messages | messages, min_size=1, max_size=6))
def test_claude_events_and_gateway_answers_read_anything(batch: list[dict[str, Any]]) -> None:
    reader = ClaudeEvents()
    for message in batch:
        reader.read(message)
        list(completion_events(message))
        list(completion_events({"choices": [message], "usage": message}))


@FUZZ
@given(st.lists(provider_messages | messages, min_size=1, max_size=4))
def test_tts_wires_read_anything(batch: list[dict[str, Any]]) -> None:
    wires: list[TtsWire] = [ElevenLabsWire(), AsyncWire({})]
    for wire in wires:
        tracker = PieceTracker(24_000)
        tracker.add("Hello there.")
        tracker.add("Bye.")
        context = ContextReader(wire, tracker)
        for message in batch:
            wire.context_of(message)
            total(context.receive, message)


@FUZZ
@given(raw)
def test_json_and_error_readers_read_anything(message: str | bytes) -> None:
    parsed = parse_json("Fuzz", message)
    if parsed is not None:
        server_error_text(parsed)
        error_detail(parsed)
    error_detail(message if isinstance(message, bytes) else message.encode())


@FUZZ
@given(st.dictionaries(st.sampled_from(["retry-after", "Retry-After", "retry-after-ms", "x"]),
                       st.text(max_size=40)))  # fmt: skip
def test_retry_after_reads_any_headers(headers: dict[str, str]) -> None:
    wait = retry_after(headers)
    assert wait is None or wait >= 0.0


@FUZZ
@given(st.dictionaries(keys, values, max_size=6), st.lists(values, max_size=3))
def test_chat_chunks_read_anything(chunk: dict[str, Any], choices: list[Any]) -> None:
    chunk = {**chunk, "choices": choices} if choices else chunk
    list(_events(construct_type(type_=ChatCompletionChunk, value=chunk)))


@pytest.mark.parametrize("depth", [10_000])
def test_deeply_nested_json_is_skipped(depth: int) -> None:
    deep = "[" * depth + "]" * depth
    assert parse_json("Fuzz", deep) is None
    for wire in stt_wires():
        wire.receive(deep, 0.0)
