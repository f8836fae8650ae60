"""The audit trail on PostgreSQL (:class:`central.repos.audit.AuditRepository`); the same SQL as
SQLite's (:mod:`central.store.audit_sqlite`), the id from ``RETURNING``."""

from __future__ import annotations

from collections.abc import Sequence

from central.repos.audit import AuditEntry

from . import shared_reads
from .audit_sqlite import json_or_none
from .pg_db import PgDatabase


class PgAudit:
    """:class:`~central.repos.audit.AuditRepository` on a :class:`PgDatabase`."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    async def add_audit(self, entry: AuditEntry) -> int:
        async with self._db.transaction() as con:
            new_id: int = await con.fetchval(
                "INSERT INTO audit (time, actor, action, target, before, after) VALUES (?, ?, ?, ?, ?, ?)"
                " RETURNING id", entry.time, entry.actor, entry.action, entry.target, json_or_none(entry.before),
                json_or_none(entry.after))
        return new_id

    async def audit(self, *, actor: str | None = None, action: str | None = None, time_from: int | None = None,
                    time_to: int | None = None, after_id: int | None = None, limit: int = 100,
                    halls: Sequence[str] | None = None) -> list[AuditEntry]:
        return await shared_reads.audit(self._db, actor=actor, action=action, time_from=time_from, time_to=time_to,
                                        after_id=after_id, limit=limit, halls=halls)
