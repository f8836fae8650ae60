"""Ingest rules end to end through a real SQLite file: store, dedupe, reject, resend, ack."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3

import msgspec
import pytest

from central.ingest import Ingestor, Verified, decode_verify_stage
from central.repos import Repositories
from central.store import open_store
from protocols.sync import MAX_MESSAGE_BYTES, generate_private_key, public_key_from_pem, topic
from protocols.sync.gamingday import UTC_MIDNIGHT, DayRule
from protocols.sync.keys import Ed25519PrivateKey
from protocols.sync.money import ZERO

from .builders import FakeHall
from .checks import ack_of, hall_totals, resend_of
from .conftest import StepClock, register


async def test_stream_of_batches_rolls_up_exactly_and_acks_each(
        store: Repositories, ingestor: Ingestor, central_key: Ed25519PrivateKey) -> None:
    hall = FakeHall("hall-01", seed=1)
    await register(store, hall)
    hall.play(600)
    for first, last, payload in hall.batches(50):
        outcome = await ingestor.handle(hall.topic, payload)
        assert outcome.status == "stored"
        assert outcome.stored == last - first + 1
        ack = ack_of(outcome, central_key, hall.hall)
        assert (ack.acked_through_seq, ack.last_hash) == (last, hall.events[last - 1].hash)
    assert await hall_totals(store, hall.hall) == hall.total
    by_device = {(r.hall, r.key): r for r in await store.reports.ggr("device")}
    assert set(by_device) == {(hall.hall, d) for d in hall.per_device}
    for device, expected in hall.per_device.items():
        row = by_device[(hall.hall, device)]
        assert (row.bets, row.wins, row.ggr, row.rounds) == (expected.bets, expected.wins, expected.ggr,
                                                             expected.rounds)
    for grouping in ("game", "day"):
        rows = await store.reports.ggr(grouping)
        assert sum(r.bets for r in rows) == hall.total.bets
        assert sum(r.wins for r in rows) == hall.total.wins
        assert sum(r.rounds for r in rows) == hall.total.rounds
    assert len(await store.reports.ggr("day")) > 1  # the stream crosses UTC midnight
    assert await store.ingest.integration_log() == []
    record = await store.halls.get_hall(hall.hall)
    assert record is not None and record.last_seq == len(hall.events)


async def test_replayed_batch_is_a_logged_duplicate_and_reacked(
        store: Repositories, ingestor: Ingestor, central_key: Ed25519PrivateKey) -> None:
    hall = FakeHall("hall-01", seed=2)
    await register(store, hall)
    hall.play(120)
    (a_first, a_last, a), (_, b_last, b) = hall.batches(60)[:2]
    assert (await ingestor.handle(hall.topic, a)).status == "stored"
    assert (await ingestor.handle(hall.topic, b)).status == "stored"
    before = await hall_totals(store, hall.hall)
    outcome = await ingestor.handle(hall.topic, a)
    assert outcome.status == "duplicate"
    ack = ack_of(outcome, central_key, hall.hall)
    assert ack.acked_through_seq == b_last  # the current end, so a lagging agent catches up at once
    assert await hall_totals(store, hall.hall) == before == hall.sum_range(1, b_last)
    (entry,) = await store.ingest.integration_log(kind="duplicate")
    assert entry.hall == hall.hall and f"{a_first}..{a_last}" in entry.detail
    assert len(await store.ingest.events(hall=hall.hall, limit=10_000)) == b_last


def _altered(payload: bytes) -> bytes:
    batch = json.loads(payload)
    for event in batch["events"]:
        if event["type"] == "game.win":
            event["data"]["amount"] += 1
            break
    return json.dumps(batch).encode()


@pytest.mark.parametrize("case", ["altered", "other_key", "other_topic", "unregistered", "garbage", "truncated",
                                  "float_amount", "bad_topic", "wrong_kind"])
async def test_bad_batches_change_nothing_and_are_logged(
        store: Repositories, ingestor: Ingestor, case: str) -> None:
    hall, other = FakeHall("hall-01", seed=3), FakeHall("hall-02", seed=4)
    await register(store, hall, other)
    hall.play(40)
    assert (await ingestor.handle(hall.topic, hall.batch(1, 20))).status == "stored"
    before = await hall_totals(store, hall.hall)
    good = hall.batch(21, len(hall.events))
    stranger = FakeHall("hall-99", seed=5)
    stranger.play(5)
    topic_name, payload, kind, log_hall = {
        "altered": (hall.topic, _altered(good), "rejected", hall.hall),
        "other_key": (hall.topic, hall.batch(21, len(hall.events), key=other.key), "rejected", hall.hall),
        "other_topic": (other.topic, good, "rejected", other.hall),
        "unregistered": (stranger.topic, stranger.batch(1, 5), "rejected", "hall-99"),
        "garbage": (hall.topic, b"\x00\xffnot json at all", "format_error", hall.hall),
        "truncated": (hall.topic, good[: len(good) // 2], "format_error", hall.hall),
        "float_amount": (hall.topic, good.replace(b'"amount":', b'"amount":0.5,"x":', 1), "format_error",
                         hall.hall),
        "bad_topic": ("hallsync/v1/halls/+/batches", good, "format_error", None),
        "wrong_kind": (topic(hall.hall, "status"), good, "format_error", hall.hall),
    }[case]
    outcome = await ingestor.handle(topic_name, payload)
    assert outcome.status == kind
    assert outcome.publish == ()
    (entry,) = await store.ingest.integration_log()
    assert (entry.kind, entry.hall) == (kind, log_hall)
    assert outcome.logged == (entry,)
    assert await hall_totals(store, hall.hall) == before
    assert await hall_totals(store, other.hall) == ZERO
    assert (await store.halls.get_hall(hall.hall)).last_seq == 20  # type: ignore[union-attr]
    # ...and the genuine batch still goes through afterwards.
    assert (await ingestor.handle(hall.topic, good)).status == "stored"
    assert await hall_totals(store, hall.hall) == hall.total


@pytest.mark.parametrize("buffer", [True, False], ids=["buffered", "dropped"])
async def test_gap_asks_for_exactly_the_missing_range(
        store: Repositories, central_key: Ed25519PrivateKey, buffer: bool) -> None:
    ingestor = Ingestor(store, central_key, StepClock(), max_buffered_batches=16 if buffer else 0)
    hall = FakeHall("hall-01", seed=6)
    await register(store, hall)
    hall.play(90)
    n = len(hall.events)
    assert (await ingestor.handle(hall.topic, hall.batch(1, 30))).status == "stored"
    gap = await ingestor.handle(hall.topic, hall.batch(61, n))
    assert gap.status == "gap" and gap.buffered is buffer
    request = resend_of(gap, central_key, hall.hall)
    assert (request.from_seq, request.to_seq) == (31, 60)
    (entry,) = await store.ingest.integration_log(kind="resend")
    assert "31..60" in entry.detail
    assert await hall_totals(store, hall.hall) == hall.sum_range(1, 30)
    filled = await ingestor.handle(hall.topic, hall.batch(31, 60))
    assert filled.status == "stored"
    assert ack_of(filled, central_key, hall.hall).acked_through_seq == (n if buffer else 60)
    resent = await ingestor.handle(hall.topic, hall.batch(61, n))  # the agent re-publishes after the resend
    assert resent.status == ("duplicate" if buffer else "stored")
    assert ack_of(resent, central_key, hall.hall).acked_through_seq == n
    assert await hall_totals(store, hall.hall) == hall.total


async def test_overlapping_batch_stores_only_the_new_tail(
        store: Repositories, ingestor: Ingestor, central_key: Ed25519PrivateKey) -> None:
    hall = FakeHall("hall-01", seed=7)
    await register(store, hall)
    hall.play(40)
    await ingestor.handle(hall.topic, hall.batch(1, 20))
    outcome = await ingestor.handle(hall.topic, hall.batch(11, 35))
    assert (outcome.status, outcome.stored) == ("stored", 15)
    assert ack_of(outcome, central_key, hall.hall).acked_through_seq == 35
    assert await hall_totals(store, hall.hall) == hall.sum_range(1, 35)
    seqs = [e["seq"] for e in await store.ingest.events(hall=hall.hall, limit=1000)]
    assert seqs == list(range(1, 36))


@pytest.mark.parametrize("span", [(1, 10), (15, 30), (21, 25)], ids=["inside", "overlapping", "continuing"])
async def test_forked_chain_signed_with_the_real_key_is_rejected(
        store: Repositories, ingestor: Ingestor, span: tuple[int, int]) -> None:
    hall = FakeHall("hall-01", seed=8)
    await register(store, hall)
    hall.play(40)
    await ingestor.handle(hall.topic, hall.batch(1, 20))
    fork = FakeHall("hall-01", seed=99, key=hall.key)  # same hall and key, different history
    fork.play(40)
    before = await hall_totals(store, hall.hall)
    outcome = await ingestor.handle(hall.topic, fork.batch(*span))
    assert outcome.status == "rejected" and outcome.publish == ()
    (entry,) = await store.ingest.integration_log(kind="rejected")
    assert "fork or forgery" in entry.detail
    assert await hall_totals(store, hall.hall) == before


async def test_an_event_whose_data_does_not_match_its_type_is_a_format_error_and_not_stored(
        store: Repositories, ingestor: Ingestor) -> None:
    """A transfer without its direction cannot be counted: the agent refuses to seal it, and a batch that
    carries one anyway (an older agent, a hand-made chain with correct hashes) is refused whole as a
    ``format_error`` naming the key, and nothing of it is stored (the hall keeps it and can be fixed)."""
    hall = FakeHall("hall-01", seed=9)
    await register(store, hall)
    hall.play(5)
    from protocols.sync import UnsealedEvent, seal
    from protocols.sync.errors import Malformed
    from protocols.sync.events import Event, chain_hash

    fields = {"seq": len(hall.events) + 1, "id": "00000000-0000-4000-8000-000000000001", "hall": hall.hall,
              "device": "egm-001", "type": "transfer", "device_time": None, "agent_time": hall.time + 1,
              "data": {"amount": 700, "currency": "EUR"}}
    with pytest.raises(Malformed, match="direction"):
        seal(UnsealedEvent(**fields), hall.events[-1].hash)  # type: ignore[arg-type]
    unsigned = Event(v=1, **fields, prev_hash=hall.events[-1].hash, hash="0" * 64)  # type: ignore[arg-type]
    hall.events.append(msgspec.structs.replace(unsigned, hash=chain_hash(unsigned)))
    outcome = await ingestor.handle(hall.topic, hall.batch(1, len(hall.events)))
    assert outcome.status == "format_error"
    (entry,) = await store.ingest.integration_log(kind="format_error")
    assert "direction" in entry.detail
    assert await store.ingest.events(hall=hall.hall) == []
    assert await hall_totals(store, hall.hall) == ZERO


async def test_two_halls_in_parallel_with_garbage_and_shuffled_workers(
        store: Repositories, central_key: Ed25519PrivateKey) -> None:
    """Shared subscriptions deliver one hall's batches to several workers in any order."""
    ingestor = Ingestor(store, central_key, StepClock())
    good, noisy = FakeHall("hall-good", seed=10), FakeHall("hall-noisy", seed=11)
    await register(store, good, noisy)
    good.play(800)
    noisy.play(200)
    rng = random.Random(12)
    messages: list[tuple[str, bytes]] = [(good.topic, p) for _, _, p in good.batches(40)]
    messages += [(noisy.topic, p) for _, _, p in noisy.batches(25)]
    messages += [(noisy.topic, b"{garbage" + bytes([i])) for i in range(30)]
    messages += [(noisy.topic, _altered(noisy.batch(1, 25)))]
    rng.shuffle(messages)
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for message in messages:
        queue.put_nowait(message)

    async def worker() -> None:
        while not queue.empty():
            name, payload = queue.get_nowait()
            await ingestor.handle(name, payload)

    await asyncio.gather(*(worker() for _ in range(4)))
    # The agents re-publish whatever is unacked (their ack timeout); one more pass, in order.
    for hall, size in ((good, 40), (noisy, 25)):
        record = await store.halls.get_hall(hall.hall)
        assert record is not None
        if record.last_seq < len(hall.events):
            for _, _, payload in hall.batches(size, start=record.last_seq + 1):
                await ingestor.handle(hall.topic, payload)
    assert await hall_totals(store, good.hall) == good.total
    assert await hall_totals(store, noisy.hall) == noisy.total
    assert not await store.ingest.integration_log(hall=good.hall, kind="rejected")
    assert not await store.ingest.integration_log(hall=good.hall, kind="format_error")
    noisy_log = await store.ingest.integration_log(hall=noisy.hall, limit=1000)
    assert {e.kind for e in noisy_log} >= {"format_error", "rejected"}


