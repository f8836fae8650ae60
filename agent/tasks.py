"""Stopping a task for sure.

``task.cancel(); await task`` can hang on Python 3.11: when a cancellation lands just as an inner
``asyncio.wait_for`` completes, ``wait_for`` swallows it and the task goes on waiting (seen in
the line task under a SIGKILL-style test about 1 run in 6). Cancelling again until it is done, each
wait bounded, makes shutdown finish; and unlike ``suppress(CancelledError)`` around ``await task``
it never swallows a cancellation aimed at the caller.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

log = structlog.get_logger("agent.tasks")


async def stop_task(task: asyncio.Task[Any] | None, *, timeout: float = 5.0, step: float = 0.1) -> bool:
    """Cancel ``task`` until it finishes (at most ``timeout`` seconds); True if it did."""
    if task is None or task.done():
        return True
    deadline = asyncio.get_running_loop().time() + timeout
    while not task.done():
        task.cancel()
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            log.error("task_did_not_stop", task=task.get_name(), timeout_s=timeout)
            return False
        await asyncio.wait({task}, timeout=min(step, left))
    if not task.cancelled() and task.exception() is not None:
        log.warning("task_failed_while_stopping", task=task.get_name(), error=repr(task.exception()))
    return True
