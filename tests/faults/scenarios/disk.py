"""The disk fails: full (a file-size limit in a child process), a data folder that cannot be
written, a conversation file damaged by an earlier crash, and an fsync that takes its time."""

from __future__ import annotations

import asyncio
import errno
import os
import sys
from pathlib import Path
from typing import Any

from assistant import durable
from assistant.bench.loopmon import LoopMonitor
from assistant.events import Source
from assistant.history import HistoryStore
from tests.faults.matrix import Context, Observed, Scenario
from tests.faults.scenarios.common import fault_then_recover, observed_without_stalls

ROOT = Path(__file__).resolve().parents[3]


async def in_child(name: str, ctx: Context) -> Observed:
    """Run ``tests.faults.child NAME`` and read what it observed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.faults.child",
        name,
        str(ctx.directory),
        cwd=str(ROOT),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    if proc.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"the child exited with {proc.returncode}: {' | '.join(tail)}")
    return Observed.from_json(out.decode().strip().splitlines()[-1])


async def disk_full(ctx: Context) -> Observed:
    return await in_child("disk-full", ctx)


async def unwritable(ctx: Context) -> Observed:
    return await in_child("unwritable", ctx)


async def write_fails_once(ctx: Context) -> Observed | None:
    append = durable.append_lines
    failures = [OSError(errno.ENOSPC, "No space left on device")]

    def failing(path: Path, data: bytes) -> None:
        if failures:
            raise failures.pop()
        append(path, data)

    def arm(_rig: Any) -> None:
        ctx.patch(durable, "append_lines", failing)
        import assistant.history

        ctx.patch(assistant.history, "append_lines", failing)

    await fault_then_recover(ctx, arm=arm, warm=True)
    return None


async def damaged_file(ctx: Context) -> Observed | None:
    """A crash left half a record at the end of the conversation file."""
    store = HistoryStore(ctx.directory / "conversations")
    conversation = store.new()
    from assistant.history import TurnRecord

    conversation.append(TurnRecord(1, "Hello?", "Hello! How can I help?"))
    with conversation.path.open("ab") as f:
        f.write(b'{"type": "turn", "turn_id": 2, "user_text": "Wha')
    await fault_then_recover(ctx, warm=False)
    return None


async def slow_fsync(ctx: Context) -> Observed | None:
    """Every fsync takes 1 s: the conversation must not wait for it (the loop never stalls)."""
    fsync = os.fsync

    def slow(fd: int) -> None:
        import time

        time.sleep(1.0)
        fsync(fd)

    monitor = LoopMonitor(interval=0.01)

    def arm(_rig: Any) -> None:
        ctx.patch(durable.os, "fsync", slow)
        monitor.start()

    rig = await fault_then_recover(ctx, arm=arm, warm=True, virtual=False)
    return await observed_without_stalls(rig, monitor, "a slow fsync")


SAVE_FAILED = r"error \[history\] Could not save the conversation \(.*{}.*\); it stays in memory"

SCENARIOS = (
    Scenario(
        "disk full",
        "disk",
        "the file system takes no more bytes (RLIMIT_FSIZE) after the first turn, then frees up",
        SAVE_FAILED.format("File too large"),
        Source.HISTORY,
        3.0,
        8.0,
        3,
        disk_full,
    ),
    Scenario(
        "data folder not writable",
        "disk",
        "the conversations folder is read-only at start; the user fixes its permissions",
        r"error \[history\] Cannot open the conversation history in .*Permission denied.*kept in "
        r"memory and saved there as soon as the folder can be written",
        Source.HISTORY,
        0.5,
        6.0,
        2,
        unwritable,
    ),
    Scenario(
        "history write fails once",
        "disk",
        "one append fails with ENOSPC; the next one succeeds",
        SAVE_FAILED.format("No space left on device"),
        Source.HISTORY,
        3.0,
        8.0,
        3,
        write_fails_once,
    ),
    Scenario(
        "conversation file damaged",
        "disk",
        "an earlier crash left half a record at the end of the conversation file",
        r"notice \[history\] The conversation file was damaged: 1 unreadable record\(s\) were set "
        r"aside; the original is kept as",
        Source.HISTORY,
        0.5,
        6.0,
        3,
        damaged_file,
    ),
    Scenario(
        "slow fsync",
        "disk",
        "every fsync takes 1 s",
        None,
        Source.HISTORY,
        0.0,
        6.0,
        3,
        slow_fsync,
        virtual=False,
    ),
)
