"""Desktop notifications, through the system's own tool: ``notify-send`` on Linux desktops,
``osascript`` on macOS. Best effort: where neither exists (a server, Windows without a
notifier), nothing is shown and the spoken line and the window still tell the user."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from collections.abc import Callable

log = logging.getLogger(__name__)

#: (title, body)
Notifier = Callable[[str, str], None]


def _applescript_text(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def desktop_notify(title: str, body: str) -> None:
    """Show a desktop notification, without waiting for it; never raises."""
    if sys.platform == "darwin" and shutil.which("osascript"):
        quoted_body, quoted_title = _applescript_text(body), _applescript_text(title)
        script = f"display notification {quoted_body} with title {quoted_title}"
        command = ["osascript", "-e", script]
    elif shutil.which("notify-send"):
        command = ["notify-send", "--app-name=Parley", title, body]
    else:
        log.info("no desktop notifier: %s — %s", title, body)
        return
    try:
        subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    except OSError as exc:
        log.info("the desktop notification failed: %s", exc)
