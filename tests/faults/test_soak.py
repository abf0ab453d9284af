"""A shorter soak in CI: 24 mixed turns with injected faults through the app, every turn on
disk, nothing left over after close, every invariant held. (Growth and stall limits are judged
by ``parley bench soak`` over 200 turns; 24 turns on a shared CI machine do not say enough.) Its
figures are printed at the end of the run."""

from __future__ import annotations

import pytest

from assistant.bench.soak import soak
from tests.faults.matrix import CI_SOAKS

pytestmark = pytest.mark.timeout(240)


async def test_mixed_turns_lose_and_leave_nothing() -> None:
    report = await soak(24, every=8)
    CI_SOAKS.append(report)
    assert report.finished >= 24
    assert report.lines == report.finished
    assert report.leftovers == []
    assert report.violations == []
    assert report.errors > 0  # the injected faults were shown
