"""Outbox → replicator → real Mosquitto → central ingest service → SQLite: exactly once, through failures.

In one process (the whole-hall tests with separate processes and SIGKILL live in test_hall.py): the
agent's real outbox and replicator, a real broker (killed and restarted), central's real ingest
service and store (stopped and started again). What a user checks: central's GGR per device equals
what the hall recorded, every event is acked, nothing is counted twice.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.outbox import Outbox
from agent.pipeline import EventDraft
from agent.replicator import Replicator, ReplicatorConfig
from central.ingest import Ingestor
from central.repos import Repositories
from central.service import IngestService, ServiceConfig
from central.store import open_sqlite
from mqttlink import MqttLink, Received
from protocols.sync import (
    MAX_SESSION_JUMP,
    VERSION,
    Ack,
    Status,
    decode_event,
    encode_ack,
    encode_batch,
    encode_status,
    generate_private_key,
    topic,
)
from protocols.sync.keys import Ed25519PrivateKey
from protocols.sync.money import ZERO, Contribution
from tests.central.builders import FakeHall

HALL = "hall-e2e"
FAST = ReplicatorConfig(batch_max=200, linger=0.02, window_events=1000, ack_timeout=2.0, ack_timeout_max=4.0)


def drafts_of(fake: FakeHall, count: int) -> list[EventDraft]:
    return [EventDraft(e.device, e.type, e.device_time, e.agent_time, dict(e.data)) for e in fake.play(count)]


@dataclass
class Rig:
    tmp: Path
    broker: object
    fake: FakeHall
    central_key: Ed25519PrivateKey
    outbox: Outbox
    replicator: Replicator
    store: Repositories
    service: IngestService | None = None

    async def start_central(self) -> None:
        self.service = IngestService(self.store, Ingestor(self.store, self.central_key), self.broker.url,
                                     ServiceConfig(client_id="central-test"))
        await self.service.start()
        assert await self.service.link.wait_connected(10)

    async def stop_central(self) -> None:
        assert self.service is not None
        await self.service.stop()
        self.service = None

    async def all_acked(self, timeout: float = 60.0) -> None:
        for _ in range(int(timeout / 0.05)):
            if 0 < self.outbox.last_seq == self.outbox.acked_through:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"not all acked: {self.outbox.acked_through} of {self.outbox.last_seq}")

    async def central_totals(self) -> dict[str, Contribution]:
        rows = await self.store.reports.ggr("device")
        return {r.key: Contribution(bets=r.bets, wins=r.wins, rounds=r.rounds, cash_in=r.cash_in,
                                    cash_out=r.cash_out) for r in rows if (r.bets, r.wins, r.rounds, r.cash_in,
                                                                           r.cash_out) != (0, 0, 0, 0, 0)}

    def truth(self) -> dict[str, Contribution]:
        return {d: c for d, c in self.fake.per_device.items() if c != ZERO}


@pytest.fixture
async def rig(tmp_path: Path, mosquitto) -> AsyncIterator[Rig]:
    fake = FakeHall(HALL, seed=7, devices=5)
    central_key = generate_private_key()
    store = await open_sqlite(tmp_path / "central.db")
    await store.halls.add_hall(HALL, fake.public_pem, now=1)
    outbox = Outbox(tmp_path / "outbox.db", HALL)
    await outbox.start()
    replicator = Replicator(outbox, HALL, fake.key, central_key.public_key(), mosquitto.url,
                            data_dir=tmp_path, config=FAST)
    r = Rig(tmp_path, mosquitto, fake, central_key, outbox, replicator, store)
    try:
        yield r
    finally:
        await replicator.stop()
        if r.service is not None:
            await r.stop_central()
        await outbox.stop()
        await store.close()


async def test_backlog_reaches_central_exactly_once(rig: Rig) -> None:
    await rig.outbox.append(drafts_of(rig.fake, 3000))
    await rig.start_central()
    await rig.replicator.start()
    await rig.all_acked()
    assert await rig.central_totals() == rig.truth()
    hall = await rig.store.halls.get_hall(HALL)
    assert hall is not None and hall.last_seq == rig.outbox.last_seq
    assert hall.online is True and hall.session == 1
    # live events after the backlog go out within the linger
    await rig.outbox.append(drafts_of(rig.fake, 50))
    await rig.all_acked(10)
    assert await rig.central_totals() == rig.truth()


async def test_broker_killed_and_central_stopped_while_the_hall_plays(rig: Rig) -> None:
    await rig.start_central()
    await rig.replicator.start()
    produced = 0

    async def play(n: int) -> None:
        nonlocal produced
        for _ in range(n):
            await rig.outbox.append(drafts_of(rig.fake, 40))
            produced += 40
            await asyncio.sleep(0.01)

    await play(20)
    rig.broker.kill()  # SIGKILL: in-flight batches and acks vanish
    await play(20)  # the hall keeps playing; events wait in the outbox
    rig.broker.start()
    await play(10)
    await rig.stop_central()  # HQ down for a while: the agent times out and keeps everything
    await play(20)
    assert rig.outbox.acked_through < rig.outbox.last_seq
    await asyncio.sleep(2.5)
    await rig.start_central()
    await play(5)
    await rig.all_acked()
    assert await rig.central_totals() == rig.truth()
    assert rig.replicator.link.stats.disconnects >= 1
    hall = await rig.store.halls.get_hall(HALL)
    assert hall is not None and hall.last_seq == rig.outbox.last_seq


async def test_forged_ack_moves_nothing(rig: Rig) -> None:
    """An ack not signed by central (here: signed by another key) must not let the hall forget events."""
    await rig.outbox.append(drafts_of(rig.fake, 100))
    await rig.replicator.start()  # central is not running: nothing can be acked
    assert await rig.replicator.link.wait_connected(10)
    forger = generate_private_key()
    last = rig.outbox.last_seq
    events = await rig.outbox.read_unacked(0, last)
    forged = encode_ack(Ack(v=VERSION, hall=HALL, acked_through_seq=last, last_hash=events[-1].hash,
                            created_at=1), forger)
    await rig.replicator.link.publish(topic(HALL, "acks"), forged)
    await asyncio.sleep(0.5)
    assert rig.outbox.acked_through == 0
    assert rig.replicator.stats["refused_messages"] == 1
    # a real ack with the wrong hash is refused by the outbox too
    wrong = encode_ack(Ack(v=VERSION, hall=HALL, acked_through_seq=last, last_hash="ab" * 32, created_at=1),
                       rig.central_key)
    await rig.replicator.link.publish(topic(HALL, "acks"), wrong)
    await asyncio.sleep(0.5)
    assert rig.outbox.acked_through == 0
    await rig.start_central()
    await rig.all_acked()
    assert await rig.central_totals() == rig.truth()


async def test_resend_request_fills_a_gap(rig: Rig) -> None:
    """Central misses a batch (here: its ingest drops the first message) and asks; the agent resends."""
    await rig.start_central()
    assert rig.service is not None
    original = rig.service.ingestor.prepare
    dropped: list[str] = []

    async def drop_first(topic_name: str, payload: bytes):
        if not dropped:
            dropped.append(topic_name)
            return await original(topic_name, b"not json")  # logged as format_error, nothing stored
        return await original(topic_name, payload)

    rig.service.ingestor.prepare = drop_first  # type: ignore[method-assign]
    await rig.outbox.append(drafts_of(rig.fake, 600))
    await rig.replicator.start()
    await rig.all_acked()
    assert dropped
    assert rig.replicator.stats["resend_requests"] >= 1
    assert rig.replicator.stats["ack_timeouts"] == 0
    assert await rig.central_totals() == rig.truth()
    kinds = {e.kind for e in await rig.store.ingest.integration_log()}
    assert {"format_error", "resend"} <= kinds


async def test_status_goes_offline_on_stop(rig: Rig) -> None:
    await rig.start_central()
    await rig.replicator.start()
    assert await rig.replicator.link.wait_connected(10)
    for _ in range(100):
        hall = await rig.store.halls.get_hall(HALL)
        if hall is not None and hall.online:
            break
        await asyncio.sleep(0.05)
    await rig.replicator.stop()
    for _ in range(100):
        hall = await rig.store.halls.get_hall(HALL)
        if hall is not None and hall.online is False:
            break
        await asyncio.sleep(0.05)
    assert hall is not None and hall.online is False and hall.session == 1


async def _hall_when(rig: Rig, what: str, check) -> object:
    for _ in range(200):
        hall = await rig.store.halls.get_hall(HALL)
        if hall is not None and check(hall):
            return hall
        await asyncio.sleep(0.05)
    raise AssertionError(f"hall never {what}: {hall}")


async def test_forged_status_does_not_pin_the_hall_and_a_reconnect_still_flips_it(rig: Rig) -> None:
    """On an open broker anyone may publish a retained ``{"online":false,"session":2^63-1}`` for the hall.
    Central refuses it (unsigned, signed by another key, or a session jump) as ``rejected``; the hall stays
    online, and the real agent's stop and reconnect still move it offline and online again."""
    await rig.start_central()
    await rig.replicator.start()
    await _hall_when(rig, "online", lambda h: h.online is True and h.session == 1)

    async def ignore(msg: Received) -> None:
        pass

    attacker = MqttLink(rig.broker.url, client_id="attacker", handler=ignore)
    task = asyncio.create_task(attacker.run())
    try:
        assert await attacker.wait_connected(10)
        top = topic(HALL, "status")
        huge = 2**63 - 1
        await attacker.publish(top, b'{"at":1,"hall":"%s","online":false,"session":%d,"v":1}' % (HALL.encode(), huge),
                               retain=True)
        forged = Status(v=VERSION, hall=HALL, online=False, session=huge, at=1)
        await attacker.publish(top, encode_status(forged, generate_private_key()), retain=True)
        jump = Status(v=VERSION, hall=HALL, online=False, session=2 + MAX_SESSION_JUMP, at=1)
        await attacker.publish(top, encode_status(jump, rig.fake.key), retain=True)  # even with the hall's key
        for _ in range(200):
            refused = [e for e in await rig.store.ingest.integration_log(hall=HALL, kind="rejected")
                       if e.detail.startswith("status:")]
            if len(refused) == 3:
                break
            await asyncio.sleep(0.05)
        details = sorted(e.detail for e in refused)
        assert len(details) == 3, details
        assert any("unsigned" in d for d in details) and any("BadSignature" in d and "unsigned" not in d
                                                             for d in details)
        assert any(f"session {2 + MAX_SESSION_JUMP} is more than" in d for d in details)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    hall = await rig.store.halls.get_hall(HALL)
    assert hall is not None and hall.online is True and hall.session == 1
    await rig.replicator.stop()
    await _hall_when(rig, "offline", lambda h: h.online is False and h.session == 1)
    await rig.replicator.start()
    await _hall_when(rig, "online again", lambda h: h.online is True and h.session == 2)