async def test_one_halls_slow_store_does_not_hold_others(store: Repositories, central_key: Ed25519PrivateKey) -> None:
    """The per-hall lock covers one hall only: hall B stores while hall A's lock is held."""
    ingestor = Ingestor(store, central_key, StepClock())
    a, b = FakeHall("hall-a", seed=13), FakeHall("hall-b", seed=14)
    await register(store, a, b)
    a.play(10)
    b.play(10)
    lock = ingestor._locks.setdefault("hall-a", asyncio.Lock())
    async with lock:
        blocked = asyncio.create_task(ingestor.handle(a.topic, a.batch(1, 10)))
        outcome = await asyncio.wait_for(ingestor.handle(b.topic, b.batch(1, 10)), timeout=5)
        assert outcome.status == "stored"
        assert not blocked.done()
    assert (await blocked).status == "stored"


async def test_restart_keeps_chain_state(db_url: str, central_key: Ed25519PrivateKey) -> None:
    hall = FakeHall("hall-01", seed=15)
    hall.play(60)
    store = await open_store(db_url)
    await register(store, hall)
    await Ingestor(store, central_key, StepClock()).handle(hall.topic, hall.batch(1, 30))
    await store.close()

    store = await open_store(db_url)
    try:
        ingestor = Ingestor(store, central_key, StepClock())
        record = await store.halls.get_hall(hall.hall)
        assert record is not None and (record.last_seq, record.last_hash) == (30, hall.events[29].hash)
        assert (await ingestor.handle(hall.topic, hall.batch(1, 30))).status == "duplicate"
        assert (await ingestor.handle(hall.topic, hall.batch(31, len(hall.events)))).status == "stored"
        assert await hall_totals(store, hall.hall) == hall.total
    finally:
        await store.close()


