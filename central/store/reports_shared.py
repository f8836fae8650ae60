"""Rollups and reports (:class:`central.repos.reports.ReportRepository`) written once for both backends,
as plans (:mod:`central.store.plans`): GGR, hours, the catalog's rollup cells and the reconciliation's
per-device reads.

The period logic is in :mod:`central.store.report_queries` (whole months from ``rollups_monthly``, the
rest day by day, the zero-key rule of a subtracted period). Each method reads in one snapshot (SQLite's
reader; PostgreSQL REPEATABLE READ). The many-device reads name their devices in a ``VALUES`` list of
at most :data:`CHUNK` rows per statement, typed with ``CAST`` so PostgreSQL infers the columns as
SQLite does. Event data is decoded in Python (no JSON functions).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final, TypeVar

import msgspec

from central.eventmoney import event_money
from central.repos.devices import DeviceEventRow
from central.repos.reports import GgrRow, HourRow, PlacedCell, RollupCell
from protocols.sync.money import ZERO, Contribution

from . import report_queries as rq
from .plans import Plan, PlanDatabase, query
from .sqlhelpers import ROLLUP_MONEY, hall_scope, where_clause

T = TypeVar("T")

_DECODER = msgspec.json.Decoder()
_INT64_MAX: Final = 2**63 - 1

CHUNK: Final = 400
"""Devices (or device and seq pairs) per statement of the many-device reads: at most 3 parameters each,
well inside SQLite's 32,766 (and PostgreSQL's 65,535) bound parameters."""

_SNAPSHOTS: Final = ("SELECT seq, agent_time, type, data FROM events WHERE hall = ? AND device = ?"
                     " AND type = 'meters.snapshot'")


def _row(r: Sequence[Any]) -> DeviceEventRow:
    return DeviceEventRow(seq=r[0], agent_time=r[1], type=r[2], data=_DECODER.decode(r[3]))


def _chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), CHUNK):
        yield items[start:start + CHUNK]


def _values(columns: int, rows: int) -> str:
    """``VALUES (?, CAST(? AS BIGINT), …), …``: the first column text, the others 64-bit integers."""
    one = "(" + ", ".join(["?", *["CAST(? AS BIGINT)"] * (columns - 1)]) + ")"
    return "VALUES " + ", ".join([one] * rows)


def _range_money(hall: str, device: str, after: int, through: int, start: Contribution | None,
                 end: Contribution | None) -> Plan[Contribution]:
    """The device's events money with seq in (after, through]: the difference of its marks when both
    ends are meter snapshots with one, else the range's events read and summed (a range between two
    snapshots: at most about 12 h of one machine's play)."""
    if start is not None and end is not None:
        return Contribution(end.bets - start.bets, end.wins - start.wins, end.rounds - start.rounds,
                            end.cash_in - start.cash_in, end.cash_out - start.cash_out)
    total = ZERO
    for kind, data in (yield query("SELECT type, data FROM events WHERE hall = ? AND seq > ? AND seq <= ?"
                                   " AND device = ?", hall, after, through, device)):
        money = event_money(kind, _DECODER.decode(data))
        if money is not ZERO:
            total = total + money
    return total


def _ggr(group_by: str, q: rq.Query) -> Plan[list[GgrRow]]:
    zero = q.subtracted
    present = rq.ggr_present((yield query(zero.zero_keys[0], *zero.zero_keys[1]))) if zero else None
    return rq.ggr_rows(group_by, (yield query(q.sql, *q.params)), present)


def _cells(q: rq.Query) -> Plan[list[RollupCell]]:
    rows = yield query(q.sql, *q.params)
    zero = q.subtracted
    return rq.cell_rows(rows, rq.cell_present((yield query(zero.zero_keys[0], *zero.zero_keys[1]))) if zero else None)


def _meter_snapshots(hall: str, device: str, time_from: int, time_to: int) -> Plan[list[DeviceEventRow]]:
    before = yield query(_SNAPSHOTS + " AND agent_time < ? ORDER BY agent_time DESC, seq DESC LIMIT 1",
                         hall, device, time_from)
    inside = yield query(_SNAPSHOTS + " AND agent_time >= ? AND agent_time < ? ORDER BY seq",
                         hall, device, time_from, time_to)
    return sorted((_row(r) for r in [*before, *inside]), key=lambda e: e.seq)


def _device_money(hall: str, device: str, ranges: Sequence[tuple[int, int]]) -> Plan[Contribution]:
    total = ZERO
    for after, through in ranges:
        marks = {r[0]: Contribution(*tuple(r)[1:]) for r in (yield query(
            "SELECT seq, bets, wins, rounds, cash_in, cash_out FROM device_marks"
            " WHERE hall = ? AND device = ? AND seq IN (?, ?)", hall, device, after, through))}
        total = total + (yield from _range_money(hall, device, after, through, marks.get(after), marks.get(through)))
    return total


