"""Every test must leave no asyncio task, thread or file descriptor behind (LiveKit's
``fail_on_leaked_tasks``, extended to threads and descriptors).

``no_leaked_tasks`` runs in an async test's own loop and is set up before every other fixture, so
it is torn down after them: what a fixture started and stopped does not count, what is still
running when everything was closed does. ``no_leaked_threads_or_fds`` does the same for threads
and descriptors in every test. Something still finishing gets a short grace period.

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
GRACE_SECONDS = 2.0


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


@pytest.fixture
def no_leaked_threads_or_fds() -> Iterator[None]:
    threads = set(threading.enumerate())
    fds = _fds()
    yield
    end = time.monotonic() + GRACE_SECONDS
    while (_leaked_threads(threads) or _leaked_fds(fds)) and time.monotonic() < end:
        time.sleep(0.02)
    problems = []
    if leaked := _leaked_threads(threads):
        problems.append("threads: " + ", ".join(sorted(t.name for t in leaked)))
    if leaked_fds := _leaked_fds(fds):
        problems.append("file descriptors: " + ", ".join(sorted(set(leaked_fds.values()))))
    if problems:
        pytest.fail("the test left behind " + "; ".join(problems), pytrace=False)


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
