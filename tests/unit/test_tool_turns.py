"""Tool turns on virtual time: routing for the embedded models, the filler for slow tools,
confirmations by voice and by click, and alarms that ring and speak — a real session,
splitter, recorder and player, scripted engines, one manual clock."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import pytest

from assistant.engines.base import ChatRequest, Finished, LLMEvent, TextDelta, Usage
from assistant.engines.fake import FakeLLM, FakeSTT
from assistant.events import (
    Announcement,
    AssistantText,
    ConfirmationRequested,
    ConfirmationResolved,
    FillerSpoken,
    ToolCalled,
)
from assistant.history import TurnRecord
from assistant.session.generate import ANSWER_AFTER_TOOLS_TEMPERATURE
from assistant.tools import ToolRegistry, default_tools
from assistant.tools.alarms import AlarmBook, alarm_line, register_alarm_tools
from assistant.tools.notes import NoteBook, register_note_tools
from assistant.tools.router import DecisionEcho
from tests.scenario import T0, Do, Key, Stage

EPOCH = 1_760_000_000.0  # wall-clock seconds at virtual time 0


class RoutedLLM:
    """A scripted model that needs the router: each constrained request takes the next
    decision; plain requests are answered by a ``FakeLLM``."""

    needs_tool_router = True
    name = "routed-fake"

    def __init__(self, decisions: list[dict], answer: FakeLLM | None = None) -> None:
        self.decisions = list(decisions)
        self.answer = answer or FakeLLM(ttft=0.05, tokens_per_second=200)
        self.requests: list[ChatRequest] = []
        self.route_delay = 0.1

    @property
    def clock(self):
        return self.answer.clock

    @clock.setter
    def clock(self, clock) -> None:
        self.answer.clock = clock

    async def stream(self, request: ChatRequest) -> AsyncIterator[LLMEvent]:
        self.requests.append(request)
        if request.response_format is None:
            async for event in self.answer.stream(request):
                yield event
            return
        await self.answer.clock.sleep(self.route_delay)
        decision = self.decisions.pop(0) if self.decisions else {"tool": "none"}
        yield TextDelta(json.dumps(decision))
        yield Usage(prompt_tokens=prompt_size(request), completion_tokens=6)
        yield Finished("stop")

    async def warm_up(self) -> None:
        return None


def prompt_size(request: ChatRequest) -> int:
    """The scripted models' token count of a request's prompt."""
    return sum(len(m.content) // 4 for m in request.messages)


def slow_tools(stage_clock_seconds: float) -> tuple[ToolRegistry, list[str]]:
    """A registry with one lookup that takes ``stage_clock_seconds`` on the stage's clock."""
    calls: list[str] = []
    registry = ToolRegistry()
    holder: dict[str, Stage] = {}

    async def order_status(order_id: str) -> str:
        calls.append(order_id)
        await holder["stage"].clock.sleep(stage_clock_seconds)
        return f"order {order_id} ships tomorrow"

    registry.register(
        "get_order_status",
        "Look up an order's status.",
        {
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
        },
        order_status,
        title="order lookup",
    )
    registry.holder = holder  # type: ignore[attr-defined]
    return registry, calls


def _stage(tmp_path, *, tools: ToolRegistry, llm, stt: FakeSTT | None = None, script=()) -> Stage:
    stage = Stage(tmp_path, tools=tools, llm=llm, stt=stt, script=script)
    holder = getattr(tools, "holder", None)
    if holder is not None:
        holder["stage"] = stage
    return stage


# ------------------------------------------------------------------------------------ routing


async def _routed_turn(tmp_path, llm, said: str | None = None) -> tuple[Stage, TurnRecord]:
    """One talk-key turn with the default tools (the recognizer hearing ``said``, if given),
    run to its end."""
    stt = FakeSTT(script=(said,)) if said is not None else None
    stage = _stage(tmp_path, tools=default_tools(), llm=llm, stt=stt, script=[Key(0, 0.6)])
    async with stage:
        await stage.run_until(lambda: bool(stage.finished()))
    (turn,) = stage.finished()
    return stage, turn


