"""The SQLite database of central: WAL, ``synchronous=FULL``, one writer thread, one reader thread.

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
import os
import re
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from central.repos.errors import DuplicateKey, StoreError
from protocols.sync.gamingday import UTC_MIDNIGHT

from .group_commit import GroupCommitter
from .plans import SQLITE, Plan
from .rollup_tables import fill_device_money, fill_identity_seq, rebuild_day_tables
from .schema import ADDED_COLUMNS, DDL, FILL_HALL_HOURS, SCHEMA_VERSION
from .sqlhelpers import WRITER_CACHED_STATEMENTS, run_sqlite
from .sqlhelpers import transaction as _transaction

T = TypeVar("T")


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
        con = sqlite3.connect(path, isolation_level=None, check_same_thread=True,
                              cached_statements=WRITER_CACHED_STATEMENTS)
        con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("PRAGMA busy_timeout=10000")
    if not readonly:
        con.execute(f"PRAGMA cache_size=-{_WRITER_CACHE_KIB}")
    return con


_UNIQUE_FAILED = re.compile(r"UNIQUE constraint failed: (\w+)\.")


def _duplicate_key(exc: sqlite3.IntegrityError) -> DuplicateKey | None:
    """The backend-neutral error of a unique key given twice (None for another integrity error)."""
    match = _UNIQUE_FAILED.match(str(exc))
    return None if match is None else DuplicateKey(match.group(1))


class Worker:
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
        try:
            return await loop.run_in_executor(self._pool, lambda: fn(self._con()))
        except sqlite3.IntegrityError as exc:
            duplicate = _duplicate_key(exc)
            if duplicate is None:
                raise
            raise duplicate from exc

    def _close_here(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self._close_here)
        self._pool.shutdown(wait=True)


def migrate(con: sqlite3.Connection) -> None:
    """Create what is missing; add columns newer than the file (additive only, in one transaction)."""
    had_spans = con.execute("SELECT 1 FROM sqlite_master WHERE name = 'device_spans'").fetchone() is not None
    had_months = con.execute("SELECT 1 FROM sqlite_master WHERE name = 'rollups_monthly'").fetchone() is not None
    had_hall_hours = con.execute("SELECT 1 FROM sqlite_master WHERE name = 'rollups_hourly_halls'"
                                 ).fetchone() is not None
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
            fill_device_money(c)
        if row is not None and int(row[0]) < 6:   # every hall was on UTC days: its rollups stay
            for (hall,) in c.execute("SELECT id FROM halls").fetchall():
                rebuild_day_tables(c, hall, UTC_MIDNIGHT, rollups=False)
        if row is not None and not had_months:
            c.execute("INSERT INTO rollups_monthly (hall, device, game, month, bets, wins, rounds, cash_in,"
                      " cash_out) SELECT hall, device, game, substr(day, 1, 7), SUM(bets), SUM(wins), SUM(rounds),"
                      " SUM(cash_in), SUM(cash_out) FROM rollups GROUP BY hall, device, game, substr(day, 1, 7)")
        if row is not None and int(row[0]) < 9:
            fill_identity_seq(c)
        if row is not None and not had_hall_hours and int(row[0]) >= 6:   # schema 10 (before 6 the rebuild did)
            c.execute(FILL_HALL_HOURS)
        if row is not None and not had_spans:   # a device's older events: one span from seq 1
            c.execute("INSERT OR IGNORE INTO device_spans (hall, device, first_seq, last_seq)"
                      " SELECT hall, id, 1, last_seq FROM devices")
        c.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
                  " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(SCHEMA_VERSION),))

    _transaction(con, body)


class SqliteDatabase:
    """One SQLite file: its writer and reader threads (each with its own connection) and the group
    commit of ingest. The repositories of :mod:`central.store` share one; create it with :meth:`open`."""

    dialect = SQLITE

    def __init__(self, path: str) -> None:
        self.path = path
        self.writer = Worker("store-writer", path, readonly=False)
        """Runs every transaction in turn (see the module docstring)."""
        self.reader = Worker("store-reader", path, readonly=True)
        """Runs lookups and reports beside the writer (WAL)."""
        self.group_commit = GroupCommitter(self.writer.run)
        """Ingest batches and integration-log rows of every hall are committed through this (see the module
        docstring); its ``stats`` say how many units each commit carried."""

    @classmethod
    async def open(cls, path: str | Path) -> SqliteDatabase:
        """Open (creating if needed) the database at ``path`` and bring its schema up to date."""
        target = Path(path)
        if not target.parent.exists():
            raise StoreError(f"directory {target.parent} does not exist")
        db = cls(str(target))
        await db.writer.run(migrate)
        return db

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        """One read statement's rows, on the reader: the call :class:`PgDatabase` has, so a read that
        both backends run alike is written once (:mod:`central.store.shared_reads`)."""
        return await self.reader.run(lambda con: con.execute(sql, args).fetchall())

    async def read(self, plan: Plan[T]) -> T:
        """A plan's reads (:mod:`central.store.plans`), all in one call on the reader."""
        return await self.reader.run(lambda con: run_sqlite(con, plan))

    async def write(self, plan: Plan[T]) -> T:
        """A plan in one ``BEGIN IMMEDIATE`` transaction on the writer."""
        return await self.writer.run(lambda con: _transaction(con, lambda c: run_sqlite(c, plan)))

    async def close(self) -> None:
        await self.reader.close()
        await self.writer.close()
