"""IngestService's own rules (without a broker): per-hall queues bounded in bytes, garbage contained."""

from __future__ import annotations

import asyncio

from central.ingest import Ingestor
from central.repos import Repositories
from central.service import IngestService, ServiceConfig
from mqttlink import BrokerUrl, Received
from protocols.sync import generate_private_key, topic
from tests import waits

from .builders import FakeHall
from .conftest import register


async def test_a_hall_flooding_its_queue_is_cut_off_in_bytes_not_memory(store: Repositories) -> None:
    service = IngestService(store, Ingestor(store, generate_private_key()), BrokerUrl("127.0.0.1", 1),
                            ServiceConfig(per_hall_bytes=1000))
    big = b"x" * 600
    # no await between the calls: the hall's worker has not taken anything yet
    await service._on_message(Received(topic("h1", "batches"), big, False, 1))
    await service._on_message(Received(topic("h1", "batches"), big, False, 1))  # 1200 > 1000: dropped
    await service._on_message(Received(topic("h2", "batches"), big, False, 1))  # another hall: its own budget
    assert service.stats["dropped_overload"] == 1
    assert service._queues["h1"].qsize() == 1 and service._queues["h2"].qsize() == 1
    await service.stop()


async def test_messages_on_bad_topics_share_one_contained_worker(store: Repositories) -> None:
    service = IngestService(store, Ingestor(store, generate_private_key()), BrokerUrl("127.0.0.1", 1))
    for i in range(50):
        await service._on_message(Received(f"hallsync/v1/halls/{'x' * 70}{i}/batches", b"{}", False, 1))
    assert len(service._workers) == 1
    for _ in range(100):
        if service.stats["format_error"] == 50:
            break
        await asyncio.sleep(0.02)
    assert service.stats["format_error"] == 50
    await service.stop()


async def _until(condition, what: str, timeout: float = 30.0) -> None:
    await waits.until(condition, what, timeout=timeout, interval=0.02)


async def test_garbage_on_thousands_of_unregistered_hall_topics_writes_a_bounded_log(store: Repositories) -> None:
    """Issue 16: garbage on 5,000 invented hall topics wrote 5,000 rows. Every topic naming no registered
    hall shares one budget (20 rows a minute here), the rest is counted; a real hall keeps its own."""
    ingestor = Ingestor(store, generate_private_key(), log_burst=20)
    service = IngestService(store, ingestor, BrokerUrl("127.0.0.1", 1))
    real = FakeHall("hall-real", seed=3)
    await register(store, real)
    ghosts = [f"ghost-{i}" for i in range(1500)]
    for hall in ghosts:
        await service._on_message(Received(topic(hall, "status"), b'{"online":false,"session":1}', False, 1))
        await service._on_message(Received(topic(hall, "command-results"), b"{}", False, 1))
        await service._on_message(Received(topic(hall, "batches"), b"{}", False, 1))
    await _until(lambda: service.stats["rejected"] == len(ghosts), "the ghost batches to be judged")
    rows = await store.ingest.integration_log(limit=10_000)
    assert len(rows) == 20
    assert {r.kind for r in rows} == {"rejected"} and all("not registered" in r.detail for r in rows)
    assert all(r.hall in ghosts and r.hall in r.detail for r in rows)   # each row still names its hall
    assert ingestor.log_rows_suppressed == 3 * len(ghosts) - 20
    await service._on_message(Received(topic(real.hall, "status"), b"not json", False, 1))
    (newest,) = await store.ingest.integration_log(limit=1)
    assert (newest.kind, newest.hall) == ("format_error", real.hall)
    await service.stop()
