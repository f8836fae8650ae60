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
    """Hall scope and inclusive UTC-day bounds on the rollups; False when nothing can match."""
    if not hall_scope(where, params, hall, halls):
        return False
    if day_from is not None:
        where.append("day >= ?")
        params.append(day_from.isoformat())
    if day_to is not None:
        where.append("day <= ?")
        params.append(day_to.isoformat())
    return True
