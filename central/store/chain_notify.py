"""The chain signals of :mod:`central.store.chain_signals` between processes on one PostgreSQL database.

* ``hallsync_chain`` (payload: the hall): its chain end moved. A waiting worker registers the hall in
  ``chain_waits`` (migration 6) under the hall row's key-share lock, then listens; the transaction that
  moves that hall's end next deletes the row and notifies, in the statement that moves the end
  (:data:`MOVE_END`). Commits of halls nobody waits on notify nobody: PostgreSQL serializes the commits
  of notifying transactions, so a NOTIFY per batch would queue every worker's commit behind one lock.
  The lock order (the hall's row, then its ``chain_waits`` row) is the committer's, so a wait and a
  commit never deadlock, and a wait registered after the committer's look finds the moved end itself.
* ``hallsync_holders``: ``ask TOKEN SEQ HALL`` from a worker about to ask a hall to resend a gap;
  ``have TOKEN`` from any process with a worker holding that batch. Rare (a gap's grace is over).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import Final

import structlog

from .chain_signals import ChainSignals
from .pg_db import PgDatabase

log = structlog.get_logger("central.store.chain_notify")

CHAIN_CHANNEL: Final = "hallsync_chain"
HOLDERS_CHANNEL: Final = "hallsync_holders"

MOVE_END: Final = ("WITH woken AS (DELETE FROM chain_waits WHERE hall = ? RETURNING hall)"
                   " UPDATE halls SET last_seq = ?, last_hash = ? WHERE id = ?"
                   f" RETURNING (SELECT count(pg_notify('{CHAIN_CHANNEL}', hall)) FROM woken)")
"""Move a hall's chain end (args: hall, last_seq, last_hash, hall) and wake its waiters, if any."""


class PgChainSignals:
    """:class:`ChainSignals` of this process, fed by the database's notifications."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db
        self.local = ChainSignals()
        self._asks: dict[str, asyncio.Future[None]] = {}

    async def _listening(self) -> bool:
        return (await self._db.listen(CHAIN_CHANNEL, self.local.moved)
                and await self._db.listen(HOLDERS_CHANNEL, self._on_holders))

    async def wait_moved(self, hall: str, past_seq: int, timeout: float) -> bool:
        await self._listening()   # not listening: the timeout is the look again

        async def read_end() -> int | None:
            async with self._db.transaction() as con:
                row = await con.fetchrow("SELECT last_seq FROM halls WHERE id = ? FOR KEY SHARE", hall)
                if row is None:
                    return None
                if row[0] <= past_seq:
                    await con.execute("INSERT INTO chain_waits (hall) VALUES (?) ON CONFLICT DO NOTHING", hall)
                return int(row[0])
        return await self.local.wait_moved(hall, past_seq, timeout, read_end)

    async def ask(self, hall: str, seq: int, timeout: float) -> bool:
        if self.local.holds(hall, seq):
            return True
        if not await self._listening():
            return False
        token = secrets.token_hex(8)
        answered = self._asks[token] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._db.notify(HOLDERS_CHANNEL, f"ask {token} {seq} {hall}")
                await answered
            return True
        except TimeoutError:
            return False
        except Exception as exc:   # the question did not go out: nobody can answer it
            log.warning("holders not asked", hall=hall, error=str(exc) or type(exc).__name__)
            return False
        finally:
            self._asks.pop(token, None)

    async def serve(self, holds: Callable[[str, int], bool]) -> Callable[[], None]:
        stop = self.local.serve(holds)
        await self._listening()   # not reachable now: asked again by the next wait or ask
        return stop

    def _on_holders(self, payload: str) -> None:
        parts = payload.split(" ", 3)
        if parts[0] == "have" and len(parts) == 2:
            answered = self._asks.get(parts[1])
            if answered is not None and not answered.done():
                answered.set_result(None)
        elif parts[0] == "ask" and len(parts) == 4 and parts[2].isdigit():
            token, seq, hall = parts[1], int(parts[2]), parts[3]
            if token not in self._asks and self.local.holds(hall, seq):
                self._db.notify_soon(HOLDERS_CHANNEL, f"have {token}")