def _asked_again_without_tools(llm: RoutedLLM) -> list[ChatRequest]:
    """The answer requests: the first, and one asked again without the tools block."""
    answers = [r for r in llm.requests if r.response_format is None]
    assert len(answers) == 2
    assert "You can use these tools" not in answers[1].messages[0].content
    return answers


def _reply(to_tools_prompt: str, otherwise: str) -> Callable[[ChatRequest], str]:
    """A model's reply: ``to_tools_prompt`` to a prompt with the tools block, else ``otherwise``."""

    def reply(request: ChatRequest) -> str:
        if "You can use these tools" in request.messages[0].content:
            return to_tools_prompt
        return otherwise

    return reply


async def test_router_picks_the_tool_and_the_answer_streams_without_tools(tmp_path) -> None:
    llm = RoutedLLM([{"tool": "calculate", "arguments": {"expression": "17*23"}}])
    _, turn = await _routed_turn(tmp_path, llm, "What is seventeen times twenty-three?")
    assert [(t.name, json.loads(t.arguments), t.result) for t in turn.tool_calls] == [
        ("calculate", {"expression": "17*23"}, "391")
    ]
    assert turn.assistant_text == "The answer is 391. Anything else?"
    routing = [r for r in llm.requests if r.response_format is not None]
    answers = [r for r in llm.requests if r.response_format is None]
    assert len(routing) == 2 and len(answers) == 1  # tool, then "none", then the answer
    schema = routing[0].response_format["json_schema"]["schema"]  # type: ignore[index]
    assert {o["properties"]["tool"]["const"] for o in schema["anyOf"]} == {
        "none", "calculate", "get_time", "convert_units"
    }  # fmt: skip
    # The answer is asked without tools, with the same prompt the router saw (cache reuse).
    assert not answers[0].tools
    system = answers[0].messages[0].content
    assert "calculate(expression)" in system and system == routing[0].messages[0].content
    assert answers[0].messages[-1].role == "tool" and answers[0].messages[-1].content == "391"
    # Read out greedily: sampled, the small model took the result for the user's own words.
    assert answers[0].temperature == ANSWER_AFTER_TOOLS_TEMPERATURE
    assert all(r.temperature == 0.0 for r in routing)
    assert turn.timeline["notes"]["router_ms"] == [100.0, 100.0]
    assert turn.tool_calls[0].ms == 0.0  # the calculator is instant on the manual clock
    # The prompt the read-ahead serves is the first routing call's: its counts are noted.
    assert turn.timeline["notes"]["prompt_tokens"] == prompt_size(routing[0])


async def test_router_two_step_request_runs_both_tools_in_order(tmp_path) -> None:
    llm = RoutedLLM(
        [
            {
                "tool": "convert_units",
                "arguments": {"value": 5, "from_unit": "mile", "to_unit": "km"},
            },
            {"tool": "calculate", "arguments": {"expression": "8.047*2"}},
        ]
    )
    stage, turn = await _routed_turn(
        tmp_path, llm, "How many kilometers is 5 miles there and back?"
    )
    assert [t.name for t in turn.tool_calls] == ["convert_units", "calculate"]
    assert turn.tool_calls[1].result == "16.094"
    assert [e.title for e in stage.events(ToolCalled)] == ["unit converter", "calculator"]


async def test_a_calculation_with_numbers_nobody_said_is_not_run(tmp_path) -> None:
    """A few turns into a conversation the embedded model routed "How many legs does a spider
    have?" to ``calculate("6*2")``; a call computing with recalled numbers is not run, and the
    question is answered in words."""
    llm = RoutedLLM([{"tool": "calculate", "arguments": {"expression": "6*2"}}])
    stage, turn = await _routed_turn(tmp_path, llm, "How many legs does a spider have?")
    assert turn.tool_calls == []
    assert not stage.events(ToolCalled)
    assert turn.assistant_text
    assert turn.timeline["notes"]["router_rejected"] == ["calculate"]


async def test_a_repeated_routing_decision_is_not_run_twice(tmp_path) -> None:
    same = {"tool": "get_time", "arguments": {}}
    llm = RoutedLLM([same, same, same])
    _, turn = await _routed_turn(tmp_path, llm)
    assert [t.name for t in turn.tool_calls] == ["get_time"]


