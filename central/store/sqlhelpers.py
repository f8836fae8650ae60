"""SQL helpers of the repositories (SQLite's transaction discipline and plan runner; the scope rules and
filters both backends share)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import sqlite3
from collections.abc import Callable, Collection, Sequence
from typing import Any, Final, TypeVar

import msgspec

from .plans import Plan

T = TypeVar("T")


def transaction(con: sqlite3.Connection, body: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``body`` inside BEGIN IMMEDIATE … COMMIT, rolling back on any exception.

    IMMEDIATE takes the write lock before anything is read, so even a second process on the same
    file cannot interleave with what ``body`` decides from its reads."""
    con.execute("BEGIN IMMEDIATE")
    try:
        result = body(con)
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
    return result


def run_sqlite(con: sqlite3.Connection, plan: Plan[T]) -> T:
    """Run a plan (:mod:`central.store.plans`) on ``con``, all its steps in this call."""
    try:
        step = next(plan)
        while True:
            if step.many:
                con.executemany(step.sql, step.args)
                step = plan.send([])
            else:
                step = plan.send(con.execute(step.sql, step.args).fetchall())
    except StopIteration as done:
        result: T = done.value
        return result


def marks(values: Collection[Any]) -> str:
    """``?, ?, …``: one placeholder per value (an ``IN (…)`` list)."""
    return ", ".join("?" for _ in values)


def hall_scope(where: list[str], params: list[Any], hall: str | None, halls: Sequence[str] | None,
               column: str = "hall") -> bool:
    """Add hall filters on ``column``; False when the scope is empty (the query can return nothing)."""
    if hall is not None:
        if halls is not None and hall not in halls:
            return False
        where.append(f"{column} = ?")
        params.append(hall)
    elif halls is not None:
        if not halls:
            return False
        where.append(f"{column} IN ({marks(halls)})")
        params.extend(halls)
    return True


def where_clause(where: list[str]) -> str:
    return (" WHERE " + " AND ".join(where)) if where else ""


def rollup_scope(where: list[str], params: list[Any], hall: str | None, halls: Sequence[str] | None,
                 day_from: dt.date | None, day_to: dt.date | None) -> bool:
    """Hall scope and inclusive gaming-day bounds (each hall's own days) on the rollups; False when
    nothing can match."""
    if not hall_scope(where, params, hall, halls):
        return False
    if day_from is not None:
        where.append("day >= ?")
        params.append(day_from.isoformat())
    if day_to is not None:
        where.append("day <= ?")
        params.append(day_to.isoformat())
    return True


_MAX_ROWS_PER_STATEMENT = 1024
_EXACT_ROWS: Final = 64
"""Up to this many rows go in one statement of exactly that many rows; more are split into powers of two."""
WRITER_CACHED_STATEMENTS: Final = 1024
"""The writer connection's statement cache: room for an exact-size statement per live row count and table."""
_STATEMENTS: dict[tuple[str, int, str, int], str] = {}


def insert_rows(con: sqlite3.Connection, head: str, width: int, values: Sequence[Any], tail: str = "") -> None:
    """Run ``head VALUES (?, …), (?, …) … tail`` over ``values`` (flat, ``width`` per row) in few statements.

    Why not ``executemany``: the sqlite3 module releases the GIL around every row's step, and takes
    it back only after waiting out the switch interval (5 ms) when a thread running Python holds
    it, as ingest's verifying thread does. Thousands of rows then crawl (measured: one row per 5 ms
    beside a busy thread). One multi-row statement releases the GIL once for all its rows, and binds
    fewer parameters from Python. ``tail`` follows the VALUES (an ``ON CONFLICT`` clause).

    Statement sizes: a live batch (up to :data:`_EXACT_ROWS` rows for a table) is one statement of
    exactly its rows: each extra statement costs a prepare-step-reset and a GIL hand-off with the
    verifying thread, which for a 25-event batch over seven tables was 14 extra statements. Bigger
    row counts are split into powers of two, so at most about 75 distinct statements exist per table
    (:data:`WRITER_CACHED_STATEMENTS` keeps them prepared).
    """
    if len(values) % width:
        raise ValueError(f"{len(values)} values do not make rows of {width}")
    limit = con.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width
    most = 1 << (min(limit, _MAX_ROWS_PER_STATEMENT).bit_length() - 1)
    exact = min(_EXACT_ROWS, limit)
    rows, at = len(values) // width, 0
    while rows:
        if rows <= exact:
            size = rows
        else:
            size = most if rows >= most else 1 << (rows.bit_length() - 1)
        key = (head, width, tail, size)
        sql = _STATEMENTS.get(key)
        if sql is None:
            row = "(" + ", ".join("?" * width) + ")"
            sql = _STATEMENTS[key] = f"{head} VALUES {', '.join([row] * size)}{tail}"
        con.execute(sql, values[at:at + size * width])
        at += size * width
        rows -= size


