"""Everything the window can do, done headless through ``Assistant``: a real session, capture
and player on a software sound card, the scripted engines, and the history on disk."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from assistant.app import Assistant, EngineSet
from assistant.audio.capture import MicrophoneCapture
from assistant.audio.player import DevicePlayer, VirtualPlayer
from assistant.audio.push import PushSource
from assistant.config import Settings, load_settings
from assistant.engines.fake import FakeLLM, FakeSTT, FakeTTS
from assistant.events import (
    AppEvent,
    AudioStatus,
    ConversationLoaded,
    ErrorEvent,
    FinalTranscript,
    Loading,
    Notice,
    Ready,
    SettingsApplied,
    State,
    StateChanged,
    ToolCalled,
    TurnFinished,
    TurnModeChanged,
)
from assistant.history import HistoryStore, TurnRecord
from tests.conftest import ScriptVAD
from tests.fakes.sound_card import FakeSoundCard, report_output_lost


class Recorder:
    """Every event the assistant publishes, with waits on what a test expects next."""

    def __init__(self, assistant: Assistant) -> None:
        self.events: list[AppEvent] = []
        assistant.events.subscribe(self.events.append)

    def of[T](self, kind: type[T]) -> list[T]:
        return [e for e in self.events if isinstance(e, kind)]

    def messages(self, kind: type[ErrorEvent] | type[Notice]) -> list[str]:
        return [e.message for e in self.of(kind)]

    async def until(self, predicate: Callable[[], object], what: str, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > end:
                raise AssertionError(f"timed out waiting for {what}; events: {self.events}")
            await asyncio.sleep(0.01)

    async def turn(self, count: int) -> TurnRecord:
        """The ``count``-th finished turn (1-based), once it is there."""
        await self.until(lambda: len(self.of(TurnFinished)) >= count, f"turn {count}")
        return self.of(TurnFinished)[count - 1].turn


def settings() -> Settings:
    return Settings(stt="fake", llm="fake", tts="fake")


def on_card(card: FakeSoundCard, tmp_path: Path, engines: Any, **options: Any) -> Assistant:
    """An assistant with the fake engines ``engines`` builds, hearing and speaking through
    ``card``, its turns cut by a scripted voice detector."""
    return Assistant(
        settings(),
        history_dir=tmp_path / "conversations",
        engine_factory=engines,
        source_factory=lambda _s: MicrophoneCapture(
            samplerate=16_000, stream_factory=card.input_stream
        ),
        player_factory=lambda _s: DevicePlayer(
            samplerate=24_000, blocksize=480, stream_factory=card.output_stream
        ),
        vad_factory=lambda _s: ScriptVAD(),
        turn_model_factory=lambda _s: None,
        **options,
    )


@pytest.fixture
async def card_assistant(tmp_path: Path) -> AsyncIterator[tuple[Assistant, FakeSoundCard]]:
    card = FakeSoundCard()
    engines = EngineSet(
        FakeSTT(),
        FakeLLM(ttft=0.02, tokens_per_second=400, tool_call=None),
        FakeTTS(first_audio_delay=0.01, chars_per_second=60, realtime_factor=0.0),
    )
    assistant = on_card(card, tmp_path, lambda _s: engines)
    try:
        yield assistant, card
    finally:
        await assistant.close()


async def talk(assistant: Assistant, card: FakeSoundCard, seconds: float = 0.6) -> None:
    assert assistant.press_to_talk()
    await card.speak(seconds)
    assistant.release_to_talk()


async def test_everything_the_window_does_works_headless(card_assistant, tmp_path: Path) -> None:
    assistant, card = card_assistant
    seen = Recorder(assistant)
    await assistant.start()
    await assistant.wait_ready(5)
    assert seen.of(ConversationLoaded)[0].turns == ()
    assert {e.component for e in seen.of(Loading) if e.fraction == 1.0} == {
        "speech recognition",
        "language model",
        "speech synthesis",
    }
    assert seen.of(AudioStatus)[-1] == AudioStatus(True, True, seen.of(AudioStatus)[-1].at)
    assert [e.ready for e in seen.of(Ready)] == [True]
    assert assistant.can_talk and assistant.state is State.LISTENING

    # Push-to-talk: press, speak into the microphone, release; the answer is played.
    await talk(assistant, card)
    first = await seen.turn(1)
    assert first.user_text == "What is a good name for a cat?"
    assert first.assistant_text.startswith("You asked: What is a good name for a cat")
    assert [e.text for e in seen.of(FinalTranscript)] == [first.user_text]
    assert card.outputs[-1].peak > 0.1  # the reply reached the speaker
    states = [e.state for e in seen.of(StateChanged)]
    assert states[:4] == [State.LISTENING, State.USER_SPEAKING, State.THINKING, State.SPEAKING]

    # A typed message.
    assert not assistant.submit_text("   ")
    assert assistant.submit_text("How do I boil an egg?")
    second = await seen.turn(2)
    assert second.assistant_text.startswith("You asked: How do I boil an egg")

    # Settings applied live: a new session on the same engines, the conversation kept, the new
    # turn mode in force at once and saved.
    first_session = assistant.session
    changed = settings()
    changed.system_prompt = "Answer like a pirate."
    changed.turn_mode = "vad"
    await assistant.apply_settings(changed)
    assert assistant.session is not first_session and assistant.session is not None
    assert assistant.session.settings.system_prompt == "Answer like a pirate."
    assert assistant.session.turn_mode == "vad"
    assert [t.turn_id for t in assistant.session.conversation.turns] == [1, 2]
    assert seen.of(TurnModeChanged)[-1].mode == "vad"
    assert seen.of(SettingsApplied)[-1].settings.system_prompt == "Answer like a pirate."
    assert "Settings saved and applied." in seen.messages(Notice)
    assert load_settings().settings.system_prompt == "Answer like a pirate."
    assistant.set_turn_mode("ptt")
    assert assistant.session.turn_mode == "ptt" and load_settings().settings.turn_mode == "ptt"
    await assistant.wait_ready(5)

    # The sound card goes away: both losses are explained, typing still works.
    card.unplug()
    await seen.until(lambda: not assistant.microphone_ok, "the microphone lost")
    await seen.until(lambda: not assistant.speaker_ok, "the speaker lost")
    await seen.until(lambda: "No audio output device" in " ".join(seen.messages(ErrorEvent)), "")
    errors = {e.source: e.message for e in seen.of(ErrorEvent)}
    assert "microphone was lost" in errors["audio-input"]
    assert errors["audio-input"].endswith("Choose Retry after reconnecting it, or type below.")
    assert any("output device was lost" in m and "Retry" in m for m in seen.messages(ErrorEvent))
    await assistant.wait_ready(5)
    assert not assistant.press_to_talk()
    assert seen.messages(ErrorEvent)[-1].startswith("No microphone is capturing")
    assert assistant.submit_text("Are you still there?")
    assert (await seen.turn(3)).assistant_text.startswith("You asked: Are you still there")

    # Plugged back in: Retry brings both back, and talking works again.
    card.plug()
    await assistant.restart_audio()
    assert assistant.microphone_ok and assistant.speaker_ok
    assert seen.of(AudioStatus)[-1].microphone_ok and seen.of(AudioStatus)[-1].speaker_ok
    await talk(assistant, card)
    fourth = await seen.turn(4)
    assert fourth.user_text == "Tell me something interesting about the moon."

    # A new conversation; the old one stays on disk, whole.
    assistant.new_conversation()
    assert seen.of(ConversationLoaded)[-1].turns == ()
    assert assistant.session is not None and assistant.session.conversation.turns == []
    assert assistant.submit_text("Hello again")
    fifth = await seen.turn(5)
    assert fifth.turn_id == 5  # ids keep growing: stale audio can never pass as new
    await assistant.close()

    store = HistoryStore(tmp_path / "conversations")
    conversations = store.conversations()
    assert len(conversations) == 2
    on_disk = {tuple(t.user_text for t in store.load(p)[0].turns) for p in conversations}
    assert on_disk == {
        (
            "What is a good name for a cat?",
            "How do I boil an egg?",
            "Are you still there?",
            "Tell me something interesting about the moon.",
        ),
        ("Hello again",),
    }


class _Speakers:
    """Players for an assistant, kept in the order they were opened."""

    def __init__(self) -> None:
        self.opened: list[VirtualPlayer] = []

    def __call__(self, _settings: Settings) -> VirtualPlayer:
        self.opened.append(VirtualPlayer(pace="fast", record=False))
        return self.opened[-1]


class _Microphone(PushSource):
    """Runs ``on_stop`` as it stops (the moment Retry is closing the old streams)."""

    def __init__(self, on_stop: Callable[[], None]) -> None:
        super().__init__()
        self._on_stop = on_stop

    async def stop(self) -> None:
        self._on_stop()
        await asyncio.sleep(0.01)  # closing a stream takes a moment
        await super().stop()


@pytest.mark.parametrize("loss", ["before Retry", "while Retry closes the streams"])
async def test_a_speaker_lost_as_retry_is_pressed_is_reopened_once(
    tmp_path: Path, loss: str
) -> None:
    """The speaker's watchdog gives up on a dead device just as the user presses Retry: the
    Retry's reopen replaces it, and no second reopen follows to cut off the user's next turn."""
    speakers = _Speakers()
    armed = False

    def on_stop() -> None:
        if armed:
            report_output_lost(speakers.opened[0])

    assistant = Assistant(
        settings(),
        history_dir=tmp_path / "conversations",
        engine_factory=lambda _s: (FakeSTT(), FakeLLM(ttft=0.01), FakeTTS(realtime_factor=0)),
        source_factory=lambda _s: _Microphone(on_stop),
        player_factory=speakers,
        persist=False,
    )
    seen = Recorder(assistant)
    try:
        await assistant.start()
        await assistant.wait_ready(5)
        if loss == "before Retry":
            report_output_lost(speakers.opened[0])
        else:
            armed = True
        await assistant.restart_audio()
        armed = False
        session = assistant.session
        await asyncio.sleep(0.2)  # a second reopen would have begun by now
        assert assistant.session is session and assistant.ready and assistant.speaker_ok
        assert len(speakers.opened) == 2
        assert assistant.submit_text("Are you still there?")
        assert (await seen.turn(1)).assistant_text.startswith("You asked: Are you still there")
    finally:
        await assistant.close()


async def test_tools_are_offered_and_their_calls_recorded(tmp_path: Path) -> None:
    llm = FakeLLM(ttft=0.01, tool_call=("calculate", '{"expression": "17 * 23"}'))
    assistant = Assistant(
        settings(),
        history_dir=tmp_path / "conversations",
        engine_factory=lambda _s: (FakeSTT(), llm, FakeTTS(realtime_factor=0.0)),
        source_factory=lambda _s: None,
        player_factory=lambda _s: DevicePlayer(stream_factory=FakeSoundCard().output_stream),
        persist=False,
    )
    seen = Recorder(assistant)
    try:
        await assistant.start()
        await assistant.wait_ready(5)
        assert not assistant.microphone_ok  # no microphone: typing still works
        assert assistant.submit_text("What is seventeen times twenty-three?")
        record = await seen.turn(1)
    finally:
        await assistant.close()
    assert {spec.name for spec in llm.requests[0].tools} >= {"calculate", "get_time"}
    (call,) = seen.of(ToolCalled)
    assert (call.name, call.result) == ("calculate", "391")
    assert [(c.name, c.result) for c in record.tool_calls] == [("calculate", "391")]
    assert record.assistant_text.startswith("The answer is 391")
    (stored,) = HistoryStore(tmp_path / "conversations").latest()[0].turns
    assert stored.tool_calls[0].arguments == '{"expression": "17 * 23"}'


async def test_engines_that_cannot_be_built_say_so_and_nothing_starts(tmp_path: Path) -> None:
    def broken(_settings: Settings) -> EngineSet:
        raise ValueError("unknown speech-to-text engine 'martian'")

    assistant = Assistant(
        settings(), history_dir=tmp_path, engine_factory=broken, source_factory=lambda _s: None
    )
    seen = Recorder(assistant)
    try:
        await assistant.start()
        assert not assistant.ready
        assert not assistant.press_to_talk()
        assert not assistant.submit_text("hello")
    finally:
        await assistant.close()
    (first, *again) = seen.messages(ErrorEvent)
    assert first.startswith("Cannot set up the engines: unknown speech-to-text engine 'martian'.")
    assert first.endswith("Choose other engines in Settings.")
    assert again == [first, first]


async def test_the_pipeline_switches_to_speech_to_speech_and_back(tmp_path: Path) -> None:
    """Settings → Pipeline, live: the same conversation goes on with a speech-to-speech
    engine (which starts from the turns so far), then with the chained engines again."""
    from assistant.app.engines import AgentEngineSet, build_engine_set
    from assistant.engines.fake_agent import FakeSpeechAgent
    from assistant.session.s2s import SpeechSession

    card = FakeSoundCard()
    agent = FakeSpeechAgent()
    built: list[object] = []

    def engines(s: Settings) -> object:
        chosen = AgentEngineSet(agent) if s.pipeline == "s2s" else build_engine_set(s)
        built.append(chosen)
        return chosen

    assistant = on_card(card, tmp_path, engines, persist=False)
    seen = Recorder(assistant)
    try:
        await assistant.start()
        await assistant.wait_ready(5)
        await talk(assistant, card)
        first = await seen.turn(1)
        s2s = settings()
        s2s.pipeline = "s2s"
        await assistant.apply_settings(s2s)
        await assistant.wait_ready(5)
        assert isinstance(assistant.session, SpeechSession) and assistant.tts is None
        assert "speech to speech" in {e.component for e in seen.of(Loading)}
        await talk(assistant, card)
        second = await seen.turn(2)
        assert second.assistant_text == agent.reply and second.timeline["voice_to_voice_ms"] > 0
        (session,) = agent.sessions
        assert [m.content for m in session.setup.history][:1] == [first.user_text]
        await assistant.apply_settings(settings())
        await assistant.wait_ready(5)
        assert not isinstance(assistant.session, SpeechSession)
        assert session.closed
        stored = HistoryStore(tmp_path / "conversations").latest()[0].turns
        assert [t.turn_id for t in stored] == [first.turn_id, second.turn_id]
    finally:
        await assistant.close()
