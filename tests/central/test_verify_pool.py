"""The verify pool (central.verify_pool): batches judged in a child process exactly as in this one, the
same refusals, a dead child costing one unacked batch, and ingest through it storing what the hall sent."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator

import pytest

from central.ingest import Ingestor, Verified, VerifierUnavailable, decode_verify_stage
from central.repos import Repositories
from central.verify_pool import VerifyPool
from protocols.sync import SyncError, encode_batch, generate_private_key, public_key_from_pem

from .builders import T0, FakeHall
from .checks import hall_totals
from .conftest import StepClock, register

NOW = T0 + 10**9


@pytest.fixture
async def pool() -> AsyncIterator[VerifyPool]:
    p = VerifyPool(1, timeout=30.0)
    await p.start()
    yield p
    await p.stop()


def _hall() -> tuple[FakeHall, bytes]:
    hall = FakeHall("hall-p", seed=9, devices=4)
    hall.play(300)
    hall._append("egm-002", "integration", {"kind": "missed", "bets": 30, "currency": "EUR"})
    hall._append("egm-003", "meters.snapshot", {"reason": "schedule", "meters": {"coin_in": 5}})
    hall.play(100)
    return hall, hall.batch(1, len(hall.events))


def _here(payload: bytes, hall: FakeHall) -> Verified | tuple[str, str]:
    try:
        return decode_verify_stage(payload, public_key_from_pem(hall.public_pem.encode()), hall.hall, NOW)
    except SyncError as exc:
        return exc.log_kind, f"{type(exc).__name__}: {exc}"


async def test_the_child_judges_a_batch_exactly_as_this_process_does(pool: VerifyPool) -> None:
    hall, payload = _hall()
    here = _here(payload, hall)
    there = await pool.prepare(payload, hall.public_pem, hall.hall, NOW)
    assert isinstance(here, Verified) and isinstance(there, Verified)
    assert (there.hall, there.header, there.sig) == (here.hall, here.header, here.sig)
    a, b = here.staged, there.staged
    assert (b.hall, b.central_time, b.rows, b.missed) == (a.hall, a.central_time, a.rows, a.missed)
    assert b.effects == a.effects and b.effects.devices["egm-003"].marks
    assert list(b.load_events()) == hall.events
    assert b.tail(150).effects == a.tail(150).effects and b.tail(150).rows == a.tail(150).rows


async def test_the_child_refuses_what_this_process_refuses(pool: VerifyPool) -> None:
    hall, payload = _hall()
    other = FakeHall("hall-p", seed=9, devices=4, key=generate_private_key())
    other.play(50)
    cases = [
        other.batch(1, 50),                                   # signed with a key that is not the hall's
        payload.replace(b'"amount":', b'"amount":1', 1),      # altered after signing
        payload[:-40],                                        # cut
        b"\xff not json",
        encode_batch(hall.events[:20], "hall-p", hall.key, created_at=T0).replace(b'"seq":3,', b'"seq":4,', 1),
    ]
    for bad in cases:
        here = _here(bad, hall)
        assert isinstance(here, tuple), bad[:60]
        assert await pool.prepare(bad, hall.public_pem, hall.hall, NOW) == here
    # the topic's hall is not the batch's
    assert await pool.prepare(payload, hall.public_pem, "hall-q", NOW) == _here_as(payload, hall, "hall-q")


def _here_as(payload: bytes, hall: FakeHall, topic_hall: str) -> tuple[str, str]:
    try:
        decode_verify_stage(payload, public_key_from_pem(hall.public_pem.encode()), topic_hall, NOW)
    except SyncError as exc:
        return exc.log_kind, f"{type(exc).__name__}: {exc}"
    raise AssertionError("a batch for another hall was accepted")


async def test_a_dead_child_costs_one_batch_and_is_replaced(pool: VerifyPool) -> None:
    hall, payload = _hall()
    assert isinstance(await pool.prepare(payload, hall.public_pem, hall.hall, NOW), Verified)
    for pid in list(pool._pool._processes):  # type: ignore[union-attr]
        os.kill(pid, signal.SIGKILL)
    with pytest.raises(VerifierUnavailable):
        await pool.prepare(payload, hall.public_pem, hall.hall, NOW)
    assert isinstance(await pool.prepare(payload, hall.public_pem, hall.hall, NOW), Verified)


async def test_ingest_through_the_pool_stores_what_the_hall_sent(pool: VerifyPool, store: Repositories) -> None:
    hall = FakeHall("hall-i", seed=11, devices=5)
    await register(store, hall)
    hall.play(1200)
    ingestor = Ingestor(store, generate_private_key(), clock=StepClock(), preparer=pool)
    batches = hall.batches(400)
    assert len(batches) >= 3 and all(len(payload) >= 16 * 1024 for _, _, payload in batches[:3])  # the pool's size
    for _, _, payload in batches:
        outcome = await ingestor.handle(hall.topic, payload)
        assert outcome.status == "stored", outcome
    assert await hall_totals(store, hall.hall) == hall.total
    forged = FakeHall("hall-i", seed=12, devices=5, key=generate_private_key())
    forged.play(400)
    outcome = await ingestor.handle(hall.topic, forged.batch(1, 400))
    assert outcome.status == "rejected" and "BadSignature" in outcome.detail
    assert [e.kind for e in await store.ingest.integration_log(hall="hall-i")] == ["rejected"]
    assert await hall_totals(store, hall.hall) == hall.total
    # without its verifier, ingest judges nothing: an error, no ack, the hall will publish it again
    await pool.stop()
    first = len(hall.events) + 1
    hall.play(400)
    outcome = await ingestor.handle(hall.topic, hall.batch(first, len(hall.events)))
    assert outcome.status == "error" and outcome.publish == () and "verifier" in outcome.detail
    assert (await store.halls.get_hall("hall-i")).last_seq == first - 1  # type: ignore[union-attr]
