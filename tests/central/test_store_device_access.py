"""Per-device reads without a per-event device index (schema 5): the floor's last play, the events money
between two meter snapshots, and an older file brought to schema 5 with the same answers."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from central.ingest import Ingestor
from central.reconcile import event_money
from central.store import SqliteStore
from central.store.schema import SCHEMA_VERSION
from protocols.sync import generate_private_key, public_key_to_pem
from protocols.sync.money import ZERO, Contribution

from .builders import T0
from .conftest import StepClock
from .floor_model import Chain, Egm

MINUTE = 60_000_000


async def _hall(store: SqliteStore) -> tuple[Chain, list[Egm]]:
    """Two machines played across several batches, snapshots between rounds, one missed record."""
    chain = Chain("hall-m")
    assert await store.add_hall("hall-m", public_key_to_pem(chain.key.public_key()).decode(), now=T0) == "added"
    a, b = Egm(chain, "egm-a"), Egm(chain, "egm-b")
    at = T0
    for round_ in range(12):
        for egm in (a, b):
            egm.play(10 * (round_ + 1), 25 if round_ % 3 == 0 else 0, at)
            egm.bill(500, at + 3)
            if round_ % 4 == 3:
                egm.snapshot(at + 5)
            at += MINUTE
    a.missed(at, at, bets=40)     # meters money, not events money: never in the marks
    b.bill(200, at + 1)           # after b's last snapshot and its last play
    return chain, [a, b]


def _truth(chain: Chain, device: str, after: int, through: int) -> Contribution:
    """Events money of ``device`` in (after, through], summed from the events themselves."""
    total = ZERO
    for e in chain.events:
        if e.device == device and after < e.seq <= through:
            total = total + event_money(e.type, e.data)
    return total


async def test_money_between_snapshots_and_last_play_come_from_ingest(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "c.db")
    try:
        chain, egms = await _hall(store)
        await chain.flush(Ingestor(store, generate_private_key(), clock=StepClock()), size=7)  # cuts between marks
        for egm in egms:
            snaps = [e.seq for e in chain.events if e.device == egm.device and e.type == "meters.snapshot"]
            assert len(snaps) == 3
            ranges = [(snaps[0], snaps[1]), (snaps[1], snaps[2])]
            assert await store.device_money("hall-m", egm.device, ranges) == (
                _truth(chain, egm.device, snaps[0], snaps[1]) + _truth(chain, egm.device, snaps[1], snaps[2]))
            assert (await store.device_money("hall-m", egm.device, [(snaps[0], snaps[2])])).bets > 0
            # a range that does not end at a snapshot is read from the events
            assert await store.device_money("hall-m", egm.device, [(0, len(chain.events))]) == _truth(
                chain, egm.device, 0, len(chain.events))
        reads = await store.floor_reads("hall-m", after_seq=len(chain.events), max_events=10)
        plays = {egm.device: max(e.agent_time for e in chain.events if e.device == egm.device
                                 and e.type.startswith("game.")) for egm in egms}
        assert reads.last_play == plays
    finally:
        await store.close()


async def test_an_older_file_gets_the_same_marks_and_loses_the_device_index(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    store = await SqliteStore.open(path)
    try:
        chain, _ = await _hall(store)
        await chain.flush(Ingestor(store, generate_private_key(), clock=StepClock()), size=5)
    finally:
        await store.close()
    con = sqlite3.connect(path, isolation_level=None)
    marks = con.execute("SELECT * FROM device_marks ORDER BY hall, device, seq").fetchall()
    devices = con.execute("SELECT * FROM devices ORDER BY hall, id").fetchall()
    assert len(marks) == 6 and all(row[3] > 0 for row in marks)
    # as schema 4 left it: the device index, no marks, no running totals
    con.execute("CREATE INDEX events_by_device ON events (hall, device, seq)")
    con.execute("DELETE FROM device_marks")
    con.execute("UPDATE devices SET last_play_seq = NULL, money_bets = NULL, money_wins = NULL, money_rounds = NULL,"
                " money_cash_in = NULL, money_cash_out = NULL")
    con.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    con.close()
    store = await SqliteStore.open(path)
    await store.close()
    con = sqlite3.connect(path)
    try:
        assert con.execute("SELECT * FROM device_marks ORDER BY hall, device, seq").fetchall() == marks
        assert con.execute("SELECT * FROM devices ORDER BY hall, id").fetchall() == devices
        assert con.execute("SELECT name FROM sqlite_master WHERE name = 'events_by_device'").fetchall() == []
        assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
    finally:
        con.close()


async def test_events_of_a_device_stop_at_its_newest_event(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "c.db")
    try:
        chain, (a, b) = await _hall(store)
        await chain.flush(Ingestor(store, generate_private_key(), clock=StepClock()), size=50)
        for egm in (a, b):
            mine = [e.seq for e in chain.events if e.device == egm.device]
            got = await store.events(hall="hall-m", device=egm.device, limit=10_000)
            assert [e["seq"] for e in got] == mine and {e["device"] for e in got} == {egm.device}
            page = await store.events(hall="hall-m", device=egm.device, after_seq=mine[3], limit=2)
            assert [e["seq"] for e in page] == mine[4:6]
            assert await store.events(hall="hall-m", device=egm.device, after_seq=mine[-1]) == []
        assert await store.events(hall="hall-m", device="egm-unknown") == []
        bills = await store.events(hall="hall-m", device="egm-b", type="bill.accepted", limit=10_000)
        assert [e["seq"] for e in bills] == [e.seq for e in chain.events
                                              if e.device == "egm-b" and e.type == "bill.accepted"]
    finally:
        await store.close()
