"""Structured output beside the spoken reply: validated with a real JSON Schema validator,
retried once, stored with the turn, and never on the reply's path (virtual time)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.engines.base import ChatRequest
from assistant.engines.fake import FakeLLM, default_reply
from assistant.events import StructuredExtracted
from assistant.history import HistoryStore
from assistant.tools.structured import (
    DEFAULT_SCHEMA,
    SchemaError,
    StructuredExtractor,
    check_schema,
    load_schema,
)
from tests.scenario import Key, Stage

GOOD = {
    "intent": "order status",
    "urgency": "high",
    "escalate": False,
    "summary": "The user asks where order A7 is.",
}


def scripted(*answers: str):
    """Replies: the JSON answers in order for extraction requests, the usual text otherwise."""
    queue = list(answers)

    def reply(request: ChatRequest) -> str:
        if request.response_format is not None:
            return queue.pop(0)
        return default_reply(request)

    return reply


async def run_turn(tmp_path: Path, llm: FakeLLM, *, structured: bool = True) -> Stage:
    stage = Stage(tmp_path, llm=llm, script=[Key(0, 0.6)])
    if structured:
        stage.session.structured = StructuredExtractor(stage.session.llm)
    async with stage:
        await stage.run_until(lambda: bool(stage.finished()))
    return stage


async def test_the_object_is_extracted_beside_the_reply_and_stored(tmp_path) -> None:
    llm = FakeLLM(reply=scripted(json.dumps(GOOD)), ttft=0.05, tokens_per_second=200)
    stage = await run_turn(tmp_path / "on", llm)
    (turn,) = stage.finished()
    assert turn.structured == GOOD and turn.structured_error is None
    (event,) = stage.events(StructuredExtracted)
    assert event.data == GOOD
    reloaded, _ = HistoryStore(tmp_path / "on" / "history").latest()
    assert reloaded.turns[0].structured == GOOD
    # The extraction asked after the answer was complete, with the answer's own prompt
    # (cache reuse) plus the answer and one instruction.
    answer, extraction = llm.requests
    assert extraction.messages[: len(answer.messages)] == list(answer.messages)
    assert extraction.messages[-2].content == turn.generated_text
    assert extraction.response_format["json_schema"]["schema"] == DEFAULT_SCHEMA  # type: ignore[index]
    # Never on the reply's path: requested after the last token and the first audio.
    marks = turn.timeline["marks_ms"]
    assert marks["structured_request"] > marks["playback_start"]
    assert marks["structured_done"] > marks["structured_request"]

    baseline = await run_turn(
        tmp_path / "off", FakeLLM(ttft=0.05, tokens_per_second=200), structured=False
    )
    (plain,) = baseline.finished()
    assert turn.timeline["voice_to_voice_ms"] == plain.timeline["voice_to_voice_ms"]
    assert plain.structured is None and "structured_request" not in plain.timeline["marks_ms"]


async def test_invalid_json_is_retried_once(tmp_path) -> None:
    wrong = dict(GOOD, urgency="extreme")
    llm = FakeLLM(reply=scripted(json.dumps(wrong), json.dumps(GOOD)), ttft=0.05)
    stage = await run_turn(tmp_path, llm)
    (turn,) = stage.finished()
    assert turn.structured == GOOD
    retry = llm.requests[-1].messages[-1].content
    assert "urgency" in retry and "'extreme' is not one of" in retry


async def test_twice_invalid_is_recorded_as_an_error_and_the_turn_stands(tmp_path) -> None:
    llm = FakeLLM(reply=scripted("{not json", '{"intent": "x"}'), ttft=0.05)
    stage = await run_turn(tmp_path, llm)
    (turn,) = stage.finished()
    assert turn.structured is None
    assert turn.structured_error is not None and "twice" in turn.structured_error
    assert "'urgency' is a required property" in turn.structured_error
    assert turn.assistant_text.startswith("You asked")


def test_schemas_are_checked_with_a_real_validator(tmp_path) -> None:
    assert check_schema(DEFAULT_SCHEMA) is DEFAULT_SCHEMA
    with pytest.raises(SchemaError, match="invalid"):
        check_schema({"type": "object", "properties": {"a": {"type": "nonsense"}}})
    with pytest.raises(SchemaError, match="object"):
        check_schema({"type": "array"})
    bad = tmp_path / "schema.json"
    bad.write_text("{oops")
    with pytest.raises(SchemaError, match="not valid JSON"):
        load_schema(bad)
    with pytest.raises(SchemaError, match="cannot read"):
        load_schema(tmp_path / "missing.json")
    extractor = StructuredExtractor(FakeLLM())
    assert extractor.validate(json.dumps(GOOD)) == (GOOD, None)
    data, error = extractor.validate(json.dumps(dict(GOOD, escalate="yes")))
    assert data is None and error == "escalate: 'yes' is not of type 'boolean'"
