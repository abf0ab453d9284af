"""Icons and the stylesheet, loaded from the ``resources/`` folder.

The folder is looked for, in order:

1. ``$PARLEY_RESOURCES`` — set it when the files live elsewhere (an installed copy, a bundle);
2. ``resources/`` at the top of the source checkout (also right for an editable install);
3. ``<sys.prefix>/share/parley/resources`` — where an installer puts shared data files.

A missing folder or file is not fatal: the window then uses Qt's default look and plain buttons,
and the log says where the folder was looked for.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from pathlib import Path

from PySide6.QtGui import QIcon

log = logging.getLogger(__name__)

ENV_VAR = "PARLEY_RESOURCES"
CHECKOUT = Path(__file__).resolve().parent.parent / "resources"


def candidates() -> list[Path]:
    """Where the resources folder may be, best first."""
    places = [CHECKOUT, Path(sys.prefix) / "share" / "parley" / "resources"]
    override = os.environ.get(ENV_VAR, "").strip()
    if override:
        chosen = Path(override).expanduser()
        if not chosen.is_dir():
            log.warning("%s=%s is not a folder; looking in the usual places", ENV_VAR, override)
        places.insert(0, chosen)
    return places


@functools.cache
def resources_dir() -> Path:
    """The resources folder in use (the checkout's path, even if missing, when none is found)."""
    places = candidates()
    for place in places:
        if (place / "style.qss").is_file():
            return place
    log.warning(
        "Parley's resources folder was not found (looked in %s); icons and styling are "
        "unavailable. Set %s to the folder that holds style.qss and icons/.",
        ", ".join(str(p) for p in places),
        ENV_VAR,
    )
    return CHECKOUT


def resource_path(*parts: str) -> Path:
    return resources_dir().joinpath(*parts)


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
