"""A client made for the current API key, made anew when the key changes.

The user may save a new key while Parley runs; the next request then needs a client with it. The
client made for the old key may still be streaming a reply, so it is not closed at once: it is
kept (and used again if that key comes back, as a keyring that is locked now and then makes it
do) and closed with the holder (``aclose``), so its pooled connections never outlive the engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class KeyedClient[C]:
    """``get(key)``: the client for ``key`` (made by ``make`` the first time that key is asked
    for); ``aclose()`` closes every client it made."""

    def __init__(
        self, make: Callable[[str | None], C], close: Callable[[C], Awaitable[object]]
    ) -> None:
        self._make = make
        self._close = close
        self._clients: dict[str | None, C] = {}
        self._current: C | None = None

    @property
    def current(self) -> C | None:
        """The client of the last ``get``."""
        return self._current

    def get(self, key: str | None) -> C:
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = self._make(key)
        self._current = client
        return client

    async def aclose(self) -> None:
        clients = list(self._clients.values())
        self._clients.clear()
        self._current = None
        # All at once, each on its own: one that fails or hangs does not keep the rest open.
        await asyncio.gather(*(self._close(c) for c in clients), return_exceptions=True)
