"""Commands written once for both backends (:class:`central.repos.commands.CommandRepository` over a
:class:`~central.store.plans.PlanDatabase`): the rows, the integration-log line of every status change,
the compare-and-set of a transition (PostgreSQL also locks the command's row while it decides)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import msgspec

from central.repos.commands import COMMAND_STATUSES, CommandRecord, command_transition_allowed
from protocols.sync import canonical_bytes

from .plans import Dialect, Plan, PlanDatabase, query
from .sqlhelpers import INSERT_LOG, hall_scope, where_clause

_MAX_ROWS: Final = 10_000
_DATA_DECODER = msgspec.json.Decoder()
_COMMAND_COLUMNS: Final = ("id, hall, device, action, game, params, issued_at, expires_at, status, detail,"
                           " created_by, created_at, updated_at")


def _command(row: Sequence[Any]) -> CommandRecord:
    return CommandRecord(id=row[0], hall=row[1], device=row[2], action=row[3], game=row[4],
                         params=_DATA_DECODER.decode(row[5]), issued_at=row[6], expires_at=row[7], status=row[8],
                         detail=row[9], created_by=row[10], created_at=row[11], updated_at=row[12])


def _command_log_detail(command_id: str, action: str, game: str | None, status: str, detail: str) -> str:
    what = f"{action} {game}" if game is not None else action
    text = f"command {command_id} {what}: {status}"
    return (f"{text}: {detail}" if detail else text)[:2000]


def _check_status(status: str) -> None:
    if status not in COMMAND_STATUSES:
        raise ValueError(f"command status must be one of {', '.join(COMMAND_STATUSES)}, not {status!r}")


def _add(record: CommandRecord) -> Plan[None]:
    yield query(f"INSERT INTO commands ({_COMMAND_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                record.id, record.hall, record.device, record.action, record.game,
                canonical_bytes(record.params).decode(), record.issued_at, record.expires_at, record.status,
                record.detail, record.created_by, record.created_at, record.updated_at)
    yield query(INSERT_LOG, record.created_at, record.hall, record.device, "command",
                _command_log_detail(record.id, record.action, record.game, record.status, record.detail))


def _update(d: Dialect, command_id: str, status: str, detail: str, at: int) -> Plan[bool]:
    rows = yield query("SELECT status, hall, device, action, game FROM commands WHERE id = ?" + d.for_update,
                       command_id)
    if not rows or not command_transition_allowed(rows[0][0], status):
        return False
    old, hall, device, action, game = rows[0]
    # the WHERE on the old status keeps this a compare-and-set even without a row lock
    if not (yield query("UPDATE commands SET status = ?, detail = ?, updated_at = ? WHERE id = ? AND status = ?"
                        " RETURNING id", status, detail, at, command_id, old)):
        return False
    yield query(INSERT_LOG, at, hall, device, "command", _command_log_detail(command_id, action, game, status, detail))
    return True


class SharedCommands:
    """:class:`~central.repos.commands.CommandRepository` on either database."""

    def __init__(self, db: PlanDatabase) -> None:
        self._db = db

    async def add_command(self, record: CommandRecord) -> None:
        _check_status(record.status)
        await self._db.write(_add(record))

    async def command(self, command_id: str) -> CommandRecord | None:
        rows = await self._db.fetch(f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE id = ?", command_id)
        return _command(rows[0]) if rows else None

    async def update_command(self, command_id: str, status: str, detail: str, at: int) -> bool:
        _check_status(status)
        return await self._db.write(_update(self._db.dialect, command_id, status, detail[:2000], at))

    async def commands(self, *, hall: str | None = None, status: str | None = None, limit: int = 100,
                       halls: Sequence[str] | None = None) -> list[CommandRecord]:
        where: list[str] = []
        params: list[Any] = []
        if not hall_scope(where, params, hall, halls):
            return []
        if status is not None:
            where.append("status = ?")
            params.append(status)
        params.append(max(1, min(limit, _MAX_ROWS)))
        sql = f"SELECT {_COMMAND_COLUMNS} FROM commands{where_clause(where)} ORDER BY created_at DESC, id LIMIT ?"
        return [_command(r) for r in await self._db.fetch(sql, *params)]

    async def command_counts(self) -> dict[str, int]:
        rows = await self._db.fetch("SELECT status, COUNT(*) FROM commands GROUP BY status")
        return {str(status): int(n) for status, n in rows}
