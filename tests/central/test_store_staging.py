"""Ingest staged off the writer, and the multi-row statements the writer runs.

What an operator relies on: every event stored once and in order however a batch is cut, rollups that
count only what was newly stored when a batch overlaps the stored end, and a device's enabled flag
changed only by an event that states it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from central.ingest import Ingestor
from central.repos import Repositories
from central.staging import stage_events
from central.store.sqlhelpers import insert_rows
from protocols.sync import GENESIS_HASH, UnsealedEvent, seal

from .builders import T0, FakeHall
from .conftest import register


@pytest.mark.parametrize("rows", [0, 1, 2, 3, 25, 64, 65, 100, 1023, 1024, 1025, 2999, 5000])
def test_insert_rows_stores_every_row_once_in_order(tmp_path: Path, rows: int) -> None:
    con = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    con.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, a TEXT, b INTEGER)")
    values = [x for n in range(rows) for x in (n, f"row {n}", None if n % 7 == 0 else n * 3)]
    insert_rows(con, "INSERT INTO t (n, a, b)", 3, values)
    got = con.execute("SELECT n, a, b FROM t ORDER BY rowid").fetchall()
    assert got == [(n, f"row {n}", None if n % 7 == 0 else n * 3) for n in range(rows)]


def test_insert_rows_respects_a_low_variable_limit_and_refuses_ragged_values(tmp_path: Path) -> None:
    con = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    con.execute("CREATE TABLE t (a INTEGER, b INTEGER, c INTEGER, d INTEGER, e INTEGER, f INTEGER, g INTEGER,"
                " h INTEGER, i INTEGER, j INTEGER, k INTEGER)")
    con.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)   # SQLite's limit before 3.32
    values = list(range(11 * 700))
    insert_rows(con, "INSERT INTO t", 11, values)
    assert con.execute("SELECT COUNT(*), SUM(a), SUM(k) FROM t").fetchone() == (
        700, sum(range(0, 11 * 700, 11)), sum(range(10, 11 * 700, 11)))
    with pytest.raises(ValueError, match="rows of 11"):
        insert_rows(con, "INSERT INTO t", 11, list(range(12)))


def test_insert_rows_upsert_tail_adds_up_repeated_keys(tmp_path: Path) -> None:
    con = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    con.execute("CREATE TABLE t (k TEXT PRIMARY KEY, total INTEGER NOT NULL)")
    tail = " ON CONFLICT (k) DO UPDATE SET total = t.total + excluded.total"
    insert_rows(con, "INSERT INTO t (k, total)", 2, ["a", 1, "b", 2])
    insert_rows(con, "INSERT INTO t (k, total)", 2, ["a", 10, "c", 5, "a", 100], tail)
    assert dict(con.execute("SELECT k, total FROM t")) == {"a": 111, "b": 2, "c": 5}


async def test_a_batch_overlapping_the_stored_end_counts_only_its_new_tail(store: Repositories,
                                                                          ingestor: Ingestor) -> None:
    hall = FakeHall("hall-o", seed=4)
    await register(store, hall)
    hall.play(400)
    n = len(hall.events)
    assert (await ingestor.handle(hall.topic, hall.batch(1, 150))).status == "stored"
    outcome = await ingestor.handle(hall.topic, hall.batch(101, n))   # 50 events already held
    assert outcome.status == "stored" and outcome.stored == n - 150
    rows = await store.reports.ggr("hall")
    assert (rows[0].bets, rows[0].wins, rows[0].rounds, rows[0].cash_in, rows[0].cash_out) == (
        hall.total.bets, hall.total.wins, hall.total.rounds, hall.total.cash_in, hall.total.cash_out)
    stored = await store.ingest.events(hall="hall-o", limit=10_000)
    assert [e["seq"] for e in stored] == list(range(1, n + 1))
    assert [e["hash"] for e in stored] == [e.hash for e in hall.events]


def test_staging_keeps_the_canonical_data_and_the_missed_records() -> None:
    hall = FakeHall("hall-s", seed=5)
    hall.play(30)
    missed = hall._append("egm-002", "integration", {"kind": "missed", "bets": 70, "wins": 0, "currency": "EUR"})
    staged = stage_events("hall-s", hall.events, central_time=T0)
    width = len(staged.rows) // len(hall.events)
    assert staged.rows[-1] == '{"bets":70,"currency":"EUR","kind":"missed","wins":0}'
    assert staged.rows[width * (len(hall.events) - 1) + 1] == missed.seq
    assert [(m.seq, m.device) for m in staged.missed] == [(missed.seq, "egm-002")]
    tail = staged.tail(len(hall.events) - 1)
    assert list(tail.load_events()) == [missed] and tail.rows == staged.rows[-width:]
    assert sum(c.bets for c in tail.effects.rollups.values()) == 70
    assert tail.missed == staged.missed and staged.tail(0) is staged
    assert staged.tail(5).missed == staged.missed and not stage_events("hall-s", hall.events[:5], T0).missed


async def test_enabled_changes_only_when_an_event_states_it(store: Repositories, ingestor: Ingestor,
                                                             tmp_path: Path) -> None:
    hall = FakeHall("hall-e", seed=6, devices=1)
    await register(store, hall)
    hall.play(20)
    hall._append("egm-001", "device.status", {"online": True, "enabled": False, "device_kind": "egm"})
    assert (await ingestor.handle(hall.topic, hall.batch(1, len(hall.events)))).status == "stored"
    first = len(hall.events) + 1
    hall.play(20)   # status events in here say nothing about enabled
    assert (await ingestor.handle(hall.topic, hall.batch(first, len(hall.events)))).status == "stored"
    [device] = await store.devices.devices(hall="hall-e")
    assert device.enabled is False and device.last_seq == len(hall.events)
    first = len(hall.events) + 1
    hall._append("egm-001", "device.status", {"online": False, "enabled": True})
    assert (await ingestor.handle(hall.topic, hall.batch(first, len(hall.events)))).status == "stored"
    [device] = await store.devices.devices(hall="hall-e")
    assert device.enabled is True and device.online is False


def test_stage_events_refuses_an_empty_run() -> None:
    with pytest.raises(ValueError):
        stage_events("h", [], central_time=T0)
    event = seal(UnsealedEvent(seq=1, id="00000000-0000-4000-8000-000000000001", hall="h", device="d",
                               type="game.bet", device_time=None, agent_time=T0,
                               data={"amount": 5, "currency": "EUR"}), GENESIS_HASH)
    assert stage_events("h", [event], central_time=T0 + 1).rows[7] == T0 + 1
