"""SQL helpers shared by the SQLite store and its feature mixins (one transaction discipline, one scope rule)."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

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


def hall_scope(where: list[str], params: list[Any], hall: str | None, halls: Sequence[str] | None) -> bool:
    """Add hall filters; False when the scope is empty (the query can return nothing)."""
    if hall is not None:
        if halls is not None and hall not in halls:
            return False
        where.append("hall = ?")
        params.append(hall)
    elif halls is not None:
        if not halls:
            return False
        where.append(f"hall IN ({', '.join('?' for _ in halls)})")
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
_STATEMENTS: dict[tuple[str, int, str, int], str] = {}


def insert_rows(con: sqlite3.Connection, head: str, width: int, values: Sequence[Any], tail: str = "") -> None:
    """Run ``head VALUES (?, …), (?, …) … tail`` over ``values`` (flat, ``width`` per row) in few statements.

    Why not ``executemany``: the sqlite3 module releases the GIL around every row's step, and takes
    it back only after waiting out the switch interval (5 ms) when a thread running Python holds
    it, as ingest's verifying thread does. Thousands of rows then crawl (measured: one row per 5 ms
    beside a busy thread). One multi-row statement releases the GIL once for all its rows, and binds
    fewer parameters from Python. Row counts are split into powers of two so at most a dozen
    distinct statements exist per table (the connection's statement cache keeps them prepared).
    ``tail`` follows the VALUES (an ``ON CONFLICT`` clause).
    """
    if len(values) % width:
        raise ValueError(f"{len(values)} values do not make rows of {width}")
    limit = con.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width
    most = 1 << (min(limit, _MAX_ROWS_PER_STATEMENT).bit_length() - 1)
    rows, at = len(values) // width, 0
    while rows:
        size = most if rows >= most else 1 << (rows.bit_length() - 1)
        key = (head, width, tail, size)
        sql = _STATEMENTS.get(key)
        if sql is None:
            row = "(" + ", ".join("?" * width) + ")"
            sql = _STATEMENTS[key] = f"{head} VALUES {', '.join([row] * size)}{tail}"
        con.execute(sql, values[at:at + size * width])
        at += size * width
        rows -= size
