"""`parley talk` end to end with the cloud adapters, against local servers speaking each
provider's real wire protocol, and the fallback to the local engines when a provider fails."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_runs import talk
from tests.cloud import InThread
from tests.fakes.assemblyai_server import FakeAssemblyAI
from tests.fakes.async_server import FakeAsync
from tests.fakes.deepgram_server import FakeDeepgram
from tests.fakes.elevenlabs_server import FakeElevenLabs
from tests.fakes.openai_server import FakeOpenAIServer


@pytest.fixture
def openai_fake() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(api_key="sk-test-key") as server:
        server.transcripts.extend(["What is the tallest mountain in the world?"] * 3)
        yield server


def openai_env(server: FakeOpenAIServer) -> dict[str, str]:
    return {
        "OPENAI_API_KEY": "sk-test-key",
        "PARLEY_OPENAI_BASE_URL": server.http_url,
        "PARLEY_OPENAI_REALTIME_URL": server.realtime_url,
    }


ALL_OPENAI = ("--stt", "openai", "--llm", "openai", "--tts", "openai")


def test_talk_with_openai_for_every_stage(tmp_path: Path, openai_fake: FakeOpenAIServer) -> None:
    result, data = talk(tmp_path, *ALL_OPENAI, env=openai_env(openai_fake))
    assert result.returncode == 0, result.stderr
    (turn,) = data["turns"]
    assert turn["user_text"] == "What is the tallest mountain in the world?"
    assert turn["assistant_text"] == openai_fake.chat_reply
    assert data["peak"] > 1000
    assert openai_fake.chat_requests[0]["messages"][-1]["content"] == turn["user_text"]
    assert "sk-test-key" not in result.stdout + result.stderr + json.dumps(data)


def test_talk_offers_the_tools_and_the_timeline_records_each_call(
    tmp_path: Path, openai_fake: FakeOpenAIServer
) -> None:
    openai_fake.transcripts.clear()
    openai_fake.transcripts.append("What is seventeen times twenty-three?")
    openai_fake.chat_tool_call = ("calculate", '{"expression": "17 * 23"}')
    openai_fake.chat_reply = "Seventeen times twenty-three is 391."
    result, data = talk(tmp_path, *ALL_OPENAI, env=openai_env(openai_fake))
    assert result.returncode == 0, result.stderr
    (turn,) = data["turns"]
    (call,) = turn["tool_calls"]
    assert isinstance(call.pop("ms"), float)  # how long the tool ran
    assert call == {"name": "calculate", "arguments": '{"expression": "17 * 23"}', "result": "391"}
    assert turn["assistant_text"] == "Seventeen times twenty-three is 391."
    offered = {tool["function"]["name"] for tool in openai_fake.chat_requests[0]["tools"]}
    assert offered >= {"calculate", "get_time"}
    follow_up = openai_fake.chat_requests[1]["messages"]
    assert {"role": "tool", "content": "391"}.items() <= follow_up[-1].items()


@pytest.mark.parametrize("stt", ["assemblyai", "deepgram"])
@pytest.mark.parametrize("tts", ["elevenlabs", "async"])
def test_talk_with_streaming_cloud_stt_and_tts(
    tmp_path: Path, openai_fake: FakeOpenAIServer, stt: str, tts: str
) -> None:
    stt_fake = FakeAssemblyAI() if stt == "assemblyai" else FakeDeepgram()
    tts_fake = FakeElevenLabs() if tts == "elevenlabs" else FakeAsync()
    with InThread(stt_fake) as s, InThread(tts_fake) as t:
        env = {
            **openai_env(openai_fake),
            f"PARLEY_{stt.upper()}_URL": s.url,
            f"{stt.upper()}_API_KEY": s.key,
            f"PARLEY_{tts.upper()}_URL": t.url,
            f"{tts.upper()}_API_KEY": t.key,
        }
        result, data = talk(tmp_path, "--stt", stt, "--llm", "openai", "--tts", tts, env=env)
    assert result.returncode == 0, result.stderr
    (turn,) = data["turns"]
    assert turn["user_text"]
    assert turn["assistant_text"] == openai_fake.chat_reply
    assert data["peak"] > 500
    assert turn["voice_to_voice_ms"] > 0


def test_a_failing_cloud_voice_falls_back_to_the_local_one(tmp_path: Path) -> None:
    # No ElevenLabs key: the provider fails before producing audio, the local voice answers.
    result, data = talk(tmp_path, "--stt", "fake", "--llm", "fake", "--tts", "elevenlabs", env={})
    assert result.returncode == 0, result.stderr
    assert "elevenlabs failed" in result.stderr and "using local" in result.stderr
    assert "ELEVENLABS_API_KEY" in result.stderr  # says where to set the key
    (turn,) = data["turns"]
    assert turn["assistant_text"].startswith("You asked:")
    assert data["peak"] > 1000
