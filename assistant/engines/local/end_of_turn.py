"""Reading from the local model whether the user's sentence is finished.

At a pause, the conversation is rendered with the model's own chat template and cut right
after the user's words; the model's probabilities for the next token then say how likely the
sentence ends there: the template's end-of-message token, or sentence-final punctuation. The
recognizer's own punctuation is removed first, since at a pause it says little (Whisper ends
"What's the difference between" with a question mark). An ellipsis does not end a sentence.

The prompt shares its beginning with the reply's, so llama-server's prompt cache makes the
check cost only the newest words, and the reply that follows finds them processed already.
Pure functions: the requests themselves are ``LocalLLM.end_of_turn_probability``'s.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

#: Punctuation that ends a sentence, in the scripts Parley converses in.
SENTENCE_END = ".?!。？！؟"
#: Stripped from the end of the user's words before asking what comes next.
TRAILING_MARKS = " \t\r\n.,;:!?¿¡…。？！、؟-–—\"'”’)]»"
#: How many of the most likely next tokens the server reports.
TOP_TOKENS = 20


def scoring_prompt(prompt: str, text: str) -> tuple[str, str] | None:
    """``prompt`` cut right after the user's words ``text`` (without their final
    punctuation), and the end-of-message marker the template put after them ("<|im_end|>").

    ``prompt`` is the whole conversation rendered by the chat template, ``text`` its last user
    message. None when the words cannot be found in it or are only punctuation.
    """
    at = prompt.rfind(text)
    words = text.rstrip(TRAILING_MARKS)
    if at < 0 or not words.strip():
        return None
    after = prompt[at + len(text) :]
    marker = after.split("\n", 1)[0].strip()
    return prompt[: at + len(words)], marker


def ends_sentence(token: str) -> bool:
    """A token that closes a sentence: "." "?" "!" (with or without spaces or newlines)."""
    t = token.strip()
    return bool(t) and t[0] in SENTENCE_END and not t.startswith("..")


def ending_probability(top: Sequence[Mapping[str, Any]], end_ids: Collection[int]) -> float:
    """The probability that the sentence ends at the next token, from the server's list of
    the likeliest next tokens (``{"id", "token", "logprob"}`` each; ``prob`` also accepted)."""
    total = 0.0
    for entry in top:
        token_id, token = entry.get("id"), entry.get("token")
        if token_id in end_ids or (isinstance(token, str) and ends_sentence(token)):
            total += _probability(entry)
    return min(1.0, max(0.0, total))


def _probability(entry: Mapping[str, Any]) -> float:
    logprob = entry.get("logprob")
    if isinstance(logprob, int | float) and not isinstance(logprob, bool):
        return math.exp(min(0.0, float(logprob)))
    prob = entry.get("prob")
    if isinstance(prob, int | float) and not isinstance(prob, bool):
        return float(prob)
    return 0.0


def top_tokens(answer: object) -> list[Mapping[str, Any]]:
    """The next-token list in a ``/completion`` answer (empty if it has none)."""
    if not isinstance(answer, dict):
        return []
    probabilities = answer.get("completion_probabilities")
    if not isinstance(probabilities, list) or not probabilities:
        return []
    first = probabilities[0]
    if not isinstance(first, dict):
        return []
    top = first.get("top_logprobs", first.get("top_probs"))
    return [e for e in top if isinstance(e, dict)] if isinstance(top, list) else []
