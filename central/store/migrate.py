"""Move an HQ's store from its SQLite file to PostgreSQL (issue 14): ``hall-central db migrate``.

What it does, in order:

1. Opens the SQLite file as ``serve`` would, which brings it to the current schema (the additive
   migration of :mod:`central.store.sqlite_db`); a file newer than this build is refused there. Then
   starts one read transaction on the SQLite reader connection: every row moved, and every figure
   compared, comes from that one snapshot. What central stores after the snapshot began is NOT moved,
   so stop HQ (every ``serve`` process) before migrating.
2. Checks that every table of the SQLite file is one this module knows (:data:`TABLES`, or
   :data:`NOT_MOVED` with a reason): a table added to SQLite's schema later must be added here too,
   or the move fails before anything is written, never drops the table silently.
3. Opens PostgreSQL (which applies the missing migrations of :mod:`central.store.pg_schema`) and, in
   ONE transaction: locks the tables against writers, refuses a database that holds any row, checks
   each table's columns are the same on both sides, copies every table row for row with COPY
   (values as stored: hashes, signatures, canonical JSON byte for byte), moves every identity
   sequence past the ids copied (and past SQLite's AUTOINCREMENT counter), then compares both sides
   (:func:`compare`): row counts, a digest of every table's rows in key order, each hall's chain end
   and GGR per hall and per device through the real repositories (on PostgreSQL, reading inside the
   uncommitted transaction). It commits only when everything is equal; a difference rolls the whole
   copy back and the target stays empty.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import structlog

from central.repos.errors import StoreError

from .halls_pg import PgHalls
from .halls_sqlite import SqliteHalls
from .pg_db import PgConn, PgDatabase
from .reports_shared import SharedReports
from .sqlite_db import SqliteDatabase

log = structlog.get_logger("central.store.migrate")

TABLES: Final = (
    "halls", "api_keys", "events", "batches", "devices", "device_spans", "device_marks", "device_days",
    "rollups", "rollups_hourly", "rollups_hourly_halls", "rollups_monthly", "integration_log", "commands", "audit",
    "catalog_providers", "catalog_games", "catalog_placements", "catalog_rules", "catalog_rule_commands",
    "alerts", "monitor_cursors", "monitor_conditions", "leases",
)
"""Every table of SQLite's schema the move copies, in copy order. A new table in
:mod:`central.store.schema` must be added here (or to :data:`NOT_MOVED`): the move refuses a file
with a table it does not know."""

NOT_MOVED: Final = {
    "meta": "SQLite's schema version; PostgreSQL records its own migrations in schema_migrations",
}
"""SQLite tables deliberately not copied, and why. ``sqlite_*`` tables are SQLite's own (its
AUTOINCREMENT counters in ``sqlite_sequence`` are read to move the sequences)."""

_META_KEYS: Final = frozenset({"schema_version"})
"""What ``meta`` may hold: a key added there later would be lost by the move, so it is refused."""

CHUNK: Final = 10_000
"""Rows read from SQLite and sent in one COPY (and read back in one FETCH for the digest)."""


class MigrationError(StoreError):
    """The move was refused or failed; nothing was committed to the target."""


@dataclass(frozen=True, slots=True)
class Check:
    """One figure compared: what SQLite holds and what PostgreSQL holds."""

    what: str
    source: Any
    target: Any

    @property
    def ok(self) -> bool:
        return bool(self.source == self.target)


@dataclass(slots=True)
class MigrationReport:
    """Rows copied per table and every comparison made after the copy."""

    source: str
    target: str
    rows: dict[str, int] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    sequences: dict[str, int] = field(default_factory=dict)
    """Identity column (``table.column``) → the last id taken; the next row gets a larger one."""
    seconds: float = 0.0

    @property
    def differences(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def lines(self) -> list[str]:
        """The short report the CLI prints: rows per table, chain ends, GGR, sequences, and any difference."""
        out = [f"{'table':<22} {'sqlite':>10} {'postgresql':>10}"]
        counts = {c.what.removeprefix("rows "): c for c in self.checks if c.what.startswith("rows ")}
        digests = {c.what.removeprefix("content "): c for c in self.checks if c.what.startswith("content ")}
        for table in self.rows:
            count, digest = counts.get(table), digests.get(table)
            state = "ok" if count and count.ok and digest and digest.ok else "DIFFERS"
            out.append(f"{table:<22} {count.source if count else '?':>10} {count.target if count else '?':>10}  "
                       f"{state}")
        for check in self.checks:
            if check.what.startswith("chain end "):
                seq, digest = check.source if check.source is not None else (None, None)
                out.append(f"{check.what}: seq {seq} hash {digest}  {'ok' if check.ok else 'DIFFERS'}")
        for check in self.checks:
            if check.what.startswith("GGR hall "):
                b, w, g = check.source if check.source is not None else (None, None, None)
                out.append(f"{check.what}: bets {b} payouts {w} GGR {g}  {'ok' if check.ok else 'DIFFERS'}")
        devices = [c for c in self.checks if c.what.startswith("GGR device ")]
        bad = [c for c in devices if not c.ok]
        out.append(f"GGR per device: {len(devices) - len(bad)} of {len(devices)} devices equal")
        for name, last in self.sequences.items():
            out.append(f"sequence {name}: continues after {last}")
        for check in self.differences:
            out.append(f"DIFFERS: {check.what}: sqlite {check.source!r}, postgresql {check.target!r}")
        return out


class MigrationMismatch(MigrationError):
    """The copy did not compare equal; it was rolled back (the report says what differs)."""

    def __init__(self, report: MigrationReport) -> None:
        names = ", ".join(c.what for c in report.differences[:10])
        more = len(report.differences) - 10
        super().__init__(f"source and target differ after the copy ({names}{f' and {more} more' if more > 0 else ''});"
                         " rolled back, the target holds nothing")
        self.report = report


@dataclass(frozen=True, slots=True)
class _Table:
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    """Primary-key columns, in key order: rows are copied and digested in this order on both sides."""


def sqlite_source(arg: str) -> str:
    """The file path of ``--from``: ``sqlite:PATH``, ``sqlite:///PATH`` or a bare path."""
    if arg.startswith(("postgresql://", "postgres://")):
        raise MigrationError("--from must be the SQLite file (sqlite:PATH), not a PostgreSQL URL")
    if arg.startswith("sqlite:///"):
        path = arg[len("sqlite:///"):]
    elif arg.startswith("sqlite:"):
        path = arg[len("sqlite:"):]
    elif "://" in arg:
        raise MigrationError(f"--from: unknown URL scheme in {arg!r}; give sqlite:PATH")
    else:
        path = arg
    if not path:
        raise MigrationError("--from: empty path")
    return path


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --- the SQLite side (every function runs on the reader thread, inside the snapshot) -------------------

