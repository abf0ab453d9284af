"""The pipeline choice in the settings: saved and read back, old files still load, a change
rebuilds the engines, the engine names the contract gives, and no key in a child's
environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.app.engines import AgentEngineSet, EngineSet, build_engine_set
from assistant.app.settings import compare
from assistant.config import Settings, load_settings, save_settings
from assistant.engines.local.llama_server import child_environment
from assistant.engines.registry import LLM_FACTORIES, S2S_FACTORIES, UnknownEngineError, make_s2s


def test_the_pipeline_round_trips_and_old_files_load(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    settings = Settings(pipeline="s2s")
    settings.s2s.engine = "assemblyai-agent"
    settings.s2s.voice = "ivy"
    settings.s2s.turn_detection = "provider"
    save_settings(settings, path)
    assert load_settings(path).settings == settings
    path.write_text('stt = "fake"\nllm = "fake"\ntts = "fake"\n')  # written before pipelines
    old = load_settings(path)
    assert old.notice is None and old.settings.pipeline == "chained"
    path.write_text('pipeline = "telepathy"\n')
    assert load_settings(path).notice is not None  # refused, kept aside, defaults in use


def test_a_change_of_pipeline_rebuilds_the_engines_and_a_change_of_voice_the_session() -> None:
    chained = Settings()
    s2s = Settings(pipeline="s2s")
    assert compare(chained, s2s).rebuild_engines
    voiced = Settings(pipeline="s2s")
    voiced.s2s.voice = "cedar"
    change = compare(s2s, voiced)
    assert not change.rebuild_engines and change.reopen_session


def test_the_contract_names_and_the_engine_sets() -> None:
    assert {"anthropic", "assemblyai-gateway"} <= set(LLM_FACTORIES)
    assert {"openai-realtime", "assemblyai-agent"} <= set(S2S_FACTORIES)
    settings = Settings(pipeline="s2s")
    settings.s2s.engine = "fake"
    assert isinstance(build_engine_set(settings), AgentEngineSet)
    assert isinstance(build_engine_set(Settings(stt="fake", llm="fake", tts="fake")), EngineSet)
    with pytest.raises(UnknownEngineError, match="unknown speech-to-speech engine 'martian'"):
        make_s2s("martian", settings)


def test_endpoint_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert settings.endpoint("anthropic") == "https://api.anthropic.com"
    for provider, variable in [
        ("anthropic", "PARLEY_ANTHROPIC_URL"),
        ("assemblyai_gateway", "PARLEY_ASSEMBLYAI_GATEWAY_URL"),
        ("assemblyai_agent", "PARLEY_ASSEMBLYAI_AGENT_URL"),
        ("openai_realtime", "PARLEY_OPENAI_REALTIME_URL"),
    ]:
        monkeypatch.setenv(variable, f"ws://127.0.0.1:9/{provider}")
        assert settings.endpoint(provider) == f"ws://127.0.0.1:9/{provider}"


def test_no_key_reaches_a_child_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("ANTHROPIC_API_KEY", "ASSEMBLYAI_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.setenv(variable, "canary-0123456789")
    assert "canary-0123456789" not in "".join(child_environment().values())
