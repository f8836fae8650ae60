"""Monitoring's and the reconciliation's part of the SQLite store: alerts, the monitor's cursors and
device conditions, and the per-device reads the meters-versus-events report needs.

A repository over the :class:`~central.store.sqlite_db.SqliteDatabase`; kept
here so this feature's SQL is in one file. Only SQL PostgreSQL also accepts: no JSON functions (event
data is decoded in Python), partial indexes with literal predicates (both databases have them).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, TypeVar

import msgspec

from central.eventmoney import missed_from_event
from central.eventtypes import PLAY_TYPES
from central.repos.devices import DeviceCondition, DeviceEventRow, DeviceRecord
from central.repos.halls import HallRecord
from central.repos.monitor import AlertDraft, AlertRecord, DeviceMissed, MonitorInputs

from . import shared_reads
from .shared_reads import ALERT_COLUMNS as _ALERT_COLUMNS
from .shared_reads import alert_record as _alert
from .sqlhelpers import transaction as _tx
from .sqlite_db import SqliteDatabase

T = TypeVar("T")
_DECODER = msgspec.json.Decoder()
_INT64_MAX = 2**63 - 1
_DELAY_SAMPLE = 50
"""Newest events per hall whose processing delay the monitor looks at (the primary key reads them)."""
_LINK_KINDS = ("rejected", "format_error", "resend", "missed")
"""Integration-log kinds the monitor counts: trouble on a hall's link (gaps, refused or malformed
batches) and ``missed`` records (meters moved more than the events said), which get their own alert."""
_CONDITION_TYPES = "'device.door', 'game.error', 'device.status', 'handpay', 'service'"
_PLAY_TYPES = ", ".join(f"'{t}'" for t in sorted(PLAY_TYPES))
_SWITCH_ACTIONS = ("disable_machine", "enable_machine", "disable_game", "enable_game")






def _device_missed(con: sqlite3.Connection, since: int) -> dict[tuple[str, str], DeviceMissed]:
    """:attr:`MonitorInputs.missed`: for each machine central logged a ``missed`` record for since
    ``since`` (central time; the integration log's time index finds them, and a machine without one
    costs nothing), its ``missed`` records and bets plus wins from its last meter snapshot before
    ``since`` on. The events' money there is the running total (``devices.money_*``) minus the
    snapshot's mark (``device_marks``), so no event is read; the ``missed`` records come through the
    partial index over integration events, each attributed by its ``meters_time`` as the reconciliation
    does (written a settle time after its snapshot, it comes after it by seq but is money from before
    it). Without a mark for that snapshot (none written yet) the
    count starts at the machine's first event: a larger total, so a smaller share, never a false alert."""
    out: dict[tuple[str, str], DeviceMissed] = {}
    for hall, device in con.execute(
            "SELECT DISTINCT hall, device FROM integration_log WHERE kind = 'missed' AND time >= ?"
            " AND hall IS NOT NULL AND device IS NOT NULL ORDER BY hall, device", (since,)).fetchall():
        snapshot = con.execute(
            "SELECT seq, agent_time FROM events WHERE hall = ? AND device = ? AND type = 'meters.snapshot'"
            " AND agent_time < ? ORDER BY agent_time DESC, seq DESC LIMIT 1", (hall, device, since)).fetchone()
        start_seq, start_time = (int(snapshot[0]), int(snapshot[1])) if snapshot else (0, since)
        base = con.execute("SELECT bets, wins FROM device_marks WHERE hall = ? AND device = ? AND seq = ?",
                           (hall, device, start_seq)).fetchone() if start_seq else None
        total = con.execute("SELECT money_bets, money_wins FROM devices WHERE hall = ? AND id = ?",
                            (hall, device)).fetchone()
        if total is None:
            continue
        turnover = (total[0] or 0) + (total[1] or 0) - ((base[0] + base[1]) if base else 0)
        records = missed = 0
        for (data,) in con.execute("SELECT data FROM events WHERE hall = ? AND device = ? AND type = 'integration'"
                                   " AND seq > ? ORDER BY seq", (hall, device, start_seq)):
            record = missed_from_event(0, _DECODER.decode(data))
            if record is None or (start_seq and record.meters_time is not None and record.meters_time <= start_time):
                continue  # a record is the money its snapshot's meters showed: before the start, not after
            records += 1
            missed += record.amounts.bets + record.amounts.wins
        out[(hall, device)] = DeviceMissed(records=records, missed=missed, turnover=max(0, turnover) + missed,
                                           since=start_time)
    return out