def _meter_snapshots_of(hall: str, devices: Sequence[str], time_from: int,
                        time_to: int) -> Plan[dict[str, list[DeviceEventRow]]]:
    rows: list[Sequence[Any]] = []
    for chunk in _chunks(sorted(set(devices))):
        # the newest snapshot before the period (the opening meters): one index probe per device
        rows += yield query(f"WITH wanted(device) AS ({_values(1, len(chunk))})"
                            " SELECT e.device, e.seq, e.agent_time, e.type, e.data FROM wanted w JOIN events e"
                            " ON e.hall = ? AND e.seq = (SELECT s.seq FROM events s"
                            " WHERE s.hall = ? AND s.device = w.device AND s.type = 'meters.snapshot'"
                            " AND s.agent_time < ? ORDER BY s.agent_time DESC, s.seq DESC LIMIT 1)",
                            *chunk, hall, hall, time_from)
        rows += yield query("SELECT device, seq, agent_time, type, data FROM events WHERE hall = ?"
                            f" AND type = 'meters.snapshot' AND device IN ({', '.join('?' * len(chunk))})"
                            " AND agent_time >= ? AND agent_time < ?", hall, *chunk, time_from, time_to)
    out: dict[str, list[DeviceEventRow]] = {}
    for r in sorted(rows, key=lambda r: (r[0], r[1])):
        out.setdefault(r[0], []).append(_row(tuple(r)[1:]))
    return out


def _snapshots_after(hall: str, devices: Sequence[str], time: int) -> Plan[dict[str, int]]:
    out: dict[str, int] = {}
    for chunk in _chunks(sorted(set(devices))):
        rows = yield query(f"WITH wanted(device) AS ({_values(1, len(chunk))})"
                           " SELECT w.device, (SELECT s.seq FROM events s WHERE s.hall = ? AND s.device = w.device"
                           " AND s.type = 'meters.snapshot' AND s.agent_time >= ? ORDER BY s.agent_time, s.seq"
                           " LIMIT 1) FROM wanted w", *chunk, hall, time)
        out.update((d, int(seq)) for d, seq in rows if seq is not None)
    return out


def _integration_events_of(hall: str, wanted: Sequence[tuple[str, int, int]]) -> Plan[dict[str, list[DeviceEventRow]]]:
    out: dict[str, list[DeviceEventRow]] = {}
    for chunk in _chunks(wanted):
        for r in (yield query(f"WITH wanted(device, after_seq, through_seq) AS ({_values(3, len(chunk))})"
                              " SELECT e.device, e.seq, e.agent_time, e.type, e.data FROM wanted w JOIN events e"
                              " ON e.hall = ? AND e.device = w.device AND e.type = 'integration'"
                              " AND e.seq > w.after_seq AND e.seq <= w.through_seq ORDER BY e.device, e.seq",
                              *(x for row in chunk for x in row), hall)):
            out.setdefault(r[0], []).append(_row(tuple(r)[1:]))
    return out


def _devices_money(hall: str, wanted: Sequence[tuple[str, Sequence[tuple[int, int]]]]) -> Plan[list[Contribution]]:
    ends = sorted({(device, seq) for device, ranges in wanted for r in ranges for seq in r})
    marks: dict[tuple[str, int], Contribution] = {}
    for chunk in _chunks(ends):
        for r in (yield query(f"WITH wanted(device, seq) AS ({_values(2, len(chunk))})"
                              " SELECT m.device, m.seq, m.bets, m.wins, m.rounds, m.cash_in, m.cash_out FROM wanted w"
                              " JOIN device_marks m ON m.hall = ? AND m.device = w.device AND m.seq = w.seq",
                              *(x for end in chunk for x in end), hall)):
            marks[(r[0], r[1])] = Contribution(*tuple(r)[2:])
    out = []
    for device, ranges in wanted:
        total = ZERO
        for after, through in ranges:
            total = total + (yield from _range_money(hall, device, after, through, marks.get((device, after)),
                                                     marks.get((device, through))))
        out.append(total)
    return out


