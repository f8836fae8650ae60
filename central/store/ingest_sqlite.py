"""Ingest on SQLite (:class:`central.repos.ingest.IngestRepository`): every batch and integration-log row
rides the database's group commit (:mod:`central.store.group_commit`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from central.chainend import decide, stored_hash_needed
from central.repos.errors import StoreError
from central.repos.ingest import IngestResult, LogEntry, SignedHeader
from central.staging import EVENT_COLUMNS, WIDTH, StagedEvents, stage_events
from protocols.sync import Event
from protocols.sync.gamingday import day_rule

from .effect_rows import DEVICE_WIDTH, device_rows, span_rows
from .effect_rows import DEVICES_CONFLICT as _DEVICES_CONFLICT
from .export_sqlite import insert_signed_header
from .rollup_tables import INSERT_MARKS as _INSERT_MARKS
from .rollup_tables import insert_day_tables as _insert_day_tables
from .rollup_tables import insert_rollups as _insert_rollups
from .rollup_tables import marks as _marks
from .schema import DEVICE_MONEY_COLUMNS
from .sqlhelpers import EVENT_READ_COLUMNS, event_record, events_filter, insert_rows, log_filter
from .sqlhelpers import INSERT_LOG as _INSERT_LOG
from .sqlhelpers import where_clause as _where
from .sqlite_db import SqliteDatabase

_MAX_EVENTS_LIMIT = 10_000


_INSERT_EVENTS = f"INSERT INTO events ({', '.join(EVENT_COLUMNS)})"


_INSERT_DEVICES = (f"INSERT INTO devices (hall, id, kind, online, enabled, first_seen, last_seen, last_seq,"
                   f" last_play_seq, {', '.join(DEVICE_MONEY_COLUMNS)})")


_INSERT_SPANS = "INSERT INTO device_spans (hall, device, first_seq, last_seq)"


_SPANS_CONFLICT = (" ON CONFLICT (hall, device, first_seq) DO UPDATE SET last_seq ="
                   " MAX(device_spans.last_seq, excluded.last_seq)")


class SqliteIngest:
    """:class:`~central.repos.ingest.IngestRepository` on a :class:`SqliteDatabase`."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def ingest_events(self, hall: str, events: Sequence[Event], *, central_time: int,
                            signed: SignedHeader | None = None) -> IngestResult:
        if not events:
            raise ValueError("ingest_events needs at least one event")
        return await self.ingest_staged(stage_events(hall, events, central_time), signed=signed)

    async def ingest_staged(self, staged: StagedEvents, *, signed: SignedHeader | None = None) -> IngestResult:
        # In the next group commit, in its own savepoint: a conflicting or failing batch spoils only itself.
        return await self._db.group_commit.submit(lambda con: self._ingest(con, staged, signed), events=staged.count)

    def _ingest(self, con: sqlite3.Connection, staged: StagedEvents, signed: SignedHeader | None) -> IngestResult:
        hall = staged.hall
        row = con.execute("SELECT last_seq, last_hash, timezone, gaming_day_start FROM halls WHERE id = ?",
                          (hall,)).fetchone()
        if row is None:
            raise StoreError(f"hall {hall!r} is not registered")
        last_seq, last_hash = row[0], row[1]
        staged = staged.under(day_rule(row[2], row[3]))   # the hall's day, also if it changed since staging
        seq = stored_hash_needed(staged, last_seq)
        found = None if seq is None else con.execute("SELECT hash FROM events WHERE hall = ? AND seq = ?",
                                                     (hall, seq)).fetchone()
        new = decide(staged, last_seq, last_hash, None if found is None else found[0])
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
        columns = EVENT_READ_COLUMNS
        row = event_record

        def body(con: sqlite3.Connection) -> list[dict[str, Any]]:
            if device is not None and hall is not None:
                return by_spans(con)
            sql = f"SELECT {columns} FROM events{_where(where)} ORDER BY hall, seq LIMIT ?"
            return [row(r) for r in con.execute(sql, [*params, limit])]

        def by_spans(con: sqlite3.Connection) -> list[dict[str, Any]]:
            # No per-event device index (schema 5): the device's spans (one per batch, schema 6) say
            # which seq ranges of the hall hold its events, so only those are read.
            out: list[dict[str, Any]] = []
            start = after_seq or 0
            sql = f"SELECT {columns} FROM events{_where([*where, 'seq >= ?', 'seq <= ?'])} ORDER BY seq LIMIT ?"
            spans = con.execute("SELECT first_seq, last_seq FROM device_spans WHERE hall = ? AND device = ?"
                                " AND last_seq > ? ORDER BY first_seq", (hall, device, start))
            for first, last in spans:
                out.extend(row(r) for r in con.execute(sql, [*params, max(first, start + 1), last,
                                                             limit - len(out)]))
                if len(out) >= limit:
                    break
            return out

        return await self._db.reader.run(body)

    async def integration_log(self, *, hall: str | None = None, kind: str | None = None, limit: int = 100,
                              halls: Sequence[str] | None = None, device: str | None = None,
                              time_from: int | None = None, time_to: int | None = None) -> list[LogEntry]:
        found = log_filter(hall=hall, kind=kind, halls=halls, device=device, time_from=time_from, time_to=time_to)
        if found is None:
            return []
        where, params = found
        params.append(max(1, min(limit, _MAX_EVENTS_LIMIT)))
        sql = f"SELECT time, hall, device, kind, detail FROM integration_log{_where(where)} ORDER BY id DESC LIMIT ?"

        def body(con: sqlite3.Connection) -> list[LogEntry]:
            return [LogEntry(kind=r[3], detail=r[4], time=r[0], hall=r[1], device=r[2])
                    for r in con.execute(sql, params)]

        return await self._db.reader.run(body)
