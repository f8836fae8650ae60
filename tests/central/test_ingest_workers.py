"""Several ingest workers on one database (issue 14): a shared subscription hands batch n to one worker
and n+1 to another, so the one holding n+1 must not ask the hall for batch n while its neighbour is
committing it. It keeps n+1 buffered for ``gap_grace`` and re-reads the stored end; only a gap still
open after the grace becomes a resend request."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from central.ingest import Ingestor, IngestOutcome, Verified
from central.repos import Repositories
from central.service import IngestService, ServiceConfig
from central.store import open_store, pg_db
from mqttlink import MqttLink, Received
from protocols.sync import decode_ack, topic
from protocols.sync.keys import Ed25519PrivateKey
from tests import waits

from .builders import FakeHall
from .checks import ack_of, hall_totals, resend_of
from .conftest import POSTGRES_ONLY, register


def resends(*outcomes: IngestOutcome) -> list[Any]:
    return [p for o in outcomes for p in o.publish if p.topic.endswith("/resend")]


async def test_a_batch_ahead_of_one_another_worker_is_storing_waits_and_is_stored_without_a_resend(
        store: Repositories, central_key: Ed25519PrivateKey) -> None:
    hall = FakeHall("hall-01", seed=21)
    await register(store, hall)
    hall.play(90)
    (_, first_last, first), (_, _, second) = hall.batches(45)[:2]
    a, b = (Ingestor(store, central_key, gap_grace=1.0) for _ in range(2))
    early = await b.handle(hall.topic, second)          # worker B got n+1 before A stored n
    assert (early.status, early.buffered, early.recheck) == ("gap", True, True)
    assert resends(early) == [] and early.stored == 0
    on_time = await a.handle(hall.topic, first)         # worker A stores n and acks n
    assert ack_of(on_time, central_key, hall.hall).acked_through_seq == first_last
    later = await b.recheck(hall.hall, final=False)     # B looks again: the end moved, n+1 fits
    assert later.stored == len(hall.events) - first_last and not later.recheck
    assert ack_of(later, central_key, hall.hall).acked_through_seq == len(hall.events)
    assert resends(early, on_time, later) == []
    assert await hall_totals(store, hall.hall) == hall.total
    assert await store.ingest.integration_log(kind="resend") == []
    assert len(await store.ingest.events(hall=hall.hall, limit=1000)) == len(hall.events)


async def test_a_gap_nobody_closes_is_asked_for_once_the_grace_is_over(
        store: Repositories, central_key: Ed25519PrivateKey) -> None:
    hall = FakeHall("hall-01", seed=22)
    await register(store, hall)
    hall.play(90)
    (_, _, one), (two_first, two_last, _), (_, _, three) = hall.batches(30)[:3]
    a, b = (Ingestor(store, central_key, gap_grace=1.0) for _ in range(2))
    await a.handle(hall.topic, one)
    held = await b.handle(hall.topic, three)             # batch 2 was lost on the way
    assert held.recheck and resends(held) == []
    still = await b.recheck(hall.hall, final=False)
    assert still.recheck and resends(still) == [] and still.stored == 0
    over = await b.recheck(hall.hall, final=True)
    request = resend_of(over, central_key, hall.hall)
    assert (request.from_seq, request.to_seq) == (two_first, two_last)
    assert not over.recheck
    (entry,) = await store.ingest.integration_log(kind="resend")
    assert f"{two_first}..{two_last}" in entry.detail
    resent = await a.handle(hall.topic, hall.batch(two_first, len(hall.events)))   # the hall sends 2 and 3
    assert ack_of(resent, central_key, hall.hall).acked_through_seq == len(hall.events)
    assert await hall_totals(store, hall.hall) == hall.total
    assert (await b.recheck(hall.hall, final=True)).stored == 0   # B's copy of 3 is dropped, not stored twice
    assert len(await store.ingest.events(hall=hall.hall, limit=1000)) == len(hall.events)


async def test_two_services_on_one_shared_subscription_store_a_hall_exactly_with_no_resend(
        store: Repositories, central_key: Ed25519PrivateKey, mosquitto: Any) -> None:
    """Two ingest processes' services on one broker's shared subscription (Mosquitto hands them one
    hall's batches in turn): everything is stored once, acked to the end, and no resend is asked."""
    hall = FakeHall("hall-01", seed=23)
    await register(store, hall)
    hall.play(2000)
    services = [IngestService(store, Ingestor(store, central_key, gap_grace=2.0), mosquitto.url,
                              ServiceConfig(client_id=f"central-w{i}")) for i in range(2)]
    acks: list[int] = []
    resent: list[bytes] = []

    async def agent_side(msg: Received) -> None:
        if msg.topic == topic(hall.hall, "acks"):
            acks.append(decode_ack(msg.payload, central_key.public_key(), expect_hall=hall.hall).acked_through_seq)
        elif msg.topic == topic(hall.hall, "resend"):
            resent.append(msg.payload)

    agent = MqttLink(mosquitto.url, client_id="agent-hall-01", handler=agent_side,
                     subscriptions=[topic(hall.hall, "acks"), topic(hall.hall, "resend")])
    tasks = [asyncio.create_task(agent.run())]
    try:
        for service in services:
            await service.start()
        await waits.until(lambda: agent.connected and all(s.link.connected for s in services),
                          "the agent and both workers to connect")
        for _, _, payload in hall.batches(40):
            await agent.publish(hall.topic, payload, qos=1)
        await waits.until(lambda: acks and max(acks) == len(hall.events), "every event acked", timeout=60)
        assert resent == []
        assert await hall_totals(store, hall.hall) == hall.total
        assert len(await store.ingest.events(hall=hall.hall, limit=10_000)) == len(hall.events)
        # both took part: a worker may store all its batches after a recheck (its neighbour committed first)
        assert all(s.stats["events_stored"] > 0 for s in services), [dict(s.stats) for s in services]
    finally:
        for service in services:
            await service.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_batches_held_after_the_resend_are_stored_when_another_worker_stores_the_resent_range(
        store: Repositories, central_key: Ed25519PrivateKey, mosquitto: Any) -> None:
    """The resent range may reach another worker: the one holding the later batch keeps re-reading the
    stored end after its request and stores what it holds, instead of leaving it until the hall's ack
    timeout sends it again (bench/sync_throughput.py --workers 4 stalled 10 s at its last batch so)."""
    hall = FakeHall("hall-01", seed=24)
    await register(store, hall)
    hall.play(90)
    (_, _, one), (_, two_last, two), (three_first, _, _) = hall.batches(30)[:3]
    three = hall.batch(three_first, len(hall.events))        # the rest
    a = Ingestor(store, central_key, gap_grace=0.2)
    b = IngestService(store, Ingestor(store, central_key, gap_grace=0.2), mosquitto.url,
                      ServiceConfig(client_id="central-w1"))
    await a.handle(hall.topic, one)
    held = await b.ingestor.handle(hall.topic, three)     # batch 2 was lost on the way to anyone
    assert held.recheck
    rechecking = asyncio.create_task(b._recheck(hall.hall, held.chain_end))
    try:
        resent: list[Any] = []

        async def asked() -> bool:
            resent[:] = await store.ingest.integration_log(kind="resend")
            return bool(resent)

        await waits.until(asked, "central to ask for batch 2")
        stored_two = await a.handle(hall.topic, two)        # the hall resends 2; worker A gets it
        assert ack_of(stored_two, central_key, hall.hall).acked_through_seq == two_last

        async def all_stored() -> bool:
            return len(await store.ingest.events(hall=hall.hall, limit=1000)) == len(hall.events)

        await waits.until(all_stored, "worker B to store the batch it held")
        await asyncio.wait_for(rechecking, 10)
        assert await hall_totals(store, hall.hall) == hall.total
        assert len(resent) == 1
    finally:
        rechecking.cancel()
        await asyncio.gather(rechecking, return_exceptions=True)


@contextlib.asynccontextmanager
async def other_process(store: Repositories, backend: str,
                        request: pytest.FixtureRequest) -> AsyncIterator[Repositories]:
    """The repositories a second central process has on the same database: on PostgreSQL its own pool
    and notification connection (what one process signals reaches the other only through the server);
    a SQLite file has one process, so there the other worker shares the store."""
    if backend == "sqlite":
        yield store
        return
    other = await open_store(request.getfixturevalue("pg_shared"))
    try:
        yield other
    finally:
        await other.close()


@POSTGRES_ONLY   # notifications between processes; one process serves a SQLite file (the service tests
# cover its in-process wake-up)
async def test_a_worker_waiting_for_the_chain_end_is_woken_by_the_commit_of_another_process(
        store: Repositories, central_key: Ed25519PrivateKey, backend: str, request: pytest.FixtureRequest) -> None:
    """Not by re-reading every few tens of ms: the other process's commit wakes it (NOTIFY), and only a
    commit of a hall somebody waits on notifies anyone (PostgreSQL serializes notifying commits)."""
    url = request.getfixturevalue("pg_shared")
    first, second = FakeHall("hall-01", seed=25), FakeHall("hall-02", seed=28)
    for hall in (first, second):
        await register(store, hall)
        hall.play(90)
    (_, one_last, one), (_, _, two), (_, _, three) = first.batches(30)[:3]
    heard: list[str] = []
    listener = await asyncpg.connect(url)
    await listener.add_listener("hallsync_chain", lambda *args: heard.append(args[3]))

    async def registered(hall: str) -> bool:
        return bool(await listener.fetchval("SELECT count(*) FROM chain_waits WHERE hall = $1", hall))

    try:
        async with other_process(store, backend, request) as other:
            a = Ingestor(store, central_key)
            await a.handle(first.topic, one)                        # nobody waits: nobody is told
            waiting = asyncio.create_task(other.ingest.wait_chain_moved(first.hall, one_last, 120.0))
            await waits.until(lambda: registered(first.hall), "the waiter to register")
            assert not waiting.done()
            await a.handle(first.topic, two)
            assert await asyncio.wait_for(waiting, 30), "woken by the commit, long before its own timeout"
            await a.handle(first.topic, three)                      # the wait was used up: nobody is told
            assert await listener.fetchval("SELECT count(*) FROM chain_waits") == 0
            # a wait on the second hall, then its commit: notifications come in commit order, so any for
            # the first hall's other commits would be heard before this one
            waiting = asyncio.create_task(other.ingest.wait_chain_moved(second.hall, 0, 120.0))
            await waits.until(lambda: registered(second.hall), "the second waiter to register")
            await a.handle(second.topic, second.batches(30)[0][2])
            assert await asyncio.wait_for(waiting, 30)
            await waits.until(lambda: second.hall in heard, "the second hall's notification")
            assert heard == [first.hall, second.hall]
    finally:
        await listener.close()


async def test_a_worker_asks_the_others_who_holds_a_seq(
        store: Repositories, backend: str, request: pytest.FixtureRequest) -> None:
    async with other_process(store, backend, request) as other:
        assert not await other.ingest.ask_holders("hall-01", 5, 0.2)      # nobody answers: not held
        stop = await store.ingest.answer_holders(lambda hall, seq: (hall, seq) == ("hall-01", 5))
        try:
            assert await other.ingest.ask_holders("hall-01", 5, 10.0)
            assert not await other.ingest.ask_holders("hall-01", 6, 0.2)
            assert not await other.ingest.ask_holders("hall-02", 5, 0.2)
        finally:
            stop()
        assert not await other.ingest.ask_holders("hall-01", 5, 0.2)


class _GatedIngestor(Ingestor):
    """An ingest worker that verifies nothing until the test opens the gate: a worker whose queue is
    long (HQ loaded), holding a batch it has received but not stored yet."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = asyncio.Event()

    async def prepare(self, topic_name: str, payload: bytes) -> IngestOutcome | Verified:
        await self.gate.wait()
        return await super().prepare(topic_name, payload)


@contextlib.asynccontextmanager
async def _slow_and_quick(store: Repositories, other: Repositories, central_key: Ed25519PrivateKey,
                          url: Any) -> AsyncIterator[tuple[_GatedIngestor, IngestService, IngestService]]:
    """Two started ingest services: A (on ``store``) verifies nothing until its gate opens, B (on ``other``)
    stores at once, both with a 0.3 s gap grace. Stopped (A's gate opened) when the block ends."""
    slow = _GatedIngestor(store, central_key, gap_grace=0.3)
    a = IngestService(store, slow, url, ServiceConfig(client_id="central-w0"))
    b = IngestService(other, Ingestor(other, central_key, gap_grace=0.3), url, ServiceConfig(client_id="central-w1"))
    try:
        await a.start()
        await b.start()
        yield slow, a, b
    finally:
        slow.gate.set()
        await a.stop()
        await b.stop()


async def test_no_resend_is_asked_while_another_worker_holds_the_missing_batch(
        store: Repositories, central_key: Ed25519PrivateKey, mosquitto: Any, backend: str,
        request: pytest.FixtureRequest) -> None:
    """Issue 14: a gap is never declared because another worker holds the previous batch, however long
    that worker takes to store it (many_halls --workers 2 at 100 halls asked 10 resends so)."""
    hall = FakeHall("hall-01", seed=26)
    await register(store, hall)
    hall.play(90)
    (_, _, one), (_, _, two), (three_first, _, _) = hall.batches(30)[:3]
    three = hall.batch(three_first, len(hall.events))
    await Ingestor(store, central_key).handle(hall.topic, one)
    async with other_process(store, backend, request) as other:
        async with _slow_and_quick(store, other, central_key, mosquitto.url) as (slow, a, b):
            await a._on_message(Received(hall.topic, two, False, 1))     # A holds batch 2, not yet stored
            await b._on_message(Received(hall.topic, three, False, 1))   # B gets 3: a gap behind A's batch
            await waits.until(lambda: b.stats["gap_held_by_peer"] >= 2, "B to find its gap held, grace after grace")
            assert await store.ingest.integration_log(kind="resend") == []
            slow.gate.set()

            async def all_stored() -> bool:
                return len(await store.ingest.events(hall=hall.hall, limit=1000)) == len(hall.events)

            await waits.until(all_stored, "A to store 2 and B then 3")
            assert await hall_totals(store, hall.hall) == hall.total
            assert await store.ingest.integration_log(kind="resend") == []


async def test_the_resend_is_asked_once_no_worker_holds_the_missing_batch(
        store: Repositories, central_key: Ed25519PrivateKey, mosquitto: Any, backend: str,
        request: pytest.FixtureRequest) -> None:
    """The other side: a worker that holds only later batches of the hall does not hold up the request."""
    hall = FakeHall("hall-01", seed=27)
    await register(store, hall)
    hall.play(120)
    (_, _, one), (two_first, two_last, _), (_, _, three), (_, _, four) = hall.batches(30)[:4]
    await Ingestor(store, central_key).handle(hall.topic, one)
    async with other_process(store, backend, request) as other:
        async with _slow_and_quick(store, other, central_key, mosquitto.url) as (_, a, b):
            await a._on_message(Received(hall.topic, four, False, 1))    # A holds 4; batch 2 reached nobody
            await b._on_message(Received(hall.topic, three, False, 1))

            async def asked() -> list[Any]:
                return await store.ingest.integration_log(kind="resend")

            (entry,) = await waits.until(asked, "central to ask the hall for batch 2")
            assert f"{two_first}..{two_last}" in entry.detail
            assert b.stats["gap_held_by_peer"] == 0


class _ListenerCase:
    """A hall whose first batch is stored and a second process whose notification connection listens."""

    def __init__(self, hall: FakeHall, one_last: int, two: bytes, admin: Any, other: Repositories,
                 ingestor: Ingestor) -> None:
        self.hall, self.one_last, self.two, self.admin, self.other, self.ingestor = (
            hall, one_last, two, admin, other, ingestor)

    async def listening(self) -> list[int]:
        """The server pids of the notification connections (found by their application_name)."""
        return [r[0] for r in await self.admin.fetch("SELECT pid FROM pg_stat_activity WHERE application_name = $1"
                                                      " AND datname = current_database()",
                                                      pg_db.LISTEN_APPLICATION_NAME)]

    async def commit_wakes_a_waiter(self, before_commit: Any = None) -> None:
        """The other process waits for the hall's end to move; this one stores the second batch."""
        waiting = asyncio.create_task(self.other.ingest.wait_chain_moved(self.hall.hall, self.one_last, 120.0))

        async def registered() -> bool:
            return bool(await self.admin.fetchval("SELECT count(*) FROM chain_waits WHERE hall = $1", self.hall.hall))

        await waits.until(registered, "the waiter to register")
        if before_commit is not None:
            await before_commit()
        await self.ingestor.handle(self.hall.topic, self.two)
        assert await asyncio.wait_for(waiting, 30)   # woken by the notification, not its 120 s timeout


@contextlib.asynccontextmanager
async def _listener_case(store: Repositories, central_key: Ed25519PrivateKey, backend: str,
                         request: pytest.FixtureRequest, seed: int) -> AsyncIterator[_ListenerCase]:
    hall = FakeHall("hall-01", seed=seed)
    await register(store, hall)
    hall.play(60)
    (_, one_last, one), (_, _, two) = hall.batches(30)[:2]
    admin = await asyncpg.connect(request.getfixturevalue("pg_shared"))
    try:
        async with other_process(store, backend, request) as other:
            a = Ingestor(store, central_key)
            await a.handle(hall.topic, one)
            assert not await other.ingest.wait_chain_moved(hall.hall, one_last, 0.2)   # listening now; timed out
            yield _ListenerCase(hall, one_last, two, admin, other, a)
    finally:
        await admin.close()


@POSTGRES_ONLY   # notifications between processes; one process serves a SQLite file (the service tests
# cover its in-process wake-up)
async def test_a_lost_notification_connection_is_replaced_and_waiters_are_woken_again(
        store: Repositories, central_key: Ed25519PrivateKey, backend: str, request: pytest.FixtureRequest) -> None:
    """The server drops the listening connection (a restart, a failover, an idle-session killer): the
    next wait listens again on a new one, and until then a wait only lasts its timeout."""
    async with _listener_case(store, central_key, backend, request, seed=29) as case:
        (pid,) = await waits.until(case.listening, "the notification connection")
        await case.admin.execute("SELECT pg_terminate_backend($1)", pid)
        await waits.until(lambda: case.other.database._listening is None,  # type: ignore[attr-defined]
                          "the connection's loss to be noticed")

        async def a_new_one() -> None:
            assert await waits.until(case.listening, "a new notification connection") != [pid]

        await case.commit_wakes_a_waiter(a_new_one)


@POSTGRES_ONLY
async def test_a_notification_connection_that_stops_answering_is_replaced(
        store: Repositories, central_key: Ed25519PrivateKey, backend: str, request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A network cut or a frozen server leaves the listening connection open but silent (no TCP
    keepalive tells): the process's probe finds it out, a new connection listens, and commits wake
    waiters again. The silence is the listening backend stopped with SIGSTOP."""
    monkeypatch.setattr(pg_db, "LISTEN_PROBE_SECONDS", 0.2)
    monkeypatch.setattr(pg_db, "LISTEN_PROBE_TIMEOUT", 0.5)
    stopped: int | None = None
    try:
        async with _listener_case(store, central_key, backend, request, seed=31) as case:
            (stopped,) = await waits.until(case.listening, "the notification connection")
            os.kill(stopped, signal.SIGSTOP)

            async def replaced() -> list[int]:
                return [pid for pid in await case.listening() if pid != stopped]

            await waits.until(replaced, "a new notification connection", timeout=30)
            await case.commit_wakes_a_waiter()
    finally:
        if stopped is not None:
            os.kill(stopped, signal.SIGCONT)
