"""`parley talk` end to end on a real recording with every engine local, and `parley voices`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from assistant.audio.wav import read_wav
from assistant.bench.textnorm import normalize
from tests.cli_runs import ROOT, parley, talk

RECORDING = ROOT / "tests" / "data" / "speech" / "cmu_go_forward.wav"
#: Models from the cache only: a test never downloads one.
OFFLINE = {"HF_HUB_OFFLINE": "1"}


def _parley(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return parley(*args, env=OFFLINE, timeout=timeout)


def _local_llm_available() -> bool:
    from assistant.engines.local.llama_server import find_binary

    try:
        find_binary()
    except Exception:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(
    not _local_llm_available(), reason="llama-server is not built (scripts/build_llama_server.sh)"
)
def test_talk_all_local_on_a_real_recording(tmp_path: Path) -> None:
    engines = ("--stt", "local", "--llm", "local", "--tts", "local")
    result, data = talk(tmp_path, *engines, env=OFFLINE, source=RECORDING, timeout=300)
    assert result.returncode == 0, result.stderr
    (turn,) = data["turns"]
    assert normalize(turn["user_text"]) == "go forward ten meters"
    # The model samples its words (any answer will do), but it answers in words: a routing
    # decision or other JSON is never what is said.
    answer = turn["assistant_text"]
    assert normalize(answer) and not {"{", "}"} & set(answer), answer
    assert turn["voice_to_voice_ms"] > 0
    # The answer is real speech: the local recognizer hears the words that were written.
    from faster_whisper import WhisperModel

    from assistant.engines.local.whisper_models import model_dir

    pcm, rate = read_wav(tmp_path / "out.wav")
    # As long as the answer: a sampled answer may be one word ("Okay.", about half a second).
    said_words = normalize(answer).split()
    assert len(pcm) / rate > 0.15 * len(said_words), (len(pcm) / rate, answer)
    from assistant.audio.wav import resample

    audio = resample(pcm, rate, 16_000).astype("float32") / 32768.0
    model = WhisperModel(str(model_dir("tiny.en")), device="cpu", compute_type="int8")
    segments, _ = model.transcribe(audio, language="en", beam_size=1)
    heard = set(normalize(" ".join(s.text for s in segments)).split())
    said = set(normalize(turn["assistant_text"]).split())
    assert len(heard & said) >= min(len(said), max(2, len(said) // 3)), (heard, said)


def test_voices_lists_the_offline_catalog() -> None:
    result = _parley("voices", "--language", "es", timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].split()[0] == "pico:es-ES"
    assert any(line.startswith("espeak:es") for line in lines)
    missing = _parley("voices", "--language", "xx", timeout=60)
    assert missing.returncode == 1 and "no offline voice" in missing.stderr