async def test_a_decision_written_out_as_the_answer_is_never_spoken(tmp_path) -> None:
    """The answer request shares the routing calls' prompt; a model that answers it with its
    decision again is asked once more without the tools block, and only words are heard."""

    reply = _reply('{"tool": "none"}', "Going forward ten meters is not something I can do.")
    llm = RoutedLLM([], FakeLLM(ttft=0.05, tokens_per_second=200, reply=reply))
    stage, turn = await _routed_turn(tmp_path, llm)
    assert turn.assistant_text == "Going forward ten meters is not something I can do."
    assert all("tool" not in e.spoken for e in stage.events(AssistantText))
    answers = _asked_again_without_tools(llm)
    assert turn.timeline["notes"]["answer_reasked"] is True
    # No tool ran: the answer is sampled as usual.
    assert all(r.temperature is None for r in answers)


def test_a_decision_before_the_words_of_an_answer_is_dropped() -> None:
    echo = DecisionEcho()
    pieces = ['  {"to', 'ol": "no', 'ne"} ', "Sure, ", "here it is."]
    assert "".join(echo.push(p) for p in pieces) + echo.flush() == "Sure, here it is."
    assert echo.dropped


@pytest.mark.parametrize(
    "pieces",
    [["Hello", " {there}"], ['{"answer": 4', "2}"], ["{not json at all", " and more"], ["", "Hi"]],
)
def test_answers_that_are_not_decisions_pass_unchanged(pieces: list[str]) -> None:
    echo = DecisionEcho()
    assert "".join(echo.push(p) for p in pieces) + echo.flush() == "".join(pieces)
    assert not echo.dropped


@pytest.mark.parametrize("decision", ['{"name": "none"}', '{"name": "get_time", "arguments": {}}'])
def test_a_decision_written_as_a_function_call_is_dropped(decision: str) -> None:
    echo = DecisionEcho()
    assert echo.push(decision + " Once upon a time.") + echo.flush() == "Once upon a time."
    assert echo.dropped


def test_an_unfinished_decision_at_the_end_is_dropped() -> None:
    echo = DecisionEcho()
    assert echo.push('{"tool": "calcul') == "" and echo.flush() == "" and echo.dropped


def test_decisions_written_one_after_another_are_a_loop() -> None:
    echo = DecisionEcho()
    first = '{"name": "calculate", "arguments": {"expression": "6*2"}}\n'
    assert echo.push(first) == "" and not echo.looping
    assert echo.push('{"name": "set_timer", "arguments": {"sec') == ""
    assert echo.push('onds": 600}}\n{"name": "add_note"') == ""
    assert echo.looping and echo.dropped
    assert echo.push(" anything") == "" and echo.flush() == ""


async def test_a_decision_and_the_two_step_example_after_it_are_never_spoken(tmp_path) -> None:
    """Seen on a CI machine's CPU: the model wrote its decision, then the tools block's two-step
    example, and the voice said "Then after its result tool, get time, arguments." The words
    joining the two decisions go with them, and the answer is asked again."""
    recital = '{"tool": "none"}, then after its result -> {"tool": "get_time", "arguments": {}}'
    reply = _reply(recital, "The capital of France is Paris.")
    llm = RoutedLLM([], FakeLLM(ttft=0.05, tokens_per_second=200, reply=reply))
    stage, turn = await _routed_turn(tmp_path, llm)
    assert turn.assistant_text == "The capital of France is Paris."
    spoken = " ".join(e.spoken for e in stage.events(AssistantText)).lower()
    assert "tool" not in spoken and "result" not in spoken, spoken
    # Both answers were asked as plain text (a server that can enforce it never writes "{").
    assert all(r.plain_text for r in _asked_again_without_tools(llm))


@pytest.mark.parametrize(
    ("pieces", "answer"),
    [
        # An answer's first sentence after a decision is the answer, however it is cut.
        (['{"tool": "none"} It is', " Paris."], "It is Paris."),
        (['{"tool": "none"}', " Paris", "."], "Paris."),
        # Longer than a connector: released without waiting for the end of its sentence.
        (['{"tool": "none"} ', "Well " * 12, "and so on"], "Well " * 12 + "and so on"),
        # Braces in the words that are no object with keys.
        (['{"tool": "none"} Use {x', "} here"], "Use {x} here"),
        # Ended before any end of sentence.
        (['{"tool": "none"} Paris'], "Paris"),
    ],
)
def test_words_after_a_dropped_decision_are_the_answer(pieces: list[str], answer: str) -> None:
    echo = DecisionEcho()
    assert "".join(echo.push(p) for p in pieces) + echo.flush() == answer
    assert echo.dropped and not echo.looping


