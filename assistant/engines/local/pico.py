"""SVOX Pico (en-GB, en-US, de-DE, es-ES, fr-FR, it-IT) from the ``py-nanotts`` wheel.

The wheel's ``speak()`` reloads the voice on every call and holds the GIL for the whole
synthesis (40-160 ms a sentence), which would stall the event loop. Its native module also
exports the plain Pico C API, so this module calls that with ctypes instead: each voice is loaded
once, ctypes releases the GIL inside every call, and audio comes out in small steps that let a
cancel take effect within a few milliseconds.
"""

from __future__ import annotations

import ctypes
import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from assistant.engines.base import EngineError, EngineUnavailable
from assistant.engines.local.backends import Emit, LoadsVoices

PACKAGE = "py-nanotts==0.1.1"
SAMPLE_RATE = 16_000
#: Percent of Pico's default level: at 100 it clips on loud vowels, and Spanish still does at 60.
VOLUME = 50


@dataclass(frozen=True, slots=True)
class PicoVoice:
    key: str  # Pico's language name: "de-DE"
    name: str
    text_analysis: str  # lingware file names in the package's lang/ folder
    signal_generation: str


VOICES: tuple[PicoVoice, ...] = (
    PicoVoice("en-GB", "Pico British English", "en-GB_ta.bin", "en-GB_kh0_sg.bin"),
    PicoVoice("de-DE", "Pico German", "de-DE_ta.bin", "de-DE_gl0_sg.bin"),
    PicoVoice("fr-FR", "Pico French", "fr-FR_ta.bin", "fr-FR_nk0_sg.bin"),
    PicoVoice("es-ES", "Pico Spanish", "es-ES_ta.bin", "es-ES_zl0_sg.bin"),
    PicoVoice("it-IT", "Pico Italian", "it-IT_ta.bin", "it-IT_cm0_sg.bin"),
    PicoVoice("en-US", "Pico American English", "en-US_ta.bin", "en-US_lh0_sg.bin"),
)

_MEMORY = 2_500_000  # working memory of one Pico system; one voice fits, two do not
_OK = 0
_STEP_BUSY = 201
_STEP_IDLE = 200
_OUT_BYTES = 4096
_BLOCK = SAMPLE_RATE // 20  # hand audio on in >= 50 ms blocks
_QUIET = 300  # |sample| below this counts as silence when trimming
_TAIL_KEEP = SAMPLE_RATE // 5  # Pico ends with ~0.7 s of silence; keep 0.2 s between pieces
_MAX_PUT = 32_000  # pico_putTextUtf8 takes an int16 length


def available() -> bool:
    return importlib.util.find_spec("py_nanotts") is not None


def _package_dir() -> Path:
    spec = importlib.util.find_spec("py_nanotts")
    if spec is None or not spec.submodule_search_locations:
        raise EngineUnavailable(
            f"SVOX Pico is not installed: pip install {PACKAGE}", engine="local"
        )
    return Path(next(iter(spec.submodule_search_locations)))


_api: ctypes.CDLL | None = None
_api_lock = threading.Lock()


def _library() -> ctypes.CDLL:
    global _api
    with _api_lock:
        if _api is None:
            _api = _bind()
        return _api


def _bind() -> ctypes.CDLL:
    binaries = sorted(_package_dir().glob("_nanotts*.so")) + sorted(
        _package_dir().glob("_nanotts*.pyd")
    )
    if not binaries:
        raise EngineUnavailable(
            f"SVOX Pico's library is missing: pip install {PACKAGE}", engine="local"
        )
    try:
        lib = ctypes.CDLL(str(binaries[0]))
    except OSError as exc:
        raise EngineUnavailable(f"SVOX Pico could not be loaded ({exc}).", engine="local") from None
    vp, i16, cp = ctypes.c_void_p, ctypes.c_int16, ctypes.c_char_p
    signatures: dict[str, tuple[object, ...]] = {
        "pico_initialize": (vp, ctypes.c_uint32, ctypes.POINTER(vp)),
        "pico_terminate": (ctypes.POINTER(vp),),
        "pico_loadResource": (vp, cp, ctypes.POINTER(vp)),
        "pico_getResourceName": (vp, vp, cp),
        "pico_createVoiceDefinition": (vp, cp),
        "pico_addResourceToVoiceDefinition": (vp, cp, cp),
        "pico_newEngine": (vp, cp, ctypes.POINTER(vp)),
        "pico_putTextUtf8": (vp, cp, i16, ctypes.POINTER(i16)),
        "pico_getData": (vp, vp, i16, ctypes.POINTER(i16), ctypes.POINTER(i16)),
        "pico_resetEngine": (vp, ctypes.c_int32),
    }
    for name, argtypes in signatures.items():
        function = getattr(lib, name)
        function.argtypes = argtypes
        function.restype = ctypes.c_int
    return lib


