"""Reports that use the game catalog, over events ingested by the real ingestor: GGR by provider (totals
always equal the network total), the provider report per location, and actual hold vs theoretical RTP
with anomalies flagged only when the rounds say so."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from central.api.ggr_labels import OUTSIDE_GAMES, UNASSIGNED_LABEL
from central.ingest import Ingestor
from central.repos import Repositories
from protocols.sync.money import ZERO, Contribution, contribution

from .builders import FakeHall
from .conftest import register
from .test_api import Api, _serve
from .test_catalog import identity, push, put, rounds, seed_catalog

# Where each (hall, device, SAS game number) should land, written out by hand: by detection (hall-a
# egm-001), by placement (hall-a egm-002, hall-b egm-001), nowhere (an unknown game; money outside games).
EXPECTED_PROVIDER = {("hall-a", "egm-001", "1"): "novo", ("hall-a", "egm-001", "2"): "acme",
                     ("hall-a", "egm-002", "1"): "acme", ("hall-a", "egm-003", "1"): "unassigned",
                     ("hall-b", "egm-001", "5"): "novo"}


@pytest.fixture
async def api(store: Repositories) -> AsyncIterator[Api]:
    async for a in _serve(store):
        yield a


async def _floor(api: Api, store: Repositories, ingestor: Ingestor) -> tuple[FakeHall, FakeHall]:
    await seed_catalog(api)  # fruits (novo, 96.00 %), poker (acme, 98.00 %), roulette (acme, 97.30 %)
    a, b = FakeHall("hall-a", seed=11), FakeHall("hall-b", seed=12)
    await register(store, a, b)
    a._append("egm-001", "device.status", identity([(1, "FF", "P00196", 1, 100), (2, "PK", "P00298", 1, 100)],
                                                   [1, 2]))
    a._append("egm-003", "device.status", identity([(1, "ZZ", "Z00001", 1, 100)], [1]))
    b._append("egm-001", "device.status", identity([(5, "FF", "P00196", 1, 100)], []))  # fruits, disabled
    a._append("egm-001", "bill.accepted", {"amount": 5000, "currency": "EUR", "denomination": 5000})
    rounds(a, "egm-001", "1", 1200, bet=100, win_every=25, win=2400)   # exactly the 4 % theoretical hold
    rounds(a, "egm-001", "2", 1200, bet=50, win_every=2, win=200)      # pays out twice the bets: anomaly
    rounds(a, "egm-002", "1", 50, bet=100)                             # never pays, but only 50 rounds
    rounds(a, "egm-003", "1", 20, bet=10, win_every=4, win=30)
    rounds(b, "egm-001", "5", 30, bet=20, win_every=10, win=100)
    a._append("egm-001", "game.error", {"code": "20", "name": "general tilt", "category": "tilt"})
    a._append("egm-003", "game.error", {"code": "20", "name": "general tilt", "category": "tilt"})
    for hall in (a, b):
        await push(store, ingestor, hall)
    await put(api, "/catalog/placements/hall-a/egm-002", {"games": [{"number": 1, "game": "roulette"}]})
    await put(api, "/catalog/placements/hall-b/egm-001", {"games": [{"number": 5, "game": "fruits"}]})
    return a, b


def _truth(halls: tuple[FakeHall, ...], key_of: Any) -> dict[Any, Contribution]:
    sums: dict[Any, Contribution] = {}
    for hall in halls:
        for e in hall.events:
            c = contribution(e.type, e.data)
            if c != ZERO:
                key = key_of(hall.hall, e.device, e.data.get("game") or "")
                sums[key] = sums.get(key, ZERO) + c
    return sums


def _provider(hall: str, device: str, game: str) -> str:
    return EXPECTED_PROVIDER[(hall, device, game)] if game else "unassigned"


async def test_ggr_by_provider_maps_through_the_catalog_and_adds_up_to_the_network_total(
        api: Api, store: Repositories, ingestor: Ingestor) -> None:
    a, b = await _floor(api, store, ingestor)
    rows = (await api.get("/reports/ggr", group_by="provider"))["rows"]
    got = {r["key"]: (r["bets"], r["wins"], r["rounds"], r["cash_in"]) for r in rows}
    truth = _truth((a, b), _provider)
    assert got == {k: (c.bets, c.wins, c.rounds, c.cash_in) for k, c in truth.items()}
    assert set(got) == {"novo", "acme", "unassigned"}
    network = a.total + b.total
    for field in ("bets", "wins", "ggr", "rounds", "cash_in", "cash_out"):
        assert sum(r[field] for r in rows) == getattr(network, field), field
    hall_rows = (await api.get("/reports/ggr", group_by="hall"))["rows"]
    assert sum(r["ggr"] for r in hall_rows) == sum(r["ggr"] for r in rows)
    only_b = (await api.get("/reports/ggr", group_by="provider", hall="hall-b"))["rows"]
    assert [(r["key"], r["bets"]) for r in only_b] == [("novo", b.total.bets)]


async def test_ggr_labels_name_the_games_each_number_holds_by_placement_or_detection(
        api: Api, store: Repositories, ingestor: Ingestor) -> None:
    await _floor(api, store, ingestor)
    body = await api.get("/reports/ggr", group_by="game")
    labels = {r["key"]: r["label"] for r in body["rows"]}
    # game 1: fruits detected on hall-a egm-001, roulette placed on egm-002, egm-003's unknown game
    assert labels == {"": OUTSIDE_GAMES, "1": "Fruit Fiesta / Roulette / not in the catalog (game 1)",
                      "2": "Poker (game 2)", "5": "Fruit Fiesta (game 5)"}
    only_b = await api.get("/reports/ggr", group_by="game", hall="hall-b")   # named by hall-b's machines only
    assert {r["key"]: r["label"] for r in only_b["rows"]} == {"5": "Fruit Fiesta (game 5)"}
    providers = await api.get("/reports/ggr", group_by="provider")
    assert {r["key"]: r["label"] for r in providers["rows"]} == {
        "novo": "Novo Games", "acme": "Acme Play", "unassigned": UNASSIGNED_LABEL}
    later = await api.get("/reports/ggr", group_by="game", **{"from": "2030-01-01"})
    assert later["rows"] == []


async def test_provider_report_per_location(api: Api, store: Repositories, ingestor: Ingestor) -> None:
    a, b = await _floor(api, store, ingestor)
    body = await api.get("/reports/providers", role="regulator")
    rows = {(r["provider"], r["hall"]): r for r in body["rows"]}
    assert set(rows) == {("novo", "hall-a"), ("acme", "hall-a"), ("unassigned", "hall-a"), ("novo", "hall-b")}
    truth = _truth((a, b), lambda h, d, g: (_provider(h, d, g), h))
    for key, row in rows.items():
        c = truth.get(key, ZERO)
        assert (row["bets"], row["payouts"], row["ggr"], row["rounds"]) == (c.bets, c.wins, c.ggr, c.rounds), key
    shape = {k: (r["games_connected"], r["devices"], r["active_games"], r["errors"], r["unavailable_games"])
             for k, r in rows.items()}
    assert shape == {("novo", "hall-a"): (1, 1, 1, 1, 0),      # fruits on egm-001, its tilt
                     ("acme", "hall-a"): (2, 2, 2, 1, 0),      # poker (egm-001) and roulette (egm-002)
                     ("unassigned", "hall-a"): (0, 0, 0, 1, 0),  # egm-003's unknown game and its tilt
                     ("novo", "hall-b"): (1, 1, 1, 0, 1)}      # fruits placed but disabled on the machine
    assert rows[("novo", "hall-a")]["name"] == "Novo Games" and body["currency"] == "EUR"

    later = await api.get("/reports/providers", **{"from": "2030-01-01"})
    for r in later["rows"]:
        assert (r["bets"], r["rounds"], r["errors"], r["active_games"]) == (0, 0, 0, 0)
    assert {(r["provider"], r["hall"], r["games_connected"]) for r in later["rows"]} == {
        ("novo", "hall-a", 1), ("acme", "hall-a", 2), ("novo", "hall-b", 1)}
    scoped = await api.get("/reports/providers", role="viewer", halls=("hall-b",))
    assert [(r["provider"], r["hall"]) for r in scoped["rows"]] == [("novo", "hall-b")]
    await api.get("/reports/providers", role="technician", status=403)
    await api.get("/reports/providers", status=400, **{"from": "2026-02-02", "to": "2026-02-01"})


async def test_hold_vs_theoretical_rtp_flags_anomalies(api: Api, store: Repositories, ingestor: Ingestor) -> None:
    a, b = await _floor(api, store, ingestor)
    body = await api.get("/reports/hold", role="regulator")
    assert body["group_by"] == "game" and body["thresholds"]["min_rounds"] == 1000
    rows = {r["key"]: r for r in body["rows"]}
    assert set(rows) == {"fruits", "poker", "roulette", "unassigned"}
    truth = _truth((a, b), lambda h, d, g: "x" if g and _provider(h, d, g) == "novo" else None)["x"]
    fruits = rows["fruits"]
    assert (fruits["bets"], fruits["wins"], fruits["rounds"]) == (truth.bets, truth.wins, truth.rounds)
    half_up = (2 * truth.ggr * 10_000 + truth.bets) // (2 * truth.bets)  # ggr > 0 here
    assert fruits["theoretical_hold_bp"] == 400 and fruits["actual_hold_bp"] == half_up
    assert not fruits["anomaly"] and fruits["reason"] == "within the band"
    poker = rows["poker"]
    assert (poker["rtp_bp"], poker["theoretical_hold_bp"], poker["actual_hold_bp"]) == (9800, 200, -10_000)
    assert poker["anomaly"] and "below" in poker["reason"] and poker["deviation_bp"] == -10_200
    assert abs(poker["deviation_bp"]) > poker["band_bp"]
    roulette = rows["roulette"]
    assert roulette["actual_hold_bp"] == 10_000 and not roulette["anomaly"] and "too few rounds" in roulette["reason"]
    assert rows["unassigned"]["theoretical_hold_bp"] is None and not rows["unassigned"]["anomaly"]

    per_device = (await api.get("/reports/hold", group_by="device"))["rows"]
    flagged = [(r["hall"], r["device"], r["number"], r["game"]) for r in per_device if r["anomaly"]]
    assert flagged == [("hall-a", "egm-001", "2", "poker")]
    assert {(r["hall"], r["device"], r["number"]) for r in per_device} == set(EXPECTED_PROVIDER)
    scoped = (await api.get("/reports/hold", group_by="device", role="viewer", halls=("hall-b",)))["rows"]
    assert [(r["device"], r["game"], r["rounds"]) for r in scoped] == [("egm-001", "fruits", 30)]
    await api.get("/reports/hold", group_by="provider", status=400)
