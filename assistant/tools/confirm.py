"""Is a reply to "Shall I go ahead?" a yes, a no, or something else?

An answer counts as *yes* (or *no*) only when every word in it belongs to a yes (or no)
expression of the conversation's language or of English, apart from politeness and hesitation
("yes please", "nein danke", "uh, okay"). Anything else — "no, make it ten minutes", a new
question — is ``UNCLEAR``: the action is not taken and the words are answered as a new turn.
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum


class Verdict(StrEnum):
    YES = "yes"
    NO = "no"
    UNCLEAR = "unclear"


_YES: dict[str, tuple[str, ...]] = {
    "en": (
        "yes", "yeah", "yep", "yup", "sure", "ok", "okay", "alright", "all right", "go ahead",
        "do it", "go for it", "please do", "of course", "absolutely", "correct", "right",
        "that's right", "sounds good", "confirm", "confirmed", "affirmative", "yes do it",
    ),
    "de": (
        "ja", "jawohl", "klar", "genau", "gerne", "gern", "mach", "mach das", "mach es",
        "mach mal", "los", "ja bitte", "natürlich", "sicher", "einverstanden", "richtig", "okay",
        "in ordnung", "passt",
    ),
    "fr": (
        "oui", "ouais", "d'accord", "bien sûr", "vas-y", "allez-y", "vas y", "allez y", "fais-le",
        "fais le", "faites-le", "c'est ça", "exactement", "volontiers", "parfait", "ok",
    ),
    "es": (
        "sí", "si", "claro", "vale", "de acuerdo", "hazlo", "adelante", "por supuesto", "exacto",
        "correcto", "venga", "dale", "ok",
    ),
    "it": (
        "sì", "si", "certo", "va bene", "d'accordo", "procedi", "fallo", "vai", "ok", "esatto",
        "certamente", "perfetto", "volentieri",
    ),
}  # fmt: skip

_NO: dict[str, tuple[str, ...]] = {
    "en": (
        "no", "nope", "nah", "don't", "do not", "don't do it", "cancel", "stop", "never mind",
        "nevermind", "not now", "no way", "negative", "forget it", "leave it", "not really",
    ),
    "de": (
        "nein", "nee", "nö", "lieber nicht", "nicht", "abbrechen", "stopp", "lass es",
        "lass das", "bloß nicht", "auf keinen fall", "vergiss es", "nicht jetzt",
    ),
    "fr": (
        "non", "pas maintenant", "annule", "annuler", "laisse tomber", "surtout pas",
        "ne le fais pas", "pas question", "arrête",
    ),
    "es": (
        "no", "mejor no", "cancela", "cancelar", "déjalo", "para", "ni hablar", "no lo hagas",
        "ahora no",
    ),
    "it": (
        "no", "meglio di no", "annulla", "lascia perdere", "lascia stare", "non farlo",
        "non ora", "fermati", "assolutamente no",
    ),
}  # fmt: skip

#: Expressions that do not change the answer: politeness, hesitation, address.
_NEUTRAL = (
    "please", "thanks", "thank you", "uh", "um", "erm", "hmm", "well", "oh", "just", "parley",
    "bitte", "danke", "äh", "ähm", "also", "merci", "s'il te plaît", "s'il vous plaît", "euh",
    "ben", "por favor", "gracias", "eh", "pues", "grazie", "per favore", "ehm", "beh",
)  # fmt: skip

_WORD = re.compile(r"[\w'’-]+", re.UNICODE)


def _words(text: str) -> list[str]:
    text = unicodedata.normalize("NFC", text.lower()).replace("’", "'")
    return _WORD.findall(text)


def _phrase_words(phrases: tuple[str, ...]) -> list[list[str]]:
    # Longest first, so "don't do it" is taken whole before "don't".
    return sorted((_words(p) for p in phrases), key=len, reverse=True)


def _match(words: list[str], i: int, phrases: list[list[str]]) -> int:
    """The length of the phrase that starts at ``words[i]`` (0 if none does)."""
    for phrase in phrases:
        if words[i : i + len(phrase)] == phrase:
            return len(phrase)
    return 0


def _covered(words: list[str], phrases: list[list[str]]) -> bool:
    """Every word belongs to one of ``phrases`` or is neutral, and at least one phrase matched."""
    neutral = _phrase_words(_NEUTRAL)
    i, matched = 0, False
    while i < len(words):
        if n := _match(words, i, phrases):
            matched = True
        elif not (n := _match(words, i, neutral)):
            return False
        i += n
    return matched


def classify(text: str, language: str = "en") -> Verdict:
    """The verdict of ``text`` as an answer to a yes/no question."""
    lang = language.split("-")[0].lower()
    words = _words(text)
    if not words:
        return Verdict.UNCLEAR
    langs = dict.fromkeys((lang, "en"))
    yes = _phrase_words(tuple(p for code in langs for p in _YES.get(code, ())))
    no = _phrase_words(tuple(p for code in langs for p in _NO.get(code, ())))
    if _covered(words, no):
        return Verdict.NO
    if _covered(words, yes):
        return Verdict.YES
    return Verdict.UNCLEAR
