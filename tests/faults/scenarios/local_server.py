"""The local language model's server (llama-server, here a stand-in that speaks its protocol)
is killed in the middle of a reply: the user is told, it restarts by itself, and the next turn
is answered. Wall-clock time (a real child process)."""

from __future__ import annotations

import os
import signal
import stat
import sys
from pathlib import Path
from typing import Any

from assistant.clock import Clock
from assistant.engines.local import llm as local_llm
from assistant.engines.local.llama_server import BINARY_ENV
from assistant.engines.local.llm import LocalLLM
from assistant.events import AssistantText, Source
from tests.faults.matrix import Context, Observed, Scenario
from tests.faults.rig import fake_engines

ROOT = Path(__file__).resolve().parents[3]


def stand_in_binary(directory: Path) -> Path:
    """An executable that runs the stand-in (llama-server's environment has no PYTHONPATH)."""
    binary = directory / "llama-server"
    binary.write_text(
        f"#!{sys.executable}\n"
        "import runpy, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        'runpy.run_module("tests.faults.llama_stand_in", run_name="__main__")\n'
    )
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    return binary


def stand_in_llm(ctx: Context) -> LocalLLM:
    """The offline language model on the stand-in server (no model file is read)."""
    ctx.env(BINARY_ENV, str(stand_in_binary(ctx.directory)))
    model = ctx.directory / "model.gguf"
    model.write_bytes(b"GGUF")
    ctx.patch(local_llm, "ensure_model", lambda _name, _progress=None: model)
    return LocalLLM(threads=1)


async def killed_mid_reply(ctx: Context) -> Observed | None:
    llms: list[LocalLLM] = []

    def engines(clock: Clock) -> tuple[Any, Any, Any]:
        stt, _llm, tts = fake_engines(clock)
        llms.append(stand_in_llm(ctx))
        return stt, llms[-1], tts

    rig = await ctx.rig(engines=engines, virtual=False)
    await rig.turn("type")
    server = llms[-1].server
    assert server is not None and server.pid is not None
    pid = server.pid
    before = len(rig.of(AssistantText))
    rig.fault()
    assert rig.send_text("Count slowly to ten.")
    await rig.until(lambda: len(rig.of(AssistantText)) > before, within=10.0)
    os.kill(pid, signal.SIGKILL)
    await rig.until(lambda: any("running again" in line for line in rig.lines()), within=15.0)
    await rig.until(lambda: rig.app.state.value == "listening", within=10.0)
    await rig.turn("type")
    return None


SCENARIOS = (
    Scenario(
        "llama-server killed mid-reply",
        "local server",
        "the local model's server gets SIGKILL while it streams a reply",
        r"notice \[llm\] The local language model stopped unexpectedly; restarting it\.",
        Source.LLM,
        3.0,
        15.0,
        3,
        killed_mid_reply,
        virtual=False,
    ),
)