def test_a_short_connector_between_decisions_is_part_of_the_recital() -> None:
    echo = DecisionEcho()
    assert echo.push('{"tool": "none"}, then after') == ""
    assert echo.push(' its result -> {"tool": "get_ti') == ""
    assert echo.push('me", "arguments": {}}') == "" and echo.looping


def test_a_connector_to_a_decision_cut_off_by_the_end_of_the_answer_is_not_spoken() -> None:
    echo = DecisionEcho()
    assert echo.push('{"tool": "none"}, then -> {"tool": "get') == ""
    assert echo.flush() == "" and echo.dropped


def test_a_decision_that_never_ends_is_abandoned_not_spoken() -> None:
    """Seen with the embedded model: a calculation whose expression was digits without end."""
    echo = DecisionEcho()
    assert echo.push('{"tool": "calculate", "arguments": {"expression": "4752') == ""
    for _ in range(100):
        assert echo.push("3917449275923656") == ""
    assert echo.looping and echo.dropped and echo.flush() == ""


def test_a_long_object_that_is_no_decision_is_spoken_once_too_long_to_be_one() -> None:
    echo = DecisionEcho()
    text = '{"answer": "' + "x" * 1200
    assert echo.push(text) == text and not echo.dropped


def test_words_are_released_as_soon_as_they_are_a_sentence() -> None:
    echo = DecisionEcho()
    assert echo.push('{"tool": "none"} Paris is') == ""
    assert echo.push(" the capital. It") == "Paris is the capital. It"
    assert echo.push(" is {big}.") == " is {big}."


async def test_an_answer_reciting_the_tool_examples_is_stopped_and_asked_again(tmp_path) -> None:
    """After a tool's result, the embedded model was seen writing the tools block's example
    calls one after another, for a minute and a half of speech: the recital is stopped at the
    second call and the answer asked again without the tools block."""
    recital = "\n".join(
        json.dumps({"name": name, "arguments": {"text": "the key is under the mat"}})
        for name in ["add_note", "find_notes", "cancel_timer"] * 40
    )
    reply = _reply(recital, "A spider has eight legs.")
    answer = FakeLLM(ttft=0.05, tokens_per_second=200, reply=reply)
    llm = RoutedLLM([{"tool": "calculate", "arguments": {"expression": "6*2"}}], answer)
    stage, turn = await _routed_turn(tmp_path, llm)
    assert turn.assistant_text == "A spider has eight legs."
    assert all("{" not in e.spoken for e in stage.events(AssistantText))
    _asked_again_without_tools(llm)
    # Abandoned early, not read to its end (its 3,000 tokens take 15 s at 200 a second).
    assert stage.now < 6.0


async def test_no_router_and_no_tools_block_without_tools(tmp_path) -> None:
    llm = RoutedLLM([])
    async with _stage(tmp_path, tools=ToolRegistry(), llm=llm, script=[Key(0, 0.6)]) as stage:
        await stage.run_until(lambda: bool(stage.finished()))
    assert all(r.response_format is None for r in llm.requests)
    assert "You can use these tools" not in llm.requests[0].messages[0].content
    assert not any(r.plain_text for r in llm.requests)


# ------------------------------------------------------------------------------------- filler


