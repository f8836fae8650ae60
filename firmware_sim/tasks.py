"""The background tasks one simulated device owns (players, housekeeping, power cycles), stopped together."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Final

import structlog

log = structlog.get_logger("firmware_sim")

STOP_TIMEOUT: Final = 2.0


class DeviceTasks:
    """Spawn named tasks, log the ones that die of an exception, cancel them all on stop."""

    def __init__(self, prefix: str, **who: object) -> None:
        self._prefix = prefix
        self._who = who
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        """Tasks still running (a stopped device has none)."""
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"{self._prefix}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("sim.task_failed", task=task.get_name(), error=repr(task.exception()), **self._who)

    async def cancel_all(self) -> None:
        """Cancel every task and wait for them (bounded). Safe to call twice."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
        self._tasks.clear()
