"""How well does Parley keep from hearing itself on speakers? (``parley bench echo``)

Spoken replies (the offline voice) are played into software rooms (``assistant.audio.room``):
delays 40/120/250 ms, gains −6/−12 dB, with and without reverberation, a mild loudspeaker
nonlinearity and a noise floor. Two parts:

1. **The signal** (faster than real time, the same ``EchoCanceller`` the app runs, with exact
   play and capture times): echo return loss enhancement in the first 1.5 s of far end and once
   settled (from 3 s on), both over echo-only audio; the share of echo-only 32 ms frames Silero
   VAD calls speech, with and without cancellation; the user's word error rate when real
   recordings are spoken over a reply (double talk), against the same recordings with no echo;
   the canceller's CPU time per second of audio.
2. **Barge-in** (real time, the whole app in a room: microphone and speaker devices, the
   canceller, the session, the local voice and recognizer): a reply plays, a real recording
   talks over it at a random moment; detected when the reply paused and then stopped, with the
   time from the voice's onset to the speaker going silent. Then a few replies play to their
   end with nobody talking. Any pause while nobody talks, over every reply from its first word
   to its last, counts as a self-interruption; a turn nobody started, as a phantom turn. As
   many interruptions in a room where the speaker does not reach the microphone give the word
   error rate without echo, through the same recognizer and turn-taking, that the rate with
   echo is compared with.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from assistant.audio.capture import MicrophoneCapture
from assistant.audio.echo import EchoCanceller
from assistant.audio.frames import AudioFrame
from assistant.audio.room import EchoPath, RoomAcoustics, SoftwareRoom
from assistant.audio.wav import read_wav, resample
from assistant.bench.textnorm import wer_gap_interval, word_error_rate, word_errors
from assistant.config import Settings
from assistant.turns.detection import look_starts_speech, starts_speech
from assistant.types import CAPTURE_RATE, FRAME_SAMPLES, FRAME_SECONDS, PCM, AudioLook

Float32 = npt.NDArray[np.float32]

ROOT = Path(__file__).resolve().parents[2]
REAL_SPEECH = ROOT / "tests" / "data" / "speech"
REPLIES = (
    "Paris is the capital of France. It is known for the Eiffel Tower, its museums, and the "
    "cafes along the river Seine.",
    "A spider has eight legs. Most spiders also have eight eyes, although some have fewer, "
    "and a few have none at all.",
    "To sleep better, keep a regular bedtime, avoid screens for an hour before bed, and keep "
    "your bedroom cool and dark.",
    "The moon is slowly moving away from the Earth, by about four centimetres every year, "
    "because of the tides.",
)
NOISE_SUPPRESSION = Settings().noise_suppression
#: The room's microphone runs at the recognizer's rate (no resampling delay of its own); its
#: speaker at 48 kHz, so the far end goes through the tap's resampler.
MIC_RATE = 16_000
DELAYS_MS = (40, 120, 250)
GAINS_DB = (-6.0, -12.0)
FIRST_SECONDS = 1.5
SETTLED_AFTER = 3.0
#: The echo path's gain of a room where the speaker does not reach the microphone.
SILENT_ROOM_DB = -120.0
#: The user starts talking this far into a reply in the double-talk test.
DOUBLE_TALK_AT = 2.5
TARGETS = (
    "targets: ERLE >= 25 dB settled; 0 % VAD on echo-only frames; 0 self-interruptions; "
    "barge-in detected >= 95 % with onset->silent p50 <= 150 ms; "
    "user WER with AEC at most 2 points above the same app with no echo"
)


@dataclass(frozen=True, slots=True)
class Recording:
    pcm: Float32  # 16 kHz
    text: str


@dataclass(slots=True)
class RoomFigures:
    erle_first: list[float] = field(default_factory=list)
    erle_settled: list[float] = field(default_factory=list)
    vad_on: list[float] = field(default_factory=list)
    #: The frames behind ``vad_on``.
    vad_hits: list[VadHit] = field(default_factory=list)
    #: Once the canceller knew the echo: frames in which speech alone would pause a reply.
    pause_known: list[float] = field(default_factory=list)
    #: The frames behind ``pause_known``.
    pause_hits: list[VadHit] = field(default_factory=list)
    vad_first: list[float] = field(default_factory=list)
    vad_off: list[float] = field(default_factory=list)
    wer_refs: list[str] = field(default_factory=list)
    wer_clean: list[str] = field(default_factory=list)
    wer_aec: list[str] = field(default_factory=list)
    #: What the recognizer hears of the same (``AudioFrame.speech``: the linear stage).
    wer_speech: list[str] = field(default_factory=list)
    wer_raw: list[str] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)


# ------------------------------------------------------------------------------ material


async def speak(texts: tuple[str, ...]) -> list[Float32]:
    """The replies in the offline voice, 16 kHz float."""
    from assistant.engines.local.tts import LocalTTS

    tts = LocalTTS()
    out = []
    for text in texts:

        async def one(text: str = text) -> AsyncIterator[str]:
            yield text

        chunks = [c async for c in tts.stream(one(), voice=None, language="en")]
        pcm = resample(np.concatenate([c.pcm for c in chunks]), chunks[0].sample_rate, 16_000)
        out.append(pcm.astype(np.float32) / 32768.0)
    tts.close()
    return out


def recordings() -> list[Recording]:
    """Real read speech with its transcript (tests/data/speech)."""
    index = REAL_SPEECH / "transcripts.json"
    out = []
    for entry in json.loads(index.read_text(encoding="utf-8")):
        pcm, rate = read_wav(REAL_SPEECH / entry["file"])
        x = resample(pcm, rate, CAPTURE_RATE).astype(np.float32) / 32768.0
        out.append(Recording(x, entry["text"]))
    return out


def onset(x: Float32, threshold: float = 0.02) -> float:
    """Seconds into ``x`` where speech starts (first 10 ms louder than ``threshold`` RMS)."""
    n = len(x) // 160
    rms = np.sqrt((x[: n * 160].reshape(n, 160) ** 2).mean(axis=1))
    loud = np.flatnonzero(rms > threshold)
    return float(loud[0]) * 0.01 if len(loud) else 0.0


# ---------------------------------------------------------------------------- 1: signal


def run_canceller(
    far: Float32, near: Float32, warm: tuple[Float32, Float32] | None = None
) -> tuple[Float32, EchoCanceller, npt.NDArray[np.bool_], Float32]:
    """Process ``near`` (16 kHz) with ``far`` (16 kHz, played in step) as the far end; also
    says, per sample, whether the canceller knew the echo then (not ``uncertain``: the session
    lets speech alone pause a reply only then), and gives what the recognizer hears. ``warm``:
    a (far, near) pair the canceller hears first, as the app's has heard earlier replies."""
    t0 = 1000.0
    clock = [t0]
    # Exact times: the far end of each 10 ms is played as the microphone captures it. Noise
    # suppression as the settings have it by default.
    canceller = EchoCanceller(now=lambda: clock[0], noise_suppression=NOISE_SUPPRESSION)
    skip = 0
    if warm is not None:
        skip = len(warm[1]) // 160 * 160
        far = np.concatenate((warm[0][:skip], far))
        near = np.concatenate((warm[1][:skip], near))
    far48 = resample((far * 32767).astype(np.int16), CAPTURE_RATE, 48_000).astype(np.float32)
    far48 /= 32768.0
    out = []
    heard = []
    known = np.zeros(len(near), dtype=bool)
    for k in range(len(near) // 160):
        t = t0 + k * 0.01
        canceller.tap.rendered(far48[k * 480 : (k + 1) * 480], 48_000, t)
        clock[0] = t + 0.03
        processed, speech = canceller.process_with_speech(near[k * 160 : (k + 1) * 160], t + 0.01)
        out.append(processed)
        heard.append(processed if speech is None else speech)
        known[k * 160 : (k + 1) * 160] = not canceller.uncertain

    def whole(parts: list[Float32]) -> Float32:
        y = np.concatenate(parts)
        return np.concatenate((y, np.zeros(len(near) - len(y), np.float32)))[skip:]

    return whole(out), canceller, known[skip:], whole(heard)


def _power(x: Float32) -> npt.NDArray[np.float64]:
    n = len(x) // 160
    return (x[: n * 160].reshape(n, 160).astype(np.float64) ** 2).mean(axis=1)


def erle(raw: Float32, processed: Float32, echo: Float32, start: float, end: float) -> float:
    """Echo return loss enhancement (dB) over the 10 ms chunks of [start, end) with echo."""
    p_raw, p_out, p_echo = _power(raw), _power(processed), _power(echo)
    k = np.arange(len(p_echo)) * 0.01
    active = (p_echo > 1e-6) & (k >= start) & (k < end)
    if not active.any():
        return float("nan")
    residual = max(float(p_out[active].sum()), 1e-12)
    return float(10 * np.log10(float(p_raw[active].sum()) / residual))


@dataclass(frozen=True, slots=True)
class VadHit:
    """An echo-only frame the VAD called speech, or that would pause a reply: where, how
    sure the VAD was, how loud, whether the canceller knew the echo then."""

    reply: int
    at: float  # seconds into the reply's audio
    probability: float
    dbfs: float
    known: bool


def vad_share(
    vad: object,
    x: Float32,
    echo: Float32,
    start: float = 0.0,
    hits_out: list[VadHit] | None = None,
    known: npt.NDArray[np.bool_] | None = None,
    reply: int = 0,
) -> float:
    """Share of 32 ms frames with echo in them, from ``start`` s on, that the VAD calls speech;
    each such frame is added to ``hits_out`` (``known``: whether the canceller knew the echo,
    per sample)."""
    from assistant.audio.vad import SileroVAD, rms_dbfs

    assert isinstance(vad, SileroVAD)
    vad.reset()
    n = len(x) // FRAME_SAMPLES
    pcm = np.clip(x[: n * FRAME_SAMPLES] * 32768, -32768, 32767).astype(np.int16)
    e = echo[: n * FRAME_SAMPLES].reshape(n, FRAME_SAMPLES)
    hits = total = 0
    for i in range(n):
        frame = pcm[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES]
        p = vad.process(frame)
        if float((e[i] ** 2).mean()) > 1e-6 and i * FRAME_SAMPLES >= start * CAPTURE_RATE:
            total += 1
            if p >= vad.threshold:
                hits += 1
                if hits_out is not None:
                    was_known = bool(known[i * FRAME_SAMPLES]) if known is not None else False
                    at = i * FRAME_SECONDS
                    hits_out.append(VadHit(reply, at, p, rms_dbfs(frame), was_known))
    return hits / total if total else 0.0


#: Where the capture looks inside each frame (10 ms blocks), in samples.
LOOKS = (160, 320, 480)


def pause_share(
    vad: object,
    x: Float32,
    echo: Float32,
    known: npt.NDArray[np.bool_],
    hits_out: list[VadHit] | None = None,
    reply: int = 0,
) -> float:
    """Share of 32 ms frames with echo in them, begun while the canceller knew the echo, in
    which speech alone would pause a reply: the frame passes the session's rule over a reply
    (``starts_speech``), or one of the looks the capture takes inside it does
    (``look_starts_speech``); each such frame is added to ``hits_out``. NaN when the canceller
    never knew the echo."""
    from assistant.audio.vad import SileroVAD, rms_dbfs

    assert isinstance(vad, SileroVAD)
    s = Settings()
    vad.reset()
    n = len(x) // FRAME_SAMPLES
    pcm = np.clip(x[: n * FRAME_SAMPLES] * 32768, -32768, 32767).astype(np.int16)
    hits = total = 0
    for i in range(n):
        start, end = i * FRAME_SAMPLES, (i + 1) * FRAME_SAMPLES
        fired = False
        surest = 0.0
        for fresh in LOOKS if i else ():
            window = pcm[start + fresh - FRAME_SAMPLES : start + fresh]
            p = vad.look(window, fresh)
            surest = max(surest, p)
            fired |= look_starts_speech(window, p, s.vad, s.interruption)
        p = vad.process(pcm[start:end])
        fired |= starts_speech(pcm[start:end], p, s.vad, s.interruption, over_reply=True)
        if i and known[start - 1] and float((echo[start:end] ** 2).mean()) > 1e-6:
            total += 1
            hits += fired
            if fired and hits_out is not None:
                level = rms_dbfs(pcm[start:end])
                hits_out.append(VadHit(reply, i * FRAME_SECONDS, max(p, surest), level, True))
    return hits / total if total else float("nan")


def signal_part(
    replies: list[Float32], voices: list[Recording], rooms: list[EchoPath], whisper: object
) -> dict[EchoPath, RoomFigures]:
    from assistant.audio.vad import SileroVAD

    vad = SileroVAD()
    rng = np.random.default_rng(5)
    # The same voices with no echo at all: the floor the double-talk WER is compared with.
    pad = np.zeros(3200, np.float32)
    clean = [_transcribe(whisper, np.concatenate((pad, v.pcm, pad, pad))) for v in voices]
    results: dict[EchoPath, RoomFigures] = {}
    for room in rooms:
        fig = RoomFigures()
        for i, reply in enumerate(replies):
            far = np.concatenate((np.zeros(8000, np.float32), reply, np.zeros(16000, np.float32)))
            echo = RoomAcoustics(room, seed=i)(far)
            noise = (rng.standard_normal(len(far)) * 3e-4).astype(np.float32)
            near = echo + noise
            out, canceller, known, _ = run_canceller(far, near)
            first = onset(far)
            fig.erle_first.append(erle(near, out, echo, first, first + FIRST_SECONDS))
            fig.erle_settled.append(erle(near, out, echo, first + SETTLED_AFTER, 1e9))
            fig.vad_on.append(
                vad_share(vad, out, echo, first + FIRST_SECONDS, fig.vad_hits, known, i)
            )
            fig.pause_known.append(pause_share(vad, out, echo, known, fig.pause_hits, i))
            fig.vad_first.append(vad_share(vad, out[: int((first + FIRST_SECONDS) * 16000)], echo))
            fig.vad_off.append(vad_share(vad, near, echo))
            stats = canceller.stats
            fig.cpu_ms.append(1000 * stats.cpu_seconds / max(stats.processed_seconds, 1e-9))
            # Double talk: a real voice over the reply, once the canceller has settled and has
            # heard another reply in the room (as the app's has, when the user talks over one).
            voice = voices[i % len(voices)]
            at = round((first + DOUBLE_TALK_AT) * CAPTURE_RATE)
            user = np.zeros(len(far), np.float32)
            end = min(len(far), at + len(voice.pcm))
            user[at:end] = voice.pcm[: end - at]
            mixed = near + user
            before = replies[(i + 1) % len(replies)]
            warm_far = np.concatenate((np.zeros(8000, np.float32), before, pad, pad))
            hiss = np.random.default_rng(i).standard_normal(len(warm_far)) * 3e-4
            warm_near = RoomAcoustics(room, seed=i)(warm_far) + hiss.astype(np.float32)
            out, _, _, heard = run_canceller(far, mixed, warm=(warm_far, warm_near))
            span = slice(max(0, at - 3200), end + 4800)
            fig.wer_refs.append(voice.text)
            fig.wer_clean.append(clean[i % len(voices)])
            fig.wer_aec.append(_transcribe(whisper, out[span]))
            fig.wer_speech.append(_transcribe(whisper, heard[span]))
            fig.wer_raw.append(_transcribe(whisper, mixed[span]))
        results[room] = fig
        print(f"  room {_name(room)}: done", flush=True)
    return results


def _transcribe(whisper: object, x: Float32) -> str:
    text: str = whisper.transcribe(x.astype(np.float32), "en").text  # type: ignore[attr-defined]
    return text


def _name(room: EchoPath) -> str:
    return f"{room.delay_ms:.0f} ms {room.gain_db:+.0f} dB {'reverb' if room.reverb else 'dry'}"


# --------------------------------------------------------------------------- 2: barge-in


@dataclass(slots=True)
class BargeIns:
    trials: int = 0
    detected: int = 0
    onset_to_silent_ms: list[float] = field(default_factory=list)
    #: What the user said over the replies, and what the app understood.
    refs: list[str] = field(default_factory=list)
    hyps: list[str] = field(default_factory=list)
    self_interruptions: int = 0
    phantom_turns: int = 0
    #: Per phantom turn: when it started, against the end of the reply before it.
    phantom_detail: list[str] = field(default_factory=list)
    #: Per interruption not detected: what it said, and what the app did.
    missed_detail: list[str] = field(default_factory=list)
    #: Per interruption: the share of frames of its first ``OVERLAP_SECONDS`` that the
    #: recognizer heard from the canceller's linear stage (``AudioFrame.speech``).
    linear_share: list[float] = field(default_factory=list)
    #: The canceller's linear stage at the end: its ERLE (dB) and its restarts.
    linear_erle_db: float | None = None
    failures: list[str] = field(default_factory=list)
    #: Per detected barge-in, where the onset -> silent time went (ms; see ``HOPS``).
    hops: list[tuple[float, float, float, float]] = field(default_factory=list)


#: The hops of onset -> silent: the voice's onset to the end of the first 32 ms of processed
#: audio the VAD calls speech (a frame, or a look between two frames); its capture to its
#: arrival in the conversation (device latency, block, canceller, loop); arrival to the reply's
#: pause (detection and decision); the pause to the speaker going silent (rendering and the
#: output's latency).
#: The start of an interruption over which the reply and its echo may still be heard.
OVERLAP_SECONDS = 0.4

HOPS = ("onset->speech frame", "capture->conversation", "conversation->pause", "pause->silent")


class _TimedMicrophone(MicrophoneCapture):
    """The room's microphone, noting when each frame and look (by its capture time) was handed
    on."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        #: Per frame or look handed on, by the identity of its samples: (it, its capture time,
        #: monotonic time handed to the conversation). It is kept so the identity holds.
        self.delivered: dict[int, tuple[AudioFrame | AudioLook, float, float]] = {}

    async def stream(self) -> AsyncIterator[AudioFrame | AudioLook]:
        async for item in super().stream():
            self.delivered[id(item.pcm)] = (item, item.t, time.monotonic())
            yield item


class _TimedVad:
    """Silero VAD noting, for each frame and look it judged, whether it would start a turn
    over the reply (as the session's detection rules), in order."""

    def __init__(self) -> None:
        from assistant.audio.vad import SileroVAD

        self.vad = SileroVAD()
        #: (the samples, kept so their identity holds; would they start a turn over the reply).
        self.speech: list[tuple[PCM, bool]] = []
        self._settings = Settings()

    def process(self, pcm: PCM) -> float:
        p = self.vad.process(pcm)
        s = self._settings
        self.speech.append((pcm, starts_speech(pcm, p, s.vad, s.interruption, over_reply=True)))
        return p

    def look(self, pcm: PCM, fresh: int) -> float:
        p = self.vad.look(pcm, fresh)
        s = self._settings
        self.speech.append((pcm, look_starts_speech(pcm, p, s.vad, s.interruption)))
        return p

    def reset(self) -> None:
        self.vad.reset()


async def barge_in_part(
    room_path: EchoPath, voices: list[Recording], trials: int, seed: int, listens: int = 0
) -> BargeIns:
    """The app in a room: ``trials`` replies are talked over once each by a real voice, then
    ``listens`` more questions are answered with nobody talking over the reply."""
    from assistant.app import Assistant
    from assistant.audio.player import DevicePlayer
    from assistant.config import Settings
    from assistant.events import (
        AppEvent,
        FinalTranscript,
        PlaybackPaused,
        State,
        StateChanged,
        TurnFinished,
        TurnWithdrawn,
        UserSpeechStarted,
    )

    result = BargeIns()
    rng = random.Random(seed)
    settings = Settings(stt="local", llm="fake", tts="local", turn_mode="vad")
    settings.echo_cancellation = "on"
    paused: list[float] = []  # every pause, in order
    started: list[float] = []
    reply_ends: list[float] = []  # every time the state left SPEAKING
    finished: list[bool] = []
    finished_at: list[float] = []
    speaking = asyncio.Event()
    ended = asyncio.Event()
    finals: list[tuple[float, int, str]] = []
    withdrawn: set[int] = set()  # turns whose words carried over into the next one's

    def on_event(event: AppEvent) -> None:
        match event:
            case PlaybackPaused(at=at):
                paused.append(at)
            case UserSpeechStarted(at=at):
                started.append(at)
            case TurnFinished(turn=turn):
                finished.append(turn.interrupted)
                finished_at.append(time.monotonic())
                ended.set()
            case FinalTranscript(turn_id=turn_id, text=text):
                finals.append((time.monotonic(), turn_id, text))
            case TurnWithdrawn(turn_id=turn_id):
                withdrawn.add(turn_id)
            case StateChanged(state=state):
                if state is State.SPEAKING:
                    speaking.set()
                else:
                    if speaking.is_set():
                        reply_ends.append(time.monotonic())
                    speaking.clear()

    with SoftwareRoom(room_path) as room, tempfile.TemporaryDirectory() as tmp:
        mic = _TimedMicrophone(samplerate=MIC_RATE, stream_factory=room.input_stream)
        player = DevicePlayer(samplerate=48_000, stream_factory=room.output_stream)
        vad = _TimedVad()
        app = Assistant(
            settings,
            history_dir=Path(tmp),
            source_factory=lambda _s: mic,
            player_factory=lambda _s: player,
            vad_factory=lambda _s: vad,
            persist=False,
        )
        app.events.subscribe(on_event)
        await app.start()
        await app.wait_ready(120)
        # Monotonic spans when the user talks (a pause in one is theirs), and with the time a
        # turn of theirs may take to be noticed after (a turn that starts in one is theirs).
        talking: list[tuple[float, float]] = []
        turns: list[tuple[float, float]] = []

        def say(rec: Recording, at_room: float) -> float:
            room.say(rec.pcm, at_room)
            begin = room.to_monotonic(at_room + onset(rec.pcm))
            end = room.to_monotonic(at_room + len(rec.pcm) / 16000)
            talking.append((begin - 0.1, end + 0.2))
            turns.append((begin - 0.1, end + 1.5))
            return begin

        onsets: list[float] = []
        say(voices[0], room.now() + 0.3)  # the first question
        for trial in range(trials):
            try:
                await asyncio.wait_for(speaking.wait(), 60)
            except TimeoutError:
                result.failures.append(f"trial {trial}: no reply played")
                break
            await asyncio.sleep(rng.uniform(1.5, 3.5))
            voice = voices[(trial + 1) % len(voices)]
            before = len(finished)
            begin = say(voice, room.now() + 0.05)
            # 50 ms before the voice: close enough to tell the rule barge-in was judged by.
            strict = app.echo.canceller is not None and app.echo.canceller.uncertain
            result.trials += 1
            onsets.append(begin)
            ended.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.wait(), max(0.1, begin + 3.0 - time.monotonic()))
            pause = next((p for p in paused if p >= begin - 0.05), None)
            stopped = len(finished) > before and finished[before]
            if pause is None or not stopped:
                early = [p for p in paused if begin - 1.0 <= p < begin - 0.05]
                heard = "no pause"
                if pause is not None:
                    heard = f"paused {1000 * (pause - begin):.0f} ms in"
                elif early:
                    heard = f"paused {1000 * (begin - early[-1]):.0f} ms before the onset"
                if len(finished) == before:
                    ended_how = "the reply went on"
                else:
                    how = "interrupted" if stopped else "uninterrupted"
                    late = 1000 * (finished_at[before] - begin)
                    ended_how = f"the turn ended {how} {late:.0f} ms after the onset"
                echo = "uncertain" if strict else "known"
                result.missed_detail.append(
                    f"{voice.text[:32]!r}: {heard}, {ended_how}; the echo {echo} at the onset"
                )
            if pause is not None and stopped:
                result.detected += 1
                silent = _silent_from(room, pause)
                if silent is not None:
                    result.onset_to_silent_ms.append((silent - begin) * 1000.0)
                    hops = _hops(mic, vad, begin, pause, silent)
                    if hops is not None:
                        result.hops.append(hops)
            if stopped:  # what the app understood of the interruption answers it next
                try:
                    await asyncio.wait_for(speaking.wait(), 30)
                except TimeoutError:
                    pass
                said = [
                    text
                    for at, turn_id, text in finals
                    if at >= begin and text and turn_id not in withdrawn
                ]
                result.refs.append(voice.text)
                result.hyps.append(" ".join(said))
        await app.wait_idle(60)
        for listen in range(listens):
            # A question, and its whole reply with nobody talking.
            say(voices[(trials + 1 + listen) % len(voices)], room.now() + 0.3)
            try:
                await asyncio.wait_for(speaking.wait(), 60)
            except TimeoutError:
                result.failures.append(f"listen {listen}: no reply played")
                break
            await app.wait_idle(60)
        await asyncio.sleep(1.5)

        def outside(at: float, spans: list[tuple[float, float]]) -> bool:
            return not any(a <= at <= b for a, b in spans)

        result.self_interruptions = sum(1 for p in paused if outside(p, talking))
        for begin in onsets:
            frames = [
                item
                for item, t, _ in mic.delivered.values()
                if isinstance(item, AudioFrame) and begin <= t <= begin + OVERLAP_SECONDS
            ]
            if frames:
                linear = sum(1 for f in frames if f.speech is not None)
                result.linear_share.append(linear / len(frames))
        canceller = app.echo.canceller
        if canceller is not None:
            result.linear_erle_db = canceller.stats.linear_erle_db
        phantoms = [s for s in started if outside(s, turns)]
        result.phantom_turns = len(phantoms)
        for at in phantoms:
            ends = [end for end in reply_ends if end <= at]
            result.phantom_detail.append(
                f"{at - ends[-1]:.2f} s after a reply stopped playing"
                if ends
                else "before any reply stopped playing"
            )
        await app.close()
    return result


def _hops(
    mic: _TimedMicrophone, vad: _TimedVad, onset: float, paused: float, silent: float
) -> tuple[float, float, float, float] | None:
    """Onset -> silent split into ``HOPS`` (ms), from the first frame after the onset that
    counts as speech over a reply."""
    first = None
    for pcm, speech in vad.speech:
        seen = mic.delivered.get(id(pcm))
        if seen is not None and speech and onset < seen[1] and seen[2] <= paused:
            first = seen[1:]
            break
    if first is None:
        return None
    captured, delivered = first
    return (
        (captured - onset) * 1000.0,
        (delivered - captured) * 1000.0,
        (paused - delivered) * 1000.0,
        (silent - paused) * 1000.0,
    )


def _silent_from(room: SoftwareRoom, paused_at: float) -> float | None:
    """Monotonic time the speaker went quiet (paused blocks are exact zeros) after a pause."""
    start = paused_at - room.to_monotonic(0.0) - 0.01
    played = room.played(start, start + 1.0)
    run = int(0.04 * CAPTURE_RATE)
    quiet = np.abs(played) < 1e-6
    for i in range(0, max(0, len(quiet) - run), 16):
        if quiet[i : i + run].all():
            return room.to_monotonic(start + i / CAPTURE_RATE)
    return None


# --------------------------------------------------------------------------------- report


def main(quick: bool = False) -> int:
    return asyncio.run(run(quick))


async def run(quick: bool) -> int:
    from assistant.engines.local.stt import WhisperRunner

    rooms = [
        EchoPath(delay_ms=d, gain_db=g, reverb=r)
        for d in DELAYS_MS
        for g in GAINS_DB
        for r in (False, True)
    ]
    texts = REPLIES[:2] if quick else REPLIES
    print(f"parley bench echo: {len(texts)} spoken replies x {len(rooms)} rooms", flush=True)
    replies = await speak(texts)
    voices = recordings()
    whisper = WhisperRunner("base", threads=2)
    figures = signal_part(replies, voices, rooms, whisper)
    _print_signal(figures)
    first = next(iter(figures.values()))
    clean_wer = word_error_rate(first.wer_refs, first.wer_clean) * 100
    barge_rooms = (
        [EchoPath(120, -6, True)]
        if quick
        else [
            EchoPath(40, -6, True),
            EchoPath(120, -6, True),
            EchoPath(250, -12, True),
        ]
    )
    # The recognizer flips a word or two of the same recording on its own, with nothing but
    # where its audio starts moved ("ill disposed" or "old-sposed"): one interruption's words
    # are one draw. Enough of them that the WER comparison is not one or two flips, and a
    # multiple of the recordings' count, so both sides say each as often.
    trials = 4 if quick else 2 * len(voices)
    listens = 1 if quick else 2
    total = BargeIns()
    print(flush=True)
    for i, room in enumerate(barge_rooms):
        got = await barge_in_part(room, voices, trials, seed=i, listens=listens)
        detail = _pcts(got.onset_to_silent_ms)
        wer = word_error_rate(got.refs, got.hyps) * 100 if got.refs else float("nan")
        print(
            f"barge-in {_name(room):<22} detected {got.detected}/{got.trials}, onset->silent "
            f"{detail}, self-interruptions {got.self_interruptions}, phantom turns "
            f"{got.phantom_turns}, WER of the interruptions {wer:.1f} %",
            flush=True,
        )
        _print_misheard_and_missed(got)
        for detail in got.phantom_detail:
            print(f"  phantom turn: {detail}")
        if got.linear_share:
            erle = "?" if got.linear_erle_db is None else f"{got.linear_erle_db:.1f} dB"
            print(
                f"  the recognizer heard the linear stage in "
                f"{100 * float(np.mean(got.linear_share)):.0f} % of the frames of the "
                f"interruptions' first {OVERLAP_SECONDS * 1000:.0f} ms (its ERLE at the end "
                f"{erle})"
            )
        for failure in got.failures:
            print(f"  FAILED: {failure}")
        total.trials += got.trials
        total.detected += got.detected
        total.onset_to_silent_ms += got.onset_to_silent_ms
        total.self_interruptions += got.self_interruptions
        total.phantom_turns += got.phantom_turns
        total.refs += got.refs
        total.hyps += got.hyps
        total.hops += got.hops
    # The same app and recognizer, the same voices, in a room whose speaker does not reach the
    # microphone: what the interruptions' WER is compared with (the recognizer the app runs
    # and its turn-taking lose words on their own; that is not the echo's doing).
    quiet = await barge_in_part(
        EchoPath(120, SILENT_ROOM_DB, reverb=False), voices, trials * len(barge_rooms), 0
    )
    quiet_wer = word_error_rate(quiet.refs, quiet.hyps) * 100 if quiet.refs else float("nan")
    print(
        f"barge-in {'no echo':<22} detected {quiet.detected}/{quiet.trials}, WER of the "
        f"interruptions {quiet_wer:.1f} %",
        flush=True,
    )
    _print_misheard_and_missed(quiet)
    for failure in quiet.failures:
        print(f"  FAILED: {failure}")
    rate = 100.0 * total.detected / max(1, total.trials)
    print(
        f"barge-in overall: detected {rate:.0f} % ({total.detected}/{total.trials}), "
        f"onset->silent {_pcts(total.onset_to_silent_ms)}, self-interruptions "
        f"{total.self_interruptions}, phantom turns {total.phantom_turns}"
    )
    if total.hops:
        table = np.array(total.hops)
        print(
            "onset->silent by hop (ms, over the detected barge-ins): "
            + ", ".join(
                f"{name} p50 {np.percentile(table[:, i], 50):.0f} / p90 "
                f"{np.percentile(table[:, i], 90):.0f}"
                for i, name in enumerate(HOPS)
            )
        )
    if total.refs:
        aec_wer = word_error_rate(total.refs, total.hyps) * 100
        low, high = wer_gap_interval(
            word_errors(total.refs, total.hyps), word_errors(quiet.refs, quiet.hyps)
        )
        print(
            f"user WER of the words said over replies (as the app transcribed them): "
            f"{aec_wer:.1f} % with AEC ({len(total.refs)} interruptions); the same app with no "
            f"echo {quiet_wer:.1f} % ({len(quiet.refs)}); with AEC {aec_wer - quiet_wer:+.1f} "
            f"points (90 % interval {low:+.1f} to {high:+.1f}); the recordings alone, offline "
            f"(Whisper base): {clean_wer:.1f} %"
        )
    print(TARGETS)
    return 0


def _print_misheard_and_missed(got: BargeIns) -> None:
    """The interruptions the app misheard, then those it did not count as detected."""
    for ref, hyp in zip(got.refs, got.hyps, strict=True):
        if word_error_rate([ref], [hyp]) > 0:
            print(f"  said:  {ref}\n  heard: {hyp}")
    for detail in got.missed_detail:
        print(f"  missed: {detail}")


def _pcts(values: list[float]) -> str:
    if not values:
        return "p50 - / p90 - ms"
    return f"p50 {np.percentile(values, 50):.0f} / p90 {np.percentile(values, 90):.0f} ms"


def _print_signal(figures: dict[EchoPath, RoomFigures]) -> None:
    print()
    print(
        f"{'room':<24}{'ERLE first 1.5 s':>17}{'ERLE settled':>14}{'VAD echo AEC/first/off':>24}"
        f"{'WER clean/AEC/raw':>21}{'CPU ms/s':>10}{'WER heard':>14}"
    )
    all_first, all_settled, all_vad, all_vad_first, all_cpu = [], [], [], [], []
    all_pause_known: list[float] = []
    refs: list[str] = []
    clean: list[str] = []
    aec: list[str] = []
    speech: list[str] = []
    raw: list[str] = []
    for room, f in figures.items():
        wers = "/".join(
            f"{word_error_rate(f.wer_refs, hyps) * 100:.0f}"
            for hyps in (f.wer_clean, f.wer_aec, f.wer_raw)
        )
        print(
            f"{_name(room):<24}{np.nanmin(f.erle_first):>8.1f} dB min"
            f"{np.nanmin(f.erle_settled):>9.1f} dB min"
            f"{100 * max(f.vad_on):>13.1f}/{100 * max(f.vad_first):.0f}"
            f"/{100 * max(f.vad_off):.0f} %"
            f"{wers + ' %':>21}{np.mean(f.cpu_ms):>10.1f}"
            f"{word_error_rate(f.wer_refs, f.wer_speech) * 100:>12.0f} %"
        )
        for hit in f.vad_hits:
            state = "known" if hit.known else "not yet known"
            print(
                f"  VAD {hit.probability:.2f} on echo: reply {hit.reply + 1} at {hit.at:.2f} s, "
                f"{hit.dbfs:.0f} dBFS, echo {state}"
            )
        for hit in f.pause_hits:
            print(
                f"  would pause the reply on echo: reply {hit.reply + 1} at {hit.at:.2f} s, VAD "
                f"{hit.probability:.2f}, {hit.dbfs:.0f} dBFS"
            )
        clean += f.wer_clean
        all_first += f.erle_first
        all_settled += f.erle_settled
        all_vad += f.vad_on
        all_pause_known += f.pause_known
        all_vad_first += f.vad_first
        all_cpu += f.cpu_ms
        refs += f.wer_refs
        aec += f.wer_aec
        speech += f.wer_speech
        raw += f.wer_raw
    print(
        f"overall: ERLE first 1.5 s median {np.nanmedian(all_first):.1f} dB (min "
        f"{np.nanmin(all_first):.1f}); settled median {np.nanmedian(all_settled):.1f} dB (min "
        f"{np.nanmin(all_settled):.1f}); VAD on echo-only frames with AEC after the first "
        f"{FIRST_SECONDS} s max {100 * max(all_vad):.1f} % (in them max "
        f"{100 * max(all_vad_first):.1f} %); echo-only frames in which the frame or a 10 ms look "
        f"would pause a reply once the canceller knew the echo max "
        f"{100 * np.nanmax(all_pause_known):.1f} % (never known in "
        f"{int(np.isnan(all_pause_known).sum())} of {len(all_pause_known)}); CPU "
        f"{np.mean(all_cpu):.1f} ms per audio second"
    )
    print(
        f"user WER, talking through a whole reply: no echo {word_error_rate(refs, clean) * 100:.1f}"
        f" %; over the reply with AEC "
        f"{word_error_rate(refs, aec) * 100:.1f} % (as the recognizer hears it, the linear stage "
        f"once it cancels: {word_error_rate(refs, speech) * 100:.1f} %), without AEC "
        f"{word_error_rate(refs, raw) * 100:.1f} %"
    )
