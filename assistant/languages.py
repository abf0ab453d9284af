"""The languages Parley can hold a conversation in, and what each has.

A conversation needs three things in a language: speech recognition, a voice, and a language
model that answers in it. With cloud engines the provider decides; the offline engines were
measured (``scripts/measure_languages.py``: three questions per language spoken by the offline
voice, recognized by Whisper base, and answered by the packaged Qwen2.5-Coder 1.5B with the
reply-language instruction of ``assistant/prompt.py``). Only languages that passed all three are
offered, each marked with how good its parts are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from assistant.config import Settings

Quality = Literal["good", "fair"]

#: English names (the model is told the language by name) and each language's own name.
NAMES: dict[str, tuple[str, str]] = {
    "ar": ("Arabic", "العربية"),
    "cs": ("Czech", "Čeština"),
    "de": ("German", "Deutsch"),
    "en": ("English", "English"),
    "es": ("Spanish", "Español"),
    "fr": ("French", "Français"),
    "hi": ("Hindi", "हिन्दी"),
    "id": ("Indonesian", "Bahasa Indonesia"),
    "it": ("Italian", "Italiano"),
    "ja": ("Japanese", "日本語"),
    "ko": ("Korean", "한국어"),
    "nl": ("Dutch", "Nederlands"),
    "pl": ("Polish", "Polski"),
    "pt": ("Portuguese", "Português"),
    "ru": ("Russian", "Русский"),
    "sv": ("Swedish", "Svenska"),
    "tr": ("Turkish", "Türkçe"),
    "uk": ("Ukrainian", "Українська"),
    "vi": ("Vietnamese", "Tiếng Việt"),
    "zh": ("Chinese", "中文"),
}
#: Languages the offline voices speak in more than one accent: (tag, name), the bare language
#: first (it keeps the default voice, so "en" in the settings stays "en").
OFFLINE_ACCENTS = {"en": (("en", "English (US)"), ("en-GB", "English (UK)"))}


def base_language(tag: str) -> str:
    """``"en-GB"`` → ``"en"``."""
    return tag.replace("_", "-").split("-", 1)[0].lower()


def language_name(tag: str) -> str:
    """The language's English name (the tag itself when it is not one Parley knows)."""
    return NAMES.get(base_language(tag), (tag, tag))[0]


@dataclass(frozen=True, slots=True)
class LanguageSupport:
    """One language as the picker shows it: what recognizes, speaks and answers it.

    ``None`` for a part means a cloud provider's engine does it.
    """

    code: str
    name: str
    native: str
    recognition: Quality | None
    voice: str | None  # "Piper (natural)", "SVOX Pico (clear)", "eSpeak NG (robotic)"
    answers: Quality | None

    @property
    def label(self) -> str:
        native = f" — {self.native}" if not self.name.startswith(self.native) else ""
        return f"{self.name}{native}"

    @property
    def brief(self) -> str:
        """What it has, in a few words: its voice, how well it is understood and answered."""
        voice = f"{self.voice} voice" if self.voice else "the provider's voice"
        heard = f"recognition {self.recognition}" if self.recognition else "provider recognition"
        answers = f"answers {self.answers}" if self.answers else "provider model"
        return f"{voice} · {heard} · {answers}"

    @property
    def marks(self) -> str:
        """The same, in full sentences' worth."""
        heard = f"Whisper, {self.recognition}" if self.recognition else "the provider's"
        voice = self.voice or "the provider's"
        answers = self.answers or "the provider's model"
        return f"Recognition: {heard} · Voice: {voice} · Answers: {answers}"


#: The offline engines, measured: (recognition by Whisper, answers by the packaged model).
#: A mean character error rate of recognition under 10 % counts as good, under 25 % as fair
#: (two runs, averaged); answers in the language 3 times of 3 as good, 2 of 3 as fair. Left out
#: for now: Polish (recognition 40 %), Portuguese (38 %), Vietnamese (45 %), Dutch, Swedish,
#: Czech, Turkish, Ukrainian, Chinese, Japanese, Korean, Arabic and Hindi (32-99 %). Their
#: offline voice is eSpeak NG, whose speech Whisper base often mishears, so a question spoken
#: by a person may fare better than measured here.
OFFLINE: dict[str, tuple[Quality, Quality]] = {
    "en": ("good", "good"),  # recognition 0 % (English model), answers 3/3
    "de": ("good", "good"),  # 1 %, 3/3
    "es": ("good", "good"),  # 0 %, 3/3
    "fr": ("good", "good"),  # 9 %, 3/3
    "it": ("good", "good"),  # 1 %, 3/3
    "id": ("fair", "good"),  # 20 %, 3/3
    "ru": ("fair", "good"),  # 22 %, 3/3
}

#: The offline voice engine of each language, best first (``engines/local/voices.py``).
_VOICES = {
    "piper": "Piper (natural)",
    "pico": "SVOX Pico (clear)",
    "espeak": "eSpeak NG (robotic)",
}


def _offline_voice(code: str) -> str | None:
    try:
        from assistant.engines.local.voices import list_voices
    except ImportError:  # the offline voices are not installed
        return None
    try:
        found = list_voices(code)
    except Exception:
        return None
    return _VOICES.get(found[0].engine) if found else None


def conversation_languages(settings: Settings) -> list[LanguageSupport]:
    """The languages a conversation can be held in with the engines ``settings`` choose.

    A language is offered when speech recognition, a voice and the language model all handle
    it; cloud engines are taken to handle every language listed in ``NAMES``.
    """
    offline_stt = settings.stt == "local"
    offline_llm = settings.llm == "local"
    offline_tts = settings.tts == "local"
    out: list[LanguageSupport] = []
    for base, (english, native) in NAMES.items():
        measured = OFFLINE.get(base)
        if (offline_stt or offline_llm) and measured is None:
            continue
        heard, answered = measured or ("good", "good")
        accents = (
            OFFLINE_ACCENTS.get(base, ((base, english),)) if offline_tts else ((base, english),)
        )
        for code, name in accents:
            voice = _offline_voice(code) if offline_tts else None
            if offline_tts and voice is None:
                continue
            out.append(
                LanguageSupport(
                    code=code,
                    name=name,
                    native=native,
                    recognition=heard if offline_stt else None,
                    voice=voice,
                    answers=answered if offline_llm else None,
                )
            )
    return sorted(out, key=lambda lang: lang.name)


def find(settings: Settings, code: str) -> LanguageSupport | None:
    """The entry of ``code`` (exactly, or by its base language) among the offered ones."""
    offered = conversation_languages(settings)
    exact = next((lang for lang in offered if lang.code.lower() == code.lower()), None)
    if exact is not None:
        return exact
    return next((lang for lang in offered if base_language(lang.code) == base_language(code)), None)


def whisper_codes(settings: Settings) -> frozenset[str]:
    """The base languages offered, as speech recognition's detection may choose among them."""
    return frozenset(base_language(lang.code) for lang in conversation_languages(settings))
