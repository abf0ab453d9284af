"""Watching the sound devices come and go, so a device plugged in later is used without a restart.

``DeviceWatch`` asks for the device list every ``interval`` seconds on the injected clock and
calls ``on_change(old, new)`` (on the loop) when it differs. The list comes from
``devices.scan`` (the sound server when there is one; PortAudio, restarted only while no stream
is open, otherwise) or from any ``DeviceLister`` a caller passes (tests use one that changes on
demand). Scanning runs off the loop: asking a sound server may take a moment.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from assistant.audio.devices import DeviceList, scan
from assistant.clock import SYSTEM_CLOCK, Clock
from assistant.tasks import cancel_and_wait

log = logging.getLogger(__name__)

DeviceLister = Callable[[], DeviceList]
#: Seconds between two looks at the devices.
INTERVAL = 3.0


class DeviceWatch:
    def __init__(
        self,
        on_change: Callable[[DeviceList, DeviceList], None],
        *,
        lister: DeviceLister | None = None,
        clock: Clock = SYSTEM_CLOCK,
        interval: float = INTERVAL,
    ) -> None:
        self._lister = lister or scan
        self._on_change = on_change
        self._clock = clock
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        #: The devices found by the latest look (empty before the first).
        self.current = DeviceList()
        self._looked = False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="device-watch")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)

    async def refresh(self) -> DeviceList:
        """Look now; ``on_change`` runs first if the devices changed. Returns what was found."""
        async with self._lock:
            try:
                found = await asyncio.to_thread(self._lister)
            except Exception as exc:  # a broken lister must not stop the watch
                log.warning("listing the sound devices failed: %s", exc)
                return self.current
            old, self.current = self.current, found
            first, self._looked = not self._looked, True
        if not first and found != old:
            log.info("sound devices changed: %s", _summary(found))
            self._on_change(old, found)
        return found

    async def _run(self) -> None:
        while True:
            await self.refresh()
            await self._clock.sleep(self.interval)


def _summary(found: DeviceList) -> str:
    ins = ", ".join(c.label for c in found.inputs) or "none"
    outs = ", ".join(c.label for c in found.outputs) or "none"
    return f"microphones: {ins}; speakers: {outs} (via {found.via or 'nothing'})"