async def test_key_replacement_takes_effect_at_once(store: Repositories, ingestor: Ingestor) -> None:
    hall = FakeHall("hall-01", seed=16)
    await register(store, hall)
    hall.play(20)
    await ingestor.handle(hall.topic, hall.batch(1, 10))
    new_key = generate_private_key()
    from protocols.sync import public_key_to_pem

    assert await store.halls.add_hall(hall.hall, public_key_to_pem(new_key.public_key()).decode(), now=1,
                                replace=True) == "replaced"
    assert (await ingestor.handle(hall.topic, hall.batch(11, 20))).status == "rejected"
    assert (await ingestor.handle(hall.topic, hall.batch(11, 20, key=new_key))).status == "stored"
    assert [e.kind for e in await store.ingest.integration_log()] == ["rejected", "manual"]


async def test_a_disabled_hall_is_refused_unread_and_its_events_are_taken_once_enabled(
        store: Repositories, ingestor: Ingestor) -> None:
    """halls disable: nothing stored, nothing acked, so the agent keeps its events; after enable the same
    batch is stored exactly once. A removed hall's stored data stays."""
    hall = FakeHall("hall-01", seed=5)
    await register(store, hall)
    hall.play(30)
    first, second = hall.batch(1, 10), hall.batch(11, len(hall.events))
    assert (await ingestor.handle(hall.topic, first)).status == "stored"
    await store.halls.set_hall_state("hall-01", "disabled", now=1)
    refused = await ingestor.handle(hall.topic, second)
    assert (refused.status, refused.publish) == ("rejected", ()) and "disabled" in refused.detail
    assert (await store.halls.get_hall("hall-01")).last_seq == 10
    await store.halls.set_hall_state("hall-01", "active", now=2)
    assert (await ingestor.handle(hall.topic, second)).status == "stored"
    assert (await store.halls.get_hall("hall-01")).last_seq == len(hall.events)
    before = await store.reports.ggr("device")
    await store.halls.set_hall_state("hall-01", "removed", now=3)
    assert (await ingestor.handle(hall.topic, hall.batch(1, 10))).status == "rejected"
    assert await store.reports.ggr("device") == before and before
    assert [r.detail for r in await store.ingest.integration_log(kind="manual")] == [   # newest first
        "hall active → removed", "hall disabled → active", "hall active → disabled"]


