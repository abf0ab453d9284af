"""Event-loop stall monitor: how late does a short sleep wake up?"""

from __future__ import annotations

import asyncio
import time

import numpy as np


class LoopMonitor:
    """Samples the loop's lateness every ``interval`` seconds while running."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.lateness_ms: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.lateness_ms.append(
                max(0.0, (time.perf_counter() - start - self.interval) * 1000.0)
            )

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.lateness_ms, q)) if self.lateness_ms else 0.0

    @property
    def worst(self) -> float:
        return max(self.lateness_ms, default=0.0)