def _row(r: tuple[Any, ...]) -> DeviceEventRow:
    return DeviceEventRow(seq=r[0], agent_time=r[1], type=r[2], data=_DECODER.decode(r[3]))


class SqliteMonitor:
    """:class:`~central.repos.monitor.MonitorRepository` on a :class:`SqliteDatabase`."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    # ---- monitor state ---------------------------------------------------------------------------------
    async def monitor_state(self) -> tuple[dict[str, int], list[DeviceCondition]]:
        def body(con: sqlite3.Connection) -> tuple[dict[str, int], list[DeviceCondition]]:
            cursors = {r[0]: r[1] for r in con.execute("SELECT hall, seq FROM monitor_cursors")}
            conditions = [DeviceCondition(hall=r[0], device=r[1], name=r[2], since=r[3], detail=r[4])
                          for r in con.execute("SELECT hall, device, name, since, detail FROM monitor_conditions"
                                               " ORDER BY hall, device, name")]
            return cursors, conditions

        return await self._db.reader.run(body)

    async def monitor_events(self, hall: str, *, after_seq: int,
                             through_seq: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
        def body(con: sqlite3.Connection) -> tuple[list[dict[str, Any]], dict[str, int]]:
            events = [{"seq": r[0], "device": r[1], "type": r[2], "agent_time": r[3], "data": _DECODER.decode(r[4])}
                      for r in con.execute(
                          "SELECT seq, device, type, agent_time, data FROM events WHERE hall = ? AND seq > ?"
                          f" AND seq <= ? AND type IN ({_CONDITION_TYPES}) ORDER BY seq",
                          (hall, after_seq, through_seq))]
            play = {r[0]: r[1] for r in con.execute(
                "SELECT device, MAX(seq) FROM events WHERE hall = ? AND seq > ? AND seq <= ?"
                f" AND type IN ({_PLAY_TYPES}) GROUP BY device", (hall, after_seq, through_seq))}
            return events, play

        return await self._db.reader.run(body)

    async def monitor_inputs(self, *, delay_since: int, link_since: int, failures_since: int,
                             missed_since: int | None = None) -> MonitorInputs:
        def body(con: sqlite3.Connection) -> MonitorInputs:
            halls = [HallRecord(id=r[0], public_key_pem="", added_at=r[1], last_seq=r[2], last_hash="",
                                online=None if r[3] is None else bool(r[3]), session=r[4], status_at=r[5],
                                state=r[6] or "active")
                     for r in con.execute("SELECT id, added_at, last_seq, online, session, status_at, state"
                                          " FROM halls ORDER BY id")]
            devices = [DeviceRecord(id=r[0], hall=r[1], kind=r[2], online=None if r[3] is None else bool(r[3]),
                                    enabled=bool(r[4]), first_seen=r[5], last_seen=r[6], last_seq=r[7])
                       for r in con.execute("SELECT id, hall, kind, online, enabled, first_seen, last_seen, last_seq"
                                            " FROM devices ORDER BY hall, id")]
            delays: dict[str, int] = {}
            for hall in halls:
                worst = None
                for central_time, agent_time in con.execute(
                        "SELECT central_time, agent_time FROM events WHERE hall = ? ORDER BY seq DESC LIMIT ?",
                        (hall.id, _DELAY_SAMPLE)):
                    if central_time >= delay_since:
                        delay = central_time - agent_time
                        worst = delay if worst is None else max(worst, delay)
                if worst is not None:
                    delays[hall.id] = worst
            link: dict[str, dict[str, int]] = {}
            marks = ", ".join("?" for _ in _LINK_KINDS)
            for hall, kind, count in con.execute(
                    f"SELECT hall, kind, COUNT(*) FROM integration_log WHERE time >= ? AND hall IS NOT NULL"
                    f" AND kind IN ({marks}) GROUP BY hall, kind", (link_since, *_LINK_KINDS)):
                link.setdefault(hall, {})[kind] = count
            failed = {(r[0], r[1]): r[2] for r in con.execute(
                "SELECT hall, device, COUNT(*) FROM commands WHERE status = 'failed' AND updated_at >= ?"
                " AND device IS NOT NULL GROUP BY hall, device", (failures_since,))}
            switches: dict[tuple[str, str, str | None], tuple[str, int]] = {}
            marks = ", ".join("?" for _ in _SWITCH_ACTIONS)
            for hall, device, game, action, at in con.execute(
                    f"SELECT hall, device, game, action, updated_at FROM commands WHERE status = 'applied'"
                    f" AND device IS NOT NULL AND action IN ({marks}) ORDER BY updated_at, id", _SWITCH_ACTIONS):
                target = (hall, device, game if action.endswith("_game") else None)
                switches[target] = (action, at)  # ordered by time: the newest applied one wins
            missed = _device_missed(con, missed_since) if missed_since is not None else {}
            return MonitorInputs(halls=halls, devices=devices, delays=delays, link_errors=link,
                                 failed_commands=failed, switches=switches, missed=missed)

        return await self._db.reader.run(body)

    async def sync_alerts(self, drafts: Sequence[AlertDraft], *, now: int, cursors: dict[str, int],
                          conditions: Sequence[DeviceCondition],
                          hold: Sequence[tuple[str, str]] = ()) -> tuple[int, int]:
        wanted = {(d.hall, d.device or "", d.kind, d.subject): d for d in drafts}
        held = set(hold)

        def body(con: sqlite3.Connection) -> tuple[int, int]:
            open_rows = {(r[1], r[2] or "", r[3], r[4]): r[0] for r in con.execute(
                "SELECT id, hall, device, kind, subject FROM alerts WHERE cleared_at IS NULL")}
            raised = cleared = 0
            for key, alert_id in open_rows.items():
                if key not in wanted and (key[0], key[2]) not in held:
                    con.execute("UPDATE alerts SET cleared_at = ? WHERE id = ? AND cleared_at IS NULL", (now, alert_id))
                    cleared += 1
            for key, draft in wanted.items():
                if key in open_rows:
                    continue
                con.execute("INSERT INTO alerts (hall, device, kind, subject, detail, raised_at)"
                            " VALUES (?, ?, ?, ?, ?, ?)",
                            (draft.hall, draft.device, draft.kind, draft.subject, draft.detail[:2000], now))
                raised += 1
            for hall, seq in cursors.items():
                con.execute("INSERT INTO monitor_cursors (hall, seq) VALUES (?, ?)"
                            " ON CONFLICT (hall) DO UPDATE SET seq = excluded.seq", (hall, seq))
            con.execute("DELETE FROM monitor_conditions")
            con.executemany("INSERT INTO monitor_conditions (hall, device, name, since, detail) VALUES (?, ?, ?, ?, ?)",
                            [(c.hall, c.device, c.name, c.since, c.detail[:2000]) for c in conditions])
            return raised, cleared

        return await self._db.writer.run(lambda con: _tx(con, body))

    # ---- alerts ----------------------------------------------------------------------------------------
    async def alerts(self, *, hall: str | None = None, halls: Sequence[str] | None = None, state: str = "open",
                     kind: str | None = None, device: str | None = None, limit: int = 100) -> list[AlertRecord]:
        return await shared_reads.alerts(self._db, hall=hall, halls=halls, state=state, kind=kind, device=device,
                                         limit=limit)

    async def alert(self, alert_id: int) -> AlertRecord | None:
        def body(con: sqlite3.Connection) -> AlertRecord | None:
            row = con.execute(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id = ?", (alert_id,)).fetchone()
            return None if row is None else _alert(row)

        return await self._db.reader.run(body)

    async def ack_alert(self, alert_id: int, *, by: str, at: int) -> bool:
        def body(con: sqlite3.Connection) -> bool:
            cur = con.execute("UPDATE alerts SET acked_by = ?, acked_at = ? WHERE id = ? AND acked_at IS NULL",
                              (by, at, alert_id))
            return cur.rowcount == 1

        return await self._db.writer.run(lambda con: _tx(con, body))

    # ---- reconciliation reads --------------------------------------------------------------------------
