"""Offline speech-to-text: Whisper (CTranslate2 int8) with packaged weights, no network.

Decoding calls the CTranslate2 model directly instead of ``WhisperModel.transcribe``: that one
always pads to a 30 s window, which makes a 3-second command cost as much as 30 seconds of audio.
Here the window is fitted to the utterance. Short windows make Whisper prone to loops, so the
output length is capped and a text is cut at its first immediately repeated phrase.

All inference runs on one dedicated worker thread per engine (CTranslate2 releases the GIL), so
the event loop never waits on it and a final decode starts as soon as the (short) partial pass in
progress ends.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from assistant.audio.frames import CAPTURE_RATE
from assistant.engines.base import PCM, EngineError, EngineUnavailable, Transcript, queued
from assistant.engines.local import whisper_models
from assistant.engines.local.whisper_models import ModelName
from assistant.scheduling import cpu_priority

if TYPE_CHECKING:
    from faster_whisper.tokenizer import Tokenizer

log = logging.getLogger(__name__)

# Weights come only from installed packages; should any code path try a model hub, fail fast
# instead of waiting on a network that is not there. Set before faster_whisper is imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ModelChoice = Literal["auto", "base", "tiny.en"]
Audio = npt.NDArray[np.float32]
ProgressCallback = Callable[[float, str], None]
T = TypeVar("T")

#: Threads for one decode. A final runs while the other engines wait for it: on 2 idle cores,
#: 2 threads decode a 3-5 s base final in ~0.28 s instead of ~0.41 s (tiny.en gains little).
DEFAULT_THREADS = max(1, min(2, os.cpu_count() or 1))

# Decode window: the utterance plus some silence, at least this long (Whisper was trained on
# 30 s windows; much shorter ones hurt accuracy more than they save time).
_TAIL_PAD_S = 1.0
_MIN_WINDOW_S = 10.0
_MAX_WINDOW_S = 30.0
# Loop guard: speech runs at ~3-5 tokens a second in most languages (8 leaves room for fast
# talkers), but at 9-15 in scripts the tokenizer splits finely (measured on eSpeak NG speech).
_TOKENS_PER_S = 8
_DENSE_TOKENS_PER_S = 20
_DENSE_SCRIPTS = frozenset(
    "hi mr ne sa bn as gu pa or ta te kn ml si th lo km my bo el ka hy am".split()
)
_EXTRA_TOKENS = 10
_MAX_LENGTH = 448
# Whisper's own "this is silence" rule, plus a stricter one: on hum it answers "you" with a
# no-speech probability above 0.9, while speech here stayed below 0.3.
_NO_SPEECH_PROB = 0.6
_LOGPROB_FLOOR = -1.0
_SURE_NO_SPEECH_PROB = 0.8
# Utterances shorter than this carry no words worth decoding.
_MIN_AUDIO_S = 0.1

_ALIASES = {"nb": "no", "iw": "he", "jv": "jw", "fil": "tl", "in": "id"}


# ------------------------------------------------------------------------------- text helpers

# Han and kana characters are words of their own: those scripts put no spaces between words.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+(?:['’][^\W{_CJK}]+)*")


def whisper_language(language: str) -> str:
    """Whisper's code for a BCP-47-ish tag: ``en-US`` → ``en``, ``nb-NO`` → ``no``."""
    code = re.split(r"[-_]", language.strip(), maxsplit=1)[0].lower()
    return _ALIASES.get(code, code)


def pick_model(choice: ModelChoice, language: str, *, detect: bool = False) -> ModelName:
    """``auto`` uses the fast English-only model for English, the multilingual one otherwise
    (and whenever the spoken language is to be detected)."""
    if choice == "auto":
        return "tiny.en" if whisper_language(language) == "en" and not detect else "base"
    return choice


#: A detected language other than the configured one takes over only when, among the languages
#: a conversation can be held in, it is at least this probable...
DETECT_MIN_PROBABILITY = 0.5
#: ...and this many times as probable as the configured one.
DETECT_MARGIN = 2.0


