"""The rows a batch's effects (:mod:`central.rollup`) add to the derived tables, as flat column values.

SQL-neutral: both backends bind these values (SQLite in multi-row VALUES statements, PostgreSQL as
column arrays), so what a batch adds to rollups, months, hours, device days, marks, devices and
spans is computed once, here, for both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from central.rollup import BatchEffects, DeviceUpdate

from .schema import DEVICE_MONEY_COLUMNS

ROLLUP_WIDTH: Final = 9
"""hall, device, game, day (or month), bets, wins, rounds, cash_in, cash_out."""

DEVICE_WIDTH: Final = 15
"""hall, id, kind, online, enabled, first_seen, last_seen, last_seq, last_play_seq, identity_seq, money × 5."""


# The upserts' conflict clauses: SQL both SQLite and PostgreSQL accept (``excluded``, CASE, COALESCE).
ROLLUPS_CONFLICT = (
    " ON CONFLICT (hall, device, game, day) DO UPDATE SET"
    " bets = rollups.bets + excluded.bets, wins = rollups.wins + excluded.wins,"
    " rounds = rollups.rounds + excluded.rounds, cash_in = rollups.cash_in + excluded.cash_in,"
    " cash_out = rollups.cash_out + excluded.cash_out"
)


MONTHS_CONFLICT = (
    " ON CONFLICT (hall, device, game, month) DO UPDATE SET"
    " bets = rollups_monthly.bets + excluded.bets, wins = rollups_monthly.wins + excluded.wins,"
    " rounds = rollups_monthly.rounds + excluded.rounds, cash_in = rollups_monthly.cash_in + excluded.cash_in,"
    " cash_out = rollups_monthly.cash_out + excluded.cash_out"
)


HOURS_CONFLICT = (
    " ON CONFLICT (day, hall, hour, device) DO UPDATE SET"
    " bets = rollups_hourly.bets + excluded.bets, wins = rollups_hourly.wins + excluded.wins,"
    " rounds = rollups_hourly.rounds + excluded.rounds, cash_in = rollups_hourly.cash_in + excluded.cash_in,"
    " cash_out = rollups_hourly.cash_out + excluded.cash_out"
)


HALL_HOURS_CONFLICT = (
    " ON CONFLICT (day, hall, hour) DO UPDATE SET"
    " bets = rollups_hourly_halls.bets + excluded.bets, wins = rollups_hourly_halls.wins + excluded.wins,"
    " rounds = rollups_hourly_halls.rounds + excluded.rounds,"
    " cash_in = rollups_hourly_halls.cash_in + excluded.cash_in,"
    " cash_out = rollups_hourly_halls.cash_out + excluded.cash_out"
)


DAYS_CONFLICT = (
    " ON CONFLICT (day, hall, device) DO UPDATE SET"
    " bets = device_days.bets + excluded.bets, wins = device_days.wins + excluded.wins,"
    " rounds = device_days.rounds + excluded.rounds, cash_in = device_days.cash_in + excluded.cash_in,"
    " cash_out = device_days.cash_out + excluded.cash_out, snapshots = device_days.snapshots + excluded.snapshots"
)


DEVICES_CONFLICT = (  # {enabled}: excluded.enabled when the batch said, else the stored value
    " ON CONFLICT (hall, id) DO UPDATE SET"
    " kind = CASE WHEN devices.kind = 'unknown' THEN excluded.kind ELSE devices.kind END,"
    " online = COALESCE(excluded.online, devices.online),"
    " enabled = {enabled},"
    " first_seen = CASE WHEN excluded.first_seen < devices.first_seen THEN excluded.first_seen"
    " ELSE devices.first_seen END,"
    " last_seen = CASE WHEN excluded.last_seen > devices.last_seen THEN excluded.last_seen ELSE devices.last_seen END,"
    " last_seq = CASE WHEN excluded.last_seq > devices.last_seq THEN excluded.last_seq ELSE devices.last_seq END,"
    " last_play_seq = CASE WHEN devices.last_play_seq IS NULL OR excluded.last_play_seq > devices.last_play_seq"
    " THEN COALESCE(excluded.last_play_seq, devices.last_play_seq) ELSE devices.last_play_seq END,"
    " identity_seq = CASE WHEN devices.identity_seq IS NULL OR excluded.identity_seq > devices.identity_seq"
    " THEN COALESCE(excluded.identity_seq, devices.identity_seq) ELSE devices.identity_seq END, "
    + ", ".join(f"{c} = COALESCE(devices.{c}, 0) + excluded.{c}" for c in DEVICE_MONEY_COLUMNS)
)


def rollup_rows(rollups: Mapping[tuple[str, str, str, str], Any]) -> tuple[list[Any], list[Any]]:
    """The batch's per-game rollups by gaming day, and the same summed per month (YYYY-MM)."""
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
    return flat, [v for key, money in months.items() for v in (*key, *money)]