async def test_a_slow_tool_gets_a_filler_that_stays_out_of_the_answer(tmp_path) -> None:
    tools, calls = slow_tools(1.2)
    llm = FakeLLM(
        ttft=0.05, tokens_per_second=200, tool_call=("get_order_status", '{"order_id": "A7"}')
    )
    stage = _stage(tmp_path, tools=tools, llm=llm, script=[Key(0, 0.6)])
    async with stage:
        await stage.run_until(lambda: bool(stage.finished()))
        stage.add(Key(stage.now + 0.2, stage.now + 0.8))
        await stage.run_until(lambda: len(stage.finished()) == 2)
    first = stage.finished()[0]
    (filler,) = stage.events(FillerSpoken)
    assert filler.text == "One moment." and calls == ["A7"]
    # Heard while the tool ran: the first sound comes ~0.4 s after the call started, long
    # before the result (1.2 s).
    call_started = 0.6 + first.timeline["marks_ms"]["llm_first_token"] / 1000
    heard_at = stage.first_sound_after(0.6)
    assert heard_at is not None and 0.4 < heard_at - call_started < 0.5
    assert first.tool_calls[0].ms == pytest.approx(1200, abs=1)
    # Not the answer: not in the text, the generated text or the next request's context.
    assert first.assistant_text == "The answer is order A7 ships tomorrow. Anything else?"
    assert "moment" not in first.generated_text
    assert first.timeline["notes"]["filler"] == "One moment."
    assert all("moment" not in m.content for m in llm.requests[-1].messages)
    assert all("moment" not in e.spoken for e in stage.events(AssistantText))


async def test_a_quick_tool_gets_no_filler(tmp_path) -> None:
    tools, _ = slow_tools(0.3)
    llm = FakeLLM(ttft=0.05, tool_call=("get_order_status", '{"order_id": "B2"}'))
    async with _stage(tmp_path, tools=tools, llm=llm, script=[Key(0, 0.6)]) as stage:
        await stage.run_until(lambda: bool(stage.finished()))
    assert not stage.events(FillerSpoken)
    assert stage.finished()[0].tool_calls[0].ms == pytest.approx(300, abs=1)


async def test_filler_is_said_in_the_conversation_language(tmp_path) -> None:
    tools, _ = slow_tools(1.0)
    llm = FakeLLM(ttft=0.05, tool_call=("get_order_status", '{"order_id": "C3"}'))
    stage = _stage(tmp_path, tools=tools, llm=llm, script=[Key(0, 0.6)])
    stage.settings.language = "de"
    async with stage:
        await stage.run_until(lambda: bool(stage.finished()))
    assert [e.text for e in stage.events(FillerSpoken)] == ["Einen Moment."]


# ------------------------------------------------------------------------------- confirmation


def alarm_stage(tmp_path, stt_script: tuple[str, ...], **kw) -> tuple[Stage, AlarmBook]:
    tools = default_tools()
    llm = FakeLLM(ttft=0.05, tokens_per_second=200, tool_call=("set_timer", '{"seconds": 300}'))
    stage = Stage(tmp_path, tools=tools, llm=llm, stt=FakeSTT(script=stt_script), **kw)
    book = AlarmBook(
        tmp_path / "data" / "timers.json",
        clock=stage.clock,
        wall=lambda: EPOCH + stage.clock.now() - T0,
    )
    register_alarm_tools(tools, book)
    book.start()
    return stage, book


async def test_a_tool_that_changes_something_runs_after_a_spoken_yes(tmp_path) -> None:
    stage, book = alarm_stage(tmp_path, ("Set a timer for five minutes.", "Yes please."))
    async with stage:
        stage.add(Key(0, 0.6))
        await stage.run_until(lambda: bool(stage.finished()))
        (asked,) = stage.finished()
        assert asked.assistant_text == "I'm about to set a timer for 5 minutes. Shall I go ahead?"
        assert not asked.tool_calls and not book.pending()
        (request,) = stage.events(ConfirmationRequested)
        assert (request.tool, request.title) == ("set_timer", "timer")
        assert stage.session.pending_confirmation is not None
        stage.add(Key(stage.now + 0.3, stage.now + 0.9))
        await stage.run_until(lambda: len(stage.finished()) == 2)
    yes = stage.finished()[1]
    assert yes.user_text == "Yes please."
    assert [t.name for t in yes.tool_calls] == ["set_timer"]
    assert yes.assistant_text.startswith("The answer is A timer for 5 minutes is running")
    (pending,) = book.pending()
    assert pending.seconds == 300
    assert [e.accepted for e in stage.events(ConfirmationResolved)] == [True]
    assert stage.session.pending_confirmation is None
    # The next turn's context: the question, the "yes", the call and its result.
    reloaded, _ = stage.store.latest()
    assert [len(t.tool_calls) for t in reloaded.turns] == [0, 1]