async def test_log_flood_is_throttled(store: Repositories, central_key: Ed25519PrivateKey) -> None:
    ingestor = Ingestor(store, central_key, StepClock(), log_burst=5)
    hall = FakeHall("hall-01", seed=17)
    await register(store, hall)
    for i in range(50):
        assert (await ingestor.handle(hall.topic, b"junk%d" % i)).status == "format_error"
    assert len(await store.ingest.integration_log(limit=1000)) == 5
    assert ingestor.log_rows_suppressed == 45


async def test_missed_records_reach_the_integration_log_once(store: Repositories, ingestor: Ingestor) -> None:
    """A hall's ``missed`` record (meters moved more than its events said) is money an operator must find:
    it is counted, and logged as ``missed`` with its device, once even when the batch is replayed."""
    hall = FakeHall("hall-09", seed=9)
    await register(store, hall)
    hall.play(30)
    hall._append("egm-002", "integration", {"kind": "missed", "bets": 70, "wins": 0, "rounds": 2,
                                            "reason": "unreported", "detail": {"bets": 70, "rounds": 2}})
    hall.play(10)
    payload = hall.batch(1, len(hall.events))
    assert (await ingestor.handle(hall.topic, payload)).status == "stored"
    assert (await ingestor.handle(hall.topic, payload)).status == "duplicate"
    (entry,) = await store.ingest.integration_log(kind="missed")
    assert entry.hall == "hall-09" and entry.device == "egm-002" and "'bets': 70" in entry.detail
    assert await hall_totals(store, hall.hall) == hall.total


