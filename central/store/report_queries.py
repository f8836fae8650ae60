"""The report reads both backends run (GGR, hours, rollup cells): the SQL with ``?`` placeholders
(the PostgreSQL database numbers them) and the rows turned into records, so a period or grouping rule
is written once; each backend only executes the statements on its connection."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from central.repos.reports import GROUP_BY, GgrRow, HourRow, PlacedCell, RollupCell

from .sqlhelpers import ROLLUP_MONEY, RollupSource, rollup_scope, rollup_source
from .sqlhelpers import hall_scope as _scope
from .sqlhelpers import where_clause as _where

_SUMS = "SUM(bets), SUM(wins), SUM(rounds), SUM(cash_in), SUM(cash_out)"


@dataclass(frozen=True, slots=True)
class Query:
    sql: str
    params: Sequence[Any]
    subtracted: RollupSource | None = None
    """A period read as whole months minus days: its zero-key rows (``zero_keys``) tell a key that
    sums to zero inside the period from one that has no row in it."""


def ggr_query(group_by: str, day_from: dt.date | None, day_to: dt.date | None, hall: str | None,
              halls: Sequence[str] | None) -> Query | None:
    """The GGR statement of ``group_by`` over the period; None when the scope holds nothing."""
    if group_by not in GROUP_BY:
        raise ValueError(f"group_by must be one of {', '.join(GROUP_BY)}, not {group_by!r}")
    columns = {"device": "hall, device", "network": "'network'"}.get(group_by, group_by)
    grouping = "" if group_by == "network" else f" GROUP BY {columns} ORDER BY {columns}"
    if group_by == "game":   # whole months from rollups_monthly, the rest day by day (sqlhelpers)
        source = rollup_source(hall, halls, day_from, day_to)
        if source is None:
            return None
        # a game whose rows all lie outside the period sums to zero: dropped by ggr_rows
        return Query(f"SELECT {columns}, {_SUMS} FROM {source.sql} AS period{grouping}", source.params,
                     source if source.subtracts else None)
    # Groupings without the game read device_days: the same money per device and day (both from one
    # batch's effects) in about 2.5 times fewer rows than the per-game rollups (bench/reports.py). Its
    # rows of snapshots alone hold no money and are left out.
    where: list[str] = []
    params: list[Any] = []
    if not rollup_scope(where, params, hall, halls, day_from, day_to):
        return None
    where.append("(bets != 0 OR wins != 0 OR rounds != 0 OR cash_in != 0 OR cash_out != 0)")
    return Query(f"SELECT {columns}, {_SUMS} FROM device_days{_where(where)}{grouping}", params)


def ggr_rows(group_by: str, rows: Iterable[Sequence[Any]], present: set[str] | None) -> list[GgrRow]:
    """The GGR rows; ``present``: the keys with a row inside a subtracted period (see :class:`Query`)."""
    out = []
    for row in rows:
        if present is not None and not any(row[1:]) and row[0] not in present:
            continue   # outside the period: a plain read would not list it
        if group_by == "network" and row[1] is None:
            continue   # nothing in scope: no row, as for every other grouping
        if group_by == "device":
            out.append(GgrRow(row[1], row[2], row[3], row[4], row[5], row[6], hall=row[0]))
        else:
            out.append(GgrRow(row[0], row[1], row[2], row[3], row[4], row[5]))
    return out


def hourly_query(day: dt.date, hall: str | None, halls: Sequence[str] | None, device: str | None) -> Query | None:
    where: list[str] = ["day = ?"]
    params: list[Any] = [day.isoformat()]
    if not _scope(where, params, hall, halls):
        return None
    if device is not None:
        where.append("device = ?")
        params.append(device)
    if device is None:   # the halls' own hours (schema 10): a day's ~24 rows per hall, one per hour
        return Query(f"SELECT hall, day, hour, {_SUMS} FROM rollups_hourly_halls{_where(where)}"
                     " GROUP BY hall, day, hour ORDER BY hall, hour", params)
    return Query(f"SELECT hall, day, hour, device, {_SUMS} FROM rollups_hourly{_where(where)}"
                 " GROUP BY hall, day, hour, device ORDER BY hall, hour, device", params)


def hour_rows(rows: Iterable[Sequence[Any]], per_device: bool) -> list[HourRow]:
    if per_device:
        return [HourRow(r[0], r[1], r[2], r[4], r[5], r[6], r[7], r[8], device=r[3]) for r in rows]
    return [HourRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]) for r in rows]


def cells_query(day_from: dt.date | None, day_to: dt.date | None, hall: str | None,
                halls: Sequence[str] | None) -> Query | None:
    """Rollup cells (hall, device, game) summed over a period of more than one day."""
    source = rollup_source(hall, halls, day_from, day_to)   # whole months from rollups_monthly
    if source is None:
        return None
    return Query(f"SELECT hall, device, game, {_SUMS} FROM {source.sql} AS period"
                 " GROUP BY hall, device, game ORDER BY hall, device, game", source.params,
                 source if source.subtracts else None)


def cell_rows(rows: Iterable[Sequence[Any]], present: set[tuple[Any, ...]] | None) -> list[RollupCell]:
    """The cells; with ``present`` (a subtracted period) a cell summing to zero is kept only if it has
    a row inside the period."""
    cells = [tuple(r) for r in rows]
    if present is None:
        return [RollupCell(*r) for r in cells]
    return [RollupCell(*r) for r in cells if any(r[3:]) or r[:3] in present]


def ggr_present(zero_rows: Iterable[Sequence[Any]]) -> set[str]:
    """The game keys of a subtracted period's zero-key rows (hall, device, game)."""
    return {r[2] for r in zero_rows}


