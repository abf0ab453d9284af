"""The audio of the turn-taking scenarios, built from their text with the offline voices.

A scenario's audio is made when a test or ``parley bench turns`` needs it, from the scripts in
``assistant.bench.turn_scripts``: each phrase is spoken by one of several voices (eSpeak NG
variants at different rates through the ``espeak-ng`` command, Parley's own Piper and Pico
voices, sped up or slowed down with SoX's ``tempo``), trimmed to its first and last sound, and
laid out on a timeline with exact silences between phrases. Coughs and bursts of noise are
synthesized; background noise is pink noise at a given signal-to-noise ratio. Every ``Scene``
knows where each of its phrases lies, so a run can be checked against it.

Synthesized phrases are cached by voice and text in the directory given, so a second run of a
benchmark does not speak them again.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from assistant.audio.wav import read_wav, resample, write_wav
from assistant.types import PCM

RATE = 16_000

Engine = Literal["espeak", "piper", "pico"]


@dataclass(frozen=True, slots=True)
class Voice:
    """One way of speaking: an engine's voice, and a speaking rate.

    ``espeak``: ``name`` is an espeak-ng voice with a variant ("en-us+m3"), ``rate`` its words
    per minute. ``piper``/``pico``: ``name`` is a Parley voice id, ``tempo`` a SoX tempo factor.
    """

    engine: Engine
    name: str
    rate: int = 0
    tempo: float = 1.0

    @property
    def label(self) -> str:
        speed = f"@{self.rate}" if self.rate else (f"x{self.tempo:g}" if self.tempo != 1 else "")
        return f"{self.engine}:{self.name}{speed}"


#: Several voices per language: a neural or Pico voice where there is one, and eSpeak variants
#: (male and female, slow and fast).
VOICES: dict[str, tuple[Voice, ...]] = {
    "en": (
        Voice("piper", "piper:en_US-joe-medium"),
        Voice("pico", "pico:en-GB", tempo=1.15),
        Voice("espeak", "en-us+m3", rate=150),
        Voice("espeak", "en+f3", rate=190),
    ),
    "de": (
        Voice("pico", "pico:de-DE"),
        Voice("espeak", "de+m2", rate=140),
        Voice("espeak", "de+f4", rate=180),
    ),
    "fr": (
        Voice("pico", "pico:fr-FR", tempo=0.9),
        Voice("espeak", "fr+m4", rate=150),
        Voice("espeak", "fr+f2", rate=185),
    ),
    "es": (
        Voice("pico", "pico:es-ES"),
        Voice("espeak", "es+m1", rate=150),
        Voice("espeak", "es-419+f3", rate=185),
    ),
    "it": (
        Voice("pico", "pico:it-IT", tempo=1.1),
        Voice("espeak", "it+m3", rate=150),
        Voice("espeak", "it+f2", rate=180),
    ),
    "pt": (
        Voice("espeak", "pt+m3", rate=150),
        Voice("espeak", "pt-br+f2", rate=180),
    ),
    "nl": (
        Voice("espeak", "nl+m2", rate=150),
        Voice("espeak", "nl+f3", rate=180),
    ),
}

SpanKind = Literal["request", "first", "rest", "backchannel", "barge_in", "stop", "noise", "cough"]


@dataclass(frozen=True, slots=True)
class Span:
    """Where one phrase (or noise) lies in a scene's audio, in seconds."""

    kind: SpanKind
    start: float
    end: float
    text: str = ""


@dataclass(slots=True)
class Scene:
    """A scenario's audio and what is in it."""

    name: str
    language: str
    pcm: PCM
    spans: list[Span] = field(default_factory=list)
    #: Where the audio waits until the assistant's reply is under way (None: it never waits):
    #: what follows is said over the reply, however long the reply took to begin.
    gate: float | None = None

    @property
    def duration(self) -> float:
        return len(self.pcm) / RATE

    def span(self, kind: SpanKind) -> Span:
        return next(s for s in self.spans if s.kind == kind)

    def write(self, path: Path) -> Path:
        write_wav(path, self.pcm, RATE)
        return path


class SynthesisError(RuntimeError):
    """A phrase could not be spoken (a missing program or voice)."""


