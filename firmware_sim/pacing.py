"""The loop that lets a simulated person act at their own pace, shared by EGM players and terminal customers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

log = structlog.get_logger("firmware_sim")


async def act_until_done(act: Callable[[], float | None], refused: type[Exception], pace: float,
                         finished: asyncio.Event, **who: object) -> None:
    """Call ``act`` (returns the seconds until the next act, or None when done) until it is done.

    A refusal (the host disabled the machine, a handpay locks it…) is not the end: the person
    waits ``pace`` seconds and tries again, as a player at a locked machine would.
    """
    while True:
        try:
            delay = act()
        except refused as exc:   # the host changed something under the person's feet
            log.debug("sim.act_refused", reason=str(exc), **who)
            delay = pace
        if delay is None:
            finished.set()
            return
        await asyncio.sleep(delay)
