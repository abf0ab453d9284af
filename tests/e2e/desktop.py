"""A virtual X display (Xvfb) and what a person does with it: find a window, take a picture."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time
from pathlib import Path

from tests.e2e.programs import Program

TOOLS = ("Xvfb", "xdotool", "import")


class DisplayUnavailable(RuntimeError):
    """Xvfb could not be started here."""


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


class VirtualDisplay(Program):
    """An Xvfb server whose number Xvfb picks itself (``-displayfd``); a context manager."""

    def __init__(self, size: str = "1280x820x24") -> None:
        self.size = size
        self.name = ""

    def start(self, timeout: float = 10.0) -> None:
        read_fd, write_fd = os.pipe()
        self._process = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", self.size, "-nolisten", "tcp"],
            pass_fds=(write_fd,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(write_fd)
        data = b""
        # Xvfb writes its number once it accepts connections, or exits on failure.
        end = time.monotonic() + timeout
        try:
            while not data.endswith(b"\n") and time.monotonic() < end:
                ready, _, _ = select.select([read_fd], [], [], max(0.0, end - time.monotonic()))
                chunk = os.read(read_fd, 64) if ready else b""
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(read_fd)
        number = data.decode().strip()
        if not number:
            self.stop()
            raise DisplayUnavailable("Xvfb did not start")
        self.name = f":{number}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "DISPLAY": self.name}

    def xdotool(self, *args: str, timeout: float = 10.0) -> str:
        done = subprocess.run(
            ["xdotool", *args], env=self.env(), capture_output=True, text=True, timeout=timeout
        )
        return done.stdout.strip()

    def find_window(self, title: str, pid: int | None = None, timeout: float = 20.0) -> str:
        """The id of a visible window whose title contains ``title`` (of process ``pid``)."""
        owner = ["--pid", str(pid)] if pid is not None else []
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            found = self.xdotool("search", "--onlyvisible", *owner, "--name", title).split()
            if found:
                return found[-1]
            time.sleep(0.2)
        raise AssertionError(f"no window titled {title!r} appeared within {timeout:.0f} s")

    def screenshot(self, window: str, path: Path) -> Path:
        """A PNG of ``window`` as it is drawn on the display (ImageMagick's ``import``)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["import", "-window", window, str(path)],
            env=self.env(),
            check=True,
            timeout=20,
            capture_output=True,
        )
        return path
