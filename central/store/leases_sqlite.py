"""Named leases on SQLite (:class:`central.repos.leases.LeaseRepository`): one row per lease, taken
or renewed by one conditional upsert, so two processes on one file cannot both hold it."""

from __future__ import annotations

import sqlite3

from .sqlhelpers import transaction as _transaction
from .sqlite_db import SqliteDatabase

_TAKE = ("INSERT INTO leases (name, owner, expires_at) VALUES (?, ?, ?)"
         " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at"
         " WHERE leases.owner = excluded.owner OR leases.expires_at <= ?")


class SqliteLeases:
    """:class:`~central.repos.leases.LeaseRepository` on a :class:`SqliteDatabase`."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def acquire(self, name: str, owner: str, *, now: int, ttl_us: int) -> bool:
        if ttl_us <= 0:
            raise ValueError(f"lease ttl must be positive, not {ttl_us}")

        def body(con: sqlite3.Connection) -> bool:
            con.execute(_TAKE, (name, owner, now + ttl_us, now))
            row = con.execute("SELECT owner FROM leases WHERE name = ?", (name,)).fetchone()
            return row is not None and row[0] == owner

        return await self._db.writer.run(lambda con: _transaction(con, body))

    async def release(self, name: str, owner: str) -> None:
        def body(con: sqlite3.Connection) -> None:
            con.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))

        await self._db.writer.run(lambda con: _transaction(con, body))

    async def holder(self, name: str, *, now: int) -> str | None:
        def body(con: sqlite3.Connection) -> str | None:
            row = con.execute("SELECT owner FROM leases WHERE name = ? AND expires_at > ?", (name, now)).fetchone()
            return None if row is None else str(row[0])

        return await self._db.reader.run(body)
