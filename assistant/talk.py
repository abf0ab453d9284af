"""Headless conversations: a WAV file in as the microphone, the assistant's audio out to a WAV.

``parley talk`` over ``Assistant``, with the file as its microphone and a virtual player as its
speaker; also used by benchmarks and end-to-end tests. In push-to-talk mode the talk key is held
over the whole file; in hands-free mode voice activity finds the turns in it.

With ``echo`` (``--echo DELAY_MS[:GAIN_DB]``) the devices are a ``SoftwareRoom`` instead: the
file is said into the room, and the assistant's own voice comes back into the microphone at that
delay and gain with a little reverberation, as on a laptop's speakers, through the same
device code (timestamps, far-end tap, echo canceller) as a sound card.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from assistant.app import Assistant, EngineSet
from assistant.app.engines import AgentEngineSet, build_engine_set
from assistant.audio.capture import AudioSource, WavSource
from assistant.audio.player import DevicePlayer, Player, VirtualPlayer
from assistant.audio.room import EchoPath, RoomMicrophone, SoftwareRoom
from assistant.audio.vad import VoiceActivityDetector
from assistant.audio.wav import read_wav, resample, to_int16, write_wav
from assistant.config import Settings, atomic_write_bytes
from assistant.engines.base import LanguageModel, SpeechToText, TextToSpeech
from assistant.engines.s2s import SpeechToSpeech
from assistant.events import (
    AppEvent,
    ConfirmationRequested,
    ErrorEvent,
    FinalTranscript,
    Notice,
    Ready,
    ToolCalled,
    TurnFinished,
)
from assistant.history import TurnRecord
from assistant.session import EndOfTurnModel
from assistant.session.session import ECHO_TAIL
from assistant.turns.judge import longest_wait_ms
from assistant.types import CAPTURE_RATE, PCM

Pace = Literal["fast", "realtime"]


class TalkError(RuntimeError):
    """A headless run failed; the message is one line for the user."""


@dataclass(slots=True)
class TalkResult:
    turns: list[TurnRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    underruns: int = 0
    audio_seconds: float = 0.0

    def record(self, event: AppEvent) -> None:
        if isinstance(event, TurnFinished):
            self.turns.append(event.turn)
        elif isinstance(event, ErrorEvent):
            self.errors.append(event.message)
        elif isinstance(event, Notice):
            self.notices.append(event.message)

    def timeline_json(self) -> dict[str, Any]:
        return {
            "turns": [
                {
                    "turn_id": t.turn_id,
                    "user_text": t.user_text,
                    "assistant_text": t.assistant_text,
                    "interrupted": t.interrupted,
                    "marks_ms": t.timeline.get("marks_ms", {}),
                    "voice_to_voice_ms": t.timeline.get("voice_to_voice_ms"),
                    "stages_ms": t.timeline.get("stages_ms", {}),
                    "over_budget": t.timeline.get("over_budget", []),
                    "tool_calls": [
                        {"name": c.name, "arguments": c.arguments, "result": c.result, "ms": c.ms}
                        for c in t.tool_calls
                    ],
                    "structured": t.structured,
                    **({"structured_error": t.structured_error} if t.structured_error else {}),
                    "error": t.error,
                }
                for t in self.turns
            ],
            "underruns": self.underruns,
        }


def _tail_silence(settings: Settings) -> float:
    """Silence fed after the file, so hands-free detection can end the last turn by itself."""
    if settings.turn_mode != "vad":
        return 0.0
    return longest_wait_ms(settings.vad) / 1000.0 + 0.3


async def run_talk(
    input_path: Path,
    *,
    settings: Settings,
    output_path: Path | None = None,
    pace: Pace = "realtime",
    engines: tuple[SpeechToText, LanguageModel, TextToSpeech] | SpeechToSpeech | None = None,
    vad: VoiceActivityDetector | None = None,
    turn_model: EndOfTurnModel | None = None,
    history_dir: Path | None = None,
    on_event: Callable[[AppEvent], None] | None = None,
    idle_timeout: float = 120.0,
    echo: EchoPath | None = None,
    stop: asyncio.Event | None = None,
    source: AudioSource | None = None,
    speaker: VirtualPlayer | None = None,
) -> TalkResult:
    """Feed ``input_path`` through the capture path as if spoken, and run the conversation.

    ``engines`` (the chained three, or one speech-to-speech engine), ``vad`` and ``turn_model``
    are lent (the caller closes them); otherwise the settings' engines are built here, and a
    missing file or unknown engine raises at once. ``echo``: run in a software room with that
    echo path (real-time pace only). ``stop``: once the file has ended, setting it ends the
    conversation without waiting for it to go idle (a benchmark that has seen what it came
    for). ``source``: heard instead of the file (a benchmark's scripted microphone), and
    ``speaker`` the virtual speaker (a benchmark that watches the output; not with ``echo``).
    """
    if echo is not None and pace != "realtime":
        raise TalkError("--echo needs --pace realtime: a room plays in real time")
    if echo is not None and source is not None:
        raise TalkError("a scripted microphone cannot play in a software room")
    engine_set: EngineSet | AgentEngineSet
    if isinstance(engines, tuple):
        engine_set = EngineSet(*engines, owned=False)
    elif engines is not None:
        engine_set = AgentEngineSet(engines, owned=False)
    else:
        engine_set = build_engine_set(settings)
    room: SoftwareRoom | None = None
    player: Player
    if echo is None:
        if source is None:
            source = WavSource(input_path, pace=pace, tail_silence=_tail_silence(settings))
        player = speaker or VirtualPlayer(pace=pace)
    else:
        room = SoftwareRoom(echo)
        source = RoomMicrophone(room, read_wav_16k(input_path))
        player = DevicePlayer(samplerate=48_000, stream_factory=room.output_stream)
        room.start()
    microphone: AudioSource = source
    result = TalkResult()
    with contextlib.ExitStack() as stack:
        if history_dir is None:
            temporary = tempfile.TemporaryDirectory(prefix="parley-talk-")
            history_dir = Path(stack.enter_context(temporary))
        app = Assistant(
            settings,
            history_dir=history_dir,
            engine_factory=lambda _s: engine_set,
            source_factory=lambda _s: microphone,
            player_factory=lambda _s: player,
            vad_factory=(lambda _s: vad) if vad is not None else None,
            turn_model_factory=(lambda _s: turn_model) if turn_model is not None else None,
            persist=False,
        )

        def listen(event: AppEvent) -> None:
            result.record(event)
            if on_event is not None:
                on_event(event)
            # Before the file's first frame: one press of the talk key over the whole file
            # (released when the file ends).
            if isinstance(event, Ready) and event.ready and settings.turn_mode == "ptt":
                if not result.errors:
                    app.press_to_talk()

        app.events.subscribe(listen)
        try:
            await app.start()
            await app.wait_ready()
            if not result.errors and isinstance(microphone, RoomMicrophone):
                # The microphone stays open while the assistant answers (its own voice comes
                # back into it), and a little longer, for a phantom turn from the echo's tail.
                ends = microphone.voice_ends_at + _tail_silence(settings)
                await asyncio.sleep(max(0.0, ends - time.monotonic()))
                await app.wait_idle(timeout=idle_timeout)
                await asyncio.sleep(ECHO_TAIL)
                await app.wait_idle(timeout=idle_timeout)
            elif not result.errors:
                await app.wait_input_ended()
                await _idle_or_stopped(app, idle_timeout, stop)
        except TimeoutError:
            raise TalkError(f"the conversation did not finish within {idle_timeout:g} s") from None
        finally:
            result.underruns = player.underruns
            await app.close()
            if room is not None:
                room.stop()
        if output_path is not None:
            if isinstance(player, VirtualPlayer):
                player.save_wav(str(output_path))
                result.audio_seconds = len(player.recorded()) / player.rate
            elif room is not None:
                played = to_int16(room.played())
                write_wav(str(output_path), played, CAPTURE_RATE)
                result.audio_seconds = len(played) / CAPTURE_RATE
    return result


async def _idle_or_stopped(app: Assistant, timeout: float, stop: asyncio.Event | None) -> None:
    if stop is None:
        await app.wait_idle(timeout=timeout)
        return
    idle = asyncio.ensure_future(app.wait_idle(timeout=timeout))
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({idle, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not idle.done():
            idle.cancel()
    if idle.done() and not idle.cancelled():
        idle.result()  # a timeout is raised


def read_wav_16k(path: Path) -> PCM:
    """A sound file as 16 kHz mono int16 (raises ``WavError``)."""
    pcm, rate = read_wav(path)
    return resample(pcm, rate, CAPTURE_RATE)


def write_timeline(path: Path, result: TalkResult) -> None:
    data = json.dumps(result.timeline_json(), indent=2, ensure_ascii=False)
    atomic_write_bytes(path, data.encode("utf-8", "replace"))  # a lone surrogate becomes "?"


def describe_event(event: AppEvent) -> str | None:
    """A one-line rendering of the events a terminal user cares about."""
    if isinstance(event, FinalTranscript) and event.text:
        return f"you: {event.text}"
    if isinstance(event, ToolCalled):
        return f"  [used {event.title or event.name}: {event.arguments} -> {event.result}]"
    if isinstance(event, ConfirmationRequested):
        return f"  [waiting for yes or no: {event.title}]"
    if isinstance(event, TurnFinished):
        t = event.turn
        cut = " [interrupted]" if t.interrupted else ""
        v2v = t.timeline.get("voice_to_voice_ms")
        figure = f"  ({v2v:.0f} ms voice-to-voice)" if isinstance(v2v, int | float) else ""
        return f"parley: {t.assistant_text}{cut}{figure}"
    return None
