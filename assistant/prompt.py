"""The system prompt as the model receives it: the user's prompt plus the reply language.

The language is stated on every request, so changing it in the settings (or speaking another
language in the "answer in the language I speak" mode) changes the language of the very next
answer, even in a conversation held so far in another language.
"""

from __future__ import annotations

from assistant.languages import language_name


def system_prompt(base: str, language: str) -> str:
    """``base`` followed by the instruction to answer in ``language`` (a BCP-47-ish tag)."""
    instruction = (
        f"Always answer in {language_name(language)}, even when earlier messages of the "
        "conversation are in another language."
    )
    return f"{base.rstrip()}\n\n{instruction}" if base.strip() else instruction
