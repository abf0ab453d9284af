"""The parts ``Assistant`` is made of, one at a time: what a settings change rebuilds, the engine
set's warm-up, progress and closing, the output chain's fallback, and the program-fed source."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

from assistant.app import messages
from assistant.app.audio import AudioInput, AudioOutput
from assistant.app.engines import KINDS, EngineSet
from assistant.app.settings import SettingsChange, compare
from assistant.audio.capture import MicrophoneCapture
from assistant.audio.frames import CAPTURE_RATE, FRAME_SAMPLES, AudioFrame
from assistant.audio.player import VirtualPlayer
from assistant.audio.push import PushSource
from assistant.clock import ManualClock
from assistant.config import ProviderSettings, Settings
from assistant.engines.base import EngineError
from assistant.engines.fake import FakeLLM, FakeSTT, FakeTTS
from assistant.engines.fallback import FallbackTTS
from assistant.events import AppEvent, AudioStatus, ErrorEvent, Loading, Notice, Source
from tests.fakes.sound_card import report_output_lost


def changed(**changes: object) -> Settings:
    settings = Settings()
    for key, value in changes.items():
        setattr(settings, key, value)
    return settings


STT, LLM, TTS = KINDS
CLOUD = {"stt": "openai", "llm": "openai", "tts": "openai"}


def needs(*kinds: str, reopen: bool = True, restart: bool = False, mode: bool = False):
    return SettingsChange(frozenset(kinds), reopen, restart, mode)


@pytest.mark.parametrize(
    ("old", "new", "keys", "expected"),
    [
        (Settings(), changed(), False, needs(reopen=False)),
        # Offline engines read no keys; cloud ones are rebuilt when a key changes.
        (Settings(), changed(), True, needs(reopen=False)),
        (changed(llm="openai"), changed(llm="openai"), True, needs(LLM)),
        (Settings(), changed(llm="openai"), False, needs(LLM)),
        # The language needs new recognition and voices, never a new language model.
        (Settings(), changed(language="de"), False, needs(STT, TTS)),
        (Settings(), changed(detect_language=True), False, needs(STT)),
        (Settings(), changed(local_llm_model="qwen2.5-coder-0.5b"), False, needs(LLM)),
        (
            changed(**CLOUD),
            changed(**CLOUD, providers={"openai": ProviderSettings(model="gpt-4o-mini")}),
            False,
            needs(*KINDS),
        ),
        # Provider settings mean nothing to the offline engines.
        (
            Settings(),
            changed(providers={"openai": ProviderSettings(model="gpt-4o-mini")}),
            False,
            needs(reopen=False),
        ),
        (Settings(), changed(system_prompt="Be brief."), False, needs()),
        (Settings(), changed(output_device="3"), False, needs()),
        (Settings(), changed(input_device="2"), False, needs(reopen=False, restart=True)),
        (Settings(), changed(turn_mode="vad"), False, needs(reopen=False, mode=True)),
        (Settings(), changed(hotkey="F8"), False, needs(reopen=False)),
    ],
)
def test_a_settings_change_rebuilds_only_what_it_needs(
    old: Settings, new: Settings, keys: bool, expected: SettingsChange
) -> None:
    assert compare(old, new, keys_changed=keys) == expected


def test_the_embedded_models_have_their_tools_routed_and_others_get_them_natively() -> None:
    from assistant.engines.fallback import FallbackLLM
    from assistant.engines.local.llm import LocalLLM
    from assistant.tools.router import uses_router

    # The embedded models write their calls as text, which would be spoken: a grammar-
    # constrained routing call chooses their tools instead.
    assert uses_router(LocalLLM())
    assert not uses_router(FakeLLM(name="openai")) and not uses_router(FakeLLM(name="local"))
    assert uses_router(FallbackLLM([LocalLLM(), FakeLLM()]))
    assert not uses_router(FallbackLLM([FakeLLM(name="openai"), LocalLLM()]))


@dataclass
class ProgressTTS(FakeTTS):
    """A voice that reports loading progress from a worker thread, and counts closings."""

    on_progress: list[object] = field(default_factory=list)
    closed: int = 0

    async def warm_up(self) -> None:
        def load() -> None:
            for listener in list(self.on_progress):
                listener(0.5, "Loading the voice model…")  # type: ignore[operator]

        thread = threading.Thread(target=load)
        thread.start()
        await asyncio.to_thread(thread.join)

    async def aclose(self) -> None:
        self.closed += 1


class BrokenLLM(FakeLLM):
    async def warm_up(self) -> None:
        raise EngineError("the model file is missing", engine="local")


async def test_warm_up_reports_progress_on_the_loop_and_failures_as_events() -> None:
    tts = ProgressTTS()
    engines = EngineSet(FakeSTT(), BrokenLLM(), FallbackTTS([tts]))
    events: list[AppEvent] = []
    loop_thread = threading.get_ident()
    threads: set[int] = set()

    def emit(event: AppEvent) -> None:
        threads.add(threading.get_ident())
        events.append(event)

    assert not await engines.warm_up(emit)
    await asyncio.sleep(0.01)  # progress posted from the worker thread arrives
    assert threads == {loop_thread}
    loading = [(e.component, e.fraction, e.message) for e in events if isinstance(e, Loading)]
    assert ("speech synthesis", 0.5, "Loading the voice model…") in loading
    assert ("speech recognition", 1.0, "Speech recognition ready") in loading
    assert ("language model", 1.0, "language model failed") in loading
    (error,) = [e for e in events if isinstance(e, ErrorEvent)]
    assert error.source is Source.LLM
    assert error.message == "The language model engine could not load: the model file is missing."

    await engines.warm_up(emit)  # a second warm-up does not hook the engines twice
    assert len(tts.on_progress) == 1
    await engines.aclose()
    assert tts.closed == 1 and tts.on_progress == []  # closed through the chain, and unhooked


async def test_lent_engines_are_unhooked_but_not_closed() -> None:
    tts = ProgressTTS()
    lent = EngineSet(FakeSTT(), FakeLLM(), tts, owned=False)
    assert await lent.warm_up(lambda _e: None, announce=False)
    await lent.aclose()
    assert tts.closed == 0 and tts.on_progress == []


async def test_a_missing_output_device_becomes_a_silent_player_and_a_message() -> None:
    events: list[AppEvent] = []
    statuses: list[bool] = []

    def no_device(_settings: Settings) -> VirtualPlayer:
        raise OSError("No audio output device: the system reports no audio devices.")

    output = AudioOutput(
        no_device,
        emit=events.append,
        on_change=lambda: statuses.append(output.ok),
        on_lost=lambda _player: None,
    )
    player = await output.open(Settings())
    assert isinstance(player, VirtualPlayer) and not output.ok
    assert statuses == [False]
    (error,) = events
    assert isinstance(error, ErrorEvent) and error.source == "audio-output"
    assert error.message == (
        "No audio output device: the system reports no audio devices. Replies are shown as "
        "text only until a speaker works (Retry)."
    )
    await player.close()
    assert not any(isinstance(e, AudioStatus) for e in events)  # status is the owner's to say


async def test_a_device_that_keeps_dying_is_not_reopened_until_retry() -> None:
    events: list[AppEvent] = []
    opened: list[VirtualPlayer] = []
    clock = ManualClock()

    def dying(_settings: Settings) -> VirtualPlayer:
        opened.append(VirtualPlayer(pace="fast", record=False))
        return opened[-1]

    output = AudioOutput(
        dying,
        emit=events.append,
        on_change=lambda: None,
        on_lost=lambda _player: None,
        clock=clock,
    )
    for _ in range(2):  # opened, lost at once, twice within a few seconds
        player = await output.open(Settings())
        await player.close()
        report_output_lost(opened[-1])
        await clock.advance(1.0)
    held = await output.open(Settings())
    again = await output.open(Settings())
    assert len(opened) == 2 and not output.ok  # the device was not tried a third time
    keeps = [e for e in events if isinstance(e, ErrorEvent) and "keeps failing" in e.message]
    assert len(keeps) == 1  # said once, however often the conversation is rebuilt
    output.retry()  # the user reconnected it and chose Retry
    player = await output.open(Settings())
    assert len(opened) == 3 and output.ok
    for p in (held, again, player):
        await p.close()


async def test_only_the_player_opened_last_can_be_lost() -> None:
    """A player being replaced (Retry was pressed as its watchdog gave up) is old news: its
    loss says nothing, asks for no reopen and does not count towards "keeps failing"."""
    events: list[AppEvent] = []
    lost: list[object] = []
    opened: list[VirtualPlayer] = []

    def device(_settings: Settings) -> VirtualPlayer:
        opened.append(VirtualPlayer(pace="fast", record=False))
        return opened[-1]

    output = AudioOutput(device, emit=events.append, on_change=lambda: None, on_lost=lost.append)
    first = await output.open(Settings())
    assert output.current is first
    output.replacing()
    report_output_lost(opened[0])
    second = await output.open(Settings())
    report_output_lost(opened[0])  # late, from a thread: the successor already plays
    assert (events, lost, output.ok, output.current) == ([], [], True, second)
    report_output_lost(opened[1])
    assert lost == [second] and not output.ok
    assert [e.source for e in events if isinstance(e, ErrorEvent)] == ["audio-output"]
    third = await output.open(Settings())
    assert output.ok and output.current is third  # one loss is not "keeps failing"
    for player in (first, second, third):
        await player.close()


def frame(i: int) -> AudioFrame:
    return AudioFrame(np.full(FRAME_SAMPLES, i, np.int16), float(i), i * 0.032)


async def test_push_returns_once_the_consumer_is_done_with_the_frame() -> None:
    source = PushSource()
    await source.start()
    handled: list[int] = []

    async def consume() -> None:
        async for f in source.frames():
            await asyncio.sleep(0.01)  # a slow consumer
            handled.append(int(f.pcm[0]))

    task = asyncio.create_task(consume())
    for i in range(3):
        await source.push(frame(i))
        assert handled == list(range(i + 1))
    source.end()
    await asyncio.wait_for(task, 1)


async def test_stopping_releases_a_pusher_whose_frame_was_never_taken() -> None:
    source = PushSource()
    pusher = asyncio.create_task(source.push(frame(0)))
    await asyncio.sleep(0)
    await source.stop()
    await asyncio.wait_for(pusher, 1)
    with pytest.raises(RuntimeError, match="stopped"):
        await source.push(frame(1))
    assert [f async for f in source.frames()] == []


async def test_a_microphone_that_sends_only_zeros_is_told_once_and_cleared_by_sound() -> None:
    """macOS hands an app without microphone permission exact zeros; so does a muted device."""
    streams: list[_InputStream] = []

    def open_stream(**kw: object) -> _InputStream:
        streams.append(_InputStream(kw))
        return streams[-1]

    events: list[AppEvent] = []
    frames: list[AudioFrame] = []
    seen = asyncio.Event()
    want = [0]

    async def sink(item: AudioFrame) -> None:
        frames.append(item)
        if len(frames) >= want[0]:
            seen.set()

    audio_input = AudioInput(
        lambda _s: MicrophoneCapture(samplerate=CAPTURE_RATE, stream_factory=open_stream),
        sink=sink,
        emit=events.append,
        on_change=lambda: None,
        on_end=lambda: None,
    )
    await audio_input.start(Settings())
    silences: list[bool] = []

    async def capture(block: np.ndarray, seconds: float) -> None:
        """``seconds`` of ``block`` repeated, in 0.5 s callbacks, each taken in full."""
        for _ in range(round(seconds / 0.5)):
            want[0] = len(frames) + len(block) // FRAME_SAMPLES
            seen.clear()
            streams[0].feed(block)
            await asyncio.wait_for(seen.wait(), 20)
            silences.append(audio_input.silent)

    half = CAPTURE_RATE // 2
    await capture(np.zeros(half, np.float32), 2.5)
    await capture(np.random.default_rng(1).normal(0, 1e-4, half).astype(np.float32), 0.5)
    await capture(np.zeros(half, np.float32), 2.5)  # idle again: it has shown it is not muted
    await audio_input.stop()
    assert silences == [False, False, False, True, True, False] + [False] * 5
    notices = [e for e in events if isinstance(e, Notice)]
    assert [n.message for n in notices] == [messages.microphone_silent()]
    assert notices[0].source is Source.AUDIO_INPUT
    assert "Privacy" in notices[0].message or "muted" in notices[0].message  # where to look
    assert not any(isinstance(e, ErrorEvent) for e in events)


async def test_a_silent_microphone_being_stopped_or_lost_leaves_no_warning_behind() -> None:
    streams: list[_InputStream] = []
    events: list[AppEvent] = []
    taken = asyncio.Event()
    go_on = asyncio.Event()
    go_on.set()
    changed = asyncio.Event()

    async def until(condition: Callable[[], bool]) -> None:
        while not condition():
            changed.clear()
            await asyncio.wait_for(changed.wait(), 20)

    async def sink(item: AudioFrame) -> None:
        taken.set()
        await go_on.wait()  # a conversation busy with a frame

    audio_input = AudioInput(
        lambda _s: MicrophoneCapture(
            samplerate=CAPTURE_RATE,
            stream_factory=lambda **kw: streams.append(_InputStream(kw)) or streams[-1],
        ),
        sink=sink,
        emit=events.append,
        on_change=changed.set,
        on_end=lambda: None,
    )

    async def silence_until_told(stream: _InputStream) -> None:
        for _ in range(5):  # 2.5 s of exact zeros
            taken.clear()
            stream.feed(np.zeros(CAPTURE_RATE // 2, np.float32))
            await asyncio.wait_for(taken.wait(), 20)
        await until(lambda: audio_input.silent)

    await audio_input.start(Settings())
    await silence_until_told(streams[0])
    # Stopped while the pump is inside a frame, with more frames of the muted device waiting.
    go_on.clear()
    taken.clear()
    streams[0].feed(np.zeros(CAPTURE_RATE // 2, np.float32))
    await asyncio.wait_for(taken.wait(), 20)
    stopping = asyncio.ensure_future(audio_input.stop())
    await asyncio.sleep(0)
    go_on.set()
    await stopping
    assert not audio_input.silent
    assert sum(isinstance(e, Notice) for e in events) == 1
    # Opened again, still muted: told again (a new microphone); then it is lost.
    await audio_input.start(Settings())
    await silence_until_told(streams[1])
    streams[1].kwargs["finished_callback"]()  # PortAudio: the stream ended by itself
    await until(lambda: not audio_input.ok)
    assert not audio_input.silent
    assert sum(isinstance(e, Notice) for e in events) == 2
    await audio_input.stop()


@dataclass
class _InputStream:
    """A sounddevice input stream that calls back when told to."""

    kwargs: dict[str, object]

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass

    def feed(self, block: np.ndarray) -> None:
        callback = self.kwargs["callback"]
        assert callable(callback)
        callback(block.reshape(-1, 1), len(block), None, None)
