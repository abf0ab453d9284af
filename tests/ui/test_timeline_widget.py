"""The latency timeline draws each turn's marks where they belong, flags late stages, exports."""

from __future__ import annotations

import csv
import io
import json

import pytest
from PySide6.QtCore import QEvent
from PySide6.QtGui import QColor, QHelpEvent, QImage
from PySide6.QtWidgets import QApplication, QToolTip

from assistant.timeline import Budgets
from tests.ui.helpers import SEEDED, timeline
from ui import theme
from ui.timeline_export import to_csv, to_json
from ui.timeline_view import LatencyChart, TimelinePanel, TimelineView, segments, tooltip_html

pytestmark = pytest.mark.gui

FAST = timeline(
    7,
    {
        "speech_end": 0,
        "stt_final": 200,
        "llm_request": 205,
        "llm_first_token": 500,
        "first_text_to_tts": 560,
        "tts_first_audio": 660,
        "playback_start": 700,
    },
)
#: The language model took 1 s for its first token: over its 400 ms budget.
SLOW_LLM = timeline(
    8,
    {
        "speech_end": 0,
        "stt_final": 150,
        "llm_request": 150,
        "llm_first_token": 1150,
        "first_text_to_tts": 1200,
        "tts_first_audio": 1300,
        "playback_start": 1400,
    },
)


def grab(widget) -> QImage:
    return widget.grab().toImage()


def close_to(actual: QColor, expected: QColor, tolerance: int = 12) -> bool:
    pairs = zip(
        (actual.red(), actual.green(), actual.blue()),
        (expected.red(), expected.green(), expected.blue()),
        strict=True,
    )
    return all(abs(a - e) <= tolerance for a, e in pairs)


def pixel(image: QImage, x: float, y: float) -> QColor:
    ratio = image.devicePixelRatio()
    return image.pixelColor(round(x * ratio), round(y * ratio))


@pytest.fixture
def view(qtbot):
    v = TimelineView()
    qtbot.addWidget(v)
    v.resize(520, 120)
    v.set_turns([(7, FAST), (8, SLOW_LLM)])
    v.show()
    return v


def test_axis_maps_milliseconds_to_the_bar_area(view):
    assert view.scale_ms() == 1500  # nice ceiling above the slowest playback start (1400 ms)
    assert view.x_for_ms(0) == view.LEFT
    assert view.x_for_ms(1500) == pytest.approx(view.width() - view.RIGHT)


def test_each_stage_is_drawn_between_its_marks_in_its_colour(view):
    image = grab(view)
    y = view.row_rect(0).center().y()
    expected = [
        ("stt", 0, 200),
        ("llm", 200, 500),
        ("text", 500, 560),
        ("tts", 560, 660),
        ("output", 660, 700),
    ]
    for stage, start, end in expected:
        x = view.x_for_ms((start + end) / 2)
        assert close_to(pixel(image, x, y), theme.STAGE_COLORS[stage]), stage
    # After playback started the bar stops: only the empty track remains.
    assert close_to(pixel(image, view.x_for_ms(760), y), theme.TRACK)
    # Before the end of speech nothing is drawn in the track either (row label area is left).
    assert not close_to(pixel(image, view.x_for_ms(100), y), theme.TRACK)


def test_stage_over_budget_keeps_its_colour_and_is_marked_red(view):
    image = grab(view)
    row = view.row_rect(1)
    y = row.center().y()
    # The slow language model stays recognisable by its colour, and is marked red beneath.
    assert close_to(pixel(image, view.x_for_ms(650), y), theme.STAGE_COLORS["llm"])
    assert close_to(pixel(image, view.x_for_ms(650), row.bottom() - 2), theme.OVER_BUDGET)
    assert not close_to(
        pixel(image, view.x_for_ms(75), row.bottom() - 2), theme.OVER_BUDGET
    )  # the stages in time are not
    assert close_to(pixel(image, view.x_for_ms(75), y), theme.STAGE_COLORS["stt"])
    assert close_to(pixel(image, view.x_for_ms(1350), y), theme.STAGE_COLORS["output"])
    # The fast turn's language model stage is not marked.
    assert not close_to(
        pixel(image, view.x_for_ms(350), view.row_rect(0).bottom() - 2), theme.OVER_BUDGET
    )


