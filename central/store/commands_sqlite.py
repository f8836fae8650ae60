"""Commands on SQLite (:class:`central.repos.commands.CommandRepository`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import msgspec

from central.repos.commands import COMMAND_STATUSES, CommandRecord, command_transition_allowed
from protocols.sync import canonical_bytes

from .sqlhelpers import INSERT_LOG as _INSERT_LOG
from .sqlhelpers import hall_scope as _scope
from .sqlhelpers import transaction as _transaction
from .sqlhelpers import where_clause as _where
from .sqlite_db import SqliteDatabase

_MAX_EVENTS_LIMIT = 10_000


_DATA_DECODER = msgspec.json.Decoder()


_COMMAND_COLUMNS = ("id, hall, device, action, game, params, issued_at, expires_at, status, detail, created_by,"
                    " created_at, updated_at")


def _command(row: Sequence[Any]) -> CommandRecord:
    return CommandRecord(id=row[0], hall=row[1], device=row[2], action=row[3], game=row[4],
                         params=_DATA_DECODER.decode(row[5]), issued_at=row[6], expires_at=row[7], status=row[8],
                         detail=row[9], created_by=row[10], created_at=row[11], updated_at=row[12])


def _command_log_detail(command_id: str, action: str, game: str | None, status: str, detail: str) -> str:
    what = f"{action} {game}" if game is not None else action
    text = f"command {command_id} {what}: {status}"
    return (f"{text}: {detail}" if detail else text)[:2000]


class SqliteCommands:
    """:class:`~central.repos.commands.CommandRepository` on a :class:`SqliteDatabase`."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def add_command(self, record: CommandRecord) -> None:
        if record.status not in COMMAND_STATUSES:
            raise ValueError(f"command status must be one of {', '.join(COMMAND_STATUSES)}, not {record.status!r}")
        row = (record.id, record.hall, record.device, record.action, record.game,
               canonical_bytes(record.params).decode(), record.issued_at, record.expires_at, record.status,
               record.detail, record.created_by, record.created_at, record.updated_at)
        log_row = (record.created_at, record.hall, record.device, "command",
                   _command_log_detail(record.id, record.action, record.game, record.status, record.detail))

        def body(con: sqlite3.Connection) -> None:
            con.execute(f"INSERT INTO commands ({_COMMAND_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        row)
            con.execute(_INSERT_LOG, log_row)

        await self._db.writer.run(lambda con: _transaction(con, body))

    async def command(self, command_id: str) -> CommandRecord | None:
        def body(con: sqlite3.Connection) -> CommandRecord | None:
            row = con.execute(f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE id = ?", (command_id,)).fetchone()
            return None if row is None else _command(row)

        return await self._db.reader.run(body)

    async def update_command(self, command_id: str, status: str, detail: str, at: int) -> bool:
        if status not in COMMAND_STATUSES:
            raise ValueError(f"command status must be one of {', '.join(COMMAND_STATUSES)}, not {status!r}")
        detail = detail[:2000]

        def body(con: sqlite3.Connection) -> bool:
            row = con.execute("SELECT status, hall, device, action, game FROM commands WHERE id = ?",
                              (command_id,)).fetchone()
            if row is None or not command_transition_allowed(row[0], status):
                return False
            # the WHERE on the old status keeps this a compare-and-set even without the write lock
            cur = con.execute("UPDATE commands SET status = ?, detail = ?, updated_at = ? WHERE id = ? AND status = ?",
                              (status, detail, at, command_id, row[0]))
            if cur.rowcount != 1:
                return False
            con.execute(_INSERT_LOG, (at, row[1], row[2], "command",
                                      _command_log_detail(command_id, row[3], row[4], status, detail)))
            return True

        return await self._db.writer.run(lambda con: _transaction(con, body))

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

        def body(con: sqlite3.Connection) -> list[CommandRecord]:
            return [_command(r) for r in con.execute(sql, params)]

        return await self._db.reader.run(body)

    async def command_counts(self) -> dict[str, int]:
        def body(con: sqlite3.Connection) -> dict[str, int]:
            return {str(status): int(n) for status, n in
                    con.execute("SELECT status, COUNT(*) FROM commands GROUP BY status")}

        return await self._db.reader.run(body)
