"""Programs an end-to-end test starts and owns (a display server, a sound server, a relay), and
the one way they end: asked to terminate, killed if they have not within a grace period."""

from __future__ import annotations

import subprocess
from typing import Any, Self


def end(process: subprocess.Popen[Any], grace: float = 5.0) -> None:
    """Stop ``process`` unless it has already exited: terminate, then kill after ``grace`` s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(grace)


class Program:
    """One child process that ``start`` (the subclass's) launches and ``stop`` ends; as a context
    manager, started on entry and stopped on exit. Stopping twice, or before a start, is fine."""

    _process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            end(process)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