def test_segments_follow_the_marks_that_exist():
    partial = timeline(9, {"speech_end": 0, "stt_final": 120, "llm_request": 121})
    assert segments(partial) == [("stt", 0.0, 120.0, False)]
    late = segments(SLOW_LLM)
    assert [s[0] for s in late if s[3]] == ["llm"]


def test_tooltip_gives_the_numbers():
    html = tooltip_html(8, SLOW_LLM, Budgets())
    assert "Turn 8" in html and "1400 ms voice-to-voice" in html
    assert "1000 / 400 ms ⚠ over budget" in html  # llm_first_token: request → first token


def test_hover_shows_how_the_hands_free_turn_end_was_decided(view):
    hands_free = {**FAST, "notes": {"endpoint_ms": 412, "end_of_turn_probability": 0.934}}
    view.set_turns([(7, hands_free), (8, SLOW_LLM)])
    centre = view.row_rect(0).center().toPoint()
    event = QHelpEvent(QEvent.Type.ToolTip, centre, view.mapToGlobal(centre))
    QApplication.sendEvent(view, event)
    shown = QToolTip.text()
    QToolTip.hideText()
    assert "Turn 7" in shown
    endpoint = shown.index("End of turn confirmed")
    assert "412 ms" in shown[endpoint:]
    smart = shown.index("Smart Turn")
    assert "0.93" in shown[smart:]
    # Push-to-talk and typed turns have no such notes, and none are made up.
    plain = tooltip_html(8, SLOW_LLM, Budgets())
    assert "End of turn confirmed" not in plain and "Smart Turn" not in plain
    only_endpoint = tooltip_html(7, {**FAST, "notes": {"endpoint_ms": 380.6}}, Budgets())
    assert "381 ms" in only_endpoint and "Smart Turn" not in only_endpoint


def test_chart_bars_scale_with_voice_to_voice_and_flag_late_turns(qtbot):
    chart = LatencyChart()
    qtbot.addWidget(chart)
    chart.resize(360, 120)
    chart.set_budget(800)
    chart.set_values([(1, 400.0, False), (2, 1200.0, True)])
    chart.show()
    image = grab(chart)
    (_, low, low_over), (_, high, high_over) = chart.bar_rects()
    assert (low_over, high_over) == (False, True)
    assert high.height() / low.height() == pytest.approx(3.0, rel=0.05)
    assert close_to(pixel(image, low.center().x(), low.bottom() - 3), theme.CHART_BAR)
    assert close_to(pixel(image, high.center().x(), high.bottom() - 3), theme.OVER_BUDGET)
    # The budget line crosses the tall bar at 800 ms, and is absent above it.
    budget_y = chart.y_for_ms(800)
    assert high.top() < budget_y < low.top()


def test_panel_exports_json_and_csv(qtbot, tmp_path):
    panel = TimelinePanel()
    qtbot.addWidget(panel)
    panel.set_timelines([(t.turn_id, t.timeline) for t in SEEDED])
    assert "median of 3" in panel.summary.text()
    json_path = tmp_path / "timeline.json"
    panel.export(json_path)
    data = json.loads(json_path.read_text())
    assert [t["turn_id"] for t in data["turns"]] == [1, 2, 3]
    assert data["turns"][1]["voice_to_voice_ms"] == pytest.approx(913, abs=0.01)
    assert data["turns"][1]["over_budget"] == ["llm_first_token", "voice_to_voice"]
    assert data["budgets_ms"]["voice_to_voice"] == 800
    csv_path = tmp_path / "timeline.csv"
    panel.export(csv_path)
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    assert rows[0]["turn_id"] == "1" and rows[0]["voice_to_voice_ms"] == "742.0"
    assert (
        rows[0]["stt_final_ms"] == "210.0"
        and rows[1]["over_budget"] == "llm_first_token;voice_to_voice"
    )
    assert to_csv([]).count("\n") == 1 and json.loads(to_json([]))["turns"] == []