class Speaker:
    """Speaks phrases with any ``Voice``, caching the results in ``cache`` as WAV files."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        cache.mkdir(parents=True, exist_ok=True)
        self._tts: object | None = None

    async def say(self, text: str, voice: Voice, language: str) -> PCM:
        """``text`` spoken by ``voice``, 16 kHz, from its first sound to its last."""
        key = hashlib.sha256(f"{voice.label}|{language}|{text}".encode()).hexdigest()[:20]
        path = self.cache / f"{key}.wav"
        if path.exists():
            pcm, _ = read_wav(path)
            return pcm
        if voice.engine == "espeak":
            pcm = await asyncio.to_thread(_espeak, text, voice)
        else:
            pcm = await self._parley_voice(text, voice, language)
            if voice.tempo != 1.0:
                pcm = await asyncio.to_thread(_tempo, pcm, voice.tempo)
        pcm = trim(pcm)
        write_wav(path, pcm, RATE)
        return pcm

    async def _parley_voice(self, text: str, voice: Voice, language: str) -> PCM:
        from assistant.engines.local.tts import LocalTTS

        if self._tts is None:
            self._tts = LocalTTS()
        tts: LocalTTS = self._tts  # type: ignore[assignment]

        async def one() -> AsyncIterator[str]:
            yield text

        chunks = [c async for c in tts.stream(one(), voice=voice.name, language=language)]
        audio = np.concatenate([c.pcm for c in chunks]) if chunks else np.zeros(0, np.int16)
        return resample(audio, chunks[0].sample_rate if chunks else RATE, RATE)

    def close(self) -> None:
        close = getattr(self._tts, "close", None)
        if close is not None:
            close()


def _espeak(text: str, voice: Voice) -> PCM:
    program = shutil.which("espeak-ng")
    if program is None:
        raise SynthesisError("espeak-ng is not installed (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory(prefix="parley-say-") as tmp:
        out = Path(tmp) / "say.wav"
        command = [program, "-v", voice.name, "-w", str(out)]
        if voice.rate:
            command += ["-s", str(voice.rate)]
        done = subprocess.run([*command, text], capture_output=True, text=True, timeout=60)
        if done.returncode != 0 or not out.exists():
            raise SynthesisError(f"espeak-ng -v {voice.name} failed: {done.stderr.strip()}")
        pcm, rate = read_wav(out)
    return resample(pcm, rate, RATE)


def _tempo(pcm: PCM, factor: float) -> PCM:
    """Faster or slower speech at the same pitch (SoX ``tempo``)."""
    program = shutil.which("sox")
    if program is None:
        raise SynthesisError("sox is not installed (apt-get install sox)")
    with tempfile.TemporaryDirectory(prefix="parley-tempo-") as tmp:
        src, dst = Path(tmp) / "in.wav", Path(tmp) / "out.wav"
        write_wav(src, pcm, RATE)
        done = subprocess.run(
            [program, str(src), str(dst), "tempo", "-s", f"{factor:g}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise SynthesisError(f"sox tempo failed: {done.stderr.strip()}")
        out, _ = read_wav(dst)
    return out


def trim(pcm: PCM, threshold: int = 300) -> PCM:
    """From the first to the last sample louder than ``threshold``."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > threshold)
    if len(loud) == 0:
        return pcm[:0]
    return pcm[loud[0] : loud[-1] + 1].copy()


def silence(seconds: float) -> PCM:
    return np.zeros(round(seconds * RATE), np.int16)


def cough(seed: int = 0) -> PCM:
    """A synthetic cough: two bursts of voiced, band-limited noise with a sharp attack."""
    rng = np.random.default_rng(seed)
    parts = []
    for length, level in ((0.22, 9000.0), (0.16, 6000.0)):
        n = round(length * RATE)
        t = np.arange(n) / RATE
        envelope = np.minimum(1.0, t / 0.01) * np.exp(-t / (length / 3))
        noise = np.convolve(rng.standard_normal(n), np.ones(6) / 6, mode="same")  # soften highs
        voiced = 0.4 * np.sin(2 * np.pi * 180 * t) * (1 + 0.3 * rng.standard_normal(n))
        parts.append((noise + voiced) * envelope * level / 2)
        parts.append(np.zeros(round(0.07 * RATE)))
    return np.clip(np.concatenate(parts), -32768, 32767).astype(np.int16)


def knock(seed: int = 0) -> PCM:
    """A door knock or a dropped object: three short, loud, decaying clicks."""
    rng = np.random.default_rng(seed)
    out = np.zeros(round(0.6 * RATE))
    for start in (0.0, 0.18, 0.36):
        n = round(0.05 * RATE)
        t = np.arange(n) / RATE
        burst = rng.standard_normal(n) * np.exp(-t / 0.008) * 14000
        i = round(start * RATE)
        out[i : i + n] += burst
    return np.clip(out, -32768, 32767).astype(np.int16)


def pink_noise(samples: int, seed: int = 0) -> np.ndarray:
    """Pink (1/f) noise with unit RMS."""
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(samples))
    freqs = np.fft.rfftfreq(samples)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0
    noise = np.fft.irfft(spectrum, samples)
    return noise / (np.sqrt(np.mean(noise**2)) or 1.0)


def with_noise(pcm: PCM, snr_db: float, seed: int = 0) -> PCM:
    """``pcm`` with pink noise under it, ``snr_db`` below the speech's level."""
    speech = pcm.astype(np.float64)
    voiced = speech[np.abs(speech) > 300]
    level = np.sqrt(np.mean(voiced**2)) if len(voiced) else 1000.0
    noise = pink_noise(len(pcm), seed) * level / (10 ** (snr_db / 20))
    return np.clip(speech + noise, -32768, 32767).astype(np.int16)


class Timeline:
    """Lays phrases out one after another: ``add`` a phrase, ``gap`` a silence."""

    def __init__(self, lead: float = 0.4) -> None:
        self._parts: list[PCM] = [silence(lead)]
        self._at = lead
        self.spans: list[Span] = []
        self._gate: float | None = None

    def add(self, pcm: PCM, kind: SpanKind, text: str = "") -> None:
        self._parts.append(pcm)
        end = self._at + len(pcm) / RATE
        self.spans.append(Span(kind, self._at, end, text))
        self._at = end

    def gap(self, seconds: float) -> None:
        self._parts.append(silence(seconds))
        self._at += seconds

    def wait_for_reply(self) -> None:
        """What follows is said once the assistant's reply is under way (``Scene.gate``)."""
        self._gate = self._at

    @property
    def now(self) -> float:
        return self._at

    def scene(self, name: str, language: str) -> Scene:
        pcm = np.concatenate(self._parts)
        return Scene(name, language, pcm, list(self.spans), self._gate)


def seconds_list(values: Sequence[float]) -> str:
    return ", ".join(f"{v:g} s" for v in values)
