"""The replicator's send path on a real outbox file: batches are spliced from the stored bytes
(no decode, no re-encode), are exactly what ``encode_batch`` would produce, and a damaged row is
never sent. The MQTT link is a stand-in that records what would be published."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agent.outbox import Outbox, OutboxStore
from agent.replicator import Replicator, ReplicatorConfig
from mqttlink import parse_broker_url
from protocols.sync import (
    MAX_MESSAGE_BYTES,
    BrokenChain,
    decode_batch,
    encode_batch,
    generate_private_key,
    topic,
    verify_batch,
)
from tests import waits

from .test_outbox import HALL, T0, Draft

KEY = generate_private_key()
CREATED = T0 + 123


class RecordingLink:
    """What the replicator needs of an MqttLink: connected, publish, wait_connected."""

    connected = True

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, where: str, payload: bytes, **_: Any) -> None:
        self.published.append((where, payload))

    async def wait_connected(self, timeout: float) -> bool:
        return True


def replicator(ob: Outbox, tmp_path: Path) -> tuple[Replicator, RecordingLink]:
    rep = Replicator(ob, HALL, KEY, generate_private_key().public_key(), parse_broker_url("mqtt://127.0.0.1:1"),
                     data_dir=tmp_path, config=ReplicatorConfig(linger=0, batch_max=4), clock=lambda: CREATED)
    link = RecordingLink()
    rep.link = link  # type: ignore[assignment]
    return rep, link


async def drain(rep: Replicator) -> None:
    await rep._send_some()
    for task in list(rep._publishing):
        await task


async def test_batches_are_spliced_from_the_stored_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with Outbox(tmp_path / "outbox.db", HALL) as ob:
        events = await ob.append([Draft(agent_time=T0 + i, data={"amount": i, "currency": "EUR", "hash": "x"})
                                  for i in range(6)])

        def no_decoding(*_: object) -> None:
            raise AssertionError("the send path must not decode stored events")

        monkeypatch.setattr(OutboxStore, "read", no_decoding)
        rep, link = replicator(ob, tmp_path)
        await drain(rep)
        await drain(rep)
        assert [where for where, _ in link.published] == [topic(HALL, "batches")] * 2
        payloads = [payload for _, payload in link.published]
        assert payloads == [encode_batch(events[:4], HALL, KEY, created_at=CREATED),
                            encode_batch(events[4:], HALL, KEY, created_at=CREATED)]
        for payload in payloads:
            verify_batch(decode_batch(payload), KEY.public_key(), expect_hall=HALL)
        # a resend request publishes exactly the asked range, built the same way
        link.published.clear()
        rep._resend(2, 3, "gap")
        await rep._send_some()
        assert [p for _, p in link.published] == [encode_batch(events[1:3], HALL, KEY, created_at=CREATED)]


async def test_a_damaged_row_is_refused_and_never_sent(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    async with Outbox(db, HALL) as ob:
        events = await ob.append([Draft(agent_time=T0 + i) for i in range(5)])
    with sqlite3.connect(db) as conn:  # one byte of seq 3's stored body changes: amount 100 → 900
        [(body,)] = conn.execute("SELECT body FROM events WHERE seq = 3").fetchall()
        damaged = body.replace(b'"amount":100', b'"amount":900')
        assert damaged != body and len(damaged) == len(body)
        conn.execute("UPDATE events SET body = ? WHERE seq = 3", (damaged,))
    async with Outbox(db, HALL) as ob:
        with pytest.raises(BrokenChain, match="seq 3: hash does not match") as info:
            await ob.read_unacked_stored(0, 100)
        assert info.value.seq == 3
        assert [e.seq for e in await ob.read_unacked_stored(3, 100)] == [4, 5]  # the rows after it still read
        rep, link = replicator(ob, tmp_path)
        with pytest.raises(BrokenChain):  # the send loop logs this and tries again later
            await drain(rep)
        assert link.published == [] and rep._sent_through == 0
        assert await ob.mark_acked(2, events[1].hash)  # whatever comes before the damage still goes out
        rep._sent_through = 2
        with pytest.raises(BrokenChain):
            await drain(rep)
        assert link.published == []


async def test_a_live_batch_waits_for_more_events_and_leaves_as_soon_as_it_is_full(tmp_path: Path) -> None:
    """Linger: events arriving while the first waits share its batch (HQ pays per batch); a full batch
    does not wait out the linger (a 30 s linger here: the test ends long before it would)."""
    async with Outbox(tmp_path / "outbox.db", HALL) as ob:
        rep = Replicator(ob, HALL, KEY, generate_private_key().public_key(), parse_broker_url("mqtt://127.0.0.1:1"),
                         data_dir=tmp_path, config=ReplicatorConfig(linger=30, batch_max=6), clock=lambda: T0)
        link = RecordingLink()
        rep.link = link  # type: ignore[assignment]
        first = await ob.append([Draft(agent_time=T0 + i) for i in range(2)])
        sending = asyncio.create_task(drain(rep))
        rest = await ob.append([Draft(agent_time=T0 + i) for i in range(2, 6)])
        await asyncio.wait_for(sending, 10)
        assert [p for _, p in link.published] == [encode_batch(first + rest, HALL, KEY, created_at=T0)]



def _congested(ob: Outbox, tmp_path: Path, clock: Any, **config: Any) -> tuple[Replicator, RecordingLink]:
    rep = Replicator(ob, HALL, KEY, generate_private_key().public_key(), parse_broker_url("mqtt://127.0.0.1:1"),
                     data_dir=tmp_path, config=ReplicatorConfig(**config), clock=clock)
    link = RecordingLink()
    rep.link = link  # type: ignore[assignment]
    return rep, link


async def test_while_hq_has_not_acked_a_partial_batch_waits_for_the_ack_and_grows(tmp_path: Path) -> None:
    """Issue 13: an HQ that acks late must not get a stream of small batches (each costs it a fixed
    amount). The second partial batch waits past its linger for batch 1's ack, takes the events that
    arrive meanwhile, and leaves the moment the ack does."""
    async with Outbox(tmp_path / "outbox.db", HALL) as ob:
        rep, link = _congested(ob, tmp_path, lambda: T0, linger=0.01, congested_linger=30, batch_max=10)
        first = await ob.append([Draft(agent_time=T0 + i) for i in range(2)])
        await drain(rep)                       # nothing in flight: it goes after its linger
        assert [p for _, p in link.published] == [encode_batch(first, HALL, KEY, created_at=T0)]
        second = await ob.append([Draft(agent_time=T0 + i) for i in range(2, 4)])
        sending = asyncio.create_task(drain(rep))
        await waits.until(lambda: rep.stats["congested_waits"] == 1, "the batch waits for the ack", interval=0.005)
        third = await ob.append([Draft(agent_time=T0 + i) for i in range(4, 7)])
        assert len(link.published) == 1 and not sending.done()
        await rep._ack(first[-1].seq, first[-1].hash)  # HQ acks batch 1: the grown batch goes at once
        await asyncio.wait_for(sending, 10)
        assert [p for _, p in link.published][1:] == [encode_batch(second + third, HALL, KEY, created_at=T0)]


async def test_a_waiting_batch_leaves_without_the_ack_once_full_or_when_its_time_is_up(tmp_path: Path) -> None:
    """The wait is bounded: a batch that fills goes at once; one that does not goes after
    ``congested_linger`` from its first event, acked or not (the ack timeout still governs resending)."""
    async with Outbox(tmp_path / "outbox.db", HALL) as ob:
        rep, link = _congested(ob, tmp_path, lambda: T0, linger=0.01, congested_linger=30, batch_max=4)
        first = await ob.append([Draft(agent_time=T0 + i) for i in range(2)])
        await drain(rep)
        second = await ob.append([Draft(agent_time=T0 + i) for i in range(2, 4)])
        sending = asyncio.create_task(drain(rep))
        await waits.until(lambda: rep.stats["congested_waits"] == 1, "the batch waits for the ack", interval=0.005)
        rest = await ob.append([Draft(agent_time=T0 + i) for i in range(4, 6)])
        await asyncio.wait_for(sending, 10)   # full (4 events) while waiting: no ack needed
        assert [p for _, p in link.published] == [encode_batch(first, HALL, KEY, created_at=T0),
                                                  encode_batch(second + rest, HALL, KEY, created_at=T0)]

    async with Outbox(tmp_path / "timed.db", HALL) as ob:
        rep, link = _congested(ob, tmp_path, lambda: time.time_ns() // 1000, linger=0.01, congested_linger=0.3,
                               batch_max=100)
        now = time.time_ns() // 1000
        first = await ob.append([Draft(agent_time=now)])
        await drain(rep)
        second = await ob.append([Draft(agent_time=time.time_ns() // 1000)])
        started = time.monotonic()
        await asyncio.wait_for(drain(rep), 10)   # never acked: out after ~0.3 s of waiting
        assert time.monotonic() - started >= 0.25
        assert rep.stats["congested_waits"] == 1
        assert [decode_batch(p).events[0].seq for _, p in link.published] == [first[0].seq, second[0].seq]


async def test_an_hq_acking_slowly_through_its_queue_is_not_sent_the_window_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After an outage HQ works through every hall's backlog and acks each hall every ~12 s. With a 10 s
    ack timeout that was reset by every ack, each hall re-sent its whole window before each ack: the
    duplicates loaded HQ exactly while it was behind. Now the timeout stays at least twice the silence
    HQ just showed while events are in flight (and never shrinks then), and falls back to the configured
    one once caught up; a truly silent HQ still gets the window again (the timeout doubling as before)."""
    now = [1000.0]
    monkeypatch.setattr("agent.replicator.time", SimpleNamespace(monotonic=lambda: now[0], time_ns=time.time_ns))
    async with Outbox(tmp_path / "outbox.db", HALL) as ob:
        rep, link = _congested(ob, tmp_path, lambda: T0, linger=0, batch_max=2, ack_timeout=10, ack_timeout_max=120)
        events = await ob.append([Draft(agent_time=T0 + i) for i in range(8)])
        for _ in range(4):                      # the whole backlog goes out: 4 batches of 2
            await drain(rep)
        assert len(link.published) == 4 and rep._sent_through == 8

        async def after(seconds: float) -> None:
            now[0] += seconds
            await drain(rep)                    # the send loop looks at the clock

        await after(9)
        assert len(link.published) == 4          # within 10 s: nothing again
        await rep._ack(events[1].seq, events[1].hash)   # batch 1 acked 9 s after sending
        assert rep._ack_timeout == 18
        for k in (3, 5):                          # HQ keeps acking every 12 s: more than 10, less than 18
            await after(12)
            await rep._ack(events[k].seq, events[k].hash)
        assert len(link.published) == 4 and rep.stats["ack_timeouts"] == 0
        assert rep._ack_timeout == 24
        await after(25)                          # now HQ goes silent for longer than it ever was
        assert rep.stats["ack_timeouts"] == 1
        await drain(rep)
        assert [decode_batch(p).events[0].seq for _, p in link.published[4:]] == [7]   # the unacked rest again
        assert rep._ack_timeout == 48
        await after(1)
        await rep._ack(events[6].seq, events[6].hash)  # a quick ack after the re-send does not undo the doubling
        assert rep._ack_timeout == 48
        await rep._ack(events[7].seq, events[7].hash)  # caught up: back to the configured timeout
        assert rep._ack_timeout == 10


