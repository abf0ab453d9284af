"""The one seam between Qt and the app: ``Assistant.events`` re-emitted as one Qt signal.

Widgets connect to ``occurred`` and ``match`` on the event's type; commands go straight to the
``Assistant``'s methods. Under qasync the asyncio loop runs on the Qt thread, so events arrive
there and reach the widgets at once; the signal also keeps a deleted widget from being called.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from assistant.app import Assistant


class Bridge(QObject):
    """Forwards every ``AppEvent`` of ``assistant`` as ``occurred(object)`` while it exists."""

    occurred = Signal(object)  # an assistant.events.AppEvent

    def __init__(self, assistant: Assistant, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.assistant = assistant
        unsubscribe = assistant.events.subscribe(self.occurred.emit)
        # Not a method of self: it must still work while Qt is deleting this object.
        self.destroyed.connect(lambda *_: unsubscribe())
