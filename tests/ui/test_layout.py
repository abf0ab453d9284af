"""The main window, styled as in the app, shows every control whole at its default size and when
small, in both turn modes; screenshots go to artifacts/screenshots/ for review."""

from __future__ import annotations

import itertools
import re

import pytest
from PySide6.QtWidgets import QLabel, QPushButton

from assistant.app import Assistant
from tests.ui.helpers import SCREENSHOTS, SEEDED, fake_settings, noise_source, virtual_player
from ui.main_window import MainWindow
from ui.resources import resource_path, stylesheet

pytestmark = pytest.mark.gui

#: The default size, a small laptop window, and below the smallest the layout allows.
SIZES = ((1180, 760), (900, 640), (700, 480))


def clipped(widget: QPushButton | QLabel) -> str | None:
    """Why the widget's text does not fit in it, or None when it does."""
    if isinstance(widget, QLabel):
        if widget.wordWrap():
            needed = widget.heightForWidth(widget.contentsRect().width())
            return f"needs {needed} px of height" if needed > widget.height() else None
        width = widget.fontMetrics().horizontalAdvance(widget.text())
        room = widget.contentsRect().width()
        return f"needs {width} px, has {room}" if width > room else None
    if widget.width() < widget.sizeHint().width():
        return f"{widget.width()} px wide, needs {widget.sizeHint().width()}"
    return None


@pytest.mark.parametrize("mode", ["ptt", "vad"])
def test_controls_are_whole_at_every_size(qtbot, mode):
    assistant = Assistant(
        fake_settings(),
        player_factory=virtual_player(),
        source_factory=noise_source(),
        persist=False,
    )
    window = MainWindow(assistant)
    qtbot.addWidget(window)
    window.setStyleSheet(stylesheet())  # the app's look: padding and fonts decide the sizes
    window.show()
    assistant.set_turn_mode(mode)
    assert window.hands_free_button.isChecked() == (mode == "vad")
    panel = window.timeline
    # As many rows as the timeline shows.
    panel.set_timelines([(i, SEEDED[i % 3].timeline) for i in range(1, 7)])
    buttons = [
        window.ptt_button,
        window.hands_free_button,
        window.stop_button,
        window.send_button,
        window.new_button,
        window.settings_button,
    ]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for width, height in SIZES:
        window.resize(width, height)
        qtbot.wait(20)  # let the layouts settle
        assert window.width() >= min(width, window.minimumWidth())
        window.grab().save(str(SCREENSHOTS / f"window-{mode}-{width}x{height}.png"))
        for widget in [*buttons, window.hint_label]:
            problem = clipped(widget)
            assert problem is None, f"{widget.objectName() or widget.text()} at {width}x{height}"
            # Inside the window, not pushed past its edge.
            corner = widget.mapTo(window, widget.rect().bottomRight())
            assert window.rect().contains(corner), widget.objectName()
        # The latency panel's parts stack without overlapping (it scrolls when short of room).
        parts = [panel.view, panel.legend, panel.summary, panel.chart]
        for upper, lower in itertools.pairwise(parts):
            assert upper.geometry().bottom() < lower.geometry().top(), (upper, width, height)
        assert panel.view.height() >= panel.view.sizeHint().height()
    window.close()


def test_states_do_not_change_a_buttons_font():
    """Qt measures a button once; a bolder or larger font in one state would be cut off."""
    sheet = resource_path("style.qss").read_text(encoding="utf-8")
    sheet = re.sub(r"/\*.*?\*/", "", sheet, flags=re.DOTALL)
    offenders = [
        selector.strip()
        for selector, body in re.findall(r"([^{}]+)\{([^}]*)\}", sheet)
        if "QPushButton" in selector
        and re.search(r"(?<!:):(?!:)|\[", selector)  # a pseudo-state or a property state
        and re.search(r"\bfont(-weight|-size|-family)?\s*:", body)
    ]
    assert offenders == []
