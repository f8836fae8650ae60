"""Meters versus events per machine and gaming day: the pure rules, then the report over HTTP on a real
SQLite store filled by ingesting signed events of machines whose true play the test knows."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from fractions import Fraction
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from central import reconcile as rc
from central.api import PREFIX, build_app
from central.api import reconciliation as reconciliation_api
from central.apikeys import create_api_key
from central.ingest import Ingestor
from central.repos import Repositories
from central.store import reports_shared
from protocols.sync import generate_private_key, public_key_to_pem
from protocols.sync.gamingday import UTC_MIDNIGHT, DayRule
from protocols.sync.money import ZERO, Contribution
from tests.keys import key_scope

from .builders import T0, Clock
from .conftest import StepClock
from .floor_model import Chain, Egm

US = 1_000_000
H = 3600 * US
DAY1 = dt.date(2026, 1, 1)
DAY2 = dt.date(2026, 1, 2)


def bp(part: int, whole: int) -> int:
    """Basis points rounded half away from zero, computed independently with exact fractions."""
    value = Fraction(part * 10_000, abs(whole))
    sign = 1 if value >= 0 else -1
    return sign * int(abs(value) + Fraction(1, 2))


# ---- pure rules ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("part", "whole"), [(1, 3), (2, 3), (-1, 3), (1, 20_000), (-1, 20_000), (3, 20_000),
                                             (-7, -9), (123_456, 1_000_000)])
def test_basis_points_are_exact_and_round_half_away_from_zero(part: int, whole: int) -> None:
    assert rc.basis_points(part, whole) == bp(part, whole)


def test_basis_points_of_nothing_is_none() -> None:
    assert rc.basis_points(5, 0) is None


def snap(seq: int, at: int, **meters: int) -> rc.Snapshot:
    return rc.Snapshot(seq, at, meters, 1)


FULL = {"coin_in": 0, "coin_out": 0, "jackpot": 0, "games_played": 0, "bills_accepted_credits": 0,
        "ticket_in_cents": 0, "ticket_out_cents": 0, "handpaid_cancelled_credits": 0}


def test_meter_delta_sums_the_meters_each_quantity_is_made_of() -> None:
    start = snap(1, T0, **FULL)
    end = snap(9, T0 + H, **{**FULL, "coin_in": 500, "coin_out": 120, "jackpot": 1000, "games_played": 7,
                             "bills_accepted_credits": 2000, "ticket_in_cents": 300, "ticket_out_cents": 450,
                             "handpaid_cancelled_credits": 50})
    delta, why = rc.meter_delta(start, end)
    assert why == ""
    assert delta == {"bets": 500, "wins": 1120, "rounds": 7, "cash_in": 2300, "cash_out": 500}


def test_a_meter_rolling_over_is_counted_through_but_going_back_is_a_reset() -> None:
    # coin in is 4 BCD bytes: 99 999 999 is its top, then 0
    rolled, _ = rc.meter_delta(snap(1, T0, **{**FULL, "coin_in": 99_999_990}),
                               snap(2, T0 + H, **{**FULL, "coin_in": 10}))
    assert rolled is not None and rolled["bets"] == 20
    reset, why = rc.meter_delta(snap(1, T0, **{**FULL, "coin_in": 5_000}), snap(2, T0 + H, **{**FULL, "coin_in": 10}))
    assert reset is None and "coin_in" in why


def test_a_quantity_missing_a_meter_is_unknown_not_zero() -> None:
    meters = {"coin_in": 0, "games_played": 0}
    delta, _ = rc.meter_delta(snap(1, T0, **meters), snap(2, T0 + H, coin_in=40, games_played=2))
    assert delta is not None
    assert (delta["bets"], delta["rounds"], delta["wins"], delta["cash_in"]) == (40, 2, None, None)


def test_days_tile_each_interval_between_snapshots_belongs_to_exactly_one_day() -> None:
    snaps = [snap(1, T0 + 1 * H, **FULL), snap(5, T0 + 20 * H, **FULL), snap(9, T0 + 26 * H, **FULL),
             snap(12, T0 + 47 * H, **FULL)]
    day1 = rc.plan_day("A", "egm", DAY1, snaps)
    day2 = rc.plan_day("A", "egm", DAY2, snaps)
    assert (day1.opening, day1.closing) == (snaps[0], snaps[1])      # first in the day, none before it
    assert (day2.opening, day2.closing) == (snaps[1], snaps[3])      # the previous day's closing opens it
    assert day1.counted == [(1, 5)] and day2.counted == [(5, 12)]
    assert rc.plan_day("A", "egm", dt.date(2026, 1, 3), snaps).closing is None


def test_a_reset_excludes_only_its_interval() -> None:
    snaps = [snap(1, T0 + H, **FULL), snap(4, T0 + 2 * H, **{**FULL, "coin_in": 90}),
             snap(8, T0 + 3 * H, **{**FULL, "coin_in": 5}), snap(11, T0 + 4 * H, **{**FULL, "coin_in": 25})]
    plan = rc.plan_day("A", "egm", DAY1, snaps)
    assert plan.counted == [(1, 4), (8, 11)] and plan.excluded == [(4, 8)]
    row = rc.judge(plan, Contribution(bets=110), ZERO, unreconciled=Contribution(bets=40))
    assert row.lines["bets"].meters == 90 + 20
    assert row.reason == "meter_reset" and row.reasons == ("exact", "meter_reset")
    # the agent's marker also excludes an interval whose meters happen to have grown again
    marked = rc.plan_day("A", "egm", DAY1, [*snaps[:2], snap(8, T0 + 3 * H, **{**FULL, "coin_in": 95})],
                         resets=rc.reset_snapshots(snaps, [9]))
    assert marked.excluded == [(4, 8)]


def test_missed_records_are_placed_by_the_snapshot_they_speak_of() -> None:
    snaps = [snap(1, T0 + H, **FULL), snap(5, T0 + 2 * H, **FULL), snap(9, T0 + 30 * H, **FULL)]
    plan = rc.plan_day("A", "egm", DAY1, snaps)
    records = [rc.MissedRecord(7, T0 + 2 * H, Contribution(bets=30)),         # written after s2, about s2
               rc.MissedRecord(10, T0 + 30 * H, Contribution(bets=1000)),     # about the next day
               rc.MissedRecord(3, None, Contribution(wins=8))]                # no meters_time: by seq
    assert rc.attribute_missed(plan, records) == Contribution(bets=30, wins=8)


# ---- the report over HTTP on ingested events ------------------------------------------------------------

@pytest.fixture
async def client(store: Repositories) -> AsyncIterator[TestClient]:
    app = build_app(store, currency="EUR", clock=Clock(T0 + 50 * H), central_key=generate_private_key())
    async with TestClient(TestServer(app)) as c:
        yield c


@pytest.fixture
def ingestor(store: Repositories) -> Ingestor:
    return Ingestor(store, generate_private_key(), StepClock(T0 + 60 * H))


async def hall(store: Repositories, name: str) -> Chain:
    chain = Chain(name)
    await store.halls.add_hall(name, public_key_to_pem(chain.key.public_key()).decode(), now=T0)
    return chain


async def report(client: TestClient, store: Repositories, role: str = "admin", halls: tuple[str, ...] | None = None,
                 status: int = 200, **query: str) -> Any:
    _, key = await create_api_key(store.halls, role, await key_scope(store, role, halls), now=T0)
    response = await client.get(PREFIX + "/reports/reconciliation", params=query,
                                headers={"Authorization": f"Bearer {key}"})
    assert response.content_type == "application/json"
    body = await response.json()
    assert response.status == status, body
    return body


def rows_by(body: Any) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(r["hall"], r["device"], r["day"]): r for r in body["rows"]}


def assert_line(line: dict[str, Any], meters: int, events: int, missed: int = 0) -> None:
    """What an auditor checks on one quantity: both sides, the variance in money and %, the residual."""
    assert (line["meters"], line["events"], line["missed"]) == (meters, events, missed)
    assert line["variance"] == meters - events
    assert line["variance_bp"] == (bp(meters - events, meters) if meters else None)
    assert line["residual"] == meters - events - missed


async def test_an_honest_machine_reconciles_exactly_each_day_and_the_days_add_up(
        store: Repositories, ingestor: Ingestor, client: TestClient) -> None:
    chain = await hall(store, "hall-a")
    egm = Egm(chain, "egm-001")
    egm.snapshot(T0 + 1 * H)
    at_open = egm.truth
    for n in range(40):
        egm.play(bet=10 * (n % 5 + 1), win=(0, 0, 20, 100)[n % 4], at=T0 + 2 * H + n * 60 * US)
    egm.bill(2000, T0 + 3 * H)
    egm.jackpot(5000, T0 + 4 * H)
    egm.ticket_out(1234, T0 + 5 * H)
    egm.snapshot(T0 + 12 * H)
    for n in range(15):
        egm.play(bet=25, win=(0, 50, 0)[n % 3], at=T0 + 13 * H + n * 60 * US)
    egm.snapshot(T0 + 23 * H, reason="gaming_day_close")
    at_close1 = egm.truth
    for n in range(10):   # after the closing snapshot of day 1: day 2's window
        egm.play(bet=40, win=(0, 80)[n % 2], at=T0 + 23 * H + (n + 1) * 60 * US)
    egm.snapshot(T0 + 30 * H)
    at_close2 = egm.truth
    await chain.flush(ingestor)

    body = await report(client, store, **{"from": "2026-01-01", "to": "2026-01-02"})
    assert body["currency"] == "EUR"
    rows = rows_by(body)
    assert set(rows) == {("hall-a", "egm-001", "2026-01-01"), ("hall-a", "egm-001", "2026-01-02")}
    for day, (before, after) in (("2026-01-01", (at_open, at_close1)), ("2026-01-02", (at_close1, at_close2))):
        row = rows[("hall-a", "egm-001", day)]
        assert row["reason"] == "exact", row
        for name in rc.QUANTITY_NAMES:
            moved = getattr(after, name) - getattr(before, name)
            assert_line(row["quantities"][name], moved, moved)
        ggr = (after.bets - before.bets) - (after.wins - before.wins)
        assert_line(row["ggr"], ggr, ggr)
    # the two days together are the whole history: nothing counted twice, nothing dropped
    total = sum(rows[("hall-a", "egm-001", d)]["quantities"]["bets"]["meters"] for d in ("2026-01-01", "2026-01-02"))
    assert total == at_close2.bets
    assert rows[("hall-a", "egm-001", "2026-01-02")]["opening"]["agent_time_us"] == T0 + 23 * H


async def test_events_the_agent_missed_show_as_variance_and_the_missed_record_explains_it(
        store: Repositories, ingestor: Ingestor, client: TestClient) -> None:
    chain = await hall(store, "hall-a")
    egm = Egm(chain, "egm-001")
    egm.snapshot(T0 + 1 * H)
    for n in range(20):
        egm.play(bet=50, win=(0, 100)[n % 2], at=T0 + 2 * H + n * 60 * US)
    lost = egm.truth
    egm.play(bet=200, win=0, at=T0 + 3 * H, report=False)      # an EGM buffer overflow ate these
    egm.play(bet=100, win=250, at=T0 + 3 * H + 60 * US, report=False)
    egm.bill(1000, T0 + 3 * H + 90 * US, report=False)
    lost = Contribution(*(getattr(egm.truth, k) - getattr(lost, k) for k in rc.QUANTITY_NAMES))
    closing = egm.snapshot(T0 + 4 * H)
    # the agent judges the gap one settle time later, naming the snapshot it is about
    egm.missed(T0 + 4 * H + 30 * US, closing.agent_time, bets=lost.bets, wins=lost.wins, rounds=lost.rounds,
               cash_in=lost.cash_in)
    egm.snapshot(T0 + 26 * H)
    await chain.flush(ingestor)

    row = rows_by(await report(client, store, **{"from": "2026-01-01", "to": "2026-01-01"}))[
        ("hall-a", "egm-001", "2026-01-01")]
    assert row["reason"] == "missed_recorded"
    truth = egm.truth
    assert_line(row["quantities"]["bets"], truth.bets, truth.bets - lost.bets, lost.bets)
    assert_line(row["quantities"]["wins"], truth.wins, truth.wins - lost.wins, lost.wins)
    assert_line(row["quantities"]["rounds"], truth.rounds, truth.rounds - lost.rounds, lost.rounds)
    assert_line(row["quantities"]["cash_in"], truth.cash_in, truth.cash_in - lost.cash_in, lost.cash_in)
    assert_line(row["ggr"], truth.ggr, truth.ggr - lost.ggr, lost.ggr)
    assert row["ggr"]["variance"] == lost.bets - lost.wins != 0


async def test_a_gap_nobody_recorded_is_unexplained_never_silent(
        store: Repositories, ingestor: Ingestor, client: TestClient) -> None:
    chain = await hall(store, "hall-a")
    egm = Egm(chain, "egm-001")
    egm.snapshot(T0 + 1 * H)
    egm.play(bet=100, win=0, at=T0 + 2 * H)
    egm.play(bet=300, win=0, at=T0 + 2 * H + 60 * US, report=False)
    egm.snapshot(T0 + 5 * H)
    await chain.flush(ingestor)

    row = rows_by(await report(client, store, **{"from": "2026-01-01"}))[("hall-a", "egm-001", "2026-01-01")]
    assert row["reason"] == "unexplained"
    assert_line(row["quantities"]["bets"], 400, 100)
    assert row["quantities"]["bets"]["residual"] == 300
    assert row["quantities"]["bets"]["variance_bp"] == 7500


async def test_events_above_the_meters_flagged_by_the_agent_say_so(
        store: Repositories, ingestor: Ingestor, client: TestClient) -> None:
    chain = await hall(store, "hall-a")
    egm = Egm(chain, "egm-001")
    egm.snapshot(T0 + 1 * H)
    egm.play(bet=100, win=0, at=T0 + 2 * H)
    egm.emit("game.bet", {"amount": 100, "currency": "EUR", "game": 1, "source": "rte"}, T0 + 2 * H + 5)  # twice
    egm.snapshot(T0 + 3 * H)
    egm.emit("integration", {"kind": "anomaly", "reason": "events_exceed_meters", "excess": {"bets": 100}},
             T0 + 3 * H + 1)
    await chain.flush(ingestor)
    row = rows_by(await report(client, store, **{"from": "2026-01-01"}))[("hall-a", "egm-001", "2026-01-01")]
    assert row["reason"] == "events_exceed_meters" and row["reasons"] == ["unexplained", "events_exceed_meters"]
    assert_line(row["quantities"]["bets"], 100, 200)
    assert row["quantities"]["bets"]["variance_bp"] == -10_000


async def test_a_game_astride_the_closing_snapshot_is_boundary_timing_and_reverses_the_next_day(
        store: Repositories, ingestor: Ingestor, client: TestClient) -> None:
    chain = await hall(store, "hall-a")
    egm = Egm(chain, "egm-001")
    egm.snapshot(T0 + 1 * H)
    egm.play(bet=100, win=0, at=T0 + 2 * H)
    # the meters already hold this game when the day-close snapshot reads them; its events arrive after it
    egm.play(bet=60, win=0, at=T0 + 23 * H + 59 * 60 * US, report=False)
    egm.snapshot(T0 + 23 * H + 59 * 60 * US + 1, reason="gaming_day_close")
    egm.emit("game.bet", {"amount": 60, "currency": "EUR", "game": 1, "source": "rte"}, T0 + 24 * H + 1)
    egm.emit("game.ended", {"game": 1, "bet": 60, "win": 0, "source": "rte"}, T0 + 24 * H + 2)
    egm.play(bet=30, win=0, at=T0 + 25 * H)
    egm.snapshot(T0 + 26 * H)
    await chain.flush(ingestor)

    rows = rows_by(await report(client, store, **{"from": "2026-01-01", "to": "2026-01-02"}))
    day1, day2 = rows[("hall-a", "egm-001", "2026-01-01")], rows[("hall-a", "egm-001", "2026-01-02")]
    assert day1["reason"] == day2["reason"] == "boundary_timing"
    assert_line(day1["quantities"]["bets"], 160, 100)
    assert_line(day2["quantities"]["bets"], 30, 90)
    assert day1["quantities"]["bets"]["variance"] + day2["quantities"]["bets"]["variance"] == 0


@pytest.mark.parametrize("listed", [True, False], ids=["unmetered_listed", "old_agent"])
async def test_an_event_written_before_a_snapshot_its_meters_lack_is_the_next_windows(
        store: Repositories, ingestor: Ingestor, client: TestClient, listed: bool) -> None:
    """A bill during the device's first meter read (its 4F answered the second poll: written before
    the snapshot, not in its meters) and a game started between two polls of a later read. The agent
    lists them as the snapshot's ``unmetered``; without that the first window, with no snapshot before
    it to widen to, was ``unexplained`` although every cent was there."""
    chain = await hall(store, "hall-a")
    egm = Egm(chain, "egm-001")
    before = dict(egm.meters)
    egm.bill(2000, T0 + 1 * H)
    egm.snapshot(T0 + 1 * H + 1, reason="connect", meters=before,
                 unmetered={"cash_in": 2000} if listed else None)
    for n in range(5):
        egm.play(bet=20, win=(0, 40)[n % 2], at=T0 + 2 * H + n * 60 * US)
    before = dict(egm.meters)
    egm.play(bet=30, win=0, at=T0 + 3 * H)
    egm.snapshot(T0 + 3 * H + 10, meters=before, unmetered={"bets": 30, "rounds": 1} if listed else None)
    egm.snapshot(T0 + 5 * H)
    await chain.flush(ingestor)
    row = rows_by(await report(client, store, **{"from": "2026-01-01"}))[("hall-a", "egm-001", "2026-01-01")]
    if not listed:
        assert row["reason"] == "unexplained" and row["quantities"]["cash_in"]["residual"] == 2000
        return
    assert row["reason"] == "exact", row
    truth = egm.truth
    assert_line(row["quantities"]["cash_in"], 2000, 2000)
    assert_line(row["quantities"]["bets"], truth.bets, truth.bets)
    assert_line(row["quantities"]["rounds"], truth.rounds, truth.rounds)


async def test_a_ram_clear_excludes_its_interval_and_shows_the_money_the_meters_cannot_check(
        store: Repositories, ingestor: Ingestor, client: TestClient) -> None:
    chain = await hall(store, "hall-a")
    egm = Egm(chain, "egm-001")
    egm.snapshot(T0 + 1 * H)
    for n in range(5):
        egm.play(bet=20, win=10, at=T0 + 2 * H + n * 60 * US)
    first = egm.truth
    second = egm.snapshot(T0 + 3 * H)
    egm.play(bet=70, win=0, at=T0 + 4 * H)           # before the clear: its meters are lost
    egm.ram_clear(T0 + 5 * H)
    egm.play(bet=30, win=0, at=T0 + 5 * H + 60 * US)   # after the clear, before the re-baseline
    reset = egm.snapshot(T0 + 6 * H, reason="event:3A")
    egm.meters_reset_marker(T0 + 6 * H)
    after_reset = egm.truth
    egm.play(bet=15, win=45, at=T0 + 7 * H)
    egm.snapshot(T0 + 8 * H)
    await chain.flush(ingestor)

    row = rows_by(await report(client, store, **{"from": "2026-01-01"}))[("hall-a", "egm-001", "2026-01-01")]
    assert row["reason"] == "meter_reset"
    assert "exact" in row["reasons"]
    assert_line(row["quantities"]["bets"], first.bets + 15, first.bets + 15)
    assert_line(row["quantities"]["wins"], first.wins + 45, first.wins + 45)
    assert row["unreconciled"]["bets"] == after_reset.bets - first.bets == 100
    assert row["excluded"] == [{"after_seq": second.seq, "through_seq": reset.seq}]


async def test_devices_without_snapshots_are_listed_with_their_money_unreconciled(
        store: Repositories, ingestor: Ingestor, client: TestClient) -> None:
    chain = await hall(store, "hall-a")
    chain.add("term-01", "bill.accepted", {"amount": 5000, "currency": "EUR", "source": "counters"}, T0 + 2 * H)
    chain.add("term-01", "game.ended", {"rounds": 3, "source": "counters"}, T0 + 2 * H + 1)
    lone = Egm(chain, "egm-009")
    lone.snapshot(T0 + 3 * H)
    await chain.flush(ingestor)
    rows = rows_by(await report(client, store, **{"from": "2026-01-01"}))
    terminal = rows[("hall-a", "term-01", "2026-01-01")]
    assert terminal["reason"] == "no_snapshot" and terminal["quantities"] == {}
    assert terminal["unreconciled"] == {"bets": 0, "wins": 0, "rounds": 3, "cash_in": 5000, "cash_out": 0}
    assert rows[("hall-a", "egm-009", "2026-01-01")]["reason"] == "single_snapshot"


async def test_filters_scopes_roles_and_bad_requests(store: Repositories, ingestor: Ingestor,
                                                     client: TestClient) -> None:
    for name in ("hall-a", "hall-b"):
        chain = await hall(store, name)
        for device in ("egm-001", "egm-002"):
            egm = Egm(chain, device)
            egm.snapshot(T0 + H)
            egm.play(bet=10, win=0, at=T0 + 2 * H)
            egm.snapshot(T0 + 3 * H)
        await chain.flush(ingestor)
    everything = rows_by(await report(client, store, **{"from": "2026-01-01"}))
    assert len(everything) == 4 and all(r["reason"] == "exact" for r in everything.values())
    only = rows_by(await report(client, store, hall="hall-b", device="egm-002", **{"from": "2026-01-01"}))
    assert set(only) == {("hall-b", "egm-002", "2026-01-01")}
    scoped = rows_by(await report(client, store, role="viewer", halls=("hall-a",), **{"from": "2026-01-01"}))
    assert {k[0] for k in scoped} == {"hall-a"}
    assert len(rows_by(await report(client, store, role="regulator", **{"from": "2026-01-01"}))) == 4
    await report(client, store, role="viewer", halls=("hall-a",), status=403, hall="hall-b")
    await report(client, store, role="technician", status=403)
    for query in ({"from": "2026-1-1"}, {"to": "yesterday"}, {"from": "2026-01-03", "to": "2026-01-01"},
                  {"from": "2026-01-01", "to": "2026-03-05"}):
        body = await report(client, store, status=400, **query)
        assert body["error"]["code"] == "bad_request"
    # the default period is today (by the API's clock: 2026-01-03), on which nothing happened
    assert (await report(client, store))["rows"] == []


async def test_pages_of_any_size_walk_the_whole_report_once(store: Repositories, ingestor: Ingestor,
                                                             client: TestClient) -> None:
    for name in ("hall-a", "hall-b"):
        chain = await hall(store, name)
        for device in ("egm-001", "egm-002", "egm-003"):
            egm = Egm(chain, device)
            egm.snapshot(T0 + H)
            for day in range(3):   # three gaming days, each closed by a snapshot
                egm.play(bet=10 + day, win=0, at=T0 + day * 24 * H + 2 * H)
                egm.snapshot(T0 + day * 24 * H + 3 * H)
        await chain.flush(ingestor)
    period = {"from": "2026-01-01", "to": "2026-01-03"}
    whole = await report(client, store, **period)
    assert len(whole["rows"]) == 18 and whole["next_after"] is None
    assert all(r["reason"] == "exact" for r in whole["rows"])
    for size in (1, 4, 7, 18):
        walked: list[dict[str, Any]] = []
        after: str | None = None
        pages = 0
        while True:
            query = {**period, "limit": str(size), **({"after": after} if after else {})}
            body = await report(client, store, **query)
            walked += body["rows"]
            pages += 1
            after = body["next_after"]
            if after is None:
                break
            assert len(body["rows"]) == size
        assert walked == whole["rows"], size   # same rows, same order, none twice
        assert pages == 18 // size + 1 if 18 % size == 0 else pages == -(-18 // size)
    for bad in ("hall-a/egm-001", "hall a/egm-001/2026-01-01", "hall-a/egm-001/2026-13-01"):
        body = await report(client, store, status=400, after=bad, **period)
        assert body["error"]["code"] == "bad_request"


# ---- the agent's own events -----------------------------------------------------------------------------

@pytest.mark.parametrize(("pace", "reason"), [(0.04, "exact"), (0.005, "missed_recorded")],
                         ids=["agent-keeps-up", "fifo-overflows"])
async def test_the_agents_real_events_reconcile_to_the_machines_truth(store: Repositories, pace: float,
                                                                       reason: str) -> None:
    """The simulated EGM, the real coordinator and normalizer (tests/agent's rig), ingested as a hall:
    the day's meters equal what the machine really did, and events plus ``missed`` records equal them."""
    from tests.agent.test_normalizer_sim import rig, scenario

    async with rig(handpay_limit=5000, ticket_limit=20_000) as r:
        await scenario(r, 1, pace=pace)
        await r.settle()
        drafts, truth = list(r.drafts), r.egm.truth
    chain = await hall(store, "hall-sim")
    for d in drafts:
        chain.add(d.device, d.type, d.data, d.agent_time)
    await chain.flush(Ingestor(store, generate_private_key()))
    days = rc.days(rc.gaming_day(drafts[0].agent_time), rc.gaming_day(drafts[-1].agent_time))  # midnight: 2
    cells = await store.reports.device_days(day_from=days[0], day_to=days[-1])
    money = {d: cells[("hall-sim", "egm-003", d.isoformat())] for d in days}
    rows = (await reconciliation_api.hall_rows(store, "hall-sim", {"egm-003": money}))["egm-003"]
    assert reason in {r.reason for r in rows}, [r.as_dict() for r in rows]
    assert {r.reason for r in rows} <= {"exact", "missed_recorded", "boundary_timing"}
    for name in rc.QUANTITY_NAMES:
        meters = sum(r.lines[name].meters or 0 for r in rows)
        assert meters == getattr(truth, name), name
        assert sum(r.lines[name].events + r.lines[name].missed for r in rows) == meters, name
    missed_bets = sum(r.lines["bets"].missed for r in rows)
    assert (missed_bets > 0) == (reason == "missed_recorded")


# ---- many devices of many halls at once: the same answer as one device at a time ---------------------

async def per_device_rows(store: Repositories, hall: str, device: str, days: list[dt.date],
                          day_money: dict[dt.date, Contribution], rule: DayRule) -> list[rc.ReconRow]:
    """The report's rows of one device as it was computed before issue 13 batched the reads per hall: a
    few store reads per device and day through the one-device store methods (the reference)."""
    start, _ = rc.day_bounds(days[0] - dt.timedelta(days=1), rule)
    _, end = rc.day_bounds(days[-1] + dt.timedelta(days=1), rule)
    snapshots = [s for s in (rc.snapshot_from_event(r.seq, r.agent_time, r.data)
                             for r in await store.reports.meter_snapshots(hall, device, time_from=start, time_to=end))
                 if s is not None]
    integration = []
    if snapshots:
        through = await store.reports.snapshot_after(hall, device, end + 24 * H)
        integration = await store.reports.device_integration_events(hall, device, after_seq=snapshots[0].seq,
                                                            through_seq=through)
    missed = [m for m in (rc.missed_from_event(r.seq, r.data) for r in integration) if m is not None]
    resets = rc.reset_snapshots(snapshots, [r.seq for r in integration if r.data.get("kind") == "meters_reset"])
    anomalies = [r.seq for r in integration if r.data.get("kind") == "anomaly"]
    out = []
    for day in days:
        plan = rc.plan_day(hall, device, day, snapshots, resets=resets, rule=rule)
        if not plan.segments:
            out.append(rc.judge(plan, ZERO, ZERO, unreconciled=day_money.get(day, ZERO)))
            continue
        events = rc.window_events(plan, await store.reports.device_money(hall, device, plan.counted))
        unreconciled = await store.reports.device_money(hall, device, plan.excluded) if plan.excluded else ZERO
        row = rc.judge(plan, events, rc.attribute_missed(plan, missed), unreconciled=unreconciled,
                       anomalies=rc.judged_in(plan, snapshots, anomalies))
        if "unexplained" in row.reasons and await reconciliation_api._timing_explains(
                store, plan, snapshots, resets, missed):
            row = rc.as_boundary_timing(row)
        out.append(row)
    return out


def many_machines(chain: Chain) -> None:
    """Nine machines and a terminal over four days, one of each case the report judges, their events
    interleaved by time as one agent writes them."""
    steps: list[tuple[int, int, Callable[[int], object]]] = []

    def at(t: int, action: Callable[[int], object]) -> None:
        steps.append((t, len(steps), action))

    egms = [Egm(chain, f"egm-{n:03d}") for n in range(1, 10)]
    honest, missing, gap, astride, cleared, doubled, late, lone, sparse = egms
    for n, egm in enumerate((honest, missing, gap, astride, cleared, doubled)):
        for k in range(17):   # a snapshot every 6 h, a game and a bill in between
            at(T0 + k * 6 * H + n * 60 * US, egm.snapshot)
            if k < 16:
                at(T0 + k * 6 * H + 2 * H + n * 60 * US,
                   lambda t, e=egm, k=k: e.play(10 * (k % 4 + 1), (0, 30)[k % 2], t))
                at(T0 + k * 6 * H + 3 * H + n * 60 * US, lambda t, e=egm: e.bill(500, t))
    at(T0 + 27 * H, lambda t: missing.play(200, 0, t, report=False))   # lost; the agent records it
    at(T0 + 30 * H + 2 * 60 * US, lambda t: missing.missed(t, T0 + 30 * H + 60 * US, bets=200, rounds=1))
    at(T0 + 52 * H, lambda t: gap.play(300, 0, t, report=False))       # lost; nobody records it
    at(T0 + 41 * H, lambda t: astride.play(60, 0, t, report=False))   # its event after the day's close
    at(T0 + 42 * H + 4 * 60 * US, lambda t: astride.emit(
        "game.bet", {"amount": 60, "currency": "EUR", "game": 1, "source": "rte"}, t))
    at(T0 + 42 * H + 5 * 60 * US, lambda t: astride.emit("game.ended", {"game": 1, "bet": 60, "win": 0,
                                                                          "source": "rte"}, t))
    at(T0 + 40 * H, cleared.ram_clear)
    at(T0 + 42 * H + 5 * 60 * US, cleared.meters_reset_marker)
    at(T0 + 62 * H, lambda t: doubled.emit("game.bet", {"amount": 100, "currency": "EUR", "game": 1,
                                                         "source": "rte"}, t))
    at(T0 + 66 * H + 6 * 60 * US, lambda t: doubled.emit(
        "integration", {"kind": "anomaly", "reason": "events_exceed_meters", "excess": {"bets": 100}}, t))
    for k in range(10, 16):   # only the last days
        at(T0 + k * 6 * H + H, late.snapshot if k % 2 == 0 else lambda t: late.play(50, 0, t))
    at(T0 + 30 * H, lone.snapshot)
    for day in (0, 3):   # a day's opening meters from before the day ahead of it
        at(T0 + day * 24 * H + 10 * H, sparse.snapshot)
        at(T0 + day * 24 * H + 11 * H, lambda t: sparse.play(70, 140, t))
    at(T0 + 3 * 24 * H + 12 * H, sparse.snapshot)
    for k in range(4):
        at(T0 + k * 24 * H + 9 * H, lambda t, k=k: chain.add("term-01", "bill.accepted",
                                                             {"amount": 1000 + k, "currency": "EUR"}, t))
    for t, _, action in sorted(steps, key=lambda s: (s[0], s[1])):
        action(t)


async def test_many_devices_of_many_halls_get_the_answer_each_device_gets_alone(
        store: Repositories, ingestor: Ingestor, client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The report reads the devices of a hall together (issue 13): on two halls (one on Kyiv days from
    06:00) of machines in every case, in pages that cut devices' days apart, every row equals the row the
    one-device reads give for the same days. The devices are named 3 to a statement (not 400), so the
    statements' chunks are cut apart too."""
    monkeypatch.setattr(reports_shared, "CHUNK", 3)
    kyiv = DayRule("Europe/Kyiv", "06:00")
    for name, rule in (("hall-a", UTC_MIDNIGHT), ("hall-b", kyiv)):
        chain = await hall(store, name)
        await store.halls.set_day_rule(name, rule, now=T0)
        many_machines(chain)
        await chain.flush(ingestor)
    rules = {"hall-a": UTC_MIDNIGHT, "hall-b": kyiv}
    cells = await store.reports.device_days(day_from=dt.date(2025, 12, 31), day_to=dt.date(2026, 1, 4))
    whole = await report(client, store, **{"from": "2025-12-31", "to": "2026-01-04"})
    reasons = {r["reason"] for r in whole["rows"] if r["hall"] == "hall-a"}
    assert reasons >= {"exact", "missed_recorded", "unexplained", "boundary_timing", "meter_reset",
                       "events_exceed_meters", "no_snapshot", "single_snapshot"}, reasons
    pages = [(size, {"from": "2025-12-31", "to": "2026-01-04"}) for size in (3, 7, 500)]
    pages += [(500, {"from": day, "to": day}) for day in ("2026-01-02", "2026-01-03", "2026-01-04")]
    for size, period in pages:
        after: str | None = None
        while True:
            body = await report(client, store, limit=str(size), **period, **({"after": after} if after else {}))
            page: dict[tuple[str, str], list[dt.date]] = {}
            for r in body["rows"]:
                page.setdefault((r["hall"], r["device"]), []).append(dt.date.fromisoformat(r["day"]))
            expected = []
            for (h, d), days in page.items():
                money = {day: cells[(h, d, day.isoformat())] for day in days}
                expected += [row.as_dict() for row in await per_device_rows(store, h, d, days, money, rules[h])]
            assert body["rows"] == expected, (size, period)
            after = body["next_after"]
            if after is None:
                break
