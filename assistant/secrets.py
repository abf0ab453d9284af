"""API keys: read from the environment (headless use) or the OS keyring, never from files.

Keys never appear in logs or exception messages; ``redact`` scrubs any that slipped into a text,
also where a library quoted it escaped (``repr``, JSON). A key read from the environment or the
keyring is stripped of surrounding whitespace first: a trailing CR or newline (a key pasted from
a Windows file) would otherwise fail every request. When no keyring backend exists (a headless
Linux box), saving says so clearly; there is no insecure fallback.

The keyring is slow and may block: a locked one can wait for the user to type a password, a
broken D-Bus session for its timeout. So it is only ever read on a thread of its own (one read
per provider at a time, however many callers wait for it), and code on the event loop reads keys
with ``aget_key``/``arequire_key``, which wait at most ``KEYRING_TIMEOUT`` seconds and never
block the loop. What the keyring said is remembered (``key_state`` tells it without asking
again); ``set_key``/``delete_key`` keep that memory right, and ``forget_keys`` drops it. A keyring
that is locked, fails or does not answer is a ``KeyringProblem`` — never "no API key".
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import threading
from collections.abc import Callable
from typing import Literal

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

#: Seconds a keyring read may take (an unlock prompt left open) before it counts as a failure.
KEYRING_TIMEOUT = 10.0

_known_secrets: set[str] = set()
#: Every form in which a known key may appear in a text, longest first.
_forms: list[str] = []
_lock = threading.Lock()


class KeyringUnavailable(RuntimeError):
    """No usable OS keyring on this machine."""


class KeyringProblem(RuntimeError):
    """The keyring could not be read: it is locked, it failed, or it did not answer.

    The text is a phrase for the user ("the system keyring is locked"), without any key.
    """


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


def _from_environment(provider: str) -> str | None:
    env = ENV_VARS.get(provider)
    if env and (raw := os.environ.get(env)):
        _remember(raw)  # the unstripped form too: a library may quote it as it was
        if (value := _clean(raw)) is not None:
            return _remember(value)
    return None


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


# ------------------------------------------------------------------- reading the keyring

#: What the keyring said per provider: the key, or None when it holds none.
_stored: dict[str, str | None] = {}
#: The last problem reading each provider's key (cleared by the next good read).
_problems: dict[str, str] = {}
#: Reads under way, one per provider.
_reading: dict[str, concurrent.futures.Future[str | None]] = {}


def _read_keyring(provider: str) -> str | None:
    """The keyring's key for ``provider`` (None: no keyring, or no key in it). Blocks; raises
    ``KeyringProblem``."""
    try:
        if not _backend_usable():
            return None
        import keyring
        from keyring.errors import KeyringLocked

        value = keyring.get_password(SERVICE, provider)
    except KeyringLocked:
        raise KeyringProblem("the system keyring is locked") from None
    except Exception as exc:  # D-Bus errors, backend bugs: whatever a keyring raises
        raise KeyringProblem(f"the system keyring failed ({type(exc).__name__})") from None
    if value:
        _remember(value)
    cleaned = _clean(value)
    return _remember(cleaned) if cleaned is not None else None


def _run_read(provider: str, future: concurrent.futures.Future[str | None]) -> None:
    try:
        value = _read_keyring(provider)
    except BaseException as exc:
        with _lock:
            _problems[provider] = str(exc)
            if _reading.get(provider) is future:
                del _reading[provider]
        future.set_exception(exc)
        return
    with _lock:
        _stored[provider] = value
        _problems.pop(provider, None)
        if _reading.get(provider) is future:
            del _reading[provider]
    future.set_result(value)


def _start_read(provider: str) -> concurrent.futures.Future[str | None]:
    """The read of ``provider``'s key under way, or a new one on a thread of its own (a daemon:
    a keyring that never answers must not keep Parley from exiting)."""
    with _lock:
        future = _reading.get(provider)
        if future is None:
            future = concurrent.futures.Future()
            _reading[provider] = future
            threading.Thread(
                target=_run_read, args=(provider, future), name="parley-keyring", daemon=True
            ).start()
    return future


def _not_answering() -> KeyringProblem:
    return KeyringProblem(
        f"the system keyring did not answer within {KEYRING_TIMEOUT:g} s (it may be waiting "
        "to be unlocked)"
    )


def _answered(provider: str) -> tuple[bool, str | None]:
    """(True, the key or None) when the environment, or what the keyring said before, answers
    without asking the keyring."""
    if (value := _from_environment(provider)) is not None:
        return True, value
    with _lock:
        return provider in _stored, _stored.get(provider)


def get_key(provider: str) -> str | None:
    """The key for ``provider``: its environment variable first, then the keyring.

    Blocks while the keyring is read (not for use on the event loop: see ``aget_key``). None
    when no key is set; ``KeyringProblem`` when the keyring could not be read.
    """
    known, value = _answered(provider)
    if known:
        return value
    try:
        return _start_read(provider).result(timeout=KEYRING_TIMEOUT)
    except concurrent.futures.TimeoutError:
        raise _not_answering() from None


def _bridge[T](read: concurrent.futures.Future[T]) -> asyncio.Future[T]:
    """An asyncio future on the running loop that settles when ``read`` does (from any thread).
    Cancelling it leaves ``read`` alone: a keyring call cannot be taken back."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[T] = loop.create_future()

    def settle(done: concurrent.futures.Future[T]) -> None:
        if answer.done():
            return
        error = done.exception()
        if error is not None:
            answer.set_exception(error)
        else:
            answer.set_result(done.result())

    def deliver(done: concurrent.futures.Future[T]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
            loop.call_soon_threadsafe(settle, done)

    read.add_done_callback(deliver)
    return answer


async def _wait[T](read: concurrent.futures.Future[T]) -> T:
    try:
        async with asyncio.timeout(KEYRING_TIMEOUT):
            return await _bridge(read)
    except TimeoutError:
        raise _not_answering() from None


async def off_loop[R](call: Callable[..., R], *args: object) -> R:
    """``call(*args)`` (a keyring operation) on a thread of its own, waited for at most
    ``KEYRING_TIMEOUT`` seconds (then ``KeyringProblem``); the loop never blocks."""
    done: concurrent.futures.Future[R] = concurrent.futures.Future()

    def run() -> None:
        try:
            done.set_result(call(*args))
        except BaseException as exc:
            done.set_exception(exc)

    threading.Thread(target=run, name="parley-keyring", daemon=True).start()
    return await _wait(done)


async def aget_key(provider: str) -> str | None:
    """``get_key`` for the event loop: the keyring is read on its own thread, and waited for at
    most ``KEYRING_TIMEOUT`` seconds."""
    known, value = _answered(provider)
    if known:
        return value
    try:
        return await _wait(_start_read(provider))
    except KeyringProblem as problem:
        with _lock:
            _problems.setdefault(provider, str(problem))
        raise


KeyState = Literal["environment", "keyring", "none", "unknown", "unreadable"]


def key_state(provider: str) -> KeyState:
    """What is known of ``provider``'s key without asking the keyring (never blocks):
    set in the environment, stored in the keyring, not set, not read yet, or unreadable
    (``key_problem`` says why)."""
    if _from_environment(provider) is not None:
        return "environment"
    with _lock:
        if provider in _problems and provider not in _reading:
            return "unreadable"
        if provider in _stored:
            return "keyring" if _stored[provider] else "none"
    return "unknown"


def key_problem(provider: str) -> str | None:
    """Why the keyring could not be read for ``provider`` the last time, if it could not."""
    with _lock:
        return _problems.get(provider)


def forget_keys() -> None:
    """Drop what the keyring said (the next read asks it again)."""
    with _lock:
        _stored.clear()
        _problems.clear()


def keyring_status() -> str | None:
    """None when a keyring works; otherwise a sentence for the user. Blocks the first time
    (the keyring backends are looked for)."""
    if _backend_usable():
        return None
    return (
        "No system keyring is available, so API keys cannot be saved here. Install and unlock a "
        "keyring (GNOME Keyring, KWallet, macOS Keychain, Windows Credential Manager), or set the "
        "provider's environment variable for this session."
    )


def has_key(provider: str) -> bool:
    """A key is set (blocks like ``get_key``; a keyring problem counts as no key here)."""
    try:
        return get_key(provider) is not None
    except KeyringProblem:
        return False


def key_source(provider: str) -> str | None:
    """Where the key comes from ("environment" or "keyring"), for showing — never the key.
    Blocks like ``get_key``; a keyring problem counts as no key here."""
    if _from_environment(provider) is not None:
        return "environment"
    return "keyring" if has_key(provider) else None


def set_key(provider: str, value: str) -> None:
    """Store ``value`` in the OS keyring (raises KeyringUnavailable when there is none). Blocks."""
    status = keyring_status()
    if status is not None:
        raise KeyringUnavailable(status)
    import keyring
    from keyring.errors import KeyringError

    key = _remember(value.strip())
    try:
        keyring.set_password(SERVICE, provider, key)
    except KeyringError as exc:
        raise KeyringUnavailable(
            f"The keyring refused to store the key: {type(exc).__name__}"
        ) from None
    with _lock:
        _stored[provider] = key
        _problems.pop(provider, None)


def delete_key(provider: str) -> None:
    """Remove the keyring's key for ``provider`` (nothing happens without a keyring). Blocks."""
    if keyring_status() is not None:
        return
    import keyring
    from keyring.errors import KeyringError, PasswordDeleteError

    try:
        keyring.delete_password(SERVICE, provider)
    except (PasswordDeleteError, KeyringError):
        pass
    with _lock:
        _stored[provider] = None


def _unreadable(provider: str, problem: KeyringProblem) -> Exception:
    from assistant.engines.base import KeyUnreadableError

    return KeyUnreadableError(
        DISPLAY_NAMES.get(provider, provider), ENV_VARS.get(provider, ""), str(problem)
    )


def _missing(provider: str) -> Exception:
    from assistant.engines.base import MissingKeyError

    return MissingKeyError(DISPLAY_NAMES.get(provider, provider), ENV_VARS.get(provider, ""))


def require_key(provider: str) -> str:
    """The key, or an ``EngineError`` that says what to do: ``MissingKeyError`` (none is set)
    or ``KeyUnreadableError`` (the keyring could not be read). Blocks like ``get_key``."""
    try:
        key = get_key(provider)
    except KeyringProblem as problem:
        raise _unreadable(provider, problem) from None
    if not key:
        raise _missing(provider)
    return key


async def arequire_key(provider: str) -> str:
    """``require_key`` for the event loop (see ``aget_key``)."""
    try:
        key = await aget_key(provider)
    except KeyringProblem as problem:
        raise _unreadable(provider, problem) from None
    if not key:
        raise _missing(provider)
    return key
