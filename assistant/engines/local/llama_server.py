"""Runs llama.cpp's ``llama-server`` as a supervised child process on 127.0.0.1.

The server speaks the OpenAI Chat Completions protocol, so the language model is reached with the
same client as any cloud endpoint. This module only keeps the process alive: it starts it on a
free loopback port, waits until ``/health`` answers 200, restarts it (with backoff, a limited
number of times) if it dies, and makes sure it never outlives Parley: the child runs in its own
process group, gets SIGKILL from the kernel when its parent dies (Linux), and an ``atexit`` hook
kills whatever is left on a normal exit.

Only Parley can use the server. Each launch gets a new random API key, handed over in a file
that only this user can read and that is deleted as soon as the server has read it; requests
without it are refused (only ``/health`` answers anyone). The slot monitor is off, browsers get
no cross-origin access, and the child's environment holds nothing but what it needs to run — no
provider key, no keyring session.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from assistant.engines.base import EngineError, EngineUnavailable
from assistant.engines.local.models import Progress, cache_dir
from assistant.engines.local.shipped import shipped_file

log = logging.getLogger(__name__)

#: The llama-cpp-python release whose vendored llama.cpp scripts/build_llama_server.sh builds.
LLAMA_CPP_VERSION = "0.3.36"
BINARY_ENV = "PARLEY_LLAMA_SERVER"
HOST = "127.0.0.1"

#: ``notice(message, failure)``: something the user should hear about (a crash, a restart);
#: ``failure`` when the server stopped for good (restarting gave up).
Notice = Callable[[str, bool], None]

#: The only variables the child inherits (plus ``LC_*``): enough to run, no secrets.
_CHILD_ENVIRONMENT = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "LD_LIBRARY_PATH")


def child_environment() -> dict[str, str]:
    """The environment llama-server runs with: locale and paths, and nothing else.

    Provider keys (``*_API_KEY``), the keyring's session bus address and llama.cpp's own
    ``LLAMA_*`` settings (which could reopen what the command line closes) stay behind.
    """
    return {
        name: value
        for name, value in os.environ.items()
        if name in _CHILD_ENVIRONMENT or name.startswith("LC_")
    }


_EXE = "llama-server.exe" if sys.platform == "win32" else "llama-server"
_NO_WINDOW = getattr(subprocess, "CREATE_NO_WINDOW", 0)
_LOG_LIMIT = 4 * 1024 * 1024


def default_binary_path() -> Path:
    """Where scripts/build_llama_server.sh puts the binary."""
    return cache_dir() / "llama.cpp" / LLAMA_CPP_VERSION / "bin" / _EXE


def find_binary() -> Path:
    """The llama-server to run: ``$PARLEY_LLAMA_SERVER``, the installed app's own copy, the built
    cache copy, or one on PATH."""
    env = os.environ.get(BINARY_ENV)
    if env:
        path = Path(env).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise EngineUnavailable(
            f"{BINARY_ENV} is set to {path}, which is not an executable file. "
            "Point it at a llama-server binary or unset it.",
            engine="local",
            retryable=False,
        )
    shipped = shipped_file(_EXE)
    if shipped is not None and os.access(shipped, os.X_OK):
        return shipped
    built = default_binary_path()
    if built.is_file() and os.access(built, os.X_OK):
        return built
    on_path = shutil.which(_EXE)
    if on_path:
        return Path(on_path)
    raise EngineUnavailable(
        f"The local language model needs llama-server, which is not built yet (looked in "
        f"{built}). Run scripts/build_llama_server.sh once (about 7 minutes), or set "
        f"{BINARY_ENV} to an existing llama-server.",
        engine="local",
        retryable=False,
    )


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def http_status(host: str, port: int, path: str, wait: float = 1.0) -> int | None:
    """The status code of ``GET path``, or None if nothing answers within ``wait`` seconds."""
    try:
        async with asyncio.timeout(wait):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
                writer.write(request.encode())
                await writer.drain()
                status_line = await reader.readline()
            finally:
                writer.close()
        parts = status_line.split()
        return int(parts[1]) if len(parts) >= 2 else None
    except (OSError, TimeoutError, ValueError):
        return None


# ------------------------------------------------------------------------ never leave orphans

_PR_SET_PDEATHSIG = 1
_libc: ctypes.CDLL | None = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError):
        _libc = ctypes.CDLL(None, use_errno=True)

#: pids of running servers, killed at interpreter exit if still alive.
_live_pids: set[int] = set()


def _child_setup(parent_pid: int) -> Callable[[], None] | None:
    """Runs in the child between fork and exec: die with the parent (Linux)."""
    libc = _libc
    if libc is None:
        return None

    def setup() -> None:
        # The kernel sends SIGKILL when the thread that forked us exits (Parley's loop thread).
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return setup


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if hasattr(os, "killpg"):
            os.killpg(pid, sig)  # the child leads its own process group
        else:
            os.kill(pid, sig)


@atexit.register
def _kill_leftovers() -> None:
    for pid in list(_live_pids):
        _signal_group(pid, signal.SIGKILL)
    _live_pids.clear()


# ---------------------------------------------------------------------------------- supervisor


class LlamaServer:
    """A supervised ``llama-server`` serving one GGUF model on a loopback port."""

    def __init__(
        self,
        model_path: Path,
        *,
        alias: str = "local",
        threads: int = 1,
        threads_batch: int | None = None,
        context: int = 4096,
        binary: Path | None = None,
        start_timeout: float = 120.0,
        max_restarts: int = 3,
        restart_window: float = 300.0,
        extra_args: Sequence[str] = (),
        log_path: Path | None = None,
        slot_dir: Path | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        self.alias = alias
        self.threads = threads
        self.threads_batch = threads_batch or threads
        self.context = context
        self.start_timeout = start_timeout
        self.max_restarts = max_restarts
        self.restart_window = restart_window
        self.extra_args = list(extra_args)
        self.log_path = log_path or cache_dir() / "logs" / "llama-server.log"
        #: Where the server may save and restore slots' prompt caches (None: it may not).
        self.slot_dir = slot_dir
        self.on_notice: list[Notice] = []
        #: Seconds the last successful start took (spawn to /health 200).
        self.last_start_seconds: float | None = None
        self._binary = binary
        self._port: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._settled = asyncio.Event()  # set while running, or once restarting has given up
        self._failed: EngineError | None = None
        self._stopping = False
        self._crashes: list[float] = []
        self._api_key = ""

    # ---------------------------------------------------------------------------- properties

    @property
    def port(self) -> int | None:
        return self._port

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible API root, e.g. ``http://127.0.0.1:PORT/v1``."""
        if self._port is None:
            raise EngineError("The local language model has not been started.", engine="local")
        return f"http://{HOST}:{self._port}/v1"

    @property
    def api_key(self) -> str:
        """The key requests must carry (``Authorization: Bearer``); new at each launch."""
        return self._api_key

    @property
    def binary(self) -> Path:
        """The llama-server executable this server runs (raises ``EngineUnavailable``)."""
        return self._binary or find_binary()

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None and self._settled.is_set() and self._failed is None

    # ------------------------------------------------------------------------------- control

    async def start(self, progress: Progress | None = None) -> None:
        """Start the server and wait until it is ready. Idempotent."""
        async with self._lock:
            if self._proc is not None and self._proc.returncode is None:
                return
            self._stopping = False
            self._failed = None
            self._crashes.clear()
            await self._launch(progress)
            if self._watcher is None or self._watcher.done():
                self._watcher = asyncio.create_task(self._watch(), name="llama-server watcher")

    async def ensure_running(self) -> None:
        """Return once the server is ready: start it, or wait for a restart in progress.

        After the server has crashed too often this keeps raising the reason; an explicit
        ``start()`` tries again.
        """
        if self._failed is not None:
            raise self._failed
        if self._watcher is None or self._watcher.done():
            await self.start()
            return
        try:
            async with asyncio.timeout(self.start_timeout + 30.0):
                await self._settled.wait()
        except TimeoutError:
            raise EngineUnavailable(
                "The local language model is still restarting; try again in a moment.",
                engine="local",
            ) from None
        if self._failed is not None:
            raise self._failed

    async def healthy(self) -> bool:
        """True if the server answers ``/health`` with 200 right now."""
        if self._port is None or self.pid is None:
            return False
        return await http_status(HOST, self._port, "/health") == 200

    async def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s) and wait until it has exited."""
        self._stopping = True
        watcher, self._watcher = self._watcher, None
        if watcher is not None and not watcher.done():
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        async with self._lock:
            proc, self._proc = self._proc, None
            self._settled.clear()
            if proc is not None:
                await _terminate(proc)

    # ----------------------------------------------------------------------------- internals

    def _command(self, binary: Path, port: int, key_file: Path) -> list[str]:
        return [
            str(binary),
            "--model", str(self.model_path),
            "--alias", self.alias,
            "--host", HOST,
            "--port", str(port),
            "--threads", str(self.threads),
            "--threads-batch", str(self.threads_batch),
            "--ctx-size", str(self.context),
            "--parallel", "1",
            # Reuse the cached prompt (system prompt, history) across turns; a cold prompt is
            # the slow part on a CPU.
            "--cache-reuse", "64",
            "--jinja",
            "--no-webui",
            # Locked down: a key on every request, no slot monitor, and no web page elsewhere
            # may read an answer (the only origin allowed is the server's own).
            "--api-key-file", str(key_file),
            "--no-slots",
            "--cors-origins", f"http://{HOST}:{port}",
            "--no-cors-credentials",
            *(["--slot-save-path", str(self.slot_dir)] if self.slot_dir is not None else []),
            *self.extra_args,
        ]  # fmt: skip

    async def _launch(self, progress: Progress | None) -> None:
        """Spawn the process and wait for /health; on failure nothing is left running."""
        binary = self._binary or find_binary()
        if not self.model_path.is_file():
            raise EngineUnavailable(
                f"The model file {self.model_path} does not exist.", engine="local", retryable=False
            )
        report = progress or (lambda _f, _m: None)
        if self.slot_dir is not None:
            try:
                self.slot_dir.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                log.warning("no saved prompts: %s cannot be made (%s)", self.slot_dir, err)
                self.slot_dir = None
        for attempt in range(3):
            # Keep the port across restarts so the API address stays the same.
            port = self._port if self._port is not None and attempt == 0 else free_port()
            self._port = port
            log_file = self._open_log(binary, port)
            key = secrets.token_urlsafe(32)
            try:
                key_file = _write_key_file(key)
            except OSError as err:
                log_file.close()
                raise EngineUnavailable(
                    f"Could not write the local model server's key file: {err.strerror or err}.",
                    engine="local",
                ) from err
            started = time.monotonic()
            try:
                try:
                    proc = await asyncio.create_subprocess_exec(
                        *self._command(binary, port, key_file),
                        stdin=asyncio.subprocess.DEVNULL,
                        stdout=log_file,
                        stderr=asyncio.subprocess.STDOUT,
                        start_new_session=True,
                        preexec_fn=_child_setup(os.getpid()),
                        env=child_environment(),
                        # A console program started from the windowed app would open a console
                        # window of its own on Windows.
                        creationflags=_NO_WINDOW,
                    )
                except OSError as err:
                    raise EngineUnavailable(
                        f"Could not start {binary}: {err.strerror or err}.", engine="local"
                    ) from err
                finally:
                    log_file.close()
                _live_pids.add(proc.pid)
                try:
                    ready = await self._wait_ready(proc, port, report, started)
                except BaseException:
                    await _terminate(proc)
                    raise
            finally:
                key_file.unlink(missing_ok=True)  # read at startup; no copy stays on disk
            self._api_key = key
            if ready:
                self._proc = proc
                self.last_start_seconds = time.monotonic() - started
                self._settled.set()
                log.info("llama-server ready on port %d in %.2f s", port, self.last_start_seconds)
                report(1.0, "The local language model is ready.")
                return
            await _terminate(proc)
            tail = self._log_tail()
            if "bind" in tail.lower() or "address already in use" in tail.lower():
                continue  # another program took the port meanwhile: try a new one
            raise EngineUnavailable(
                f"The local language model server stopped while starting "
                f"(exit code {proc.returncode}): {_last_line(tail)} Full log: {self.log_path}",
                engine="local",
            )
        raise EngineUnavailable(
            "The local language model server could not bind a loopback port.", engine="local"
        )

    async def _wait_ready(
        self, proc: asyncio.subprocess.Process, port: int, report: Progress, started: float
    ) -> bool:
        """True once /health says 200; False if the process exits first; raises on timeout."""
        report(0.0, "Starting the local language model…")
        while proc.returncode is None:
            status = await http_status(HOST, port, "/health", wait=1.0)
            if status == 200:
                return True
            elapsed = time.monotonic() - started
            if elapsed > self.start_timeout:
                raise EngineUnavailable(
                    f"The local language model did not become ready within "
                    f"{self.start_timeout:g} s; the machine may be overloaded. "
                    f"See {self.log_path}.",
                    engine="local",
                )
            report(min(0.95, elapsed / 10.0), "Loading the local language model…")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 0.1)
        return False

    async def _watch(self) -> None:
        """Restart the server when it dies on its own; give up after too many crashes."""
        while not self._stopping:
            proc = self._proc
            if proc is None:
                return
            code = await proc.wait()
            _live_pids.discard(proc.pid)
            if self._stopping:
                return
            self._settled.clear()
            now = time.monotonic()
            self._crashes = [t for t in self._crashes if now - t < self.restart_window] + [now]
            log.warning("llama-server exited unexpectedly with code %s", code)
            if len(self._crashes) > self.max_restarts:
                self._give_up(
                    f"The local language model stopped {len(self._crashes)} times in a few "
                    f"minutes (last exit code {code}) and was not restarted. "
                    f"See {self.log_path}."
                )
                return
            self._notify("The local language model stopped unexpectedly; restarting it.")
            await asyncio.sleep(min(0.5 * 2 ** (len(self._crashes) - 1), 8.0))
            try:
                async with self._lock:
                    if self._stopping:
                        return
                    self._proc = None
                    await self._launch(None)
            except EngineError as err:
                self._give_up(f"The local language model could not be restarted: {err}")
                return
            self._notify("The local language model is running again.")

    def _give_up(self, message: str) -> None:
        self._failed = EngineUnavailable(message, engine="local")
        self._proc = None
        self._settled.set()  # wake waiters so they see the failure
        self._notify(message, failure=True)

    def _notify(self, message: str, *, failure: bool = False) -> None:
        for listener in list(self.on_notice):
            try:
                listener(message, failure)
            except Exception:
                log.exception("notice listener failed")

    def _open_log(self, binary: Path, port: int) -> BinaryIO:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.log_path.exists() and self.log_path.stat().st_size > _LOG_LIMIT:
            os.replace(self.log_path, self.log_path.with_suffix(".log.1"))
        f = self.log_path.open("ab")
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        f.write(f"\n=== {stamp} starting {binary} on port {port}\n".encode())
        f.flush()
        return f

    def _log_tail(self, limit: int = 4000) -> str:
        try:
            with self.log_path.open("rb") as f:
                f.seek(max(0, self.log_path.stat().st_size - limit))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


def _write_key_file(key: str) -> Path:
    """A new file only this user can read (mode 0600), holding ``key``."""
    fd, name = tempfile.mkstemp(prefix="parley-llama-", suffix=".key")
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return Path(name)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


async def _terminate(proc: asyncio.subprocess.Process, grace: float = 5.0) -> None:
    if proc.returncode is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            _signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()
    _live_pids.discard(proc.pid)
