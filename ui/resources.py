"""Icons and the stylesheet, loaded from the ``resources/`` folder beside the package.

A missing file is not fatal: the window then uses Qt's default look and plain buttons.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from PySide6.QtGui import QIcon

log = logging.getLogger(__name__)

RESOURCES = Path(__file__).resolve().parent.parent / "resources"


def resource_path(*parts: str) -> Path:
    return RESOURCES.joinpath(*parts)


@functools.cache
def icon(name: str) -> QIcon:
    """The SVG icon ``resources/icons/<name>.svg`` (an empty icon if it is missing)."""
    path = resource_path("icons", f"{name}.svg")
    if not path.exists():
        log.warning("icon %s is missing", path)
        return QIcon()
    return QIcon(str(path))


def stylesheet() -> str:
    """The application's Qt stylesheet (empty when the file is missing)."""
    path = resource_path("style.qss")
    try:
        # Image URLs in the sheet are written relative to @ICONS@ (Qt needs real paths).
        icons = resource_path("icons").as_posix()
        return path.read_text(encoding="utf-8").replace("@ICONS@", icons)
    except OSError as exc:
        log.warning("stylesheet unavailable (%s); using the default look", exc)
        return ""