async def test_an_ack_timeout_probes_with_one_batch_and_resends_the_window_only_if_it_was_lost(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At the start of a backlog HQ's first ack can take longer than the timeout (100 halls' backlogs
    queue at once). Re-sending the whole window then put up to 50,000 duplicate events per hall in
    HQ's queue each time (many_halls: 5-26 timeouts a run). Now a timeout re-sends the first unacked
    batch only; acks getting past it show the window is arriving. If none does within the next
    timeout, the window was lost and goes out again whole, as before."""
    now = [1000.0]
    monkeypatch.setattr("agent.replicator.time", SimpleNamespace(monotonic=lambda: now[0], time_ns=time.time_ns))
    async with Outbox(tmp_path / "outbox.db", HALL) as ob:
        rep, link = _congested(ob, tmp_path, lambda: T0, linger=0, batch_max=2, ack_timeout=10, ack_timeout_max=120)
        events = await ob.append([Draft(agent_time=T0 + i) for i in range(8)])
        for _ in range(4):
            await drain(rep)
        firsts = lambda: [decode_batch(p).events[0].seq for _, p in link.published]  # noqa: E731

        async def after(seconds: float) -> None:
            now[0] += seconds
            await drain(rep)

        await after(11)                                   # HQ slow: the probe, one batch
        assert firsts() == [1, 3, 5, 7, 1] and rep.stats["probes"] == 1
        await after(5)
        await rep._ack(events[1].seq, events[1].hash)     # HQ reaches the window's first batch...
        await rep._ack(events[3].seq, events[3].hash)     # ...and gets past it: the window is arriving
        await after(8)
        await rep._ack(events[5].seq, events[5].hash)
        await rep._ack(events[7].seq, events[7].hash)
        assert firsts() == [1, 3, 5, 7, 1], "a slow HQ got one duplicate batch, not the window again"

        more = await ob.append([Draft(agent_time=T0 + i) for i in range(8, 14)])
        for _ in range(3):
            await drain(rep)
        assert firsts()[5:] == [9, 11, 13]
        await after(11)                                   # silent: probe
        assert firsts()[8:] == [9] and rep.stats["probes"] == 2
        await after(5)
        await rep._ack(more[1].seq, more[1].hash)         # the probe's batch, no further: the rest is lost
        await after(rep._ack_timeout + 1)
        await drain(rep)
        await drain(rep)
        assert firsts()[9:] == [11, 13], "the lost window goes out again whole"
        assert rep.stats["ack_timeouts"] == 3


async def test_a_run_too_big_for_one_message_goes_out_in_batches_within_the_limit(tmp_path: Path) -> None:
    """Issue 16: batch_max counts events, not bytes. 200 events of ~100 KB (20 MB, over MAX_MESSAGE_BYTES)
    read as one run leave as several batches, each within the limit, together the whole run in order;
    a resend of the whole range is cut the same way."""
    async with Outbox(tmp_path / "outbox.db", HALL) as ob:
        note = "n" * 100_000
        events = await ob.append([Draft(device="egm-002", type="device.status", agent_time=T0 + i,
                                        data={"note": note, "i": i}) for i in range(200)])
        rep = Replicator(ob, HALL, KEY, generate_private_key().public_key(), parse_broker_url("mqtt://127.0.0.1:1"),
                         data_dir=tmp_path, config=ReplicatorConfig(linger=0), clock=lambda: CREATED)
        link = RecordingLink()
        rep.link = link  # type: ignore[assignment]

        def sent() -> list[int]:
            seqs = []
            for _, payload in link.published:
                assert len(payload) <= MAX_MESSAGE_BYTES
                batch = decode_batch(payload)
                verify_batch(batch, KEY.public_key(), expect_hall=HALL)
                seqs += [e.seq for e in batch.events]
            return seqs

        while rep._sent_through < events[-1].seq:
            await drain(rep)
        assert len(link.published) >= 2
        assert sent() == [e.seq for e in events]
        link.published.clear()
        rep._resend(1, 200, "gap")
        await rep._send_some()
        assert len(link.published) >= 2 and sent() == [e.seq for e in events]
