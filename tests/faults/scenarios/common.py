"""The shape most scenarios share: a turn that meets the fault, then a turn that must succeed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from assistant.bench.loopmon import LoopMonitor
from assistant.clock import Clock
from tests.faults.matrix import Context, Observed
from tests.faults.rig import Rig

#: How long a scenario waits for a turn to finish (rig seconds).
TURN_WITHIN = 15.0


async def fault_then_recover(
    ctx: Context,
    *,
    engines: Callable[[Clock], Any] | None = None,
    arm: Callable[[Rig], object] | None = None,
    fix: Callable[[Rig], object] | None = None,
    fault_turn: str = "talk",
    recover_turn: str = "talk",
    warm: bool = False,
    settle: float = 1.0,
    **rig_options: Any,
) -> Rig:
    """Start the app; optionally one good turn (``warm``); arm the fault; a turn meets it; let
    ``settle`` seconds pass (messages arrive); ``fix`` what the user or the world fixes; then a
    turn that must succeed."""
    rig = await ctx.rig(engines=engines, **rig_options)
    if warm:
        await rig.turn(fault_turn, within=TURN_WITHIN)
    if arm is not None:
        arm(rig)
    rig.fault()
    await rig.turn(fault_turn, within=TURN_WITHIN)
    await rig.step(settle)
    if fix is not None:
        fix(rig)
    await rig.turn(recover_turn, within=TURN_WITHIN)
    return rig


#: A loop stall longer than this while a slow part works proves it worked on the loop (the slow
#: parts take a second: far more than any stall a loaded machine causes by itself).
STALL_LIMIT_MS = 600.0


async def observed_without_stalls(rig: Rig, monitor: LoopMonitor, slow_part: str) -> Observed:
    """Close ``rig`` and observe it; a loop stall over ``STALL_LIMIT_MS`` during the run (the
    ``monitor`` watched it) breaks an invariant: ``slow_part`` must never run on the loop."""
    await monitor.stop()
    await rig.close()
    observed = Observed.of(rig)
    if monitor.worst > STALL_LIMIT_MS:
        observed.violations.append(f"the loop stalled {monitor.worst:.0f} ms on {slow_part}")
    return observed
