"""The SQLite backend: WAL, ``synchronous=FULL``, one writer thread, one reader thread.

Why threads: :mod:`sqlite3` has no async API and every call blocks, including the fsync of a commit.
The store owns two single-thread executors, each with its own connection created on (and only used
by) its thread: a **writer** that runs every transaction in turn — SQLite allows one writer at a
time anyway, so serialising writes here avoids ``SQLITE_BUSY`` retries — and a **reader** for
lookups and reports, which WAL lets run beside the writer without blocking it. The event loop only
awaits futures, so a slow commit never stalls other halls' verification or the HTTP API.

Ingest goes through a group commit (:mod:`central.store.group_commit`): the batches of many halls that
wait while the writer commits are committed together in the next ``BEGIN IMMEDIATE`` transaction, each
in its own savepoint, so the fsync of ``synchronous=FULL`` is paid per commit, not per batch. The write
lock is taken before any chain state is read, so even a second process on the same file cannot
interleave a hall's batches; each caller's result is returned only after the commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, TypeVar

import msgspec
import structlog

from central.reconcile import event_money
from protocols.sync import GENESIS_HASH, Event, canonical_bytes
from protocols.sync.gamingday import DEFAULT_START, DEFAULT_ZONE, UTC_MIDNIGHT, DayRule, day_rule
from protocols.sync.money import ZERO
from protocols.sync.vocabulary import PLAY_TYPES

from .base import (
    COMMAND_STATUSES,
    GROUP_BY,
    HALL_STATES,
    ApiKeyRecord,
    AuditEntry,
    CommandRecord,
    DeviceRecord,
    GgrRow,
    HallKeyConflict,
    HallRecord,
    HourRow,
    IngestResult,
    LogEntry,
    SignedHeader,
    StoreError,
    command_transition_allowed,
)
from .catalog_sqlite import CatalogSqliteMixin
from .export_sqlite import ExportSqliteMixin, insert_signed_header
from .floor_sqlite import FloorSqliteMixin
from .group_commit import GroupCommitter
from .metrics_sqlite import MetricsSqliteMixin
from .monitor_sqlite import MonitorSqliteMixin
from .rollup import BatchEffects, DeviceUpdate, effects
from .schema import ADDED_COLUMNS, DDL, DEVICE_MONEY_COLUMNS, SCHEMA_VERSION
from .sqlhelpers import RollupSource, insert_rows, rollup_scope, rollup_source
from .sqlhelpers import hall_scope as _scope
from .sqlhelpers import transaction as _transaction
from .sqlhelpers import where_clause as _where
from .staging import EVENT_COLUMNS, WIDTH, StagedEvents, stage_events

T = TypeVar("T")
log = structlog.get_logger("central.store")

_MAX_EVENTS_LIMIT = 10_000
_DATA_DECODER = msgspec.json.Decoder()

_INSERT_EVENTS = f"INSERT INTO events ({', '.join(EVENT_COLUMNS)})"
_INSERT_ROLLUPS = "INSERT INTO rollups (hall, device, game, day, bets, wins, rounds, cash_in, cash_out)"
_ROLLUPS_CONFLICT = (
    " ON CONFLICT (hall, device, game, day) DO UPDATE SET"
    " bets = rollups.bets + excluded.bets, wins = rollups.wins + excluded.wins,"
    " rounds = rollups.rounds + excluded.rounds, cash_in = rollups.cash_in + excluded.cash_in,"
    " cash_out = rollups.cash_out + excluded.cash_out"
)
_INSERT_DEVICES = (f"INSERT INTO devices (hall, id, kind, online, enabled, first_seen, last_seen, last_seq,"
                   f" last_play_seq, {', '.join(DEVICE_MONEY_COLUMNS)})")
_DEVICES_CONFLICT = (  # {enabled}: excluded.enabled when the batch said, else the stored value
    " ON CONFLICT (hall, id) DO UPDATE SET"
    " kind = CASE WHEN devices.kind = 'unknown' THEN excluded.kind ELSE devices.kind END,"
    " online = COALESCE(excluded.online, devices.online),"
    " enabled = {enabled},"
    " first_seen = CASE WHEN excluded.first_seen < devices.first_seen THEN excluded.first_seen"
    " ELSE devices.first_seen END,"
    " last_seen = CASE WHEN excluded.last_seen > devices.last_seen THEN excluded.last_seen ELSE devices.last_seen END,"
    " last_seq = CASE WHEN excluded.last_seq > devices.last_seq THEN excluded.last_seq ELSE devices.last_seq END,"
    " last_play_seq = CASE WHEN devices.last_play_seq IS NULL OR excluded.last_play_seq > devices.last_play_seq"
    " THEN COALESCE(excluded.last_play_seq, devices.last_play_seq) ELSE devices.last_play_seq END, "
    + ", ".join(f"{c} = COALESCE(devices.{c}, 0) + excluded.{c}" for c in DEVICE_MONEY_COLUMNS)
)
_DEVICE_WIDTH = 14
_INSERT_MARKS = "INSERT INTO device_marks (hall, device, seq, bets, wins, rounds, cash_in, cash_out)"
_HALL_COLUMNS = ("id, public_key_pem, added_at, last_seq, last_hash, online, session, status_at, timezone,"
                 " gaming_day_start, settings_version, state")
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
_INSERT_SPANS = "INSERT INTO device_spans (hall, device, first_seq, last_seq)"
_SPANS_CONFLICT = (" ON CONFLICT (hall, device, first_seq) DO UPDATE SET last_seq ="
                   " MAX(device_spans.last_seq, excluded.last_seq)")
_INSERT_DAYS = "INSERT INTO device_days (hall, device, day, bets, wins, rounds, cash_in, cash_out, snapshots)"
_DAYS_CONFLICT = (
    " ON CONFLICT (day, hall, device) DO UPDATE SET"
    " bets = device_days.bets + excluded.bets, wins = device_days.wins + excluded.wins,"
    " rounds = device_days.rounds + excluded.rounds, cash_in = device_days.cash_in + excluded.cash_in,"
    " cash_out = device_days.cash_out + excluded.cash_out, snapshots = device_days.snapshots + excluded.snapshots"
)
_COMMAND_COLUMNS = ("id, hall, device, action, game, params, issued_at, expires_at, status, detail, created_by,"
                    " created_at, updated_at")
_INSERT_LOG = "INSERT INTO integration_log (time, hall, device, kind, detail) VALUES (?, ?, ?, ?, ?)"


_WRITER_CACHE_KIB = 65_536
"""The writer's page cache (SQLite's default is 2 MiB). One ingest transaction of 5,000 events dirties
about 2 MiB of table and index pages; with the default cache SQLite spills dirty pages to the WAL in
the middle of the transaction and re-reads index pages it just evicted (seen as pwrite/pread in
profiles of the writer thread)."""


def _owner_only(path: str) -> None:
    """Make the database file (and its WAL and shared-memory files) readable by central's user alone.

    It holds every hall's money. SQLite creates a new file 0644 (less the umask) and gives the -wal and
    -shm files the main file's mode, so creating the file 0600 first covers all three; files of an
    older install are tightened when central opens them."""
    if path == ":memory:" or path.startswith("file:"):
        return
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass
    for name in (path, path + "-wal", path + "-shm"):
        with contextlib.suppress(FileNotFoundError):
            if os.stat(name).st_mode & 0o077:
                os.chmod(name, 0o600)


def _connect(path: str, *, readonly: bool) -> sqlite3.Connection:
    """A connection in autocommit mode (we issue BEGIN/COMMIT ourselves) with durable settings."""
    if readonly:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=True)
    else:
        _owner_only(path)
        con = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
        con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("PRAGMA busy_timeout=10000")
    if not readonly:
        con.execute(f"PRAGMA cache_size=-{_WRITER_CACHE_KIB}")
    return con


class _Worker:
    """One thread with one connection: sqlite3 objects never cross threads."""

    def __init__(self, name: str, path: str, *, readonly: bool) -> None:
        self._local = threading.local()
        self._path = path
        self._readonly = readonly
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    def _con(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = self._local.con = _connect(self._path, readonly=self._readonly)
        return con

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(self._con()))

    def _close_here(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self._close_here)
        self._pool.shutdown(wait=True)






def _fill_device_money(con: sqlite3.Connection) -> None:
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
    insert_rows(con, _INSERT_MARKS, 8, marks)
    sets = ", ".join(f"{column} = ?" for column in DEVICE_MONEY_COLUMNS)
    con.executemany(f"UPDATE devices SET last_play_seq = ?, {sets} WHERE hall = ? AND id = ?",
                    [(last_play.get(key), *total, *key) for key, total in totals.items()])


def _insert_rollups(con: sqlite3.Connection, rollups: Mapping[tuple[str, str, str, str], Any]) -> None:
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


def _insert_day_tables(con: sqlite3.Connection, hall: str, fx: BatchEffects) -> None:
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
    """What :func:`central.store.rollup.effects` reads of an event, from a stored row."""

    __slots__ = ("agent_time", "data", "device", "seq", "type")

    def __init__(self, seq: int, device: str, type_: str, agent_time: int, data: dict[str, Any]) -> None:
        self.seq, self.device, self.type, self.agent_time, self.data = seq, device, type_, agent_time, data


_REBUILD_CHUNK = 20_000


def _rebuild_day_tables(con: sqlite3.Connection, hall: str, rule: DayRule, *, rollups: bool) -> None:
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
        fx = effects(hall, [_StoredEvent(r[0], r[1], r[2], r[3], _DATA_DECODER.decode(r[4])) for r in rows],
                     rule)  # type: ignore[misc]
        _insert_day_tables(con, hall, fx)
        if rollups:
            _insert_rollups(con, fx.rollups)


def _marks(con: sqlite3.Connection, hall: str, devices: Mapping[str, DeviceUpdate]) -> list[Any]:
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


def _presence_is_newer(stored_online: int | None, stored_session: int | None, stored_at: int | None,
                       online: bool, session: int, at: int) -> bool:
    """The ordering rule of :meth:`central.store.base.Store.set_presence` (read its docstring)."""
    if stored_session is None or session > stored_session:
        return True
    if session < stored_session or not stored_online:
        return False  # an older connection, or this one already ended (offline)
    return not online or at > (stored_at or 0)  # a redelivered retained message is not news


def _command(row: tuple[Any, ...]) -> CommandRecord:
    return CommandRecord(id=row[0], hall=row[1], device=row[2], action=row[3], game=row[4],
                         params=_DATA_DECODER.decode(row[5]), issued_at=row[6], expires_at=row[7], status=row[8],
                         detail=row[9], created_by=row[10], created_at=row[11], updated_at=row[12])


def _command_log_detail(command_id: str, action: str, game: str | None, status: str, detail: str) -> str:
    what = f"{action} {game}" if game is not None else action
    text = f"command {command_id} {what}: {status}"
    return (f"{text}: {detail}" if detail else text)[:2000]




class SqliteStore(CatalogSqliteMixin, MetricsSqliteMixin, ExportSqliteMixin, MonitorSqliteMixin,
                  FloorSqliteMixin):
    """:class:`central.store.base.Store` on one SQLite file. Create with :meth:`open`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._writer = _Worker("store-writer", path, readonly=False)
        self._reader = _Worker("store-reader", path, readonly=True)
        self.group_commit = GroupCommitter(self._writer.run)
        """Ingest batches and integration-log rows of every hall are committed through this (see the module
        docstring); its ``stats`` say how many units each commit carried."""

    @classmethod
    async def open(cls, path: str | Path) -> SqliteStore:
        """Open (creating if needed) the database at ``path`` and bring its schema up to date."""
        target = Path(path)
        if not target.parent.exists():
            raise StoreError(f"directory {target.parent} does not exist")
        store = cls(str(target))
        await store._writer.run(store._migrate)
        return store

    @staticmethod
    def _migrate(con: sqlite3.Connection) -> None:
        """Create what is missing; add columns newer than the file (additive only, in one transaction)."""
        had_spans = con.execute("SELECT 1 FROM sqlite_master WHERE name = 'device_spans'").fetchone() is not None
        had_months = con.execute("SELECT 1 FROM sqlite_master WHERE name = 'rollups_monthly'").fetchone() is not None
        con.executescript(DDL)

        def body(c: sqlite3.Connection) -> None:
            row = c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is not None and int(row[0]) > SCHEMA_VERSION:
                raise StoreError(f"database schema {row[0]} is newer than this build ({SCHEMA_VERSION})")
            for table, column, decl in ADDED_COLUMNS:
                have = {r[1] for r in c.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    c.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
            c.execute("DROP INDEX IF EXISTS events_by_device")   # schema 5
            if row is not None and int(row[0]) < 5:
                _fill_device_money(c)
            if row is not None and int(row[0]) < 6:   # every hall was on UTC days: its rollups stay
                for (hall,) in c.execute("SELECT id FROM halls").fetchall():
                    _rebuild_day_tables(c, hall, UTC_MIDNIGHT, rollups=False)
            if row is not None and not had_months:
                c.execute("INSERT INTO rollups_monthly (hall, device, game, month, bets, wins, rounds, cash_in,"
                          " cash_out) SELECT hall, device, game, substr(day, 1, 7), SUM(bets), SUM(wins), SUM(rounds),"
                          " SUM(cash_in), SUM(cash_out) FROM rollups GROUP BY hall, device, game, substr(day, 1, 7)")
            if row is not None and not had_spans:   # a device's older events: one span from seq 1
                c.execute("INSERT OR IGNORE INTO device_spans (hall, device, first_seq, last_seq)"
                          " SELECT hall, id, 1, last_seq FROM devices")
            c.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
                      " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(SCHEMA_VERSION),))

        _transaction(con, body)

    async def close(self) -> None:
        await self._reader.close()
        await self._writer.close()

    # halls -------------------------------------------------------------------------------------
    async def add_hall(self, hall: str, public_key_pem: str, *, now: int, replace: bool = False) -> str:
        def body(con: sqlite3.Connection) -> str:
            row = con.execute("SELECT public_key_pem, state FROM halls WHERE id = ?", (hall,)).fetchone()
            if row is None:
                con.execute("INSERT INTO halls (id, public_key_pem, added_at, last_seq, last_hash)"
                            " VALUES (?, ?, ?, 0, ?)", (hall, public_key_pem, now, GENESIS_HASH))
                return "added"
            if row[1] == "removed":   # its data stayed; registering it again is a deliberate act
                if not replace:
                    raise HallKeyConflict(f"hall {hall!r} was removed; use --replace to register it again")
                con.execute("UPDATE halls SET public_key_pem = ?, state = NULL, state_at = ? WHERE id = ?",
                            (public_key_pem, now, hall))
                con.execute(_INSERT_LOG, (now, hall, None, "manual", "removed hall registered again"))
                return "replaced"
            if row[0] == public_key_pem:
                return "unchanged"
            if not replace:
                raise HallKeyConflict(f"hall {hall!r} is registered with a different key; use --replace to change it")
            con.execute("UPDATE halls SET public_key_pem = ? WHERE id = ?", (public_key_pem, hall))
            con.execute(_INSERT_LOG, (now, hall, None, "manual", "hall public key replaced"))
            return "replaced"

        return await self._writer.run(lambda con: _transaction(con, body))

    @staticmethod
    def _hall(row: tuple[Any, ...]) -> HallRecord:
        return HallRecord(id=row[0], public_key_pem=row[1], added_at=row[2], last_seq=row[3], last_hash=row[4],
                          online=None if row[5] is None else bool(row[5]), session=row[6], status_at=row[7],
                          timezone=row[8] or DEFAULT_ZONE, gaming_day_start=row[9] or DEFAULT_START,
                          settings_version=row[10] or 0, state=row[11] or "active")

    async def forget_presence(self, hall: str, *, now: int) -> bool:
        def body(con: sqlite3.Connection) -> bool:
            row = con.execute("SELECT online, session FROM halls WHERE id = ?", (hall,)).fetchone()
            if row is None:
                return False
            con.execute("UPDATE halls SET online = NULL, session = NULL, status_at = NULL WHERE id = ?", (hall,))
            con.execute(_INSERT_LOG, (now, hall, None, "manual",
                                      f"presence forgotten (was online={row[0]}, session {row[1]})"))
            return True

        return await self._writer.run(lambda con: _transaction(con, body))

    async def set_hall_state(self, hall: str, state: str, *, now: int) -> HallRecord | None:
        if state not in HALL_STATES:
            raise ValueError(f"a hall's state is one of {', '.join(HALL_STATES)}, not {state!r}")

        def body(con: sqlite3.Connection) -> HallRecord | None:
            row = con.execute(f"SELECT {_HALL_COLUMNS} FROM halls WHERE id = ?", (hall,)).fetchone()
            if row is None:
                return None
            before = self._hall(row)
            if before.state != state:
                con.execute("UPDATE halls SET state = ?, state_at = ? WHERE id = ?",
                            (None if state == "active" else state, now, hall))
                con.execute(_INSERT_LOG, (now, hall, None, "manual", f"hall {before.state} → {state}"))
            return before

        return await self._writer.run(lambda con: _transaction(con, body))

    async def get_hall(self, hall: str) -> HallRecord | None:
        def body(con: sqlite3.Connection) -> HallRecord | None:
            row = con.execute(f"SELECT {_HALL_COLUMNS} FROM halls WHERE id = ?", (hall,)).fetchone()
            return None if row is None else self._hall(row)

        return await self._reader.run(body)

    async def halls(self) -> list[HallRecord]:
        def body(con: sqlite3.Connection) -> list[HallRecord]:
            rows = con.execute(f"SELECT {_HALL_COLUMNS} FROM halls ORDER BY id")
            return [self._hall(row) for row in rows]

        return await self._reader.run(body)

    async def set_day_rule(self, hall: str, rule: DayRule, *, now: int) -> HallRecord | None:
        def body(con: sqlite3.Connection) -> HallRecord | None:
            row = con.execute(f"SELECT {_HALL_COLUMNS} FROM halls WHERE id = ?", (hall,)).fetchone()
            if row is None:
                return None
            old = self._hall(row)
            if old.day_rule == rule:
                return old
            con.execute("UPDATE halls SET timezone = ?, gaming_day_start = ?, settings_version = ? WHERE id = ?",
                        (rule.zone, rule.start, old.settings_version + 1, hall))
            _rebuild_day_tables(con, hall, rule, rollups=True)
            con.execute(_INSERT_LOG, (now, hall, None, "manual",
                                      f"gaming day changed from {old.timezone} {old.gaming_day_start} to "
                                      f"{rule.zone} {rule.start}; rollups re-bucketed from the stored events"))
            new = con.execute(f"SELECT {_HALL_COLUMNS} FROM halls WHERE id = ?", (hall,)).fetchone()
            return self._hall(new)

        return await self._writer.run(lambda con: _transaction(con, body))

    async def hourly(self, *, day: dt.date, hall: str | None = None, halls: Sequence[str] | None = None,
                     device: str | None = None) -> list[HourRow]:
        where: list[str] = ["day = ?"]
        params: list[Any] = [day.isoformat()]
        if not _scope(where, params, hall, halls):
            return []
        if device is not None:
            where.append("device = ?")
            params.append(device)
        per = ", device" if device is not None else ""
        sql = (f"SELECT hall, day, hour{per}, SUM(bets), SUM(wins), SUM(rounds), SUM(cash_in), SUM(cash_out)"
               f" FROM rollups_hourly{_where(where)} GROUP BY hall, day, hour{per} ORDER BY hall, hour{per}")

        def body(con: sqlite3.Connection) -> list[HourRow]:
            out = []
            for r in con.execute(sql, params):
                if device is not None:
                    out.append(HourRow(r[0], r[1], r[2], *r[4:], device=r[3]))
                else:
                    out.append(HourRow(r[0], r[1], r[2], *r[3:]))
            return out

        return await self._reader.run(body)

    async def set_presence(self, hall: str, *, online: bool, session: int, at: int) -> bool:
        def body(con: sqlite3.Connection) -> bool:
            row = con.execute("SELECT online, session, status_at FROM halls WHERE id = ?", (hall,)).fetchone()
            if row is None or not _presence_is_newer(row[0], row[1], row[2], online, session, at):
                return False
            con.execute("UPDATE halls SET online = ?, session = ?, status_at = ? WHERE id = ?",
                        (int(online), session, at, hall))
            return True

        return await self._writer.run(lambda con: _transaction(con, body))

    # ingest ------------------------------------------------------------------------------------
    async def ingest_events(self, hall: str, events: Sequence[Event], *, central_time: int,
                            signed: SignedHeader | None = None) -> IngestResult:
        if not events:
            raise ValueError("ingest_events needs at least one event")
        return await self.ingest_staged(stage_events(hall, events, central_time), signed=signed)

    async def ingest_staged(self, staged: StagedEvents, *, signed: SignedHeader | None = None) -> IngestResult:
        # In the next group commit, in its own savepoint: a conflicting or failing batch spoils only itself.
        return await self.group_commit.submit(lambda con: self._ingest(con, staged, signed), events=staged.count)

    def _ingest(self, con: sqlite3.Connection, staged: StagedEvents, signed: SignedHeader | None) -> IngestResult:
        hall = staged.hall
        row = con.execute("SELECT last_seq, last_hash, timezone, gaming_day_start FROM halls WHERE id = ?",
                          (hall,)).fetchone()
        if row is None:
            raise StoreError(f"hall {hall!r} is not registered")
        last_seq, last_hash = row[0], row[1]
        staged = staged.under(day_rule(row[2], row[3]))   # the hall's day, also if it changed since staging
        first, last = staged.first_seq, staged.last_seq
        if first > last_seq + 1:
            return IngestResult("gap", last_seq, last_hash)
        if last <= last_seq:
            if last == last_seq:
                stored_hash = last_hash
            else:
                found = con.execute("SELECT hash FROM events WHERE hall = ? AND seq = ?", (hall, last)).fetchone()
                stored_hash = None if found is None else found[0]
            # The chain binds every earlier event to this hash, so one comparison covers the batch.
            if stored_hash == staged.hash_at(-1):
                return IngestResult("duplicate", last_seq, last_hash, skipped=staged.count)
            return IngestResult("conflict", last_seq, last_hash, conflict_seq=last)
        if first <= last_seq:
            index = last_seq - first
            if staged.hash_at(index) != last_hash:
                return IngestResult("conflict", last_seq, last_hash, conflict_seq=last_seq)
            new = staged.tail(index + 1)
        else:
            if staged.first_prev_hash != last_hash:
                return IngestResult("conflict", last_seq, last_hash, conflict_seq=first)
            new = staged
        insert_rows(con, _INSERT_EVENTS, WIDTH, new.rows)
        fx = new.effects
        _insert_rollups(con, fx.rollups)
        _insert_day_tables(con, hall, fx)
        insert_rows(con, _INSERT_MARKS, 8, _marks(con, hall, fx.devices))   # before the devices' totals move
        stated: list[Any] = []    # devices whose batch says whether they are enabled
        unstated: list[Any] = []
        for device, u in fx.devices.items():
            (unstated if u.enabled is None else stated).extend((
                hall, device, u.kind or "unknown", None if u.online is None else int(u.online),
                1 if u.enabled is None else int(u.enabled), u.first_seen, u.last_seen, u.last_seq,
                u.last_play_seq, *u.money))
        insert_rows(con, _INSERT_DEVICES, _DEVICE_WIDTH, unstated,
                    _DEVICES_CONFLICT.format(enabled="devices.enabled"))
        insert_rows(con, _INSERT_DEVICES, _DEVICE_WIDTH, stated, _DEVICES_CONFLICT.format(enabled="excluded.enabled"))
        spans: list[Any] = []
        for device in sorted(fx.devices):
            u = fx.devices[device]
            spans.extend((hall, device, u.first_seq, u.last_seq))
        insert_rows(con, _INSERT_SPANS, 4, spans, _SPANS_CONFLICT)
        new_hash = new.hash_at(-1)
        con.execute("UPDATE halls SET last_seq = ?, last_hash = ? WHERE id = ?", (last, new_hash, hall))
        if signed is not None:  # export (issue 04): the hall's signature over this chain end
            insert_signed_header(con, hall, last, signed, staged.central_time)
        return IngestResult("stored", last, new_hash, stored=new.count, skipped=staged.count - new.count,
                            money_errors=tuple(fx.money_errors), missed=new.missed)

    async def log(self, entries: Sequence[LogEntry]) -> None:
        if not entries:
            return
        rows = [(e.time, e.hall, e.device, e.kind, e.detail) for e in entries]
        # Duplicates, gaps and refusals log on ingest's path: they ride the next group commit instead of
        # paying a commit (an fsync) of their own between two groups.
        await self.group_commit.submit(lambda con: con.executemany(_INSERT_LOG, rows), events=len(rows))

    # API keys ----------------------------------------------------------------------------------
    async def add_api_key(self, record: ApiKeyRecord) -> None:
        halls = None if record.halls is None else json.dumps(list(record.halls))
        params = (record.id, record.role, record.secret_hash, halls, record.created_at, record.name,
                  record.expires_at, record.revoked_at)
        await self._writer.run(lambda con: _transaction(con, lambda c: c.execute(
            f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", params)))

    async def api_key(self, key_id: str) -> ApiKeyRecord | None:
        def body(con: sqlite3.Connection) -> ApiKeyRecord | None:
            row = con.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)).fetchone()
            return None if row is None else _key_record(row)

        return await self._reader.run(body)

    async def api_keys(self) -> list[ApiKeyRecord]:
        def body(con: sqlite3.Connection) -> list[ApiKeyRecord]:
            rows = con.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at, id").fetchall()
            return [_key_record(row) for row in rows]

        return await self._reader.run(body)

    async def update_api_key(self, key_id: str, *, secret_hash: str | None = None,
                             revoked_at: int | None = None) -> ApiKeyRecord | None:
        def body(c: sqlite3.Connection) -> ApiKeyRecord | None:
            row = c.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)).fetchone()
            if row is None:
                return None
            c.execute("UPDATE api_keys SET secret_hash = COALESCE(?, secret_hash),"
                      " revoked_at = COALESCE(revoked_at, ?) WHERE id = ?", (secret_hash, revoked_at, key_id))
            return _key_record(row)

        return await self._writer.run(lambda con: _transaction(con, body))

    # reports -----------------------------------------------------------------------------------
    async def ggr(self, group_by: str, *, day_from: dt.date | None = None, day_to: dt.date | None = None,
                  hall: str | None = None, halls: Sequence[str] | None = None) -> list[GgrRow]:
        if group_by not in GROUP_BY:
            raise ValueError(f"group_by must be one of {', '.join(GROUP_BY)}, not {group_by!r}")
        columns = {"device": "hall, device", "network": "'network'"}.get(group_by, group_by)
        grouping = "" if group_by == "network" else f" GROUP BY {columns} ORDER BY {columns}"
        sums = "SUM(bets), SUM(wins), SUM(rounds), SUM(cash_in), SUM(cash_out)"
        subtracted: RollupSource | None = None
        if group_by == "game":   # whole months from rollups_monthly, the rest day by day (sqlhelpers)
            source = rollup_source(hall, halls, day_from, day_to)
            if source is None:
                return []
            sql, params = f"SELECT {columns}, {sums} FROM {source.sql}{grouping}", source.params
            subtracted = source   # a game whose rows all lie outside the period sums to zero: dropped below
        else:
            # Groupings without the game read device_days: the same money per device and day (both from
            # one batch's effects) in about 2.5 times fewer rows than the per-game rollups
            # (bench/reports.py). Its rows of snapshots alone hold no money and are left out.
            where: list[str] = []
            params = []
            if not rollup_scope(where, params, hall, halls, day_from, day_to):
                return []
            where.append("(bets != 0 OR wins != 0 OR rounds != 0 OR cash_in != 0 OR cash_out != 0)")
            sql = f"SELECT {columns}, {sums} FROM device_days{_where(where)}{grouping}"

        def body(con: sqlite3.Connection) -> list[GgrRow]:
            out = []
            present: set[str] | None = None
            if subtracted is not None and subtracted.subtracts:
                present = {r[2] for r in con.execute(*subtracted.zero_keys)}
            for row in con.execute(sql, params):
                if present is not None and not any(row[1:]) and row[0] not in present:
                    continue   # outside the period: a plain read would not list it
                if group_by == "network" and row[1] is None:
                    continue   # nothing in scope: no row, as for every other grouping
                if group_by == "device":
                    out.append(GgrRow(row[1], *row[2:], hall=row[0]))
                else:
                    out.append(GgrRow(row[0], *row[1:]))
            return out

        return await self._reader.run(body)

    async def events(self, *, hall: str | None = None, device: str | None = None, type: str | None = None,
                     time_from: int | None = None, time_to: int | None = None, after_seq: int | None = None,
                     limit: int = 100, halls: Sequence[str] | None = None,
                     after_hall: str | None = None) -> list[dict[str, Any]]:
        where: list[str] = []
        params: list[Any] = []
        if not _scope(where, params, hall, halls):
            return []
        across = hall is None and after_hall is not None   # network paging: after (after_hall, after_seq)
        for clause, value in (("device = ?", device), ("type = ?", type), ("agent_time >= ?", time_from),
                              ("agent_time < ?", time_to), ("seq > ?", None if across else after_seq)):
            if value is not None:
                where.append(clause)
                params.append(value)
        if across:
            where.append("(hall > ? OR (hall = ? AND seq > ?))")
            params.extend((after_hall, after_hall, after_seq or 0))
        limit = max(1, min(limit, _MAX_EVENTS_LIMIT))
        columns = "hall, seq, id, device, type, agent_time, device_time, central_time, prev_hash, hash, data"

        def row(r: tuple[Any, ...]) -> dict[str, Any]:
            return {"v": 1, "hall": r[0], "seq": r[1], "id": r[2], "device": r[3], "type": r[4], "agent_time": r[5],
                    "device_time": r[6], "central_time": r[7], "prev_hash": r[8], "hash": r[9],
                    "data": _DATA_DECODER.decode(r[10])}

        def body(con: sqlite3.Connection) -> list[dict[str, Any]]:
            if device is not None and hall is not None:
                return by_spans(con)
            sql = f"SELECT {columns} FROM events{_where(where)} ORDER BY hall, seq LIMIT ?"
            return [row(r) for r in con.execute(sql, [*params, limit])]

        def by_spans(con: sqlite3.Connection) -> list[dict[str, Any]]:
            # No per-event device index (schema 5): the device's spans (one per batch, schema 6) say
            # which seq ranges of the hall hold its events, so only those are read.
            out: list[dict[str, Any]] = []
            start = after_seq or 0
            sql = f"SELECT {columns} FROM events{_where([*where, 'seq >= ?', 'seq <= ?'])} ORDER BY seq LIMIT ?"
            spans = con.execute("SELECT first_seq, last_seq FROM device_spans WHERE hall = ? AND device = ?"
                                " AND last_seq > ? ORDER BY first_seq", (hall, device, start))
            for first, last in spans:
                out.extend(row(r) for r in con.execute(sql, [*params, max(first, start + 1), last,
                                                             limit - len(out)]))
                if len(out) >= limit:
                    break
            return out

        return await self._reader.run(body)

    async def integration_log(self, *, hall: str | None = None, kind: str | None = None, limit: int = 100,
                              halls: Sequence[str] | None = None, device: str | None = None,
                              time_from: int | None = None, time_to: int | None = None) -> list[LogEntry]:
        where: list[str] = []
        params: list[Any] = []
        if not _scope(where, params, hall, halls):
            return []
        for column, op, value in (("kind", "=", kind), ("device", "=", device), ("time", ">=", time_from),
                                  ("time", "<", time_to)):
            if value is not None:
                where.append(f"{column} {op} ?")
                params.append(value)
        params.append(max(1, min(limit, _MAX_EVENTS_LIMIT)))
        sql = f"SELECT time, hall, device, kind, detail FROM integration_log{_where(where)} ORDER BY id DESC LIMIT ?"

        def body(con: sqlite3.Connection) -> list[LogEntry]:
            return [LogEntry(kind=r[3], detail=r[4], time=r[0], hall=r[1], device=r[2])
                    for r in con.execute(sql, params)]

        return await self._reader.run(body)

    async def devices(self, *, hall: str | None = None, halls: Sequence[str] | None = None) -> list[DeviceRecord]:
        where: list[str] = []
        params: list[Any] = []
        if not _scope(where, params, hall, halls):
            return []
        sql = ("SELECT id, hall, kind, online, enabled, first_seen, last_seen, last_seq FROM devices"
               f"{_where(where)} ORDER BY hall, id")

        def body(con: sqlite3.Connection) -> list[DeviceRecord]:
            return [DeviceRecord(id=r[0], hall=r[1], kind=r[2], online=None if r[3] is None else bool(r[3]),
                                 enabled=bool(r[4]), first_seen=r[5], last_seen=r[6], last_seq=r[7])
                    for r in con.execute(sql, params)]

        return await self._reader.run(body)

    # commands ----------------------------------------------------------------------------------
    async def add_command(self, record: CommandRecord) -> None:
        if record.status not in COMMAND_STATUSES:
            raise ValueError(f"command status must be one of {', '.join(COMMAND_STATUSES)}, not {record.status!r}")
        row = (record.id, record.hall, record.device, record.action, record.game,
               canonical_bytes(record.params).decode(), record.issued_at, record.expires_at, record.status,
               record.detail, record.created_by, record.created_at, record.updated_at)
        log_row = (record.created_at, record.hall, record.device, "command",
                   _command_log_detail(record.id, record.action, record.game, record.status, record.detail))

        def body(con: sqlite3.Connection) -> None:
            con.execute(f"INSERT INTO commands ({_COMMAND_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        row)
            con.execute(_INSERT_LOG, log_row)

        await self._writer.run(lambda con: _transaction(con, body))

    async def command(self, command_id: str) -> CommandRecord | None:
        def body(con: sqlite3.Connection) -> CommandRecord | None:
            row = con.execute(f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE id = ?", (command_id,)).fetchone()
            return None if row is None else _command(row)

        return await self._reader.run(body)

    async def update_command(self, command_id: str, status: str, detail: str, at: int) -> bool:
        if status not in COMMAND_STATUSES:
            raise ValueError(f"command status must be one of {', '.join(COMMAND_STATUSES)}, not {status!r}")
        detail = detail[:2000]

        def body(con: sqlite3.Connection) -> bool:
            row = con.execute("SELECT status, hall, device, action, game FROM commands WHERE id = ?",
                              (command_id,)).fetchone()
            if row is None or not command_transition_allowed(row[0], status):
                return False
            # the WHERE on the old status keeps this a compare-and-set even without the write lock
            cur = con.execute("UPDATE commands SET status = ?, detail = ?, updated_at = ? WHERE id = ? AND status = ?",
                              (status, detail, at, command_id, row[0]))
            if cur.rowcount != 1:
                return False
            con.execute(_INSERT_LOG, (at, row[1], row[2], "command",
                                      _command_log_detail(command_id, row[3], row[4], status, detail)))
            return True

        return await self._writer.run(lambda con: _transaction(con, body))

    async def commands(self, *, hall: str | None = None, status: str | None = None, limit: int = 100,
                       halls: Sequence[str] | None = None) -> list[CommandRecord]:
        where: list[str] = []
        params: list[Any] = []
        if not _scope(where, params, hall, halls):
            return []
        if status is not None:
            where.append("status = ?")
            params.append(status)
        params.append(max(1, min(limit, _MAX_EVENTS_LIMIT)))
        sql = f"SELECT {_COMMAND_COLUMNS} FROM commands{_where(where)} ORDER BY created_at DESC, id LIMIT ?"

        def body(con: sqlite3.Connection) -> list[CommandRecord]:
            return [_command(r) for r in con.execute(sql, params)]

        return await self._reader.run(body)

    # audit -------------------------------------------------------------------------------------
    async def add_audit(self, entry: AuditEntry) -> int:
        row = (entry.time, entry.actor, entry.action, entry.target, _json_or_none(entry.before),
               _json_or_none(entry.after))

        def body(c: sqlite3.Connection) -> int:
            cur = c.execute("INSERT INTO audit (time, actor, action, target, before, after)"
                            " VALUES (?, ?, ?, ?, ?, ?)", row)
            assert cur.lastrowid is not None
            return cur.lastrowid

        return await self._writer.run(lambda con: _transaction(con, body))

    async def audit(self, *, actor: str | None = None, action: str | None = None, time_from: int | None = None,
                    time_to: int | None = None, after_id: int | None = None, limit: int = 100,
                    halls: Sequence[str] | None = None) -> list[AuditEntry]:
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
        sql = (f"SELECT id, time, actor, action, target, before, after FROM audit{_where(where)}"
               f" ORDER BY id LIMIT ?")
        params.append(max(1, min(limit, _MAX_EVENTS_LIMIT)))

        def body(con: sqlite3.Connection) -> list[AuditEntry]:
            return [AuditEntry(id=r[0], time=r[1], actor=r[2], action=r[3], target=r[4],
                               before=None if r[5] is None else json.loads(r[5]),
                               after=None if r[6] is None else json.loads(r[6]))
                    for r in con.execute(sql, params)]

        return await self._reader.run(body)


def _json_or_none(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_KEY_COLUMNS: Final = "id, role, secret_hash, halls, created_at, name, expires_at, revoked_at"


def _key_record(row: Sequence[Any]) -> ApiKeyRecord:
    halls = None if row[3] is None else tuple(json.loads(row[3]))
    return ApiKeyRecord(id=row[0], role=row[1], secret_hash=row[2], halls=halls, created_at=row[4], name=row[5],
                        expires_at=row[6], revoked_at=row[7])
