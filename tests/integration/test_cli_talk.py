"""`parley talk` end to end with the scripted engines, as a user runs it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.cli_runs import FAKE_ENGINES, SAMPLE, parley, talk


def test_talk_with_fake_engines_writes_audio_and_timeline(tmp_path: Path) -> None:
    result, data = talk(tmp_path, *FAKE_ENGINES, env={}, pace="fast")
    assert result.returncode == 0, result.stderr
    assert "you: What is a good name for a cat?" in result.stdout
    assert "parley: You asked:" in result.stdout
    audio, rate = sf.read(tmp_path / "out.wav", dtype="int16")
    assert rate == 24_000 and len(audio) > rate and np.abs(audio).max() > 3000
    (turn,) = data["turns"]
    assert set(turn) >= {
        "user_text",
        "assistant_text",
        "interrupted",
        "marks_ms",
        "voice_to_voice_ms",
    }
    assert turn["marks_ms"]["speech_end"] == 0
    assert turn["voice_to_voice_ms"] == turn["marks_ms"]["playback_start"] > 0


def test_talk_vad_mode_finds_the_turn_in_the_file(tmp_path: Path) -> None:
    timeline = tmp_path / "timeline.json"
    result = parley(
        "talk",
        "--input",
        str(SAMPLE),
        "--timeline",
        str(timeline),
        "--turns",
        "vad",
        *FAKE_ENGINES,
        "--pace",
        "realtime",
    )
    assert result.returncode == 0, result.stderr
    (turn,) = json.loads(timeline.read_text())["turns"]
    # The sample has 0.3 s of silence, then about 2.5 s of speech.
    assert -3200 < turn["marks_ms"]["speech_start"] < -1500


def test_talk_fails_with_one_line_reasons(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    cases = [
        (["--input", str(corrupt)], "corrupt.wav"),
        (["--input", str(tmp_path / "missing.wav")], "no such file"),
        (["--input", str(SAMPLE), "--stt", "martian"], "unknown speech-to-text engine 'martian'"),
    ]
    for args, expected in cases:
        result = parley("talk", *args, "--llm", "fake", "--tts", "fake", "--pace", "fast")
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("parley: error:") and expected in lines[0]


def test_talk_echo_options_fail_with_one_line_reasons() -> None:
    cases = [
        (["--echo", "loud"], "--echo takes DELAY_MS[:GAIN_DB]"),
        (["--echo", "120", "--pace", "fast"], "--echo needs --pace realtime"),
    ]
    for args, expected in cases:
        result = parley("talk", "--input", str(SAMPLE), "--llm", "fake", "--tts", "fake", *args)
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], result.stderr


@pytest.mark.slow
def test_talk_in_a_room_with_echo_cancellation_answers_once_without_hearing_itself(
    tmp_path: Path,
) -> None:
    """The reply comes back into the microphone 120 ms later at -6 dB, for its whole length."""
    out, timeline = tmp_path / "out.wav", tmp_path / "timeline.json"
    result = parley(
        "talk", "--input", str(SAMPLE), "--output", str(out), "--timeline", str(timeline),
        "--stt", "local", "--llm", "fake", "--tts", "local", "--turns", "vad",
        "--echo", "120:-6", "--aec", "on",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    turns = json.loads(timeline.read_text())["turns"]
    assert len(turns) == 1, turns  # no phantom turn from its own voice
    assert not turns[0]["interrupted"]
    # The room plays in real time, so what the recognizer gets differs a little from run to run
    # ("mounted" for "mountain" in some): all but one of the question's words must be heard.
    question = {"what", "is", "the", "tallest", "mountain", "in", "world"}
    heard = set(re.findall(r"[a-z]+", turns[0]["user_text"].lower()))
    assert len(heard & question) >= len(question) - 1, turns[0]["user_text"]
    played, rate = sf.read(out, dtype="int16")
    assert rate == 16_000 and len(played) / rate > 3.0  # the whole answer was played
