"""The PostgreSQL backend's own contract (issue 14): its migrations are versioned and recorded, its
schema has SQLite's tables, columns and indexes, and amounts are exact integers, never floats."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from central.repos import Repositories
from central.repos.errors import BackendUnavailable, StoreError
from central.store import open_sqlite, open_store, sqlite_path
from central.store.pg_db import numbered
from central.store.pg_schema import MIGRATIONS
from tests.waits import until

from .builders import T0, FakeHall
from .conftest import fresh_pg_database


def _sqlite_shape(path: Path) -> tuple[dict[str, set[str]], set[str]]:
    con = sqlite3.connect(path)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"
                                            " AND name NOT LIKE 'sqlite_%' AND name != 'meta'")]
        columns = {t: {r[1] for r in con.execute(f"PRAGMA table_info({t})")} for t in tables}
        indexes = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'index'"
                                             " AND name NOT LIKE 'sqlite_autoindex_%'")}
        return columns, indexes
    finally:
        con.close()


async def _pg_shape(url: str) -> tuple[dict[str, set[str]], set[str], set[str], set[tuple[str, str, str]]]:
    con = await asyncpg.connect(url)
    try:
        columns: dict[str, set[str]] = {}
        types: set[str] = set()
        generated: set[tuple[str, str, str]] = set()
        for table, column, kind, how in await con.fetch(
                "SELECT table_name, column_name, data_type, is_generated FROM information_schema.columns"
                " WHERE table_schema = 'public' AND table_name != 'schema_migrations'"):
            if how != "NEVER":
                generated.add((table, column, kind))
                continue
            columns.setdefault(table, set()).add(column)
            types.add(kind)
        indexes = {r[0] for r in await con.fetch("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'"
                                                 " AND indexname NOT LIKE '%_pkey'")}
        return columns, indexes, types, generated
    finally:
        await con.close()


async def test_postgres_schema_mirrors_sqlite(tmp_path: Path, pg_template: str) -> None:
    await (await open_sqlite(tmp_path / "c.db")).close()
    sqlite_columns, sqlite_indexes = _sqlite_shape(tmp_path / "c.db")
    async with fresh_pg_database(pg_template) as url:
        pg_columns, pg_indexes, types, generated = await _pg_shape(url)
    # the one table PostgreSQL adds: which halls ingest workers of other processes wait on (migration 6,
    # unlogged, never copied by db migrate); one process serves a SQLite file, its workers signal in memory
    assert pg_columns.pop("chain_waits") == {"hall"}
    assert pg_columns == sqlite_columns
    assert pg_indexes == sqlite_indexes
    assert types == {"text", "bigint"}   # no float, no numeric: amounts are integer minor units
    # the one column PostgreSQL adds, for HOT updates of the rollups (migration 5); never copied
    assert generated == {("rollups", "zero", "boolean")}


async def test_migrations_are_recorded_once_and_a_newer_database_is_refused(pg_template: str) -> None:
    async with fresh_pg_database(pg_template) as url:
        store = await open_store(url)
        assert await store.database.migrations() == [(v, name) for v, name, _ in MIGRATIONS]  # type: ignore[attr-defined]
        await store.close()
        store = await open_store(url)   # opening again applies nothing
        assert len(await store.database.migrations()) == len(MIGRATIONS)  # type: ignore[attr-defined]
        await store.close()
        con = await asyncpg.connect(url)
        await con.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)")
        await con.close()
        with pytest.raises(StoreError, match="999"):
            await open_store(url)


async def test_an_unreachable_server_is_a_store_error_without_the_password() -> None:
    with pytest.raises(StoreError, match="cannot connect") as caught:
        await open_store("postgresql://central:s3cret@127.0.0.1:1/hq")
    assert "s3cret" not in str(caught.value)


def test_a_postgres_url_is_not_a_sqlite_path() -> None:
    with pytest.raises(BackendUnavailable, match="SQLite file path"):
        sqlite_path("postgresql://central@db/hq")


@pytest.mark.parametrize(("sql", "expected"), [
    ("SELECT ? , ?", "SELECT $1 , $2"),
    ("SELECT '?' || ?", "SELECT '?' || $1"),
    ("WHERE a = 'it''s ?' AND b = ?", "WHERE a = 'it''s ?' AND b = $1"),
])
def test_placeholders_outside_literals_are_numbered(sql: str, expected: str) -> None:
    assert numbered(sql) == expected


async def test_sums_of_bigint_come_back_as_exact_ints(pg_template: str) -> None:
    async with fresh_pg_database(pg_template) as url:
        store = await open_store(url)
        try:
            db: Any = store.database
            big = 2**62
            row = await db.fetchrow("SELECT SUM(x) FROM (VALUES (?::bigint), (?::bigint), (?::bigint)) v(x)",
                                    big, big, 5)
            assert row[0] == 2 * big + 5 and type(row[0]) is int
        finally:
            await store.close()


async def test_two_processes_on_one_database_store_each_event_once_in_order(pg_template: str) -> None:
    """Two central processes on one PostgreSQL database (two pools), each given every batch of three
    halls, overlapping runs included, all at once: the hall's row lock orders them, so every event is
    stored exactly once, every outcome is one the SQLite backend gives, and the money adds up."""
    halls = [FakeHall(f"hall-{i}", seed=i) for i in range(3)]
    for hall in halls:
        hall.play(300)
    async with fresh_pg_database(pg_template) as url:
        a, b = await open_store(url), await open_store(url)
        try:
            for hall in halls:
                await a.halls.add_hall(hall.hall, hall.public_pem, now=T0)
            runs = [(hall, hall.events[first - 1:last]) for hall in halls
                    for first, last in [(1, 60), (41, 120), (121, 200), (1, 200), (201, len(hall.events))]]

            async def feed(store: Repositories) -> list[str]:
                out = []
                for hall, events in runs:   # in order per process, racing the other process
                    result = await store.ingest.ingest_events(hall.hall, events, central_time=T0)
                    out.append(result.status)
                return out

            statuses = [s for batch in await asyncio.gather(feed(a), feed(b)) for s in batch]
            assert set(statuses) <= {"stored", "duplicate", "gap"}   # never a conflict: one chain
            for hall in halls:   # whatever raced, a last in-order pass completes the chain
                result = await a.ingest.ingest_events(hall.hall, hall.events, central_time=T0)
                assert result.status in ("stored", "duplicate")
                record = await b.halls.get_hall(hall.hall)
                assert record is not None and record.last_seq == len(hall.events)
                assert record.last_hash == hall.events[-1].hash
                (row,) = await b.reports.ggr("hall", hall=hall.hall)
                assert (row.bets, row.wins, row.rounds) == (hall.total.bets, hall.total.wins, hall.total.rounds)
            db: Any = a.database
            counts = await db.fetch("SELECT hall, COUNT(*), COUNT(DISTINCT seq), MAX(seq) FROM events GROUP BY hall")
            assert sorted(tuple(r) for r in counts) == [(h.hall, len(h.events), len(h.events), len(h.events))
                                                        for h in halls]
        finally:
            await a.close()
            await b.close()


async def test_rollup_upserts_are_heap_only_so_a_days_rows_stay_together(pg_template: str) -> None:
    """Every batch updates the day's rollup rows of its machines. Before migration 5 none of those
    updates was HOT (the zero-rows index named the money columns), so each one added entries to all
    four indexes and moved the row to any page with room: at 3M events one day's rows spread over 651
    pages instead of 48 and the 1-day reports slowed down as the history grew. Now they are updated
    in place, and the zero-rows index still holds exactly the rows without money."""
    hall = FakeHall("hall-hot", seed=5)
    hall.play(400)
    async with fresh_pg_database(pg_template) as url:
        store = await open_store(url)
        try:
            await store.halls.add_hall(hall.hall, hall.public_pem, now=T0)
            for first in range(1, len(hall.events) + 1, 10):   # 10-event batches: many upserts per row
                result = await store.ingest.ingest_events(hall.hall, hall.events[first - 1:first + 9],
                                                          central_time=T0)
                assert result.status == "stored"
            (row,) = await store.reports.ggr("hall", hall=hall.hall)
            assert (row.bets, row.wins, row.rounds) == (hall.total.bets, hall.total.wins, hall.total.rounds)
        finally:
            await store.close()   # its connections' statistics are published as they end
        con = await asyncpg.connect(url)
        try:
            async def counted() -> tuple[int, int] | None:
                row = await con.fetchrow("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
                                         " WHERE relname = 'rollups'")
                return (row[0], row[1]) if row is not None and row[0] > 0 else None

            updates, hot = await until(counted, "the rollups' update counters are published", timeout=30)
            assert updates >= 100 and hot >= 0.9 * updates, (updates, hot)
            wrong = await con.fetchval("SELECT COUNT(*) FROM rollups WHERE zero <> (bets = 0 AND wins = 0"
                                       " AND rounds = 0 AND cash_in = 0 AND cash_out = 0)")
            assert wrong == 0
        finally:
            await con.close()


async def test_report_reads_plan_for_their_values_not_a_generic_guess(pg_template: str) -> None:
    """A statement run again and again (asyncpg caches it prepared) may be given a generic plan from its
    sixth run, one blind to the values: a whole-period ``day >= $1 AND day <= $2`` is then guessed at a
    fraction of a percent of the rows (a 90-day GGR by device went from 40 to 128 ms at 3M events).
    Read snapshots, where the reports run, plan each run for its own values; ingest's transactions
    keep the cached plans (the contrast shows the test can tell them apart)."""
    async with fresh_pg_database(pg_template) as url:
        store = await open_store(url)
        try:
            db: Any = store.database
            async with db.transaction() as con:
                await con.execute("INSERT INTO device_days (day, hall, device, bets)"
                                  " SELECT '2026-11-' || lpad((1 + i % 28)::text, 2, '0'), 'hall-01', 'egm-' || i, 1"
                                  " FROM generate_series(1, 20000) AS i")
                await con.execute("ANALYZE device_days")
            prepare = ("PREPARE period(text, text) AS SELECT hall, device, SUM(bets) FROM device_days"
                       " WHERE day >= $1 AND day <= $2 GROUP BY hall, device")
            run = "EXECUTE period('2026-11-01', '2026-11-28')"

            async def plan_after_runs(con: Any) -> str:
                await con.execute(prepare)
                for _ in range(8):
                    await con.execute(run)
                plan = "\n".join(row[0] for row in await con.fetch(f"EXPLAIN {run}"))
                await con.execute("DEALLOCATE period")   # the pool may lend the same connection next
                return plan

            async with db.reading() as con:
                report = await plan_after_runs(con)
            async with db.transaction() as con:
                ingest = await plan_after_runs(con)
            assert "'2026-11-01'" in report and "$1" not in report, report
            assert "$1" in ingest, ingest
        finally:
            await store.close()