def day_rows(hall: str, fx: BatchEffects) -> tuple[list[Any], list[Any]]:
    """The batch's hourly rollups (hall, device, day, hour, money × 5) and device days (hall, device,
    day, money × 5, snapshots)."""
    hours: list[Any] = []
    for (device, day, hour), money in fx.hours.items():
        hours.extend((hall, device, day, hour, *money))
    cells: list[Any] = []
    for (device, day), cell in fx.days.items():
        cells.extend((hall, device, day, *cell))
    return hours, cells


def hall_hour_rows(hall: str, fx: BatchEffects) -> list[Any]:
    """The batch's hourly rollups summed over its devices (hall, day, hour, money × 5): the hall's and
    the network's hourly chart read a day's ~24 rows per hall from these, not every device's hours."""
    sums: dict[tuple[str, int], list[int]] = {}
    for (_, day, hour), money in fx.hours.items():
        acc = sums.get((day, hour))
        if acc is None:
            sums[(day, hour)] = list(money)
        else:
            for i, amount in enumerate(money):
                acc[i] += amount
    return [v for (day, hour), money in sums.items() for v in (hall, day, hour, *money)]


def mark_rows(hall: str, devices: Mapping[str, DeviceUpdate],
              stored: Mapping[str, Sequence[int | None]]) -> list[Any]:
    """``device_marks`` rows for the batch's meter snapshots: the batch-relative running totals plus
    each device's stored total before the batch (``stored``: device → its five money columns), flat, 8
    values per row."""
    rows: list[Any] = []
    for device, u in devices.items():
        if not u.marks:
            continue
        base = [value or 0 for value in stored.get(device, (0, 0, 0, 0, 0))]
        for seq, bets, wins, rounds, cash_in, cash_out in u.marks:
            rows.extend((hall, device, seq, base[0] + bets, base[1] + wins, base[2] + rounds, base[3] + cash_in,
                         base[4] + cash_out))
    return rows


def marked_devices(devices: Mapping[str, DeviceUpdate]) -> list[str]:
    """The devices whose stored totals :func:`mark_rows` needs (those with a meter snapshot in the batch)."""
    return [device for device, u in devices.items() if u.marks]


def device_rows(hall: str, devices: Mapping[str, DeviceUpdate]) -> tuple[list[Any], list[Any]]:
    """``devices`` upsert rows (:data:`DEVICE_WIDTH` each) as (unstated, stated): whether the batch said
    if the device is enabled decides whether the upsert keeps the stored value."""
    stated: list[Any] = []
    unstated: list[Any] = []
    for device, u in devices.items():
        (unstated if u.enabled is None else stated).extend((
            hall, device, u.kind or "unknown", None if u.online is None else int(u.online),
            1 if u.enabled is None else int(u.enabled), u.first_seen, u.last_seen, u.last_seq,
            u.last_play_seq, u.identity_seq, *u.money))
    return unstated, stated


def span_rows(hall: str, devices: Mapping[str, DeviceUpdate]) -> list[Any]:
    """``device_spans`` rows (hall, device, first_seq, last_seq), in device order."""
    spans: list[Any] = []
    for device in sorted(devices):
        u = devices[device]
        spans.extend((hall, device, u.first_seq, u.last_seq))
    return spans
