"""What the ingest workers of one process tell each other about halls' chains, without the database.

Two signals (issue 14, several ingest workers):

* **the chain end moved**: a worker holding a batch ahead of a gap waits for the hall's stored end to
  move (another worker is committing the missing batch) instead of re-reading it every few tens of ms;
* **who holds seq n**: before asking a hall to resend the gap, a worker asks the others whether one of
  them has the missing batch in hand (received, not yet stored: its queue is long when HQ is loaded);
  a gap is never declared because another worker holds the previous batch.

In one process (SQLite, or tests with several workers on one store) these are plain in-process calls;
across processes the PostgreSQL backend carries them by LISTEN/NOTIFY (:mod:`central.store.chain_notify`)
and delivers them here. Either way a lost signal costs time, never an event: the waiter's timeout is
the old re-read, and a holder that does not answer only lets the resend request go out."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger("central.store.chain_signals")

Holds = Callable[[str, int], bool]
"""``holds(hall, seq)``: whether this worker has a batch of ``hall`` covering ``seq`` in hand."""


class ChainSignals:
    """Waiters for chain-end moves per hall, and this process's answerers of "who holds seq n"."""

    def __init__(self) -> None:
        self._moved: dict[str, asyncio.Event] = {}
        self._holders: list[Holds] = []

    def moved(self, hall: str) -> None:
        """``hall``'s stored chain end moved: wake everyone waiting on it."""
        event = self._moved.pop(hall, None)
        if event is not None:
            event.set()

    async def wait_moved(self, hall: str, past_seq: int, timeout: float,
                         read_end: Callable[[], Awaitable[int | None]]) -> bool:
        """Until ``hall``'s end is past ``past_seq`` (True) or ``timeout`` seconds pass (False).

        The waiter is registered before ``read_end`` looks, so a move between the look and the wait
        still wakes it. ``read_end`` is the backend's read (PostgreSQL's also registers the wait with
        the committing transactions, :mod:`central.store.chain_notify`)."""
        event = self._moved.get(hall)
        if event is None:
            event = self._moved[hall] = asyncio.Event()
        try:
            async with asyncio.timeout(timeout):
                end = await read_end()
                if end is None or end > past_seq:   # moved already (or the hall is gone: nothing to wait for)
                    return True
                await event.wait()
                return True
        except TimeoutError:
            return False

    def serve(self, holds: Holds) -> Callable[[], None]:
        """Answer "who holds" questions with ``holds`` until the returned function is called."""
        self._holders.append(holds)

        def stop() -> None:
            if holds in self._holders:
                self._holders.remove(holds)
        return stop

    def holds(self, hall: str, seq: int) -> bool:
        """Whether a worker of this process has a batch of ``hall`` covering ``seq`` in hand."""
        for holds in list(self._holders):
            try:
                if holds(hall, seq):
                    return True
            except Exception:   # one worker's bug must not stop the others answering
                log.exception("holder check failed", hall=hall, seq=seq)
        return False
