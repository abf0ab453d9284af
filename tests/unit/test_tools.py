"""The tools themselves: calculator, units, yes/no understanding, the router's schema and
decisions, alarms and notes on disk, the confirmation policy, and history compatibility."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from assistant.engines.base import ChatRequest, Message, TextDelta, ToolCall, ToolSpec, Usage
from assistant.history import HistoryStore, ToolRecord, TurnRecord
from assistant.prompt import system_prompt, with_section
from assistant.tools import ConfirmPolicy, Safety, ToolRegistry, calculate, default_tools
from assistant.tools.alarms import AlarmBook, parse_time_of_day, spoken_duration
from assistant.tools.confirm import Verdict, classify
from assistant.tools.notes import NoteBook
from assistant.tools.phrases import phrases
from assistant.tools.router import (
    DECISION_OPENING,
    decision_schema,
    parse_route,
    route,
    tools_block,
    with_tools_block,
)
from assistant.tools.units import convert_units, spoken_unit


@pytest.mark.parametrize(
    ("expression", "value"),
    [("17 * 23", "391"), ("17 × 23", "391"), ("2^10", "1024"), ("sqrt(144)", "12"),
     ("1,000 * 3", "3000"), ("round(2/3, 2)", "0.67"), ("15/100*80", "12")],
)  # fmt: skip
def test_calculator(expression: str, value: str) -> None:
    assert calculate(expression) == value


@pytest.mark.parametrize("expression", ["__import__('os')", "open('x')", "9**9999", "a+1"])
def test_calculator_refuses_anything_but_arithmetic(expression: str) -> None:
    with pytest.raises(ValueError):
        calculate(expression)


@pytest.mark.parametrize(
    ("args", "expected"),
    [((70, "degrees Fahrenheit", "Celsius"), "21.11"), ((5, "miles", "kilometers"), "8.047"),
     ((60, "miles per hour", "km/h"), "96.56"), ((2, "cups", "fluid ounces"), "16"),
     ((1, "acre", "square meters"), "4,047"), ((3, "feet", "meters"), "0.9144")],
)  # fmt: skip
def test_unit_conversion_from_spoken_units(args: tuple, expected: str) -> None:
    assert convert_units(*args) == f"{args[0]:g} {args[1]} = {expected} {args[2]}"


def test_unit_errors_are_readable() -> None:
    assert spoken_unit("square feet") == "feet ** 2"
    with pytest.raises(ValueError, match="cannot convert"):
        convert_units(1, "kilogram", "meter")
    with pytest.raises(ValueError, match="unknown unit"):
        convert_units(1, "florps", "meter")


@pytest.mark.parametrize(
    ("text", "language", "verdict"),
    [("Yes please.", "en", Verdict.YES), ("Yeah, go ahead.", "en", Verdict.YES),
     ("Uh, okay.", "en", Verdict.YES), ("No, thank you.", "en", Verdict.NO),
     ("Don't do it.", "en", Verdict.NO), ("No wait, make it ten minutes.", "en", Verdict.UNCLEAR),
     ("What time is it?", "en", Verdict.UNCLEAR), ("Ja, bitte.", "de", Verdict.YES),
     ("Nein danke.", "de", Verdict.NO), ("Lieber nicht.", "de", Verdict.NO),
     ("Oui, vas-y !", "fr", Verdict.YES), ("Non merci.", "fr", Verdict.NO),
     ("Sí, claro.", "es", Verdict.YES), ("No, mejor no.", "es", Verdict.NO),
     ("Sì, va bene.", "it", Verdict.YES), ("No, grazie.", "it", Verdict.NO),
     ("okay", "de", Verdict.YES), ("", "en", Verdict.UNCLEAR)],
)  # fmt: skip
def test_yes_and_no_in_every_language(text: str, language: str, verdict: Verdict) -> None:
    assert classify(text, language) is verdict


def test_every_language_has_its_lines() -> None:
    for code in ("en", "de", "fr", "es", "it"):
        lines = phrases(code)
        assert "{action}" in lines.confirm and lines.filler and lines.declined
        assert classify(lines.yes, code) is Verdict.YES
        assert classify(lines.no, code) is Verdict.NO
    assert phrases("de-AT") is phrases("de") and phrases("ja") is phrases("en")


# ------------------------------------------------------------------------------------ router


def test_router_schema_has_one_alternative_per_tool_and_none() -> None:
    specs = default_tools().specs
    schema = decision_schema(specs)
    tools = [o["properties"]["tool"]["const"] for o in schema["anyOf"]]
    assert tools == ["none", "get_time", "calculate", "convert_units"]
    calc = schema["anyOf"][2]["properties"]["arguments"]
    assert calc["required"] == ["expression"] and calc["additionalProperties"] is False
    # A schema feature a grammar cannot express is left out, not sent.
    odd = ToolSpec("odd", "x", {"type": "object", "properties": {"u": {"$ref": "#/x"}}})
    assert decision_schema([odd])["anyOf"][1]["properties"]["arguments"]["properties"] == {"u": {}}


def test_tools_block_shows_examples_only_for_registered_tools() -> None:
    block = tools_block(default_tools().specs)
    assert "calculate(expression)" in block and '"12*7"' in block
    assert "set_timer" not in block  # not registered here
    assert '"tool": "none"' in block
    messages = with_tools_block([Message("system", "Be brief."), Message("user", "hi")], [])
    assert messages[0].content == "Be brief."


def test_the_tools_block_comes_before_the_language_instruction() -> None:
    """What changes with the language is last: a change of language keeps the rest cached."""
    specs = default_tools().specs
    english, german = (
        with_tools_block([Message("system", system_prompt("Be brief.", lang))], specs)[0].content
        for lang in ("en", "de")
    )
    assert english.startswith("Be brief.\n\nYou can use these tools:")
    assert english.endswith("Always answer in English, even when earlier messages of the "
                            "conversation are in another language.")  # fmt: skip
    before = english.rpartition("Always answer in ")[0]
    assert german.startswith(before) and tools_block(specs).strip() in before
    # A prompt without the instruction (a typed system message) gets the block at its end.
    assert with_section("Be brief.", "Tools.") == "Be brief.\n\nTools."
    assert with_section(system_prompt("", "en"), "Tools.").startswith("Tools.\n\nAlways answer")


@pytest.mark.parametrize(
    ("text", "tool"),
    [('{"tool": "calculate", "arguments": {"expression": "1+1"}}', "calculate"),
     ('{"tool": "none"}', None), ('{"tool": "rm_rf"}', None), ("not json", None), ("[]", None)],
)  # fmt: skip
def test_router_decisions_are_parsed_defensively(text: str, tool: str | None) -> None:
    assert parse_route(text, default_tools().specs).tool == tool


# ------------------------------------------------------------------------------ registry


async def test_registry_policy_and_sources() -> None:
    registry = ToolRegistry()
    registry.register("look", "x", {}, lambda: "ok")
    registry.register("add", "x", {}, lambda: "ok", safety=Safety.ADDITIVE, source="srv")
    registry.register("wipe", "x", {}, lambda: "ok", safety=Safety.DESTRUCTIVE, source="srv")
    ask = [n for n in ("look", "add", "wipe") if registry.needs_confirmation(ToolCall("", n, ""))]
    assert ask == ["add", "wipe"]
    registry.policy = ConfirmPolicy.DESTRUCTIVE
    assert registry.needs_confirmation(ToolCall("", "wipe", "{}")) == "use wipe"
    assert registry.needs_confirmation(ToolCall("", "add", "{}")) is None
    registry.policy = ConfirmPolicy.NEVER
    assert registry.needs_confirmation(ToolCall("", "wipe", "{}")) is None
    changes: list[int] = []
    registry.on_change.append(lambda: changes.append(len(registry)))
    assert registry.remove_source("srv") == ["add", "wipe"]
    assert changes == [1] and "add" not in registry
    assert "invalid arguments" in await registry.run(ToolCall("", "look", '{"x": 1}'))


# -------------------------------------------------------------------------------- alarms


def test_time_of_day_reads_spoken_forms() -> None:
    now = dt.datetime(2026, 3, 1, 14, 0, tzinfo=dt.UTC)
    assert parse_time_of_day("18:30", now) == now.replace(hour=18, minute=30)
    assert parse_time_of_day("6:30 pm", now) == now.replace(hour=18, minute=30)
    assert parse_time_of_day("6 PM", now) == now.replace(hour=18)
    assert parse_time_of_day("9 a.m.", now) == now.replace(hour=9) + dt.timedelta(days=1)
    assert parse_time_of_day("12 am", now) == now.replace(hour=0) + dt.timedelta(days=1)
    with pytest.raises(ValueError, match="cannot read"):
        parse_time_of_day("teatime", now)
    assert spoken_duration(5400) == "1 hour 30 minutes"
    assert spoken_duration(61) == "1 minute 1 second"


async def test_alarm_book_keeps_what_is_pending_on_disk(tmp_path) -> None:
    wall = [1000.0]
    book = AlarmBook(tmp_path / "timers.json", wall=lambda: wall[0])
    tea = book.add("timer", 1300.0, "tea", seconds=300.0)
    book.add("reminder", 2000.0, "call Anna")
    again = AlarmBook(tmp_path / "timers.json", wall=lambda: wall[0])
    assert [(a.kind, a.label, a.due) for a in again.pending()] == [
        ("timer", "tea", 1300.0),
        ("reminder", "call Anna", 2000.0),
    ]
    assert [a.id for a in again.cancel("TEA")] == [tea.id]
    assert [a.label for a in AlarmBook(tmp_path / "timers.json").pending()] == ["call Anna"]


def test_a_damaged_alarm_file_is_kept_aside(tmp_path) -> None:
    path = tmp_path / "timers.json"
    path.write_text("{broken")
    book = AlarmBook(path)
    assert book.pending() == [] and book.notice is not None and "damaged" in book.notice
    assert list(tmp_path.glob("timers.json.damaged-*"))


# --------------------------------------------------------------------------------- notes


def test_notes_are_appended_and_found_by_their_words(tmp_path) -> None:
    book = NoteBook(tmp_path / "notes.jsonl", wall=iter(range(100, 200)).__next__)
    book.add("the spare key is under the mat")
    book.add("buy milk and eggs")
    book.add("milk the goat")
    with open(book.path, "a") as f:
        f.write("{damaged\n")
    assert [n.text for n in book.find("where is the key")] == ["the spare key is under the mat"]
    assert [n.text for n in book.find("milk")] == ["milk the goat", "buy milk and eggs"]
    assert len(book.find("")) == 3
    with pytest.raises(ValueError):
        book.add("   ")


# ------------------------------------------------------------------------------- history


def test_history_without_the_new_fields_still_loads(tmp_path) -> None:
    old = {
        "type": "turn",
        "turn_id": 1,
        "user_text": "what is 2+2",
        "assistant_text": "4",
        "tool_calls": [{"id": "c1", "name": "calculate", "arguments": "{}", "result": "4"}],
    }
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps({"type": "conversation", "id": "old"}) + "\n" + json.dumps(old))
    conversation, report = HistoryStore(tmp_path).load(path)
    (turn,) = conversation.turns
    assert report.notice is None
    assert turn.tool_calls == [ToolRecord("c1", "calculate", "{}", "4", None)]
    assert turn.structured is None and turn.structured_error is None
    new = TurnRecord(2, "hi", "hello", tool_calls=[ToolRecord("c2", "get_time", "{}", "noon", 3.5)])
    new.structured = {"intent": "greet"}
    conversation.append(new)
    again, _ = HistoryStore(tmp_path).load(path)
    assert again.turns[1].tool_calls[0].ms == 3.5
    assert again.turns[1].structured == {"intent": "greet"}


async def test_an_alarm_that_fell_due_while_closed_fires_at_once_marked_late(tmp_path) -> None:
    from assistant.clock import ManualClock

    clock = ManualClock(0.0)
    wall = [1000.0]
    AlarmBook(tmp_path / "t.json", wall=lambda: wall[0]).add("reminder", 1100.0, "water plants")
    wall[0] = 5000.0  # the app was closed for over an hour
    fired = []
    book = AlarmBook(tmp_path / "t.json", clock=clock, wall=lambda: wall[0], on_fire=fired.append)
    book.start()
    await clock.advance(0.0)
    (alarm,) = fired
    assert alarm.late and alarm.label == "water plants" and book.pending() == []


class _Continuing:
    """A scripted model that continues a trailing assistant message with ``word`` (as
    llama-server does, sending the message whole) and answers the grammar with ``decision``."""

    name = "continuing-fake"
    needs_tool_router = True
    continues_reply = True

    def __init__(self, word: str, decision: dict) -> None:
        self.word = word
        self.decision = decision
        self.requests: list[ChatRequest] = []

    async def stream(self, request: ChatRequest):  # type: ignore[no-untyped-def]
        self.requests.append(request)
        if request.messages[-1].role == "assistant":
            yield TextDelta(request.messages[-1].content + self.word)
        else:
            yield TextDelta(json.dumps(self.decision))
        yield Usage(prompt_tokens=100 + len(self.requests), cached_tokens=90)

    async def warm_up(self) -> None:
        return None


async def test_a_model_that_continues_replies_decides_none_with_one_token() -> None:
    specs = default_tools().specs
    messages = with_tools_block([Message("system", "Be brief."), Message("user", "hi")], specs)
    llm = _Continuing("none", {"tool": "calculate", "arguments": {"expression": "1"}})
    usage: list[Usage] = []
    assert (await route(llm, messages, specs, on_usage=usage.append)).tool is None
    (probe,) = llm.requests
    assert probe.max_tokens == 1 and probe.response_format is None and probe.temperature == 0
    assert probe.messages[-1] == Message("assistant", DECISION_OPENING)
    assert list(probe.messages[:-1]) == messages  # the routing prompt, as cached
    assert [u.prompt_tokens for u in usage] == [101]


async def test_any_other_first_word_is_decided_under_the_grammar() -> None:
    specs = default_tools().specs
    messages = with_tools_block([Message("system", "Be brief."), Message("user", "1?")], specs)
    llm = _Continuing("calc", {"tool": "calculate", "arguments": {"expression": "1"}})
    choice = await route(llm, messages, specs)
    assert choice.tool == "calculate" and dict(choice.arguments) == {"expression": "1"}
    _probe, decision = llm.requests
    assert decision.response_format is not None and list(decision.messages) == messages
