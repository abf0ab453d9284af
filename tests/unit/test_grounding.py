"""A tool call computing with numbers nobody said is not plausible (``tools.grounding``)."""

from __future__ import annotations

import pytest

from assistant.tools import default_tools
from assistant.tools.grounding import (
    duration_grounded,
    expression_grounded,
    numbers_in_expression,
    numbers_said,
    value_grounded,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("What is 12 times 7?", {12, 7}),
        ("What is twelve times seven?", {12, 7}),
        ("How many kilometers is 1,000 miles?", {1000}),
        ("Combien font vingt-cinq fois quatre ?", {25, 4}),
        ("Wie viel ist dreihundert geteilt durch zwölf?", {300, 12}),
        ("¿Cuánto es diez más cinco?", {10, 5}),
        ("How many legs does a spider have?", set()),
    ],
)
def test_numbers_are_found_in_digits_and_in_words(text: str, expected: set[float]) -> None:
    assert expected <= numbers_said(text)
    if not expected:
        assert not numbers_said(text)


def test_the_numbers_of_an_expression_are_its_literals() -> None:
    assert numbers_in_expression("sqrt(144) + 2^3") == {144, 2, 3}
    assert numbers_in_expression("pi") == frozenset()


@pytest.mark.parametrize(
    ("expression", "said", "plausible"),
    [
        ("6*2", "How many legs does a spider have?", False),
        ("13.8e9", "How old is the universe?", False),
        ("12*9", "What is 12 times 9?", True),
        ("17*23", "What is seventeen times twenty-three?", True),
        ("0.15*80", "What is fifteen percent of 80?", True),
        ("8.047*2", "How far is 5 miles there and back?\n8.047 kilometers", True),
        ("pi*2", "what is two pi", True),
    ],
)
def test_a_calculation_needs_a_number_the_user_gave(
    expression: str, said: str, plausible: bool
) -> None:
    assert expression_grounded({"expression": expression}, said) is plausible


@pytest.mark.parametrize(
    ("value", "said", "plausible"),
    [
        (8848, "What is the tallest mountain in the world?", False),
        (384400, "How far is the moon from the earth?", False),
        (3, "How many pounds is 3 kilograms?", True),
        (20, "What is twenty degrees Celsius in Fahrenheit?", True),
        (-40, "What is minus forty in Fahrenheit?", True),
        (1, "How many feet are in a mile?", True),
        (1, "Combien de pieds dans un mille ?", True),
        (1, "How far away is the moon?", False),
        ("lots", "convert lots of miles", False),
    ],
)
def test_a_conversion_needs_the_value_the_user_gave(
    value: object, said: str, plausible: bool
) -> None:
    arguments = {"value": value, "from_unit": "meter", "to_unit": "foot"}
    assert value_grounded(arguments, said) is plausible


@pytest.mark.parametrize(
    ("said", "plausible"),
    [
        ("Go forward ten meters.", False),
        ("How many legs does a spider have?", False),
        ("Set a timer for ten minutes.", True),
        ("Timer for 90 seconds please", True),
        ("Set a tea timer for half an hour", True),
        ("Stell einen Timer auf fünf Minuten.", True),
        ("Mets un minuteur de trente secondes.", True),
        ("Pon un temporizador de dos horas.", True),
        ("Zet een timer van tien minuten.", True),
    ],
)
def test_a_timer_needs_a_unit_of_time_the_user_said(said: str, plausible: bool) -> None:
    assert duration_grounded({"seconds": 600}, said) is plausible


def test_the_registry_asks_a_tools_own_check_and_trusts_tools_without_one() -> None:
    tools = default_tools()
    assert not tools.plausible("calculate", {"expression": "6*2"}, "How many legs?")
    assert tools.plausible("calculate", {"expression": "6*2"}, "six times two")
    assert tools.plausible("get_time", {}, "What time is it?")
    assert tools.plausible("no_such_tool", {}, "anything")
