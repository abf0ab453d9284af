"""A JSON object extracted from each turn, beside the spoken reply, for code to consume.

When enabled, every answered turn also gets an object that matches a JSON Schema — by default
the classification ``{intent, urgency, escalate, summary}``. The session starts the extraction
once the reply's text is complete (the model is free again; the user is still listening), so it
never delays the answer, and stores the object with the turn.

The request reuses the reply's own prompt (system prompt, history, the user's words, the
answer) and adds one instruction at the end, so a local model finds all of it in its prompt
cache and the next turn's prompt stays cached too. The model answers under a
``response_format`` grammar; the answer is checked with a real JSON Schema validator
(``jsonschema``). An invalid answer is asked for once more, with the reason; a second failure
is recorded as the turn's ``structured_error`` and never fails the turn.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

from assistant.engines.base import (
    ChatRequest,
    EngineError,
    LanguageModel,
    Message,
    TextDelta,
    closing_stream,
)

log = logging.getLogger(__name__)

#: The seeds' classification of a customer's turn.
DEFAULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "intent": {"type": "string", "description": "what the user wants, in a few words"},
        "urgency": {"type": "string", "enum": ["low", "medium", "high"]},
        "escalate": {
            "type": "boolean",
            "description": "true when a human should take over",
        },
        "summary": {"type": "string", "description": "the turn in one sentence"},
    },
    "required": ["intent", "urgency", "escalate", "summary"],
    "additionalProperties": False,
}

INSTRUCTION = (
    "Do not answer the user. Describe the user's last message and your reply as one JSON "
    "object that matches this JSON Schema:\n{schema}"
)
#: Room for the object; a schema needing more is unusual for a per-turn record.
MAX_TOKENS = 300


class SchemaError(ValueError):
    """The configured schema is not a valid JSON Schema (or cannot be read)."""


@dataclass(frozen=True, slots=True)
class Extraction:
    data: dict[str, Any] | None
    error: str | None = None
    attempts: int = 1


def check_schema(schema: Any) -> dict[str, Any]:
    """``schema`` if it is a valid JSON Schema for an object; else ``SchemaError``."""
    if not isinstance(schema, dict):
        raise SchemaError("the structured-output schema must be a JSON object")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise SchemaError(f"the structured-output schema is invalid: {exc.message}") from None
    if schema.get("type", "object") != "object":
        raise SchemaError('the structured-output schema must describe an object ("type": "object")')
    return schema


def load_schema(path: Path) -> dict[str, Any]:
    """Read and check a schema file; ``SchemaError`` with a one-line reason otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SchemaError(f"cannot read the schema file {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise SchemaError(f"the schema file {path} is not valid JSON ({exc})") from None
    return check_schema(data)


class StructuredExtractor:
    """Extracts one object per turn with ``llm`` (see the module docstring)."""

    def __init__(self, llm: LanguageModel, schema: Mapping[str, Any] | None = None) -> None:
        self.llm = llm
        self.schema = check_schema(dict(schema) if schema is not None else DEFAULT_SCHEMA)
        validator_class = jsonschema.validators.validator_for(self.schema)
        self._validator = validator_class(self.schema)

    def validate(self, text: str) -> tuple[dict[str, Any] | None, str | None]:
        """(object, None) when ``text`` is JSON matching the schema, else (None, reason)."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            return None, f"not JSON ({exc.args[0] if exc.args else exc})"
        error = jsonschema.exceptions.best_match(self._validator.iter_errors(data))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "the object"
            return None, f"{where}: {error.message}"
        return data, None

    async def extract(self, conversation: Sequence[Message], answer: str) -> Extraction:
        """The object for the turn that ends ``conversation`` and was answered with ``answer``.

        Never raises for the model's mistakes or failures: they come back as ``error``.
        """
        instruction = INSTRUCTION.format(schema=json.dumps(self.schema, ensure_ascii=False))
        messages = [*conversation, Message("assistant", answer), Message("system", instruction)]
        reason = ""
        for attempt in (1, 2):
            if reason:
                retry = f"That was not valid: {reason}. Reply again with the corrected JSON only."
                messages = [*messages, Message("system", retry)]
            try:
                text = await self._ask(messages)
            except EngineError as exc:
                return Extraction(None, f"the extraction request failed: {exc}", attempt)
            data, error = self.validate(text)
            if data is not None:
                return Extraction(data, None, attempt)
            reason = error or "invalid"
            log.info("structured output attempt %d invalid: %s", attempt, reason)
            messages = [*messages, Message("assistant", text)]
        return Extraction(None, f"invalid JSON from the model twice: {reason}", 2)

    async def _ask(self, messages: list[Message]) -> str:
        request = ChatRequest(
            messages,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "turn", "schema": self.schema},
            },
            max_tokens=MAX_TOKENS,
            temperature=0.0,
        )
        parts: list[str] = []
        stream = self.llm.stream(request)
        async with closing_stream(stream):
            async for event in stream:
                if isinstance(event, TextDelta):
                    parts.append(event.text)
        return "".join(parts)
