"""`parley talk` with tools: --tools, --mcp and --structured as a user runs them, the tool
calls and the structured object in TIMELINE.json, and a spoken "what is seventeen times
twenty-three" answered with the calculator by the embedded engines."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from assistant.config import McpServerSettings, Settings
from assistant.engines.fake import FakeLLM, FakeSTT, FakeTTS
from assistant.talk import describe_event, run_talk, write_timeline
from tests.integration.test_local_talk import _local_llm_available, _parley

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "resources" / "samples" / "question.wav"
SERVER = ROOT / "tests" / "fakes" / "mcp_server.py"
FAKE = ("--stt", "fake", "--llm", "fake", "--tts", "fake", "--pace", "fast")


def parley(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return _parley(*args, timeout=timeout)


def test_bad_tool_options_fail_with_one_clear_line(tmp_path: Path) -> None:
    broken = tmp_path / "mcp.toml"
    broken.write_text("[servers.shop]\ncommand = 3\n")
    result = parley("talk", "--input", str(SAMPLE), "--mcp", str(broken), *FAKE)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"parley: error: {broken}: servers.shop.command: expected str, got int"
    )
    neither = tmp_path / "neither.toml"
    neither.write_text("[servers.shop]\nargs = []\n")
    result = parley("talk", "--input", str(SAMPLE), "--mcp", str(neither), *FAKE)
    assert "needs either a command or a url" in result.stderr and result.returncode == 1
    schema = tmp_path / "schema.json"
    schema.write_text('{"type": "object", "properties": {"a": {"type": 5}}}')
    result = parley("talk", "--input", str(SAMPLE), "--structured", str(schema), *FAKE)
    assert result.returncode == 1
    assert result.stderr.startswith("parley: error: the structured-output schema is invalid")
    result = parley("talk", "--input", str(SAMPLE), "--tools", "some", *FAKE)
    assert result.returncode == 2  # argparse: not a choice


def test_structured_output_and_tool_fields_reach_the_timeline(tmp_path: Path) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"topic": {"type": "string"}}}))
    timeline = tmp_path / "timeline.json"
    result = parley(
        "talk", "--input", str(SAMPLE), "--timeline", str(timeline), "--structured", str(schema),
        "--tools", "none", *FAKE,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (turn,) = json.loads(timeline.read_text())["turns"]
    # The scripted model answers in prose, so the extraction fails and says why.
    assert turn["structured"] is None
    assert turn["structured_error"].startswith("invalid JSON from the model twice")
    assert turn["tool_calls"] == []


async def test_an_mcp_server_from_a_config_file_is_called_in_a_talk_run(tmp_path: Path) -> None:
    settings = Settings()
    settings.tools.mcp_servers["shop"] = McpServerSettings(
        command=sys.executable, args=[str(SERVER), "stdio"], timeout=20
    )
    llm = FakeLLM(ttft=0.05, tool_call=("shop__get_order_status", '{"order_id": "c9"}'))
    engines = (FakeSTT(script=("Where is order C9?",)), llm, FakeTTS())
    result = await run_talk(
        SAMPLE, settings=settings, pace="fast", engines=engines, history_dir=tmp_path / "h"
    )
    timeline = tmp_path / "timeline.json"
    write_timeline(timeline, result)
    (turn,) = json.loads(timeline.read_text())["turns"]
    (call,) = turn["tool_calls"]
    assert call["name"] == "shop__get_order_status"
    assert call["result"] == "Order C9 left the warehouse and arrives tomorrow."
    assert isinstance(call["ms"], float) and call["ms"] > 0
    assert result.errors == [] and result.notices == []


def test_mcp_config_file_format(tmp_path: Path) -> None:
    from assistant.tools.mcp import load_servers

    config = tmp_path / "mcp.toml"
    config.write_text(
        '[servers.shop]\ncommand = "python"\nargs = ["server.py"]\nenv = { TOKEN = "${TOKEN}" }\n'
        '[servers.web]\nurl = "http://127.0.0.1:8000/mcp"\nenabled = false\n'
    )
    servers = load_servers(config)
    assert servers["shop"] == McpServerSettings(
        command="python", args=["server.py"], env={"TOKEN": "${TOKEN}"}
    )
    assert servers["web"].url.endswith("/mcp") and not servers["web"].enabled


# ------------------------------------------------------------------ the embedded engines


async def synthesize(text: str, path: Path) -> Path:
    """``text`` spoken by the offline English voice, as a 16 kHz WAV with a little silence."""
    from assistant.audio.wav import resample, write_wav
    from assistant.engines.local.tts import LocalTTS

    async def one() -> AsyncIterator[str]:
        yield text

    tts = LocalTTS()
    try:
        chunks = [c async for c in tts.stream(one(), voice=None, language="en")]
    finally:
        tts.close()
    pcm = resample(np.concatenate([c.pcm for c in chunks]), chunks[0].sample_rate, 16_000)
    silence = np.zeros(int(0.4 * 16_000), np.int16)
    write_wav(path, np.concatenate([silence, pcm, silence]), 16_000)
    return path


@pytest.mark.slow
@pytest.mark.skipif(
    not _local_llm_available(), reason="llama-server is not built (scripts/build_llama_server.sh)"
)
async def test_spoken_arithmetic_calls_the_calculator_with_the_local_engines(tmp_path) -> None:
    """``parley talk``'s run with every engine local (in this process, so a busy machine can
    take its time): the spoken question is routed to ``calculate`` and TIMELINE.json shows it."""
    question = await synthesize("What is seventeen times twenty-three?", tmp_path / "q.wav")
    settings = Settings(stt="local", llm="local", tts="local")
    printed: list[str] = []

    def show(event: object) -> None:
        line = describe_event(event)  # type: ignore[arg-type]
        if line:
            printed.append(line)

    result = await run_talk(
        question, settings=settings, pace="realtime", on_event=show, idle_timeout=900
    )
    timeline = tmp_path / "timeline.json"
    write_timeline(timeline, result)
    assert result.errors == [], result.errors
    (turn,) = json.loads(timeline.read_text())["turns"]
    assert "seventeen" in turn["user_text"].lower() or "17" in turn["user_text"]
    calls = [c for c in turn["tool_calls"] if c["name"] == "calculate"]
    assert calls and calls[0]["result"] == "391", turn["tool_calls"]
    assert isinstance(calls[0]["ms"], float)
    assert turn["assistant_text"]  # the answer's wording is the model's, sampled
    assert any(line.startswith("  [used calculator: ") for line in printed), printed
