"""Standing data over a real Mosquitto: central's signed hall settings reach the agent, which keeps the
newest on disk, refuses older or forged ones, and gets a change made while it was offline."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.outbox import Outbox
from agent.replicator import Replicator, ReplicatorConfig
from agent.standing import StandingStore
from central.ingest import Ingestor
from central.repos import Repositories
from central.service import IngestService, ServiceConfig
from central.standing import StandingPublisher, document
from central.store import open_sqlite
from mqttlink import MqttLink
from protocols.sync import generate_private_key, topic
from protocols.sync.gamingday import DayRule
from protocols.sync.keys import Ed25519PrivateKey
from protocols.sync.standing import StandingData, encode_standing
from tests import waits
from tests.central.builders import FakeHall

HALL = "hall-sd"
FAST = ReplicatorConfig(batch_max=200, linger=0.02, window_events=1000, ack_timeout=2.0, ack_timeout_max=4.0)
KYIV = DayRule("Europe/Kyiv", "06:00")


@dataclass
class Rig:
    tmp: Path
    broker: object
    fake: FakeHall
    central_key: Ed25519PrivateKey
    store: Repositories
    service: IngestService
    publisher: StandingPublisher
    applied: list[StandingData] = field(default_factory=list)
    agent: tuple[Outbox, Replicator, StandingStore] | None = None

    async def start_agent(self) -> StandingStore:
        outbox = Outbox(self.tmp / "outbox.db", HALL)
        await outbox.start()
        replicator = Replicator(outbox, HALL, self.fake.key, self.central_key.public_key(), self.broker.url,
                                data_dir=self.tmp, config=FAST)
        standing = StandingStore(HALL, self.central_key.public_key(), self.tmp / "standing.json", self.applied.append)
        standing.load()
        replicator.standing = standing.on_message
        await replicator.start()
        self.agent = (outbox, replicator, standing)
        return standing

    async def stop_agent(self) -> None:
        assert self.agent is not None
        outbox, replicator, _ = self.agent
        await replicator.stop()
        await outbox.stop()
        self.agent = None


async def until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    await waits.until(check, what, timeout=timeout)


@pytest.fixture
async def rig(tmp_path: Path, mosquitto) -> AsyncIterator[Rig]:
    fake = FakeHall(HALL, seed=3, devices=2)
    central_key = generate_private_key()
    store = await open_sqlite(tmp_path / "central.db")
    await store.halls.add_hall(HALL, fake.public_pem, now=1)
    service = IngestService(store, Ingestor(store, central_key), mosquitto.url, ServiceConfig(client_id="central-sd"))
    publisher = StandingPublisher(store, central_key, service.publish_retained, interval=0.2)
    service.on_online = publisher.wake
    await service.start()
    assert await service.link.wait_connected(10)
    publisher.start()
    r = Rig(tmp_path, mosquitto, fake, central_key, store, service, publisher)
    try:
        yield r
    finally:
        if r.agent is not None:
            await r.stop_agent()
        await publisher.stop()
        await service.stop()
        await store.close()


async def test_settings_reach_the_agent_and_survive_its_restart(rig: Rig) -> None:
    standing = await rig.start_agent()
    await until(lambda: standing.current is not None, "the hall's document on connect")
    assert standing.current is not None and standing.current.version == 0
    await rig.store.halls.set_day_rule(HALL, KYIV, now=2)
    assert await rig.publisher.publish(HALL)     # what PUT /halls/{hall}/settings does after the change
    await until(lambda: standing.current is not None and standing.current.version == 1, "version 1 applied")
    assert standing.current.day_rule == KYIV and rig.applied[-1].day_rule == KYIV
    saved = rig.tmp / "standing.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    await rig.stop_agent()
    rig.applied.clear()
    restarted = StandingStore(HALL, rig.central_key.public_key(), saved, rig.applied.append)
    loaded = restarted.load()                    # HQ offline: the hall still knows its day
    assert loaded is not None and loaded.version == 1 and [d.day_rule for d in rig.applied] == [KYIV]


async def test_an_older_replayed_or_forged_document_is_refused(rig: Rig) -> None:
    old_record = await rig.store.halls.get_hall(HALL)
    assert old_record is not None
    old = encode_standing(document(old_record, 5), rig.central_key)   # version 0, validly signed
    await rig.store.halls.set_day_rule(HALL, KYIV, now=2)
    standing = await rig.start_agent()
    await until(lambda: standing.current is not None and standing.current.version == 1, "version 1")
    async def ignore(_: object) -> None:
        return None

    link = MqttLink(rig.broker.url, client_id="attacker", handler=ignore)
    task = asyncio.create_task(link.run())
    try:
        assert await link.wait_connected(10)
        await link.publish(topic(HALL, "standing"), old, qos=1, retain=True)   # a replay of version 0
        forged_doc = StandingData(v=1, hall=HALL, version=9, issued_at=6, timezone="UTC", gaming_day_start="00:00")
        await link.publish(topic(HALL, "standing"), encode_standing(forged_doc, generate_private_key()), qos=1)
        await until(lambda: standing.refused >= 2, "both refused")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert standing.current.version == 1 and standing.current.day_rule == KYIV
    versions = [d.version for d in rig.applied]
    assert versions[-1] == 1 and versions == sorted(versions)   # never turned back


async def test_a_change_made_while_the_agent_was_offline_arrives_when_it_connects(rig: Rig) -> None:
    standing = await rig.start_agent()
    await until(lambda: standing.current is not None, "first document")
    await rig.stop_agent()
    await rig.store.halls.set_day_rule(HALL, KYIV, now=3)   # e.g. `hall-central halls set` from another process
    await until(lambda: rig.publisher.published.get(HALL) == 1, "the periodic check published it")
    standing = await rig.start_agent()
    await until(lambda: standing.current is not None and standing.current.version == 1, "version 1 on connect")
    assert rig.applied[-1].day_rule == KYIV
