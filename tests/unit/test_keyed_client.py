"""A client per API key: made anew when the key changes, every one closed with the holder."""

from __future__ import annotations

import pytest

from assistant.engines.net.keyed import KeyedClient


class Client:
    def __init__(self, key: str | None, closed: list[str | None], fail: bool = False) -> None:
        self.key = key
        self._closed = closed
        self._fail = fail

    async def close(self) -> None:
        self._closed.append(self.key)
        if self._fail:
            raise OSError("the connection was already gone")


async def test_a_new_key_makes_a_new_client_and_every_client_is_closed_with_the_holder() -> None:
    closed: list[str | None] = []
    made: list[str | None] = []

    def make(key: str | None) -> Client:
        made.append(key)
        return Client(key, closed, fail=key == "a")

    clients = KeyedClient(make, Client.close)
    first = clients.get("a")
    assert clients.get("a") is first  # the same key: the same pooled client
    second = clients.get("b")
    assert second is not first and clients.current is second
    assert closed == []  # the replaced client may still be streaming: not closed yet
    assert clients.get("a") is first and clients.current is first  # the old key came back
    assert made == ["a", "b"]
    await clients.aclose()
    assert sorted(closed) == ["a", "b"]  # closing the first failed; the second was closed
    assert clients.current is None
    await clients.aclose()
    assert sorted(closed) == ["a", "b"]


@pytest.mark.parametrize("key", [None, "k"])
async def test_the_first_get_makes_the_client_even_without_a_key(key: str | None) -> None:
    clients = KeyedClient(lambda k: Client(k, []), Client.close)
    assert clients.current is None
    assert clients.get(key).key == key
