"""Ingest on SQLite (:class:`central.repos.ingest.IngestRepository`): every batch and integration-log row
rides the database's group commit (:mod:`central.store.group_commit`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from central.repos.ingest import IngestResult, LogEntry, SignedHeader
from central.staging import EVENT_COLUMNS, WIDTH, StagedEvents

from .chain_signals import ChainSignals
from .effect_rows import DEVICE_WIDTH, device_rows, span_rows
from .effect_rows import DEVICES_CONFLICT as _DEVICES_CONFLICT
from .export_sqlite import insert_signed_header
from .ingest_shared import IngestReads, chain_end
from .plans import SQLITE
from .rollup_tables import INSERT_MARKS as _INSERT_MARKS
from .rollup_tables import insert_day_tables as _insert_day_tables
from .rollup_tables import insert_rollups as _insert_rollups
from .rollup_tables import marks as _marks
from .schema import DEVICE_MONEY_COLUMNS
from .sqlhelpers import INSERT_LOG as _INSERT_LOG
from .sqlhelpers import insert_rows, run_sqlite
from .sqlite_db import SqliteDatabase

_INSERT_EVENTS = f"INSERT INTO events ({', '.join(EVENT_COLUMNS)})"


_INSERT_DEVICES = (f"INSERT INTO devices (hall, id, kind, online, enabled, first_seen, last_seen, last_seq,"
                   f" last_play_seq, identity_seq, {', '.join(DEVICE_MONEY_COLUMNS)})")


_INSERT_SPANS = "INSERT INTO device_spans (hall, device, first_seq, last_seq)"


_SPANS_CONFLICT = (" ON CONFLICT (hall, device, first_seq) DO UPDATE SET last_seq ="
                   " MAX(device_spans.last_seq, excluded.last_seq)")


class SqliteIngest(IngestReads):
    """:class:`~central.repos.ingest.IngestRepository` on a :class:`SqliteDatabase`."""

    def __init__(self, db: SqliteDatabase) -> None:
        super().__init__(db)
        self._db = db
        self._signals = ChainSignals()   # one process serves a SQLite file: its workers are all here

    async def ingest_staged(self, staged: StagedEvents, *, signed: SignedHeader | None = None) -> IngestResult:
        # In the next group commit, in its own savepoint: a conflicting or failing batch spoils only itself.
        result = await self._db.group_commit.submit(lambda con: self._ingest(con, staged, signed),
                                                    events=staged.count)
        if result.status == "stored":
            self._signals.moved(staged.hall)   # committed: a waiter's look now sees the new end
        return result

    async def wait_chain_moved(self, hall: str, past_seq: int, timeout: float) -> bool:
        async def read_end() -> int | None:
            rows = await self._db.fetch("SELECT last_seq FROM halls WHERE id = ?", hall)
            return int(rows[0][0]) if rows else None
        return await self._signals.wait_moved(hall, past_seq, timeout, read_end)

    async def ask_holders(self, hall: str, seq: int, timeout: float) -> bool:
        return self._signals.holds(hall, seq)

    async def answer_holders(self, holds: Callable[[str, int], bool]) -> Callable[[], None]:
        return self._signals.serve(holds)

    def _ingest(self, con: sqlite3.Connection, staged: StagedEvents, signed: SignedHeader | None) -> IngestResult:
        hall = staged.hall
        staged, new = run_sqlite(con, chain_end(SQLITE, staged))
        if isinstance(new, IngestResult):
            return new
        last = new.last_seq
        insert_rows(con, _INSERT_EVENTS, WIDTH, new.rows)
        fx = new.effects
        _insert_rollups(con, fx.rollups)
        _insert_day_tables(con, hall, fx)
        insert_rows(con, _INSERT_MARKS, 8, _marks(con, hall, fx.devices))   # before the devices' totals move
        unstated, stated = device_rows(hall, fx.devices)   # whether the batch said a device is enabled
        insert_rows(con, _INSERT_DEVICES, DEVICE_WIDTH, unstated,
                    _DEVICES_CONFLICT.format(enabled="devices.enabled"))
        insert_rows(con, _INSERT_DEVICES, DEVICE_WIDTH, stated, _DEVICES_CONFLICT.format(enabled="excluded.enabled"))
        insert_rows(con, _INSERT_SPANS, 4, span_rows(hall, fx.devices), _SPANS_CONFLICT)
        new_hash = new.hash_at(-1)
        con.execute("UPDATE halls SET last_seq = ?, last_hash = ? WHERE id = ?", (last, new_hash, hall))
        if signed is not None:  # export (issue 04): the hall's signature over this chain end
            insert_signed_header(con, hall, last, signed, staged.central_time)
        return IngestResult("stored", last, new_hash, stored=new.count, skipped=staged.count - new.count,
                            money_errors=tuple(fx.money_errors), missed=new.missed)

    async def log(self, entries: Sequence[LogEntry]) -> None:
        if not entries:
            return
        rows = [(e.time, e.hall, e.device, e.kind, e.detail) for e in entries]
        # Duplicates, gaps and refusals log on ingest's path: they ride the next group commit instead of
        # paying a commit (an fsync) of their own between two groups.
        await self._db.group_commit.submit(lambda con: con.executemany(_INSERT_LOG, rows), events=len(rows))
