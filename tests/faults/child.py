"""Fault scenarios that must run in a process of their own: a file-size limit (a full disk, as
the kernel reports it with ``RLIMIT_FSIZE``) and a data directory that cannot be written (for
root too: the process gives up its right to override file permissions).

``python -m tests.faults.child NAME DIRECTORY`` runs the app (``Rig``, virtual time, scripted
engines) through the fault and prints what was observed as JSON on its last line of output.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import resource
import signal
import stat
import sys
from pathlib import Path

from tests.faults.matrix import Observed
from tests.faults.rig import Rig

_LINUX_CAPABILITY_VERSION_3 = 0x20080522
#: CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
_OVERRIDES = (1 << 1) | (1 << 2) | (1 << 3)


def respect_permissions() -> None:
    """Root ignores file permissions; drop the capabilities that let it (effective set only)."""
    if os.geteuid() != 0:
        return

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [
            ("effective", ctypes.c_uint32),
            ("permitted", ctypes.c_uint32),
            ("inheritable", ctypes.c_uint32),
        ]

    libc = ctypes.CDLL(None, use_errno=True)
    header = Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (Data * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    data[0].effective &= ~_OVERRIDES & 0xFFFFFFFF
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


async def disk_full(directory: Path) -> Observed:
    """The file system stops taking bytes after the first turn, then takes them again."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    rig = Rig(directory)
    async with rig:
        await rig.turn("talk")
        size = max(p.stat().st_size for p in rig.history_dir.glob("*.jsonl"))
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 64, hard))
        rig.fault()
        await rig.turn("talk")
        await rig.step(0.5)
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space was freed
        await rig.turn("talk")
    return Observed.of(rig)


async def unwritable(directory: Path) -> Observed:
    """The conversations folder cannot be written when Parley starts; the user fixes it."""
    respect_permissions()
    history = directory / "conversations"
    history.mkdir(parents=True)
    history.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    rig = Rig(directory, history_dir=history)
    rig.fault()
    async with rig:
        await rig.turn("talk")
        await rig.step(0.5)
        history.chmod(0o755)  # the user made the folder writable again
        await rig.turn("talk")
    return Observed.of(rig)


SCENARIOS = {"disk-full": disk_full, "unwritable": unwritable}


def main() -> int:
    name, directory = sys.argv[1], Path(sys.argv[2])
    observed = asyncio.run(SCENARIOS[name](directory))
    print(observed.to_json(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
