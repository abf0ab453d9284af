"""A real ``SpeechSession`` with the real player (paced as a device would) against the local
servers speaking OpenAI's Realtime API and AssemblyAI's Voice Agent API: barge-in leaves the
provider's context cut to what was heard (asserted on the fake), the provider's own turn
detection, tools through Parley's registry, and a dropped Voice Agent session resumed."""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from assistant import secrets
from assistant.config import Settings
from assistant.engines.assemblyai_agent import AssemblyAIVoiceAgent
from assistant.engines.openai.agent import OpenAIRealtimeAgent
from assistant.events import ErrorEvent, ToolCalled
from assistant.session.s2s import SpeechSession
from assistant.tools import default_tools
from tests.cloud import fast
from tests.conftest import LiveHarness
from tests.fakes.realtime_agent_server import FakeRealtimeAgent
from tests.fakes.voice_agent_server import FakeVoiceAgent

pytestmark = pytest.mark.timeout(60)
LONG = "One two three four five six seven eight nine ten eleven twelve thirteen fourteen."


class Talk(LiveHarness[SpeechSession]):
    """A ``SpeechSession`` fed frames at real-time pace: speech-like noise or silence."""

    patience = 15.0

    def __init__(
        self,
        tmp: Path,
        engine: Any,
        *,
        mode: str = "ptt",
        provider_turns: bool = False,
        tools: Any = None,
    ) -> None:
        settings = Settings()
        settings.vad.smart_turn = False
        if provider_turns:
            settings.s2s.turn_detection = "provider"
        session = functools.partial(SpeechSession, engine=engine)
        super().__init__(tmp, session, mode=mode, settings=settings, tools=tools)


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets, "_backend_usable", lambda: False)


@pytest.fixture
async def realtime(keys: None, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeRealtimeAgent]:
    async with FakeRealtimeAgent(key="sk-canary-s2s-0123456789") as fake:
        monkeypatch.setenv("OPENAI_API_KEY", fake.key)
        yield fake


@pytest.fixture
async def voice_agent(keys: None, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeVoiceAgent]:
    async with FakeVoiceAgent(key="aai-canary-s2s-0123456789") as fake:
        monkeypatch.setenv("ASSEMBLYAI_API_KEY", fake.key)
        yield fake


async def test_barge_in_truncates_openai_context_to_what_was_played(
    tmp_path: Path, realtime: FakeRealtimeAgent
) -> None:
    realtime.reply = LONG
    realtime.word_delay = 0.0  # the whole answer arrives long before it has played
    engine = OpenAIRealtimeAgent(realtime.url, policy=fast())
    async with Talk(tmp_path, engine) as talk:
        await talk.ptt(0.8)
        await talk.until(lambda: talk.player.position > 1.0)
        played = talk.player.position
        await talk.ptt(0.6)  # the user cuts in
        await talk.until(lambda: len(talk.finished()) == 2)
    first = talk.finished()[0]
    assert first.interrupted and LONG.startswith(first.assistant_text) and first.assistant_text
    # The answer had arrived whole (nothing left to cancel), but the provider's context keeps
    # only the audio the device had played at the cut (the device may render one more block
    # between reading its position and the press), and the words in it.
    ((_item, end_ms),) = realtime.truncations
    assert -1 <= end_ms - 1000 * played <= 1000 * 480 / 24_000  # whole milliseconds
    kept = next(text for role, text in realtime.context() if role == "assistant")
    assert LONG.startswith(kept) and kept != LONG
    assert abs(len(kept.split()) - len(first.assistant_text.split())) <= 1


async def test_provider_turn_detection_and_its_barge_in(
    tmp_path: Path, realtime: FakeRealtimeAgent
) -> None:
    realtime.reply = LONG
    engine = OpenAIRealtimeAgent(realtime.url, policy=fast())
    async with Talk(tmp_path, engine, mode="vad", provider_turns=True) as talk:
        await talk.audio(0.8, speech=True)
        await talk.until(lambda: talk.player.position > 0.8)
        await talk.audio(0.6, speech=True)  # the provider hears the user cut in
        await talk.until(lambda: len(talk.finished()) == 2)
    (update,) = realtime.session_updates
    assert update["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    first, second = talk.finished()
    assert first.interrupted and first.timeline["notes"]["turn_detection"] == "provider"
    assert first.user_text == realtime.default_transcript
    assert len(realtime.truncations) == 1 and second.assistant_text == LONG


async def test_tools_run_through_parleys_registry(
    tmp_path: Path, realtime: FakeRealtimeAgent
) -> None:
    realtime.tool_call = ("calculate", '{"expression": "17 * 23"}')
    engine = OpenAIRealtimeAgent(realtime.url, policy=fast())
    async with Talk(tmp_path, engine, tools=default_tools()) as talk:
        await talk.ptt(0.6)
        await talk.until(lambda: bool(talk.finished()))
    (turn,) = talk.finished()
    assert [(c.name, c.result) for c in turn.tool_calls] == [("calculate", "391")]
    assert turn.assistant_text == "The answer is 391."
    assert [e.result for e in talk.events if isinstance(e, ToolCalled)] == ["391"]
    outputs = [i for i in realtime.items if i.get("type") == "function_call_output"]
    assert [o["output"] for o in outputs] == ["391"]


async def test_voice_agent_barge_in_tells_the_agent_what_was_heard(
    tmp_path: Path, voice_agent: FakeVoiceAgent
) -> None:
    voice_agent.reply = LONG
    voice_agent.word_delay = 0.0
    engine = AssemblyAIVoiceAgent(voice_agent.url, policy=fast())
    async with Talk(tmp_path, engine) as talk:
        await talk.ptt(0.8)
        await talk.until(lambda: talk.player.position > 1.0)
        await talk.ptt(0.6)
        await talk.until(lambda: len(talk.finished()) == 2)
    first = talk.finished()[0]
    assert first.interrupted and first.assistant_text
    assert any(f"the user heard only: «{first.assistant_text}»" in p for p in voice_agent.prompts())


async def test_voice_agent_resumes_a_dropped_session(
    tmp_path: Path, voice_agent: FakeVoiceAgent
) -> None:
    voice_agent.reply_faults.append("drop_mid_reply")
    engine = AssemblyAIVoiceAgent(voice_agent.url, policy=fast())
    async with Talk(tmp_path, engine) as talk:
        for _ in range(2):
            await talk.ptt(0.6)
            count = len(talk.finished()) + 1
            await talk.until(lambda n=count: len(talk.finished()) == n)  # type: ignore[misc]
    cut, answered = talk.finished()
    assert cut.error and "cut short" in cut.error
    assert answered.assistant_text == voice_agent.reply and not answered.error
    assert len(voice_agent.resumes) == 1 and len(voice_agent.sessions) == 1  # the same session
    assert os.environ["ASSEMBLYAI_API_KEY"] not in (cut.error or "")


async def test_a_server_that_drops_every_session_is_not_reconnected_without_end(
    tmp_path: Path, realtime: FakeRealtimeAgent
) -> None:
    """Every session is closed as soon as it started: one message, and a few connections (the
    next waits seconds), not a connection and a message per moment."""
    realtime.accept_then_close = True
    engine = OpenAIRealtimeAgent(realtime.url, policy=fast())
    async with Talk(tmp_path, engine) as talk:
        await talk.audio(3.0, speech=False)
    errors = [e.message for e in talk.events if isinstance(e, ErrorEvent)]
    assert len(errors) == 1 and errors[0].startswith("Speech to speech failed")
    assert realtime.connections <= 8
