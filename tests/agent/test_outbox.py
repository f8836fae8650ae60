"""The outbox on real SQLite files: group commit, gap-free chain across restarts, acks, pruning, paging."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.outbox import ChainMismatch, Outbox, OutboxStore, OutboxUnavailable
from protocols.sync import GENESIS_HASH, Event, Malformed, StoredEvent, encode_event, verify_chain

HALL = "hall-7"
T0 = 1_780_000_000_000_000  # µs UTC
DAY = 86_400 * 1_000_000


@dataclass
class Draft:
    device: str = "egm-001"
    type: str = "game.bet"
    device_time: int | None = None
    agent_time: int = T0
    data: dict[str, Any] = field(default_factory=lambda: {"amount": 100, "currency": "EUR", "game": "g1"})


def all_rows(path: Path) -> list[Event]:
    """Every stored event, read by a fresh store (as after a restart), in pages."""
    store = OutboxStore(path, HALL)
    store.open()
    events, after = [], 0
    while page := store.read(after, 5000):
        events += page
        after = page[-1].seq
    store.close()
    return events


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "outbox.db"


async def test_concurrent_appends_share_few_transactions(db: Path) -> None:
    async with Outbox(db, HALL, linger=0.005, max_group=1000) as ob:
        results = await asyncio.gather(*(ob.append([Draft(agent_time=T0 + i)]) for i in range(3000)))
        status = ob.status()
    seqs = [events[0].seq for events in results]
    assert seqs == list(range(1, 3001))  # appended in call order, gap-free
    assert status["commits"] <= 6, status  # 3000 single-event appends → ~3 transactions, not 3000
    assert status["last_seq"] == 3000 and status["unacked_count"] == 3000 and status["pending_in_memory"] == 0
    assert verify_chain(GENESIS_HASH, all_rows(db), first_seq=1) == results[-1][0].hash


async def test_sequential_appends_are_one_transaction_each(db: Path) -> None:
    async with Outbox(db, HALL, linger=0.0) as ob:
        for i in range(20):
            [event] = await ob.append([Draft(agent_time=T0 + i)])
            assert event.seq == i + 1
        assert ob.status()["commits"] == 20


async def test_one_append_is_one_transaction_even_beyond_max_group(db: Path) -> None:
    async with Outbox(db, HALL, max_group=10, max_pending=100) as ob:
        events = await ob.append([Draft(agent_time=T0 + i) for i in range(50)])
        assert [e.seq for e in events] == list(range(1, 51))
        assert ob.status()["commits"] == 1
        with pytest.raises(ValueError):
            await ob.append([Draft()] * 101)


async def test_seq_and_chain_continue_across_restarts(db: Path) -> None:
    returned: list[Event] = []
    for round_ in range(3):
        async with Outbox(db, HALL) as ob:
            assert ob.status()["last_seq"] == 100 * round_
            for chunk in range(10):
                returned += await ob.append([Draft(device=f"egm-{round_:03d}", agent_time=T0 + chunk * 10 + i)
                                             for i in range(10)])
    rows = all_rows(db)
    assert [e.seq for e in rows] == list(range(1, 301))
    assert rows == returned  # what append returned is exactly what is stored
    assert verify_chain(GENESIS_HASH, rows, first_seq=1) == rows[-1].hash


async def test_event_fields_are_filled_by_the_outbox(db: Path) -> None:
    async with Outbox(db, HALL) as ob:
        [e1, e2] = await ob.append([Draft(device_time=T0 - 5), Draft(type="device.door", data={"open": True})])
    assert (e1.hall, e1.device, e1.type, e1.device_time, e1.agent_time) == (HALL, "egm-001", "game.bet", T0 - 5, T0)
    assert e1.id != e2.id and len(e1.id) == 36 and e1.prev_hash == GENESIS_HASH and e2.prev_hash == e1.hash


async def test_malformed_draft_raises_and_consumes_no_seq(db: Path) -> None:
    async with Outbox(db, HALL) as ob:
        await ob.append([Draft()])
        with pytest.raises(Malformed):
            await ob.append([Draft(), Draft(data={"amount": 1.5, "currency": "EUR"})])  # floats are refused
        with pytest.raises(Malformed):
            await ob.append([Draft(type="no.such.type")])
        [event] = await ob.append([Draft()])
        assert event.seq == 2
    assert verify_chain(GENESIS_HASH, all_rows(db), first_seq=1)


async def test_mark_acked_moves_forward_only_and_checks_the_hash(db: Path) -> None:
    async with Outbox(db, HALL) as ob:
        events = await ob.append([Draft(agent_time=T0 + i) for i in range(10)])
        assert not await ob.mark_acked(5, events[3].hash)  # wrong hash for seq 5: refused
        assert not await ob.mark_acked(5, "f" * 64)
        assert not await ob.mark_acked(11, events[9].hash)  # beyond what was committed
        assert ob.status()["acked_through"] == 0
        assert await ob.mark_acked(5, events[4].hash)
        assert not await ob.mark_acked(3, events[2].hash)  # backwards: ignored
        assert not await ob.mark_acked(5, events[4].hash)  # repeated: no-op
        status = ob.status()
        assert (status["acked_through"], status["unacked_count"]) == (5, 5)
        assert status["oldest_unacked_agent_time"] == T0 + 5
        assert [e.seq for e in await ob.read_unacked(0, 100)] == [6, 7, 8, 9, 10]
        assert [e.seq for e in await ob.read_unacked(7, 2)] == [8, 9]
    async with Outbox(db, HALL) as ob:  # the watermark is durable
        assert ob.status()["acked_through"] == 5
        assert await ob.mark_acked(10, events[9].hash)
        assert ob.status()["unacked_count"] == 0 and ob.status()["oldest_unacked_agent_time"] is None


async def test_prune_keeps_unacked_young_and_the_newest_event(db: Path) -> None:
    now = T0 + 30 * DAY
    async with Outbox(db, HALL, retention_seconds=7 * 86400) as ob:
        old = await ob.append([Draft(agent_time=T0 + i) for i in range(100)])  # 30 days old
        young = await ob.append([Draft(agent_time=now - DAY + i) for i in range(10)])  # 1 day old
        assert await ob.prune(now) == 0  # nothing acked: nothing goes, however old
        assert await ob.mark_acked(60, old[59].hash)
        assert await ob.prune(now) == 60
        assert await ob.prune(now) == 0
        assert [e.seq for e in await ob.read_unacked(0, 1000)] == list(range(61, 111))
        assert await ob.mark_acked(110, young[-1].hash)
        assert await ob.prune(now) == 40  # seq 101..110 are younger than the retention
        assert await ob.prune(now + 30 * DAY) == 9  # all old now, but the newest row stays for the chain
        assert ob.status()["pruned_through"] == 109
    async with Outbox(db, HALL) as ob:  # the chain continues from the cut after a restart
        [nxt] = await ob.append([Draft(agent_time=now)])
        assert nxt.seq == 111 and nxt.prev_hash == young[-1].hash
    rows = all_rows(db)
    assert [e.seq for e in rows] == [110, 111]
    assert verify_chain(young[-2].hash, rows, first_seq=110)


async def test_prune_stops_at_a_young_event_even_if_later_ones_are_old(db: Path) -> None:
    """Agent clocks can step back: the prefix stops at the first event too young to delete."""
    now = T0 + 30 * DAY
    async with Outbox(db, HALL, retention_seconds=86400) as ob:
        times = [T0, T0, now, T0, T0, now]
        events = await ob.append([Draft(agent_time=t) for t in times])
        assert await ob.mark_acked(6, events[5].hash)
        assert await ob.prune(now) == 2
        assert ob.status()["pruned_through"] == 2


async def test_read_unacked_pages_a_large_backlog(db: Path) -> None:
    """200k events: appended in concurrent chunks, read back in bounded pages, chain checked per page."""
    async with Outbox(db, HALL, max_group=2000, max_pending=20_000) as ob:
        total = 200_000

        async def producer(k: int) -> None:
            for chunk in range(k, total // 1000, 8):
                await ob.append([Draft(device=f"egm-{k:03d}", agent_time=T0 + chunk * 1000 + i) for i in range(1000)])

        await asyncio.gather(*(producer(k) for k in range(8)))
        assert ob.status()["last_seq"] == total
        after, prev, pages = 0, GENESIS_HASH, 0
        while page := await ob.read_unacked(after, 5000):
            assert len(page) <= 5000
            prev = verify_chain(prev, page, first_seq=after + 1)
            after, pages = page[-1].seq, pages + 1
        assert (after, pages) == (total, 40)


async def test_read_unacked_stored_pages_exactly_like_read_unacked(db: Path) -> None:
    """The replicator's read: the same rows under the same paging and ack floor, as the stored bytes."""
    async with Outbox(db, HALL) as ob:
        events = await ob.append([Draft(agent_time=T0 + i) for i in range(12)])
        assert await ob.mark_acked(5, events[4].hash)
        for after, limit in [(0, 100), (0, 3), (4, 2), (5, 1), (7, 2), (11, 5), (12, 5), (40, 5)]:
            decoded = await ob.read_unacked(after, limit)
            stored = await ob.read_unacked_stored(after, limit)
            assert [(s.seq, s.agent_time, s.prev_hash, s.hash, s.body) for s in stored] == [
                (e.seq, e.agent_time, e.prev_hash, e.hash, encode_event(e)) for e in decoded]
        assert [s.seq for s in await ob.read_unacked_stored(0, 100)] == list(range(6, 13))
        with pytest.raises(ValueError):
            await ob.read_unacked_stored(0, 0)


