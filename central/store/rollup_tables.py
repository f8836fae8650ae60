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

from .schema import DEVICE_MONEY_COLUMNS
from .sqlhelpers import insert_rows

_DATA_DECODER = msgspec.json.Decoder()


_INSERT_ROLLUPS = "INSERT INTO rollups (hall, device, game, day, bets, wins, rounds, cash_in, cash_out)"


_ROLLUPS_CONFLICT = (
    " ON CONFLICT (hall, device, game, day) DO UPDATE SET"
    " bets = rollups.bets + excluded.bets, wins = rollups.wins + excluded.wins,"
    " rounds = rollups.rounds + excluded.rounds, cash_in = rollups.cash_in + excluded.cash_in,"
    " cash_out = rollups.cash_out + excluded.cash_out"
)


INSERT_MARKS = "INSERT INTO device_marks (hall, device, seq, bets, wins, rounds, cash_in, cash_out)"


_INSERT_MONTHS = "INSERT INTO rollups_monthly (hall, device, game, month, bets, wins, rounds, cash_in, cash_out)"


_MONTHS_CONFLICT = (
    " ON CONFLICT (hall, device, game, month) DO UPDATE SET"
    " bets = rollups_monthly.bets + excluded.bets, wins = rollups_monthly.wins + excluded.wins,"
    " rounds = rollups_monthly.rounds + excluded.rounds, cash_in = rollups_monthly.cash_in + excluded.cash_in,"
    " cash_out = rollups_monthly.cash_out + excluded.cash_out"
)


_INSERT_HOURS = "INSERT INTO rollups_hourly (hall, device, day, hour, bets, wins, rounds, cash_in, cash_out)"


_HOURS_CONFLICT = (
    " ON CONFLICT (day, hall, hour, device) DO UPDATE SET"
    " bets = rollups_hourly.bets + excluded.bets, wins = rollups_hourly.wins + excluded.wins,"
    " rounds = rollups_hourly.rounds + excluded.rounds, cash_in = rollups_hourly.cash_in + excluded.cash_in,"
    " cash_out = rollups_hourly.cash_out + excluded.cash_out"
)


_INSERT_DAYS = "INSERT INTO device_days (hall, device, day, bets, wins, rounds, cash_in, cash_out, snapshots)"


_DAYS_CONFLICT = (
    " ON CONFLICT (day, hall, device) DO UPDATE SET"
    " bets = device_days.bets + excluded.bets, wins = device_days.wins + excluded.wins,"
    " rounds = device_days.rounds + excluded.rounds, cash_in = device_days.cash_in + excluded.cash_in,"
    " cash_out = device_days.cash_out + excluded.cash_out, snapshots = device_days.snapshots + excluded.snapshots"
)


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


def insert_rollups(con: sqlite3.Connection, rollups: Mapping[tuple[str, str, str, str], Any]) -> None:
    """The batch's per-game rollups by gaming day, and the same summed per month (rollups_monthly)."""
    flat: list[Any] = []
    months: dict[tuple[str, str, str, str], list[int]] = {}
    for key, c in rollups.items():
        flat.extend((*key, c.bets, c.wins, c.rounds, c.cash_in, c.cash_out))
        acc = months.setdefault((key[0], key[1], key[2], key[3][:7]), [0, 0, 0, 0, 0])
        acc[0] += c.bets
        acc[1] += c.wins
        acc[2] += c.rounds
        acc[3] += c.cash_in
        acc[4] += c.cash_out
    insert_rows(con, _INSERT_ROLLUPS, 9, flat, _ROLLUPS_CONFLICT)
    insert_rows(con, _INSERT_MONTHS, 9, [v for key, money in months.items() for v in (*key, *money)],
                _MONTHS_CONFLICT)


def insert_day_tables(con: sqlite3.Connection, hall: str, fx: BatchEffects) -> None:
    """The batch's hourly rollups and device days (schema 6)."""
    hours: list[Any] = []
    for (device, day, hour), money in fx.hours.items():
        hours.extend((hall, device, day, hour, *money))
    insert_rows(con, _INSERT_HOURS, 9, hours, _HOURS_CONFLICT)
    cells: list[Any] = []
    for (device, day), cell in fx.days.items():
        cells.extend((hall, device, day, *cell))
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
    """``device_marks`` rows for the batch's meter snapshots: the batch-relative running totals plus
    each device's stored total before the batch (flat, 8 values per row)."""
    marked = [device for device, u in devices.items() if u.marks]
    if not marked:
        return []
    columns = ", ".join(DEVICE_MONEY_COLUMNS)
    stored = {r[0]: r[1:] for r in con.execute(
        f"SELECT id, {columns} FROM devices WHERE hall = ? AND id IN ({', '.join('?' * len(marked))})",
        (hall, *marked))}
    rows: list[Any] = []
    for device in marked:
        base = [value or 0 for value in stored.get(device, (0, 0, 0, 0, 0))]
        for seq, bets, wins, rounds, cash_in, cash_out in devices[device].marks:
            rows.extend((hall, device, seq, base[0] + bets, base[1] + wins, base[2] + rounds, base[3] + cash_in,
                         base[4] + cash_out))
    return rows
