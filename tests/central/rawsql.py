"""Raw SQL on a store's database from beside it, as a migration or an operator at a SQL prompt would
(each call its own transaction, on either backend): for tests that empty a derived table and refill it."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from central.store.pg_db import PgDatabase


async def execute(database: Any, sql: str, *, sqlite: Callable[[sqlite3.Connection], object] | None = None) -> None:
    """Run ``sql`` in a transaction of its own; on SQLite ``sqlite(con)`` instead when given (a fill that
    is Python there and SQL on PostgreSQL)."""
    if isinstance(database, PgDatabase):
        async with database.transaction() as con:
            await con.execute(sql)
        return
    con = sqlite3.connect(database.path, isolation_level=None)
    try:
        con.execute("BEGIN")
        if sqlite is not None:
            sqlite(con)
        else:
            con.execute(sql)
        con.execute("COMMIT")
    finally:
        con.close()