async def test_a_spoken_no_changes_nothing(tmp_path) -> None:
    stage, book = alarm_stage(tmp_path, ("Set a timer for five minutes.", "No, thanks."))
    before = None
    async with stage:
        stage.add(Key(0, 0.6))
        await stage.run_until(lambda: bool(stage.finished()))
        before = book.path.read_bytes() if book.path.exists() else None
        stage.add(Key(stage.now + 0.3, stage.now + 0.9))
        await stage.run_until(lambda: len(stage.finished()) == 2)
    no = stage.finished()[1]
    assert no.assistant_text == "Okay, I won't."
    assert not no.tool_calls and not book.pending()
    assert (book.path.read_bytes() if book.path.exists() else None) == before
    assert [e.accepted for e in stage.events(ConfirmationResolved)] == [False]


async def test_other_words_drop_the_question_and_are_answered(tmp_path) -> None:
    stage, book = alarm_stage(
        tmp_path, ("Set a timer for five minutes.", "What is the weather like?")
    )
    stage.llm.tool_call = None  # type: ignore[union-attr]
    stage.llm.reply = lambda r: (  # type: ignore[union-attr]
        "Sure." if r.messages[-1].content.startswith("What") else "unused"
    )
    async with stage:
        stage.session._confirmation.offer(  # a question asked in an earlier turn
            _pending_timer()
        )
        stage.add(Key(0, 0.6))
        await stage.run_until(lambda: bool(stage.finished()))
    assert [e.accepted for e in stage.events(ConfirmationResolved)] == [None]
    assert not book.pending()


def _pending_timer():
    from assistant.engines.base import ToolCall
    from assistant.session.generate import PendingAction

    return PendingAction(ToolCall("c1", "set_timer", '{"seconds": 60}'), "set a timer", "timer")


async def test_a_click_on_the_chip_confirms(tmp_path) -> None:
    stage, book = alarm_stage(tmp_path, ("Set a timer for five minutes.",))
    async with stage:
        stage.add(Key(0, 0.6))
        await stage.run_until(lambda: bool(stage.finished()))
        assert stage.session.confirm(True)
        await stage.run_until(lambda: len(stage.finished()) == 2)
        assert not stage.session.confirm(True)  # nothing is open any more
    yes = stage.finished()[1]
    assert yes.user_text == "Yes." and [t.name for t in yes.tool_calls] == ["set_timer"]
    assert len(book.pending()) == 1


async def test_a_click_on_no_in_german_declines(tmp_path) -> None:
    stage, book = alarm_stage(tmp_path, ("Stell einen Timer auf fünf Minuten.",))
    stage.settings.language = "de"
    async with stage:
        stage.add(Key(0, 0.6))
        await stage.run_until(lambda: bool(stage.finished()))
        assert stage.finished()[0].assistant_text.endswith("Soll ich das tun?")
        stage.add(Do(stage.now + 0.2, lambda s: s.confirm(False)))
        await stage.run_until(lambda: len(stage.finished()) == 2)
    assert stage.finished()[1].assistant_text == "Gut, dann nicht."
    assert not book.pending()


async def test_notes_are_added_after_yes_and_found_without_asking(tmp_path) -> None:
    tools = default_tools()
    notes = NoteBook(tmp_path / "data" / "notes.jsonl")
    register_note_tools(tools, notes)
    llm = RoutedLLM(
        [
            {"tool": "add_note", "arguments": {"text": "the key is under the mat"}},
            {"tool": "none"},  # after "yes": the note was added
            {"tool": "find_notes", "arguments": {"query": "key"}},
        ]
    )
    stt = FakeSTT(script=("Note that the key is under the mat.", "Yes.", "Where is the key?"))
    stage = _stage(tmp_path, tools=tools, llm=llm, stt=stt, script=[Key(0, 0.6)])
    async with stage:
        for n in (1, 2, 3):
            await stage.run_until(lambda n=n: len(stage.finished()) == n)
            if n < 3:
                stage.add(Key(stage.now + 0.3, stage.now + 0.9))
    asked, yes, found = stage.finished()
    assert asked.assistant_text.startswith("I'm about to save the note: the key is under the mat")
    assert [t.name for t in yes.tool_calls] == ["add_note"]
    assert [t.name for t in found.tool_calls] == ["find_notes"]
    assert "the key is under the mat" in found.tool_calls[0].result
    assert [n.text for n in notes.notes()] == ["the key is under the mat"]


