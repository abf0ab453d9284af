"""Start the desktop app: one QApplication, one asyncio loop (qasync), one window.

Unexpected exceptions never become a traceback dialog or an abort: they are logged and shown as
a banner in the window. On a machine without a display, ``run_app`` says so in one line and
points to the headless ``parley talk`` instead of letting Qt abort.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from assistant import config, logfile

if TYPE_CHECKING:
    from assistant.app import Assistant

log = logging.getLogger(__name__)

PREFERRED_FONTS = (
    "Inter",
    "Segoe UI",
    "SF Pro Text",
    "Helvetica Neue",
    "Noto Sans",
    "Cantarell",
    "Ubuntu",
    "DejaVu Sans",
)


def display_problem(
    environ: Mapping[str, str] | None = None, platform: str | None = None
) -> str | None:
    """A one-line message when there is no display to open a window on, else None."""
    env = os.environ if environ is None else environ
    platform = platform or sys.platform
    if env.get("QT_QPA_PLATFORM"):
        return None  # the caller chose a platform (offscreen, vnc, ...)
    if platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        if not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
            return (
                "parley: no display found (DISPLAY and WAYLAND_DISPLAY are not set), so the "
                "desktop app cannot open; for a headless conversation use "
                "`parley talk --input IN.wav`."
            )
    return None


def log_file() -> Path:
    return logfile.log_path()


def setup_logging() -> Path | None:
    """Log to the rotating, secret-free log file (where the banners and Help → About point)."""
    return logfile.start_file_log()


def log_ready(ready: bool) -> None:
    """Note in the log when Parley becomes ready to talk, and how long after launch."""
    if not ready:
        return
    import psutil

    since = time.time() - psutil.Process().create_time()
    log.info("ready to talk, %.1f s after launch", since)


def describe_unexpected(exc: BaseException, log_path: Path | None) -> str:
    where = f" Details are in {log_path}." if log_path else ""
    from assistant.secrets import redact

    text = redact(str(exc)).strip().splitlines()
    first = text[0] if text else ""
    detail = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return f"Something went wrong ({detail}). Parley keeps running.{where}"


def install_error_handlers(
    report: Callable[[str], None], log_path: Path | None
) -> Callable[[], None]:
    """Route uncaught exceptions (main thread, other threads, the loop) to the log and ``report``.

    ``report`` is called on the thread the exception happened on; pass something thread-safe
    (a Qt signal's ``emit``). Returns a function that restores the previous hooks.
    """
    previous_hook, previous_thread_hook = sys.excepthook, threading.excepthook

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            previous_hook(kind, exc, tb)
            return
        log.error("uncaught exception:\n%s", "".join(traceback.format_exception(kind, exc, tb)))
        report(describe_unexpected(exc, log_path))

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None:
            return
        hook(args.exc_type, args.exc_value, args.exc_traceback)

    sys.excepthook = hook
    threading.excepthook = thread_hook

    def restore() -> None:
        sys.excepthook, threading.excepthook = previous_hook, previous_thread_hook

    return restore


def loop_exception_handler(
    report: Callable[[str], None], log_path: Path | None
) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, BaseException):
            log.error("unhandled error in the event loop: %s", context.get("message"), exc_info=exc)
            report(describe_unexpected(exc, log_path))
        else:
            log.error("event loop: %s", context.get("message"))

    return handle


def run_app(
    argv: Sequence[str] | None = None, *, assistant_factory: Callable[[], Assistant] | None = None
) -> int:
    """Open the window and run until it is closed; the process exit code.

    ``assistant_factory`` replaces the default ``Assistant()`` (the saved settings, the system's
    microphone and speaker); it is called on the running loop.
    """
    problem = display_problem()
    if problem is not None:
        print(problem, file=sys.stderr)
        return 1
    try:
        import PySide6.QtWidgets  # noqa: F401
        import qasync
    except ImportError as exc:
        print(
            f"parley: the desktop app needs PySide6 and qasync ({exc}); install Parley with its "
            "'gui' extra, or use `parley talk --input IN.wav`.",
            file=sys.stderr,
        )
        return 1
    log_path = setup_logging()
    app = create_application(list(argv) if argv is not None else sys.argv)
    from ui.gc import MainThreadCollector

    collector = MainThreadCollector(app)  # Qt objects are only ever freed on the Qt thread
    try:
        return asyncio.run(
            _main(app, assistant_factory, log_path), loop_factory=lambda: qasync.QEventLoop(app)
        )
    except KeyboardInterrupt:
        return 130
    except RuntimeError as exc:
        # The desktop session quit the application under us (logout): not an error.
        if "Event loop stopped before Future completed" in str(exc):
            log.info("the application was asked to quit")
            return 0
        raise
    finally:
        collector.stop()


def create_application(argv: list[str]) -> Any:
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QFont, QFontDatabase, QGuiApplication
    from PySide6.QtWidgets import QApplication

    from ui.resources import icon, stylesheet

    QGuiApplication.setHighDpiScaleFactorRoundingPolicy(
        Qt.HighDpiScaleFactorRoundingPolicy.PassThrough
    )
    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(argv)
    app.setApplicationName(config.APP_NAME)
    app.setApplicationDisplayName(config.APP_NAME)
    app.setOrganizationName(config.APP_NAME)
    app.setDesktopFileName("parley")
    app.setWindowIcon(icon("parley"))
    app.setQuitOnLastWindowClosed(False)  # closing the window ends the loop after cleanup
    families = set(QFontDatabase.families())
    family = next((f for f in PREFERRED_FONTS if f in families), None)
    if family is not None:
        font = QFont(family)
        font.setPointSizeF(10.0)
        app.setFont(font)
    app.setStyle("Fusion")
    app.setStyleSheet(stylesheet())
    return app


async def _main(
    app: Any, assistant_factory: Callable[[], Assistant] | None, log_path: Path | None
) -> int:
    from PySide6.QtCore import QObject, QTimer, Signal

    from assistant.app import Assistant
    from assistant.events import Ready
    from ui.main_window import MainWindow

    class _Relay(QObject):
        message = Signal(str)

    relay = _Relay()
    restore = install_error_handlers(relay.message.emit, log_path)
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(loop_exception_handler(relay.message.emit, log_path))
    assistant = assistant_factory() if assistant_factory is not None else Assistant()
    assistant.events.subscribe(lambda e: log_ready(e.ready) if isinstance(e, Ready) else None)
    window = MainWindow(assistant)
    relay.message.connect(lambda message: window.show_error(message))
    closed = asyncio.Event()
    window.closed.connect(closed.set)
    app.aboutToQuit.connect(closed.set)
    # Ctrl+C in the terminal closes the window; the timer lets Python see the signal.
    signal.signal(signal.SIGINT, lambda *_: window.close())
    heartbeat = QTimer()
    heartbeat.start(250)
    heartbeat.timeout.connect(lambda: None)
    in_tray = window.tray.show()
    if not (assistant.settings.start_in_tray and in_tray):
        window.show()  # without a tray to come back from, the window always opens
    window.tray.set_window_visible(window.isVisible())
    try:
        await assistant.start()
    except Exception as exc:
        log.exception("starting failed")
        window.show_error(describe_unexpected(exc, log_path), "app")
    await closed.wait()
    try:
        await asyncio.wait_for(assistant.close(), 5.0)
    except Exception as exc:
        log.warning("closing took too long or failed: %s", exc)
    heartbeat.stop()
    restore()
    return 0
