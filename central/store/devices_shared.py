"""The floor view's reads written once for both backends: what :func:`central.floor.derive` needs of
one hall, in one snapshot (a plan, :mod:`central.store.plans`).

Every read is bounded: the condition events after the monitor's cursor (a range of the primary key, at
most ``max_events`` seqs), each device's newest game event (``devices.last_play_seq``, kept by ingest:
one primary-key lookup per device), and the applied enable/disable commands of the hall
(``commands_by_hall``). Event data is decoded in Python (no JSON functions).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from central.eventtypes import CONDITION_TYPES
from central.repos.devices import DeviceEventRow, DeviceRecord, FloorReads

from . import shared_reads
from .plans import Plan, PlanDatabase, query
from .sqlhelpers import marks

_DECODER = msgspec.json.Decoder()
_CONDITIONS = ", ".join(f"'{t}'" for t in CONDITION_TYPES)
_SWITCHES = {"disable_machine": False, "enable_machine": True, "disable_game": False, "enable_game": True}


def _floor_reads(hall: str, after_seq: int, max_events: int) -> Plan[FloorReads]:
    newest = (yield query("SELECT MAX(seq) FROM events WHERE hall = ?", hall))[0][0] or 0
    from_seq = max(after_seq, newest - max_events)
    events: dict[str, list[DeviceEventRow]] = {}
    for seq, device, at, kind, data in (yield query(
            "SELECT seq, device, agent_time, type, data FROM events WHERE hall = ? AND seq > ?"
            f" AND type IN ({_CONDITIONS}) ORDER BY seq", hall, from_seq)):
        events.setdefault(device, []).append(DeviceEventRow(seq, at, kind, _DECODER.decode(data)))
    last_play: dict[str, int] = {}
    for device, *row in (yield query(
            "SELECT d.id, e.seq, e.agent_time, e.type, e.data FROM devices d JOIN events e"
            " ON e.hall = d.hall AND e.seq = d.last_play_seq WHERE d.hall = ? ORDER BY d.id", hall)):
        last_play[device] = row[1]
        if row[0] > after_seq:   # the monitor has not folded it yet: it may clear a fault
            play = DeviceEventRow(row[0], row[1], row[2], _DECODER.decode(row[3]))
            events[device] = sorted([*events.get(device, []), play], key=lambda e: e.seq)
    switches: dict[str, dict[str | None, bool]] = {}
    switched_at: dict[str, dict[str | None, int]] = {}
    for device, action, game, at in (yield query(
            "SELECT device, action, game, updated_at FROM commands WHERE hall = ? AND status = 'applied'"
            f" AND device IS NOT NULL AND action IN ({marks(_SWITCHES)}) ORDER BY updated_at, created_at",
            hall, *_SWITCHES)):
        key = game if action.endswith("_game") else None
        switches.setdefault(device, {})[key] = _SWITCHES[action]
        switched_at.setdefault(device, {})[key] = at
    return FloorReads(events=events, last_play=last_play, switches=switches, from_seq=from_seq,
                      newest_seq=newest, switched_at=switched_at)


class SharedDevices:
    """:class:`~central.repos.devices.DeviceRepository` on either database."""

    def __init__(self, db: PlanDatabase) -> None:
        self._db = db

    async def devices(self, *, hall: str | None = None, halls: Sequence[str] | None = None) -> list[DeviceRecord]:
        return await shared_reads.devices(self._db, hall=hall, halls=halls)

    async def floor_reads(self, hall: str, *, after_seq: int, max_events: int) -> FloorReads:
        return await self._db.read(_floor_reads(hall, after_seq, max_events))
