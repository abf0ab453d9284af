"""eSpeak NG through the C library bundled by ``espeakng-loader``, called with ctypes.

Robotic but intelligible in ~130 languages, and very fast (a sentence in a few ms). The library
keeps global state, so the process runs one synthesis at a time: every call holds ``_LOCK``.
Synthesis is synchronous and hands ~60 ms blocks to a callback whose return value stops it, so
cancelling takes effect within one block. ctypes releases the GIL during the C call, so the event
loop keeps running while eSpeak works.
"""

from __future__ import annotations

import ctypes
import importlib.util
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from assistant.engines.base import PCM, EngineError, EngineUnavailable
from assistant.engines.local.backends import Emit

PACKAGE = "espeakng-loader==0.2.4"

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_INITIALIZE_DONT_EXIT = 0x8000  # report missing data instead of exiting the process
_BLOCK_MS = 60
_PARAM_VOLUME = 2
#: Percent of eSpeak's default amplitude: at 100 a few peaks clip.
_VOLUME = 85

_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class EspeakVoice:
    key: str  # the voice file's name, what espeak_SetVoiceByName takes ("fr", "en-US", ...)
    name: str  # "French (France)"
    languages: tuple[str, ...]  # as eSpeak lists them, most specific first ("fr-fr", "fr")
    priorities: tuple[int, ...]  # per language: lower means a better fit for that language


class _VoiceStruct(ctypes.Structure):
    _fields_ = (
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),  # (priority byte, NUL-terminated code)*, then a 0 byte
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    )


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class _Library:
    """The initialized library. Only touched while holding ``_LOCK``."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError:
            raise EngineUnavailable(
                f"eSpeak NG is not installed: pip install {PACKAGE}", engine="local"
            ) from None
        self.data_dir = Path(espeakng_loader.get_data_path())
        try:
            lib = ctypes.CDLL(espeakng_loader.get_library_path())
        except OSError as exc:
            raise EngineUnavailable(
                f"eSpeak NG could not be loaded ({exc}); reinstall it: pip install {PACKAGE}",
                engine="local",
            ) from None
        lib.espeak_Initialize.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int)
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = (_CALLBACK,)
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = (ctypes.c_char_p,)
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int)
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_ListVoices.argtypes = (ctypes.c_void_p,)
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_VoiceStruct))
        lib.espeak_Synth.argtypes = (
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        )
        lib.espeak_Synth.restype = ctypes.c_int
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, _BLOCK_MS, str(self.data_dir).encode(), _INITIALIZE_DONT_EXIT
        )
        if rate <= 0:
            raise EngineUnavailable(
                f"eSpeak NG found no data in {self.data_dir}; reinstall it: pip install {PACKAGE}",
                engine="local",
            )
        self.lib = lib
        self.sample_rate = int(rate)
        # Where the running synthesis' audio goes; returns True to stop. One at a time (_LOCK).
        self.sink: Callable[[PCM], bool] | None = None
        self.sink_error: BaseException | None = None
        self._callback = _CALLBACK(self._on_audio)  # kept referenced: C holds the pointer
        lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav: ctypes._Pointer[ctypes.c_short], count: int, _events: int) -> int:
        sink = self.sink
        if sink is None:
            return 1
        if not wav or count <= 0:
            return 0
        try:
            return 1 if sink(np.ctypeslib.as_array(wav, shape=(count,)).copy()) else 0
        except BaseException as exc:  # an exception cannot cross the C callback: keep it for later
            self.sink_error = exc
            return 1

    def voices(self) -> list[EspeakVoice]:
        found: list[EspeakVoice] = []
        table = self.lib.espeak_ListVoices(None)
        i = 0
        while table[i]:
            raw = table[i].contents
            i += 1
            identifier = (raw.identifier or b"").decode()
            languages = _languages(raw.languages)
            codes = [code for _, code in languages]
            if not identifier or not codes or not self._has_dictionary(identifier, codes):
                continue
            key = identifier.rsplit("/", 1)[-1]
            priorities = tuple(priority for priority, _ in languages)
            name = (raw.name or b"").decode().strip()
            found.append(EspeakVoice(key, name, tuple(codes), priorities))
        return found

    def _has_dictionary(self, identifier: str, languages: list[str]) -> bool:
        """A few listed voices have no dictionary in the bundled data; they cannot speak."""
        name = languages[0].split("-")[0]
        try:
            for line in (self.data_dir / "lang" / identifier).read_text("utf-8").splitlines():
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "dictionary":
                    name = parts[1]
        except OSError:
            return False
        return (self.data_dir / f"{name}_dict").is_file()


def _languages(address: int | None) -> list[tuple[int, str]]:
    """Decode eSpeak's packed (priority, code) list."""
    codes: list[tuple[int, str]] = []
    if not address:
        return codes
    while (priority := ctypes.c_ubyte.from_address(address).value) != 0:
        code = ctypes.string_at(address + 1)
        codes.append((priority, code.decode()))
        address += len(code) + 2  # priority byte + code + NUL
    return codes


_library: _Library | None = None
_voices: list[EspeakVoice] | None = None


def _load_locked() -> _Library:
    global _library
    if _library is None:
        _library = _Library()
    return _library


def available() -> bool:
    """True when the bundled library is installed (it is loaded only when first used)."""
    return importlib.util.find_spec("espeakng_loader") is not None


def list_espeak_voices() -> list[EspeakVoice]:
    """Every eSpeak NG voice that can speak here, in the library's order (cached)."""
    global _voices
    with _LOCK:
        if _voices is None:
            _voices = _load_locked().voices()
        return list(_voices)


class EspeakBackend:
    """Speaks with eSpeak NG; ``key`` is an ``EspeakVoice.key``."""

    engine = "espeak"

    def is_loaded(self, key: str) -> bool:
        return _library is not None

    def load(self, key: str) -> None:
        with _LOCK:
            _load_locked()

    def sample_rate(self, key: str) -> int:
        with _LOCK:
            return _load_locked().sample_rate

    def synthesize(self, key: str, text: str, emit: Emit, stop: threading.Event) -> None:
        """Stream ``text`` as ~60 ms blocks into ``emit``; return early once ``stop`` is set."""
        data = text.encode("utf-8", "replace")
        with _LOCK:
            lib = _load_locked()
            if lib.lib.espeak_SetVoiceByName(key.encode()) != 0:
                raise EngineError(
                    f"eSpeak NG has no voice {key!r}.", engine="local", retryable=False
                )
            lib.lib.espeak_SetParameter(_PARAM_VOLUME, _VOLUME, 0)

            def sink(pcm: PCM) -> bool:
                if stop.is_set():
                    return True
                emit(pcm, None)
                return stop.is_set()

            lib.sink, lib.sink_error = sink, None
            try:
                status = lib.lib.espeak_Synth(
                    data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
                )
            finally:
                lib.sink = None
            if lib.sink_error is not None:
                raise lib.sink_error
            if status != 0 and not stop.is_set():
                raise EngineError(f"eSpeak NG failed (status {status}).", engine="local")

    def interrupt(self, stop: threading.Event) -> None:
        """Nothing to do: the audio callback checks ``stop`` every block."""