class SharedReports:
    """:class:`~central.repos.reports.ReportRepository` on either database."""

    def __init__(self, db: PlanDatabase) -> None:
        self._db = db

    async def ggr(self, group_by: str, *, day_from: dt.date | None = None, day_to: dt.date | None = None,
                  hall: str | None = None, halls: Sequence[str] | None = None) -> list[GgrRow]:
        q = rq.ggr_query(group_by, day_from, day_to, hall, halls)
        return [] if q is None else await self._db.read(_ggr(group_by, q))

    async def hourly(self, *, day: dt.date, hall: str | None = None, halls: Sequence[str] | None = None,
                     device: str | None = None) -> list[HourRow]:
        q = rq.hourly_query(day, hall, halls, device)
        return [] if q is None else rq.hour_rows(await self._db.fetch(q.sql, *q.params), device is not None)

    async def rollup_cells(self, *, day_from: dt.date | None = None, day_to: dt.date | None = None,
                           hall: str | None = None, halls: Sequence[str] | None = None) -> list[RollupCell]:
        if day_from is not None and day_from == day_to:
            return await self._day_cells(day_from, hall, halls)
        q = rq.cells_query(day_from, day_to, hall, halls)
        return [] if q is None else await self._db.read(_cells(q))

    async def _day_cells(self, day: dt.date, hall: str | None, halls: Sequence[str] | None) -> list[RollupCell]:
        """One gaming day's cells: there (hall, device, game) is the rollups' key, so they are its rows,
        read without the GROUP BY whose temporary B-tree was half the cost on SQLite (EXPLAIN QUERY PLAN;
        5 against 11 ms for 2,140 cells in bench/reports.py) and put in key order here (code points,
        whatever the PostgreSQL collation)."""
        where: list[str] = []
        params: list[Any] = []
        if not hall_scope(where, params, hall, halls):
            return []
        where.append("day = ?")
        params.append(day.isoformat())
        rows = await self._db.fetch(f"SELECT hall, device, game, {ROLLUP_MONEY} FROM rollups{where_clause(where)}",
                                    *params)
        cells = [RollupCell(*r) for r in rows]
        cells.sort(key=lambda c: (c.hall, c.device, c.game))   # unique on one day
        return cells

    async def placed_cells(self, *, day_from: dt.date | None = None, day_to: dt.date | None = None,
                           hall: str | None = None, halls: Sequence[str] | None = None) -> list[PlacedCell]:
        q = rq.placed_query(day_from, day_to, hall, halls)
        return [] if q is None else rq.placed_rows(await self._db.fetch(q.sql, *q.params))

    async def meter_snapshots(self, hall: str, device: str, *, time_from: int, time_to: int) -> list[DeviceEventRow]:
        return await self._db.read(_meter_snapshots(hall, device, time_from, time_to))

    async def device_integration_events(self, hall: str, device: str, *, after_seq: int,
                                        through_seq: int | None = None) -> list[DeviceEventRow]:
        top = _INT64_MAX if through_seq is None else through_seq
        return [_row(r) for r in await self._db.fetch(
            "SELECT seq, agent_time, type, data FROM events WHERE hall = ? AND device = ?"
            " AND type = 'integration' AND seq > ? AND seq <= ? ORDER BY seq", hall, device, after_seq, top)]

    async def snapshot_after(self, hall: str, device: str, time: int) -> int | None:
        rows = await self._db.fetch("SELECT seq FROM events WHERE hall = ? AND device = ?"
                                    " AND type = 'meters.snapshot' AND agent_time >= ?"
                                    " ORDER BY agent_time, seq LIMIT 1", hall, device, time)
        return int(rows[0][0]) if rows else None

    async def device_money(self, hall: str, device: str, ranges: Sequence[tuple[int, int]]) -> Contribution:
        return await self._db.read(_device_money(hall, device, ranges))

    # ---- the same reads for many devices of a hall: one statement per kind and chunk of devices ----
    async def meter_snapshots_of(self, hall: str, devices: Sequence[str], *, time_from: int,
                                 time_to: int) -> dict[str, list[DeviceEventRow]]:
        return await self._db.read(_meter_snapshots_of(hall, devices, time_from, time_to))

    async def snapshots_after(self, hall: str, devices: Sequence[str], time: int) -> dict[str, int]:
        return await self._db.read(_snapshots_after(hall, devices, time))

    async def integration_events_of(self, hall: str,
                                    ranges: Mapping[str, tuple[int, int | None]]) -> dict[str, list[DeviceEventRow]]:
        wanted = [(d, after, _INT64_MAX if through is None else through)
                  for d, (after, through) in sorted(ranges.items())]
        return await self._db.read(_integration_events_of(hall, wanted))

    async def devices_money(self, hall: str,
                            wanted: Sequence[tuple[str, Sequence[tuple[int, int]]]]) -> list[Contribution]:
        return await self._db.read(_devices_money(hall, wanted))

    async def device_days(self, *, day_from: dt.date, day_to: dt.date, hall: str | None = None,
                          halls: Sequence[str] | None = None, device: str | None = None,
                          after: tuple[str, str, str] | None = None,
                          limit: int | None = None) -> dict[tuple[str, str, str], Contribution]:
        where: list[str] = ["day >= ?", "day <= ?"]
        params: list[Any] = [day_from.isoformat(), day_to.isoformat()]
        if not hall_scope(where, params, hall, halls):
            return {}
        if device is not None:
            where.append("device = ?")
            params.append(device)
        # device_days (schema 6) holds a row for every device and gaming day with money or a meter
        # snapshot (a machine whose meters moved while no event arrived still gets its row)
        if after is not None:
            where.append("(hall, device, day) > (?, ?, ?)")
            params.extend(after)
        sql = (f"SELECT hall, device, day, bets, wins, rounds, cash_in, cash_out FROM device_days"
               f" WHERE {' AND '.join(where)} ORDER BY hall, device, day")
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return {(r[0], r[1], r[2]): Contribution(*tuple(r)[3:]) for r in await self._db.fetch(sql, *params)}
