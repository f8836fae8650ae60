"""Monitoring on PostgreSQL (:class:`central.repos.monitor.MonitorRepository`): alerts, the monitor's
cursors and conditions, and its inputs, by the SQL and records of the SQLite backend
(:mod:`central.store.monitor_sqlite`). Its reads run in one snapshot; ``sync_alerts`` takes a
transaction-level advisory lock so two monitors on one database never interleave their syncs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import msgspec

from central.eventmoney import missed_from_event
from central.repos.devices import DeviceCondition, DeviceRecord
from central.repos.halls import HallRecord
from central.repos.monitor import AlertDraft, AlertRecord, DeviceMissed, MonitorInputs

from . import shared_reads
from .monitor_sqlite import (
    _ALERT_COLUMNS,
    _CONDITION_TYPES,
    _DELAY_SAMPLE,
    _LINK_KINDS,
    _PLAY_TYPES,
    _SWITCH_ACTIONS,
    _alert,
)
from .pg_db import PgConn, PgDatabase

_DECODER = msgspec.json.Decoder()

_MONITOR_LOCK: Final = 0x68616C6C6D6F6E   # "hallmon": one alert sync at a time per database


async def _device_missed(con: PgConn, since: int) -> dict[tuple[str, str], DeviceMissed]:
    """:attr:`MonitorInputs.missed` (read the SQLite twin's docstring: the same reads and rule)."""
    out: dict[tuple[str, str], DeviceMissed] = {}
    for hall, device in await con.fetch(
            "SELECT DISTINCT hall, device FROM integration_log WHERE kind = 'missed' AND time >= ?"
            " AND hall IS NOT NULL AND device IS NOT NULL ORDER BY hall, device", since):
        snapshot = await con.fetchrow(
            "SELECT seq, agent_time FROM events WHERE hall = ? AND device = ? AND type = 'meters.snapshot'"
            " AND agent_time < ? ORDER BY agent_time DESC, seq DESC LIMIT 1", hall, device, since)
        start_seq, start_time = (int(snapshot[0]), int(snapshot[1])) if snapshot else (0, since)
        base = await con.fetchrow("SELECT bets, wins FROM device_marks WHERE hall = ? AND device = ? AND seq = ?",
                                  hall, device, start_seq) if start_seq else None
        total = await con.fetchrow("SELECT money_bets, money_wins FROM devices WHERE hall = ? AND id = ?",
                                   hall, device)
        if total is None:
            continue
        turnover = (total[0] or 0) + (total[1] or 0) - ((base[0] + base[1]) if base else 0)
        records = missed = 0
        for (data,) in await con.fetch("SELECT data FROM events WHERE hall = ? AND device = ?"
                                       " AND type = 'integration' AND seq > ? ORDER BY seq", hall, device, start_seq):
            record = missed_from_event(0, _DECODER.decode(data))
            if record is None or (start_seq and record.meters_time is not None and record.meters_time <= start_time):
                continue
            records += 1
            missed += record.amounts.bets + record.amounts.wins
        out[(hall, device)] = DeviceMissed(records=records, missed=missed, turnover=max(0, turnover) + missed,
                                           since=start_time)
    return out


class PgMonitor:
    """:class:`~central.repos.monitor.MonitorRepository` on a :class:`PgDatabase`."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    async def monitor_state(self) -> tuple[dict[str, int], list[DeviceCondition]]:
        async with self._db.reading() as con:
            cursors = {r[0]: r[1] for r in await con.fetch("SELECT hall, seq FROM monitor_cursors")}
            conditions = [DeviceCondition(hall=r[0], device=r[1], name=r[2], since=r[3], detail=r[4])
                          for r in await con.fetch("SELECT hall, device, name, since, detail FROM monitor_conditions"
                                                   " ORDER BY hall, device, name")]
        return cursors, conditions

    async def monitor_events(self, hall: str, *, after_seq: int,
                             through_seq: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
        async with self._db.reading() as con:
            events = [{"seq": r[0], "device": r[1], "type": r[2], "agent_time": r[3], "data": _DECODER.decode(r[4])}
                      for r in await con.fetch(
                          "SELECT seq, device, type, agent_time, data FROM events WHERE hall = ? AND seq > ?"
                          f" AND seq <= ? AND type IN ({_CONDITION_TYPES}) ORDER BY seq",
                          hall, after_seq, through_seq)]
            play = {r[0]: r[1] for r in await con.fetch(
                "SELECT device, MAX(seq) FROM events WHERE hall = ? AND seq > ? AND seq <= ?"
                f" AND type IN ({_PLAY_TYPES}) GROUP BY device", hall, after_seq, through_seq)}
        return events, play

    async def monitor_inputs(self, *, delay_since: int, link_since: int, failures_since: int,
                             missed_since: int | None = None) -> MonitorInputs:
        async with self._db.reading() as con:
            halls = [HallRecord(id=r[0], public_key_pem="", added_at=r[1], last_seq=r[2], last_hash="",
                                online=None if r[3] is None else bool(r[3]), session=r[4], status_at=r[5],
                                state=r[6] or "active")
                     for r in await con.fetch("SELECT id, added_at, last_seq, online, session, status_at, state"
                                              " FROM halls ORDER BY id")]
            devices = [DeviceRecord(id=r[0], hall=r[1], kind=r[2], online=None if r[3] is None else bool(r[3]),
                                    enabled=bool(r[4]), first_seen=r[5], last_seen=r[6], last_seq=r[7])
                       for r in await con.fetch("SELECT id, hall, kind, online, enabled, first_seen, last_seen,"
                                                " last_seq FROM devices ORDER BY hall, id")]
            delays: dict[str, int] = {}
            for hall in halls:
                worst = None
                for central_time, agent_time in await con.fetch(
                        "SELECT central_time, agent_time FROM events WHERE hall = ? ORDER BY seq DESC LIMIT ?",
                        hall.id, _DELAY_SAMPLE):
                    if central_time >= delay_since:
                        delay = central_time - agent_time
                        worst = delay if worst is None else max(worst, delay)
                if worst is not None:
                    delays[hall.id] = worst
            link: dict[str, dict[str, int]] = {}
            for hall_id, kind, count in await con.fetch(
                    "SELECT hall, kind, COUNT(*) FROM integration_log WHERE time >= ? AND hall IS NOT NULL"
                    " AND kind = ANY(?::text[]) GROUP BY hall, kind", link_since, list(_LINK_KINDS)):
                link.setdefault(hall_id, {})[kind] = count
            failed = {(r[0], r[1]): r[2] for r in await con.fetch(
                "SELECT hall, device, COUNT(*) FROM commands WHERE status = 'failed' AND updated_at >= ?"
                " AND device IS NOT NULL GROUP BY hall, device", failures_since)}
            switches: dict[tuple[str, str, str | None], tuple[str, int]] = {}
            for hall_id, device, game, action, at in await con.fetch(
                    "SELECT hall, device, game, action, updated_at FROM commands WHERE status = 'applied'"
                    " AND device IS NOT NULL AND action = ANY(?::text[]) ORDER BY updated_at, id",
                    list(_SWITCH_ACTIONS)):
                target = (hall_id, device, game if action.endswith("_game") else None)
                switches[target] = (action, at)  # ordered by time: the newest applied one wins
            missed = await _device_missed(con, missed_since) if missed_since is not None else {}
        return MonitorInputs(halls=halls, devices=devices, delays=delays, link_errors=link,
                             failed_commands=failed, switches=switches, missed=missed)

    async def sync_alerts(self, drafts: Sequence[AlertDraft], *, now: int, cursors: dict[str, int],
                          conditions: Sequence[DeviceCondition],
                          hold: Sequence[tuple[str, str]] = ()) -> tuple[int, int]:
        wanted = {(d.hall, d.device or "", d.kind, d.subject): d for d in drafts}
        held = set(hold)
        async with self._db.transaction() as con:
            await con.execute("SELECT pg_advisory_xact_lock(?::bigint)", _MONITOR_LOCK)
            open_rows = {(r[1], r[2] or "", r[3], r[4]): r[0] for r in await con.fetch(
                "SELECT id, hall, device, kind, subject FROM alerts WHERE cleared_at IS NULL")}
            raised = cleared = 0
            for key, alert_id in open_rows.items():
                if key not in wanted and (key[0], key[2]) not in held:
                    await con.execute("UPDATE alerts SET cleared_at = ? WHERE id = ? AND cleared_at IS NULL",
                                      now, alert_id)
                    cleared += 1
            new = [(d.hall, d.device, d.kind, d.subject, d.detail[:2000], now)
                   for key, d in wanted.items() if key not in open_rows]
            if new:
                await con.executemany("INSERT INTO alerts (hall, device, kind, subject, detail, raised_at)"
                                      " VALUES (?, ?, ?, ?, ?, ?)", new)
                raised = len(new)
            if cursors:
                await con.executemany("INSERT INTO monitor_cursors (hall, seq) VALUES (?, ?)"
                                      " ON CONFLICT (hall) DO UPDATE SET seq = excluded.seq", list(cursors.items()))
            await con.execute("DELETE FROM monitor_conditions")
            if conditions:
                await con.executemany("INSERT INTO monitor_conditions (hall, device, name, since, detail)"
                                      " VALUES (?, ?, ?, ?, ?)",
                                      [(c.hall, c.device, c.name, c.since, c.detail[:2000]) for c in conditions])
        return raised, cleared

    async def alerts(self, *, hall: str | None = None, halls: Sequence[str] | None = None, state: str = "open",
                     kind: str | None = None, device: str | None = None, limit: int = 100) -> list[AlertRecord]:
        return await shared_reads.alerts(self._db, hall=hall, halls=halls, state=state, kind=kind, device=device,
                                         limit=limit)

    async def alert(self, alert_id: int) -> AlertRecord | None:
        row = await self._db.fetchrow(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id = ?", alert_id)
        return None if row is None else _alert(row)

    async def ack_alert(self, alert_id: int, *, by: str, at: int) -> bool:
        async with self._db.transaction() as con:
            status = await con.execute("UPDATE alerts SET acked_by = ?, acked_at = ? WHERE id = ? AND acked_at IS NULL",
                                       by, at, alert_id)
        return status == "UPDATE 1"
