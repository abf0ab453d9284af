"""The wire rules of Claude, the LLM Gateway and the speech-to-speech providers as tables:
messages in → events out, calls → messages out. No sockets, no clock: times are passed in."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from assistant.engines import s2s
from assistant.engines.assemblyai_agent import VoiceAgentWire
from assistant.engines.assemblyai_gateway import completion_events
from assistant.engines.base import (
    ChatRequest,
    EngineError,
    Finished,
    Message,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    Usage,
)
from assistant.engines.claude import ClaudeEvents, status_error, streamed_error, to_claude
from assistant.engines.net.agent_driver import AgentWire
from assistant.engines.net.errors import RateLimited, ServerFailed
from assistant.engines.net.messages import Outgoing
from assistant.engines.net.wire import Failed, Ready
from assistant.engines.openai.agent import RealtimeAgentWire

CALC = ToolSpec("calculate", "Arithmetic.", {"type": "object", "properties": {}})


# ---------------------------------------------------------------------------------- Claude


def test_claude_request_hoists_the_system_prompt_and_leads_with_tool_results() -> None:
    call = ToolCall("toolu_1", "calculate", '{"expression": "2+2"}')
    request = ChatRequest(
        [
            Message("system", "Be brief."),
            Message("user", "What is 2+2?"),
            Message("assistant", "Let me check.", tool_calls=[call]),
            Message("tool", "4", tool_call_id="toolu_1"),
            Message("assistant", "It is 4."),
            Message("user", ""),  # an empty turn (a greeting's): no empty text block
            Message("user", "Thanks"),
        ],
        tools=[CALC],
        temperature=1.7,
    )
    body = to_claude(request, "claude-haiku-4-5")
    assert body["system"] == "Be brief." and body["max_tokens"] == 1024
    assert body["temperature"] == 1.0  # clamped to the API's range
    assert body["tools"] == [
        {"name": "calculate", "description": "Arithmetic.", "input_schema": CALC.parameters}
    ]
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "calculate",
                    "input": {"expression": "2+2"},
                },
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "4"}],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "It is 4."}]},
        {"role": "user", "content": [{"type": "text", "text": "Thanks"}]},
    ]


def test_claude_request_broken_arguments_are_sent_back_as_an_empty_object() -> None:
    call = ToolCall("toolu_1", "get_time", "")
    body = to_claude(ChatRequest([Message("user", "hi"), Message("assistant", "", [call])]), "m")
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "toolu_1", "name": "get_time", "input": {}}
    ]


def test_claude_request_turns_a_response_format_into_an_instruction() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    body = to_claude(ChatRequest([Message("user", "hi")], response_format=fmt), "m")
    assert "JSON Schema" in body["system"] and '"city"' in body["system"]


def claude_stream(*events: dict[str, Any]) -> list[Any]:
    reader = ClaudeEvents()
    return [out for event in events for out in reader.read(event)]


def test_claude_events_assemble_text_tools_and_cumulative_usage() -> None:
    events = claude_stream(
        {"type": "message_start", "message": {"usage": {"input_tokens": 25, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "calculate",
                "input": {},
            },
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": ""},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"expres'},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": 'sion": "1"}'},
        },
        {"type": "content_block_stop", "index": 1},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 5},
        },
        {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 12}},
        {"type": "unknown_future_event", "index": 3},
        {"type": "message_stop"},
    )
    assert events == [
        TextDelta("Hi"),
        ToolCallDelta(1, id="toolu_1", name="calculate"),
        ToolCallDelta(1, arguments='{"expres'),
        ToolCallDelta(1, arguments='sion": "1"}'),
        Finished("tool_calls"),
        Usage(25, 12, 0),  # replaced, not added up
    ]


def test_claude_events_give_a_call_without_arguments_an_empty_object() -> None:
    events = claude_stream(
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "t", "name": "get_time", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": ""},
        },
        {"type": "content_block_stop", "index": 0},
    )
    assert events == [ToolCallDelta(0, id="t", name="get_time"), ToolCallDelta(0, arguments="{}")]


@pytest.mark.parametrize(
    ("reason", "finished"),
    [
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("something_new", "something_new"),
    ],
)
def test_claude_stop_reasons(reason: str, finished: str) -> None:
    delta = {"type": "message_delta", "delta": {"stop_reason": reason}, "usage": {}}
    assert claude_stream(delta) == [Finished(finished)]


def test_claude_errors_after_the_answer_started_name_their_kind() -> None:
    def error(kind: str) -> dict[str, Any]:
        return {"type": "error", "error": {"type": kind, "message": "Overloaded"}}

    assert isinstance(streamed_error(error("overloaded_error")), ServerFailed)
    assert isinstance(streamed_error(error("rate_limit_error")), RateLimited)
    refused = streamed_error(error("invalid_request_error"))
    assert not refused.retryable and "invalid_request_error" in str(refused)


def test_claude_overload_and_spending_limit() -> None:
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    overloaded = status_error(529, {}, body, "http://x", "m")
    assert isinstance(overloaded, ServerFailed) and "overloaded (HTTP 529)" in str(overloaded)
    limit = {
        "type": "error",
        "error": {
            "type": "rate_limit_error",
            "message": "Spend limit",
            "details": {"error_code": "enforced_spend_limit_reached"},
        },
    }
    refused = status_error(429, {"retry-after": "1"}, limit, "http://x", "m")
    assert not refused.retryable and "spending limit" in str(refused)


# --------------------------------------------------------------------------------- Gateway


def test_a_whole_gateway_answer_reads_every_choice() -> None:
    data = {
        "request_id": "r",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Let me check."},
                "finish_reason": "tool_use",
            },
            {
                "index": 1,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "calculate", "arguments": {"expression": "2"}},
                        }
                    ],
                },
                "finish_reason": "tool_use",
            },
        ],
        "usage": {"input_tokens": 10, "output_tokens": 4, "total_tokens": 14},
    }
    assert list(completion_events(data)) == [
        TextDelta("Let me check."),
        ToolCallDelta(0, id="c1", name="calculate", arguments='{"expression": "2"}'),
        Finished("tool_calls"),
        Usage(10, 4),
    ]


def test_a_whole_gateway_answer_with_the_models_own_finish_reason() -> None:
    data = {"choices": [{"message": {"content": "Hi."}, "finish_reason": "end_turn"}]}
    assert list(completion_events(data)) == [TextDelta("Hi."), Finished("stop")]


# ----------------------------------------------------------------------- speech to speech


def drain(wire: AgentWire, now: float = 0.0) -> list[dict[str, Any]]:
    """What the wire wants sent (as JSON), told it all left at ``now``."""
    out = wire.data_to_send()
    for item in out:
        wire.sent(item, now)
    return [json.loads(item.data) for item in out]


def feed(wire: AgentWire, *messages: dict[str, Any], now: float = 0.0) -> list[Any]:
    for message in messages:
        wire.receive(json.dumps(message), now)
    return wire.events_received()


def speech(seconds: float) -> np.ndarray:
    return np.full(int(seconds * 16_000), 2000, dtype=np.int16)


HISTORY = (Message("user", "Hi"), Message("assistant", "Hello there."))


def test_realtime_session_update_is_ga_shaped_and_seeds_the_history() -> None:
    setup = s2s.AgentSetup("Be brief.", voice="cedar", tools=[CALC], history=HISTORY)
    wire = RealtimeAgentWire("ws://x/v1/realtime", setup)
    assert wire.url() == "ws://x/v1/realtime?model=gpt-realtime"
    update, user, assistant = [json.loads(m.data) for m in wire.start()]
    session = update["session"]
    assert session["type"] == "realtime" and session["instructions"] == "Be brief."
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24_000}
    assert session["audio"]["input"]["turn_detection"] is None  # Parley ends the turns
    assert session["audio"]["output"]["voice"] == "cedar"
    assert session["tools"][0] == {
        "type": "function",
        "name": "calculate",
        "description": "Arithmetic.",
        "parameters": CALC.parameters,
    }
    assert user["item"]["content"] == [{"type": "input_text", "text": "Hi"}]
    assert assistant["item"]["content"] == [{"type": "output_text", "text": "Hello there."}]


def test_realtime_server_turns_ask_for_server_vad() -> None:
    setup = s2s.AgentSetup("x", server_turns=True, end_silence_ms=450)
    session = json.loads(RealtimeAgentWire("ws://x", setup).start()[0].data)["session"]
    detection = session["audio"]["input"]["turn_detection"]
    assert detection["type"] == "server_vad" and detection["silence_duration_ms"] == 450
    assert detection["create_response"] and detection["interrupt_response"]


def test_realtime_speaks_beta_when_the_server_refuses_the_ga_update() -> None:
    wire = RealtimeAgentWire("ws://x", s2s.AgentSetup("x"))
    wire.start()
    refusal = {
        "type": "error",
        "error": {
            "code": "unknown_parameter",
            "param": "session.type",
            "message": "Unknown parameter: 'session.type'.",
        },
    }
    assert feed(wire, refusal) == []
    (update,) = drain(wire)
    assert "type" not in update["session"] and update["session"]["input_audio_format"] == "pcm16"


def test_realtime_commit_asks_for_the_answer_and_refuses_a_click() -> None:
    wire = RealtimeAgentWire("ws://x", s2s.AgentSetup("x"))
    wire.audio(speech(0.05), 0.0)
    assert wire.commit(0.0) is False  # under 100 ms: the service would refuse it
    assert drain(wire)[-1] == {"type": "input_audio_buffer.clear"}
    wire.audio(speech(0.3), 1.0)
    assert wire.commit(1.0) is True
    kinds = [m["type"] for m in drain(wire)]
    assert kinds[-2:] == ["input_audio_buffer.commit", "response.create"]
    assert set(kinds[:-2]) == {"input_audio_buffer.append"}


@pytest.mark.parametrize("dialect", ["ga", "beta"])
def test_realtime_reply_events_in_either_dialect(dialect: str) -> None:
    wire = RealtimeAgentWire("ws://x", s2s.AgentSetup("x"))
    prefix = "response.output_" if dialect == "ga" else "response."
    audio = np.full(240, 100, dtype="<i2").tobytes()
    import base64

    ids = {"response_id": "r1", "item_id": "i1"}
    events = feed(
        wire,
        {"type": "response.created", "response": {"id": "r1"}},
        {"type": f"{prefix}audio_transcript.delta", **ids, "delta": "Hi"},
        {"type": f"{prefix}audio.delta", **ids, "delta": base64.b64encode(audio[:241]).decode()},
        {"type": f"{prefix}audio.delta", **ids, "delta": base64.b64encode(audio[241:]).decode()},
        {"type": f"{prefix}audio_transcript.done", **ids, "transcript": "Hi."},
        {"type": "response.done", "response": {"id": "r1", "status": "completed"}},
    )
    kinds = [type(e) for e in events]
    assert kinds == [
        s2s.ReplyStarted,
        s2s.ReplyText,
        s2s.ReplyAudio,
        s2s.ReplyAudio,
        s2s.ReplyTextDone,
        s2s.ReplyDone,
    ]
    assert sum(len(e.pcm) for e in events if isinstance(e, s2s.ReplyAudio)) == 240
    assert events[-1] == s2s.ReplyDone("r1", "completed")


def test_realtime_function_call_name_from_the_added_item_in_beta() -> None:
    wire = RealtimeAgentWire("ws://x", s2s.AgentSetup("x"))
    item = {"type": "function_call", "call_id": "c1", "name": "calculate", "id": "i1"}
    events = feed(
        wire,
        {"type": "response.created", "response": {"id": "r1"}},
        {"type": "response.output_item.added", "response_id": "r1", "item": item},
        {
            "type": "response.function_call_arguments.done",
            "response_id": "r1",
            "call_id": "c1",
            "arguments": '{"expression": "2"}',
        },
    )
    assert events[-1] == s2s.ToolRequest("r1", ToolCall("c1", "calculate", '{"expression": "2"}'))


def test_realtime_barge_in_cancels_truncates_to_what_was_heard_and_deletes_the_unheard() -> None:
    wire = RealtimeAgentWire("ws://x", s2s.AgentSetup("x"))
    feed(wire, {"type": "response.created", "response": {"id": "r1"}})
    heard = [s2s.Heard("i1", 0.8123, 1.5), s2s.Heard("i2", 0.0, 0.4)]
    wire.interrupt("r1", heard, "Sure, the", 1.0)
    assert drain(wire) == [
        {"type": "response.cancel"},
        {
            "type": "conversation.item.truncate",
            "item_id": "i1",
            "content_index": 0,
            "audio_end_ms": 812,
        },
        {"type": "conversation.item.delete", "item_id": "i2"},
    ]


def test_realtime_a_rejected_key_ends_the_session_and_speech_stopped_reports_its_lag() -> None:
    wire = RealtimeAgentWire("ws://x", s2s.AgentSetup("x", server_turns=True))
    wire.audio(speech(1.0), 0.0)
    drain(wire)
    (stopped,) = feed(wire, {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 700})
    assert wire.sent_seconds > 0.7
    assert stopped == s2s.SpeechStopped(pytest.approx(wire.sent_seconds - 0.7))
    (failed,) = feed(wire, {"type": "error", "error": {"code": "invalid_api_key", "message": "x"}})
    assert isinstance(failed, Failed) and "rejected the API key" in str(failed.error)


def test_an_unanswered_turn_goes_out_again_after_a_drop_but_not_once_heard() -> None:
    wire = RealtimeAgentWire("ws://x", s2s.AgentSetup("x"), reply_timeout=5.0)
    wire.audio(speech(0.5), 0.0)
    wire.commit(0.0)
    asked = drain(wire)
    error = EngineError("dropped")
    assert wire.dropped(error, 1.0) is False
    again = [json.loads(m.data) for m in wire.reconnected(1.5)]
    assert again == asked  # the audio, the commit, the answer request
    feed(
        wire,
        {"type": "response.created", "response": {"id": "r1"}},
        {
            "type": "response.output_audio_transcript.delta",
            "response_id": "r1",
            "item_id": "i",
            "delta": "Hi",
        },
    )
    wire.dropped(error, 2.0)
    (done,) = wire.events_received()
    assert done.status == "failed" and "cut short" in str(done.error)
    assert wire.reconnected(2.5) == []


def test_a_reply_that_never_comes_fails_at_its_deadline() -> None:
    wire = RealtimeAgentWire("ws://x", s2s.AgentSetup("x"), reply_timeout=2.0)
    wire.audio(speech(0.5), 0.0)
    wire.commit(0.0)
    drain(wire, now=1.0)
    assert wire.deadline() == 3.0
    wire.expire(3.0)
    (done,) = wire.events_received()
    assert done.status == "failed" and "no reply within 2 s" in str(done.error)


# ---------------------------------------------------------------------------- Voice Agent


def test_voice_agent_session_update_and_audio_messages() -> None:
    setup = s2s.AgentSetup("Be brief.", tools=[CALC], history=HISTORY, end_silence_ms=500)
    wire = VoiceAgentWire("ws://x/v1/ws", setup)
    (update,) = [json.loads(m.data) for m in wire.start()]
    session = update["session"]
    assert session["system_prompt"].startswith("Be brief.")
    assert "User: Hi\nYou: Hello there." in session["system_prompt"]  # the earlier turns
    assert session["input"]["format"] == {"encoding": "audio/pcm", "sample_rate": 24_000}
    assert session["input"]["turn_detection"]["min_silence"] == 500
    assert session["tools"][0]["name"] == "calculate" and "greeting" not in session
    assert feed(wire, {"type": "session.ready", "session_id": "sess_1"}) == [Ready()]
    wire.audio(speech(0.2), 0.0)
    first = drain(wire)[0]
    assert first["type"] == "input.audio" and len(first["audio"]) == 3200  # 50 ms at 24 kHz


def test_voice_agent_commit_sends_silence_past_min_silence() -> None:
    wire = VoiceAgentWire("ws://x", s2s.AgentSetup("x", end_silence_ms=600))
    wire.audio(speech(0.5), 0.0)
    drain(wire)
    assert wire.commit(0.0) is True
    tail = wire.data_to_send()
    assert sum(item.audio for item in tail) >= 0.75


def test_voice_agent_resumes_a_dropped_session_and_starts_anew_when_refused() -> None:
    wire = VoiceAgentWire("ws://x", s2s.AgentSetup("x"))
    wire.start()
    feed(wire, {"type": "session.ready", "session_id": "sess_9"})
    wire.dropped(EngineError("dropped"), 1.0)
    assert [json.loads(m.data) for m in wire.start()] == [
        {"type": "session.resume", "session_id": "sess_9"}
    ]
    (failed,) = feed(
        wire, {"type": "session.error", "code": "session_not_found", "message": "gone"}
    )
    assert isinstance(failed, Failed) and failed.error.retryable
    assert json.loads(wire.start()[0].data)["type"] == "session.update"


@pytest.mark.parametrize("code", ["UNAUTHORIZED", "unauthorized", "FORBIDDEN"])
def test_voice_agent_key_errors_in_either_case(code: str) -> None:
    wire = VoiceAgentWire("ws://x", s2s.AgentSetup("x"))
    (failed,) = feed(wire, {"type": "session.error", "code": code, "message": "no"})
    assert isinstance(failed, Failed) and not failed.error.retryable


def test_voice_agent_reply_tools_and_interruption() -> None:
    wire = VoiceAgentWire("ws://x", s2s.AgentSetup("Be brief."))
    audio = np.full(480, 100, dtype="<i2").tobytes()
    import base64

    events = feed(
        wire,
        {"type": "reply.started", "reply_id": "r1"},
        {"type": "transcript.agent.delta", "reply_id": "r1", "delta": "Sure", "start_ms": 0},
        {"type": "reply.audio", "reply_id": "r1", "data": base64.b64encode(audio).decode()},
        {
            "type": "tool.call",
            "call_id": "c1",
            "name": "calculate",
            "arguments": {"expression": "2"},
        },
        {"type": "reply.done", "reply_id": "r1", "status": "completed"},
    )
    assert events[1] == s2s.ReplyText("r1", "r1", "Sure", 0.0)
    assert len(events[2].pcm) == 480
    assert events[3] == s2s.ToolRequest("r1", ToolCall("c1", "calculate", '{"expression": "2"}'))
    wire.tool_results("r1", [("c1", "4"), ("c2", "plain text")], 0.0)
    assert drain(wire) == [
        {"type": "tool.result", "call_id": "c1", "result": "4"},
        {"type": "tool.result", "call_id": "c2", "result": '"plain text"'},
    ]
    feed(wire, {"type": "reply.started", "reply_id": "r2"})
    wire.interrupt("r2", [s2s.Heard("r2", 0.4, 1.0)], "The answer", 0.0)
    (update,) = drain(wire)
    assert "the user heard only: «The answer»" in update["session"]["system_prompt"]
    cut = feed(
        wire,
        {
            "type": "transcript.agent",
            "reply_id": "r2",
            "text": "The answer is",
            "interrupted": True,
        },
        {"type": "reply.done", "status": "interrupted"},
    )
    assert cut[-1] == s2s.ReplyDone("r2", "cancelled")
    wire.tool_results("r2", [("c3", "late")], 0.0)
    assert drain(wire) == []  # a result for an interrupted reply answers nothing


def test_outgoing_audio_is_marked_for_pacing() -> None:
    wire = VoiceAgentWire("ws://x", s2s.AgentSetup("x"))
    wire.audio(speech(0.2), 0.0)
    item = wire.data_to_send()[0]
    assert isinstance(item, Outgoing) and item.audio == pytest.approx(0.05)


def test_deadlines_of_different_kinds_due_together_all_expire() -> None:
    wire = VoiceAgentWire("ws://x", s2s.AgentSetup("x"))
    wire._deadlines.update({"reply": 1.0, ("final", 3): 1.0})
    fired: list[object] = []
    wire._on_deadline = lambda key, now: fired.append(key)  # type: ignore[method-assign]
    wire.expire(2.0)
    assert sorted(map(str, fired)) == ["('final', 3)", "reply"]
