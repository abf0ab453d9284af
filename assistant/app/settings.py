"""Settings as the app uses them: loaded once with a notice when the file was unusable, saved on
every change, and compared so that a change rebuilds only what it has to."""

from __future__ import annotations

from dataclasses import dataclass

from assistant import config
from assistant.app import messages
from assistant.app.engines import changed_kinds
from assistant.config import Settings


def load() -> tuple[Settings, str | None]:
    """The saved settings, or the defaults; the second value is a notice for the user, if any."""
    try:
        loaded = config.load_settings()
    except OSError as exc:
        return Settings(), messages.settings_unreadable(exc)
    return loaded.settings, loaded.notice


def save(settings: Settings) -> str | None:
    """Write the settings file; a message for the user when that failed."""
    try:
        config.save_settings(settings)
    except OSError as exc:
        return messages.settings_unsaved(exc)
    return None


def _session_key(s: Settings) -> tuple[object, ...]:
    """Settings a running session reads only when it is built."""
    return (
        s.output_device,
        s.vad,
        s.push_to_talk,
        s.interruption,
        s.budgets,
        s.system_prompt,
        s.context_tokens,
        s.quick_first_phrase,
        s.voice,
        s.language,
        s.s2s,  # a speech-to-speech session starts with its voice, greeting, turn detection
    )


@dataclass(frozen=True, slots=True)
class SettingsChange:
    """What a change of settings needs, from the most to the least work."""

    #: The kinds of engine to build anew (``assistant.app.engines.KINDS``); the others stay.
    rebuild: frozenset[str]
    #: A new session (and player) on the same or new engines; the conversation is kept.
    reopen_session: bool
    restart_input: bool
    turn_mode_changed: bool
    #: Echo cancellation or noise suppression changed: the microphone's processor is re-made
    #: (the conversation and the devices stay).
    reconfigure_echo: bool = False

    @property
    def rebuild_engines(self) -> bool:
        return bool(self.rebuild)


def compare(old: Settings, new: Settings, *, keys_changed: bool = False) -> SettingsChange:
    """``keys_changed``: an API key was stored or removed, so engines that read keys when built
    must be rebuilt."""
    rebuild = changed_kinds(old, new, keys_changed=keys_changed)
    return SettingsChange(
        rebuild=rebuild,
        reopen_session=bool(rebuild) or _session_key(old) != _session_key(new),
        restart_input=old.input_device != new.input_device,
        turn_mode_changed=old.turn_mode != new.turn_mode,
        reconfigure_echo=(old.echo_cancellation, old.noise_suppression)
        != (new.echo_cancellation, new.noise_suppression),
    )
