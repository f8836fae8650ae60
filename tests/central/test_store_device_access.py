"""Per-device reads without a per-event device index (schema 5): the floor's last play, the events money
between two meter snapshots, and an older file brought to schema 5 with the same answers."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from central.ingest import Ingestor
from central.reconcile import event_money
from central.repos import Repositories
from central.store import open_sqlite
from central.store.schema import SCHEMA_VERSION
from protocols.sync import generate_private_key, public_key_to_pem
from protocols.sync.money import ZERO, Contribution

from .builders import T0
from .conftest import StepClock
from .floor_model import Chain, Egm

MINUTE = 60_000_000


async def _hall(store: Repositories) -> tuple[Chain, list[Egm]]:
    """Two machines played across several batches, snapshots between rounds, one missed record."""
    chain = Chain("hall-m")
    assert await store.halls.add_hall("hall-m", public_key_to_pem(chain.key.public_key()).decode(), now=T0) == "added"
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


async def test_money_between_snapshots_and_last_play_come_from_ingest(store: Repositories) -> None:
    chain, egms = await _hall(store)
    await chain.flush(Ingestor(store, generate_private_key(), clock=StepClock()), size=7)  # cuts between marks
    for egm in egms:
        snaps = [e.seq for e in chain.events if e.device == egm.device and e.type == "meters.snapshot"]
        assert len(snaps) == 3
        ranges = [(snaps[0], snaps[1]), (snaps[1], snaps[2])]
        assert await store.reports.device_money("hall-m", egm.device, ranges) == (
            _truth(chain, egm.device, snaps[0], snaps[1]) + _truth(chain, egm.device, snaps[1], snaps[2]))
        assert (await store.reports.device_money("hall-m", egm.device, [(snaps[0], snaps[2])])).bets > 0
        # a range that does not end at a snapshot is read from the events
        assert await store.reports.device_money("hall-m", egm.device, [(0, len(chain.events))]) == _truth(
            chain, egm.device, 0, len(chain.events))
    reads = await store.devices.floor_reads("hall-m", after_seq=len(chain.events), max_events=10)
    plays = {egm.device: max(e.agent_time for e in chain.events if e.device == egm.device
                             and e.type.startswith("game.")) for egm in egms}
    assert reads.last_play == plays


async def test_an_older_file_gets_the_same_marks_and_loses_the_device_index(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    store = await open_sqlite(path)
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
    store = await open_sqlite(path)
    await store.close()
    con = sqlite3.connect(path)
    try:
        assert con.execute("SELECT * FROM device_marks ORDER BY hall, device, seq").fetchall() == marks
        assert con.execute("SELECT * FROM devices ORDER BY hall, id").fetchall() == devices
        assert con.execute("SELECT name FROM sqlite_master WHERE name = 'events_by_device'").fetchall() == []
        assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
    finally:
        con.close()


async def test_a_quiet_devices_events_come_from_its_spans_in_any_batch_sizes_and_after_a_migration(
        tmp_path: Path) -> None:
    """A machine with three events among thousands of a busy one: its events are read from the spans
    of the batches that held them (one row per batch and device), with paging, filters and limits the
    same as a scan of the hall would give, also for a file from before the spans existed."""
    path = tmp_path / "c.db"
    store = await open_sqlite(path)
    try:
        chain = Chain("hall-q")
        await store.halls.add_hall("hall-q", public_key_to_pem(chain.key.public_key()).decode(), now=T0)
        busy, quiet = Egm(chain, "egm-busy"), Egm(chain, "egm-quiet")
        at = T0
        for n in range(600):
            busy.play(10, 0, at)
            if n in (5, 300, 599):
                quiet.bill(500, at + 1)
            at += MINUTE
        ingestor = Ingestor(store, generate_private_key(), clock=StepClock())
        for size in (7, 130, 1000):   # batches of several sizes, so spans begin and end anywhere
            events, chain.events = chain.events, chain.events[:chain.sent + size * 3]
            await chain.flush(ingestor, size=size)
            chain.events = events
        await chain.flush(ingestor, size=333)

        async def check() -> None:
            for device in ("egm-busy", "egm-quiet"):
                mine = [e for e in chain.events if e.device == device]
                got = await store.ingest.events(hall="hall-q", device=device, limit=10_000)
                assert [e["seq"] for e in got] == [e.seq for e in mine]
                for after, limit in ((0, 1), (mine[0].seq, 2), (mine[len(mine) // 2].seq, 50)):
                    page = await store.ingest.events(hall="hall-q", device=device, after_seq=after, limit=limit)
                    assert [e["seq"] for e in page] == [e.seq for e in mine if e.seq > after][:limit]
                middle = mine[len(mine) // 2].agent_time
                timed = await store.ingest.events(hall="hall-q", device=device, time_from=middle, limit=10_000)
                assert [e["seq"] for e in timed] == [e.seq for e in mine if e.agent_time >= middle]

        await check()
        con = sqlite3.connect(path)
        spans = con.execute("SELECT first_seq, last_seq FROM device_spans WHERE device = 'egm-quiet'").fetchall()
        con.close()
        quiet_seqs = {e.seq for e in chain.events if e.device == "egm-quiet"}
        assert 1 <= len(spans) <= 3 and all(first in quiet_seqs and last in quiet_seqs for first, last in spans)
    finally:
        await store.close()
    con = sqlite3.connect(path, isolation_level=None)   # as schema 5 left it: no spans
    con.execute("DROP TABLE device_spans")
    con.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
    con.close()
    store = await open_sqlite(path)
    try:
        await check()
    finally:
        await store.close()


async def test_events_of_a_device_stop_at_its_newest_event(store: Repositories) -> None:
    chain, (a, b) = await _hall(store)
    await chain.flush(Ingestor(store, generate_private_key(), clock=StepClock()), size=50)
    for egm in (a, b):
        mine = [e.seq for e in chain.events if e.device == egm.device]
        got = await store.ingest.events(hall="hall-m", device=egm.device, limit=10_000)
        assert [e["seq"] for e in got] == mine and {e["device"] for e in got} == {egm.device}
        page = await store.ingest.events(hall="hall-m", device=egm.device, after_seq=mine[3], limit=2)
        assert [e["seq"] for e in page] == mine[4:6]
        assert await store.ingest.events(hall="hall-m", device=egm.device, after_seq=mine[-1]) == []
    assert await store.ingest.events(hall="hall-m", device="egm-unknown") == []
    bills = await store.ingest.events(hall="hall-m", device="egm-b", type="bill.accepted", limit=10_000)
    assert [e["seq"] for e in bills] == [e.seq for e in chain.events
                                          if e.device == "egm-b" and e.type == "bill.accepted"]
