"""``kill -9`` in the middle of a turn, again and again: ``parley talk``, and the desktop app.

Each run starts the program on the same conversation folder, with the offline language model on
a stand-in llama-server, waits until that server runs, lets the conversation go on for a while,
and kills the program with SIGKILL (no cleanup of any kind runs). Then:

- the conversation folder loads, as the app loads it at its start;
- every turn the program reported finished before it died is on disk, and at most one more
  (the turn in flight may have been written without being reported) — nothing else was lost;
- the model server the program started dies with it (no orphan).

``parley talk`` holds the talk key over its input file (one turn per run), and is killed a random
moment after its model server started; the app sends typed messages one after the other
(``tests.faults.app_child``), and is killed a random moment after its first turn finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil

from assistant.audio.wav import write_wav
from assistant.history import HistoryStore
from tests.faults.scenarios.local_server import ROOT, stand_in_binary

#: How long a killed program's model server may take to die (the kernel sends it SIGKILL).
ORPHAN_GRACE = 5.0


@dataclass
class KillReport:
    target: str
    kills: int = 0
    reported: int = 0
    on_disk: int = 0
    orphans: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.orphans


def turns_on_disk(history: Path) -> int:
    """Turns in every conversation of ``history``, loaded as the app loads them (raises if a
    file cannot be loaded)."""
    if not history.is_dir():
        return 0
    store = HistoryStore(history)
    return sum(len(store.load(path)[0].turns) for path in store.conversations())


def _environment(directory: Path) -> dict[str, str]:
    env = dict(os.environ)
    for name in [n for n in env if n.endswith("_API_KEY")]:
        del env[name]
    env.update(
        PYTHONPATH=str(ROOT),
        PARLEY_CONFIG_DIR=str(directory / "config"),
        PARLEY_DATA_DIR=str(directory / "data"),
        PARLEY_LLAMA_SERVER=str(stand_in_binary(directory)),
        QT_QPA_PLATFORM="offscreen",
        HF_HUB_OFFLINE="1",
    )
    return env


def _command(target: str, directory: Path, history: Path) -> list[str]:
    if target == "app":
        return [sys.executable, "-m", "tests.faults.app_child", str(history)]
    wav = directory / "question.wav"
    if not wav.exists():
        rng = np.random.default_rng(11)
        write_wav(str(wav), (rng.standard_normal(24_000) * 3000).astype(np.int16), 16_000)
    return [
        sys.executable, "-m", "assistant.cli", "talk", "--input", str(wav),
        "--stt", "fake", "--llm", "local", "--tts", "fake", "--turns", "ptt",
        "--pace", "realtime", "--history", str(history),
    ]  # fmt: skip


def _servers(pid: int) -> list[int]:
    """The llama-servers among ``pid``'s descendants."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        with contextlib.suppress(psutil.Error):
            if any("llama-server" in part for part in child.cmdline()):
                found.append(child.pid)
    return found


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def _one(
    target: str, directory: Path, history: Path, delay: float, report: KillReport
) -> None:
    try:
        before = turns_on_disk(history)
    except Exception as exc:
        report.problems.append(f"the conversation did not load: {exc!r}")
        return
    proc = await asyncio.create_subprocess_exec(
        *_command(target, directory, history),
        cwd=str(ROOT),
        env=_environment(directory),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    lines: list[str] = []

    async def read() -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            lines.append(line.decode(errors="replace").strip())

    reader = asyncio.create_task(read())
    servers: list[int] = []
    try:
        for _ in range(1200):  # until the model server runs (or the program ended)
            servers = _servers(proc.pid)
            if servers or proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        if target == "app":  # the conversation is under way: a first turn was finished
            for _ in range(1200):
                if proc.returncode is not None or any(x.startswith("finished ") for x in lines):
                    break
                await asyncio.sleep(0.05)
        await asyncio.sleep(delay)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
        await asyncio.wait_for(reader, 10)
    report.kills += 1
    for server in servers:
        for _ in range(int(ORPHAN_GRACE / 0.05)):
            if not _alive(server):
                break
            await asyncio.sleep(0.05)
        else:
            report.orphans.append(server)
            with contextlib.suppress(ProcessLookupError):
                os.kill(server, signal.SIGKILL)
    said = sum(line.startswith("finished ") or line.startswith("parley: ") for line in lines)
    try:
        after = turns_on_disk(history)
    except Exception as exc:
        report.problems.append(f"after kill {report.kills} the conversation did not load: {exc!r}")
        return
    report.reported += said
    report.on_disk = after
    if not said <= after - before <= said + 1:
        report.problems.append(
            f"kill {report.kills}: {said} turns reported finished, {after - before} on disk"
        )


async def kill_repeatedly(
    target: str, times: int, directory: Path, *, seed: int = 0, longest: float = 4.0
) -> KillReport:
    """Start ``target`` ("talk" or "app") and SIGKILL it ``times`` times, each after a random
    moment of its conversation (up to ``longest`` seconds). ``directory`` must exist."""
    history = directory / "conversations"
    rng = random.Random(seed)
    report = KillReport(target)
    for _ in range(times):
        await _one(target, directory, history, rng.uniform(0.2, longest), report)
    return report