class _Engine:
    """One loaded Pico voice: its own system, memory and engine. Not thread-safe (see ``lock``)."""

    def __init__(self, voice: PicoVoice) -> None:
        self.lock = threading.Lock()
        self._lib = lib = _library()
        lang = _package_dir() / "lang"
        self._memory = ctypes.create_string_buffer(_MEMORY)
        self._system = ctypes.c_void_p()
        self._check(lib.pico_initialize(self._memory, _MEMORY, ctypes.byref(self._system)), "start")
        names: list[bytes] = []
        for file in (voice.text_analysis, voice.signal_generation):
            resource = ctypes.c_void_p()
            path = str(lang / file).encode()
            self._check(lib.pico_loadResource(self._system, path, ctypes.byref(resource)), file)
            buffer = ctypes.create_string_buffer(200)
            self._check(lib.pico_getResourceName(self._system, resource, buffer), file)
            names.append(buffer.value)
        label = voice.key.encode()
        self._check(lib.pico_createVoiceDefinition(self._system, label), "voice")
        for name in names:
            self._check(lib.pico_addResourceToVoiceDefinition(self._system, label, name), "voice")
        self._engine = ctypes.c_void_p()
        self._check(lib.pico_newEngine(self._system, label, ctypes.byref(self._engine)), "engine")

    @staticmethod
    def _check(status: int, what: str) -> None:
        if status != _OK:
            raise EngineUnavailable(
                f"SVOX Pico could not load {what} (status {status}); "
                f"reinstall it: pip install --force-reinstall {PACKAGE}",
                engine="local",
            )

    def speak(self, text: str, emit: Emit, stop: threading.Event) -> None:
        lib, engine = self._lib, self._engine
        data = f'<volume level="{VOLUME}">{_plain(text)}</volume>'.encode() + b"\0"
        out = ctypes.create_string_buffer(_OUT_BYTES)
        sent, got, kind = ctypes.c_int16(), ctypes.c_int16(), ctypes.c_int16()
        audio = _Trimmer(emit)
        offset = 0
        while offset < len(data):
            status = lib.pico_putTextUtf8(
                engine,
                data[offset : offset + _MAX_PUT],
                min(len(data) - offset, _MAX_PUT),
                ctypes.byref(sent),
            )
            if status != _OK or sent.value <= 0:
                raise EngineError(f"SVOX Pico rejected the text (status {status}).", engine="local")
            offset += sent.value
            status = _STEP_BUSY
            while status == _STEP_BUSY:
                if stop.is_set():
                    lib.pico_resetEngine(engine, 0)  # drop the rest of the text
                    return
                status = lib.pico_getData(
                    engine, out, _OUT_BYTES, ctypes.byref(got), ctypes.byref(kind)
                )
                if status not in (_STEP_BUSY, _STEP_IDLE):
                    lib.pico_resetEngine(engine, 0)
                    raise EngineError(f"SVOX Pico failed (status {status}).", engine="local")
                if got.value > 0:
                    audio.add(out.raw[: got.value])
        audio.finish()


class _Trimmer:
    """Collects Pico's tiny output steps into blocks and holds back trailing silence.

    Quiet samples are kept until louder audio follows; at the end only ``_TAIL_KEEP`` of them
    are sent, so pieces spoken one after another are not separated by Pico's long final pause.
    """

    def __init__(self, emit: Emit) -> None:
        self._emit = emit
        self._buffer = bytearray()

    def add(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= 2 * _BLOCK:
            pcm = np.frombuffer(bytes(self._buffer), np.int16)
            loud = np.flatnonzero(np.abs(pcm) > _QUIET)
            cut = int(loud[-1]) + 1 if len(loud) else 0
            if len(pcm) - cut > 2 * SAMPLE_RATE:  # a long pause, not the end: let it through
                cut = len(pcm)
            if cut >= _BLOCK:
                self._emit(pcm[:cut].copy(), None)
                del self._buffer[: 2 * cut]

    def finish(self) -> None:
        pcm = np.frombuffer(bytes(self._buffer), np.int16)
        loud = np.flatnonzero(np.abs(pcm) > _QUIET)
        end = min(len(pcm), (int(loud[-1]) + 1 if len(loud) else 0) + _TAIL_KEEP)
        if end:
            self._emit(pcm[:end].copy(), None)
        self._buffer.clear()


def _plain(text: str) -> str:
    """Pico reads ``<...>`` as markup: keep user text from being taken for tags."""
    return text.replace("<", " ").replace(">", " ")


class PicoBackend(LoadsVoices[_Engine]):
    """Speaks with SVOX Pico; ``key`` is a ``PicoVoice.key`` such as ``"de-DE"``."""

    engine = "pico"

    def sample_rate(self, key: str) -> int:
        return SAMPLE_RATE

    def _open(self, key: str) -> _Engine:
        voice = next((v for v in VOICES if v.key == key), None)
        if voice is None:
            known = ", ".join(v.key for v in VOICES)
            raise EngineError(
                f"SVOX Pico has no voice {key!r} (it has {known}).",
                engine="local",
                retryable=False,
            )
        return _Engine(voice)

    def synthesize(self, key: str, text: str, emit: Emit, stop: threading.Event) -> None:
        """Stream ``text`` in >= 50 ms blocks into ``emit``; return early once ``stop`` is set."""
        engine = self._voice(key)
        with engine.lock:
            engine.speak(text, emit, stop)

    def interrupt(self, stop: threading.Event) -> None:
        """Nothing to do: the synthesis loop checks ``stop`` between steps of a few samples."""
