"""Several ingest workers on one database (issue 14): a shared subscription hands batch n to one worker
and n+1 to another, so the one holding n+1 must not ask the hall for batch n while its neighbour is
committing it. It keeps n+1 buffered for ``gap_grace`` and re-reads the stored end; only a gap still
open after the grace becomes a resend request."""

from __future__ import annotations

import asyncio
from typing import Any

from central.ingest import Ingestor, IngestOutcome
from central.repos import Repositories
from central.service import IngestService, ServiceConfig
from mqttlink import MqttLink, Received
from protocols.sync import decode_ack, topic
from protocols.sync.keys import Ed25519PrivateKey
from tests import waits

from .builders import FakeHall
from .checks import ack_of, hall_totals, resend_of
from .conftest import register


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
    rechecking = asyncio.create_task(b._recheck(hall.hall))
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
