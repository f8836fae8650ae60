"""Devices and the floor view's reads on PostgreSQL (:class:`central.repos.devices.DeviceRepository`):
the same bounded reads as the SQLite backend's (:mod:`central.store.devices_sqlite`), in one snapshot."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from central.eventtypes import CONDITION_TYPES
from central.repos.devices import DeviceEventRow, DeviceRecord, FloorReads

from . import shared_reads
from .pg_db import PgDatabase

_DECODER = msgspec.json.Decoder()
_CONDITIONS = ", ".join(f"'{t}'" for t in CONDITION_TYPES)
_SWITCHES = {"disable_machine": False, "enable_machine": True, "disable_game": False, "enable_game": True}


class PgDevices:
    """:class:`~central.repos.devices.DeviceRepository` on a :class:`PgDatabase`."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    async def devices(self, *, hall: str | None = None, halls: Sequence[str] | None = None) -> list[DeviceRecord]:
        return await shared_reads.devices(self._db, hall=hall, halls=halls)

    async def floor_reads(self, hall: str, *, after_seq: int, max_events: int) -> FloorReads:
        async with self._db.reading() as con:
            newest = await con.fetchval("SELECT MAX(seq) FROM events WHERE hall = ?", hall) or 0
            from_seq = max(after_seq, newest - max_events)
            events: dict[str, list[DeviceEventRow]] = {}
            for seq, device, at, kind, data in await con.fetch(
                    "SELECT seq, device, agent_time, type, data FROM events WHERE hall = ? AND seq > ?"
                    f" AND type IN ({_CONDITIONS}) ORDER BY seq", hall, from_seq):
                events.setdefault(device, []).append(DeviceEventRow(seq, at, kind, _DECODER.decode(data)))
            last_play: dict[str, int] = {}
            for device, *row in await con.fetch(
                    "SELECT d.id, e.seq, e.agent_time, e.type, e.data FROM devices d JOIN events e"
                    " ON e.hall = d.hall AND e.seq = d.last_play_seq WHERE d.hall = ? ORDER BY d.id", hall):
                last_play[device] = row[1]
                if row[0] > after_seq:   # the monitor has not folded it yet: it may clear a fault
                    play = DeviceEventRow(row[0], row[1], row[2], _DECODER.decode(row[3]))
                    events[device] = sorted([*events.get(device, []), play], key=lambda e: e.seq)
            switches: dict[str, dict[str | None, bool]] = {}
            switched_at: dict[str, dict[str | None, int]] = {}
            for device, action, game, at in await con.fetch(
                    "SELECT device, action, game, updated_at FROM commands WHERE hall = ? AND status = 'applied'"
                    " AND device IS NOT NULL AND action = ANY(?::text[]) ORDER BY updated_at, created_at",
                    hall, list(_SWITCHES)):
                key = game if action.endswith("_game") else None
                switches.setdefault(device, {})[key] = _SWITCHES[action]
                switched_at.setdefault(device, {})[key] = at
        return FloorReads(events=events, last_play=last_play, switches=switches, from_seq=from_seq,
                          newest_seq=newest, switched_at=switched_at)
