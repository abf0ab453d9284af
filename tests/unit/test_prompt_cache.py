"""Keeping the embedded model's read prompt across launches (``engines.local.prompt_cache``)."""

from __future__ import annotations

from pathlib import Path

from assistant.engines.base import EngineError, Usage
from assistant.engines.local.prompt_cache import SAVE_ATTEMPTS, PromptCache, slot_file_name


class Server:
    """Answers the slot actions as llama-server does; ``fail`` makes them fail."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[tuple[str, dict[str, object]]] = []

    async def post(self, url: str, body: dict[str, object]) -> object:
        self.calls.append((url, body))
        if self.fail:
            raise EngineError("Unable to restore slot", engine="local")
        if url.endswith("action=restore"):
            return {"id_slot": 0, "n_restored": 909}
        return {"id_slot": 0, "n_saved": 909}


def test_the_file_name_follows_the_model_and_the_server_build(tmp_path: Path) -> None:
    model, binary, other = tmp_path / "m.gguf", tmp_path / "llama-server", tmp_path / "o.gguf"
    for path in (model, binary, other):
        path.write_bytes(b"x")
    name = slot_file_name(model, binary)
    assert "/" not in name and name.startswith("m-") and name.endswith(".slot")
    assert name == slot_file_name(model, binary)
    assert name != slot_file_name(other, binary)
    binary.write_bytes(b"a new build")
    assert name != slot_file_name(model, binary)


async def test_nothing_is_restored_without_a_file(tmp_path: Path) -> None:
    server = Server()
    assert await PromptCache(tmp_path, "m.slot").restore(server.post, "http://h") == 0
    assert server.calls == []


async def test_a_saved_prompt_is_restored_into_slot_zero(tmp_path: Path) -> None:
    (tmp_path / "m.slot").write_bytes(b"state")
    server = Server()
    assert await PromptCache(tmp_path, "m.slot").restore(server.post, "http://h") == 909
    assert server.calls == [("http://h/slots/0?action=restore", {"filename": "m.slot"})]


async def test_a_file_that_fails_to_restore_is_removed(tmp_path: Path) -> None:
    (tmp_path / "m.slot").write_bytes(b"damaged")
    cache = PromptCache(tmp_path, "m.slot")
    assert await cache.restore(Server(fail=True).post, "http://h") == 0
    assert not cache.path.exists()


async def test_a_long_new_prompt_is_saved_once_a_launch(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path, "m.slot")
    server = Server()
    assert not cache.worth_saving(Usage(prompt_tokens=700, cached_tokens=650))
    assert cache.worth_saving(Usage(prompt_tokens=700, cached_tokens=0))
    assert await cache.save(server.post, "http://h")
    assert server.calls == [("http://h/slots/0?action=save", {"filename": "m.slot"})]
    assert not cache.worth_saving(Usage(prompt_tokens=900, cached_tokens=0))
    await cache.restore(server.post, "http://h")  # a new launch
    assert cache.worth_saving(Usage(prompt_tokens=900, cached_tokens=0))


async def test_a_save_the_server_refuses_is_reported_not_raised(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path, "m.slot")
    server = Server(fail=True)
    assert not await cache.save(server.post, "http://h", pause=0.0)
    assert len(server.calls) == SAVE_ATTEMPTS
    # The next long prompt of this launch is worth saving again.
    assert cache.worth_saving(Usage(prompt_tokens=900, cached_tokens=0))


async def test_a_save_refused_once_is_tried_again(tmp_path: Path) -> None:
    server = Server(fail=True)
    refusals = iter([True, False])

    async def post(url: str, body: dict[str, object]) -> object:
        server.fail = next(refusals)
        return await server.post(url, body)

    assert await PromptCache(tmp_path, "m.slot").save(post, "http://h", pause=0.0)
    assert len(server.calls) == 2
