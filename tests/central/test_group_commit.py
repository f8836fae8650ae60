"""Group commit across halls, on a real SQLite file: many halls' batches in one transaction, each in its own
savepoint, each answered only after the commit.

What an operator relies on: a duplicate, a gap, a forged or conflicting batch, or one that fails half-way
in the same commit as other halls' batches is answered as if it had been alone, and never spoils, delays
or double-counts the others; the store after many halls ingest at once is exactly the store they would
have built one batch at a time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec
import pytest

from central.ingest import CONFLICT_DETAIL, Ingestor, IngestOutcome, Verified, signed_header
from central.repos import Repositories
from central.repos.errors import StoreError
from central.staging import stage_events
from central.store import open_sqlite
from central.store.group_commit import GroupCommitter, GroupFailed
from protocols.sync import GENESIS_HASH
from protocols.sync.keys import Ed25519PrivateKey

from .builders import FakeHall
from .checks import ack_of, hall_totals, resend_of
from .conftest import StepClock, register


@pytest.fixture
def backend() -> str:
    """SQLite only: the group commit is the SQLite backend's way to share one writer's fsync between
    batches; PostgreSQL commits each batch in its own transaction (tests/central/test_store_postgres.py
    covers concurrent batches there)."""
    return "sqlite"


class WriterGate:
    """Holds the store's writer inside one unit of work until released: everything submitted meanwhile
    waits for that commit and is gathered into the next group, so a test knows exactly what shares it."""

    def __init__(self, store: Repositories) -> None:
        self.store = store
        self._entered = threading.Event()
        self._release = threading.Event()
        self._task: asyncio.Task[None] | None = None

    def _hold(self, con: sqlite3.Connection) -> None:
        self._entered.set()
        assert self._release.wait(60), "the test never released the writer"

    async def __aenter__(self) -> WriterGate:
        self._task = asyncio.create_task(self.store.database.group_commit.submit(self._hold))
        assert await asyncio.to_thread(self._entered.wait, 60), "the writer never took the gate"
        return self

    async def gathered(self, count: int) -> None:
        """Wait until ``count`` units wait behind the gate (tasks that submit without a thread hop)."""
        for _ in range(10_000):
            if self.store.database.group_commit.waiting >= count:
                break
            await asyncio.sleep(0)   # a turn of the loop, not a timed wait: the submitters need no thread
        assert self.store.database.group_commit.waiting == count

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._release.set()
        assert self._task is not None
        await self._task


def snapshot(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Everything ingest writes, minus what only says *when* central did it (central_time, stored_at,
    log times): what must be the same whichever order the halls' batches were committed in."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        queries = {
            "events": "SELECT hall, seq, id, device, type, agent_time, device_time, prev_hash, hash, data FROM events"
                      " ORDER BY hall, seq",
            "rollups": "SELECT * FROM rollups ORDER BY hall, device, game, day",
            "devices": "SELECT * FROM devices ORDER BY hall, id",
            "halls": "SELECT id, last_seq, last_hash FROM halls ORDER BY id",
            "device_marks": "SELECT * FROM device_marks ORDER BY hall, device, seq",
            "batches": "SELECT hall, first_seq, last_seq, header, sig FROM batches ORDER BY hall, last_seq",
            "log": "SELECT hall, device, kind, detail FROM integration_log ORDER BY hall, kind, detail",
        }
        return {name: con.execute(sql).fetchall() for name, sql in queries.items()}
    finally:
        con.close()


def with_snapshots(hall: FakeHall, count: int) -> None:
    """Play ``count`` events with a meter snapshot now and then: a snapshot's marks read the device's stored
    totals inside the transaction, so they show whether a unit saw the units before it."""
    while count > 0:
        hall.play(min(count, 15))
        count -= 15
        device = f"egm-{hall.rng.randint(1, hall.devices):03d}"
        hall._append(device, "meters.snapshot", {"reason": "scheduled", "meters": {"coin_in": hall.rng.randint(1, 9)}})


# -- many halls in one commit ------------------------------------------------------------------------------

async def test_one_commit_with_good_duplicate_gap_forged_conflicting_and_failing_batches(
        store: Repositories, central_key: Ed25519PrivateKey) -> None:
    ingestor = Ingestor(store, central_key, StepClock())
    good = [FakeHall(f"hall-good-{i}", seed=100 + i) for i in range(4)]
    dup, gap, forged, conflict, failing = (FakeHall(f"hall-{n}", seed=200 + i) for i, n in
                                           enumerate(("dup", "gap", "forged", "conflict", "failing")))
    bad = [dup, gap, forged, conflict, failing]
    await register(store, *good, *bad)
    for hall in [*good, *bad]:
        with_snapshots(hall, 60)
    # what each bad hall already had stored before the group
    for hall, through in ((dup, 30), (gap, 10), (forged, 20), (conflict, 20), (failing, 20)):
        assert (await ingestor.handle(hall.topic, hall.batch(1, through))).status == "stored"
    before = {h.hall: await hall_totals(store, h.hall) for h in bad}
    log_before = len(await store.ingest.integration_log(limit=1000))
    fork = FakeHall(conflict.hall, seed=999, key=conflict.key)   # same hall and key, another history
    with_snapshots(fork, 60)
    other_key = FakeHall("nobody", seed=5).key

    async def prep(hall: FakeHall, payload: bytes) -> IngestOutcome | Verified:
        return await ingestor.prepare(hall.topic, payload)

    prepared = [await prep(h, h.batch(1, len(h.events))) for h in good[:2]]
    prepared.append(await prep(dup, dup.batch(11, 30)))                                  # a replay
    prepared.append(await prep(gap, gap.batch(21, 40)))                                  # 11..20 missing
    prepared.append(await prep(forged, forged.batch(21, 40, key=other_key)))              # bad signature
    prepared.append(await prep(conflict, fork.batch(15, 35)))                             # fork of the chain
    ok_failing = await prep(failing, failing.batch(21, 40))
    assert isinstance(ok_failing, Verified)
    # It fails inside its savepoint after writing its events, rollups, devices and chain end: its signed
    # header names another batch, which the store refuses only at the very end of the unit.
    prepared.append(dataclasses.replace(ok_failing, header=msgspec.structs.replace(ok_failing.header, last_seq=41)))
    prepared += [await prep(h, h.batch(1, len(h.events))) for h in good[2:]]
    assert isinstance(prepared[4], IngestOutcome) and prepared[4].status == "rejected"  # judged before the store

    groups_of_8 = store.database.group_commit.stats.group_sizes[8]
    async with WriterGate(store) as gate:
        tasks = [asyncio.create_task(ingestor.commit(p)) for p in prepared]
        await gate.gathered(8)   # the verified ones; the forged one never reaches the store
    outcomes = await asyncio.gather(*tasks)
    assert store.database.group_commit.stats.group_sizes[8] == groups_of_8 + 1   # all eight in one commit
    by_hall = {o.hall: o for o in outcomes}

    for hall in good:
        outcome = by_hall[hall.hall]
        assert (outcome.status, outcome.stored) == ("stored", len(hall.events))
        assert ack_of(outcome, central_key, hall.hall).acked_through_seq == len(hall.events)
        assert await hall_totals(store, hall.hall) == hall.total
        seqs = [e["seq"] for e in await store.ingest.events(hall=hall.hall, limit=1000)]
        assert seqs == list(range(1, len(hall.events) + 1))          # in order, each once
        record = await store.halls.get_hall(hall.hall)
        assert record is not None and record.last_hash == hall.events[-1].hash

    assert by_hall[dup.hall].status == "duplicate"
    assert ack_of(by_hall[dup.hall], central_key, dup.hall).acked_through_seq == 30
    assert by_hall[gap.hall].status == "gap" and by_hall[gap.hall].buffered
    request = resend_of(by_hall[gap.hall], central_key, gap.hall)
    assert (request.from_seq, request.to_seq) == (11, 20)
    assert by_hall[forged.hall].status == "rejected" and by_hall[forged.hall].publish == ()
    assert (by_hall[conflict.hall].status, by_hall[conflict.hall].detail) == ("rejected", CONFLICT_DETAIL)
    assert by_hall[conflict.hall].publish == ()
    assert by_hall[failing.hall].status == "error" and by_hall[failing.hall].publish == ()   # never acked
    for hall in bad:
        assert await hall_totals(store, hall.hall) == before[hall.hall], hall.hall
    for hall, through in ((dup, 30), (gap, 10), (forged, 20), (conflict, 20), (failing, 20)):
        record = await store.halls.get_hall(hall.hall)
        assert record is not None and (record.last_seq, record.last_hash) == (through, hall.events[through - 1].hash)
        assert len(await store.ingest.events(hall=hall.hall, limit=1000)) == through
    signed = [row for row in snapshot(Path(store.database.path))["batches"] if row[0] == failing.hall]
    assert [row[1:3] for row in signed] == [(1, 20)]   # its signed header of 21..40 was rolled back too
    kinds = sorted((e.hall, e.kind) for e in (await store.ingest.integration_log(limit=1000))[:-log_before or None])
    assert kinds == sorted([(dup.hall, "duplicate"), (gap.hall, "resend"), (forged.hall, "rejected"),
                            (conflict.hall, "rejected")])

    # what is left of the bad halls still goes through afterwards, in order
    filled = await ingestor.handle(gap.topic, gap.batch(11, 20))
    assert ack_of(filled, central_key, gap.hall).acked_through_seq == 40     # it drained the buffered 21..40
    for hall, first in ((gap, 41), (failing, 21), (forged, 21)):
        assert (await ingestor.handle(hall.topic, hall.batch(first, len(hall.events)))).status == "stored"
    for hall in (gap, failing, forged):
        assert await hall_totals(store, hall.hall) == hall.total


async def test_two_batches_of_one_hall_in_one_group_apply_in_order(store: Repositories) -> None:
    """The second sees the chain end (and the device totals) the first wrote in the same transaction."""
    a, b = FakeHall("hall-a", seed=31), FakeHall("hall-b", seed=32)
    await register(store, a, b)
    with_snapshots(a, 90)
    with_snapshots(b, 90)
    n = len(a.events)

    def staged(hall: FakeHall, first: int, last: int) -> Any:
        return stage_events(hall.hall, hall.events[first - 1:last], central_time=1)

    async with WriterGate(store) as gate:
        tasks = [asyncio.create_task(store.ingest.ingest_staged(s)) for s in (
            staged(a, 1, 40), staged(b, 41, 60), staged(a, 41, n), staged(b, 1, 40), staged(a, 30, 50))]
        await gate.gathered(5)
    first, b_early, second, b_start, replay = await asyncio.gather(*tasks)
    assert (first.status, first.last_seq) == ("stored", 40)
    assert (second.status, second.stored, second.last_seq) == ("stored", n - 40, n)
    assert second.last_hash == a.events[-1].hash
    assert replay.status == "duplicate" and replay.last_seq == n       # saw both earlier units of hall-a
    assert b_early.status == "gap" and b_early.last_seq == 0          # submitted before b's start: a gap
    assert (b_start.status, b_start.last_seq) == ("stored", 40)
    assert await hall_totals(store, a.hall) == a.total

    # the same store built one batch per commit: identical marks, devices, rollups
    ref_path = Path(store.database.path).with_name("reference.db")
    ref = await open_sqlite(ref_path)
    try:
        await register(ref, a, b)
        for s in (staged(a, 1, 40), staged(a, 41, n), staged(b, 1, 40)):
            assert (await ref.ingest.ingest_staged(s)).status == "stored"
    finally:
        await ref.close()
    got, want = snapshot(Path(store.database.path)), snapshot(ref_path)
    assert got["device_marks"], "the halls played no meter snapshot: the test would prove nothing about marks"
    assert got == want


async def test_an_error_inside_one_savepoint_rolls_back_only_that_batch(store: Repositories) -> None:
    halls = [FakeHall(f"hall-{i}", seed=40 + i) for i in range(5)]
    await register(store, *halls)
    for hall in halls:
        with_snapshots(hall, 50)

    def good(hall: FakeHall) -> Callable[[], Any]:
        return lambda: store.ingest.ingest_staged(stage_events(hall.hall, hall.events, central_time=1))

    def failing(hall: FakeHall) -> Callable[[], Any]:
        # writes the events, rollups, devices, marks and chain end, then fails on a signed header that
        # does not name the batch
        sig = signed_header(msgspec.structs.replace(_header(hall), last_seq=len(hall.events) + 5), "00")
        return lambda: store.ingest.ingest_staged(stage_events(hall.hall, hall.events, central_time=1), signed=sig)

    async def unregistered() -> Any:
        ghost = FakeHall("hall-ghost", seed=49)
        ghost.play(10)
        return await store.ingest.ingest_staged(stage_events(ghost.hall, ghost.events, central_time=1))

    calls = [failing(halls[0]), good(halls[1]), failing(halls[2]), unregistered, good(halls[3]), failing(halls[4])]
    async with WriterGate(store) as gate:
        tasks = [asyncio.create_task(call()) for call in calls]
        await gate.gathered(len(calls))
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["ValueError", "IngestResult", "ValueError", "StoreError",
                                                   "IngestResult", "ValueError"]
    assert isinstance(results[3], StoreError) and "not registered" in str(results[3])
    for hall in (halls[1], halls[3]):
        assert await hall_totals(store, hall.hall) == hall.total
        assert len(await store.ingest.events(hall=hall.hall, limit=1000)) == len(hall.events)
    snap = snapshot(Path(store.database.path))
    for hall in (halls[0], halls[2], halls[4]):
        for table in ("events", "rollups", "devices", "device_marks", "batches"):
            assert not [r for r in snap[table] if r[0] == hall.hall], (hall.hall, table)
        assert (hall.hall, 0, GENESIS_HASH) in snap["halls"]
    assert not [r for r in snap["events"] if r[0] == "hall-ghost"]
    # and each of them goes through once it is sound
    for hall in (halls[0], halls[2], halls[4]):
        assert (await good(hall)()).status == "stored"
        assert await hall_totals(store, hall.hall) == hall.total


def _header(hall: FakeHall) -> Any:
    from protocols.sync import decode_batch

    return decode_batch(hall.batch(1, len(hall.events))).header


async def test_a_transaction_lost_inside_a_unit_fails_the_whole_group_and_nothing_is_acked(
        store: Repositories, central_key: Ed25519PrivateKey) -> None:
    """SQLite may roll the whole transaction back by itself (an I/O error, a full disk): then the units
    before the failing one are gone too, so every caller of the group must hear it and nobody is acked."""
    ingestor = Ingestor(store, central_key, StepClock())
    a, b = FakeHall("hall-a", seed=51), FakeHall("hall-b", seed=52)
    await register(store, a, b)
    a.play(30)
    b.play(30)
    prepared = [await ingestor.prepare(a.topic, a.batch(1, 30)), await ingestor.prepare(b.topic, b.batch(1, 30))]

    def lose_the_transaction(con: sqlite3.Connection) -> None:
        con.execute("ROLLBACK")
        raise sqlite3.OperationalError("disk I/O error")

    async with WriterGate(store) as gate:
        first = asyncio.create_task(ingestor.commit(prepared[0]))
        killer = asyncio.create_task(store.database.group_commit.submit(lose_the_transaction))
        second = asyncio.create_task(ingestor.commit(prepared[1]))
        await gate.gathered(3)
    outcomes = [await first, await second]
    with pytest.raises(GroupFailed):
        await killer
    assert [o.status for o in outcomes] == ["error", "error"]
    assert all(o.publish == () for o in outcomes)
    assert snapshot(Path(store.database.path))["events"] == []
    # the connection is sound and the next commit stores both halls
    assert (await ingestor.handle(a.topic, a.batch(1, 30))).status == "stored"
    assert (await ingestor.handle(b.topic, b.batch(1, 30))).status == "stored"
    assert await hall_totals(store, b.hall) == b.total


async def test_a_cancelled_caller_does_not_stop_the_group_and_an_idle_writer_takes_the_first_at_once(
        store: Repositories) -> None:
    a, b = FakeHall("hall-a", seed=61), FakeHall("hall-b", seed=62)
    await register(store, a, b)
    a.play(20)
    b.play(20)
    # idle writer: one unit, one commit of its own
    commits = store.database.group_commit.stats.commits
    assert (await store.ingest.ingest_staged(stage_events(a.hall, a.events[:10], 1))).status == "stored"
    assert store.database.group_commit.stats.commits == commits + 1
    async with WriterGate(store) as gate:
        gone = asyncio.create_task(store.ingest.ingest_staged(stage_events(a.hall, a.events[10:], 1)))
        kept = asyncio.create_task(store.ingest.ingest_staged(stage_events(b.hall, b.events, 1)))
        await gate.gathered(2)
        gone.cancel()
    assert (await kept).status == "stored"
    with pytest.raises(asyncio.CancelledError):
        await gone
    # the cancelled unit had not been taken: it did not run, and hall-a is where it was
    assert (await store.halls.get_hall(a.hall)).last_seq == 10  # type: ignore[union-attr]


# -- many halls at once = one at a time ---------------------------------------------------------------------

def _messages(hall: FakeHall, rng: random.Random) -> list[bytes]:
    """A hall's batches as a shared subscription and a re-publishing agent may deliver them: cut at random,
    some replayed, some overlapping the previous one, some arriving before the one they follow."""
    out: list[bytes] = []
    seq, n = 1, len(hall.events)
    while seq <= n:
        last = min(n, seq + rng.randint(1, 40))
        out.append(hall.batch(seq, last))
        if rng.random() < 0.15:
            out.append(hall.batch(max(1, seq - rng.randint(0, 10)), last))       # replay / overlap
        seq = last + 1
    for i in range(len(out) - 1):
        if rng.random() < 0.1:
            out[i], out[i + 1] = out[i + 1], out[i]                             # out of order: a gap first
    out.append(hall.batch(1, n))      # the agent re-publishes from its ack: whatever a gap dropped comes again
    return out


async def test_many_halls_at_once_build_exactly_the_store_of_one_batch_at_a_time(
        tmp_path: Path, central_key: Ed25519PrivateKey) -> None:
    rng = random.Random(7)
    halls = [FakeHall(f"hall-{i:02d}", seed=300 + i, devices=5) for i in range(16)]
    for hall in halls:
        with_snapshots(hall, rng.randint(100, 260))
    feeds = {hall.hall: (hall, _messages(hall, rng)) for hall in halls}

    async def build(path: Path, concurrent: bool) -> tuple[dict[str, list[tuple[Any, ...]]], Any]:
        store = await open_sqlite(path)
        try:
            await register(store, *halls)
            ingestor = Ingestor(store, central_key, StepClock())

            async def feed(hall: FakeHall, payloads: list[bytes]) -> None:
                for payload in payloads:
                    outcome = await ingestor.handle(hall.topic, payload)
                    assert outcome.status in ("stored", "duplicate", "gap"), outcome

            if concurrent:
                await asyncio.gather(*(feed(h, p) for h, p in feeds.values()))
            else:
                for h, p in feeds.values():
                    await feed(h, p)
            for hall in halls:
                assert await hall_totals(store, hall.hall) == hall.total, hall.hall
            return snapshot(path), store.database.group_commit.stats
        finally:
            await store.close()

    together, stats = await build(tmp_path / "together.db", concurrent=True)
    alone, alone_stats = await build(tmp_path / "alone.db", concurrent=False)
    assert alone_stats.largest_group == 1
    assert stats.largest_group > 1 and stats.commits < alone_stats.commits, stats   # it really grouped
    assert together["device_marks"] and together["log"]
    assert together == alone


async def test_a_group_stops_taking_units_at_its_event_bound(tmp_path: Path) -> None:
    """A live batch waits behind at most about ``max_events`` of other halls' work, however much is queued."""
    con = sqlite3.connect(tmp_path / "t.db", isolation_level=None, check_same_thread=False)
    con.execute("CREATE TABLE t (unit INTEGER)")
    pool = ThreadPoolExecutor(max_workers=1)
    committer = GroupCommitter(lambda fn: asyncio.get_running_loop().run_in_executor(pool, fn, con), max_events=50)
    entered, release = threading.Event(), threading.Event()

    def hold(c: sqlite3.Connection) -> None:
        entered.set()
        assert release.wait(60)

    def write(unit: int) -> Callable[[sqlite3.Connection], int]:
        def work(c: sqlite3.Connection) -> int:
            c.execute("INSERT INTO t VALUES (?)", (unit,))
            return committer.stats.commits   # commits counted so far: which group this unit is in
        return work

    try:
        gate = asyncio.create_task(committer.submit(hold))
        assert await asyncio.to_thread(entered.wait, 60)
        tasks = [asyncio.create_task(committer.submit(write(i), events=e)) for i, e in enumerate((30, 30, 30, 10, 60))]
        for _ in range(100):
            if committer.waiting == 5:
                break
            await asyncio.sleep(0)
        assert committer.waiting == 5
        release.set()
        await gate
        commits_seen = await asyncio.gather(*tasks)
    finally:
        pool.shutdown(wait=True)
        con.close()
    # 30+30 reach the bound; 30+10+60: the unit that crosses it still goes, nothing after it
    assert commits_seen == [1, 1, 2, 2, 2]
    assert committer.stats.group_sizes == {1: 1, 2: 1, 3: 1}
    check = sqlite3.connect(tmp_path / "t.db")
    assert [r[0] for r in check.execute("SELECT unit FROM t ORDER BY rowid")] == [0, 1, 2, 3, 4]
    check.close()
