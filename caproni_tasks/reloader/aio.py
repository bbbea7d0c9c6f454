"""Cancellation-safe waiting for the supervisor.

On Python 3.11, ``asyncio.wait_for`` loses the caller's cancellation when the awaited
thing finishes at the same moment (the result wins), and ``suppress(CancelledError)``
around ``await task`` after ``task.cancel()`` also swallows a cancellation of the
*caller*. Either leaves a process's lifecycle running after its shutdown began, or a
readiness poll running forever after its process died. These helpers do not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

__all__ = ["cancel_and_wait", "wait_timeout"]

T = TypeVar("T")


async def wait_timeout(awaitable: Awaitable[T], timeout: float | None) -> T:
    """``await awaitable`` for at most ``timeout`` seconds (None: no limit); raises
    `TimeoutError` on expiry and always lets a cancellation of the caller through."""
    async with asyncio.timeout(timeout):
        return await awaitable


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel ``tasks`` and wait until they have ended; their cancellation is not an
    error, but a cancellation of the caller while waiting still propagates."""
    pending = {task for task in tasks if task is not None}
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    for task in pending:
        if not task.cancelled():
            task.exception()  # retrieved: an error while being cancelled is not news
