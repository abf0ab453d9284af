"""The assistant's fixed lines, in each language it speaks (en, de, fr, es, it).

These are said without the language model: the filler while a slow tool runs, the question
before a tool that changes something, the answer to a "no", and the line an alarm speaks.
Unknown languages get English.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Phrases:
    #: Said when a tool takes a while; never part of the answer or of the model's context.
    filler: str
    #: "{action}" is what the tool will do, e.g. "set a timer for 5 minutes".
    confirm: str
    declined: str
    #: The words a confirmation chip stands for, recorded as the user's turn.
    yes: str
    no: str
    timer_done: str
    timer_done_label: str
    reminder: str


PHRASES: dict[str, Phrases] = {
    "en": Phrases(
        filler="One moment.",
        confirm="I'm about to {action}. Shall I go ahead?",
        declined="Okay, I won't.",
        yes="Yes.",
        no="No.",
        timer_done="Your timer is done.",
        timer_done_label="Your {label} timer is done.",
        reminder="Reminder: {label}.",
    ),
    "de": Phrases(
        filler="Einen Moment.",
        confirm="Ich würde jetzt: {action}. Soll ich das tun?",
        declined="Gut, dann nicht.",
        yes="Ja.",
        no="Nein.",
        timer_done="Dein Timer ist abgelaufen.",
        timer_done_label="Dein Timer {label} ist abgelaufen.",
        reminder="Erinnerung: {label}.",
    ),
    "fr": Phrases(
        filler="Un instant.",
        confirm="Je vais {action}. Je continue ?",
        declined="D'accord, je ne le fais pas.",
        yes="Oui.",
        no="Non.",
        timer_done="Votre minuteur est terminé.",
        timer_done_label="Votre minuteur {label} est terminé.",
        reminder="Rappel : {label}.",
    ),
    "es": Phrases(
        filler="Un momento.",
        confirm="Voy a {action}. ¿Lo hago?",
        declined="De acuerdo, no lo haré.",
        yes="Sí.",
        no="No.",
        timer_done="Tu temporizador ha terminado.",
        timer_done_label="Tu temporizador {label} ha terminado.",
        reminder="Recordatorio: {label}.",
    ),
    "it": Phrases(
        filler="Un momento.",
        confirm="Sto per {action}. Procedo?",
        declined="Va bene, non lo faccio.",
        yes="Sì.",
        no="No.",
        timer_done="Il tuo timer è scaduto.",
        timer_done_label="Il tuo timer {label} è scaduto.",
        reminder="Promemoria: {label}.",
    ),
}


def phrases(language: str) -> Phrases:
    """The lines for ``language`` ("de", "de-AT", ...), English when it has none."""
    return PHRASES.get(language.split("-")[0].lower(), PHRASES["en"])