def _begin_snapshot(con: sqlite3.Connection) -> None:
    con.execute("BEGIN")
    con.execute("SELECT count(*) FROM sqlite_master").fetchone()   # the read transaction (snapshot) starts here


def _end_snapshot(con: sqlite3.Connection) -> None:
    if con.in_transaction:
        con.execute("ROLLBACK")


def _plan(con: sqlite3.Connection) -> tuple[list[_Table], dict[str, int]]:
    """The tables to copy (refusing any it does not know) and SQLite's AUTOINCREMENT counters."""
    names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"
                                       " AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name")]
    unknown = [n for n in names if n not in TABLES and n not in NOT_MOVED]
    if unknown:
        raise MigrationError(f"the SQLite file has table(s) this migration does not know: {', '.join(unknown)}; "
                             "refusing to move it without them (add them to central/store/migrate.py TABLES)")
    missing = [t for t in TABLES if t not in names]
    if missing:
        raise MigrationError(f"the SQLite file lacks table(s) {', '.join(missing)} after its schema upgrade")
    if "meta" in names:
        extra = sorted({r[0] for r in con.execute("SELECT key FROM meta")} - _META_KEYS)
        if extra:
            raise MigrationError(f"the SQLite meta table holds key(s) this migration does not know: {extra}")
    tables = []
    for name in TABLES:
        info = con.execute(f"PRAGMA table_info({_q(name)})").fetchall()   # cid, name, type, notnull, dflt, pk
        columns = tuple(r[1] for r in info)
        key = tuple(r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5]))
        if not key:
            raise MigrationError(f"SQLite table {name} has no primary key: its rows cannot be compared in order")
        tables.append(_Table(name, columns, key))
    counters: dict[str, int] = {}
    if con.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone():
        counters = {r[0]: int(r[1]) for r in con.execute("SELECT name, seq FROM sqlite_sequence")}
    return tables, counters


def _select(table: _Table) -> str:
    return (f"SELECT {', '.join(map(_q, table.columns))} FROM {_q(table.name)}"
            f" ORDER BY {', '.join(map(_q, table.key))}")


