"""The system prompt as the model receives it: the user's prompt plus the reply language.

The language is stated on every request, so changing it in the settings (or speaking another
language in the "answer in the language I speak" mode) changes the language of the very next
answer, even in a conversation held so far in another language. It is stated last: a local
model's prompt cache keeps everything before it (the tools block too, ``with_section``) across
a change of language.
"""

from __future__ import annotations

from assistant.languages import language_name

#: How the language instruction starts (it always ends the system prompt).
_INSTRUCTION_START = "Always answer in "


def system_prompt(base: str, language: str) -> str:
    """``base`` followed by the instruction to answer in ``language`` (a BCP-47-ish tag)."""
    instruction = (
        f"{_INSTRUCTION_START}{language_name(language)}, even when earlier messages of the "
        "conversation are in another language."
    )
    return f"{base.rstrip()}\n\n{instruction}" if base.strip() else instruction


def with_section(prompt: str, section: str) -> str:
    """``prompt`` (made by ``system_prompt``, or any text) with ``section`` added as a paragraph
    before its closing language instruction, or at its end when it has none.

    Reading a prompt of some 500 tokens takes the embedded model seconds on two cores; with the
    part that changes with the language last, a change of language costs a sentence of it.
    """
    section = section.strip()
    if not section:
        return prompt
    if prompt.startswith(_INSTRUCTION_START):
        return f"{section}\n\n{prompt}"
    head, mark, instruction = prompt.rpartition(f"\n\n{_INSTRUCTION_START}")
    if not mark:
        return f"{prompt.rstrip()}\n\n{section}" if prompt.strip() else section
    return f"{head}\n\n{section}{mark}{instruction}"
