"""Rollups and reports on SQLite (:class:`central.repos.reports.ReportRepository`): GGR, hours, the
catalog's rollup cells and the reconciliation's per-device reads. Only SQL PostgreSQL also accepts;
event data is decoded in Python."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar

import msgspec

from central.eventmoney import event_money
from central.repos.devices import DeviceEventRow
from central.repos.reports import GgrRow, HourRow, PlacedCell, RollupCell
from protocols.sync.money import ZERO, Contribution

from . import report_queries as rq
from .sqlhelpers import ROLLUP_MONEY
from .sqlhelpers import hall_scope as _scope
from .sqlhelpers import where_clause as _where
from .sqlite_db import SqliteDatabase

T = TypeVar("T")

_DECODER = msgspec.json.Decoder()


_INT64_MAX = 2**63 - 1


def _row(r: tuple[Any, ...]) -> DeviceEventRow:
    return DeviceEventRow(seq=r[0], agent_time=r[1], type=r[2], data=_DECODER.decode(r[3]))


_CHUNK = 400
"""Devices (or device and seq pairs) per statement of the many-device reads: at most 3 parameters each,
well inside SQLite's 32,766 (and PostgreSQL's 65,535) bound parameters."""


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _range_money(con: sqlite3.Connection, hall: str, device: str, after: int, through: int,
                 start: Contribution | None, end: Contribution | None) -> Contribution:
    """The device's events money with seq in (after, through]: the difference of its marks when both
    ends are meter snapshots with one (schema 5), else the range's events read and summed."""
    if start is not None and end is not None:
        return Contribution(end.bets - start.bets, end.wins - start.wins, end.rounds - start.rounds,
                            end.cash_in - start.cash_in, end.cash_out - start.cash_out)
    total = ZERO
    # streamed row by row, the hall's events in the range (no device index)
    for kind, data in con.execute("SELECT type, data FROM events WHERE hall = ? AND seq > ?"
                                  " AND seq <= ? AND device = ?", (hall, after, through, device)):
        money = event_money(kind, _DECODER.decode(data))
        if money is not ZERO:
            total = total + money
    return total


