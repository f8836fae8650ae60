"""The game catalog: matching what machines report to catalog games, desired vs detected configuration,
and the catalog API (providers, games, placements, availability) over a real store fed by the real
ingestor, with roles, hall scopes, validation and the audit trail."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from central import catalog as cat
from central.api import PREFIX
from central.catalog import CatalogGame, Detected, DetectedGame, LimitRule, Placement
from central.ingest import Ingestor
from central.repos import Repositories

from .builders import FakeHall
from .conftest import register
from .test_api import Api, _serve

# --- helpers shared with test_rules and test_reports_provider_hold ----------------------------------


def identity(games: list[tuple[int, str, str, int, int]], enabled: list[int], serial: str = "SN1") -> dict[str, Any]:
    """A ``device.status`` identity as the agent's normalizer emits it (LP 1F/53/56):
    games as (number, SAS game id, paytable id, denomination cents, max bet credits)."""
    return {"status": "identity", "game_id": games[0][1] if games else "", "serial": serial,
            "paytable_id": games[0][2] if games else "", "sas_version": "602", "accounting_denomination_cents": 1,
            "enabled_games": enabled, "rte": True,
            "games": [{"number": n, "game_id": g, "paytable_id": pt, "denomination_cents": d, "max_bet": mb}
                      for n, g, pt, d, mb in games]}


def rounds(hall: FakeHall, device: str, number: str, count: int, bet: int, win_every: int = 0, win: int = 0) -> None:
    """``count`` rounds of ``bet`` on SAS game ``number``; every ``win_every``-th round wins ``win``."""
    for i in range(1, count + 1):
        hall._append(device, "game.bet", {"amount": bet, "currency": "EUR", "game": number})
        won = win if win_every and i % win_every == 0 else 0
        if won:
            hall._append(device, "game.win", {"amount": won, "currency": "EUR", "game": number, "paid_by": "machine"})
        hall._append(device, "game.ended", {"game": number, "bet": bet, "win": won})


async def push(store: Repositories, ingestor: Ingestor, hall: FakeHall) -> None:
    """Ingest every event of ``hall`` that central does not hold yet, as signed batches."""
    record = await store.halls.get_hall(hall.hall)
    assert record is not None
    for _, _, payload in hall.batches(500, start=record.last_seq + 1):
        assert (await ingestor.handle(hall.topic, payload)).status == "stored"


async def put(api: Api, route: str, body: Any, *, role: str = "admin", halls: tuple[str, ...] | None = None,
              status: int = 200) -> Any:
    response = await api.client.put(PREFIX + route, json=body,
                                    headers={"Authorization": f"Bearer {await api.key(role, halls)}"})
    assert response.content_type == "application/json"
    got = await response.json()
    assert response.status == status, got
    return got


GAME = {"provider": "novo", "name": "Fruit Fiesta", "category": "slot", "rtp_bp": 9600, "min_bet": 10,
        "max_bet": 500, "sas_game_id": "FF", "paytable_id": "P00196"}


async def seed_catalog(api: Api) -> None:
    """Two providers, three games; fruits and poker carry the ids a machine reports."""
    await put(api, "/catalog/providers/novo", {"name": "Novo Games"}, status=201)
    await put(api, "/catalog/providers/acme", {"name": "Acme Play"}, status=201)
    await put(api, "/catalog/games/fruits", GAME, status=201)
    await put(api, "/catalog/games/poker", {**GAME, "provider": "acme", "name": "Poker", "category": "card",
                                             "rtp_bp": 9800, "sas_game_id": "PK", "paytable_id": "P00298"},
              status=201)
    await put(api, "/catalog/games/roulette", {**GAME, "provider": "acme", "name": "Roulette",
                                               "category": "table", "rtp_bp": 9730, "sas_game_id": "RL",
                                               "paytable_id": "P00397"}, status=201)


@pytest.fixture
async def api(store: Repositories) -> AsyncIterator[Api]:
    async for a in _serve(store):
        yield a


# --- pure logic ---------------------------------------------------------------------------------------
FRUITS = CatalogGame("fruits", "novo", "Fruit Fiesta", "slot", 9600, "active", 10, 500, "FF", "P00196")
POKER = CatalogGame("poker", "acme", "Poker", "card", 9800, "active", 10, 500, "PK", "P00298")
ROULETTE = CatalogGame("roulette", "acme", "Roulette", "table", 9730, "inactive", 10, 500, "RL", "P00397")
CATALOG = [FRUITS, POKER, ROULETTE]


def test_parse_identity_reads_the_agents_fields_and_skips_what_it_cannot() -> None:
    data = identity([(1, "FF", "P00196", 1, 100), (2, "PK", "P00298", 5, 20)], [1])
    data["games"].append({"number": "3", "max_bet": 1})  # malformed: skipped, not fatal
    got = cat.parse_identity("h", "egm-001", 7, data)
    assert got is not None and got.serial == "SN1" and got.enabled_games == {1}
    assert [(g.number, g.game_id, g.paytable_id, g.max_bet_minor) for g in got.games] == [
        (1, "FF", "P00196", 100), (2, "PK", "P00298", 100)]
    assert cat.parse_identity("h", "d", 7, {"status": "online", "online": True}) is None


def test_match_needs_game_id_and_paytable_and_refuses_ambiguity() -> None:
    seen = DetectedGame(1, "PK", "P00298", 1, 10)
    assert cat.match(seen, CATALOG) == POKER
    assert cat.match(DetectedGame(1, "XX", "P00298", 1, 10), CATALOG) is None  # same paytable, other game
    twin = CatalogGame("poker2", "novo", "Poker II", "card", 9800, "active", 10, 500, "PK", "P00298")
    assert cat.match(seen, [*CATALOG, twin]) is None


def test_placements_win_over_detection_in_the_game_map() -> None:
    detected = Detected("h", "egm-001", 1, "S", (DetectedGame(1, "PK", "P00298", 1, 10),
                                                 DetectedGame(2, "FF", "P00196", 1, 10)), frozenset({1, 2}))
    gmap = cat.game_map(CATALOG, [Placement("h", "egm-001", 1, "roulette")], [detected])
    assert gmap.get("h", "egm-001", "1") == ROULETTE   # HQ's placement says roulette
    assert gmap.get("h", "egm-001", "2") == FRUITS     # unplaced: matched by its identity
    assert gmap.get("h", "egm-001", "3") is None and gmap.get("other", "egm-001", "2") is None


def test_differences_list_every_mismatch_by_game_number() -> None:
    placed = [Placement("h", "d", 1, "fruits"), Placement("h", "d", 2, "poker"),
              Placement("h", "d", 3, "roulette", enabled=True), Placement("h", "d", 5, "fruits", enabled=False)]
    detected = Detected("h", "d", 1, "S", (
        DetectedGame(1, "FF", "P00196", 1, 100),     # as desired
        DetectedGame(2, "PK", "P00299", 1, 100),     # another paytable, and disabled on the machine
        DetectedGame(4, "ZZ", "Z1", 1, 100),         # unknown to the catalog
        DetectedGame(5, "FF", "P00196", 10, 60),     # should be disabled; 600 > catalog max 500
        DetectedGame(6, "PK", "P00298", 1, 10),      # a catalog game nobody placed
    ), frozenset({1, 4, 5, 6}))
    got = {(d.kind, d.number) for d in cat.differences(placed, detected, CATALOG)}
    assert got == {("paytable_mismatch", 2), ("disabled_but_desired", 2), ("missing_game", 3),
                   ("inactive_game", 3), ("unknown_game", 4), ("enabled_but_not_desired", 5),
                   ("max_bet_over_catalog", 5), ("unexpected_game", 6)}
    in_sync = Detected("h", "d", 1, "S", (DetectedGame(1, "FF", "P00196", 1, 100),), frozenset({1}))
    assert cat.differences([Placement("h", "d", 1, "fruits")], in_sync, CATALOG) == []
    assert [d.kind for d in cat.differences(placed, None, CATALOG)] == ["no_identity"]
    assert cat.differences([], None, CATALOG) == []


def test_limits_apply_only_in_their_scope() -> None:
    detected = Detected("h1", "d", 1, "S", (DetectedGame(1, "FF", "P00196", 2, 100),   # 200 minor units
                                             DetectedGame(2, "PK", "P00298", 1, 150)), frozenset({1, 2}))
    limits = [LimitRule("all", 180), LimitRule("acme-only", 100, provider="acme"),
              LimitRule("other-hall", 1, halls=("h2",)), LimitRule("roulette", 1, game="roulette")]
    got = {(d.number, d.rule) for d in cat.differences([], detected, CATALOG, limits) if d.kind == "max_bet_over_limit"}
    assert got == {(1, "all"), (2, "acme-only")}
    gmap = cat.game_map(CATALOG, [], [detected])
    assert [(d.device, g.number) for d, g in cat.over_limit(limits[1], [detected], gmap)] == [("d", 2)]


def test_hold_in_basis_points_rounds_half_away_from_zero() -> None:
    assert cat.hold_bp(3, 2) == 3333 and cat.hold_bp(3, 1) == 6667 and cat.hold_bp(3, 4) == -3333
    assert cat.hold_bp(200, 199) == 50 and cat.hold_bp(0, 0) is None


@pytest.mark.parametrize("n", [1, 2, 3, 999, 1000, 10_000, 123_457, 10**6, 10**9])
def test_hold_band_is_the_exact_integer_ceiling(n: int) -> None:
    band = cat.hold_band_bp(n)
    top = cat.HOLD_Z * cat.HOLD_SIGMA_BP
    assert band * band * n >= top * top > (band - 1) * (band - 1) * n
    assert cat.hold_band_bp(10_000) == 3000 and cat.hold_band_bp(10**6) == 300


def test_check_hold_flags_only_outside_the_band_and_never_with_few_rounds() -> None:
    fair = cat.check_hold(bets=1_000_000, wins=960_500, rounds=1_000_000, rtp_bp=9600)
    assert (fair.actual_bp, fair.theoretical_bp, fair.deviation_bp, fair.anomaly) == (395, 400, -5, False)
    tight = cat.check_hold(bets=1_000_000, wins=900_000, rounds=1_000_000, rtp_bp=9600)
    assert tight.anomaly and tight.deviation_bp == 600 and tight.band_bp == 300 and "above" in tight.reason
    few = cat.check_hold(bets=1000, wins=0, rounds=999, rtp_bp=9600)
    assert not few.anomaly and "too few rounds" in few.reason
    assert not cat.check_hold(1000, 0, 10**6, None).anomaly


# --- API ----------------------------------------------------------------------------------------------
async def test_providers_and_games_are_validated_stored_and_audited(api: Api) -> None:
    await seed_catalog(api)
    providers = (await api.get("/catalog/providers", role="viewer"))["rows"]
    assert [(x["id"], x["name"], x["status"]) for x in providers] == [("acme", "Acme Play", "active"),
                                                                      ("novo", "Novo Games", "active")]
    game = await api.get("/catalog/games/fruits", role="regulator")
    assert game == {"id": "fruits", **GAME, "status": "active"}
    assert [g["id"] for g in (await api.get("/catalog/games", provider="acme"))["rows"]] == ["poker", "roulette"]

    changed = await put(api, "/catalog/games/fruits", {**GAME, "rtp_bp": 9612, "status": "inactive"},
                        role="operator")
    code, inactive, _ = await api.raw("/catalog/games", await api.key(), status="inactive")  # the filter
    assert changed["rtp_bp"] == 9612 and code == 200 and inactive["rows"] == [changed]
    entries = [e for e in await api.store.audit.audit(action="catalog.game.update")]
    assert len(entries) == 1 and entries[0].target == "catalog/game/fruits"
    assert (entries[0].before["rtp_bp"], entries[0].after["rtp_bp"]) == (9600, 9612)
    assert entries[0].actor == (await api.key("operator")).split("_")[1]
    assert len(await api.store.audit.audit(action="catalog.game.create")) == 3
    await put(api, "/catalog/games/fruits", changed, role="operator")  # no change: no audit row
    assert len(await api.store.audit.audit(action="catalog.game.update")) == 1
    await api.get("/catalog/games/nope", status=404)


@pytest.mark.parametrize(("body", "word"), [
    ({**GAME, "rtp_bp": 10_001}, "rtp_bp"), ({**GAME, "rtp_bp": 96.5}, "rtp_bp"), ({**GAME, "rtp_bp": True}, "rtp_bp"),
    ({**GAME, "min_bet": -1}, "min_bet"), ({**GAME, "min_bet": 600}, "greater than max_bet"),
    ({**GAME, "max_bet": "500"}, "max_bet"), ({**GAME, "provider": "ghost"}, "not in the catalog"),
    ({**GAME, "provider": "no/slash"}, "provider"), ({**GAME, "status": "gone"}, "status"),
    ({**GAME, "colour": "red"}, "colour"), ({**GAME, "name": ""}, "name"), ([1, 2], "JSON object"),
])
async def test_bad_games_are_400_naming_the_field(api: Api, body: Any, word: str) -> None:
    await put(api, "/catalog/providers/novo", {"name": "Novo Games"}, status=201)
    got = await put(api, "/catalog/games/fruits", body, status=400)
    assert got["error"]["code"] == "bad_request" and word in got["error"]["message"]
    assert (await api.get("/catalog/games"))["rows"] == []


async def test_who_may_change_the_catalog(api: Api) -> None:
    for role in ("viewer", "technician", "regulator"):
        await put(api, "/catalog/providers/novo", {"name": "N"}, role=role, status=403)
    got = await put(api, "/catalog/providers/novo", {"name": "N"}, role="operator", halls=("hall-a",), status=403)
    assert "network-wide" in got["error"]["message"]
    await put(api, "/catalog/providers/bad id", {"name": "N"}, status=400)
    await put(api, "/catalog/providers/novo", {"name": "N", "status": "sleeping"}, status=400)


async def test_desired_vs_detected_per_device_from_real_identity_events(
        api: Api, store: Repositories, ingestor: Ingestor) -> None:
    await seed_catalog(api)
    a = FakeHall("hall-a", seed=3)
    await register(store, a)
    a._append("egm-001", "device.status", identity([(1, "FF", "P00196", 1, 100), (2, "PK", "P00298", 1, 100)],
                                                   [1, 2]))
    a._append("egm-002", "device.status", identity([(1, "FF", "P00196", 1, 100)], [1], serial="OLD"))
    a._append("egm-002", "device.status", {"status": "online", "online": True})
    a._append("egm-002", "device.status", identity([(1, "FF", "P00197", 1, 100), (3, "ZZ", "Z", 1, 1)], [],
                                                   serial="NEW"))  # the latest identity counts
    await push(store, ingestor, a)
    await put(api, "/catalog/placements/hall-a/egm-001", {"games": [{"number": 1, "game": "fruits"},
                                                                   {"number": 2, "game": "poker"}]},
              role="operator")
    await put(api, "/catalog/placements/hall-a/egm-002", {"games": [{"number": 1, "game": "fruits"},
                                                                   {"number": 2, "game": "roulette"}]})
    await put(api, "/catalog/placements/hall-a/egm-003", {"games": [{"number": 1, "game": "poker"}]})

    rows = {r["device"]: r for r in (await api.get("/catalog/devices", role="technician"))["rows"]}
    assert rows["egm-001"]["in_sync"] and rows["egm-001"]["differences"] == []
    assert [g["catalog_game"] for g in rows["egm-001"]["detected"]["games"]] == ["fruits", "poker"]
    two = rows["egm-002"]
    assert two["detected"]["serial"] == "NEW" and not two["in_sync"]
    assert {(d["kind"], d["number"]) for d in two["differences"]} == {
        ("paytable_mismatch", 1), ("disabled_but_desired", 1), ("missing_game", 2), ("unknown_game", 3)}
    assert [d["kind"] for d in rows["egm-003"]["differences"]] == ["no_identity"]

    avail = await api.get("/catalog/availability", role="viewer")
    per_hall = {(r["hall"], r["game"]): (r["provider"], r["devices"], r["available"]) for r in avail["halls"]}
    assert per_hall == {("hall-a", "fruits"): ("novo", 2, 1), ("hall-a", "poker"): ("acme", 2, 2),
                        ("hall-a", "roulette"): ("acme", 1, 0)}
    egm2 = next(d for d in avail["devices"] if d["device"] == "egm-002")
    assert [(g["number"], g["game"], g["available"]) for g in egm2["games"]] == [
        (1, "fruits", False), (2, "roulette", False), (3, None, False)]


async def test_placements_are_validated_scoped_and_audited(api: Api, store: Repositories) -> None:
    await seed_catalog(api)
    await register(store, FakeHall("hall-a"), FakeHall("hall-b"))
    route = "/catalog/placements/hall-a/egm-001"
    for body, word in [({"games": [{"number": 0, "game": "fruits"}]}, "number"),
                       ({"games": [{"number": 1, "game": "ghost"}]}, "not in the catalog"),
                       ({"games": [{"number": 1, "game": "fruits"}, {"number": 1, "game": "poker"}]}, "once"),
                       ({"games": [{"number": 1, "game": "fruits", "enabled": "yes"}]}, "enabled"),
                       ({"games": "fruits"}, "games"), ({"games": [], "x": 1}, "x")]:
        got = await put(api, route, body, status=400)
        assert word in got["error"]["message"], body
    got = await put(api, "/catalog/placements/hall-z/egm-001", {"games": []}, status=400)
    assert "not registered" in got["error"]["message"]
    await put(api, "/catalog/placements/hall-b/egm-001", {"games": []}, role="operator", halls=("hall-a",),
              status=403)
    await put(api, route, {"games": [{"number": 2, "game": "poker", "enabled": False}]}, role="operator",
              halls=("hall-a",))
    await put(api, route, {"games": [{"number": 1, "game": "fruits"}]})
    entries = await store.audit.audit(action="catalog.placements.update")
    assert [(e.target, e.before, e.after) for e in entries] == [
        ("hall/hall-a/device/egm-001", None, [{"number": 2, "game": "poker", "enabled": False}]),
        ("hall/hall-a/device/egm-001", [{"number": 2, "game": "poker", "enabled": False}],
         [{"number": 1, "game": "fruits", "enabled": True}])]
    # a hall-scoped key sees only its halls
    await put(api, "/catalog/placements/hall-b/egm-009", {"games": [{"number": 1, "game": "poker"}]})
    scoped = await api.get("/catalog/devices", role="technician", halls=("hall-a",))
    assert {(r["hall"], r["device"]) for r in scoped["rows"]} == {("hall-a", "egm-001")}
    await api.get("/catalog/devices", role="technician", halls=("hall-a",), hall="hall-b", status=403)


# --- every catalog route × every role (the design's roles, restated independently) ----------------------
READ = {"admin", "operator", "viewer", "regulator"}
EDIT = {"admin", "operator"}
STATUS = {"admin", "operator", "viewer", "technician"}
MY_ROUTES: dict[str, tuple[set[str], str, str, Any, int]] = {
    # route: (roles allowed, method, concrete path, body, success status)
    "GET /catalog/providers": (READ, "GET", "/catalog/providers", None, 200),
    "PUT /catalog/providers/{id}": (EDIT, "PUT", "/catalog/providers/novo", {"name": "Novo Games"}, 200),
    "GET /catalog/games": (READ, "GET", "/catalog/games", None, 200),
    "GET /catalog/games/{id}": (READ, "GET", "/catalog/games/fruits", None, 200),
    "PUT /catalog/games/{id}": (EDIT, "PUT", "/catalog/games/fruits", GAME, 200),
    "PUT /catalog/placements/{hall}/{device}": (EDIT, "PUT", "/catalog/placements/hall-a/egm-001",
                                                {"games": [{"number": 1, "game": "fruits"}]}, 200),
    "GET /catalog/availability": (STATUS, "GET", "/catalog/availability", None, 200),
    "GET /catalog/devices": (STATUS, "GET", "/catalog/devices", None, 200),
    "POST /rules": (EDIT, "POST", "/rules", {"kind": "max_bet", "max_bet": 100}, 202),
    "GET /rules": ({"admin", "operator", "viewer"}, "GET", "/rules", None, 200),
    "GET /rules/{id}": ({"admin", "operator", "viewer"}, "GET", "/rules/{rule}", None, 200),
    "POST /rules/{id}/revoke": (EDIT, "POST", "/rules/{rule}/revoke", {}, 200),
    "GET /reports/providers": (READ, "GET", "/reports/providers", None, 200),
    "GET /reports/hold": (READ, "GET", "/reports/hold", None, 200),
}


def test_the_route_table_has_exactly_these_catalog_routes() -> None:
    from central.api import ROUTE_ROLES, document

    mine = {r: roles for r, roles in ROUTE_ROLES.items()
            if r.split(" ", 1)[1].startswith(("/catalog", "/rules", "/reports/providers", "/reports/hold"))}
    assert {r: set(roles or ()) for r, roles in mine.items()} == {r: v[0] for r, v in MY_ROUTES.items()}
    paths = document()["paths"]
    for route in MY_ROUTES:
        method, path = route.split(" ", 1)
        op = paths[path][method.lower()]
        assert op["x-roles"] == sorted(MY_ROUTES[route][0]) and {"401", "403"} <= set(op["responses"])


@pytest.mark.parametrize("role", ["admin", "operator", "viewer", "technician", "regulator"])
async def test_every_catalog_route_for_every_role(api: Api, store: Repositories, role: str) -> None:
    await seed_catalog(api)
    await register(store, FakeHall("hall-a"))
    rule = await api.post("/rules", {"kind": "max_bet", "max_bet": 1})
    key = await api.key(role)
    for route, (roles, method, path, body, ok) in MY_ROUTES.items():
        response = await api.client.request(method, PREFIX + path.replace("{rule}", rule["id"]), json=body,
                                            headers={"Authorization": f"Bearer {key}"})
        got = await response.json()
        assert response.status == (ok if role in roles else 403), (route, role, got)
        response = await api.client.request(method, PREFIX + path.replace("{rule}", rule["id"]), json=body)
        assert response.status == 401, route
