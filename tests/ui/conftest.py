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

import pytest  # noqa: E402
import qasync  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402


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
