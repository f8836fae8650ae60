"""Monitoring and the reconciliation's reads written once for both backends
(:class:`central.repos.monitor.MonitorRepository` over a :class:`~central.store.plans.PlanDatabase`):
alerts, the monitor's cursors and device conditions, its inputs, and the per-device reads the
meters-versus-events report needs. Each unit is a plan (:mod:`central.store.plans`): its reads in one
snapshot, a sync in one transaction, serialised across processes by the dialect's transaction lock
(PostgreSQL's advisory lock; SQLite's ``BEGIN IMMEDIATE`` serialises every write already).

Only SQL both databases accept: no JSON functions (event data is decoded in Python), partial indexes
with literal predicates (both databases have them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import msgspec

from central.eventmoney import missed_from_event
from central.eventtypes import PLAY_TYPES
from central.repos.devices import DeviceCondition, DeviceRecord
from central.repos.halls import HallRecord
from central.repos.monitor import AlertDraft, AlertRecord, DeviceMissed, MonitorInputs

from . import shared_reads
from .plans import Dialect, Plan, PlanDatabase, many, query
from .shared_reads import ALERT_COLUMNS, alert_record
from .sqlhelpers import marks

_DECODER = msgspec.json.Decoder()
_DELAY_SAMPLE: Final = 50
"""Newest events per hall whose processing delay the monitor looks at (the primary key reads them)."""
_LINK_KINDS: Final = ("rejected", "format_error", "resend", "missed")
"""Integration-log kinds the monitor counts: trouble on a hall's link (gaps, refused or malformed
batches) and ``missed`` records (meters moved more than the events said), which get their own alert."""
_CONDITION_TYPES: Final = "'device.door', 'game.error', 'device.status', 'handpay', 'service'"
_PLAY_TYPES: Final = ", ".join(f"'{t}'" for t in sorted(PLAY_TYPES))
_SWITCH_ACTIONS: Final = ("disable_machine", "enable_machine", "disable_game", "enable_game")
_MONITOR_LOCK: Final = 0x68616C6C6D6F6E   # "hallmon": one alert sync at a time per database


def _device_missed(since: int) -> Plan[dict[tuple[str, str], DeviceMissed]]:
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
    for hall, device in (yield query(
            "SELECT DISTINCT hall, device FROM integration_log WHERE kind = 'missed' AND time >= ?"
            " AND hall IS NOT NULL AND device IS NOT NULL ORDER BY hall, device", since)):
        snapshot = (yield query(
            "SELECT seq, agent_time FROM events WHERE hall = ? AND device = ? AND type = 'meters.snapshot'"
            " AND agent_time < ? ORDER BY agent_time DESC, seq DESC LIMIT 1", hall, device, since))
        start_seq, start_time = (int(snapshot[0][0]), int(snapshot[0][1])) if snapshot else (0, since)
        base = (yield query("SELECT bets, wins FROM device_marks WHERE hall = ? AND device = ? AND seq = ?",
                            hall, device, start_seq)) if start_seq else []
        total = yield query("SELECT money_bets, money_wins FROM devices WHERE hall = ? AND id = ?", hall, device)
        if not total:
            continue
        turnover = (total[0][0] or 0) + (total[0][1] or 0) - ((base[0][0] + base[0][1]) if base else 0)
        records = missed = 0
        for (data,) in (yield query("SELECT data FROM events WHERE hall = ? AND device = ? AND type = 'integration'"
                                    " AND seq > ? ORDER BY seq", hall, device, start_seq)):
            record = missed_from_event(0, _DECODER.decode(data))
            if record is None or (start_seq and record.meters_time is not None and record.meters_time <= start_time):
                continue  # a record is the money its snapshot's meters showed: before the start, not after
            records += 1
            missed += record.amounts.bets + record.amounts.wins
        out[(hall, device)] = DeviceMissed(records=records, missed=missed, turnover=max(0, turnover) + missed,
                                           since=start_time)
    return out


def _monitor_state() -> Plan[tuple[dict[str, int], list[DeviceCondition]]]:
    cursors = {r[0]: r[1] for r in (yield query("SELECT hall, seq FROM monitor_cursors"))}
    conditions = [DeviceCondition(hall=r[0], device=r[1], name=r[2], since=r[3], detail=r[4])
                  for r in (yield query("SELECT hall, device, name, since, detail FROM monitor_conditions"
                                        " ORDER BY hall, device, name"))]
    return cursors, conditions


def _monitor_events(hall: str, after_seq: int,
                    through_seq: int) -> Plan[tuple[list[dict[str, Any]], dict[str, int]]]:
    events = [{"seq": r[0], "device": r[1], "type": r[2], "agent_time": r[3], "data": _DECODER.decode(r[4])}
              for r in (yield query(
                  "SELECT seq, device, type, agent_time, data FROM events WHERE hall = ? AND seq > ?"
                  f" AND seq <= ? AND type IN ({_CONDITION_TYPES}) ORDER BY seq", hall, after_seq, through_seq))]
    play = {r[0]: r[1] for r in (yield query(
        "SELECT device, MAX(seq) FROM events WHERE hall = ? AND seq > ? AND seq <= ?"
        f" AND type IN ({_PLAY_TYPES}) GROUP BY device", hall, after_seq, through_seq))}
    return events, play


def _monitor_inputs(delay_since: int, link_since: int, failures_since: int,
                    missed_since: int | None) -> Plan[MonitorInputs]:
    halls = [HallRecord(id=r[0], public_key_pem="", added_at=r[1], last_seq=r[2], last_hash="",
                        online=None if r[3] is None else bool(r[3]), session=r[4], status_at=r[5],
                        state=r[6] or "active")
             for r in (yield query("SELECT id, added_at, last_seq, online, session, status_at, state"
                                   " FROM halls ORDER BY id"))]
    devices = [DeviceRecord(id=r[0], hall=r[1], kind=r[2], online=None if r[3] is None else bool(r[3]),
                            enabled=bool(r[4]), first_seen=r[5], last_seen=r[6], last_seq=r[7])
               for r in (yield query("SELECT id, hall, kind, online, enabled, first_seen, last_seen, last_seq"
                                     " FROM devices ORDER BY hall, id"))]
    delays: dict[str, int] = {}
    for hall in halls:
        worst = None
        for central_time, agent_time in (yield query(
                "SELECT central_time, agent_time FROM events WHERE hall = ? ORDER BY seq DESC LIMIT ?",
                hall.id, _DELAY_SAMPLE)):
            if central_time >= delay_since:
                delay = central_time - agent_time
                worst = delay if worst is None else max(worst, delay)
        if worst is not None:
            delays[hall.id] = worst
    link: dict[str, dict[str, int]] = {}
    for hall_id, kind, count in (yield query(
            "SELECT hall, kind, COUNT(*) FROM integration_log WHERE time >= ? AND hall IS NOT NULL"
            f" AND kind IN ({marks(_LINK_KINDS)}) GROUP BY hall, kind", link_since, *_LINK_KINDS)):
        link.setdefault(hall_id, {})[kind] = count
    failed = {(r[0], r[1]): r[2] for r in (yield query(
        "SELECT hall, device, COUNT(*) FROM commands WHERE status = 'failed' AND updated_at >= ?"
        " AND device IS NOT NULL GROUP BY hall, device", failures_since))}
    switches: dict[tuple[str, str, str | None], tuple[str, int]] = {}
    for hall_id, device, game, action, at in (yield query(
            "SELECT hall, device, game, action, updated_at FROM commands WHERE status = 'applied'"
            f" AND device IS NOT NULL AND action IN ({marks(_SWITCH_ACTIONS)}) ORDER BY updated_at, id",
            *_SWITCH_ACTIONS)):
        target = (hall_id, device, game if action.endswith("_game") else None)
        switches[target] = (action, at)  # ordered by time: the newest applied one wins
    missed = (yield from _device_missed(missed_since)) if missed_since is not None else {}
    return MonitorInputs(halls=halls, devices=devices, delays=delays, link_errors=link,
                         failed_commands=failed, switches=switches, missed=missed)


def _sync_alerts(d: Dialect, drafts: Sequence[AlertDraft], now: int, cursors: dict[str, int],
                 conditions: Sequence[DeviceCondition], hold: Sequence[tuple[str, str]]) -> Plan[tuple[int, int]]:
    wanted = {(a.hall, a.device or "", a.kind, a.subject): a for a in drafts}
    held = set(hold)
    if d.xact_lock is not None:
        yield query(d.xact_lock, _MONITOR_LOCK)
    open_rows = {(r[1], r[2] or "", r[3], r[4]): r[0] for r in (yield query(
        "SELECT id, hall, device, kind, subject FROM alerts WHERE cleared_at IS NULL"))}
    cleared = 0
    for key, alert_id in open_rows.items():
        if key not in wanted and (key[0], key[2]) not in held:
            yield query("UPDATE alerts SET cleared_at = ? WHERE id = ? AND cleared_at IS NULL", now, alert_id)
            cleared += 1
    new = [(a.hall, a.device, a.kind, a.subject, a.detail[:2000], now)
           for key, a in wanted.items() if key not in open_rows]
    yield many("INSERT INTO alerts (hall, device, kind, subject, detail, raised_at) VALUES (?, ?, ?, ?, ?, ?)", new)
    yield many("INSERT INTO monitor_cursors (hall, seq) VALUES (?, ?)"
               " ON CONFLICT (hall) DO UPDATE SET seq = excluded.seq", list(cursors.items()))
    yield query("DELETE FROM monitor_conditions")
    yield many("INSERT INTO monitor_conditions (hall, device, name, since, detail) VALUES (?, ?, ?, ?, ?)",
               [(c.hall, c.device, c.name, c.since, c.detail[:2000]) for c in conditions])
    return len(new), cleared


def _ack_alert(alert_id: int, by: str, at: int) -> Plan[bool]:
    return bool((yield query("UPDATE alerts SET acked_by = ?, acked_at = ? WHERE id = ? AND acked_at IS NULL"
                             " RETURNING id", by, at, alert_id)))


class SharedMonitor:
    """:class:`~central.repos.monitor.MonitorRepository` on either database."""

    def __init__(self, db: PlanDatabase) -> None:
        self._db = db

    # ---- monitor state ---------------------------------------------------------------------------------
    async def monitor_state(self) -> tuple[dict[str, int], list[DeviceCondition]]:
        return await self._db.read(_monitor_state())

    async def monitor_events(self, hall: str, *, after_seq: int,
                             through_seq: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
        return await self._db.read(_monitor_events(hall, after_seq, through_seq))

    async def monitor_inputs(self, *, delay_since: int, link_since: int, failures_since: int,
                             missed_since: int | None = None) -> MonitorInputs:
        return await self._db.read(_monitor_inputs(delay_since, link_since, failures_since, missed_since))

    async def sync_alerts(self, drafts: Sequence[AlertDraft], *, now: int, cursors: dict[str, int],
                          conditions: Sequence[DeviceCondition],
                          hold: Sequence[tuple[str, str]] = ()) -> tuple[int, int]:
        return await self._db.write(_sync_alerts(self._db.dialect, drafts, now, cursors, conditions, hold))

    # ---- alerts ----------------------------------------------------------------------------------------
    async def alerts(self, *, hall: str | None = None, halls: Sequence[str] | None = None, state: str = "open",
                     kind: str | None = None, device: str | None = None, limit: int = 100) -> list[AlertRecord]:
        return await shared_reads.alerts(self._db, hall=hall, halls=halls, state=state, kind=kind, device=device,
                                         limit=limit)

    async def alert(self, alert_id: int) -> AlertRecord | None:
        rows = await self._db.fetch(f"SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?", alert_id)
        return alert_record(rows[0]) if rows else None

    async def ack_alert(self, alert_id: int, *, by: str, at: int) -> bool:
        return await self._db.write(_ack_alert(alert_id, by, at))
