"""The audit trail on SQLite (:class:`central.repos.audit.AuditRepository`)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from central.repos.audit import AuditEntry

from .sqlhelpers import transaction as _transaction
from .sqlhelpers import where_clause as _where
from .sqlite_db import SqliteDatabase

_MAX_EVENTS_LIMIT = 10_000


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
        sql = (f"SELECT id, time, actor, action, target, before, after FROM audit{_where(where)}"
               f" ORDER BY id LIMIT ?")
        params.append(max(1, min(limit, _MAX_EVENTS_LIMIT)))

        def body(con: sqlite3.Connection) -> list[AuditEntry]:
            return [AuditEntry(id=r[0], time=r[1], actor=r[2], action=r[3], target=r[4],
                               before=None if r[5] is None else json.loads(r[5]),
                               after=None if r[6] is None else json.loads(r[6]))
                    for r in con.execute(sql, params)]

        return await self._db.reader.run(body)
