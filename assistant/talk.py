"""Headless conversations: a WAV file in as the microphone, the assistant's audio out to a WAV.

This is ``parley talk``'s engine room, also used by benchmarks and end-to-end tests. It runs the
same session, turn detection and player contract as the desktop app.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from assistant.audio.capture import WavSource
from assistant.audio.player import VirtualPlayer
from assistant.audio.vad import VoiceActivityDetector
from assistant.config import Settings, atomic_write_bytes
from assistant.engines.base import LanguageModel, SpeechToText, TextToSpeech
from assistant.engines.registry import build_engines
from assistant.events import (
    ErrorEvent,
    FinalTranscript,
    Loading,
    Notice,
    SessionEvent,
    TurnFinished,
)
from assistant.history import HistoryStore, TurnRecord
from assistant.session import EndOfTurnModel, Session

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
                        {"name": c.name, "arguments": c.arguments, "result": c.result}
                        for c in t.tool_calls
                    ],
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
    vad = settings.vad
    longest = max(vad.end_silence_ms, vad.max_end_silence_ms if vad.smart_turn else 0)
    return longest / 1000.0 + 0.3


def make_vad(settings: Settings) -> VoiceActivityDetector:
    """Silero VAD when the embedded engines are installed, else a level-based detector."""
    from assistant.audio import vad

    try:
        return vad.SileroVAD(threshold=settings.vad.threshold)
    except Exception:
        return vad.EnergyVAD()


def make_turn_model(settings: Settings) -> EndOfTurnModel | None:
    """The Smart Turn end-of-turn model when it is installed and enabled, else None."""
    if not settings.vad.smart_turn:
        return None
    from assistant.audio.smart_turn import SmartTurn, smart_turn_available

    return SmartTurn() if smart_turn_available() else None


async def run_talk(
    input_path: Path,
    *,
    settings: Settings,
    output_path: Path | None = None,
    pace: Pace = "realtime",
    engines: tuple[SpeechToText, LanguageModel, TextToSpeech] | None = None,
    vad: VoiceActivityDetector | None = None,
    turn_model: EndOfTurnModel | None = None,
    history_dir: Path | None = None,
    on_event: Any = None,
    idle_timeout: float = 120.0,
) -> TalkResult:
    """Feed ``input_path`` through the capture path as if spoken, and run the conversation."""
    result = TalkResult()
    source = WavSource(
        input_path,
        pace=pace,
        tail_silence=_tail_silence(settings),
    )

    def on_fallback(kind: str, failed: str, nxt: str, reason: str) -> None:
        result.notices.append(f"{kind}: {failed} failed ({reason}); using {nxt}")

    stt, llm, tts = engines or build_engines(settings, on_fallback)
    if settings.turn_mode == "vad" and vad is None:
        vad = make_vad(settings)
    if settings.turn_mode == "vad" and turn_model is None:
        turn_model = make_turn_model(settings)
    player = VirtualPlayer(pace=pace)
    with contextlib.ExitStack() as stack:
        if history_dir is None:
            history_dir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="parley-talk-"))
            )
        conversation, _ = HistoryStore(history_dir).latest()
        session = Session(
            stt=stt,
            llm=llm,
            tts=tts,
            player=player,
            conversation=conversation,
            settings=settings,
            vad=vad,
            turn_model=turn_model,
        )

        def listen(event: SessionEvent) -> None:
            if isinstance(event, TurnFinished):
                result.turns.append(event.turn)
            elif isinstance(event, ErrorEvent):
                result.errors.append(event.message)
            elif isinstance(event, Notice):
                result.notices.append(event.message)
            if on_event is not None:
                on_event(event)

        session.subscribe(listen)
        await asyncio.gather(stt.warm_up(), llm.warm_up(), tts.warm_up())
        await session.start()
        try:
            await source.start()
            pressed = False
            if settings.turn_mode == "ptt":
                session.press_to_talk()
                pressed = True
            async for frame in source.frames():
                if pressed and frame.offset >= source.duration:
                    session.release_to_talk()
                    pressed = False
                await session.feed(frame)
            if pressed:
                session.release_to_talk()
            session.end_of_input()
            await session.wait_idle(timeout=idle_timeout)
        except TimeoutError:
            raise TalkError(f"the conversation did not finish within {idle_timeout:g} s") from None
        finally:
            await source.stop()
            result.underruns = player.underruns
            await session.close()
        if output_path is not None:
            player.save_wav(str(output_path))
            recorded = player.recorded()
            result.audio_seconds = len(recorded) / player.rate
    return result


def write_timeline(path: Path, result: TalkResult) -> None:
    data = json.dumps(result.timeline_json(), indent=2, ensure_ascii=False)
    atomic_write_bytes(path, data.encode("utf-8", "replace"))  # a lone surrogate becomes "?"


def describe_event(event: SessionEvent) -> str | None:
    """A one-line rendering of the events a terminal user cares about."""
    if isinstance(event, FinalTranscript) and event.text:
        return f"you: {event.text}"
    if isinstance(event, TurnFinished):
        t = event.turn
        cut = " [interrupted]" if t.interrupted else ""
        v2v = t.timeline.get("voice_to_voice_ms")
        figure = f"  ({v2v:.0f} ms voice-to-voice)" if isinstance(v2v, int | float) else ""
        return f"parley: {t.assistant_text}{cut}{figure}"
    if isinstance(event, Loading) and event.fraction >= 1.0:
        return f"[ready] {event.component}"
    return None