class SqliteReports:
    """:class:`~central.repos.reports.ReportRepository` on a :class:`SqliteDatabase`."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def ggr(self, group_by: str, *, day_from: dt.date | None = None, day_to: dt.date | None = None,
                  hall: str | None = None, halls: Sequence[str] | None = None) -> list[GgrRow]:
        query = rq.ggr_query(group_by, day_from, day_to, hall, halls)
        if query is None:
            return []

        def body(con: sqlite3.Connection) -> list[GgrRow]:
            zero = query.subtracted
            present = rq.ggr_present(con.execute(*zero.zero_keys)) if zero is not None else None
            return rq.ggr_rows(group_by, con.execute(query.sql, query.params), present)

        return await self._db.reader.run(body)

    async def hourly(self, *, day: dt.date, hall: str | None = None, halls: Sequence[str] | None = None,
                     device: str | None = None) -> list[HourRow]:
        query = rq.hourly_query(day, hall, halls, device)
        if query is None:
            return []
        return await self._db.reader.run(
            lambda con: rq.hour_rows(con.execute(query.sql, query.params), device is not None))

    async def rollup_cells(self, *, day_from: dt.date | None = None, day_to: dt.date | None = None,
                           hall: str | None = None, halls: Sequence[str] | None = None) -> list[RollupCell]:
        if day_from is not None and day_from == day_to:
            return await self._day_cells(day_from, hall, halls)
        query = rq.cells_query(day_from, day_to, hall, halls)
        if query is None:
            return []

        def body(con: sqlite3.Connection) -> list[RollupCell]:
            rows = con.execute(query.sql, query.params).fetchall()
            zero = query.subtracted
            return rq.cell_rows(rows, rq.cell_present(con.execute(*zero.zero_keys)) if zero is not None else None)

        return await self._db.reader.run(body)

    async def _day_cells(self, day: dt.date, hall: str | None, halls: Sequence[str] | None) -> list[RollupCell]:
        """One gaming day's cells: there (hall, device, game) is the rollups' key, so they are its rows,
        read without the GROUP BY whose temporary B-tree was half the cost (EXPLAIN QUERY PLAN; 5 against
        11 ms for 2,140 cells in bench/reports.py) and put in key order here."""
        where: list[str] = []
        params: list[Any] = []
        if not _scope(where, params, hall, halls):
            return []
        where.append("day = ?")
        params.append(day.isoformat())
        sql = f"SELECT hall, device, game, {ROLLUP_MONEY} FROM rollups{_where(where)}"

        def body(con: sqlite3.Connection) -> list[RollupCell]:
            rows = con.execute(sql, params).fetchall()
            rows.sort()   # by (hall, device, game): unique on one day
            return [RollupCell(*r) for r in rows]

        return await self._db.reader.run(body)

    async def placed_cells(self, *, day_from: dt.date | None = None, day_to: dt.date | None = None,
                           hall: str | None = None, halls: Sequence[str] | None = None) -> list[PlacedCell]:
        query = rq.placed_query(day_from, day_to, hall, halls)
        if query is None:
            return []
        return await self._db.reader.run(lambda con: rq.placed_rows(con.execute(query.sql, query.params)))

    async def meter_snapshots(self, hall: str, device: str, *, time_from: int, time_to: int) -> list[DeviceEventRow]:
        def body(con: sqlite3.Connection) -> list[DeviceEventRow]:
            base = ("SELECT seq, agent_time, type, data FROM events WHERE hall = ? AND device = ?"
                    " AND type = 'meters.snapshot'")
            before = con.execute(base + " AND agent_time < ? ORDER BY agent_time DESC, seq DESC LIMIT 1",
                                 (hall, device, time_from)).fetchall()
            inside = con.execute(base + " AND agent_time >= ? AND agent_time < ? ORDER BY seq",
                                 (hall, device, time_from, time_to)).fetchall()
            return sorted((_row(r) for r in before + inside), key=lambda e: e.seq)

        return await self._db.reader.run(body)

    async def device_integration_events(self, hall: str, device: str, *, after_seq: int,
                                        through_seq: int | None = None) -> list[DeviceEventRow]:
        sql = ("SELECT seq, agent_time, type, data FROM events WHERE hall = ? AND device = ?"
               " AND type = 'integration' AND seq > ? AND seq <= ? ORDER BY seq")
        top = _INT64_MAX if through_seq is None else through_seq
        return await self._db.reader.run(
            lambda con: [_row(r) for r in con.execute(sql, (hall, device, after_seq, top))])

    async def snapshot_after(self, hall: str, device: str, time: int) -> int | None:
        sql = ("SELECT seq FROM events WHERE hall = ? AND device = ? AND type = 'meters.snapshot'"
               " AND agent_time >= ? ORDER BY agent_time, seq LIMIT 1")

        def body(con: sqlite3.Connection) -> int | None:
            row = con.execute(sql, (hall, device, time)).fetchone()
            return None if row is None else int(row[0])

        return await self._db.reader.run(body)

    async def device_money(self, hall: str, device: str, ranges: Sequence[tuple[int, int]]) -> Contribution:
        def body(con: sqlite3.Connection) -> Contribution:
            total = ZERO
            for after, through in ranges:
                marks = {r[0]: Contribution(*r[1:]) for r in con.execute(
                    "SELECT seq, bets, wins, rounds, cash_in, cash_out FROM device_marks"
                    " WHERE hall = ? AND device = ? AND seq IN (?, ?)", (hall, device, after, through))}
                total = total + _range_money(con, hall, device, after, through, marks.get(after), marks.get(through))
            return total

        return await self._db.reader.run(body)

    # ---- the same reads for many devices of a hall: one statement per kind (and per chunk of devices) --
    async def meter_snapshots_of(self, hall: str, devices: Sequence[str], *, time_from: int,
                                 time_to: int) -> dict[str, list[DeviceEventRow]]:
        def body(con: sqlite3.Connection) -> dict[str, list[DeviceEventRow]]:
            out: dict[str, list[DeviceEventRow]] = {}
            for chunk in _chunks(sorted(set(devices)), _CHUNK):
                listed = ", ".join("?" for _ in chunk)
                # the newest snapshot before the period (the opening meters): one index probe per device
                before = (f"WITH wanted(device) AS (VALUES {', '.join('(?)' for _ in chunk)})"
                          " SELECT e.device, e.seq, e.agent_time, e.type, e.data FROM wanted w JOIN events e"
                          " ON e.hall = ? AND e.seq = (SELECT s.seq FROM events s"
                          " WHERE s.hall = ? AND s.device = w.device AND s.type = 'meters.snapshot'"
                          " AND s.agent_time < ? ORDER BY s.agent_time DESC, s.seq DESC LIMIT 1)")
                inside = ("SELECT device, seq, agent_time, type, data FROM events WHERE hall = ?"
                          f" AND type = 'meters.snapshot' AND device IN ({listed})"
                          " AND agent_time >= ? AND agent_time < ?")
                rows = con.execute(before, (*chunk, hall, hall, time_from)).fetchall()
                rows += con.execute(inside, (hall, *chunk, time_from, time_to)).fetchall()
                for r in sorted(rows, key=lambda r: (r[0], r[1])):
                    out.setdefault(r[0], []).append(_row(r[1:]))
            return out

        return await self._db.reader.run(body)

    async def snapshots_after(self, hall: str, devices: Sequence[str], time: int) -> dict[str, int]:
        def body(con: sqlite3.Connection) -> dict[str, int]:
            out: dict[str, int] = {}
            for chunk in _chunks(sorted(set(devices)), _CHUNK):
                sql = (f"WITH wanted(device) AS (VALUES {', '.join('(?)' for _ in chunk)})"
                       " SELECT w.device, (SELECT s.seq FROM events s WHERE s.hall = ? AND s.device = w.device"
                       " AND s.type = 'meters.snapshot' AND s.agent_time >= ? ORDER BY s.agent_time, s.seq LIMIT 1)"
                       " FROM wanted w")
                out.update((d, int(seq)) for d, seq in con.execute(sql, (*chunk, hall, time)) if seq is not None)
            return out

        return await self._db.reader.run(body)

    async def integration_events_of(self, hall: str,
                                    ranges: Mapping[str, tuple[int, int | None]]) -> dict[str, list[DeviceEventRow]]:
        wanted = [(d, after, _INT64_MAX if through is None else through)
                  for d, (after, through) in sorted(ranges.items())]

        def body(con: sqlite3.Connection) -> dict[str, list[DeviceEventRow]]:
            out: dict[str, list[DeviceEventRow]] = {}
            for chunk in _chunks(wanted, _CHUNK):
                values = ", ".join("(?, ?, ?)" for _ in chunk)
                sql = (f"WITH wanted(device, after_seq, through_seq) AS (VALUES {values})"
                       " SELECT e.device, e.seq, e.agent_time, e.type, e.data FROM wanted w JOIN events e"
                       " ON e.hall = ? AND e.device = w.device AND e.type = 'integration'"
                       " AND e.seq > w.after_seq AND e.seq <= w.through_seq ORDER BY e.device, e.seq")
                for r in con.execute(sql, (*(x for row in chunk for x in row), hall)):
                    out.setdefault(r[0], []).append(_row(r[1:]))
            return out

        return await self._db.reader.run(body)

    async def devices_money(self, hall: str,
                            wanted: Sequence[tuple[str, Sequence[tuple[int, int]]]]) -> list[Contribution]:
        ends = sorted({(device, seq) for device, ranges in wanted for r in ranges for seq in r})

        def body(con: sqlite3.Connection) -> list[Contribution]:
            marks: dict[tuple[str, int], Contribution] = {}
            for chunk in _chunks(ends, _CHUNK):
                sql = (f"WITH wanted(device, seq) AS (VALUES {', '.join('(?, ?)' for _ in chunk)})"
                       " SELECT m.device, m.seq, m.bets, m.wins, m.rounds, m.cash_in, m.cash_out FROM wanted w"
                       " JOIN device_marks m ON m.hall = ? AND m.device = w.device AND m.seq = w.seq")
                for r in con.execute(sql, (*(x for end in chunk for x in end), hall)):
                    marks[(r[0], r[1])] = Contribution(*r[2:])
            out = []
            for device, ranges in wanted:
                total = ZERO
                for after, through in ranges:
                    total = total + _range_money(con, hall, device, after, through, marks.get((device, after)),
                                                 marks.get((device, through)))
                out.append(total)
            return out

        return await self._db.reader.run(body)

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
        # device_days (schema 6) holds a row for every device and gaming day with money or a meter
        # snapshot (a machine whose meters moved while no event arrived still gets its row)
        if after is not None:
            where.append("(hall, device, day) > (?, ?, ?)")
            params.extend(after)
        params.append(-1 if limit is None else limit)
        sql = (f"SELECT hall, device, day, bets, wins, rounds, cash_in, cash_out FROM device_days"
               f" WHERE {' AND '.join(where)} ORDER BY hall, device, day LIMIT ?")

        def body(con: sqlite3.Connection) -> dict[tuple[str, str, str], Contribution]:
            return {(r[0], r[1], r[2]): Contribution(*r[3:]) for r in con.execute(sql, params)}

        return await self._db.reader.run(body)
