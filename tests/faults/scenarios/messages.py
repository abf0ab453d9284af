"""Providers that send what their documentation says they never send: fields of the wrong type,
audio cut short, text holding half a surrogate pair. Through the real adapters and the app, with
the offline engine configured as the fallback. Wall-clock time (real sockets)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from assistant.events import Source
from tests.faults.matrix import Scenario
from tests.faults.scenarios.network import PROVIDER, provider_run


def mangled(kind: str, rewrite: Callable[[dict[str, Any]], Any] | None, **fake: Any) -> Any:
    """A run: the provider of ``kind`` rewrites its messages with ``rewrite`` from the second
    turn on (``fake``: settings of the fake server from the start)."""
    hook = "chat_mangle" if kind == "llm" else "mangle"
    return provider_run(kind, lambda served: setattr(served.fake, hook, rewrite), **fake)


def transcript_of_the_wrong_type(msg: dict[str, Any]) -> dict[str, Any]:
    for alternative in msg.get("channel", {}).get("alternatives", []):
        alternative["transcript"] = 5
    return msg


def audio_cut_short(msg: dict[str, Any]) -> dict[str, Any]:
    if isinstance(msg.get("audio"), str):
        msg["audio"] = msg["audio"][:-3]  # no longer a whole number of base64 quanta
    return msg


def alignment_of_the_wrong_type(msg: dict[str, Any]) -> dict[str, Any]:
    if "normalizedAlignment" in msg:
        msg["normalizedAlignment"] = {"chars": 5, "charStartTimesMs": "soon"}
    return msg


def content_of_the_wrong_type(event: dict[str, Any]) -> dict[str, Any]:
    for choice in event.get("choices", []):
        if "content" in choice.get("delta", {}):
            choice["delta"]["content"] = 5
    return event


def choices_of_the_wrong_type(event: dict[str, Any]) -> dict[str, Any]:
    event["choices"] = "none"
    return event


def _unreadable(kind: str, label: str, rewrite: Any, what: str, message: str) -> Scenario:
    return Scenario(
        f"{kind} {label}",
        "messages",
        what,
        message,
        Source(kind),
        4.0,
        10.0,
        3,
        mangled(kind, rewrite),
        virtual=False,
    )


def _absorbed(kind: str, label: str, rewrite: Any, what: str, **fake: Any) -> Scenario:
    return Scenario(
        f"{kind} {label}",
        "messages",
        what,
        None,
        Source(kind),
        0.0,
        8.0,
        3,
        mangled(kind, rewrite, **fake),
        virtual=False,
    )


FELL_BACK = r"notice \[{kind}\] {provider} failed \(.+\); using local instead"

SCENARIOS = (
    _unreadable(
        "stt",
        "transcript not text",
        transcript_of_the_wrong_type,
        'every result says "transcript": 5',
        FELL_BACK.format(kind="stt", provider=PROVIDER["stt"]),
    ),
    _absorbed(
        "stt",
        "transcript with a lone surrogate",
        None,
        "the transcript holds a \\ud83d escape without its pair",
        script=("What time is it?", "Half an emoji \ud83d here?", "Thank you."),
    ),
    _unreadable(
        "tts",
        "audio cut short",
        audio_cut_short,
        "every audio message's base64 is cut short",
        FELL_BACK.format(kind="tts", provider=PROVIDER["tts"]),
    ),
    _absorbed(
        "tts",
        "alignment of the wrong type",
        alignment_of_the_wrong_type,
        'the alignment says "chars": 5',
    ),
    _unreadable(
        "llm",
        "content not text",
        content_of_the_wrong_type,
        'every delta says "content": 5',
        FELL_BACK.format(kind="llm", provider=PROVIDER["llm"]),
    ),
    _unreadable(
        "llm",
        "choices not a list",
        choices_of_the_wrong_type,
        'every event says "choices": "none"',
        FELL_BACK.format(kind="llm", provider=PROVIDER["llm"]),
    ),
    _absorbed(
        "llm",
        "reply with a lone surrogate",
        None,
        "the reply holds a \\ud83d escape without its pair",
        chat_reply="Here is half an emoji: \ud83d. Anything else?",
    ),
)