async def test_stop_flushes_pending_appends_and_refuses_new_ones(db: Path) -> None:
    ob = Outbox(db, HALL, linger=0.5)  # a long linger: the appends are still queued when stop() comes
    await ob.start()
    tasks = [asyncio.create_task(ob.append([Draft(agent_time=T0 + i)])) for i in range(50)]
    await asyncio.sleep(0.01)
    await ob.stop()
    assert sorted(t.result()[0].seq for t in tasks) == list(range(1, 51))
    with pytest.raises(OutboxUnavailable):
        await ob.append([Draft()])
    assert len(all_rows(db)) == 50


async def test_cancelled_append_still_commits(db: Path) -> None:
    async with Outbox(db, HALL, linger=0.2) as ob:
        task = asyncio.create_task(ob.append([Draft()]))
        await asyncio.sleep(0.01)
        task.cancel()
        [event] = await ob.append([Draft()])
        assert event.seq == 2
    assert [e.seq for e in all_rows(db)] == [1, 2]


async def test_refuses_a_database_of_another_hall_or_a_broken_file(db: Path, tmp_path: Path) -> None:
    async with Outbox(db, HALL) as ob:
        await ob.append([Draft()])
    with pytest.raises(OutboxUnavailable, match="hall"):
        await Outbox(db, "other-hall").start()
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"this is not a database" * 500)
    with pytest.raises(OutboxUnavailable, match="SQLITE_NOTADB"):
        await Outbox(broken, HALL).start()


