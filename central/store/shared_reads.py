"""Reads that both backends run with the same SQL and the same row mapping, written once over the one
call both databases share (``fetch(sql, *args)``, ``?`` placeholders): alerts, the audit trail and the
device list. A backend-specific read stays in its ``*_sqlite.py`` / ``*_pg.py`` module."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final, Protocol

from central.repos.audit import AuditEntry
from central.repos.devices import DeviceRecord
from central.repos.monitor import ALERT_STATES, AlertRecord

from .sqlhelpers import hall_scope, where_clause

MAX_ROWS: Final = 10_000
"""The most rows one list read returns, whatever ``limit`` asks."""
ALERT_COLUMNS: Final = "id, hall, device, kind, subject, detail, raised_at, cleared_at, acked_by, acked_at"


class Fetcher(Protocol):
    async def fetch(self, sql: str, *args: Any) -> list[Any]: ...


def alert_record(r: Sequence[Any]) -> AlertRecord:
    return AlertRecord(id=r[0], hall=r[1], device=r[2], kind=r[3], subject=r[4], detail=r[5], raised_at=r[6],
                       cleared_at=r[7], acked_by=r[8], acked_at=r[9])


async def alerts(db: Fetcher, *, hall: str | None, halls: Sequence[str] | None, state: str, kind: str | None,
                 device: str | None, limit: int) -> list[AlertRecord]:
    if state not in ALERT_STATES:
        raise ValueError(f"state must be one of {', '.join(ALERT_STATES)}, not {state!r}")
    where: list[str] = []
    params: list[Any] = []
    if not hall_scope(where, params, hall, halls):
        return []
    where.extend({"open": ["cleared_at IS NULL", "acked_at IS NULL"],
                  "acked": ["cleared_at IS NULL", "acked_at IS NOT NULL"],
                  "active": ["cleared_at IS NULL"],
                  "cleared": ["cleared_at IS NOT NULL"],
                  "all": []}[state])
    for column, value in (("kind", kind), ("device", device)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    params.append(max(1, min(limit, MAX_ROWS)))
    sql = f"SELECT {ALERT_COLUMNS} FROM alerts{where_clause(where)} ORDER BY id DESC LIMIT ?"
    return [alert_record(r) for r in await db.fetch(sql, *params)]


async def audit(db: Fetcher, *, actor: str | None, action: str | None, time_from: int | None,
                time_to: int | None, after_id: int | None, limit: int,
                halls: Sequence[str] | None) -> list[AuditEntry]:
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
    sql = f"SELECT id, time, actor, action, target, before, after FROM audit{where_clause(where)} ORDER BY id LIMIT ?"
    params.append(max(1, min(limit, MAX_ROWS)))
    return [AuditEntry(id=r[0], time=r[1], actor=r[2], action=r[3], target=r[4],
                       before=None if r[5] is None else json.loads(r[5]),
                       after=None if r[6] is None else json.loads(r[6]))
            for r in await db.fetch(sql, *params)]


async def devices(db: Fetcher, *, hall: str | None, halls: Sequence[str] | None) -> list[DeviceRecord]:
    where: list[str] = []
    params: list[Any] = []
    if not hall_scope(where, params, hall, halls):
        return []
    sql = ("SELECT id, hall, kind, online, enabled, first_seen, last_seen, last_seq FROM devices"
           f"{where_clause(where)} ORDER BY hall, id")
    return [DeviceRecord(id=r[0], hall=r[1], kind=r[2], online=None if r[3] is None else bool(r[3]),
                         enabled=bool(r[4]), first_seen=r[5], last_seen=r[6], last_seq=r[7])
            for r in await db.fetch(sql, *params)]
