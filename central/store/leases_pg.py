"""Named leases on PostgreSQL (:class:`central.repos.leases.LeaseRepository`): the SQLite backend's
conditional upsert (:mod:`central.store.leases_sqlite`), which PostgreSQL makes atomic under
concurrent processes (``INSERT … ON CONFLICT … DO UPDATE … WHERE`` locks the lease's row)."""

from __future__ import annotations

from .leases_sqlite import _TAKE
from .pg_db import PgDatabase


class PgLeases:
    """:class:`~central.repos.leases.LeaseRepository` on a :class:`PgDatabase`."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    async def acquire(self, name: str, owner: str, *, now: int, ttl_us: int) -> bool:
        if ttl_us <= 0:
            raise ValueError(f"lease ttl must be positive, not {ttl_us}")
        async with self._db.transaction() as con:
            await con.execute(_TAKE, name, owner, now + ttl_us, now)
            holder = await con.fetchval("SELECT owner FROM leases WHERE name = ?", name)
        return bool(holder == owner)

    async def release(self, name: str, owner: str) -> None:
        async with self._db.transaction() as con:
            await con.execute("DELETE FROM leases WHERE name = ? AND owner = ?", name, owner)

    async def holder(self, name: str, *, now: int) -> str | None:
        row = await self._db.fetchrow("SELECT owner FROM leases WHERE name = ? AND expires_at > ?", name, now)
        return None if row is None else str(row[0])