def _month_end(day: dt.date) -> dt.date:
    following = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return following - dt.timedelta(days=1)


def _month(day: dt.date) -> str:
    return day.isoformat()[:7]


def split_period(day_from: dt.date | None, day_to: dt.date | None
                 ) -> tuple[list[tuple[dt.date, dt.date]], tuple[str | None, str | None] | None]:
    """A period of gaming days as (day ranges read from ``rollups``, a month range read from
    ``rollups_monthly``): whole months come from the monthly table, the partial ones day by day. A None
    bound is open; a None month range means no whole month."""
    days: list[tuple[dt.date, dt.date]] = []
    first: str | None = None
    last: str | None = None
    if day_from is not None:
        if day_from.day != 1:
            end = _month_end(day_from)
            if day_to is not None and day_to <= end:
                return [(day_from, day_to)], None
            days.append((day_from, end))
            first = _month(end + dt.timedelta(days=1))
        else:
            first = _month(day_from)
    if day_to is not None:
        if day_to != _month_end(day_to):
            start = day_to.replace(day=1)
            if day_from is not None and day_from > start:   # same month, handled above unless from is the 1st
                return [(day_from, day_to)], None
            days.append((start, day_to))
            last = _month(start - dt.timedelta(days=1))
        else:
            last = _month(day_to)
    if first is not None and last is not None and first > last:
        return days, None
    return days, (first, last)


@dataclasses.dataclass(frozen=True, slots=True)
class PeriodTerms:
    """A period of gaming days as signed terms whose sum is the period's rollups: ``days`` and
    ``months`` are added (day ranges of ``rollups``, month ranges of ``rollups_monthly``), ``minus``
    day ranges are subtracted. A partial month with more days in the period than outside it is read as
    its month row minus the days outside (29 days of November: one monthly row and one day per cell,
    not 29), the rest day by day. A None bound is open."""

    days: list[tuple[dt.date, dt.date]]
    months: list[tuple[str | None, str | None]]
    minus: list[tuple[dt.date, dt.date]]


def period_terms(day_from: dt.date | None, day_to: dt.date | None) -> PeriodTerms:
    days, whole = split_period(day_from, day_to)
    months: list[tuple[str | None, str | None]] = [] if whole is None else [whole]
    plus: list[tuple[dt.date, dt.date]] = []
    minus: list[tuple[dt.date, dt.date]] = []
    for start, end in days:
        first, last = start.replace(day=1), _month_end(start)
        outside = [(a, b) for a, b in ((first, start - dt.timedelta(days=1)), (end + dt.timedelta(days=1), last))
                   if a <= b]
        if sum((b - a).days + 1 for a, b in outside) < (end - start).days + 1:
            months.append((_month(start), _month(start)))
            minus.extend(outside)
        else:
            plus.append((start, end))
    return PeriodTerms(plus, _merged_months(months), minus)


def _merged_months(ranges: list[tuple[str | None, str | None]]) -> list[tuple[str | None, str | None]]:
    """Adjacent month ranges as one (one range query instead of three)."""
    def after(month: str) -> str:
        year, number = int(month[:4]), int(month[5:7])
        return f"{year + number // 12:04d}-{number % 12 + 1:02d}"

    out: list[tuple[str | None, str | None]] = []
    for lo, hi in sorted(ranges, key=lambda r: "" if r[0] is None else r[0]):
        if not out:
            out.append((lo, hi))
            continue
        prev_lo, prev_hi = out[-1]
        if prev_hi is None:
            continue   # already covered by an open range
        if lo is None or after(prev_hi) >= lo:
            out[-1] = (prev_lo, None if hi is None else max(prev_hi, hi))
        else:
            out.append((lo, hi))
    return out


ROLLUP_MONEY = "bets, wins, rounds, cash_in, cash_out"


ZERO_ROLLUP = "bets = 0 AND wins = 0 AND rounds = 0 AND cash_in = 0 AND cash_out = 0"
"""The condition of the partial index ``rollups_zero`` (rows of zero-amount events only), spelt exactly
as the index so SQLite uses it."""

_NEGATED = "-bets AS bets, -wins AS wins, -rounds AS rounds, -cash_in AS cash_in, -cash_out AS cash_out"


@dataclasses.dataclass(frozen=True, slots=True)
class RollupSource:
    """A subquery of (hall, device, game, money…) rows whose sums per key are the rollups' over a period.

    When it subtracts (``subtracts``), a key whose rows all lie outside the period sums to zero where a
    plain read would not list it at all; ``zero_keys`` then names the keys that really have a row in the
    period, all of them zero (amounts are never negative, so a zero sum means zero rows), so the caller
    keeps exactly the keys a plain read would."""

    sql: str
    params: list[Any]
    subtracts: bool
    zero_keys: tuple[str, list[Any]]