class _FlakyLog:
    """The real store, except that its first integration-log write fails as SQLite's MISUSE once did."""

    def __init__(self, store: Repositories) -> None:
        self._store, self.failures = store, 1

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    async def log(self, entries: list) -> None:
        if self.failures:
            self.failures -= 1
            raise sqlite3.InterfaceError("bad parameter or other API misuse")
        await self._store.ingest.log(entries)


async def test_a_failed_integration_log_write_is_retried_and_the_row_kept(
        store: Repositories, central_key: Ed25519PrivateKey) -> None:
    hall = FakeHall("hall-a", seed=44)
    await register(store, hall)
    ingestor = Ingestor(_FlakyLog(store), central_key, StepClock())  # type: ignore[arg-type]
    outcome = await ingestor.handle(hall.topic, b"{not json")
    assert outcome.status == "format_error" and outcome.logged
    (row,) = await store.ingest.integration_log(hall="hall-a", kind="format_error")
    assert "Malformed" in row.detail


class _CountingPreparer:
    """The verifying child's interface, done in-process: counts the payloads handed to it."""

    def __init__(self) -> None:
        self.calls = 0

    async def prepare(self, payload: bytes, pem: str, hall: str, central_time: int,
                      rule: DayRule = UTC_MIDNIGHT) -> Verified | tuple[str, str]:
        self.calls += 1
        return decode_verify_stage(payload, public_key_from_pem(pem.encode()), hall, central_time, rule)


async def test_a_payload_over_the_size_limit_is_refused_unread_and_the_hall_goes_on(
        store: Repositories, central_key: Ed25519PrivateKey) -> None:
    hall = FakeHall("hall-big", seed=45)
    await register(store, hall)
    hall.play(100)
    good = hall.batch(1, len(hall.events))
    oversize = good + b" " * (MAX_MESSAGE_BYTES + 1 - len(good))  # still valid JSON: the same signed batch
    preparer = _CountingPreparer()
    ingestor = Ingestor(store, central_key, StepClock(), preparer=preparer)
    outcome = await ingestor.handle(hall.topic, oversize)
    assert outcome.status == "format_error" and not outcome.publish and outcome.stored == 0
    assert preparer.calls == 0  # never decoded nor handed to the verifying child
    (row,) = await store.ingest.integration_log(hall=hall.hall, kind="format_error")
    assert row.detail == f"payload of {MAX_MESSAGE_BYTES + 1} bytes exceeds the limit of {MAX_MESSAGE_BYTES}"
    assert await store.ingest.events(hall=hall.hall) == []
    assert (await store.halls.get_hall(hall.hall)).last_seq == 0  # type: ignore[union-attr]
    # the hall's next (legitimate) batch is stored and acked as usual
    outcome = await ingestor.handle(hall.topic, good)
    assert outcome.status == "stored" and ack_of(outcome, central_key, hall.hall).acked_through_seq == len(hall.events)
    assert await hall_totals(store, hall.hall) == hall.total


async def test_a_game_id_holding_a_nul_is_stored_and_counted_on_either_backend(
        store: Repositories, ingestor: Ingestor) -> None:
    """A signed game id with U+0000 made its batch fail on every resend on PostgreSQL (text cannot hold
    it), and the hall's later events waited behind it for ever. Its rollup key is spelled ``\\u0000``."""
    hall = FakeHall("hall-nul", seed=3)
    await register(store, hall)
    hall.play(10)
    hall._append("egm-001", "game.bet", {"amount": 70, "currency": "EUR", "game": "g\x00x", "denom": 1})
    hall._append("egm-001", "game.ended", {"game": "g\x00x", "bet": 70, "win": 0})
    hall.play(10)
    for _, _, payload in hall.batches(8):
        assert (await ingestor.handle(hall.topic, payload)).status == "stored"
    assert await hall_totals(store, hall.hall) == hall.total
    games = {r.key: r for r in await store.reports.ggr("game")}
    assert (games["g\\u0000x"].bets, games["g\\u0000x"].rounds) == (70, 1)
    assert len(await store.ingest.events(hall=hall.hall, limit=1000)) == len(hall.events)
    assert [e["data"]["game"] for e in await store.ingest.events(hall=hall.hall, limit=1000)
            if e["data"].get("game") == "g\x00x"] == ["g\x00x", "g\x00x"]   # the event itself is unchanged
