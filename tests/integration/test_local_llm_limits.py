"""The real llama-server: locked down to Parley."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import httpx
import pytest

from assistant.engines.base import (
    EngineUnavailable,
)
from assistant.engines.local.llama_server import LlamaServer, find_binary
from assistant.engines.local.models import FAST_MODEL, ensure_model


def _binary_or_skip() -> None:
    try:
        find_binary()
    except EngineUnavailable as err:
        pytest.skip(f"llama-server is not built ({err})")


def _proc(pid: int, name: str) -> bytes:
    return Path(f"/proc/{pid}/{name}").read_bytes()


def _exists(path: str) -> bool:
    return Path(path).exists()


async def _server(**options: int) -> LlamaServer:
    _binary_or_skip()
    model = await asyncio.to_thread(ensure_model, FAST_MODEL)
    server = LlamaServer(model, threads=1, **options)
    await server.start()
    return server


@pytest.mark.slow
async def test_the_local_server_answers_only_parley(monkeypatch: pytest.MonkeyPatch) -> None:
    canary = "sk-canary-" + secrets.token_hex(12)
    monkeypatch.setenv("OPENAI_API_KEY", canary)
    monkeypatch.setenv("ELEVENLABS_API_KEY", canary + "-eleven\r")
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/run/user/0/bus")
    monkeypatch.setenv("LLAMA_ARG_CORS_ORIGINS", "*")  # must not reopen what the flags close
    server = await _server(context=512)
    try:
        pid, port, key = server.pid, server.port, server.api_key
        assert pid is not None and port is not None and len(key) >= 32

        # The child's environment holds no key and no way to the keyring.
        environ = _proc(pid, "environ")
        assert canary.encode() not in environ
        assert b"API_KEY" not in environ and b"DBUS" not in environ and b"LLAMA_" not in environ
        # The key is not on the command line, and its file was removed once read.
        argv = _proc(pid, "cmdline").split(b"\0")
        assert key.encode() not in b" ".join(argv)
        assert not _exists(argv[argv.index(b"--api-key-file") + 1].decode())

        base = f"http://127.0.0.1:{port}"
        chat = {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4}
        auth = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            assert (await client.post("/v1/chat/completions", json=chat)).status_code == 401
            wrong = {"Authorization": "Bearer " + secrets.token_urlsafe(32)}
            refused = await client.post("/v1/chat/completions", json=chat, headers=wrong)
            assert refused.status_code == 401
            assert (await client.get("/slots")).status_code == 401
            assert (await client.get("/slots", headers=auth)).status_code == 501  # turned off
            # No web page elsewhere may read an answer.
            page = {"Origin": "http://example.com", **auth}
            answer = await client.get("/v1/models", headers=page)
            assert answer.status_code == 200
            assert answer.headers.get("access-control-allow-origin") in (None, base)
            assert answer.headers.get("access-control-allow-credentials") != "true"
            # Parley's own requests work.
            ok = await client.post("/v1/chat/completions", json=chat, headers=auth)
            assert ok.status_code == 200 and ok.json()["choices"]
    finally:
        await server.stop()