class _SourceRows:
    """One table's rows from the snapshot in key order, a chunk at a time, digested as they are read."""

    def __init__(self, table: _Table) -> None:
        self._sql = _select(table)
        self._cursor: sqlite3.Cursor | None = None
        self.digest = hashlib.sha256()
        self.count = 0

    def next_chunk(self, con: sqlite3.Connection) -> list[tuple[Any, ...]]:
        if self._cursor is None:
            self._cursor = con.execute(self._sql)
        rows: list[tuple[Any, ...]] = self._cursor.fetchmany(CHUNK)
        for row in rows:
            self.digest.update(repr(row).encode())
        self.count += len(rows)
        if not rows:
            self._cursor.close()
        return rows


# --- the PostgreSQL side ----------------------------------------------------------------------------------

class _InTransaction(PgDatabase):
    """The PostgreSQL repositories' database, but every read runs on the one connection of the migration's
    open transaction, so the real report reads see the rows copied before they are committed. Reads only:
    its ``transaction`` does not nest (the repositories' writes are never called through it)."""

    def __init__(self, con: PgConn, dsn: str) -> None:   # no pool of its own
        self._con = con
        self.dsn = dsn

    @contextlib.asynccontextmanager
    async def transaction(self, isolation: str = "read_committed") -> AsyncIterator[PgConn]:
        yield self._con

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[PgConn]:
        yield self._con

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        return await self._con.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        return await self._con.fetchrow(sql, *args)

    async def close(self) -> None:
        return None


async def _prepare_target(con: PgConn, tables: Sequence[_Table]) -> None:
    """Lock the tables against writers, refuse any row already there, and check the columns match."""
    await con.execute(f"LOCK TABLE {', '.join(_q(t.name) for t in tables)} IN EXCLUSIVE MODE")
    held = [t.name for t in tables if await con.fetchval(f"SELECT EXISTS (SELECT 1 FROM {_q(t.name)})")]
    if held:
        raise MigrationError(f"the target database is not empty ({', '.join(held)} hold rows); migrate into a new, "
                             "empty database — nothing was written")
    for t in tables:
        rows = await con.fetch("SELECT column_name FROM information_schema.columns"   # generated: not copied
                               " WHERE table_schema = current_schema() AND table_name = ?"
                               " AND is_generated = 'NEVER'", t.name)
        have = {r[0] for r in rows}
        if not have:
            raise MigrationError(f"the target database has no table {t.name}")
        if have != set(t.columns):
            raise MigrationError(f"table {t.name} differs: only in SQLite {sorted(set(t.columns) - have)}, "
                                 f"only in PostgreSQL {sorted(have - set(t.columns))}")


async def _target_digest(con: PgConn, table: _Table) -> tuple[int, str]:
    """Rows and the digest of ``table`` as PostgreSQL holds it, in key order (the same order as SQLite's:
    text columns use the "C" collation, byte-wise like SQLite's BINARY)."""
    digest = hashlib.sha256()
    count = 0
    cursor = _q(f"migrate_{table.name}")   # one name per table: asyncpg caches a FETCH's row shape by its text
    await con.execute(f"DECLARE {cursor} NO SCROLL CURSOR FOR {_select(table)}")
    while rows := await con.fetch(f"FETCH {CHUNK} FROM {cursor}"):
        for row in rows:
            digest.update(repr(tuple(row)).encode())
        count += len(rows)
    await con.execute(f"CLOSE {cursor}")
    return count, digest.hexdigest()


async def _move_sequences(con: PgConn, tables: Sequence[_Table], counters: dict[str, int]) -> dict[str, int]:
    """Set every identity sequence of a copied table past the largest id copied (and SQLite's counter)."""
    rows = await con.fetch("SELECT table_name, column_name FROM information_schema.columns"
                           " WHERE table_schema = current_schema()"
                           " AND (is_identity = 'YES' OR column_default LIKE 'nextval(%')")
    names = {t.name for t in tables}
    moved: dict[str, int] = {}
    for table, column in sorted((r[0], r[1]) for r in rows if r[0] in names):
        top = await con.fetchval(f"SELECT COALESCE(MAX({_q(column)}), 0) FROM {_q(table)}")
        last = max(int(top), counters.get(table, 0))
        if last > 0:
            await con.execute("SELECT setval(pg_get_serial_sequence(?, ?), ?, true)", table, column, last)
            moved[f"{table}.{column}"] = last
    return moved


# --- the move ---------------------------------------------------------------------------------------------

async def _copy(source: SqliteDatabase, con: PgConn, table: _Table) -> _SourceRows:
    rows = _SourceRows(table)
    while chunk := await source.reader.run(rows.next_chunk):
        await con.copy_rows(table.name, table.columns, chunk)
    return rows


