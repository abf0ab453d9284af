"""Ending the loop's background tasks."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait until it has ended. However it ends (cancelled, failed or done)
    is swallowed: the caller only needs it gone. Waiting for a task already done just reads its
    result (or its exception) and returns."""
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
