"""IngestService's own rules (without a broker): per-hall queues bounded in bytes, garbage contained."""

from __future__ import annotations

import asyncio

from central.ingest import Ingestor
from central.service import IngestService, ServiceConfig
from central.store import SqliteStore
from mqttlink import BrokerUrl, Received
from protocols.sync import generate_private_key, topic


async def test_a_hall_flooding_its_queue_is_cut_off_in_bytes_not_memory(store: SqliteStore) -> None:
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


async def test_messages_on_bad_topics_share_one_contained_worker(store: SqliteStore) -> None:
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
