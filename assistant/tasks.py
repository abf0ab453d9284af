"""Ending the loop's background tasks."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait until it has ended. However it ends (cancelled, failed or done)
    is swallowed: the caller only needs it gone. Waiting for a task already done just reads its
    result (or its exception) and returns. A cancellation of the caller itself while it waits
    is not swallowed: it propagates, as any await's would."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
    except Exception:
        pass
