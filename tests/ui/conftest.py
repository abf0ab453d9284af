"""Window tests draw offscreen (the Xvfb tests start their own process with a real display)."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterator
from pathlib import Path

# Before any QApplication exists.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # for ``tests.ui.helpers``
    sys.path.insert(0, str(ROOT))

from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
import qasync  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from assistant.app import Assistant  # noqa: E402
from assistant.config import Settings  # noqa: E402
from tests.ui.helpers import fake_settings, noise_source, run, virtual_player  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def first_window(qapp: QApplication, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Qt starts some things once for the process with its first main window (two wake-up
    descriptors of its own); one is opened and closed before any test, so that no test's leak
    check counts them."""
    from assistant.app import Assistant
    from tests.ui.helpers import fake_settings, noise_source, virtual_player
    from ui.main_window import MainWindow

    assistant = Assistant(
        fake_settings(),
        history_dir=tmp_path_factory.mktemp("first-window"),
        player_factory=virtual_player(),
        source_factory=noise_source(),
        persist=False,
    )
    window = MainWindow(assistant)
    window.close()
    window.deleteLater()
    qapp.processEvents()


@pytest.fixture(autouse=True)
def collect_on_the_qt_thread(qapp: QApplication) -> Iterator[None]:
    """As in the app (``ui.gc``): no automatic collection, which could free a Qt object from a
    worker thread; a collection on this thread after each test, with the test's windows gone."""
    gc.disable()
    yield
    for widget in qapp.topLevelWidgets():
        widget.close()
        widget.deleteLater()
    qapp.processEvents()
    gc.collect()
    gc.enable()


@pytest.fixture
def qloop(qapp: QApplication) -> Iterator[qasync.QEventLoop]:
    """An asyncio loop running on Qt's event loop, as in the app."""
    loop = qasync.QEventLoop(qapp)
    yield loop
    loop.close()


@pytest.fixture
def assistants(qloop: qasync.QEventLoop) -> Iterator[Callable[..., Assistant]]:
    """Make assistants (scripted engines, virtual audio unless given); each is closed after the
    test even when it fails midway."""
    made: list[Assistant] = []

    def make(settings: Settings | None = None, **kwargs: Any) -> Assistant:
        kwargs.setdefault("player_factory", virtual_player("fast"))
        kwargs.setdefault("source_factory", noise_source())
        assistant = Assistant(settings or fake_settings(), **kwargs)
        made.append(assistant)
        return assistant

    yield make
    for assistant in made:
        run(qloop, assistant.close())
