"""Typed settings, stored as TOML in the platform's config directory.

The file is written atomically (temp file + ``os.replace``). A file that cannot be parsed or does
not validate (bad syntax, a wrong value, absurd nesting) is moved aside (never deleted) and
defaults are used, with a notice for the user; so is one that cannot be read at all, left where
it is. Loading never raises. API keys never live here: see ``secrets.py``.

Only what differs from the defaults is written (also inside each provider's and MCP server's
table), so that a default retuned in a later version reaches everyone who did not choose
otherwise; such a file begins with ``SPARSE_HEADER``. Files written before held every value:
in a file without that first line, a value equal to what a retuned setting's default used to be
(``RETUNED_DEFAULTS``) is read as the default it now is.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import tomllib
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import platformdirs
import tomli_w

from assistant.durable import unused_name
from assistant.timeline import Budgets

APP_NAME = "Parley"

DEFAULT_SYSTEM_PROMPT = (
    "You are Parley, a friendly voice assistant. Your replies are spoken aloud, so answer in "
    "one to three short sentences of plain conversational text: no markdown, no lists, no code, "
    "no emoji. If you are unsure, say so briefly. Ask a short question when the request is unclear."
)

TurnMode = Literal["ptt", "vad"]
EchoCancellation = Literal["on", "auto", "off"]
#: Chained (speech to text → language model → text to speech) or one speech-to-speech engine.
Pipeline = Literal["chained", "s2s"]

#: Documented default endpoint of each provider. ``PARLEY_<PROVIDER>_URL`` overrides any of them.
DEFAULT_ENDPOINTS: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "openai_realtime": "wss://api.openai.com/v1/realtime",
    "openai_compatible": "http://127.0.0.1:11434/v1",
    "assemblyai": "wss://streaming.assemblyai.com/v3/ws",
    "deepgram": "wss://api.deepgram.com/v1/listen",
    "elevenlabs": "wss://api.elevenlabs.io",
    "async": "wss://api.async.com/text_to_speech/websocket/ws",
    # Anthropic's SDK adds /v1/messages itself: the base has no /v1.
    "anthropic": "https://api.anthropic.com",
    "assemblyai_gateway": "https://llm-gateway.assemblyai.com/v1",
    "assemblyai_agent": "wss://agents.assemblyai.com/v1/ws",
}

#: Extra environment variable names accepted for some endpoints (first match wins).
ENDPOINT_ENV_ALIASES: dict[str, tuple[str, ...]] = {
    "openai": ("PARLEY_OPENAI_BASE_URL", "PARLEY_OPENAI_URL"),
    "openai_realtime": ("PARLEY_OPENAI_REALTIME_URL",),
}


class SettingsError(ValueError):
    """A settings file or value is invalid."""


@dataclass(slots=True)
class VadSettings:
    threshold: float = 0.5
    #: Speech shorter than this does not start a turn (clicks, coughs).
    min_speech_ms: int = 200
    #: Silence after speech that ends the user's turn.
    end_silence_ms: int = 600
    #: After this much silence the reply is prepared speculatively (transcript, LLM, TTS) and
    #: held; it plays once the turn really ends, or is dropped if the user goes on. 0 = off.
    speculative_silence_ms: int = 200
    #: Let an end-of-turn model judge each pause by its sound: words that sound finished (and
    #: read finished) end the turn at once; words that sound unfinished wait up to
    #: ``max_end_silence_ms``.
    smart_turn: bool = True
    smart_turn_end: float = 0.8
    smart_turn_wait: float = 0.2
    max_end_silence_ms: int = 1500
    #: Judge each pause by its words too: a sentence that stops on "and", "for", "the"…, or
    #: that the language model reads as unfinished, waits up to ``unfinished_silence_ms`` for
    #: more, however the pause sounded. The model's probability that the sentence ends there
    #: must reach ``text_end`` to read finished; below ``text_wait`` it reads unfinished.
    text_turn: bool = True
    text_end: float = 0.5
    text_wait: float = 0.1
    unfinished_silence_ms: int = 2500
    #: A reading of the words that takes longer than this is no help at a pause: the sound
    #: and the trailing-word cue decide alone (a warm local model takes tens of ms).
    text_timeout_ms: int = 1000
    #: Audio kept from before speech was detected, so the first syllable is not lost.
    preroll_ms: int = 300


@dataclass(slots=True)
class PushToTalkSettings:
    #: While the talk key is still held, a pause this long after speech gets the words
    #: transcribed and the reply prepared (held back); releasing the key then plays it at once
    #: if nothing was said since, otherwise the words decide again. 0 = off.
    speculative_silence_ms: int = 150


@dataclass(slots=True)
class InterruptionSettings:
    enabled: bool = True
    #: User speech while the assistant talks pauses playback at once; it becomes a real
    #: interruption once it lasts this long or the transcript holds words. Longer than a
    #: backchannel ("genau", "uh-huh" last 0.4-0.7 s), which the recognizer would otherwise not
    #: have transcribed yet when the rule fired: a real request has words by then.
    min_duration_ms: int = 800
    #: After a suspected false interruption (a cough, "mhm"), resume if nothing follows in time.
    resume_timeout_ms: int = 1200
    #: Speech over the assistant that stops before its words are known (``vad``'s speculative
    #: silence) resumes the reply after this much more silence, not at once: the user may only
    #: be between two words ("Please … tell me"), and a reply resumed in that gap talks over
    #: the rest of the sentence.
    interjection_resume_ms: int = 300
    #: Hands-free: speech over the assistant pauses it after this much (sooner than a turn
    #: starts otherwise, ``vad.min_speech_ms``). Tuned on echo-cancelled audio; a pause that
    #: proves to be a noise resumes when it ends.
    pause_after_ms: int = 32
    #: Hands-free, over an echo-cancelled reply: a frame this likely to be speech (below
    #: ``vad.threshold``) still counts as speech when it is also at least
    #: ``over_reply_level_dbfs`` loud. A voice's first frame often scores 0.2-0.5, and a
    #: person at the desk is loud (-20 to -30 dBFS once talking). What is left of the
    #: assistant's own voice after cancellation scores 0.2-0.45 now and then, at -43 dBFS and
    #: below (``parley bench echo``, once the echo is known); a voice's first frame that passes
    #: only this lower bar comes ~30 ms sooner than the frame after it.
    over_reply_threshold: float = 0.2
    over_reply_level_dbfs: float = -42.0
    #: Over an echo-cancelled reply, audio quieter than this never starts a turn, however sure
    #: the voice detector is: the canceller's residue scores over 0.5 at times, almost always
    #: below -52 dBFS, while a voice's first frame over a reply is louder in all but a few
    #: cases (which the next frame, 32 ms later, catches).
    over_reply_floor_dbfs: float = -52.0


@dataclass(slots=True)
class ProviderSettings:
    url: str = ""
    model: str = ""
    voice: str = ""


@dataclass(slots=True)
class SpeechToSpeechSettings:
    """The speech-to-speech engine used when ``Settings.pipeline`` is ``"s2s"``."""

    #: The engine (``parley talk --s2s`` names): ``openai-realtime``, ``assemblyai-agent``.
    engine: str = "openai-realtime"
    #: The provider's model (empty: its default).
    model: str = ""
    #: The provider's voice (empty: its default).
    voice: str = ""
    #: Who decides, hands-free, where the user's turn ends and when speech over a reply
    #: interrupts it: Parley's own detection, or the provider's.
    turn_detection: Literal["parley", "provider"] = "parley"
    #: Spoken verbatim when a session starts, by engines that can (empty: no greeting).
    greeting: str = ""


@dataclass(slots=True)
class McpServerSettings:
    """One Model Context Protocol server: a command to start (stdio) or a URL (streamable HTTP).

    ``env`` is added to the small safe environment the server starts with (never Parley's own);
    a value ``"${NAME}"`` is taken from Parley's environment at start, so a secret need not be
    written in this file.
    """

    command: str = ""
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    url: str = ""
    enabled: bool = True
    #: Seconds to wait for the server to start, list its tools, or answer one call.
    timeout: float = 30.0


@dataclass(slots=True)
class ToolSettings:
    #: Offer tools to the language model at all.
    enabled: bool = True
    #: Which tools ask "Shall I go ahead?" first: every tool that changes something
    #: ("changes"), only those that may change or delete what exists ("destructive"), or none.
    confirm: Literal["changes", "destructive", "never"] = "changes"
    mcp_servers: dict[str, McpServerSettings] = field(default_factory=dict)


@dataclass(slots=True)
class StructuredSettings:
    """An object extracted from every answered turn, beside the spoken reply."""

    enabled: bool = False
    #: A JSON Schema file; empty: the built-in {intent, urgency, escalate, summary} schema.
    schema_path: str = ""


@dataclass(slots=True)
class Settings:
    #: ``chained``: the three engines below; ``s2s``: one speech-to-speech engine (``s2s``).
    pipeline: Pipeline = "chained"
    stt: str = "local"
    llm: str = "local"
    tts: str = "local"
    s2s: SpeechToSpeechSettings = field(default_factory=SpeechToSpeechSettings)
    #: When a chosen cloud engine fails before producing output, try the local one.
    fallback_to_local: bool = True
    #: The language spoken and answered in (BCP-47-ish: "en", "en-GB", "fr").
    language: str = "en"
    #: Answer in the language each utterance is spoken in (detected, ``language`` first).
    detect_language: bool = False
    voice: str = ""
    turn_mode: TurnMode = "ptt"
    vad: VadSettings = field(default_factory=VadSettings)
    push_to_talk: PushToTalkSettings = field(default_factory=PushToTalkSettings)
    interruption: InterruptionSettings = field(default_factory=InterruptionSettings)
    budgets: Budgets = field(default_factory=Budgets)
    input_device: str = ""
    output_device: str = ""
    #: Cancel the assistant's own voice from the microphone: "auto" does unless the output
    #: device looks like a headset (then there is no echo to cancel).
    echo_cancellation: EchoCancellation = "auto"
    #: Suppress steady background noise in the microphone (fans, hum). Off by default: the
    #: recognizer copes with noise, and in double talk suppression costs it words.
    noise_suppression: bool = False
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    #: Rough token budget of the context sent to the LLM (system prompt included).
    context_tokens: int = 3000
    #: Start speaking with a reply's first short phrase ("A spider | has eight legs.") rather
    #: than its first clause or sentence: sooner, with a small seam in the intonation.
    quick_first_phrase: bool = True
    local_llm_model: str = "qwen2.5-coder-1.5b"
    hotkey: str = "Space"
    global_hotkey: bool = False
    #: Start with only the tray icon showing (where the system has a tray).
    start_in_tray: bool = False
    providers: dict[str, ProviderSettings] = field(default_factory=dict)
    tools: ToolSettings = field(default_factory=ToolSettings)
    structured: StructuredSettings = field(default_factory=StructuredSettings)

    def endpoint(self, provider: str) -> str:
        """The endpoint URL of ``provider``: environment override, then settings, then default."""
        names = (*ENDPOINT_ENV_ALIASES.get(provider, ()), f"PARLEY_{provider.upper()}_URL")
        for name in names:
            value = os.environ.get(name)
            if value:
                return value
        configured = self.providers.get(provider)
        if configured and configured.url:
            return configured.url
        if provider not in DEFAULT_ENDPOINTS:
            raise SettingsError(f"unknown provider {provider!r}")
        return DEFAULT_ENDPOINTS[provider]

    def provider(self, name: str) -> ProviderSettings:
        return self.providers.get(name) or ProviderSettings()


# --------------------------------------------------------------------------------- (de)serializing


def _is_table(value: object) -> bool:
    """A table of settings (a dataclass instance, not the class)."""
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def _to_plain(value: Any) -> Any:
    if _is_table(value):
        return {
            f.name: _to_plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if getattr(value, f.name) is not None
        }
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    return value


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Validate ``value`` against the annotation ``tp``; raise SettingsError with the key path."""
    origin = get_origin(tp)
    if origin is Literal:
        if value not in get_args(tp):
            choices = ", ".join(repr(a) for a in get_args(tp))
            raise SettingsError(f"{where}: {value!r} is not one of {choices}")
        return value
    if origin in (Union, types.UnionType):
        for arg in get_args(tp):
            try:
                return _coerce(arg, value, where)
            except SettingsError:
                continue
        raise SettingsError(f"{where}: {value!r} has the wrong type")
    if origin is list:
        (item_tp,) = get_args(tp)
        if not isinstance(value, list):
            raise SettingsError(f"{where}: expected a list")
        return [_coerce(item_tp, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, value_tp = get_args(tp)
        if not isinstance(value, dict):
            raise SettingsError(f"{where}: expected a table")
        return {str(k): _coerce(value_tp, v, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise SettingsError(f"{where}: expected a table")
        return _from_dict(tp, value, where)
    if tp is type(None):
        if value is not None:
            raise SettingsError(f"{where}: expected nothing")
        return None
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool):
        raise SettingsError(f"{where}: expected a whole number")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise SettingsError(f"{where}: expected {tp.__name__}, got {type(value).__name__}")
    return value


def _from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SettingsError(f"{where or 'settings'}: unknown key(s) {', '.join(unknown)}")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def settings_from_dict(data: dict[str, Any]) -> Settings:
    settings: Settings = _from_dict(Settings, data)
    return settings


def settings_to_dict(settings: Settings) -> dict[str, Any]:
    plain: dict[str, Any] = _to_plain(settings)
    return plain


# ------------------------------------------------------------------------------------------ storage


def config_dir() -> Path:
    override = os.environ.get("PARLEY_CONFIG_DIR")
    return Path(override) if override else Path(platformdirs.user_config_dir(APP_NAME, False))


def data_dir() -> Path:
    override = os.environ.get("PARLEY_DATA_DIR")
    return Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME, False))


def cache_dir() -> Path:
    override = os.environ.get("PARLEY_CACHE_DIR")
    return Path(override) if override else Path(platformdirs.user_cache_dir("parley", False))


def settings_path() -> Path:
    return config_dir() / "settings.toml"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` so that ``path`` holds either the old or the new content, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


#: The first line of a settings file that holds only what differs from the defaults (a TOML
#: comment: every version reads the file the same).
SPARSE_HEADER = "# Parley settings: only what differs from the defaults."
#: Settings whose default changed, by their path in the file, with the defaults they had before.
#: A file of every value that holds one of those had it written as the default of its time.
RETUNED_DEFAULTS: dict[tuple[str, str], tuple[object, ...]] = {
    # Residual echo passed -55 dBFS (see ``InterruptionSettings``).
    ("interruption", "over_reply_level_dbfs"): (-55.0,),
}


def _without_retuned_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (a settings file's tables) without the values that were the defaults before a
    retune: the current default applies to them."""
    for (table, key), old in RETUNED_DEFAULTS.items():
        values = data.get(table)
        if isinstance(values, dict) and key in values and values[key] in old:
            data = {**data, table: {k: v for k, v in values.items() if k != key}}
    return data


def _changed(value: Any, default: Any) -> dict[str, Any]:
    """The fields of the dataclass ``value`` that differ from ``default``'s, as plain values;
    tables of settings key by key (a missing key loads as its default), a dict or list whole
    (the file's replaces the default's), each entry of a dict of tables against that table's
    defaults."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(value):
        mine, theirs = getattr(value, f.name), getattr(default, f.name)
        if mine is None or mine == theirs:
            continue
        if _is_table(mine) and type(mine) is type(theirs):
            out[f.name] = _changed(mine, theirs)
        elif isinstance(mine, dict) and all(_is_table(v) for v in mine.values()):
            out[f.name] = {k: _changed(v, type(v)()) for k, v in mine.items()}
        else:
            out[f.name] = _to_plain(mine)
    return out


@dataclass(slots=True)
class LoadedSettings:
    settings: Settings
    #: Set when the file was invalid and was moved aside: say this to the user.
    notice: str | None = None


def load_settings(path: Path | None = None) -> LoadedSettings:
    """The settings in ``path`` (default: ``settings_path()``); never raises, see above."""
    path = path or settings_path()
    try:
        if not path.exists():
            return LoadedSettings(Settings())
        raw = path.read_bytes()
    except OSError as exc:
        return LoadedSettings(
            Settings(),
            f"Your settings file {path} could not be read ({exc.strerror or exc}); the "
            "defaults are in use.",
        )
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
        if not text.startswith(SPARSE_HEADER):
            data = _without_retuned_defaults(data)
        return LoadedSettings(settings_from_dict(data))
    except (ValueError, TypeError, RecursionError) as exc:  # TOML, UTF-8 and value errors
        reason = "it is nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        if len(reason) > 200:
            reason = reason[:200] + "…"
    aside = unused_name(path, "invalid")
    try:
        os.replace(path, aside)
    except OSError as exc:
        return LoadedSettings(
            Settings(),
            f"Your settings file was invalid ({reason}) and could not be moved aside "
            f"({exc.strerror or exc}); the defaults are in use.",
        )
    notice = (
        f"Your settings file was invalid ({reason}); it was kept as {aside.name} and the "
        "defaults are in use."
    )
    return LoadedSettings(Settings(), notice)


def save_settings(settings: Settings, path: Path | None = None) -> None:
    """Write what differs from the defaults (see the module docstring)."""
    path = path or settings_path()
    text = f"{SPARSE_HEADER}\n{tomli_w.dumps(_changed(settings, Settings()))}"
    atomic_write_bytes(path, text.encode("utf-8"))
