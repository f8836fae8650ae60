"""The SQLite tables ingest derives from events (rollups by day, month and hour, device days, meter
marks): their upserts, and their rebuild from the stored events (a changed gaming day, or a migration).
The effects themselves are the pure rule of :mod:`central.rollup`."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

import msgspec

from central.eventmoney import event_money
from central.eventtypes import PLAY_TYPES
from central.rollup import BatchEffects, DeviceUpdate, effects
from protocols.sync.gamingday import DayRule
from protocols.sync.money import ZERO

from .effect_rows import DAYS_CONFLICT as _DAYS_CONFLICT
from .effect_rows import HALL_HOURS_CONFLICT as _HALL_HOURS_CONFLICT
from .effect_rows import HOURS_CONFLICT as _HOURS_CONFLICT
from .effect_rows import MONTHS_CONFLICT as _MONTHS_CONFLICT
from .effect_rows import ROLLUP_WIDTH, day_rows, hall_hour_rows, mark_rows, marked_devices, rollup_rows
from .effect_rows import ROLLUPS_CONFLICT as _ROLLUPS_CONFLICT
from .schema import DEVICE_MONEY_COLUMNS
from .sqlhelpers import insert_rows

_DATA_DECODER = msgspec.json.Decoder()


_INSERT_ROLLUPS = "INSERT INTO rollups (hall, device, game, day, bets, wins, rounds, cash_in, cash_out)"


INSERT_MARKS = "INSERT INTO device_marks (hall, device, seq, bets, wins, rounds, cash_in, cash_out)"


_INSERT_MONTHS = "INSERT INTO rollups_monthly (hall, device, game, month, bets, wins, rounds, cash_in, cash_out)"


_INSERT_HOURS = "INSERT INTO rollups_hourly (hall, device, day, hour, bets, wins, rounds, cash_in, cash_out)"


_INSERT_HALL_HOURS = "INSERT INTO rollups_hourly_halls (hall, day, hour, bets, wins, rounds, cash_in, cash_out)"


_INSERT_DAYS = "INSERT INTO device_days (hall, device, day, bets, wins, rounds, cash_in, cash_out, snapshots)"


def fill_device_money(con: sqlite3.Connection) -> None:
    """Schema 5 on an older file: every device's last play, events money and snapshot marks, from its
    stored events (one pass in (hall, seq) order, by the same rule as ingest's effects)."""
    totals: dict[tuple[str, str], list[int]] = {}
    last_play: dict[tuple[str, str], int] = {}
    marks: list[Any] = []
    for hall, seq, device, kind, raw in con.execute("SELECT hall, seq, device, type, data FROM events"
                                                    " ORDER BY hall, seq"):
        key = (hall, device)
        total = totals.setdefault(key, [0, 0, 0, 0, 0])
        if kind in PLAY_TYPES:
            last_play[key] = seq
        elif kind == "meters.snapshot":
            marks.extend((hall, device, seq, *total))
            continue
        money = event_money(kind, _DATA_DECODER.decode(raw))
        if money is not ZERO:
            for index, amount in enumerate((money.bets, money.wins, money.rounds, money.cash_in, money.cash_out)):
                total[index] += amount
    insert_rows(con, INSERT_MARKS, 8, marks)
    sets = ", ".join(f"{column} = ?" for column in DEVICE_MONEY_COLUMNS)
    con.executemany(f"UPDATE devices SET last_play_seq = ?, {sets} WHERE hall = ? AND id = ?",
                    [(last_play.get(key), *total, *key) for key, total in totals.items()])


IDENTITY_LIKE = '%"status":"identity"%'
"""Every ``device.status`` identity's data holds this (canonical JSON); the data decides."""


def fill_identity_seq(con: sqlite3.Connection) -> None:
    """Schema 9 on an older file: each device's newest ``device.status`` identity, from its events."""
    newest: dict[tuple[str, str], int] = {}
    for hall, device, seq, raw in con.execute("SELECT hall, device, seq, data FROM events"
                                              " WHERE type = 'device.status' AND data LIKE ?", (IDENTITY_LIKE,)):
        data = _DATA_DECODER.decode(raw)
        if isinstance(data, dict) and data.get("status") == "identity" and seq > newest.get((hall, device), 0):
            newest[(hall, device)] = seq
    con.executemany("UPDATE devices SET identity_seq = ? WHERE hall = ? AND id = ?",
                    [(seq, hall, device) for (hall, device), seq in newest.items()])


def insert_rollups(con: sqlite3.Connection, rollups: Mapping[tuple[str, str, str, str], Any]) -> None:
    """The batch's per-game rollups by gaming day, and the same summed per month (rollups_monthly)."""
    days, months = rollup_rows(rollups)
    insert_rows(con, _INSERT_ROLLUPS, ROLLUP_WIDTH, days, _ROLLUPS_CONFLICT)
    insert_rows(con, _INSERT_MONTHS, ROLLUP_WIDTH, months, _MONTHS_CONFLICT)


def insert_day_tables(con: sqlite3.Connection, hall: str, fx: BatchEffects) -> None:
    """The batch's hourly rollups (per device, schema 6, and per hall, schema 10) and device days (schema 6)."""
    hours, cells = day_rows(hall, fx)
    insert_rows(con, _INSERT_HOURS, 9, hours, _HOURS_CONFLICT)
    insert_rows(con, _INSERT_HALL_HOURS, 8, hall_hour_rows(hall, fx), _HALL_HOURS_CONFLICT)
    insert_rows(con, _INSERT_DAYS, 9, cells, _DAYS_CONFLICT)


class _StoredEvent:
    """What :func:`central.rollup.effects` reads of an event, from a stored row."""

    __slots__ = ("agent_time", "data", "device", "seq", "type")

    def __init__(self, seq: int, device: str, type_: str, agent_time: int, data: dict[str, Any]) -> None:
        self.seq, self.device, self.type, self.agent_time, self.data = seq, device, type_, agent_time, data


_REBUILD_CHUNK = 20_000


def rebuild_day_tables(con: sqlite3.Connection, hall: str, rule: DayRule, *, rollups: bool) -> None:
    """Recompute a hall's hourly rollups and device days (and with ``rollups`` its daily rollups) from
    its stored events by ``rule``: a changed day rule, or schema 6 on an older file."""
    con.execute("DELETE FROM rollups_hourly WHERE hall = ?", (hall,))
    con.execute("DELETE FROM rollups_hourly_halls WHERE hall = ?", (hall,))
    con.execute("DELETE FROM device_days WHERE hall = ?", (hall,))
    if rollups:
        con.execute("DELETE FROM rollups WHERE hall = ?", (hall,))
        con.execute("DELETE FROM rollups_monthly WHERE hall = ?", (hall,))
    after = 0
    while True:
        rows = con.execute("SELECT seq, device, type, agent_time, data FROM events WHERE hall = ? AND seq > ?"
                           " ORDER BY seq LIMIT ?", (hall, after, _REBUILD_CHUNK)).fetchall()
        if not rows:
            return
        after = rows[-1][0]
        fx = effects(hall, [_StoredEvent(r[0], r[1], r[2], r[3], _DATA_DECODER.decode(r[4])) for r in rows], rule)
        insert_day_tables(con, hall, fx)
        if rollups:
            insert_rollups(con, fx.rollups)


def marks(con: sqlite3.Connection, hall: str, devices: Mapping[str, DeviceUpdate]) -> list[Any]:
    """``device_marks`` rows for the batch's meter snapshots (:func:`central.store.effect_rows.mark_rows`)."""
    marked = marked_devices(devices)
    if not marked:
        return []
    columns = ", ".join(DEVICE_MONEY_COLUMNS)
    stored = {r[0]: r[1:] for r in con.execute(
        f"SELECT id, {columns} FROM devices WHERE hall = ? AND id IN ({', '.join('?' * len(marked))})",
        (hall, *marked))}
    return mark_rows(hall, devices, stored)
