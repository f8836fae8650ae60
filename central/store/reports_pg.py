"""Rollups and reports on PostgreSQL (:class:`central.repos.reports.ReportRepository`).

The period logic is SQLite's (:mod:`central.store.sqlhelpers`: whole months from ``rollups_monthly``,
the rest day by day, the zero-key rule of a subtracted period), read through the same SQL; the
many-device reads pass their devices as arrays (``unnest``) instead of SQLite's VALUES lists, so one
statement serves any number of devices. Each method reads in one snapshot (REPEATABLE READ)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from central.eventmoney import event_money
from central.repos.devices import DeviceEventRow
from central.repos.reports import GgrRow, HourRow, PlacedCell, RollupCell
from protocols.sync.money import ZERO, Contribution

from . import report_queries as rq
from .pg_db import PgConn, PgDatabase
from .sqlhelpers import ROLLUP_MONEY
from .sqlhelpers import hall_scope as _scope
from .sqlhelpers import where_clause as _where

_DECODER = msgspec.json.Decoder()

_INT64_MAX = 2**63 - 1


def _row(r: Sequence[Any]) -> DeviceEventRow:
    return DeviceEventRow(seq=r[0], agent_time=r[1], type=r[2], data=_DECODER.decode(r[3]))


async def _range_money(con: PgConn, hall: str, device: str, after: int, through: int,
                       start: Contribution | None, end: Contribution | None) -> Contribution:
    """The device's events money with seq in (after, through]: the difference of its marks when both
    ends are meter snapshots with one, else the range's events read and summed."""
    if start is not None and end is not None:
        return Contribution(end.bets - start.bets, end.wins - start.wins, end.rounds - start.rounds,
                            end.cash_in - start.cash_in, end.cash_out - start.cash_out)
    total = ZERO
    for kind, data in await con.fetch("SELECT type, data FROM events WHERE hall = ? AND seq > ?"
                                      " AND seq <= ? AND device = ?", hall, after, through, device):
        money = event_money(kind, _DECODER.decode(data))
        if money is not ZERO:
            total = total + money
    return total


