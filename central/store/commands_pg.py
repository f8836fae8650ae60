"""Commands on PostgreSQL (:class:`central.repos.commands.CommandRepository`): the rows and log details
of the SQLite backend (:mod:`central.store.commands_sqlite`); a status change locks the command's row."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from central.repos.commands import COMMAND_STATUSES, CommandRecord, command_transition_allowed
from protocols.sync import canonical_bytes

from .commands_sqlite import _COMMAND_COLUMNS, _command, _command_log_detail
from .pg_db import PgDatabase
from .sqlhelpers import INSERT_LOG
from .sqlhelpers import hall_scope as _scope
from .sqlhelpers import where_clause as _where

_MAX_EVENTS_LIMIT = 10_000


class PgCommands:
    """:class:`~central.repos.commands.CommandRepository` on a :class:`PgDatabase`."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    async def add_command(self, record: CommandRecord) -> None:
        if record.status not in COMMAND_STATUSES:
            raise ValueError(f"command status must be one of {', '.join(COMMAND_STATUSES)}, not {record.status!r}")
        async with self._db.transaction() as con:
            await con.execute(f"INSERT INTO commands ({_COMMAND_COLUMNS})"
                              " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                              record.id, record.hall, record.device, record.action, record.game,
                              canonical_bytes(record.params).decode(), record.issued_at, record.expires_at,
                              record.status, record.detail, record.created_by, record.created_at, record.updated_at)
            await con.execute(INSERT_LOG, record.created_at, record.hall, record.device, "command",
                              _command_log_detail(record.id, record.action, record.game, record.status,
                                                  record.detail))

    async def command(self, command_id: str) -> CommandRecord | None:
        row = await self._db.fetchrow(f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE id = ?", command_id)
        return None if row is None else _command(row)

    async def update_command(self, command_id: str, status: str, detail: str, at: int) -> bool:
        if status not in COMMAND_STATUSES:
            raise ValueError(f"command status must be one of {', '.join(COMMAND_STATUSES)}, not {status!r}")
        detail = detail[:2000]
        async with self._db.transaction() as con:
            row = await con.fetchrow("SELECT status, hall, device, action, game FROM commands WHERE id = ?"
                                     " FOR UPDATE", command_id)
            if row is None or not command_transition_allowed(row[0], status):
                return False
            await con.execute("UPDATE commands SET status = ?, detail = ?, updated_at = ? WHERE id = ?",
                              status, detail, at, command_id)
            await con.execute(INSERT_LOG, at, row[1], row[2], "command",
                              _command_log_detail(command_id, row[3], row[4], status, detail))
            return True

    async def commands(self, *, hall: str | None = None, status: str | None = None, limit: int = 100,
                       halls: Sequence[str] | None = None) -> list[CommandRecord]:
        where: list[str] = []
        params: list[Any] = []
        if not _scope(where, params, hall, halls):
            return []
        if status is not None:
            where.append("status = ?")
            params.append(status)
        params.append(max(1, min(limit, _MAX_EVENTS_LIMIT)))
        sql = f"SELECT {_COMMAND_COLUMNS} FROM commands{_where(where)} ORDER BY created_at DESC, id LIMIT ?"
        return [_command(r) for r in await self._db.fetch(sql, *params)]

    async def command_counts(self) -> dict[str, int]:
        rows = await self._db.fetch("SELECT status, COUNT(*) FROM commands GROUP BY status")
        return {str(status): int(n) for status, n in rows}
