"""What a transcript says about turn-taking, in each language Parley converses in.

Three questions, answered from words alone (the audio models answer them from sound):

- Over the assistant's reply, was that an interruption? ``classify_interjection`` tells a
  *stop* command ("stop", "wait", "halt" and their translations: always interrupts, and is not
  itself answered), a *backchannel* ("mhm", "uh-huh", "uh-uh", "yeah", "right", "okay" said
  alone: never interrupts), plain *words* (a real barge-in) and *nothing* (a noise).
- At a pause, does the sentence sound unfinished? ``trails_off`` is true when the last word is
  one a sentence cannot end on: a conjunction, an article, most prepositions, a possessive or a
  hesitation ("and", "the", "for", "um"). A question mark after it (Whisper's "Who is it for?")
  overrides it.
- Could the assistant's own voice, heard back through the microphone, have said it?
  ``not_said`` keeps the words of a transcript that the assistant did not say, nor anything a
  recognizer could make of them ("Harris" for "Paris", "Francis" for "France is"): only those
  count as the user's while the assistant may be heard.

Languages are matched by their base code ("en-GB" → "en"); English words are always understood
too, since people mix them in.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from enum import StrEnum

from rapidfuzz import fuzz, process

_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")

# Said alone (or only with each other), these acknowledge without taking the floor.
_BACKCHANNELS: dict[str, str] = {
    "en": "mhm mm mmm hmm hm uh um uhm er erm ah oh eh aha mm-hmm mhmm uh-huh uh-uh "
    "yeah yes yep yup ya right okay ok sure alright cool nice wow great true exactly "
    "totally indeed gotcha see got it i see uh huh",
    "de": "ja jaja jap jo genau mhm okay ok stimmt aha ach achso so richtig klar gut super "
    "echt naja hm ähm äh na",
    "fr": "oui ouais ouai d'accord accord mhm ah ok okay voilà bien sûr exactement super hmm "
    "oh ben bon euh je vois c'est ça ça",
    "es": "sí si vale claro ajá aja mhm ya ok bueno exacto vaya ah oh entiendo veo eh este",
    "it": "sì si certo ok mhm già va bene esatto ah oh capito bene giusto vero ehm eh",
    "pt": "sim é isso claro certo ok mhm ah oh pois tá ta beleza entendi",
    "nl": "ja jawel precies oké ok mhm ah oh klopt goed zeker inderdaad hm",
}

# Commands that always stop the assistant. Multi-word entries are phrases.
_STOPS: dict[str, str] = {
    "en": "stop|wait|halt|hold on|hang on|pause|enough|quiet|be quiet|shut up|cancel|"
    "never mind|nevermind|stop it|stop talking",
    "de": "stopp|stop|halt|warte|warten sie|moment|einen moment|genug|ruhe|abbrechen|"
    "hör auf|sei still",
    "fr": "stop|arrête|arrêtez|attends|attendez|assez|tais-toi|taisez-vous|silence|pause",
    "es": "para|pare|alto|espera|espere|basta|detente|cállate|stop|pausa",
    "it": "stop|basta|aspetta|aspetti|fermati|ferma|zitto|silenzio|pausa",
    "pt": "pare|para|espera|espere|chega|basta|stop|pausa|cala",
    "nl": "stop|wacht|halt|genoeg|stil|pauze|hou op",
}
# What Whisper-family recognizers write for sound with no words in it (a muffled echo, a hum):
# the sign-offs of the video subtitles they learned from. Alone, over a reply whose echo may
# not be cancelled yet, they are not taken for the user's words.
_SIGN_OFFS: dict[str, str] = {
    "en": "thank you|thanks|thank you very much|thank you so much|thanks for watching|"
    "thank you for watching|thank you for listening|please subscribe|bye|bye bye|goodbye|"
    "see you next time|you|i'm sorry|subtitles by the amara org community",
    "de": "danke|vielen dank|danke schön|danke fürs zuschauen|tschüss|bis zum nächsten mal|"
    "untertitel im auftrag des zdf|untertitel der amara org community",
    "fr": "merci|merci beaucoup|merci d'avoir regardé|au revoir|à bientôt|"
    "sous-titres réalisés par la communauté d'amara org",
    "es": "gracias|muchas gracias|gracias por ver|adiós|hasta la próxima|"
    "subtítulos realizados por la comunidad de amara org",
    "it": "grazie|grazie mille|grazie a tutti|grazie per la visione|ciao|alla prossima|"
    "sottotitoli creati dalla comunità amara org",
    "pt": "obrigado|obrigada|muito obrigado|obrigado por assistir|tchau|até a próxima|"
    "legendas pela comunidade amara org",
    "nl": "dank je|dank u|bedankt|dank je wel|bedankt voor het kijken|doei|tot de volgende keer|"
    "ondertiteling door de amara org gemeenschap",
}

#: A stop command is short; a longer utterance with a stop word in it is ordinary words.
_STOP_MAX_WORDS = 3

# A sentence does not end on these: articles, conjunctions, possessives, hesitations, and the
# prepositions that are not also verb particles ("turn it on", "mach das Licht an" do end).
# Some can end a question ("who is it for"): a question mark from the recognizer overrides.
_TRAILING: dict[str, str] = {
    "en": "and or but because cause the a an to for of with at from about into onto than by "
    "my your his her its our their um uh er erm like as if whether nor plus very i'm i'd "
    "we're they're you're",
    "de": "und oder aber denn weil dass der die das den dem des ein eine einen einem einer "
    "eines für von vom zum zur im am bei äh ähm mein meine meinen dein deine unser "
    "wenn ob als",
    "fr": "et ou mais donc parce que qui le la les un une des du de d' pour avec dans sur à "
    "au aux euh mon ma mes ton ta tes son sa ses notre votre leur quand comme",
    "es": "y o pero porque que el la los las un una unos unas de del para con en a al por "
    "eh mi mis tu tus su sus nuestro cuando como",
    "it": "e o ma perché che il lo la i gli le un uno una di del della dello dei delle per "
    "con in a al alla su da dal ehm mio mia miei tuo tua suo sua se quando come",
    "pt": "e ou mas porque que o a os as um uma de do da dos das para com em no na por "
    "meu minha seu sua se quando como",
    "nl": "en of maar want omdat de het een van voor met naar mijn jouw als wanneer",
}


class Interjection(StrEnum):
    """What the user said over the assistant."""

    NOTHING = "nothing"  # no words: a noise, a cough, breath
    BACKCHANNEL = "backchannel"  # "mhm", "yeah", "right": listening, not taking the floor
    STOP = "stop"  # a short command to stop: interrupt, do not answer it
    WORDS = "words"  # anything else: a real interruption


def base_language(language: str) -> str:
    return language.replace("_", "-").split("-", 1)[0].lower()


def _fold(text: str) -> str:
    """Lower case, typographic apostrophes made plain."""
    return text.lower().replace("’", "'")


def words_of(text: str) -> list[str]:
    return _WORD.findall(_fold(text))


def _vocabulary(table: dict[str, str], language: str) -> set[str]:
    out = set(table["en"].split())
    out.update(table.get(base_language(language), "").split())
    return out | {_strip_accents(w) for w in out}


def _strip_accents(word: str) -> str:
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _phrases(table: dict[str, str], language: str) -> list[list[str]]:
    """The phrases ``table`` has for English and for ``language`` ("|" between them)."""
    entries = table["en"].split("|") + table.get(base_language(language), "").split("|")
    return [p.split() for p in entries if p]


def _contains(words: list[str], phrase: list[str]) -> bool:
    n = len(phrase)
    return any(words[i : i + n] == phrase for i in range(len(words) - n + 1))


def classify_interjection(text: str, language: str = "en") -> Interjection:
    """Is ``text``, said over the assistant, a stop command, a backchannel or a barge-in?"""
    words = words_of(text)
    if not words:
        return Interjection.NOTHING
    folded = words + [_strip_accents(w) for w in words]
    if len(words) <= _STOP_MAX_WORDS and any(
        _contains(folded, p) for p in _phrases(_STOPS, language)
    ):
        return Interjection.STOP
    backchannels = _vocabulary(_BACKCHANNELS, language)
    if all(w in backchannels or _strip_accents(w) in backchannels for w in words):
        return Interjection.BACKCHANNEL
    return Interjection.WORDS


def only_sign_offs(text: str, language: str = "en") -> bool:
    """True when ``text`` has words and all of them make up recognizer sign-offs ("Thank you.",
    "Thanks for watching!", each as often as it comes): see ``_SIGN_OFFS``."""
    words = [_strip_accents(w) for w in words_of(text)]
    if not words:
        return False
    phrases = {tuple(map(_strip_accents, p)) for p in _phrases(_SIGN_OFFS, language)}
    # Words that only a choice of phrases covers ("thank you" + "you") end where they can.
    ends = {0}
    for i in range(len(words)):
        if i in ends:
            ends.update(i + len(p) for p in phrases if tuple(words[i : i + len(p)]) == p)
    return len(words) in ends


#: Words this short must match one the assistant said exactly ("what" is not "that").
_EXACT_UP_TO = 4
#: Longer ones count as said when this similar (rapidfuzz's ratio, 0-100) to one of its words:
#: an echo misheard ("harris"/"paris" scores 73)...
_SIMILAR = 72.0
#: ...or, from ``_JOINED_FROM`` letters on, this similar to two of them run together
#: ("francis"/"france is" scores 93; "about" is not "a boat").
_SIMILAR_JOINED = 85.0
_JOINED_FROM = 6


def not_said(text: str, said: str) -> str:
    """The words of ``text``, in order, that are not among the words of ``said`` nor sound
    like them (see ``_SIMILAR``)."""
    own = [_strip_accents(w) for w in words_of(said)]
    exact = set(own)
    if not exact:
        return " ".join(words_of(text))
    vocabulary = list(exact)
    joined = list({a + b for a, b in itertools.pairwise(own)})
    kept = []
    for word in words_of(text):
        plain = _strip_accents(word)
        if plain in exact or (len(plain) > _EXACT_UP_TO and _like(plain, vocabulary, _SIMILAR)):
            continue
        if len(plain) >= _JOINED_FROM and _like(plain, joined, _SIMILAR_JOINED):
            continue
        kept.append(word)
    return " ".join(kept)


def _like(word: str, vocabulary: list[str], cutoff: float) -> bool:
    return process.extractOne(word, vocabulary, scorer=fuzz.ratio, score_cutoff=cutoff) is not None


def trails_off(text: str, language: str = "en") -> bool:
    """True when ``text`` stops on a word a sentence cannot end on (it is unfinished)."""
    stripped = text.rstrip()
    if not stripped or stripped.endswith("?"):
        return False
    if stripped.endswith(("...", "…", ",", "-", "–", "—")):
        return True
    words = words_of(stripped)
    if not words:
        return False
    last = words[-1]
    return last in _vocabulary(_TRAILING, language) or _strip_accents(last) in _vocabulary(
        _TRAILING, language
    )
