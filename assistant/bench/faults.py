"""``parley bench faults``: the fault matrix and the kill -9 runs, with their figures.

Every scenario of the fault matrix (``tests/faults``: the fault proxy in front of the fake
provider servers, malformed messages, sound-device doubles, full and unwritable disks, broken
keyrings, a killed llama-server) runs through the app and is judged: the message the user sees,
its deadline, recovery, the turns on disk, the invariants. Then ``parley talk`` and the desktop
app are each killed with SIGKILL mid-turn 20 times. The scenarios and fakes live with the tests,
so this needs a source checkout.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KILLS = 20


def _checkout() -> bool:
    if not (ROOT / "tests" / "faults" / "matrix.py").exists():
        print("parley bench faults needs a source checkout (the fault scenarios live in tests/)")
        return False
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return True


async def _run(quick: bool) -> int:
    from tests.faults.kills import kill_repeatedly
    from tests.faults.matrix import run_one, summary
    from tests.faults.scenarios import SCENARIOS

    scenarios = [s for s in SCENARIOS if s.ci] if quick else list(SCENARIOS)
    print(f"parley bench faults: {len(scenarios)} scenarios through the app")
    verdicts = []
    with tempfile.TemporaryDirectory(prefix="parley-faults-") as tmp:
        for i, scenario in enumerate(scenarios):
            directory = Path(tmp) / f"s{i}"
            directory.mkdir()
            verdict = await run_one(scenario, directory)
            verdicts.append(verdict)
            clock = "virtual" if scenario.virtual else "wall"
            ttm = "-" if verdict.time_to_message is None else f"{verdict.time_to_message:.2f}"
            ttr = "-" if verdict.time_to_recover is None else f"{verdict.time_to_recover:.2f}"
            print(
                f"  {verdict.status:<6} {scenario.group:<12} {scenario.name:<38} "
                f"message {ttm:>6} s  recover {ttr:>6} s ({clock})",
                flush=True,
            )
        print(summary(verdicts))
        kills = 3 if quick else KILLS
        kill_reports = []
        for target in ("talk", "app"):
            started = time.monotonic()
            report = await kill_repeatedly(
                target,
                kills,
                Path(tmp) / f"kill-{target}",
                longest=10.0 if target == "talk" else 4.0,
            )
            kill_reports.append(report)
            print(
                f"kill -9 of {'parley talk' if target == 'talk' else 'the app'} mid-turn: "
                f"{report.kills} kills, {report.reported} turns reported finished, "
                f"{report.on_disk} on disk, {len(report.orphans)} orphaned llama-servers, "
                f"{len(report.problems)} problems ({time.monotonic() - started:.0f} s)"
            )
            for problem in report.problems:
                print(f"  {problem}")
    clean = all(v.status == "clear" for v in verdicts) and all(r.ok for r in kill_reports)
    return 0 if clean else 1


def main(quick: bool = False) -> int:
    if not _checkout():
        return 2
    return asyncio.run(_run(quick))