class PgReports:
    """:class:`~central.repos.reports.ReportRepository` on a :class:`PgDatabase`."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    async def ggr(self, group_by: str, *, day_from: dt.date | None = None, day_to: dt.date | None = None,
                  hall: str | None = None, halls: Sequence[str] | None = None) -> list[GgrRow]:
        query = rq.ggr_query(group_by, day_from, day_to, hall, halls)
        if query is None:
            return []
        async with self._db.reading() as con:
            zero = query.subtracted
            present = rq.ggr_present(await con.fetch(zero.zero_keys[0], *zero.zero_keys[1])) if zero else None
            return rq.ggr_rows(group_by, await con.fetch(query.sql, *query.params), present)

    async def hourly(self, *, day: dt.date, hall: str | None = None, halls: Sequence[str] | None = None,
                     device: str | None = None) -> list[HourRow]:
        query = rq.hourly_query(day, hall, halls, device)
        if query is None:
            return []
        return rq.hour_rows(await self._db.fetch(query.sql, *query.params), device is not None)

    async def rollup_cells(self, *, day_from: dt.date | None = None, day_to: dt.date | None = None,
                           hall: str | None = None, halls: Sequence[str] | None = None) -> list[RollupCell]:
        if day_from is not None and day_from == day_to:
            return await self._day_cells(day_from, hall, halls)
        query = rq.cells_query(day_from, day_to, hall, halls)
        if query is None:
            return []
        async with self._db.reading() as con:
            rows = await con.fetch(query.sql, *query.params)
            zero = query.subtracted
            present = rq.cell_present(await con.fetch(zero.zero_keys[0], *zero.zero_keys[1])) if zero else None
        return rq.cell_rows(rows, present)

    async def _day_cells(self, day: dt.date, hall: str | None, halls: Sequence[str] | None) -> list[RollupCell]:
        where: list[str] = []
        params: list[Any] = []
        if not _scope(where, params, hall, halls):
            return []
        where.append("day = ?")
        params.append(day.isoformat())
        sql = f"SELECT hall, device, game, {ROLLUP_MONEY} FROM rollups{_where(where)} ORDER BY hall, device, game"
        return [RollupCell(*r) for r in await self._db.fetch(sql, *params)]

    async def placed_cells(self, *, day_from: dt.date | None = None, day_to: dt.date | None = None,
                           hall: str | None = None, halls: Sequence[str] | None = None) -> list[PlacedCell]:
        query = rq.placed_query(day_from, day_to, hall, halls)
        if query is None:
            return []
        return rq.placed_rows(await self._db.fetch(query.sql, *query.params))

    async def meter_snapshots(self, hall: str, device: str, *, time_from: int, time_to: int) -> list[DeviceEventRow]:
        base = ("SELECT seq, agent_time, type, data FROM events WHERE hall = ? AND device = ?"
                " AND type = 'meters.snapshot'")
        async with self._db.reading() as con:
            before = await con.fetch(base + " AND agent_time < ? ORDER BY agent_time DESC, seq DESC LIMIT 1",
                                     hall, device, time_from)
            inside = await con.fetch(base + " AND agent_time >= ? AND agent_time < ? ORDER BY seq",
                                     hall, device, time_from, time_to)
        return sorted((_row(r) for r in [*before, *inside]), key=lambda e: e.seq)

    async def device_integration_events(self, hall: str, device: str, *, after_seq: int,
                                        through_seq: int | None = None) -> list[DeviceEventRow]:
        top = _INT64_MAX if through_seq is None else through_seq
        rows = await self._db.fetch("SELECT seq, agent_time, type, data FROM events WHERE hall = ? AND device = ?"
                                    " AND type = 'integration' AND seq > ? AND seq <= ? ORDER BY seq",
                                    hall, device, after_seq, top)
        return [_row(r) for r in rows]

    async def snapshot_after(self, hall: str, device: str, time: int) -> int | None:
        row = await self._db.fetchrow("SELECT seq FROM events WHERE hall = ? AND device = ?"
                                      " AND type = 'meters.snapshot' AND agent_time >= ?"
                                      " ORDER BY agent_time, seq LIMIT 1", hall, device, time)
        return None if row is None else int(row[0])

    async def device_money(self, hall: str, device: str, ranges: Sequence[tuple[int, int]]) -> Contribution:
        total = ZERO
        async with self._db.reading() as con:
            for after, through in ranges:
                marks = {r[0]: Contribution(*r[1:]) for r in await con.fetch(
                    "SELECT seq, bets, wins, rounds, cash_in, cash_out FROM device_marks"
                    " WHERE hall = ? AND device = ? AND seq IN (?, ?)", hall, device, after, through)}
                total = total + await _range_money(con, hall, device, after, through, marks.get(after),
                                                   marks.get(through))
        return total

    # ---- the same reads for many devices of a hall: one statement per kind, the devices as an array ----
    async def meter_snapshots_of(self, hall: str, devices: Sequence[str], *, time_from: int,
                                 time_to: int) -> dict[str, list[DeviceEventRow]]:
        wanted = sorted(set(devices))
        before = ("SELECT e.device, e.seq, e.agent_time, e.type, e.data FROM unnest(?::text[]) AS w(device)"
                  " JOIN events e ON e.hall = ? AND e.seq = (SELECT s.seq FROM events s"
                  " WHERE s.hall = ? AND s.device = w.device AND s.type = 'meters.snapshot'"
                  " AND s.agent_time < ? ORDER BY s.agent_time DESC, s.seq DESC LIMIT 1)")
        inside = ("SELECT device, seq, agent_time, type, data FROM events WHERE hall = ?"
                  " AND type = 'meters.snapshot' AND device = ANY(?::text[]) AND agent_time >= ? AND agent_time < ?")
        async with self._db.reading() as con:
            rows = [*await con.fetch(before, wanted, hall, hall, time_from),
                    *await con.fetch(inside, hall, wanted, time_from, time_to)]
        out: dict[str, list[DeviceEventRow]] = {}
        for r in sorted(rows, key=lambda r: (r[0], r[1])):
            out.setdefault(r[0], []).append(_row(tuple(r)[1:]))
        return out

    async def snapshots_after(self, hall: str, devices: Sequence[str], time: int) -> dict[str, int]:
        sql = ("SELECT w.device, (SELECT s.seq FROM events s WHERE s.hall = ? AND s.device = w.device"
               " AND s.type = 'meters.snapshot' AND s.agent_time >= ? ORDER BY s.agent_time, s.seq LIMIT 1)"
               " FROM unnest(?::text[]) AS w(device)")
        rows = await self._db.fetch(sql, hall, time, sorted(set(devices)))
        return {d: int(seq) for d, seq in rows if seq is not None}

    async def integration_events_of(self, hall: str,
                                    ranges: Mapping[str, tuple[int, int | None]]) -> dict[str, list[DeviceEventRow]]:
        wanted = [(d, after, _INT64_MAX if through is None else through)
                  for d, (after, through) in sorted(ranges.items())]
        sql = ("SELECT e.device, e.seq, e.agent_time, e.type, e.data"
               " FROM unnest(?::text[], ?::bigint[], ?::bigint[]) AS w(device, after_seq, through_seq)"
               " JOIN events e ON e.hall = ? AND e.device = w.device AND e.type = 'integration'"
               " AND e.seq > w.after_seq AND e.seq <= w.through_seq ORDER BY e.device, e.seq")
        out: dict[str, list[DeviceEventRow]] = {}
        rows = await self._db.fetch(sql, [w[0] for w in wanted], [w[1] for w in wanted], [w[2] for w in wanted],
                                    hall)
        for r in rows:
            out.setdefault(r[0], []).append(_row(tuple(r)[1:]))
        return out

    async def devices_money(self, hall: str,
                            wanted: Sequence[tuple[str, Sequence[tuple[int, int]]]]) -> list[Contribution]:
        ends = sorted({(device, seq) for device, ranges in wanted for r in ranges for seq in r})
        sql = ("SELECT m.device, m.seq, m.bets, m.wins, m.rounds, m.cash_in, m.cash_out"
               " FROM unnest(?::text[], ?::bigint[]) AS w(device, seq)"
               " JOIN device_marks m ON m.hall = ? AND m.device = w.device AND m.seq = w.seq")
        out = []
        async with self._db.reading() as con:
            marks = {(r[0], r[1]): Contribution(*tuple(r)[2:])
                     for r in await con.fetch(sql, [e[0] for e in ends], [e[1] for e in ends], hall)}
            for device, ranges in wanted:
                total = ZERO
                for after, through in ranges:
                    total = total + await _range_money(con, hall, device, after, through,
                                                       marks.get((device, after)), marks.get((device, through)))
                out.append(total)
        return out

    async def device_days(self, *, day_from: dt.date, day_to: dt.date, hall: str | None = None,
                          halls: Sequence[str] | None = None, device: str | None = None,
                          after: tuple[str, str, str] | None = None,
                          limit: int | None = None) -> dict[tuple[str, str, str], Contribution]:
        where: list[str] = ["day >= ?", "day <= ?"]
        params: list[Any] = [day_from.isoformat(), day_to.isoformat()]
        if not _scope(where, params, hall, halls):
            return {}
        if device is not None:
            where.append("device = ?")
            params.append(device)
        if after is not None:
            where.append("(hall, device, day) > (?, ?, ?)")
            params.extend(after)
        params.append(limit)   # LIMIT NULL: no limit
        sql = (f"SELECT hall, device, day, bets, wins, rounds, cash_in, cash_out FROM device_days"
               f" WHERE {' AND '.join(where)} ORDER BY hall, device, day LIMIT ?::bigint")
        return {(r[0], r[1], r[2]): Contribution(*tuple(r)[3:]) for r in await self._db.fetch(sql, *params)}
