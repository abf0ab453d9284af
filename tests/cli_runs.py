"""``parley`` run as a user runs it: a child process of this interpreter started from the
checkout, and ``parley talk`` on the sample question writing its answer's audio and its
TIMELINE.json, with no API key of the machine's environment but the ones a test gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
#: "What is a good name for a cat?", spoken.
SAMPLE = ROOT / "resources" / "samples" / "question.wav"
#: The scripted engines: no model and no network.
FAKE_ENGINES = ("--stt", "fake", "--llm", "fake", "--tts", "fake")


def run(
    args: Sequence[str], env: Mapping[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """``parley ARGS`` from the checkout root with exactly ``env``, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "assistant.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=dict(env),
    )


def parley(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``parley ARGS`` with ``env`` over this process's environment."""
    return run(args, {**os.environ, **(env or {})}, timeout)


def talk(
    tmp: Path,
    *options: str,
    env: Mapping[str, str],
    verbose: bool = False,
    source: Path = SAMPLE,
    pace: str = "realtime",
    timeout: float = 180,
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """``parley talk`` on ``source`` at ``pace`` with ``options`` (the engines and more), its
    answer in ``tmp/out.wav`` and its timeline in ``tmp/timeline.json``; of the API keys, only
    those ``env`` sets. Returns the run and the timeline's data (empty if none was written), with
    the answer's loudest sample as ``peak`` when it was written."""
    out, timeline = tmp / "out.wav", tmp / "timeline.json"
    clean = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    args = ["talk", "--input", str(source), "--output", str(out), "--timeline", str(timeline)]
    result = run(
        [*(["-v"] if verbose else []), *args, *options, "--pace", pace], {**clean, **env}, timeout
    )
    data: dict[str, Any] = json.loads(timeline.read_text()) if timeline.exists() else {}
    if out.exists():
        audio, _ = sf.read(out, dtype="int16")
        data["peak"] = int(np.abs(audio).max()) if len(audio) else 0
    return result, data
