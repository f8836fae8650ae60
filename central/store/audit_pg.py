"""The audit trail on PostgreSQL (:class:`central.repos.audit.AuditRepository`); the same SQL as
SQLite's (:mod:`central.store.audit_sqlite`), the id from ``RETURNING``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from central.repos.audit import AuditEntry

from .audit_sqlite import json_or_none
from .pg_db import PgDatabase
from .sqlhelpers import where_clause as _where

_MAX_EVENTS_LIMIT = 10_000


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
        where: list[str] = []
        params: list[Any] = []
        if halls is not None:  # the hall-scope rule of central.audit: target hall/<H> or under hall/<H>/
            if not halls:
                return []
            where.append("(" + " OR ".join("target = ? OR substr(target, 1, ?) = ?" for _ in halls) + ")")
            for h in halls:
                params.extend((f"hall/{h}", len(f"hall/{h}/"), f"hall/{h}/"))
        for column, op, value in (("actor", "=", actor), ("action", "=", action), ("time", ">=", time_from),
                                  ("time", "<", time_to), ("id", ">", after_id)):
            if value is not None:
                where.append(f"{column} {op} ?")
                params.append(value)
        sql = f"SELECT id, time, actor, action, target, before, after FROM audit{_where(where)} ORDER BY id LIMIT ?"
        params.append(max(1, min(limit, _MAX_EVENTS_LIMIT)))
        return [AuditEntry(id=r[0], time=r[1], actor=r[2], action=r[3], target=r[4],
                           before=None if r[5] is None else json.loads(r[5]),
                           after=None if r[6] is None else json.loads(r[6]))
                for r in await self._db.fetch(sql, *params)]