def rollup_source(hall: str | None, halls: Sequence[str] | None, day_from: dt.date | None,
                  day_to: dt.date | None) -> RollupSource | None:
    """The period's rollups from the fewest rows (:func:`period_terms`); None when the scope is empty."""
    scope: list[str] = []
    scope_params: list[Any] = []
    if not hall_scope(scope, scope_params, hall, halls):
        return None
    terms = period_terms(day_from, day_to)
    parts: list[str] = []
    params: list[Any] = []
    for ranges, columns in ((terms.days, ROLLUP_MONEY), (terms.minus, _NEGATED)):
        for start, end in ranges:
            parts.append(f"SELECT hall, device, game, {columns} FROM rollups"
                         f"{where_clause([*scope, 'day >= ?', 'day <= ?'])}")
            params.extend((*scope_params, start.isoformat(), end.isoformat()))
    for first, last in terms.months:
        clauses = list(scope)
        values = list(scope_params)
        if first is not None:
            clauses.append("month >= ?")
            values.append(first)
        if last is not None:
            clauses.append("month <= ?")
            values.append(last)
        parts.append(f"SELECT hall, device, game, {ROLLUP_MONEY} FROM rollups_monthly{where_clause(clauses)}")
        params.extend(values)
    if not parts:
        return None
    zero = [ZERO_ROLLUP, *scope]
    zero_params = list(scope_params)
    for clause, bound in (("day >= ?", day_from), ("day <= ?", day_to)):
        if bound is not None:
            zero.append(clause)
            zero_params.append(bound.isoformat())
    return RollupSource("(" + " UNION ALL ".join(parts) + ")", params, bool(terms.minus),
                        (f"SELECT DISTINCT hall, device, game FROM rollups{where_clause(zero)}", zero_params))



INSERT_LOG = "INSERT INTO integration_log (time, hall, device, kind, detail) VALUES (?, ?, ?, ?, ?)"
"""One integration-log row (time, hall, device, kind, detail): ingest's rows, and the ``manual`` and
``command`` rows halls and commands write in their own transactions."""


EVENT_READ_COLUMNS: Final = "hall, seq, id, device, type, agent_time, device_time, central_time, prev_hash, hash, data"
"""The ``events`` columns :func:`event_record` reads, in its order."""

_DATA_DECODER = msgspec.json.Decoder()


def event_record(r: Sequence[Any]) -> dict[str, Any]:
    """A stored event row (:data:`EVENT_READ_COLUMNS`) in wire form plus ``central_time``."""
    return {"v": 1, "hall": r[0], "seq": r[1], "id": r[2], "device": r[3], "type": r[4], "agent_time": r[5],
            "device_time": r[6], "central_time": r[7], "prev_hash": r[8], "hash": r[9],
            "data": _DATA_DECODER.decode(r[10])}


def events_filter(*, hall: str | None, device: str | None, type: str | None, time_from: int | None,
                  time_to: int | None, after_seq: int | None, halls: Sequence[str] | None,
                  after_hall: str | None) -> tuple[list[str], list[Any]] | None:
    """The WHERE terms and parameters of :meth:`central.repos.ingest.IngestRepository.events` (None when
    the scope is empty)."""
    where: list[str] = []
    params: list[Any] = []
    if not hall_scope(where, params, hall, halls):
        return None
    across = hall is None and after_hall is not None   # network paging: after (after_hall, after_seq)
    for clause, value in (("device = ?", device), ("type = ?", type), ("agent_time >= ?", time_from),
                          ("agent_time < ?", time_to), ("seq > ?", None if across else after_seq)):
        if value is not None:
            where.append(clause)
            params.append(value)
    if across:
        where.append("(hall > ? OR (hall = ? AND seq > ?))")
        params.extend((after_hall, after_hall, after_seq or 0))
    return where, params


def log_filter(*, hall: str | None, kind: str | None, halls: Sequence[str] | None, device: str | None,
               time_from: int | None, time_to: int | None) -> tuple[list[str], list[Any]] | None:
    """The WHERE terms and parameters of the integration log's read (None when the scope is empty)."""
    where: list[str] = []
    params: list[Any] = []
    if not hall_scope(where, params, hall, halls):
        return None
    for column, op, value in (("kind", "=", kind), ("device", "=", device), ("time", ">=", time_from),
                              ("time", "<", time_to)):
        if value is not None:
            where.append(f"{column} {op} ?")
            params.append(value)
    return where, params
