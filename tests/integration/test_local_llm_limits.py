"""The real llama-server: locked down to Parley; conversations longer than its context."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import httpx
import pytest

from assistant.engines.base import (
    ChatRequest,
    EngineError,
    EngineUnavailable,
    Finished,
    Message,
    TextDelta,
    Usage,
)
from assistant.engines.local.llama_server import LlamaServer, find_binary
from assistant.engines.local.llm import LocalLLM
from assistant.engines.local.models import FAST_MODEL, ensure_model
from assistant.history import estimate_tokens


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


# ------------------------------------------------------------------------- context overflow

ZH_TURNS = [
    (
        "请详细介绍一下中国的四大发明以及它们对世界文明的影响。",
        "造纸术、印刷术、火药和指南针改变了世界。",
    ),
    ("长城是什么时候开始修建的？它有多长？", "长城始建于春秋战国时期，总长度超过两万公里。"),
    (
        "你能推荐几本学习中文的好书吗？我是初学者。",
        "可以从《汉语教程》和《新实用汉语课本》开始学习。",
    ),
    ("北京和上海哪个城市更适合旅游？为什么？", "两个城市各有特色，北京历史悠久，上海更加现代。"),
]


def _long_cjk_history(turns: int) -> list[Message]:
    messages = []
    for i in range(turns):
        question, answer = ZH_TURNS[i % len(ZH_TURNS)]
        messages += [Message("user", f"{i}：{question}" * 3), Message("assistant", answer * 3)]
    return messages


@pytest.mark.slow
async def test_a_conversation_longer_than_the_context_drops_old_turns_and_answers() -> None:
    _binary_or_skip()
    llm = LocalLLM(FAST_MODEL, threads=1, context=1024, timeout_first_token=120.0)
    system = Message("system", "你是一个简洁的助手。")
    question = Message("user", "用一个词回答：晴天的天空是什么颜色？")
    request = ChatRequest([system, *_long_cjk_history(16), question], max_tokens=8, temperature=0.0)
    try:
        events = [e async for e in llm.stream(request)]
        text = "".join(e.text for e in events if isinstance(e, TextDelta))
        assert text.strip() and any(isinstance(e, Finished) for e in events)
        usage = [e for e in events if isinstance(e, Usage)]
        assert usage and usage[-1].prompt_tokens <= 1024 - 512

        # A single message longer than the whole context cannot be saved: a clear error.
        alone = ChatRequest([system, Message("user", "天空" * 1500)], max_tokens=8)
        with pytest.raises(EngineError, match="too long for the local model's context") as info:
            async for _ in llm.stream(alone):
                pass
        assert info.value.retryable is False

        # The next turn works as before.
        again = [e async for e in llm.stream(ChatRequest([system, question], max_tokens=8))]
        assert "".join(e.text for e in again if isinstance(e, TextDelta)).strip()
    finally:
        await llm.aclose()


SCRIPTS = {
    "en": "What is the weather like in Paris today? I would like to book a table for four.",
    "de": "Ich möchte heute Abend ins Kino gehen. Die Straßenbahn fährt um halb acht.",
    "fr": "Je voudrais réserver une table pour quatre personnes ce soir, s'il vous plaît.",
    "ru": "Я хотел бы заказать столик на четыре человека сегодня вечером.",
    "el": "Καλημέρα, θα ήθελα να κλείσω ένα τραπέζι για τέσσερα άτομα απόψε.",
    "ar": "أود أن أحجز طاولة لأربعة أشخاص هذا المساء. كيف الطقس اليوم؟",
    "hi": "नमस्ते, मैं आज रात चार लोगों के लिए एक टेबल बुक करना चाहूंगा।",
    "zh": "你好，今天天气怎么样？我想预订今晚四个人的桌子。请问最近的火车站在哪里？",
    "ja": "こんにちは、今日はとても良い天気ですね。今晩四人用のテーブルを予約したいです。",
    "ko": "안녕하세요, 오늘 날씨가 어때요? 오늘 저녁에 네 명 자리를 예약하고 싶습니다.",
    "th": "สวัสดีครับ วันนี้อากาศเป็นอย่างไรบ้าง ผมอยากจองโต๊ะสำหรับสี่คนคืนนี้",
}


@pytest.mark.slow
async def test_the_estimate_covers_the_real_tokenizer_in_every_script() -> None:
    """Estimated tokens are at least the model's own count, and not wildly more."""
    server = await _server(context=512)
    try:
        auth = {"Authorization": f"Bearer {server.api_key}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            for script, text in SCRIPTS.items():
                reply = await client.post("/tokenize", json={"content": text}, headers=auth)
                real = len(reply.json()["tokens"])
                estimate = estimate_tokens(text) - 4  # without the per-message overhead
                assert real <= estimate <= 2.5 * real, (script, real, estimate)
    finally:
        await server.stop()
