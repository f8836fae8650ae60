"""The derived tables of ingest on PostgreSQL: the upserts of a batch's effects and their rebuild from
the stored events. The rows and conflict clauses are :mod:`central.store.effect_rows`' (shared with
SQLite); each upsert here is one statement over column arrays (``unnest``), whatever the row count."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgspec

from central.rollup import BatchEffects, DeviceUpdate, effects
from protocols.sync.gamingday import DayRule

from .effect_rows import (
    DAYS_CONFLICT,
    HALL_HOURS_CONFLICT,
    HOURS_CONFLICT,
    MONTHS_CONFLICT,
    ROLLUPS_CONFLICT,
    day_rows,
    hall_hour_rows,
    mark_rows,
    marked_devices,
    rollup_rows,
)
from .pg_db import PgConn
from .schema import DEVICE_MONEY_COLUMNS

_DATA_DECODER = msgspec.json.Decoder()

_MONEY: Final = (("bets", "bigint"), ("wins", "bigint"), ("rounds", "bigint"), ("cash_in", "bigint"),
                 ("cash_out", "bigint"))

ROLLUPS: Final = (("hall", "text"), ("device", "text"), ("game", "text"), ("day", "text"), *_MONEY)
MONTHS: Final = (("hall", "text"), ("device", "text"), ("game", "text"), ("month", "text"), *_MONEY)
HOURS: Final = (("hall", "text"), ("device", "text"), ("day", "text"), ("hour", "bigint"), *_MONEY)
HALL_HOURS: Final = (("hall", "text"), ("day", "text"), ("hour", "bigint"), *_MONEY)
DAYS: Final = (("hall", "text"), ("device", "text"), ("day", "text"), *_MONEY, ("snapshots", "bigint"))
MARKS: Final = (("hall", "text"), ("device", "text"), ("seq", "bigint"), *_MONEY)


async def upsert(con: PgConn, table: str, columns: Sequence[tuple[str, str]], flat: Sequence[Any],
                 tail: str = "") -> None:
    """``INSERT INTO table (columns) SELECT * FROM unnest(arrays) tail`` over flat values (one row per
    ``len(columns)`` values): one statement and one round trip for any number of rows. The rows' keys
    must be distinct when ``tail`` updates on conflict (the effects are summed per key already)."""
    width = len(columns)
    if not flat:
        return
    if len(flat) % width:
        raise ValueError(f"{len(flat)} values do not make rows of {width}")
    names = ", ".join(name for name, _ in columns)
    arrays = ", ".join(f"?::{kind}[]" for _, kind in columns)
    await con.execute(f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}){tail}",
                      *(list(flat[i::width]) for i in range(width)))


async def insert_rollups(con: PgConn, rollups: Mapping[tuple[str, str, str, str], Any]) -> None:
    days, months = rollup_rows(rollups)
    await upsert(con, "rollups", ROLLUPS, days, ROLLUPS_CONFLICT)
    await upsert(con, "rollups_monthly", MONTHS, months, MONTHS_CONFLICT)


async def insert_day_tables(con: PgConn, hall: str, fx: BatchEffects) -> None:
    hours, cells = day_rows(hall, fx)
    await upsert(con, "rollups_hourly", HOURS, hours, HOURS_CONFLICT)
    await upsert(con, "rollups_hourly_halls", HALL_HOURS, hall_hour_rows(hall, fx), HALL_HOURS_CONFLICT)
    await upsert(con, "device_days", DAYS, cells, DAYS_CONFLICT)


async def insert_marks(con: PgConn, hall: str, devices: Mapping[str, DeviceUpdate]) -> None:
    """The batch's ``device_marks`` (before the devices' totals move: they add the stored totals)."""
    marked = marked_devices(devices)
    if not marked:
        return
    stored = {r[0]: tuple(r[1:]) for r in await con.fetch(
        f"SELECT id, {', '.join(DEVICE_MONEY_COLUMNS)} FROM devices WHERE hall = ? AND id = ANY(?::text[])",
        hall, marked)}
    await upsert(con, "device_marks", MARKS, mark_rows(hall, devices, stored))


class _StoredEvent:
    """What :func:`central.rollup.effects` reads of an event, from a stored row."""

    __slots__ = ("agent_time", "data", "device", "seq", "type")

    def __init__(self, seq: int, device: str, type_: str, agent_time: int, data: dict[str, Any]) -> None:
        self.seq, self.device, self.type, self.agent_time, self.data = seq, device, type_, agent_time, data


_REBUILD_CHUNK = 20_000


async def rebuild_day_tables(con: PgConn, hall: str, rule: DayRule, *, rollups: bool) -> None:
    """Recompute a hall's hourly rollups and device days (and with ``rollups`` its daily and monthly
    rollups) from its stored events by ``rule`` (a changed gaming day), inside the caller's transaction."""
    await con.execute("DELETE FROM rollups_hourly WHERE hall = ?", hall)
    await con.execute("DELETE FROM rollups_hourly_halls WHERE hall = ?", hall)
    await con.execute("DELETE FROM device_days WHERE hall = ?", hall)
    if rollups:
        await con.execute("DELETE FROM rollups WHERE hall = ?", hall)
        await con.execute("DELETE FROM rollups_monthly WHERE hall = ?", hall)
    after = 0
    while True:
        rows = await con.fetch("SELECT seq, device, type, agent_time, data FROM events WHERE hall = ? AND seq > ?"
                               " ORDER BY seq LIMIT ?", hall, after, _REBUILD_CHUNK)
        if not rows:
            return
        after = rows[-1][0]
        fx = effects(hall, [_StoredEvent(r[0], r[1], r[2], r[3], _DATA_DECODER.decode(r[4])) for r in rows], rule)
        await insert_day_tables(con, hall, fx)
        if rollups:
            await insert_rollups(con, fx.rollups)
