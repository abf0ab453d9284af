"""What the turn-taking scenarios say, in every language Parley converses in.

Plain data, read by ``assistant.bench.turn_audio`` (which speaks it with the offline voices) and
by ``parley bench turns`` and the tests (which check what Parley did with it):

- ``PAUSES``: a request said in two parts with a thinking pause after an unfinished phrase.
  Most parts stop on a word a sentence cannot end on ("for", "the", "and"); some stop where
  only the meaning says the sentence goes on ("the difference between").
- ``QUESTIONS``: finished questions and commands, answered as soon as possible.
- ``BACKCHANNELS``: what a listener says over a reply without taking the floor.
- ``BARGE_INS``: real requests said over a reply; ``STOPS``: short commands that stop it.
- ``STORY``: a request whose answer is long enough to be talked over.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Paused:
    """``first`` + a thinking pause + ``rest``: one request, which must become one turn."""

    language: str
    first: str
    rest: str
    #: Only the meaning says ``first`` is unfinished (no trailing function word).
    semantic: bool = False

    @property
    def text(self) -> str:
        return f"{self.first} {self.rest}"


@dataclass(frozen=True, slots=True)
class Said:
    language: str
    text: str


PAUSES: tuple[Paused, ...] = (
    Paused("en", "I'd like to book a table for", "four people at seven."),
    Paused("en", "Can you tell me the", "opening hours of the museum?"),
    Paused("en", "Set an alarm for six and", "turn off the kitchen lights."),
    Paused("en", "What's the difference between", "a crocodile and an alligator?", True),
    Paused("en", "Remind me to call", "my sister tomorrow morning.", True),
    Paused("en", "So I was thinking, um,", "could you recommend a good book?"),
    Paused("de", "Ich möchte einen Tisch für", "vier Personen um sieben Uhr reservieren."),
    Paused("de", "Stell einen Wecker auf sechs Uhr und", "mach das Licht in der Küche aus."),
    Paused("de", "Was ist der Unterschied zwischen", "einem Krokodil und einem Alligator?", True),
    Paused("fr", "Je voudrais réserver une table pour", "quatre personnes à sept heures."),
    Paused("fr", "Mets un réveil à six heures et", "éteins la lumière de la cuisine."),
    Paused("fr", "Quelle est la différence entre", "un crocodile et un alligator ?", True),
    Paused("es", "Quiero reservar una mesa para", "cuatro personas a las siete."),
    Paused("es", "Pon una alarma a las seis y", "apaga las luces de la cocina."),
    Paused("es", "¿Cuál es la diferencia entre", "un cocodrilo y un caimán?", True),
    Paused("it", "Vorrei prenotare un tavolo per", "quattro persone alle sette."),
    Paused("it", "Metti una sveglia alle sei e", "spegni la luce della cucina."),
    Paused("it", "Qual è la differenza tra", "un coccodrillo e un alligatore?", True),
    Paused("pt", "Eu queria reservar uma mesa para", "quatro pessoas às sete horas."),
    Paused("pt", "Coloque um alarme para as seis e", "apague as luzes da cozinha."),
    Paused("nl", "Ik wil graag een tafel reserveren voor", "vier personen om zeven uur."),
    Paused("nl", "Zet een wekker om zes uur en", "doe het licht in de keuken uit."),
    Paused("nl", "Wat is het verschil tussen", "een krokodil en een alligator?", True),
)

QUESTIONS: tuple[Said, ...] = (
    Said("en", "What is the capital of France?"),
    Said("en", "How tall is Mount Everest?"),
    Said("en", "Turn off the kitchen lights."),
    Said("en", "What are you waiting for?"),
    Said("de", "Was ist die Hauptstadt von Italien?"),
    Said("de", "Wie spät ist es?"),
    Said("fr", "Quelle est la capitale de l'Espagne ?"),
    Said("fr", "Raconte-moi une blague."),
    Said("es", "¿Cuál es la capital de Alemania?"),
    Said("es", "¿Qué hora es?"),
    Said("it", "Qual è la capitale della Francia?"),
    Said("pt", "Qual é a capital da Itália?"),
    Said("nl", "Wat is de hoofdstad van Spanje?"),
)

BACKCHANNELS: tuple[Said, ...] = (
    Said("en", "Uh-huh."),
    Said("en", "Mm-hmm."),
    Said("en", "Yeah."),
    Said("en", "Okay."),
    Said("en", "Right."),
    Said("de", "Ja."),
    Said("de", "Genau."),
    Said("fr", "Oui."),
    Said("fr", "D'accord."),
    Said("es", "Sí."),
    Said("es", "Vale."),
    Said("it", "Sì."),
    Said("it", "Certo."),
    Said("pt", "Sim."),
    Said("nl", "Ja."),
)

BARGE_INS: tuple[Said, ...] = (
    Said("en", "Actually, what's the weather like tomorrow?"),
    Said("en", "Sorry, can you tell me a joke instead?"),
    Said("de", "Moment, wie wird das Wetter morgen?"),
    Said("fr", "En fait, quel temps fera-t-il demain ?"),
    Said("es", "Perdona, ¿qué tiempo hará mañana?"),
    Said("it", "Scusa, che tempo farà domani?"),
    Said("pt", "Desculpa, como vai estar o tempo amanhã?"),
    Said("nl", "Sorry, wat voor weer wordt het morgen?"),
)

STOPS: tuple[Said, ...] = (
    Said("en", "Stop."),
    Said("en", "Wait."),
    Said("de", "Stopp."),
    Said("fr", "Arrête."),
    Said("es", "Para."),
    Said("it", "Basta."),
    Said("pt", "Pare."),
    Said("nl", "Stop."),
)

#: Asked before an interjection, so that there is a long reply to talk over.
STORY: dict[str, str] = {
    "en": "Tell me a long story about a dragon who learns to cook.",
    "de": "Erzähl mir eine lange Geschichte über einen Drachen, der kochen lernt.",
    "fr": "Raconte-moi une longue histoire sur un dragon qui apprend à cuisiner.",
    "es": "Cuéntame una historia larga sobre un dragón que aprende a cocinar.",
    "it": "Raccontami una lunga storia su un drago che impara a cucinare.",
    "pt": "Conta-me uma história longa sobre um dragão que aprende a cozinhar.",
    "nl": "Vertel me een lang verhaal over een draak die leert koken.",
}

#: The languages the scenarios cover (every one ``assistant.turns.words`` knows).
LANGUAGES = ("en", "de", "fr", "es", "it", "pt", "nl")
