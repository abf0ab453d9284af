"""Keyrings in software: one that keeps keys in memory, and the ones users meet on a bad day —
locked, failing, slow, or never answering (an unlock prompt nobody sees).

``installed(backend)`` makes a backend the process's keyring for a ``with`` block and forgets
what Parley remembered of the previous one.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import keyring
from keyring.backend import KeyringBackend
from keyring.errors import KeyringError, KeyringLocked

from assistant import secrets


class MemoryKeyring(KeyringBackend):
    """A keyring that lives only in this process; counts the reads it answers."""

    priority = 1

    def __init__(self, store: dict[tuple[str, str], str] | None = None) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = dict(store or {})
        self.reads = 0

    def get_password(self, service: str, username: str) -> str | None:
        self.reads += 1
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.store.pop((service, username), None)


class LockedKeyring(MemoryKeyring):
    """A keyring whose collection is locked: every read is refused until ``unlock()``."""

    def __init__(self, store: dict[tuple[str, str], str] | None = None) -> None:
        super().__init__(store)
        self.locked = True

    def unlock(self) -> None:
        self.locked = False

    def get_password(self, service: str, username: str) -> str | None:
        if self.locked:
            self.reads += 1
            raise KeyringLocked("Failed to unlock the collection!")
        return super().get_password(service, username)


class BrokenKeyring(MemoryKeyring):
    """A keyring whose every read fails the way a broken D-Bus session does."""

    def get_password(self, service: str, username: str) -> str | None:
        self.reads += 1
        raise KeyringError("org.freedesktop.DBus.Error.NoReply: did not receive a reply")


class SlowKeyring(MemoryKeyring):
    """A keyring that takes ``delay`` seconds per read, or (``delay=None``) waits until
    ``release()`` — an unlock prompt left open."""

    def __init__(
        self, store: dict[tuple[str, str], str] | None = None, delay: float | None = 0.3
    ) -> None:
        super().__init__(store)
        self.delay = delay
        self._released = threading.Event()

    def release(self) -> None:
        self._released.set()

    def get_password(self, service: str, username: str) -> str | None:
        if self.delay is None:
            self._released.wait(60)
        else:
            time.sleep(self.delay)
        return super().get_password(service, username)


@contextlib.contextmanager
def installed(backend: KeyringBackend) -> Iterator[KeyringBackend]:
    """``backend`` is the keyring for the block; Parley forgets what it read before and after."""
    previous = keyring.get_keyring()
    secrets.forget_keys()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        if isinstance(backend, SlowKeyring):
            backend.release()
        keyring.set_keyring(previous)
        secrets.forget_keys()
