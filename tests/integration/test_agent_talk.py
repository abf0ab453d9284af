"""`parley talk` end to end with Claude, AssemblyAI's LLM Gateway and the speech-to-speech engines
(``--llm anthropic``, ``--llm assemblyai-gateway``, ``--s2s openai-realtime``,
``--s2s assemblyai-agent``), each against a local server speaking the provider's wire protocol,
with canary keys from the environment that must appear nowhere: not in the output, the
TIMELINE.json, the history files or the logs."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests import cli_runs
from tests.cloud import InThread, files_containing
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.gateway_server import FakeGateway
from tests.fakes.realtime_agent_server import FakeRealtimeAgent
from tests.fakes.voice_agent_server import FakeVoiceAgent

QUESTION = "What is a good name for a cat?"  # what the scripted recognizer hears
#: The scripted recognizer and voice around the language model under test.
CHAINED_FAKES = ("--stt", "fake", "--tts", "fake")
TIMELINE_KEYS = {
    "turn_id",
    "user_text",
    "assistant_text",
    "interrupted",
    "marks_ms",
    "voice_to_voice_ms",
    "stages_ms",
    "over_budget",
    "tool_calls",
    "error",
}


def talk(
    tmp: Path, *engines: str, env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """``parley talk`` on the sample, verbose, with no fallback engine (the cloud one answers or
    the run fails); its history under ``tmp``."""
    config = tmp / "config"
    config.mkdir(exist_ok=True)
    (config / "settings.toml").write_text("fallback_to_local = false\n")
    history = ("--history", str(tmp / "history"))
    return cli_runs.talk(
        tmp, *history, *engines, env={"PARLEY_CONFIG_DIR": str(config), **env}, verbose=True
    )


def answered(
    tmp: Path, fake: Any, *engines: str, via: tuple[str, str]
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], dict[str, Any]]:
    """``talk`` while ``fake`` serves, its key in the environment variable ``via[0]`` and its URL
    in ``via[1]``: the run succeeds with one turn. The run, the timeline's data and its turn."""
    with InThread(fake):
        result, data = talk(tmp, *engines, env={via[0]: fake.key, via[1]: fake.url})
    assert result.returncode == 0, result.stderr
    (turn,) = data["turns"]
    return result, data, turn


def unleaked(key: str, result: subprocess.CompletedProcess[str], tmp: Path) -> None:
    assert key not in result.stdout + result.stderr
    assert files_containing(tmp, key) == []


@pytest.mark.parametrize("tools", [False, True])
def test_talk_with_claude(tmp_path: Path, tools: bool) -> None:
    fake = FakeAnthropic(key="sk-ant-canary-0123456789abcdef")
    if tools:
        fake.tool_call = ("calculate", '{"expression": "17 * 23"}')
        fake.reply = "Seventeen times twenty-three is 391."
    via = ("ANTHROPIC_API_KEY", "PARLEY_ANTHROPIC_URL")
    result, data, turn = answered(tmp_path, fake, "--llm", "anthropic", *CHAINED_FAKES, via=via)
    assert set(turn) >= TIMELINE_KEYS
    # With a tool, Claude's words before the call ("Let me check.") are spoken too.
    assert turn["user_text"] == QUESTION and turn["assistant_text"].endswith(fake.reply)
    assert turn["voice_to_voice_ms"] > 0 and data["peak"] > 1000
    assert fake.model_requests == 1  # the connection was opened at warm-up
    request = fake.chat_requests[0]
    assert request["model"] == "claude-haiku-4-5" and "Parley" in request["system"]
    if tools:
        assert [c["result"] for c in turn["tool_calls"]] == ["391"]
        follow_up = fake.chat_requests[1]["messages"]
        assert follow_up[-1]["content"][0] == {
            "type": "tool_result",
            "tool_use_id": "toolu_fake1",
            "content": "391",
        }
    unleaked(fake.key, result, tmp_path)


def test_talk_with_the_llm_gateway(tmp_path: Path) -> None:
    fake = FakeGateway(key="aai-canary-0123456789abcdef")
    via = ("ASSEMBLYAI_API_KEY", "PARLEY_ASSEMBLYAI_GATEWAY_URL")
    result, _, turn = answered(
        tmp_path, fake, "--llm", "assemblyai-gateway", *CHAINED_FAKES, via=via
    )
    assert turn["assistant_text"] == fake.reply and turn["voice_to_voice_ms"] > 0
    assert fake.auth_headers[-1] == fake.key  # the raw key, no "Bearer"
    assert fake.chat_requests[0]["stream"] is True
    unleaked(fake.key, result, tmp_path)


@pytest.mark.parametrize(
    ("name", "fake", "env"),
    [
        (
            "openai-realtime",
            FakeRealtimeAgent(key="sk-canary-0123456789abcdef"),
            ("OPENAI_API_KEY", "PARLEY_OPENAI_REALTIME_URL"),
        ),
        (
            "assemblyai-agent",
            FakeVoiceAgent(key="aai-canary-0123456789abcdef"),
            ("ASSEMBLYAI_API_KEY", "PARLEY_ASSEMBLYAI_AGENT_URL"),
        ),
    ],
)
def test_talk_with_a_speech_to_speech_engine(
    tmp_path: Path, name: str, fake: Any, env: tuple[str, str]
) -> None:
    fake.transcripts.append("What is the tallest mountain in the world?")
    result, data, turn = answered(tmp_path, fake, "--s2s", name, via=env)
    assert set(turn) >= TIMELINE_KEYS
    assert turn["user_text"] == "What is the tallest mountain in the world?"
    assert turn["assistant_text"] == fake.reply and not turn["interrupted"]
    marks = turn["marks_ms"]
    assert marks["speech_end"] == 0 and marks["tts_first_audio"] <= marks["playback_start"]
    assert turn["voice_to_voice_ms"] == marks["playback_start"] > 0
    assert data["peak"] > 1000 and data["underruns"] >= 0
    history = next((tmp_path / "history").glob("*.jsonl")).read_text()
    assert fake.reply in history
    unleaked(fake.key, result, tmp_path)


def test_s2s_replaces_the_chained_engines(tmp_path: Path) -> None:
    result, _ = talk(tmp_path, "--s2s", "openai-realtime", "--llm", "anthropic", env={})
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line == "parley: error: --s2s replaces --llm: give one or the other"
    result, _ = talk(tmp_path, "--s2s", "martian", env={})
    assert "unknown speech-to-speech engine 'martian'" in result.stderr


def test_a_missing_key_is_one_clear_line(tmp_path: Path) -> None:
    result, _ = talk(tmp_path, "--s2s", "assemblyai-agent", env={})
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("parley: error:") and "ASSEMBLYAI_API_KEY" in last