# ------------------------------------------------------------------------------------- alarms


async def test_a_timer_rings_and_speaks_on_time_and_is_not_a_turn(tmp_path) -> None:
    stage, book = alarm_stage(tmp_path, ())
    book.on_fire.append(lambda alarm: stage.session.announce(alarm_line(alarm, "en")))
    async with stage:
        book.add("timer", EPOCH + 5.0, "tea", seconds=5.0)
        await stage.run_to(4.9)
        assert not stage.events(Announcement) and not stage.audible(0, 4.9)
        await stage.run_until(lambda: bool(stage.events(Announcement)))
        fired = stage.now
        await stage.run_to(fired + 3.0)
    (said,) = stage.events(Announcement)
    assert said.text == "Your tea timer is done."
    assert fired == pytest.approx(5.0, abs=0.05)
    rang = stage.first_sound_after(4.9)
    assert rang is not None and rang - 5.0 < 0.05  # the chime, at once
    assert stage.audible(5.8, 6.5)  # then the spoken line
    assert not stage.finished() and not book.pending()
    reloaded, _ = stage.store.latest()
    assert reloaded.turns == []


async def test_a_timer_set_before_a_restart_fires_on_time_after_it(tmp_path) -> None:
    stage, book = alarm_stage(tmp_path, ())
    async with stage:
        book.add("timer", EPOCH + 30.0, "pasta", seconds=30.0)
        await stage.run_to(2.0)
    book.close()  # the app quits 2 s in and starts again at 10 s; the timer is due at 30 s
    fired: list[tuple[float, str]] = []
    restarted = AlarmBook(book.path, clock=stage.clock, wall=lambda: EPOCH + stage.clock.now() - T0)
    restarted.on_fire.append(lambda a: fired.append((stage.clock.now() - T0, a.label)))
    await stage.clock.advance_to(T0 + 10.0)
    restarted.start()
    await stage.clock.advance_to(T0 + 29.9)
    assert fired == []
    await stage.clock.advance_to(T0 + 30.1)
    assert fired == [(30.0, "pasta")]
    assert json.loads(book.path.read_text())["alarms"] == []


async def test_a_confirmed_call_chosen_again_is_neither_asked_nor_run_twice(tmp_path) -> None:
    timer = {"tool": "set_timer", "arguments": {"seconds": 300}}
    llm = RoutedLLM([timer, dict(timer, arguments={"seconds": 300.0}), {"tool": "none"}])
    stt = FakeSTT(script=("Set a timer for five minutes.", "Yes."))
    stage = _stage(tmp_path, tools=default_tools(), llm=llm, stt=stt, script=[Key(0, 0.6)])
    book = AlarmBook(
        tmp_path / "timers.json", clock=stage.clock, wall=lambda: EPOCH + stage.clock.now() - T0
    )
    register_alarm_tools(stage.tools, book)  # type: ignore[arg-type]
    book.start()
    async with stage:
        await stage.run_until(lambda: bool(stage.finished()))
        stage.add(Key(stage.now + 0.3, stage.now + 0.9))
        await stage.run_until(lambda: len(stage.finished()) == 2)
    yes = stage.finished()[1]
    assert [t.name for t in yes.tool_calls] == ["set_timer"]
    assert len(book.pending()) == 1 and len(stage.events(ConfirmationRequested)) == 1
    assert not yes.assistant_text.startswith("I'm about to")


async def test_a_follow_up_routing_call_that_copies_an_example_ends_the_tools(tmp_path) -> None:
    llm = RoutedLLM(
        [
            {"tool": "calculate", "arguments": {"expression": "sqrt(144)"}},
            {"tool": "calculate", "arguments": {"expression": "12*7"}},  # the prompt's example
        ]
    )
    _, turn = await _routed_turn(tmp_path, llm, "What is the square root of 144?")
    assert [(t.name, t.result) for t in turn.tool_calls] == [("calculate", "12")]
