"""The fault matrix in CI: every scenario marked for CI, through the app, judged as the bench
judges it. Wall-clock scenarios are not held to their deadlines here (``parley bench faults``
reports those); everything else must be clear. The figures are printed at the end of the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.matrix import CI_VERDICTS, Scenario, late_only, run_one
from tests.faults.scenarios import SCENARIOS

pytestmark = pytest.mark.timeout(120)

CI = [s for s in SCENARIOS if s.ci]


def test_the_matrix_is_big_enough() -> None:
    assert len(SCENARIOS) >= 40
    assert len({s.name for s in SCENARIOS}) == len(SCENARIOS)


@pytest.mark.parametrize("scenario", CI, ids=[s.name.replace(" ", "-") for s in CI])
async def test_scenario(scenario: Scenario, tmp_path: Path) -> None:
    verdict = await run_one(scenario, tmp_path)
    CI_VERDICTS.append(verdict)
    if verdict.status == "failed" and not scenario.virtual and late_only(verdict):
        return  # a slow machine: deadlines in wall time are the bench's to report
    assert verdict.status == "clear", "; ".join(verdict.reasons)