async def test_hostile_messages_through_the_broker_change_nothing_and_are_logged(rig: Rig) -> None:
    """Replayed, altered, mis-addressed and garbage batches arrive over the real broker while the hall
    replicates: totals stay exact, each is logged with its kind, and the honest hall is not slowed."""
    await rig.start_central()
    await rig.outbox.append(drafts_of(rig.fake, 400))
    await rig.replicator.start()
    await rig.all_acked()
    stored = await rig.store.ingest.events(hall=HALL, limit=50)
    assert len(stored) == 50
    # the first 50 events, signed by the hall again: a replay of a range central already holds
    chain = [decode_event(json.dumps({k: v for k, v in e.items() if k != "central_time"}).encode()) for e in stored]
    replay = encode_batch(chain, HALL, rig.fake.key, created_at=1)
    altered = json.loads(replay)
    for event in altered["events"]:
        if event["type"] == "game.bet":
            event["data"]["amount"] += 1
            break
    other = FakeHall("hall-other", seed=3)
    await rig.store.halls.add_hall("hall-other", other.public_pem, now=1)
    sender = rig.replicator.link
    await sender.publish(topic(HALL, "batches"), replay)
    await sender.publish(topic(HALL, "batches"), json.dumps(altered).encode())
    await sender.publish(topic("hall-other", "batches"), replay)  # our batch on another hall's topic
    await sender.publish(topic(HALL, "batches"), b"\x00garbage{")
    await rig.outbox.append(drafts_of(rig.fake, 100))  # the honest hall goes on
    await rig.all_acked(20)
    for _ in range(100):
        kinds = [e.kind for e in await rig.store.ingest.integration_log(limit=100)]
        if kinds.count("rejected") >= 2 and "format_error" in kinds and "duplicate" in kinds:
            break
        await asyncio.sleep(0.05)
    assert "duplicate" in kinds and kinds.count("rejected") >= 2 and "format_error" in kinds, kinds
    assert await rig.central_totals() == rig.truth()
    other_hall = await rig.store.halls.get_hall("hall-other")
    assert other_hall is not None and other_hall.last_seq == 0