async def test_a_stalled_commit_fails_closed_then_recovers(db: Path) -> None:
    """The commit watchdog: a disk that hangs is reported (machines get locked), and the commit's
    late success still lands every event."""
    failures: list[tuple[str, frozenset[str]]] = []
    recovered: list[bool] = []
    ob = Outbox(db, HALL, commit_timeout=0.1, on_fail_closed=lambda r, d: failures.append((r, d)),
                on_recovered=lambda: recovered.append(True))
    await ob.start()
    real_commit = ob._store.commit

    def slow_commit(events: list[Event], checkpoints: object = None) -> list[StoredEvent]:
        import time

        time.sleep(0.4)
        return real_commit(events, checkpoints)

    ob._store.commit = slow_commit  # type: ignore[method-assign]
    [event] = await ob.append([Draft(device="egm-042")])
    assert event.seq == 1
    assert failures and "stalled" in failures[0][0] and failures[0][1] == {"egm-042"}
    assert recovered == [True] and ob.state == "ok"
    await ob.stop()


async def test_a_full_queue_makes_append_wait(db: Path) -> None:
    """Back-pressure: with a slow disk the queue never holds more than max_pending events."""
    async with Outbox(db, HALL, max_group=10, max_pending=30) as ob:
        real_commit = ob._store.commit

        def slow_commit(events: list[Event], checkpoints: object = None) -> list[StoredEvent]:
            import time

            time.sleep(0.01)
            return real_commit(events, checkpoints)

        ob._store.commit = slow_commit  # type: ignore[method-assign]
        peak = 0

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, ob.status()["pending_in_memory"])
                await asyncio.sleep(0.001)

        watcher = asyncio.create_task(watch())
        results = await asyncio.gather(*(ob.append([Draft(agent_time=T0 + i)] * 3) for i in range(60)))
        watcher.cancel()
        assert [r[0].seq for r in results] == list(range(1, 180, 3))
        assert 0 < peak <= 30


def test_wal_and_full_sync_are_on(db: Path) -> None:
    store = OutboxStore(db, HALL)
    store.open()
    conn = store._db()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()
    assert sqlite3.connect(db).execute("SELECT value FROM meta WHERE key='hall'").fetchone()[0] == HALL


def _sealed(count: int, id_prefix: str = "00000000") -> list[Event]:
    from protocols.sync import UnsealedEvent, seal

    events, prev = [], GENESIS_HASH
    for i in range(count):
        event = seal(UnsealedEvent(seq=i + 1, id=f"{id_prefix}-0000-4000-8000-{i:012d}", hall=HALL, device="egm-001",
                                   type="game.loss", device_time=None, agent_time=T0 + i, data={}), prev)
        events.append(event)
        prev = event.hash
    return events


