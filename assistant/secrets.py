"""API keys: read from the environment (headless use) or the OS keyring, never from files.

Keys never appear in logs or exception messages; ``redact`` scrubs any that slipped into a text,
also where a library quoted it escaped (``repr``, JSON). A key read from the environment or the
keyring is stripped of surrounding whitespace first: a trailing CR or newline (a key pasted from
a Windows file) would otherwise fail every request. When no keyring backend exists (a headless
Linux box), saving says so clearly; there is no insecure fallback.
"""

from __future__ import annotations

import json
import os
import threading

SERVICE = "parley"

#: Provider → the conventional environment variable holding its key.
ENV_VARS: dict[str, str] = {
    "openai": "OPENAI_API_KEY",
    "openai_compatible": "OPENAI_COMPATIBLE_API_KEY",
    "assemblyai": "ASSEMBLYAI_API_KEY",
    "deepgram": "DEEPGRAM_API_KEY",
    "elevenlabs": "ELEVENLABS_API_KEY",
    "async": "ASYNC_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
}

DISPLAY_NAMES: dict[str, str] = {
    "openai": "OpenAI",
    "openai_compatible": "OpenAI-compatible server",
    "assemblyai": "AssemblyAI",
    "deepgram": "Deepgram",
    "elevenlabs": "ElevenLabs",
    "async": "Async",
    "anthropic": "Anthropic",
}

_known_secrets: set[str] = set()
#: Every form in which a known key may appear in a text, longest first.
_forms: list[str] = []
_lock = threading.Lock()


class KeyringUnavailable(RuntimeError):
    """No usable OS keyring on this machine."""


def _spellings(value: str) -> set[str]:
    """``value`` as it is, stripped, and as ``repr`` and JSON would quote it."""
    forms = {value, value.strip()}
    for form in list(forms):
        forms.add(form.encode("unicode_escape").decode("ascii"))
        forms.add(json.dumps(form)[1:-1])
        forms.add(repr(form)[1:-1])
    return {f for f in forms if len(f) >= 6}


def _remember(value: str) -> str:
    if len(value.strip()) >= 6:
        with _lock:
            if value not in _known_secrets:
                _known_secrets.add(value)
                _forms[:] = sorted(set(_forms) | _spellings(value), key=len, reverse=True)
    return value


def register(value: str) -> str:
    """Have ``redact`` scrub ``value``, a key that reached an engine some other way."""
    return _remember(value)


def redact(text: str) -> str:
    """Replace every key this process has seen, in any of its spellings, with a placeholder."""
    with _lock:
        forms = list(_forms)
    for form in forms:
        if form in text:
            text = text.replace(form, "[redacted]")
    return text


def _clean(value: str | None) -> str | None:
    """A stored or exported key without the whitespace, CR or LF around it (None if empty)."""
    value = (value or "").strip()
    return value or None


def _backend_usable() -> bool:
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        return False
    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring):
        return False
    # The chainer with no real backend behind it is as good as none.
    return getattr(backend, "priority", 1) > 0


def keyring_status() -> str | None:
    """None when a keyring works; otherwise a sentence for the user."""
    if _backend_usable():
        return None
    return (
        "No system keyring is available, so API keys cannot be saved here. Install and unlock a "
        "keyring (GNOME Keyring, KWallet, macOS Keychain, Windows Credential Manager), or set the "
        "provider's environment variable for this session."
    )


def get_key(provider: str) -> str | None:
    """The key for ``provider``: its environment variable first, then the keyring."""
    env = ENV_VARS.get(provider)
    if env and (raw := os.environ.get(env)):
        _remember(raw)  # the unstripped form too: a library may quote it as it was
        if (value := _clean(raw)) is not None:
            return _remember(value)
    if not _backend_usable():
        return None
    import keyring
    from keyring.errors import KeyringError

    try:
        value = keyring.get_password(SERVICE, provider)
    except KeyringError:
        return None
    if value:
        _remember(value)
    cleaned = _clean(value)
    return _remember(cleaned) if cleaned is not None else None


def has_key(provider: str) -> bool:
    return get_key(provider) is not None


def key_source(provider: str) -> str | None:
    """Where the key comes from ("environment" or "keyring"), for showing — never the key."""
    env = ENV_VARS.get(provider)
    if env and _clean(os.environ.get(env)):
        return "environment"
    return "keyring" if get_key(provider) else None


def set_key(provider: str, value: str) -> None:
    """Store ``value`` in the OS keyring (raises KeyringUnavailable when there is none)."""
    status = keyring_status()
    if status is not None:
        raise KeyringUnavailable(status)
    import keyring
    from keyring.errors import KeyringError

    try:
        keyring.set_password(SERVICE, provider, _remember(value.strip()))
    except KeyringError as exc:
        raise KeyringUnavailable(
            f"The keyring refused to store the key: {type(exc).__name__}"
        ) from None


def delete_key(provider: str) -> None:
    if keyring_status() is not None:
        return
    import keyring
    from keyring.errors import KeyringError, PasswordDeleteError

    try:
        keyring.delete_password(SERVICE, provider)
    except (PasswordDeleteError, KeyringError):
        pass


def require_key(provider: str) -> str:
    """The key, or a MissingKeyError naming the provider and where to set it."""
    from assistant.engines.base import MissingKeyError

    key = get_key(provider)
    if not key:
        raise MissingKeyError(DISPLAY_NAMES.get(provider, provider), ENV_VARS.get(provider, ""))
    return key
