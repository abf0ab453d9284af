"""What the app tells the user, in one place: every sentence says what happened and what to do.

The ``source`` strings go with each message (``ErrorEvent.source``/``Notice.source``): a view
offers "Retry" for the audio sources and "Open settings" for the settings and engine ones.
"""

from __future__ import annotations

from pathlib import Path

from assistant import mic_access
from assistant.engines.base import EngineError

NOT_READY = "Parley is still loading its engines; talking will work as soon as they are ready."
NOT_READY_TO_SEND = "Parley is still loading its engines; send your message again in a moment."
NO_MICROPHONE = (
    "No microphone is capturing, so Parley cannot hear you. Connect one and choose Retry, or "
    "type your message below."
)
NOT_LISTENING = (
    "Speech recognition is not running; check the speech engine in Settings, or type your "
    "message below."
)
SETTINGS_APPLIED = "Settings saved and applied."
OUTPUT_KEEPS_FAILING = (
    "The audio output device keeps failing as soon as it opens; replies are shown as text only "
    "until you reconnect it and choose Retry."
)
ALARM_LATE = "it fell due while Parley was closed"


def describe(exc: BaseException) -> str:
    """An exception as one sentence (the class name only where the text alone would puzzle)."""
    text = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, EngineError | OSError | ValueError):
        text = f"{type(exc).__name__}: {text}"
    return text if text.endswith((".", "!", "?")) else text + "."


def settings_unreadable(exc: BaseException) -> str:
    return f"Cannot read the settings file ({exc}); using the defaults."


def settings_unsaved(exc: BaseException) -> str:
    return f"Could not save the settings: {exc}"


def history_unavailable(directory: Path, exc: BaseException) -> str:
    return (
        f"Cannot open the conversation history in {directory} ({exc}); this conversation is kept "
        "in memory and saved there as soon as the folder can be written."
    )


def new_conversation_failed(exc: BaseException) -> str:
    return f"Cannot start a new conversation file: {exc}"


def history_unreadable(exc: BaseException) -> str:
    return f"Cannot read the list of conversations: {describe(exc)}"


def conversation_not_opened(exc: BaseException) -> str:
    return f"Cannot open that conversation: {describe(exc)} The current one stays open."


def conversation_not_renamed(exc: BaseException) -> str:
    return f"Cannot rename the conversation: {describe(exc)}"


def conversation_not_deleted(exc: BaseException) -> str:
    return f"Cannot delete the conversation: {describe(exc)} It is kept."


def conversation_not_restored(exc: BaseException) -> str:
    return f"Cannot bring the conversation back: {describe(exc)}"


def conversation_not_exported(path: Path, exc: BaseException) -> str:
    return f"Cannot export the conversation to {path}: {describe(exc)}"


def engines_unusable(exc: BaseException) -> str:
    return f"Cannot set up the engines: {describe(exc)} Choose other engines in Settings."


def missing_key(kind: str, provider: str) -> str:
    return (
        f"{provider} ({kind}) has no API key, so it cannot work: add the key in Settings → API "
        f"keys → {provider}, or choose an offline engine."
    )


def long_message(characters: int, seconds: float | None) -> str:
    wait = f"about {seconds:.0f} s" if seconds is not None else "a while"
    return (
        f"That is a long message ({characters:,} characters): reading it takes {wait} before "
        "the answer starts."
    )


def engine_not_loaded(kind: str, exc: BaseException) -> str:
    return f"The {kind} engine could not load: {describe(exc)}"


def not_listening(exc: BaseException) -> str:
    return f"Speech recognition could not start: {describe(exc)} You can still type."


def no_output(exc: BaseException) -> str:
    detail = _device_failure(
        exc, ("no audio output device",), "No audio output device could be opened"
    )
    return f"{detail} Replies are shown as text only until a speaker works (Retry)."


def no_input(exc: BaseException) -> str:
    detail = _device_failure(
        exc,
        ("no audio input device", "cannot open audio input"),
        "No microphone could be opened",
    )
    return f"{detail} You can still type messages."


def _device_failure(exc: BaseException, says: tuple[str, ...], otherwise: str) -> str:
    """The device error's own words when they already say what failed (they start with one of
    ``says``, in any case), else ``otherwise`` with the error in brackets."""
    detail = str(exc).strip()
    if detail.lower().startswith(says):
        return detail
    return f"{otherwise} ({describe(exc)})"


def input_failed(exc: BaseException) -> str:
    return f"Audio input failed: {describe(exc)}"


def output_lost(message: str) -> str:
    return f"{message} Replies continue as text; choose Retry after reconnecting."


def input_lost(message: str) -> str:
    return f"{message} Choose Retry after reconnecting it, or type below."


def microphone_silent() -> str:
    """The microphone is open but delivers nothing but silence (see ``mic_access``)."""
    return f"The microphone sends only silence. {mic_access.microphone_help()}"


def _device_name(setting: str) -> str:
    return setting.removeprefix("pulse:")


def input_substituted(setting: str) -> str:
    return (
        f"The chosen microphone ({_device_name(setting)}) is not connected; the system default "
        "is used until it is."
    )


def output_substituted(setting: str) -> str:
    return (
        f"The chosen speaker ({_device_name(setting)}) is not connected; the system default "
        "plays until it is."
    )


def devices_back(kind: str, label: str) -> str:
    what = "microphone" if kind == "input" else "speaker"
    return f"The {what} {label} is connected: Parley uses it now."


def echo_unavailable(reason: str) -> str:
    return (
        f"Echo cancellation is not available on this computer ({reason}). Hands-free still "
        "works, but use headphones: on speakers Parley waits for your words before it stops "
        "talking."
    )
