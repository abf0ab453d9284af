"""The speed levers the latency benchmark can switch, and the engines and settings of each mix.

A ``Levers`` value says which of the speed measures are on; ``BEFORE`` has none (Parley as it
was before them), ``AFTER`` all of them (today's defaults). The benchmark compares mixes inside
one run, turn by turn, so the noise of a shared machine falls on both alike.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from assistant.config import DEFAULT_SYSTEM_PROMPT, Settings
from assistant.engines.base import LanguageModel, Message, SpeechToText, TextToSpeech


@dataclass(frozen=True, slots=True)
class Levers:
    """Each speed measure, on or off (the defaults are the product's settings)."""

    #: Push-to-talk: prepare the reply during a pause while the key is held; the release then
    #: reuses the transcript instead of decoding the words again.
    ptt_speculation: bool = True
    #: Start speaking with the first short phrase instead of the first clause or sentence.
    first_phrase: bool = True
    #: The language model generates with one thread on two cores.
    llm_one_thread: bool = True
    #: ... and reads the prompt with one thread too.
    prompt_one_thread: bool = True
    #: The language model reads the system prompt into its cache as soon as it is up.
    warm_prompt: bool = True
    #: The tool router asks for one token after ``{"tool": "`` first, and uses the grammar only
    #: when that is not ``none``.
    router_probe: bool = True

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def without(self, name: str) -> Levers:
        if name not in self.names():
            raise ValueError(f"unknown lever {name!r}; known: {', '.join(self.names())}")
        return dataclasses.replace(self, **{name: False})


BEFORE = Levers(**dict.fromkeys(Levers.names(), False))
AFTER = Levers()


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    levers: Levers = AFTER
    #: Extra settings, as ("section.key", value) pairs (a dial of a curve).
    dials: tuple[tuple[str, Any], ...] = field(default_factory=tuple)

    def settings(self, language: str, turn_mode: str) -> Settings:
        """Settings for one turn of this mix."""
        settings = Settings(language=language, turn_mode=turn_mode)  # type: ignore[arg-type]
        if not self.levers.ptt_speculation:
            settings.push_to_talk.speculative_silence_ms = 0
        settings.quick_first_phrase = self.levers.first_phrase
        for path, value in self.dials:
            set_dial(settings, path, value)
        return settings

    def stt_options(self) -> dict[str, Any]:
        # As the app builds it for an English user: other languages' model loads later.
        return {"language": "en"}

    def llm_options(self) -> dict[str, Any]:
        from assistant.engines.local.llm import default_threads

        threads, threads_batch = default_threads()
        options: dict[str, Any] = {
            "threads": threads if self.levers.llm_one_thread else 2,
            "threads_batch": threads_batch if self.levers.prompt_one_thread else 2,
        }
        if not self.levers.router_probe:
            options["continues_reply"] = False
        if self.levers.warm_prompt:
            options["warm_prompt"] = (Message("system", DEFAULT_SYSTEM_PROMPT),)
        return options

    def tts_options(self) -> dict[str, Any]:
        return {}


Engines = tuple[SpeechToText, LanguageModel, TextToSpeech]


def build_engines(variants: list[Variant]) -> dict[str, Engines]:
    """Fresh, unwarmed local engines for each mix; mixes whose options agree share an engine."""
    from assistant.engines.local.llm import LocalLLM
    from assistant.engines.local.stt import LocalSTT
    from assistant.engines.local.tts import LocalTTS

    made: dict[tuple[str, str], Any] = {}

    def one(kind: str, options: dict[str, Any], make: Any) -> Any:
        key = (kind, repr(sorted(options.items())))
        if key not in made:
            made[key] = make(**options)
        return made[key]

    return {
        v.name: (
            one("stt", v.stt_options(), LocalSTT),
            one("llm", v.llm_options(), LocalLLM),
            one("tts", v.tts_options(), LocalTTS),
        )
        for v in variants
    }


def set_dial(settings: Settings, path: str, value: Any) -> None:
    """Set ``section.key`` (or a top-level ``key``) of ``settings`` to ``value``."""
    *sections, key = path.split(".")
    target: Any = settings
    for section in sections:
        target = getattr(target, section)
    if not hasattr(target, key):
        raise ValueError(f"no setting {path!r}")
    current = getattr(target, key)
    if isinstance(current, bool) and isinstance(value, str):
        value = value.strip().lower() in ("1", "true", "yes", "on")
    elif current is not None:
        value = type(current)(value)
    setattr(target, key, value)


def parse_curve(spec: str) -> tuple[str, list[str]]:
    """``vad.smart_turn_end=0.6,0.8`` → ("vad.smart_turn_end", ["0.6", "0.8"])."""
    path, _, values = spec.partition("=")
    if not path or not values:
        raise ValueError(f"a curve is DIAL=V1,V2,…, e.g. vad.smart_turn_end=0.6,0.8; got {spec!r}")
    set_dial(Settings(), path, values.split(",")[0])  # fails early on an unknown dial
    return path, values.split(",")