def _counter(table: str) -> Callable[[sqlite3.Connection], int]:
    def count(con: sqlite3.Connection) -> int:
        return int(con.execute(f"SELECT count(*) FROM {_q(table)}").fetchone()[0])

    return count


async def compare(source: SqliteDatabase, target: PgDatabase, con: PgConn, tables: Sequence[_Table],
                  copied: dict[str, _SourceRows], report: MigrationReport) -> None:
    """Add to ``report`` every figure of both sides: rows and content per table, each hall's chain end,
    GGR (bets, payouts, GGR) per hall and per device over all time through the real repositories."""
    for t in tables:
        source_count = await source.reader.run(_counter(t.name))
        count, digest = await _target_digest(con, t)
        report.checks.append(Check(f"rows {t.name}", source_count, count))
        report.checks.append(Check(f"content {t.name}", copied[t.name].digest.hexdigest(), digest))
    source_halls = {h.id: (h.last_seq, h.last_hash) for h in await SqliteHalls(source).halls()}
    target_halls = {h.id: (h.last_seq, h.last_hash) for h in await PgHalls(target).halls()}
    for hall in sorted(source_halls.keys() | target_halls.keys()):
        report.checks.append(Check(f"chain end {hall}", source_halls.get(hall), target_halls.get(hall)))
    for group in ("hall", "device"):
        mine = {(r.hall, r.key): (r.bets, r.wins, r.ggr) for r in await SharedReports(source).ggr(group)}
        theirs = {(r.hall, r.key): (r.bets, r.wins, r.ggr) for r in await SharedReports(target).ggr(group)}
        for scope, key in sorted(mine.keys() | theirs.keys(), key=lambda k: (k[0] or "", k[1])):
            name = f"GGR hall {key}" if group == "hall" else f"GGR device {scope}/{key}"
            report.checks.append(Check(name, mine.get((scope, key)), theirs.get((scope, key))))


async def migrate_sqlite_to_postgres(source_path: str, target_dsn: str) -> MigrationReport:
    """Copy the SQLite store at ``source_path`` into the empty PostgreSQL database ``target_dsn`` and
    compare (see the module docstring). Returns the report of a committed move; raises
    :class:`MigrationError` (:class:`MigrationMismatch` with the report when the comparison failed) after
    rolling back, so the target then holds nothing."""
    started = time.monotonic()
    if not Path(source_path).is_file():
        raise MigrationError(f"no SQLite database at {source_path}")
    source = await SqliteDatabase.open(source_path)   # brings the file to this build's schema, refuses a newer one
    try:
        await source.reader.run(_begin_snapshot)
        try:
            tables, counters = await source.reader.run(_plan)
            return await _into_postgres(source, target_dsn, tables, counters, started,
                                        MigrationReport(source=source_path, target=target_dsn))
        finally:
            await source.reader.run(_end_snapshot)
    finally:
        await source.close()


async def _into_postgres(source: SqliteDatabase, dsn: str, tables: list[_Table], counters: dict[str, int],
                         started: float, report: MigrationReport) -> MigrationReport:
    target = await PgDatabase.open(dsn)   # applies the missing migrations (their own transaction)
    try:
        return await _copy_and_compare(source, target, dsn, tables, counters, started, report)
    except MigrationError:
        raise
    except Exception as exc:   # a value PostgreSQL refused, a lost connection …: rolled back already
        raise MigrationError(f"the copy failed and was rolled back, the target holds nothing: "
                             f"{type(exc).__name__}: {exc}") from exc
    finally:
        await target.close()


async def _copy_and_compare(source: SqliteDatabase, target: PgDatabase, dsn: str, tables: list[_Table],
                            counters: dict[str, int], started: float, report: MigrationReport) -> MigrationReport:
    async with target.transaction() as con:
        await _prepare_target(con, tables)
        copied: dict[str, _SourceRows] = {}
        for t in tables:
            began = time.monotonic()
            copied[t.name] = await _copy(source, con, t)
            report.rows[t.name] = copied[t.name].count
            log.info("migrate.table_copied", table=t.name, rows=copied[t.name].count,
                     seconds=round(time.monotonic() - began, 3))
        report.sequences = await _move_sequences(con, tables, counters)
        await compare(source, _InTransaction(con, dsn), con, tables, copied, report)
        report.seconds = time.monotonic() - started
        if report.differences:
            raise MigrationMismatch(report)   # leaves the transaction: rolled back
    log.info("migrate.committed", tables=len(tables), events=report.rows.get("events", 0),
             seconds=round(report.seconds, 3))
    return report
