"""The desktop app (its real window, offscreen) holding a conversation by itself, to be killed.

``python -m tests.faults.app_child HISTORY_DIR`` opens the window on an ``Assistant`` whose
language model is the offline one on a stand-in llama-server (``PARLEY_LLAMA_SERVER``), then
sends typed messages one after the other for as long as it lives. It prints ``server PID`` once
the model server runs and ``finished N`` each time a turn is on disk, for the process that
kills it.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from assistant.app import Assistant, EngineSet
from assistant.audio.player import VirtualPlayer
from assistant.config import Settings
from assistant.engines.fake import FakeSTT, FakeTTS
from assistant.engines.local import llm as local_llm
from assistant.engines.local.llm import LocalLLM
from assistant.events import AppEvent, Ready, TurnFinished
from ui.app import run_app


def make_assistant(history: Path) -> Assistant:
    model = history.parent / "model.gguf"
    model.write_bytes(b"GGUF")
    local_llm.ensure_model = lambda _name, _progress=None: model  # type: ignore[assignment]
    llm = LocalLLM(threads=1)
    engines = EngineSet(
        FakeSTT(), llm, FakeTTS(first_audio_delay=0.01, chars_per_second=80, realtime_factor=0.0)
    )
    assistant = Assistant(
        Settings(stt="fake", llm="local", tts="fake"),
        history_dir=history,
        engine_factory=lambda _s: engines,
        player_factory=lambda _s: VirtualPlayer(pace="realtime"),
        source_factory=lambda _s: None,
        persist=False,
    )
    tasks: set[asyncio.Task[Any]] = set()
    finished = asyncio.Event()

    async def keep_talking() -> None:
        server = llm.server
        print(f"server {server.pid if server is not None else 0}", flush=True)
        n = 0
        while True:
            finished.clear()
            n += 1
            if assistant.submit_text(f"Question number {n}: count slowly to ten."):
                await finished.wait()
            await asyncio.sleep(0.05)

    def follow(event: AppEvent) -> None:
        if isinstance(event, Ready) and event.ready and not tasks:
            tasks.add(asyncio.ensure_future(keep_talking()))
        elif isinstance(event, TurnFinished):
            print(f"finished {event.turn.turn_id}", flush=True)
            finished.set()

    assistant.events.subscribe(follow)
    return assistant


def main() -> int:
    history = Path(sys.argv[1])
    return run_app([sys.argv[0]], assistant_factory=lambda: make_assistant(history))


if __name__ == "__main__":
    sys.exit(main())
