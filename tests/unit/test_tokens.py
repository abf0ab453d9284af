"""Token estimates per script, and shortening a request that overflows the model's context."""

from __future__ import annotations

import pytest

from assistant.engines.base import EngineError, Message, ToolCall
from assistant.engines.local.llm import context_overflow
from assistant.engines.net.errors import ContextTooLong, Service, http_error
from assistant.history import (
    HistoryStore,
    TurnRecord,
    drop_oldest_turns,
    estimate_tokens,
    message_tokens,
)


def test_cjk_counts_at_least_a_token_a_character() -> None:
    for text in ("你好世界今天天气很好" * 30, "こんにちは" * 60, "안녕하세요" * 60):
        assert estimate_tokens(text) >= len(text)
    assert estimate_tokens("The weather is nice today. " * 10) < 100  # English stays cheap
    assert estimate_tokens("1234567890") >= 10  # every digit is a token


def test_a_cjk_conversation_context_fits_the_budget(tmp_path) -> None:
    conv, _ = HistoryStore(tmp_path).latest()
    for i in range(1, 80):
        conv.append(TurnRecord(i, "请详细介绍一下中国的四大发明。" * 4, "造纸术和印刷术。" * 4))
    messages = conv.context("系统", token_budget=3000, pending_user="好的")
    characters = sum(len(m.content) for m in messages)
    assert characters <= 3000  # at a token a character, the context holds at most the budget
    assert len(messages) > 10


def _m(role: str, text: str) -> Message:
    return Message(role, text)  # type: ignore[arg-type]


def test_drop_oldest_turns_keeps_system_and_the_current_turn() -> None:
    turn = lambda i: [_m("user", f"question {i} " * 20), _m("assistant", f"answer {i} " * 20)]  # noqa: E731
    current = [
        _m("user", "now?"),
        Message("assistant", "", tool_calls=[ToolCall("c1", "clock", "{}")]),
        Message("tool", "12:00", tool_call_id="c1"),
    ]
    messages = [_m("system", "be brief"), *turn(1), *turn(2), *turn(3), *current]
    fixed = sum(message_tokens(m) for m in [messages[0], *current])
    room_for_one = fixed + sum(message_tokens(m) for m in turn(3)) + 1
    shorter = drop_oldest_turns(messages, token_budget=room_for_one)
    assert shorter is not None
    assert shorter[0] == messages[0] and shorter[-3:] == current
    assert shorter[1:-3] == turn(3)  # whole turns, oldest first
    # At least one turn goes even when the estimate says it fits (the server said it does not).
    assert drop_oldest_turns(messages, token_budget=10_000) == [
        messages[0],
        *turn(2),
        *turn(3),
        *current,
    ]
    assert drop_oldest_turns([messages[0], *current], token_budget=10) is None


def _bad_request(body: object) -> EngineError:
    """What the shared error table makes of llama-server's 400 with ``body``."""
    return http_error(Service.of("local"), 400, body=body, url="http://127.0.0.1:1/v1")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {
                "code": 400,
                "message": "request (5000 tokens) exceeds the available context size (4096 "
                "tokens), try increasing it",
                "type": "exceed_context_size_error",
                "n_prompt_tokens": 5000,
                "n_ctx": 4096,
            },
            (5000, 4096),
        ),
        (
            {"message": "request (4200 tokens) exceeds the available context size (4096 tokens)"},
            (4200, 4096),
        ),
        ({"type": "exceed_context_size_error"}, (None, None)),
        ({"message": "invalid model"}, None),
        ("not even a mapping", None),
    ],
)
def test_context_overflow_is_recognised(body: object, expected: object) -> None:
    error = _bad_request(body)
    assert context_overflow(error) == expected
    assert isinstance(error, ContextTooLong) == (expected is not None)
    assert context_overflow(EngineError("other")) is None
