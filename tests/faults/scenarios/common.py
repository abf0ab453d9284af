"""The shape most scenarios share: a turn that meets the fault, then a turn that must succeed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from assistant.clock import Clock
from tests.faults.matrix import Context
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
