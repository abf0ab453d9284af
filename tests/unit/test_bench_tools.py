"""`parley bench tools` scoring: what counts as the right tool and arguments."""

from __future__ import annotations

from assistant.bench.tools import QUICK, REQUESTS, Outcome, Request, converts, reminder, result_is
from assistant.history import ToolRecord, TurnRecord


def outcome(request: Request, *calls: tuple[str, str]) -> Outcome:
    tools = [ToolRecord(f"c{i}", n, a, "") for i, (n, a) in enumerate(calls)]
    return Outcome(request, TurnRecord(1, request.text, "ok", tool_calls=tools))


def test_the_set_is_large_and_mixed() -> None:
    assert len(REQUESTS) >= 40
    assert sum(1 for r in REQUESTS if not r.expected) >= 12
    assert sum(1 for r in REQUESTS if len(r.expected) == 2) >= 2
    assert sum(1 for r in REQUESTS if r.recording) >= 4
    assert all(0 <= i < len(REQUESTS) for i in QUICK)


def test_arguments_are_judged_by_what_they_do() -> None:
    calc = Request("x", (("calculate", result_is(391)),))
    assert outcome(calc, ("calculate", '{"expression": "17 * 23"}')).right
    assert outcome(calc, ("calculate", '{"expression": "23*17"}')).right
    assert not outcome(calc, ("calculate", '{"expression": "17+23"}')).right
    assert not outcome(calc, ("get_time", "{}")).right
    assert not outcome(calc).right
    miles = Request("x", (("convert_units", converts(10, 16.09)),))
    assert outcome(
        miles, ("convert_units", '{"value": 10, "from_unit": "mi", "to_unit": "km"}')
    ).right
    assert not outcome(
        miles, ("convert_units", '{"value": 10, "from_unit": "km", "to_unit": "mi"}')
    ).right
    remind = Request("x", (("set_reminder", reminder("mother", 18)),))
    assert outcome(remind, ("set_reminder", '{"text": "call my mother", "at": "6 pm"}')).right
    assert not outcome(remind, ("set_reminder", '{"text": "call my mother", "at": "6 am"}')).right


def test_two_steps_need_both_and_no_tool_needs_none() -> None:
    both = REQUESTS[28]
    assert len(both.expected) == 2
    assert outcome(both, ("get_time", "{}"), ("calculate", '{"expression": "12*12"}')).right
    assert not outcome(both, ("calculate", '{"expression": "12*12"}')).right
    chat = Request("Tell me a joke.")
    assert outcome(chat).right and not outcome(chat, ("get_time", "{}")).right


def test_a_conversation_decision_counts_only_if_the_reply_would_keep_it() -> None:
    from assistant.bench.tools import Routing

    calc = Request("What is 2 plus 2?", (("calculate", result_is(4)),))
    plain = Request("How many legs does a spider have?")
    routing = Routing([(calc, "calculate", True), (plain, "calculate", False), (plain, None, True)])
    assert routing.right(checked=False) == (2, 3)
    assert routing.right(checked=True) == (3, 3)


def test_the_report_counts_answers_asked_a_second_time() -> None:
    from assistant.bench.tools import Figures, report

    chat = Request("Tell me a joke.")
    turns = [TurnRecord(i, chat.text, "ok") for i in range(3)]
    turns[1].timeline = {"notes": {"answer_reasked": True}}
    figures = Figures([Outcome(chat, turn) for turn in turns])
    (line,) = [x for x in report(figures, None) if "asked a second time" in x]
    assert line.split()[-1] == "1/3"