def choose_language(
    probabilities: dict[str, float], prior: str, allowed: Collection[str] | None = None
) -> str:
    """The language an utterance is in, with the configured language ``prior`` (a Whisper
    code) as the first guess.

    Only the languages of ``allowed`` (those a conversation can be held in) and the prior are
    considered, their probabilities renormalized among themselves: a short clip is readily
    taken for a neighbouring language nobody speaks here (Spanish for Catalan, English for
    Welsh). Another language then takes over only when it is fairly sure
    (``DETECT_MIN_PROBABILITY``) and much surer than the prior (``DETECT_MARGIN``).
    """
    pool = {
        code: p
        for code, p in probabilities.items()
        if allowed is None or code in allowed or code == prior
    }
    total = sum(pool.values())
    if total <= 0:
        return prior
    best = max(pool, key=lambda code: pool[code])
    if best == prior:
        return prior
    share = pool[best] / total
    sure = share >= DETECT_MIN_PROBABILITY and pool[best] >= DETECT_MARGIN * pool.get(prior, 0.0)
    return best if sure else prior


def cut_repetition(text: str, min_words: int = 3) -> str:
    """Cut ``text`` at the first block of ``min_words``+ words that is immediately repeated.

    "turn on the light turn on the light turn on the" → "turn on the light". Words compare
    case- and punctuation-insensitively; the kept text keeps its original spelling.
    """
    spans = [(m.start(), m.end(), m.group().lower()) for m in _WORD.finditer(text)]
    words = [w for _, _, w in spans]
    n = len(words)
    for end in range(2 * min_words, n + 1):  # scan left to right: first loop wins
        for size in range(min_words, end // 2 + 1):
            if words[end - 2 * size : end - size] == words[end - size : end]:
                cut = spans[end - size - 1][1]
                while cut < len(text) and not (text[cut].isspace() or text[cut].isalnum()):
                    cut += 1  # keep the punctuation that ends the kept block
                return text[:cut].rstrip(" ,;:-")
    return text


# ------------------------------------------------------------------------------- the model


@dataclass(slots=True)
class Decoded:
    text: str
    seconds: float  # wall time of the decode
    audio_seconds: float
    no_speech_prob: float = 0.0
    avg_logprob: float = 0.0


class WhisperRunner:
    """One loaded Whisper model. Use from a single thread (the engine's worker)."""

    def __init__(self, name: ModelName, threads: int) -> None:
        import ctranslate2
        import tokenizers
        from faster_whisper.feature_extractor import FeatureExtractor

        self.name = name
        self._path = whisper_models.model_dir(name)
        try:
            self.model = ctranslate2.models.Whisper(
                str(self._path),
                device="cpu",
                compute_type="int8",
                intra_threads=threads,
                inter_threads=1,
            )
        except (RuntimeError, ValueError) as exc:
            raise EngineUnavailable(
                f"Could not load the Whisper {name} model from {self._path}: {exc}",
                engine="local",
                retryable=False,
            ) from exc
        self._hf_tokenizer = tokenizers.Tokenizer.from_file(str(self._path / "tokenizer.json"))
        self._features = FeatureExtractor()
        self._tokenizers: dict[str, tuple[Tokenizer, list[int]]] = {}

    @property
    def multilingual(self) -> bool:
        return bool(self.model.is_multilingual)

    def tokenizer(self, language: str) -> tuple[Tokenizer, list[int]]:
        """The tokenizer for ``language`` and the tokens Whisper must not emit."""
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        if not self.multilingual:
            language = "en"
        cached = self._tokenizers.get(language)
        if cached is None:
            if self.multilingual and self._hf_tokenizer.token_to_id(f"<|{language}|>") is None:
                raise EngineError(
                    f"Whisper {self.name} does not know the language {language!r}.",
                    engine="local",
                    retryable=False,
                )
            tok = Tokenizer(self._hf_tokenizer, self.multilingual, "transcribe", language)
            cached = tok, list(get_suppressed_tokens(tok, [-1]))  # -1: non-speech symbols
            self._tokenizers[language] = cached
        return cached

    def encode(self, audio: Audio, min_window: float = _MIN_WINDOW_S) -> Any:
        """Whisper's encoding of up to 30 s of 16 kHz mono float audio (for ``decode`` and
        ``language_probabilities``, which can share it)."""
        import ctranslate2

        seconds = len(audio) / CAPTURE_RATE
        window = min(_MAX_WINDOW_S, max(seconds + _TAIL_PAD_S, min_window))
        samples = int(window * CAPTURE_RATE)
        audio = audio[:samples]
        # Pad with digital silence before the log-mel, as Whisper itself does.
        padded = np.pad(audio, (0, samples - len(audio)))
        frames = int(window * 100) // 2 * 2  # 10 ms hops; the encoder halves the length
        features = self._features(padded, padding=0)[:, :frames]
        return self.model.encode(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None]))
        )

    def language_probabilities(self, audio: Audio, encoded: Any = None) -> dict[str, float]:
        """Whisper's belief about the language spoken (its code → probability), from the first
        30 s. Empty for an English-only model. About one decoder step given ``encoded``."""
        if not self.multilingual:
            return {}
        if encoded is None:
            encoded = self.encode(audio)
        ranked = self.model.detect_language(encoded)[0]
        return {token.strip("<|>"): float(p) for token, p in ranked}

    def decode(
        self,
        audio: Audio,
        language: str,
        *,
        min_window: float = _MIN_WINDOW_S,
        beam_size: int = 1,
        encoded: Any = None,
    ) -> Decoded:
        """Transcribe up to 30 s of 16 kHz mono float audio in ``language`` (Whisper code).

        ``encoded``: this audio's ``encode`` (with the same ``min_window``), if already made.
        """
        t0 = time.perf_counter()
        seconds = len(audio) / CAPTURE_RATE
        if seconds < _MIN_AUDIO_S:
            return Decoded("", 0.0, seconds)
        if encoded is None:
            encoded = self.encode(audio, min_window)
        tok, suppress = self.tokenizer(language)
        prompt = [*tok.sot_sequence, tok.no_timestamps]
        rate = _DENSE_TOKENS_PER_S if language in _DENSE_SCRIPTS else _TOKENS_PER_S
        max_length = min(_MAX_LENGTH, len(prompt) + int(rate * seconds) + _EXTRA_TOKENS)
        result = self.model.generate(
            encoded,
            [prompt],
            beam_size=beam_size,
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=suppress,
        )[0]
        tokens = [t for t in result.sequences_ids[0] if t < tok.eot]
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1) if tokens else -10.0
        # A token run cut inside a multi-byte character decodes to U+FFFD: drop it.
        text = " ".join(tok.decode(tokens).replace("\ufffd", "").split())
        nsp = result.no_speech_prob
        if nsp > _SURE_NO_SPEECH_PROB or (nsp > _NO_SPEECH_PROB and avg_logprob < _LOGPROB_FLOOR):
            text = ""
        return Decoded(
            cut_repetition(text),
            time.perf_counter() - t0,
            seconds,
            float(result.no_speech_prob),
            float(avg_logprob),
        )

    def transcribe(
        self, audio: Audio, language: str, *, beam_size: int = 1, encoded: Any = None
    ) -> Decoded:
        """Like ``decode`` for audio of any length: longer than 30 s is split at quiet points.

        ``encoded``: the ``encode`` of ``audio`` when it is short enough to be decoded whole.
        """
        t0 = time.perf_counter()
        limit = int((_MAX_WINDOW_S - 2 * _TAIL_PAD_S) * CAPTURE_RATE)
        texts = []
        rest = audio
        while len(rest) > limit:
            encoded = None
            cut = quiet_point(rest, limit // 2, limit)
            texts.append(self.decode(rest[:cut], language, beam_size=beam_size).text)
            rest = rest[cut:]
        last = self.decode(rest, language, beam_size=beam_size, encoded=encoded)
        texts.append(last.text)
        return Decoded(
            " ".join(t for t in texts if t),
            time.perf_counter() - t0,
            len(audio) / CAPTURE_RATE,
            last.no_speech_prob,
            last.avg_logprob,
        )


def quiet_point(audio: Audio, lo: int, hi: int) -> int:
    """The sample index in [lo, hi) at the centre of the quietest 100 ms: a pause between words."""
    hop, win = CAPTURE_RATE // 50, CAPTURE_RATE // 10  # 20 ms steps, 100 ms windows
    lo, hi = max(0, lo), min(len(audio), hi)
    if hi - lo < win:
        return hi
    seg = audio[lo:hi].astype(np.float32)
    energy = np.convolve(seg * seg, np.ones(win, dtype=np.float32), mode="valid")[::hop]
    return lo + int(np.argmin(energy)) * hop + win // 2


# ------------------------------------------------------------------------------- the engine


class LocalSTT:
    """Embedded Whisper speech-to-text (``SpeechToText``).

    ``model``: ``"auto"`` (tiny.en for English, base otherwise), ``"base"`` or ``"tiny.en"``.
    ``threads``: CTranslate2 threads per decode. ``language``: an optional hint so ``warm_up``
    loads only the model that will be used. ``detect_language``: find each utterance's
    language (``choose_language``, the session's language first, among ``languages`` when
    given) instead of assuming the session's; needs the multilingual model, and costs one
    decoder step per final transcript. ``beam_size``: 1 (greedy) for finals by default;
    5 was ~1 word in 100 more accurate for 10-40 % more time. Partials re-decode the pending
    audio every ``partial_interval`` seconds; audio beyond ``partial_window`` seconds is settled
    at a pause so passes stay short. ``on_progress`` callbacks receive (fraction, message) per
    model while it loads, on the event loop that asked for it.
    """

    name = "local"
    provides_endpointing = False

    def __init__(
        self,
        model: ModelChoice = "auto",
        threads: int = DEFAULT_THREADS,
        *,
        language: str | None = None,
        beam_size: int = 1,
        partial_interval: float = 0.5,
        partial_window: float = 5.0,
        detect_language: bool = False,
        languages: Collection[str] | None = None,
    ) -> None:
        if model not in ("auto", "base", "tiny.en"):
            raise EngineError(
                f"Unknown local speech model {model!r}: use auto, base or tiny.en.",
                engine="local",
                retryable=False,
            )
        self.model: ModelChoice = model
        self.threads = max(1, threads)
        self.language = language
        self.detect_language = detect_language
        self.languages = frozenset(whisper_language(code) for code in languages or ())
        self.beam_size = beam_size
        self.partial_interval = partial_interval
        self.partial_window = partial_window
        self.on_progress: list[ProgressCallback] = []
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="parley-stt")
        self._loads: dict[ModelName, concurrent.futures.Future[WhisperRunner]] = {}
        self._lock = threading.Lock()

    # -- models

    def _models_for_warm_up(self, language: str | None) -> list[ModelName]:
        if self.model != "auto":
            return [self.model]
        if language is not None:
            return [pick_model("auto", language, detect=self.detect_language)]
        return ["tiny.en", "base"]  # language unknown yet: be ready for either

    def load(
        self, name: ModelName, loop: asyncio.AbstractEventLoop | None = None
    ) -> concurrent.futures.Future[WhisperRunner]:
        """Start loading ``name`` on the worker (once); the future resolves to the model."""
        with self._lock:
            future = self._loads.get(name)
            if future is None or _failed(future):
                future = self.submit(partial(self._load, name, loop))
                self._loads[name] = future
            return future

    def _load(self, name: ModelName, loop: asyncio.AbstractEventLoop | None) -> WhisperRunner:
        def progress(fraction: float, message: str) -> None:
            for callback in list(self.on_progress):
                if loop is None:
                    try:
                        callback(fraction, message)
                    except Exception:  # a display problem must not stop the model loading
                        log.exception("progress callback failed")
                elif not loop.is_closed():
                    loop.call_soon_threadsafe(callback, fraction, message)

        t0 = time.perf_counter()
        if name == "base":  # joining the halves is the slow part of a first start
            whisper_models.base_dir(progress=lambda f, m: progress(0.6 * f, m))
        progress(0.6, f"Loading speech model {name}")
        runner = WhisperRunner(name, self.threads)
        progress(0.9, f"Preparing speech model {name}")
        # The first decode allocates buffers; do it now rather than on the user's first turn.
        runner.decode(np.zeros(CAPTURE_RATE, dtype=np.float32), "en", min_window=2.0)
        progress(1.0, f"Speech model {name} ready")
        log.info("Whisper %s loaded in %.2f s", name, time.perf_counter() - t0)
        return runner

    async def warm_up(self, language: str | None = None) -> None:
        """Load (and exercise once) the model(s) the next sessions will use. Idempotent."""
        loop = asyncio.get_running_loop()
        language = language or self.language
        futures = [self.load(name, loop) for name in self._models_for_warm_up(language)]
        for future in futures:
            await asyncio.wrap_future(future)

    async def open(self, language: str) -> LocalSTTSession:
        name = pick_model(self.model, language, detect=self.detect_language)
        code = whisper_language(language)
        if name == "tiny.en" and code != "en":
            raise EngineError(
                f"The tiny.en speech model understands only English, not {language!r}: "
                "choose the auto or base model.",
                engine="local",
                retryable=False,
            )
        await asyncio.to_thread(_check_language, code, name)
        # Loading continues in the background; the first transcript waits for it.
        model = self.load(name, asyncio.get_running_loop())
        return LocalSTTSession(self, model, language, code)

    def submit(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run ``fn`` on the inference thread, after the jobs already queued."""
        try:
            return self._worker.submit(fn)
        except RuntimeError:  # shut down
            raise EngineError("The local speech engine is closed.", engine="local") from None

    def close(self) -> None:
        """Stop the worker thread (after the job in progress)."""
        self._worker.shutdown(wait=False, cancel_futures=True)

    async def aclose(self) -> None:
        self.close()


def _failed(future: concurrent.futures.Future[Any]) -> bool:
    return future.done() and (future.cancelled() or future.exception() is not None)


def _check_language(code: str, name: ModelName) -> None:
    """Fail early, with a clear message, on a missing model package or an unknown language."""
    whisper_models.require(name)
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    if code not in _LANGUAGE_CODES:
        raise EngineError(
            f"Offline speech recognition does not support the language {code!r}.",
            engine="local",
            retryable=False,
        )


# ------------------------------------------------------------------------------- the session


@dataclass(slots=True)
class SessionStats:
    """What decoding cost so far (for benchmarks and the timeline)."""

    partial_passes: int = 0
    partial_seconds: float = 0.0
    partials_skipped: int = 0
    finals: int = 0
    last_final_seconds: float = 0.0
    final_seconds: list[float] = field(default_factory=list)
    #: Decodes of an open utterance (``checkpoint``), and what each cost.
    checkpoint_seconds: list[float] = field(default_factory=list)


class LocalSTTSession:
    """Streaming session over one utterance at a time (``STTSession``)."""

    def __init__(
        self,
        engine: LocalSTT,
        model: concurrent.futures.Future[WhisperRunner],
        language: str,
        whisper_code: str,
    ) -> None:
        self._engine = engine
        self._model = model
        self._language = language
        self._code = whisper_code
        #: The configured language, which detection favours (``choose_language``).
        self._prior = whisper_code
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Transcript | EngineError | None] = asyncio.Queue()
        self._chunks: list[PCM] = []
        self._samples = 0  # in the current utterance
        self._opened_samples = 0  # since the session opened, before the current utterance
        self._utterance = 0  # bumps at each end_turn / clear: stale results are dropped
        self._partial_busy = False
        self._checkpoints = 0  # in progress: partial passes queued meanwhile step aside
        self._last_partial = 0.0
        # Long utterances: text of audio[:_prefix_end], settled by an earlier partial pass.
        self._prefix_text = ""
        self._prefix_end = 0
        self._closed = False
        self.stats = SessionStats()

    @property
    def sample_rate(self) -> int:
        return CAPTURE_RATE

    async def push(self, pcm: PCM) -> None:
        if self._closed or len(pcm) == 0:
            return
        self._chunks.append(np.asarray(pcm, dtype=np.int16).copy())
        self._samples += len(pcm)
        self._maybe_partial()

    async def end_turn(self) -> None:
        if self._closed:
            return
        audio = self._take_audio()
        start, end = self._span()
        self._new_utterance()
        runner_future = self._model
        engine = self._engine

        def job() -> None:
            if self._closed:
                return
            try:
                runner = runner_future.result()
                encoded = None
                if engine.detect_language and runner.multilingual and len(audio):
                    encoded = runner.encode(audio)
                    heard = runner.language_probabilities(audio, encoded)
                    allowed = engine.languages or None
                    # Partials of the next utterance follow the language last heard too.
                    self._code = choose_language(heard, self._prior, allowed)
                    if len(audio) > int((_MAX_WINDOW_S - 2 * _TAIL_PAD_S) * CAPTURE_RATE):
                        encoded = None  # decoded in pieces, each encoded on its own
                decoded = runner.transcribe(
                    audio, self._code, beam_size=engine.beam_size, encoded=encoded
                )
            except EngineError as exc:
                self._post(exc)
                return
            except Exception as exc:  # a library failure must not vanish on a worker thread
                log.exception("local speech recognition failed")
                self._post(EngineError(f"Offline speech recognition failed: {exc}", engine="local"))
                return
            self._post(self._final(decoded, start, end))

        engine.submit(job)

    async def checkpoint(self) -> str | None:
        """The open utterance so far, decoded as its final would be; the utterance goes on.

        Runs ahead of any partial pass not yet started. A final asked for with no more audio
        (or only silence) would decode the same samples the same way, which is why a caller
        that knows nothing was said since may keep this text as the final. None while the
        language spoken is to be detected: the final finds it, and the reply follows it.
        """
        if self._closed:
            return ""
        if self._engine.detect_language:
            return None
        audio = self._take_audio()
        runner_future = self._model
        engine = self._engine

        def job() -> Decoded:
            try:
                runner = runner_future.result()
                return runner.transcribe(audio, self._code, beam_size=engine.beam_size)
            except EngineError:
                raise
            except Exception as exc:  # a library failure must not vanish on a worker thread
                log.exception("local speech recognition failed")
                raise EngineError(
                    f"Offline speech recognition failed: {exc}", engine="local"
                ) from exc

        self._checkpoints += 1
        try:
            decoded = await asyncio.wrap_future(engine.submit(job))
        finally:
            self._checkpoints -= 1
        self.stats.checkpoint_seconds.append(decoded.seconds)
        return decoded.text

    async def clear(self) -> None:
        self._new_utterance()

    def transcripts(self) -> AsyncIterator[Transcript]:
        return queued(self._queue)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._new_utterance()
            self._queue.put_nowait(None)

    # -- internals

    def _take_audio(self) -> Audio:
        if not self._chunks:
            return np.zeros(0, dtype=np.float32)
        pcm = np.concatenate(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
        self._chunks = [pcm]  # keep one array: later passes concatenate less
        return pcm.astype(np.float32) * np.float32(1.0 / 32768.0)

    def _span(self) -> tuple[float, float]:
        start = self._opened_samples / CAPTURE_RATE
        return start, start + self._samples / CAPTURE_RATE

    def _new_utterance(self) -> None:
        self._utterance += 1
        self._opened_samples += self._samples
        self._chunks = []
        self._samples = 0
        self._prefix_text = ""
        self._prefix_end = 0
        self._last_partial = 0.0

    def _final(self, decoded: Decoded, start: float, end: float) -> Transcript:
        self.stats.finals += 1
        self.stats.last_final_seconds = decoded.seconds
        self.stats.final_seconds.append(decoded.seconds)
        return Transcript(decoded.text, True, start, end, language=self.heard_language)

    @property
    def heard_language(self) -> str:
        """The language of the latest utterance: the session's own tag (``en-GB``) when it was
        that language, else the detected one's Whisper code."""
        return self._language if self._code == self._prior else self._code

    def _post(self, item: Transcript | EngineError) -> None:
        """Hand a result from the worker to the loop, keeping the order jobs ran in."""
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._deliver, item)

    def _deliver(self, item: Transcript | EngineError) -> None:
        if not self._closed:
            self._queue.put_nowait(item)

    # -- partial transcripts

    def _maybe_partial(self) -> None:
        engine = self._engine
        now = time.monotonic()
        if (
            self._partial_busy
            or engine.partial_interval <= 0
            or now - self._last_partial < engine.partial_interval
            or self._samples < engine.partial_interval * CAPTURE_RATE
            or not self._model.done()
            or _failed(self._model)
        ):
            return
        if cpu_priority.reply_active:  # the reply needs the CPU more than a preview does
            self.stats.partials_skipped += 1
            return
        self._last_partial = now
        self._partial_busy = True
        utterance = self._utterance
        audio = self._take_audio()
        pending = audio[self._prefix_end :]
        window = int(engine.partial_window * CAPTURE_RATE)
        commit = len(pending) > window
        if commit:
            # Settle the older part of a long utterance at a pause, so later passes stay short.
            cut = quiet_point(pending, window // 2, window)
            pending = pending[:cut]
        start, end = self._span()
        runner = self._model.result()
        # A window just long enough for the pending audio: partials trade a little accuracy
        # for passes short enough that a final never waits long behind one.
        min_window = engine.partial_window + _TAIL_PAD_S

        def job() -> None:
            text: str | None = None
            try:
                # Skip a pass that went stale while queued, that would slow a reply down, or
                # that a checkpoint (the same audio, decoded better) makes pointless.
                busy = cpu_priority.reply_active or self._checkpoints > 0
                if utterance == self._utterance and not busy:
                    decoded = runner.decode(pending, self._code, min_window=min_window)
                    text = decoded.text
                    self.stats.partial_passes += 1
                    self.stats.partial_seconds += decoded.seconds
            except Exception:
                log.exception("partial transcript failed")
            if not self._loop.is_closed():
                self._loop.call_soon_threadsafe(
                    self._partial_done, utterance, text, len(pending) if commit else 0, start, end
                )

        engine.submit(job)

    def _partial_done(
        self, utterance: int, text: str | None, commit: int, start: float, end: float
    ) -> None:
        """Emit a partial; ``commit`` > 0 settles that many samples after the prefix."""
        self._partial_busy = False
        if utterance != self._utterance or self._closed or text is None:
            return
        full = _join_text(self._prefix_text, text)
        if commit:
            # This pass saw only the settled part: showing it would shrink the visible text.
            self._prefix_text = full
            self._prefix_end += commit
        elif full:
            self._queue.put_nowait(Transcript(full, False, start, end, language=self._language))


def _join_text(settled: str, tail: str) -> str:
    """Settled text + the latest pass; a sentence end Whisper put at an arbitrary cut goes."""
    if not settled or not tail:
        return settled or tail
    if settled.endswith(".") and tail[0].islower():
        settled = settled[:-1]
    return f"{settled} {tail}"
