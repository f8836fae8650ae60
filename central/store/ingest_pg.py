"""Ingest on PostgreSQL (:class:`central.repos.ingest.IngestRepository`).

One transaction per batch (PostgreSQL's own WAL flush groups concurrent commits, so no group commit
of ours): lock the hall's row (``SELECT … FOR UPDATE``), decide by :mod:`central.chainend` exactly as
the SQLite backend does, COPY the new events, upsert their effects (:mod:`central.store.rollup_pg`)
and move the chain end, commit. The row lock makes a second batch of the same hall, from this process
or another one on the same database, wait and then see the first one's chain end; batches of other
halls go on beside it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from central.repos.ingest import IngestResult, LogEntry, SignedHeader
from central.staging import EVENT_COLUMNS, WIDTH, StagedEvents

from .chain_notify import MOVE_END, PgChainSignals
from .effect_rows import DEVICES_CONFLICT, device_rows, span_rows
from .export_pg import insert_signed_header
from .ingest_shared import IngestReads, chain_end
from .pg_db import PgConn, PgDatabase, run_pg
from .plans import POSTGRES
from .rollup_pg import insert_day_tables, insert_marks, insert_rollups, upsert
from .schema import DEVICE_MONEY_COLUMNS
from .sqlhelpers import INSERT_LOG

_DEVICES: Final = (("hall", "text"), ("id", "text"), ("kind", "text"), ("online", "bigint"), ("enabled", "bigint"),
                   ("first_seen", "bigint"), ("last_seen", "bigint"), ("last_seq", "bigint"),
                   ("last_play_seq", "bigint"), ("identity_seq", "bigint"),
                   *((c, "bigint") for c in DEVICE_MONEY_COLUMNS))

_SPANS: Final = (("hall", "text"), ("device", "text"), ("first_seq", "bigint"), ("last_seq", "bigint"))

_SPANS_CONFLICT: Final = (" ON CONFLICT (hall, device, first_seq) DO UPDATE SET last_seq ="
                          " GREATEST(device_spans.last_seq, excluded.last_seq)")

_COPY_FROM: Final = 16
"""Events from which a batch goes in by COPY; fewer go as one multi-row ``unnest`` insert (a COPY costs
two extra round trips, which a live batch of a few events does not win back)."""

_EVENT_TYPES: Final = ("text", "bigint", "text", "text", "text", "bigint", "bigint", "bigint", "text", "text", "text")


class PgIngest(IngestReads):
    """:class:`~central.repos.ingest.IngestRepository` on a :class:`PgDatabase`."""

    def __init__(self, db: PgDatabase) -> None:
        super().__init__(db)
        self._db = db
        self._signals = PgChainSignals(db)

    async def ingest_staged(self, staged: StagedEvents, *, signed: SignedHeader | None = None) -> IngestResult:
        async with self._db.transaction() as con:
            result = await self._ingest(con, staged, signed)
        if result.status == "stored":
            self._signals.local.moved(staged.hall)   # this process's waiters, also without notifications
        return result

    async def wait_chain_moved(self, hall: str, past_seq: int, timeout: float) -> bool:
        return await self._signals.wait_moved(hall, past_seq, timeout)

    async def ask_holders(self, hall: str, seq: int, timeout: float) -> bool:
        return await self._signals.ask(hall, seq, timeout)

    async def answer_holders(self, holds: Callable[[str, int], bool]) -> Callable[[], None]:
        return await self._signals.serve(holds)

    async def _ingest(self, con: PgConn, staged: StagedEvents, signed: SignedHeader | None) -> IngestResult:
        hall = staged.hall
        staged, new = await run_pg(con, chain_end(POSTGRES, staged))
        if isinstance(new, IngestResult):
            return new
        last = new.last_seq
        if new.count >= _COPY_FROM:
            await con.copy_rows("events", EVENT_COLUMNS, zip(*[iter(new.rows)] * WIDTH, strict=True))
        else:
            await upsert(con, "events", tuple(zip(EVENT_COLUMNS, _EVENT_TYPES, strict=True)), new.rows)
        fx = new.effects
        await insert_rollups(con, fx.rollups)
        await insert_day_tables(con, hall, fx)
        await insert_marks(con, hall, fx.devices)   # before the devices' totals move
        unstated, stated = device_rows(hall, fx.devices)
        await upsert(con, "devices", _DEVICES, unstated, DEVICES_CONFLICT.format(enabled="devices.enabled"))
        await upsert(con, "devices", _DEVICES, stated, DEVICES_CONFLICT.format(enabled="excluded.enabled"))
        await upsert(con, "device_spans", _SPANS, span_rows(hall, fx.devices), _SPANS_CONFLICT)
        new_hash = new.hash_at(-1)
        await con.execute(MOVE_END, hall, last, new_hash, hall)   # and wakes the workers waiting on it
        if signed is not None:  # export (issue 04): the hall's signature over this chain end
            await insert_signed_header(con, hall, last, signed, staged.central_time)
        return IngestResult("stored", last, new_hash, stored=new.count, skipped=staged.count - new.count,
                            money_errors=tuple(fx.money_errors), missed=new.missed)

    async def log(self, entries: Sequence[LogEntry]) -> None:
        if not entries:
            return
        async with self._db.transaction() as con:
            await con.executemany(INSERT_LOG, [(e.time, e.hall, e.device, e.kind, e.detail) for e in entries])
