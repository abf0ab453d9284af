"""A client made for the current API key, made anew when the key changes.

The user may save a new key while Parley runs; the next request then needs a client with it. The
client it replaces may still be streaming a reply, so it is not closed at once: it is closed with
the holder (``aclose``), so its pooled connections never outlive the engine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable


class KeyedClient[C]:
    """``get(key)``: the client for ``key`` (made by ``make`` the first time and whenever the
    key differs from the last one); ``aclose()`` closes it and every client it replaced."""

    def __init__(
        self, make: Callable[[str | None], C], close: Callable[[C], Awaitable[object]]
    ) -> None:
        self._make = make
        self._close = close
        self._client: C | None = None
        self._key: str | None = None
        self._replaced: list[C] = []

    @property
    def current(self) -> C | None:
        return self._client

    def get(self, key: str | None) -> C:
        if self._client is None or key != self._key:
            if self._client is not None:
                self._replaced.append(self._client)
            self._client = self._make(key)
            self._key = key
        return self._client

    async def aclose(self) -> None:
        clients = [*self._replaced, *([self._client] if self._client is not None else [])]
        self._replaced.clear()
        self._client = None
        self._key = None
        for client in clients:
            with contextlib.suppress(Exception):  # closing one must not keep the rest open
                await self._close(client)
