"""kill -9 mid-turn, once each in CI (``parley bench faults`` does it 20 times each): at most
the turn in flight is lost, the conversation loads, and no llama-server outlives its parent."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.kills import kill_repeatedly

pytestmark = pytest.mark.timeout(300)


async def test_kill_9_of_parley_talk_mid_turn(tmp_path: Path) -> None:
    report = await kill_repeatedly("talk", 1, tmp_path, seed=2, longest=8.0)
    assert report.kills == 1
    assert report.ok, report


async def test_kill_9_of_the_app_mid_turn(tmp_path: Path) -> None:
    pytest.importorskip("PySide6")
    report = await kill_repeatedly("app", 1, tmp_path, seed=3, longest=3.0)
    assert report.kills == 1 and report.reported >= 1  # turns were finished before each kill
    assert report.ok, report