def cell_present(zero_rows: Iterable[Sequence[Any]]) -> set[tuple[Any, ...]]:
    return {tuple(r) for r in zero_rows}


_CELL_SUMS = ("SUM(bets) AS bets, SUM(wins) AS wins, SUM(rounds) AS rounds, SUM(cash_in) AS cash_in,"
              " SUM(cash_out) AS cash_out")
_NONZERO = "SUM(bets) <> 0 OR SUM(wins) <> 0 OR SUM(rounds) <> 0 OR SUM(cash_in) <> 0 OR SUM(cash_out) <> 0"


def placed_query(day_from: dt.date | None, day_to: dt.date | None, hall: str | None,
                 halls: Sequence[str] | None) -> Query | None:
    """The period's cells joined to the placements and catalog games and summed per (hall, game,
    number), unplaced numbers per device: the catalog's reports get a few hundred rows from the
    database instead of building one record per machine and game (bench/reports.py: GGR by provider
    over one day of 1,000 machines was 23 ms of which most was those records).

    A cell of a subtracted period (whole months minus days) that sums to zero is kept only if it has a
    row inside the period, as :func:`cell_rows` keeps it, so no group appears that a plain read would
    not list."""
    if day_from is not None and day_from == day_to:   # one gaming day: its rows are the cells
        where: list[str] = []
        params: list[Any] = []
        if not _scope(where, params, hall, halls):
            return None
        where.append("day = ?")
        params.append(day_from.isoformat())
        cells = f"SELECT hall, device, game, {ROLLUP_MONEY} FROM rollups{_where(where)}"
    else:
        source = rollup_source(hall, halls, day_from, day_to)
        if source is None:
            return None
        params = list(source.params)
        having = ""
        if source.subtracts:
            having = f" HAVING {_NONZERO} OR (hall, device, game) IN ({source.zero_keys[0]})"
            params.extend(source.zero_keys[1])
        cells = (f"SELECT hall, device, game, {_CELL_SUMS} FROM {source.sql} AS period"
                 f" GROUP BY hall, device, game{having}")
    # the game key of an integer game number is its decimal text (vocabulary.game_key), the placement's
    # number an integer: compared as text, after the (hall, device) prefix of the placements' key
    unplaced = "CASE WHEN g.id IS NULL AND c.game <> '' THEN c.device END"
    sql = (f"SELECT c.hall, g.id, c.game, {unplaced} AS unplaced, SUM(c.bets), SUM(c.wins), SUM(c.rounds),"
           " SUM(c.cash_in), SUM(c.cash_out)"
           f" FROM ({cells}) AS c LEFT JOIN catalog_placements p ON p.hall = c.hall AND p.device = c.device"
           " AND CAST(p.number AS TEXT) = c.game LEFT JOIN catalog_games g ON g.id = p.game"
           f" GROUP BY c.hall, g.id, c.game, {unplaced}")
    return Query(sql, params)


def placed_rows(rows: Iterable[Sequence[Any]]) -> list[PlacedCell]:
    return [PlacedCell(r[0], r[1], r[2], r[3], int(r[4]), int(r[5]), int(r[6]), int(r[7]), int(r[8])) for r in rows]
