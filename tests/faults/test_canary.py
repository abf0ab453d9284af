"""Canary keys through the whole app and ``parley talk``: from the environment (with the CR and
LF a Windows paste leaves) and from the keyring, through the cloud engines against their fake
servers — one of which rejects its key and echoes it back, as some servers do — and the local
model's server. The canaries must appear in no log record (tracebacks included), no file, no
``repr()``, no TIMELINE.json, no message the user sees, no exception text, and not in the
environment of the llama-server child. (The conformance suite covers each cloud adapter alone.)
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from assistant import secrets
from assistant.app import EngineSet
from assistant.audio.wav import write_wav
from assistant.bench.invariants import spellings
from assistant.config import Settings, save_settings
from assistant.engines.fallback import FallbackLLM, FallbackSTT, FallbackTTS
from assistant.engines.registry import make_llm, make_stt, make_tts
from assistant.events import ErrorEvent, Notice
from tests.fakes.deepgram_server import FakeDeepgram
from tests.fakes.elevenlabs_server import FakeElevenLabs
from tests.fakes.keyrings import MemoryKeyring, installed
from tests.fakes.openai_server import FakeOpenAIServer
from tests.faults.rig import Rig, fake_engines
from tests.faults.scenarios.local_server import ROOT, stand_in_binary

pytestmark = pytest.mark.timeout(120)


def canary(name: str) -> str:
    return f"canary-{name}-{uuid.uuid4().hex}"


def assert_nowhere(canaries: list[str], texts: list[str], root: Path) -> None:
    forms = sorted({f for c in canaries for f in spellings(c)}, key=len, reverse=True)
    for text in texts:
        hits = [f for f in forms if f in text]
        assert not hits, f"a key in: {text[:300]!r}"
    for path in root.rglob("*"):
        if path.is_file() and path.stat().st_size < 20_000_000:
            data = path.read_bytes()
            assert not any(f.encode() in data for f in forms), f"a key in the file {path}"


@pytest.fixture
def everything_logged(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def log_texts(caplog: pytest.LogCaptureFixture) -> list[str]:
    formatter = logging.Formatter("%(name)s %(message)s")
    return [caplog.text, *(formatter.format(r) for r in caplog.records)]


async def test_no_key_anywhere_in_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, everything_logged: pytest.LogCaptureFixture
) -> None:
    deepgram_key, openai_key, eleven_key = canary("dg"), canary("oa"), canary("el")
    monkeypatch.setenv("DEEPGRAM_API_KEY", deepgram_key + "\r\n")
    monkeypatch.setenv("OPENAI_API_KEY", openai_key + "\r")
    monkeypatch.delenv("ELEVENLABS_API_KEY", raising=False)
    keyring = MemoryKeyring({(secrets.SERVICE, "elevenlabs"): eleven_key})
    monkeypatch.setenv("PARLEY_LLAMA_SERVER", str(stand_in_binary(tmp_path)))
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    from assistant.engines.local import llm as local_llm

    monkeypatch.setattr(local_llm, "ensure_model", lambda _name, _progress=None: model)
    texts: list[str] = []
    with installed(keyring):
        async with (
            FakeDeepgram(key=deepgram_key, endpointing=None, utterance_end=None) as deepgram,
            FakeElevenLabs(key="a-key-that-is-not-the-one-stored") as eleven,
        ):
            openai = FakeOpenAIServer(api_key=openai_key).start()
            try:
                monkeypatch.setenv("PARLEY_DEEPGRAM_URL", deepgram.url)
                monkeypatch.setenv("PARLEY_OPENAI_BASE_URL", openai.http_url)
                monkeypatch.setenv("PARLEY_ELEVENLABS_URL", eleven.url)
                settings = Settings(stt="deepgram", llm="openai", tts="elevenlabs")
                _, spare_llm, spare_tts = fake_engines(name="spare")

                def engines(_clock: Any) -> EngineSet:
                    local = local_llm.LocalLLM(threads=1)
                    return EngineSet(
                        FallbackSTT([make_stt("deepgram", settings)]),
                        FallbackLLM([make_llm("openai", settings), local, spare_llm]),
                        FallbackTTS([make_tts("elevenlabs", settings), spare_tts]),
                    )

                rig = Rig(tmp_path, engines=engines, virtual=False, settings=settings)
                async with rig:
                    await rig.turn("talk")  # ElevenLabs refuses the stored key: spare voice
                    openai.chat_faults.clear()
                    openai.api_key = "another-key"  # now OpenAI refuses, and echoes the key
                    await rig.turn("type")
                    llm = rig.app.engines.llm if rig.app.engines else None
                    local = next(e for e in getattr(llm, "engines", []) if e.name == "local")
                    server = local.server
                    assert server is not None and server.pid is not None
                    child_env = "\n".join(
                        f"{k}={v}" for k, v in psutil.Process(server.pid).environ().items()
                    )
                    texts += [child_env, repr(rig.app), repr(rig.app.engines), repr(settings)]
                    texts += [repr(e) for e in getattr(llm, "engines", [])]
                shown = [e for _, e in rig.events if isinstance(e, ErrorEvent | Notice)]
                assert any("rejected the API key" in e.message for e in shown), shown
                texts += [e.message for e in shown]
                texts += [repr(e) for _, e in rig.events]
                assert rig.invariants.violations() == []
            finally:
                await asyncio.to_thread(openai.stop)
    assert_nowhere([deepgram_key, openai_key, eleven_key], texts + log_texts(everything_logged),
                   tmp_path)  # fmt: skip


def test_no_key_anywhere_in_parley_talk(tmp_path: Path) -> None:
    deepgram_key, openai_key, eleven_key = canary("dg"), canary("oa"), canary("el")
    save_settings(Settings(fallback_to_local=False))  # the cloud engines alone
    wav = tmp_path / "question.wav"
    rng = np.random.default_rng(5)
    write_wav(str(wav), (rng.standard_normal(24_000) * 3000).astype(np.int16), 16_000)

    async def serve_and_talk() -> subprocess.CompletedProcess[str]:
        async with (
            FakeDeepgram(key=deepgram_key, endpointing=None, utterance_end=None) as deepgram,
            FakeElevenLabs(key=eleven_key) as eleven,
        ):
            with FakeOpenAIServer(api_key="refuses-every-key") as openai:
                env = {
                    **os.environ,
                    "PYTHONPATH": str(ROOT),
                    "DEEPGRAM_API_KEY": deepgram_key + "\r\n",
                    "OPENAI_API_KEY": openai_key + "\n",
                    "ELEVENLABS_API_KEY": "\t" + eleven_key + "\r",
                    "PARLEY_DEEPGRAM_URL": deepgram.url,
                    "PARLEY_OPENAI_BASE_URL": openai.http_url,
                    "PARLEY_ELEVENLABS_URL": eleven.url,
                }
                command = [
                    sys.executable, "-m", "assistant.cli", "-v", "talk", "--input", str(wav),
                    "--stt", "deepgram", "--llm", "openai", "--tts", "elevenlabs",
                    "--turns", "ptt", "--pace", "fast", "--history", str(tmp_path / "history"),
                    "--timeline", str(tmp_path / "TIMELINE.json"),
                    "--output", str(tmp_path / "answer.wav"),
                ]  # fmt: skip
                return await asyncio.to_thread(
                    subprocess.run, command, env=env, capture_output=True, text=True, timeout=90
                )

    done = asyncio.run(serve_and_talk())
    output = done.stdout + done.stderr
    assert "rejected the API key" in output, output  # the refusal was reported...
    assert (tmp_path / "TIMELINE.json").is_file()
    assert_nowhere([deepgram_key, openai_key, eleven_key], [output], tmp_path)  # ...keyless