def test_a_retried_commit_skips_what_an_ambiguous_commit_already_stored(db: Path) -> None:
    """After an fsync error the outcome of a commit is unknown; the retry reopens the file and must
    neither duplicate nor fork what did land."""
    events = _sealed(8)
    store = OutboxStore(db, HALL)
    store.commit(events[:5])  # "landed", but the writer never learnt it
    store = OutboxStore(db, HALL)  # the retry reopens
    store.commit(events[3:])  # holds 4 and 5 again
    assert [e.seq for e in store.read(0, 100)] == list(range(1, 9))
    store.close()
    fork = _sealed(9, id_prefix="11111111")  # the same seqs with other content: a different chain
    with pytest.raises(ChainMismatch, match="stored seq 8 differs"):
        OutboxStore(db, HALL).commit(fork[5:])
    with pytest.raises(ChainMismatch, match="ends at seq 8"):
        OutboxStore(db, HALL).commit(_sealed(12)[10:])  # a hole: seq 9 and 10 were never stored


async def test_takes_the_normalizers_event_drafts(db: Path) -> None:
    from agent.pipeline.drafts import EventDraft

    async with Outbox(db, HALL) as ob:
        [event] = await ob.append([EventDraft("egm-003", "bill.accepted", None, T0,
                                              {"amount": 500, "currency": "EUR"})])
    assert (event.seq, event.device, event.type, event.data["amount"]) == (1, "egm-003", "bill.accepted", 500)


async def test_checkpoints_commit_with_their_events_and_survive_a_restart(db: Path) -> None:
    async with Outbox(db, HALL) as box:
        await box.append([Draft()], checkpoints={"egm-001": b"state-1"})
        await asyncio.gather(box.append([Draft()], checkpoints={"egm-001": b"state-2"}),
                             box.append([Draft(device="egm-002")], checkpoints={"egm-002": b"other"}))
        await box.append([], checkpoints={"egm-003": b"quiet snapshot"})  # no events, state still moves
        assert box.last_seq == 3
    async with Outbox(db, HALL) as box:
        assert await box.checkpoints() == {"egm-001": b"state-2", "egm-002": b"other", "egm-003": b"quiet snapshot"}
        assert box.last_seq == 3
    # the read-only inspection used by `hall-agent outbox` sees the same file
    from agent.outbox import inspect_outbox

    info = inspect_outbox(db)
    assert info["last_seq"] == 3 and info["unacked_count"] == 3 and info["unacked_by_type"] == {"game.bet": 3}


async def test_the_newest_events_are_sent_from_memory_exactly_as_the_file_holds_them(db: Path) -> None:
    """Live, the replicator reads events milliseconds after their commit: those come from the outbox's
    memory of its newest rows, not from the file, and are byte for byte what a fresh store (after a
    restart) reads from the file; older, acked and pruned rows agree too."""
    from agent.outbox.outbox import RECENT_EVENTS

    total = RECENT_EVENTS + 2004   # the memory holds seq 2005 on; older unacked ones are read from the file
    async with Outbox(db, HALL) as ob:
        events = [e for i in range(0, total, 100)
                  for e in await ob.append([Draft(agent_time=T0 + i + j) for j in range(100)])]
        assert len(events) == total
        assert await ob.mark_acked(1200, events[1199].hash)
        store = ob._store
        assert await ob._call(store.prune_chunk, T0 + 1000, 10_000) == 1000   # acked and older than the cutoff
        statements: list[str] = []
        await ob._call(lambda: store._db().set_trace_callback(statements.append))   # the store's own thread
        fresh = OutboxStore(db, HALL)
        fresh.open()
        for after, limit in [(total - 10, 100), (total, 5), (total + 7, 5), (3000, 500), (1500, 3000), (1200, 1),
                             (total - RECENT_EVENTS - 1, 3), (total - RECENT_EVENTS, 3), (900, 10), (0, 50)]:
            mine = await ob.read_unacked_stored(after, limit)
            theirs = fresh.read_stored(max(after, 1200), limit)
            assert [(s.seq, s.agent_time, s.prev_hash, s.hash, s.body) for s in mine] == [
                (s.seq, s.agent_time, s.prev_hash, s.hash, s.body) for s in theirs], (after, limit)
            assert [s.body for s in mine] == [encode_event(e) for e in events[max(after, 1200):][:limit]]
        fresh.close()
        # only the five reads starting below the memory's first row (seq 2005) went to the file
        reads = [s for s in statements if "FROM events" in s]
        assert len(reads) == 5, reads
    async with Outbox(db, HALL) as ob:   # restarted: nothing in memory, the file is read (and checked)
        statements.clear()
        await ob._call(lambda: ob._store._db().set_trace_callback(statements.append))
        assert [s.seq for s in await ob.read_unacked_stored(total - 3, 10)] == [total - 2, total - 1, total]
        assert len([s for s in statements if "FROM events" in s]) == 1
