"""No test may leave asyncio tasks, threads or file descriptors behind (LiveKit's
``fail_on_leaked_tasks``, extended to threads and descriptors).

``no_leaked_tasks`` runs in an async test's own loop and is set up before every other fixture, so
it is torn down after them: what a fixture started and stopped does not count, what is still
running when everything was closed does. A task still running then fails the test: its loop is
about to close, so the task would never finish.

``no_leaked_threads_or_fds`` does the same for threads and descriptors in every test, judged on
growth: on a loaded machine a thread or a socket may outlive its test by a moment (a join
returned, the thread not yet gone; a close handed to another thread), which is no leak. So
what a test leaves is waited for (``GRACE_SECONDS``), and what is still there is kept as a
straggler; a test fails when the stragglers of the whole run exceed ``THREAD_LIMIT`` threads or
``FD_LIMIT`` descriptors — a code path that leaks does so every time it runs and soon crosses
them, while a slow straggler that finishes later does not count against anyone. Stragglers are
listed at the end of the run.

Allowed, because they belong to the process rather than to a test:

- the default executor threads of a test's event loop (``asyncio_*``): the loop joins them when
  it closes, after the test;
- the audio processing library's runtime (livekit's FFI: its epoll, eventfd and sockets) and
  PortAudio's, both started once for the process when first imported — ``warm_singletons``
  starts them before the first test, so they are there before any test begins;
- daemon threads stuck in an operation that cannot be cancelled, named for it: a keyring read
  (``parley-keyring``) or a close inside the audio backend (``audio-close``) — exactly what
  those threads exist for. A test that arranges such a hang releases it at its end; these are
  only waited for, not failed on;
- threads Python did not start (native threads of Qt or an inference library that called into
  Python appear as ``threading._DummyThread``s), and tqdm's one progress monitor thread;
- data files that native libraries open once and keep for the process: model and language
  files inside installed packages, onnxruntime's own cache database.

What a fixture of a wider scope (a module's engine, the session's ``QApplication``) sets up is
there before the checks start: they are set up after every wider-scoped fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import site
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest

#: Threads that belong to the process or to an uncancellable wait (see the module docstring).
ALLOWED_THREADS = ("asyncio_", "parley-keyring", "audio-close", "tqdm_monitor")
#: Where installed packages keep their data files (models, language files).
PACKAGE_DIRS = tuple({sys.prefix, sys.base_prefix, *site.getsitepackages()})
#: onnxruntime's own cache database, opened once for the process.
ONNXRUNTIME_DB = "/.onnxruntime/onnxruntime.db"
#: Seconds given to what a test leaves before it counts (only waited when something is left).
GRACE_SECONDS = 10.0
#: Stragglers of the whole run (threads, descriptors) beyond which a test fails.
THREAD_LIMIT = 6
FD_LIMIT = 24
#: What tests left behind so far, by test (reported at the end of the run).
STRAGGLERS: dict[str, list[str]] = {}


def warm_singletons() -> None:
    """Start what the process starts once for good, so no test is blamed for it."""
    from assistant.audio.devices import list_devices
    from assistant.audio.echo import LiveKitApm, processing_available

    if processing_available():  # its runtime starts with the first processing module
        LiveKitApm(echo_cancellation=True, noise_suppression=False)
    list_devices()


def _fds() -> dict[int, str]:
    found = {}
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                found[int(name)] = os.readlink(f"/proc/self/fd/{name}")
    return found


def _leaked_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    return [
        t
        for t in threading.enumerate()
        if t not in before
        and t.is_alive()
        and not t.name.startswith(ALLOWED_THREADS)
        and not isinstance(t, threading._DummyThread)
    ]


def _allowed_file(target: str) -> bool:
    return target.startswith(PACKAGE_DIRS) or ONNXRUNTIME_DB in target


def _leaked_fds(before: dict[int, str]) -> dict[int, str]:
    return {
        fd: target
        for fd, target in _fds().items()
        if before.get(fd) != target and not _allowed_file(target)
    }


#: What tests left behind, to see whether it is still there (a real leak) or went away later.
_left_threads: set[threading.Thread] = set()
_left_fds: dict[int, str] = {}


def _still_left() -> tuple[int, int]:
    """How many threads and descriptors that tests left behind are still there."""
    for thread in [t for t in _left_threads if not t.is_alive()]:
        _left_threads.discard(thread)
    now = _fds()
    for fd in [fd for fd, target in _left_fds.items() if now.get(fd) != target]:
        del _left_fds[fd]
    return len(_left_threads), len(_left_fds)


@pytest.fixture
def no_leaked_threads_or_fds(request: pytest.FixtureRequest) -> Iterator[None]:
    threads = set(threading.enumerate())
    fds = _fds()
    yield
    end = time.monotonic() + GRACE_SECONDS
    while (_leaked_threads(threads) or _leaked_fds(fds)) and time.monotonic() < end:
        time.sleep(0.05)
    leaked_threads, leaked_fds = _leaked_threads(threads), _leaked_fds(fds)
    if not leaked_threads and not leaked_fds:
        return
    _left_threads.update(leaked_threads)
    _left_fds.update(leaked_fds)
    left = [f"thread {t.name}" for t in leaked_threads]
    left += [f"file descriptor {target}" for target in sorted(set(leaked_fds.values()))]
    STRAGGLERS[request.node.nodeid] = left
    all_threads, all_fds = _still_left()
    if all_threads > THREAD_LIMIT or all_fds > FD_LIMIT:
        pytest.fail(
            f"tests keep leaving threads or file descriptors behind ({all_threads} threads, "
            f"{all_fds} descriptors still there); this one left: " + ", ".join(left),
            pytrace=False,
        )


def report_stragglers(terminal: pytest.TerminalReporter) -> None:
    """List at the end of a run what tests left behind (``pytest_terminal_summary``)."""
    if not STRAGGLERS:
        return
    write = terminal.write_line
    write(
        f"threads or file descriptors outlived {len(STRAGGLERS)} tests (a grace of "
        f"{GRACE_SECONDS:g} s each; growth fails):"
    )
    for nodeid, left in STRAGGLERS.items():
        write(f"  {nodeid}: {', '.join(left)}")


@pytest.fixture
async def no_leaked_tasks() -> AsyncIterator[None]:
    before = asyncio.all_tasks()
    yield
    me = asyncio.current_task()

    def leaked() -> list[asyncio.Task[object]]:
        return [t for t in asyncio.all_tasks() - before if t is not me and not t.done()]

    end = time.monotonic() + GRACE_SECONDS
    while leaked() and time.monotonic() < end:  # noqa: ASYNC110 - nothing to wait on but time
        await asyncio.sleep(0.01)
    if left := leaked():
        names = ", ".join(sorted(t.get_name() + ": " + repr(t.get_coro())[:80] for t in left))
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        pytest.fail(f"the test left {len(left)} asyncio tasks running: {names}", pytrace=False)


def _first_function_scoped(item: pytest.Item, names: list[str]) -> int:
    """Where the function-scoped fixtures start in ``names`` (wider scopes come first)."""
    info = getattr(item, "_fixtureinfo", None)
    definitions = getattr(info, "name2fixturedefs", {})
    for index, name in enumerate(names):
        found = definitions.get(name)
        if not found or found[-1].scope == "function":
            return index
    return len(names)


def check_every_test(items: list[pytest.Item]) -> None:
    """Have every test checked: the checks are the first function-scoped fixtures (torn down
    last), the task check after the thread check, in async tests."""
    for item in items:
        names = getattr(item, "fixturenames", None)
        if not isinstance(names, list) or "no_leaked_threads_or_fds" in names:
            continue
        at = _first_function_scoped(item, names)
        names.insert(at, "no_leaked_threads_or_fds")
        function = getattr(item, "function", None)
        if asyncio.iscoroutinefunction(function):
            names.insert(at + 1, "no_leaked_tasks")
