"""Whether a tool call the router chose can come from what the user said.

The embedded model's routing is weakest a few turns into a conversation: asked "How many legs
does a spider have?" after another question, it chose ``calculate("6*2")``; asked for the
tallest mountain, ``convert_units(8848, "meter", "feet")``. Both calls compute with numbers
the model recalled, not numbers the user gave, and their results were then spoken as answers.
A tool that computes with the user's numbers is only plausible when at least one of its
numbers was said: this module finds the numbers in a request — digits, and number words in
the languages ``text2num`` reads ("twenty-five", "vingt-cinq", "dreihundert") — and offers
the checks the built-in tools register (``ToolRegistry.register(grounded=...)``).

A check sees the arguments and the words of the request (the user's message and the results
of tools already run for it, so a second step may use the first one's result).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from text_to_num import alpha2digit

#: The languages ``text2num`` turns number words into digits for.
NUMBER_WORD_LANGUAGES = ("en", "de", "fr", "es", "it", "pt", "nl", "da")
#: A number written with digits: "12", "3.5", "3,5", "1,000" (signs are compared apart).
_DIGITS = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*")
_WORD = re.compile(r"\w+")
#: Indefinite articles that say "one" of a unit, in the languages above.
_INDEFINITE = frozenset(
    "a an ein eine einen einem einer eines un une una uno um uma een en et".split()
)


@lru_cache(maxsize=256)
def numbers_said(text: str) -> frozenset[float]:
    """Every number in ``text``, written in digits or in words of any language text2num reads."""
    found = set(_digits_in(text))
    for language in NUMBER_WORD_LANGUAGES:
        found.update(_digits_in(_words_to_digits(text, language)))
    return frozenset(found)


def numbers_in_expression(expression: str) -> frozenset[float]:
    """The numeric literals of an arithmetic expression ("sqrt(144) + 2" → {144, 2})."""
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
    except SyntaxError:
        return frozenset(_digits_in(expression))
    return frozenset(
        float(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float)
    )


def expression_grounded(arguments: Mapping[str, Any], said: str) -> bool:
    """A ``calculate`` call: some number of its expression was said (or it has none)."""
    wanted = numbers_in_expression(str(arguments.get("expression", "")))
    return not wanted or _any_said(wanted, said)


def value_grounded(arguments: Mapping[str, Any], said: str) -> bool:
    """A ``convert_units`` call: its value was said; 1 also by an article ("feet in a mile")."""
    try:
        value = float(arguments.get("value", ""))
    except (TypeError, ValueError):
        return False
    if value == 1 and not _INDEFINITE.isdisjoint(_WORD.findall(said.lower())):
        return True
    return _any_said({value}, said)


#: A unit of time at the start of a word, in the languages above: seconds, minutes, hours
#: ("sec", "Sekunde", "segundo", "minute", "minuut", "Stunde", "heure", "hora", "ora", "uur",
#: Danish "time"). Generous on purpose: only a request with no unit of time at all is refused.
_TIME_UNIT = re.compile(
    r"\b(?:sec|sek|seg|min|hour|hr|heure|hora|ora|ore|stund|std|uur|time)\w*", re.IGNORECASE
)


def duration_grounded(arguments: Mapping[str, Any], said: str) -> bool:
    """A timer: a unit of time was said ("go forward ten meters" starts no timer)."""
    return bool(_TIME_UNIT.search(said))


def _any_said(numbers: set[float] | frozenset[float], said: str) -> bool:
    heard = numbers_said(said)
    return any(_close(n, h) for n in numbers for h in heard)


def _close(a: float, b: float) -> bool:
    a, b = abs(a), abs(b)  # "minus forty" is said as a word the digits do not carry
    return abs(a - b) <= 1e-9 * max(1.0, a, b)


def _digits_in(text: str) -> list[float]:
    out: list[float] = []
    for match in _DIGITS.finditer(text):
        token = match.group()
        # "1,000" and "1.000" group thousands; "3,5" is a decimal comma; "3.5" a point.
        candidates = {token.replace(",", ""), token.replace(",", "."), token.replace(".", "")}
        for candidate in candidates:
            try:
                out.append(float(candidate))
            except ValueError:
                continue
    return out


def _words_to_digits(text: str, language: str) -> str:
    try:
        return str(alpha2digit(text, language, threshold=0))  # "two pi" counts too
    except (ValueError, RuntimeError):
        return ""
