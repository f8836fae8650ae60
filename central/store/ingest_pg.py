"""Ingest on PostgreSQL (:class:`central.repos.ingest.IngestRepository`).

One transaction per batch (PostgreSQL's own WAL flush groups concurrent commits, so no group commit
of ours): lock the hall's row (``SELECT … FOR UPDATE``), decide by :mod:`central.chainend` exactly as
the SQLite backend does, COPY the new events, upsert their effects (:mod:`central.store.rollup_pg`)
and move the chain end, commit. The row lock makes a second batch of the same hall, from this process
or another one on the same database, wait and then see the first one's chain end; batches of other
halls go on beside it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from central.chainend import decide, stored_hash_needed
from central.repos.errors import StoreError
from central.repos.ingest import IngestResult, LogEntry, SignedHeader
from central.staging import EVENT_COLUMNS, WIDTH, StagedEvents, stage_events
from protocols.sync import Event
from protocols.sync.gamingday import day_rule

from .effect_rows import DEVICES_CONFLICT, device_rows, span_rows
from .export_pg import insert_signed_header
from .pg_db import PgConn, PgDatabase
from .rollup_pg import insert_day_tables, insert_marks, insert_rollups, upsert
from .schema import DEVICE_MONEY_COLUMNS
from .sqlhelpers import EVENT_READ_COLUMNS, INSERT_LOG, event_record, events_filter, log_filter, where_clause

_MAX_EVENTS_LIMIT = 10_000

_DEVICES: Final = (("hall", "text"), ("id", "text"), ("kind", "text"), ("online", "bigint"), ("enabled", "bigint"),
                   ("first_seen", "bigint"), ("last_seen", "bigint"), ("last_seq", "bigint"),
                   ("last_play_seq", "bigint"), *((c, "bigint") for c in DEVICE_MONEY_COLUMNS))

_SPANS: Final = (("hall", "text"), ("device", "text"), ("first_seq", "bigint"), ("last_seq", "bigint"))

_SPANS_CONFLICT: Final = (" ON CONFLICT (hall, device, first_seq) DO UPDATE SET last_seq ="
                          " GREATEST(device_spans.last_seq, excluded.last_seq)")

_COPY_FROM: Final = 16
"""Events from which a batch goes in by COPY; fewer go as one multi-row ``unnest`` insert (a COPY costs
two extra round trips, which a live batch of a few events does not win back)."""

_EVENT_TYPES: Final = ("text", "bigint", "text", "text", "text", "bigint", "bigint", "bigint", "text", "text", "text")


class PgIngest:
    """:class:`~central.repos.ingest.IngestRepository` on a :class:`PgDatabase`."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    async def ingest_events(self, hall: str, events: Sequence[Event], *, central_time: int,
                            signed: SignedHeader | None = None) -> IngestResult:
        if not events:
            raise ValueError("ingest_events needs at least one event")
        return await self.ingest_staged(stage_events(hall, events, central_time), signed=signed)

    async def ingest_staged(self, staged: StagedEvents, *, signed: SignedHeader | None = None) -> IngestResult:
        async with self._db.transaction() as con:
            return await self._ingest(con, staged, signed)

    async def _ingest(self, con: PgConn, staged: StagedEvents, signed: SignedHeader | None) -> IngestResult:
        hall = staged.hall
        row = await con.fetchrow("SELECT last_seq, last_hash, timezone, gaming_day_start FROM halls WHERE id = ?"
                                 " FOR UPDATE", hall)
        if row is None:
            raise StoreError(f"hall {hall!r} is not registered")
        last_seq, last_hash = row[0], row[1]
        staged = staged.under(day_rule(row[2], row[3]))   # the hall's day, also if it changed since staging
        seq = stored_hash_needed(staged, last_seq)
        found = None if seq is None else await con.fetchval("SELECT hash FROM events WHERE hall = ? AND seq = ?",
                                                            hall, seq)
        new = decide(staged, last_seq, last_hash, found)
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
        await con.execute("UPDATE halls SET last_seq = ?, last_hash = ? WHERE id = ?", last, new_hash, hall)
        if signed is not None:  # export (issue 04): the hall's signature over this chain end
            await insert_signed_header(con, hall, last, signed, staged.central_time)
        return IngestResult("stored", last, new_hash, stored=new.count, skipped=staged.count - new.count,
                            money_errors=tuple(fx.money_errors), missed=new.missed)

    async def log(self, entries: Sequence[LogEntry]) -> None:
        if not entries:
            return
        async with self._db.transaction() as con:
            await con.executemany(INSERT_LOG, [(e.time, e.hall, e.device, e.kind, e.detail) for e in entries])

    async def events(self, *, hall: str | None = None, device: str | None = None, type: str | None = None,
                     time_from: int | None = None, time_to: int | None = None, after_seq: int | None = None,
                     limit: int = 100, halls: Sequence[str] | None = None,
                     after_hall: str | None = None) -> list[dict[str, Any]]:
        found = events_filter(hall=hall, device=device, type=type, time_from=time_from, time_to=time_to,
                              after_seq=after_seq, halls=halls, after_hall=after_hall)
        if found is None:
            return []
        where, params = found
        limit = max(1, min(limit, _MAX_EVENTS_LIMIT))
        if device is None or hall is None:
            sql = f"SELECT {EVENT_READ_COLUMNS} FROM events{where_clause(where)} ORDER BY hall, seq LIMIT ?"
            return [event_record(r) for r in await self._db.fetch(sql, *params, limit)]
        # No per-event device index: the device's spans (one per batch) say which seq ranges of the
        # hall hold its events, so only those are read (as on SQLite), in one snapshot.
        out: list[dict[str, Any]] = []
        start = after_seq or 0
        sql = (f"SELECT {EVENT_READ_COLUMNS} FROM events{where_clause([*where, 'seq >= ?', 'seq <= ?'])}"
               " ORDER BY seq LIMIT ?")
        async with self._db.reading() as con:
            spans = await con.fetch("SELECT first_seq, last_seq FROM device_spans WHERE hall = ? AND device = ?"
                                    " AND last_seq > ? ORDER BY first_seq", hall, device, start)
            for first, last in spans:
                rows = await con.fetch(sql, *params, max(first, start + 1), last, limit - len(out))
                out.extend(event_record(r) for r in rows)
                if len(out) >= limit:
                    break
        return out

    async def integration_log(self, *, hall: str | None = None, kind: str | None = None, limit: int = 100,
                              halls: Sequence[str] | None = None, device: str | None = None,
                              time_from: int | None = None, time_to: int | None = None) -> list[LogEntry]:
        found = log_filter(hall=hall, kind=kind, halls=halls, device=device, time_from=time_from, time_to=time_to)
        if found is None:
            return []
        where, params = found
        sql = (f"SELECT time, hall, device, kind, detail FROM integration_log{where_clause(where)}"
               " ORDER BY id DESC LIMIT ?")
        rows = await self._db.fetch(sql, *params, max(1, min(limit, _MAX_EVENTS_LIMIT)))
        return [LogEntry(kind=r[3], detail=r[4], time=r[0], hall=r[1], device=r[2]) for r in rows]
