"""The audit trail on SQLite (:class:`central.repos.audit.AuditRepository`)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from central.repos.audit import AuditEntry

from . import shared_reads
from .sqlhelpers import transaction as _transaction
from .sqlite_db import SqliteDatabase


def json_or_none(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class SqliteAudit:
    """:class:`~central.repos.audit.AuditRepository` on a :class:`SqliteDatabase`."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def add_audit(self, entry: AuditEntry) -> int:
        row = (entry.time, entry.actor, entry.action, entry.target, json_or_none(entry.before),
               json_or_none(entry.after))

        def body(c: sqlite3.Connection) -> int:
            cur = c.execute("INSERT INTO audit (time, actor, action, target, before, after)"
                            " VALUES (?, ?, ?, ?, ?, ?)", row)
            assert cur.lastrowid is not None
            return cur.lastrowid

        return await self._db.writer.run(lambda con: _transaction(con, body))

    async def audit(self, *, actor: str | None = None, action: str | None = None, time_from: int | None = None,
                    time_to: int | None = None, after_id: int | None = None, limit: int = 100,
                    halls: Sequence[str] | None = None) -> list[AuditEntry]:
        return await shared_reads.audit(self._db, actor=actor, action=action, time_from=time_from, time_to=time_to,
                                        after_id=after_id, limit=limit, halls=halls)
