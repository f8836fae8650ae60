"""The HTTP API over a real SQLite store fed by the real ingestor: reports to the cent, roles, scopes, errors."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from central.api import PREFIX, ROUTE_ROLES, build_app, document
from central.api import app as api_app
from central.api import params as api_params
from central.apikeys import create_api_key, new_key
from central.ingest import Ingestor
from central.repos import Repositories
from central.repos.halls import ROLES
from central.repos.ingest import LOG_KINDS, LogEntry
from protocols.sync import fingerprint, generate_private_key
from protocols.sync.money import ZERO, Contribution, contribution
from tests.keys import key_scope

from .builders import T0, FakeHall
from .conftest import register

RFC3339_US = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z\Z")

# The roles table of design.md ("Roles"), restated independently of central.api.roles.
EXPECTED_ROLES: dict[str, set[str] | None] = {
    "GET /health": None,
    "GET /openapi.json": None,
    "GET /reports/ggr": {"admin", "operator", "viewer", "regulator"},
    "GET /devices": {"admin", "operator", "viewer", "technician"},
    "GET /halls": {"admin", "operator", "viewer", "technician"},
    "GET /events": {"admin", "regulator"},
    "GET /integration-log": {"admin", "technician", "regulator"},
    "POST /commands": {"admin", "operator"},
    "GET /commands/{id}": {"admin", "operator", "viewer", "technician"},
}
CORE = sorted(EXPECTED_ROLES)
"""The routes of central/api/app.py; every feature module's routes are walked role by role in its own
tests (test_catalog, test_rules, test_monitor, test_reconcile, test_audit, test_export…)."""
PROTECTED = sorted(route for route in CORE if EXPECTED_ROLES[route] is not None)
READ_REPORTS = {"admin", "operator", "viewer", "regulator"}
STATUS = {"admin", "operator", "viewer", "technician"}
EDIT = {"admin", "operator"}
EXPECTED_ROLES |= {
    # issue 04: catalog, rules, provider and hold reports (operators edit the catalog; design.md)
    "GET /catalog/providers": READ_REPORTS, "GET /catalog/games": READ_REPORTS,
    "GET /catalog/games/{id}": READ_REPORTS, "GET /catalog/availability": STATUS, "GET /catalog/devices": STATUS,
    "PUT /catalog/providers/{id}": EDIT, "PUT /catalog/games/{id}": EDIT,
    "PUT /catalog/placements/{hall}/{device}": EDIT,
    "POST /rules": EDIT, "GET /rules": {"admin", "operator", "viewer"},
    "GET /rules/{id}": {"admin", "operator", "viewer"},
    "POST /rules/{id}/revoke": EDIT,
    "GET /reports/providers": READ_REPORTS, "GET /reports/hold": READ_REPORTS,
    "GET /reports/reconciliation": READ_REPORTS,
    # monitoring: alerts are status; acknowledging is for those who act on them
    "GET /alerts": STATUS, "POST /alerts/{id}/ack": {"admin", "operator"},
    # regulator evidence: audit and export (no viewer: design.md)
    "GET /audit": {"admin", "regulator"}, "GET /export": {"admin", "regulator"},
    # issue 05 dashboard: the floor is device status; whoami is every key's own role
    "GET /floor": STATUS, "GET /whoami": {"admin", "operator", "viewer", "technician", "regulator"},
    # issue 07: hourly charts are money (reports); a hall's gaming day is finance's unit: admin only
    "GET /reports/hourly": READ_REPORTS, "PUT /halls/{hall}/settings": {"admin"},
}
COMMAND_HALL = FakeHall("hall-cmd", seed=77)


class FakePublisher:
    """Records what the API publishes; ``fail`` makes the next publishes raise it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.fail: Exception | None = None

    async def __call__(self, topic_name: str, payload: bytes) -> None:
        if self.fail is not None:
            raise self.fail
        self.sent.append((topic_name, payload))


class ManualClock:
    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class Api:
    """A test client of the app plus helpers to mint keys and GET JSON."""

    def __init__(self, client: TestClient, store: Repositories, clock: ManualClock,
                 publisher: FakePublisher | None = None, central_key: Any = None) -> None:
        self.client = client
        self.store = store
        self.clock = clock
        self.publisher = publisher
        self.central_key = central_key
        self._keys: dict[tuple[str, tuple[str, ...] | None], str] = {}

    async def key(self, role: str = "admin", halls: tuple[str, ...] | None = None) -> str:
        if (role, halls) not in self._keys:
            scope = await key_scope(self.store, role, halls)
            self._keys[(role, halls)] = (await create_api_key(self.store.halls, role, scope, now=T0))[1]
        return self._keys[(role, halls)]

    async def raw(self, route: str, key: str | None = None, headers: Mapping[str, str] | None = None,
                  **query: Any) -> tuple[int, Any, Mapping[str, str]]:
        hdrs = dict(headers or {})
        if key is not None:
            hdrs["Authorization"] = f"Bearer {key}"
        response = await self.client.get(PREFIX + route, params={k: str(v) for k, v in query.items()},
                                         headers=hdrs)
        assert response.content_type == "application/json"
        return response.status, await response.json(), response.headers

    async def get(self, route: str, *, role: str = "admin", halls: tuple[str, ...] | None = None,
                  status: int = 200, **query: Any) -> Any:
        code, body, _ = await self.raw(route, await self.key(role, halls), **query)
        assert code == status, body
        return body

    async def post(self, route: str, body: Any, *, role: str = "admin", halls: tuple[str, ...] | None = None,
                   status: int = 202, headers: Mapping[str, str] | None = None) -> Any:
        hdrs = {"Authorization": f"Bearer {await self.key(role, halls)}", **(headers or {})}
        response = await self.client.post(PREFIX + route, json=body, headers=hdrs)
        assert response.content_type == "application/json"
        got = await response.json()
        assert response.status == status, got
        return got

    async def command_hall(self) -> str:
        if await self.store.halls.get_hall(COMMAND_HALL.hall) is None:
            await register(self.store, COMMAND_HALL)
        return COMMAND_HALL.hall

    async def call(self, route: str, key: str | None = None,
                   headers: Mapping[str, str] | None = None) -> tuple[int, Any, Mapping[str, str]]:
        """A valid request for ``route`` (``"METHOD /path"``): commands get a registered hall and a real id."""
        method, path = route.split(" ", 1)
        hdrs = dict(headers or {})
        if key is not None:
            hdrs["Authorization"] = f"Bearer {key}"
        if route == "POST /commands":
            body = {"hall": await self.command_hall(), "device": "egm-001", "action": "disable_machine"}
            response = await self.client.post(PREFIX + path, json=body, headers=hdrs)
            assert response.content_type == "application/json"
            return response.status, await response.json(), response.headers
        if route == "GET /commands/{id}":
            created = await self.post("/commands", {"hall": await self.command_hall(), "device": "egm-001",
                                                    "action": "enable_machine"})
            path = f"/commands/{created['id']}"
        assert method == "GET", route
        return await self.raw(path, headers=hdrs)


async def _serve(store: Repositories, **kwargs: Any) -> AsyncIterator[Api]:
    clock = ManualClock()
    publisher = FakePublisher()
    central_key = generate_private_key()
    kwargs.setdefault("command_publisher", publisher)
    kwargs.setdefault("central_key", central_key)
    app = build_app(store, currency="EUR", clock=clock, **kwargs)
    async with TestClient(TestServer(app)) as client:
        yield Api(client, store, clock, publisher, central_key)


@pytest.fixture
async def api(store: Repositories) -> AsyncIterator[Api]:
    async for a in _serve(store):
        yield a


async def _fill(store: Repositories, ingestor: Ingestor) -> tuple[FakeHall, FakeHall]:
    a, b = FakeHall("hall-a", seed=31), FakeHall("hall-b", seed=32, devices=2)
    await register(store, a, b)
    a.play(500)
    b.play(200)
    for hall in (a, b):
        for _, _, payload in hall.batches(64):
            assert (await ingestor.handle(hall.topic, payload)).status == "stored"
    return a, b


def _row(c: Contribution) -> dict[str, int]:
    return {"bets": c.bets, "wins": c.wins, "ggr": c.ggr, "rounds": c.rounds, "cash_in": c.cash_in,
            "cash_out": c.cash_out}


def _money(row: Mapping[str, Any]) -> dict[str, int]:
    return {k: row[k] for k in ("bets", "wins", "ggr", "rounds", "cash_in", "cash_out")}


def _truth_by(halls: tuple[FakeHall, ...], key_of: Any) -> dict[str, dict[str, int]]:
    """Sum every event's contribution under ``key_of(hall, event)``; all-zero groups are dropped."""
    sums: dict[str, Contribution] = {}
    for hall in halls:
        for event in hall.events:
            key = key_of(hall, event)
            sums[key] = sums.get(key, ZERO) + contribution(event.type, event.data)
    return {k: _row(c) for k, c in sums.items() if c != ZERO}


def _utc_day(micros: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=micros // 86_400_000_000)).isoformat()


# --- reports ---------------------------------------------------------------------------------------
async def test_ggr_equals_what_the_halls_sent_per_device_game_hall_day_and_provider(
        api: Api, store: Repositories, ingestor: Ingestor) -> None:
    a, b = await _fill(store, ingestor)
    halls = (a, b)

    body = await api.get("/reports/ggr")  # group_by defaults to device
    assert body["currency"] == "EUR" and body["group_by"] == "device"
    got = {(r["hall"], r["key"]): _money(r) for r in body["rows"]}
    want = {(h.hall, device): _row(c) for h in halls for device, c in h.per_device.items()}
    assert got == want
    for r in body["rows"]:
        assert r["ggr"] == r["bets"] - r["wins"]

    def game(_: FakeHall, e: Any) -> str:
        return e.data["game"] if isinstance(e.data.get("game"), str) else ""

    cases = {
        "game": _truth_by(halls, game),
        "hall": {h.hall: _row(h.total) for h in halls},
        "day": _truth_by(halls, lambda _, e: _utc_day(e.agent_time)),
        "provider": {"unassigned": _row(a.total + b.total)},
        "network": {"network": _row(a.total + b.total)},
    }
    for group_by, expected in cases.items():
        rows = (await api.get("/reports/ggr", group_by=group_by))["rows"]
        assert {r["key"]: _money(r) for r in rows} == expected, group_by
    assert len(cases["day"]) > 1

    # A one-day window and a one-hall filter give exactly that slice of the truth.
    first_day = min(cases["day"])
    one_day = _truth_by((a,), lambda _, e: "x" if _utc_day(e.agent_time) == first_day else "other")["x"]
    rows = (await api.get("/reports/ggr", group_by="hall", hall="hall-a", **{"from": first_day, "to": first_day}))
    assert [(r["key"], _money(r)) for r in rows["rows"]] == [("hall-a", one_day)]
    rows = (await api.get("/reports/ggr", group_by="device", hall="hall-b"))["rows"]
    assert {r["key"]: _money(r) for r in rows} == {d: _row(c) for d, c in b.per_device.items()}
    rows = (await api.get("/reports/ggr", group_by="network", hall="hall-b"))["rows"]
    assert [(r["key"], _money(r)) for r in rows] == [("network", _row(b.total))]
    assert (await api.get("/reports/ggr", group_by="network", **{"from": "2000-01-01", "to": "2000-01-01"}))[
        "rows"] == []


async def test_provider_report_of_nothing_is_empty(api: Api) -> None:
    assert (await api.get("/reports/ggr", group_by="provider"))["rows"] == []


# --- devices, halls, events, integration log ------------------------------------------------------
async def test_devices_list_times_as_rfc3339_and_micros(api: Api, store: Repositories, ingestor: Ingestor) -> None:
    a, b = await _fill(store, ingestor)
    rows = (await api.get("/devices"))["rows"]
    assert [(r["hall"], r["id"]) for r in rows] == sorted((h.hall, d) for h in (a, b) for d in h.per_device)
    for r in rows:
        hall = a if r["hall"] == "hall-a" else b
        mine = [e for e in hall.events if e.device == r["id"]]
        statuses = [e.data["online"] for e in mine if e.type == "device.status"]
        assert r["kind"] == "egm" and r["enabled"] is True
        assert r["online"] is (statuses[-1] if statuses else None)
        assert r["last_seen_us"] == max(e.agent_time for e in mine) and r["last_seq"] == mine[-1].seq
        assert r["first_seen_us"] == min(e.agent_time for e in mine)
        assert RFC3339_US.match(r["last_seen"]) and RFC3339_US.match(r["first_seen"])
        assert r["last_seen"] == api_params.rfc3339(r["last_seen_us"])
    assert {r["hall"] for r in (await api.get("/devices", hall="hall-b"))["rows"]} == {"hall-b"}
    assert (await api.get("/devices", hall="hall-zz"))["rows"] == []


def test_rfc3339_round_trip() -> None:
    assert api_params.rfc3339(T0) == "2026-01-01T00:00:00.000000Z"
    assert api_params.rfc3339(T0 + 1) == "2026-01-01T00:00:00.000001Z"
    q = {"t": "2026-01-01T01:00:00.5+01:00", "u": str(T0 + 7), "z": "2026-01-01T00:00:00.000007Z"}
    assert api_params.instant(q, "t") == T0 + 500_000
    assert api_params.instant(q, "u") == api_params.instant(q, "z") == T0 + 7


async def test_halls_show_presence_and_ignore_stale_statuses(api: Api, store: Repositories) -> None:
    a, b = FakeHall("hall-a"), FakeHall("hall-b")
    await register(store, a, b)

    async def hall_a() -> dict[str, Any]:
        rows = {r["id"]: r for r in (await api.get("/halls"))["rows"]}
        assert set(rows) == {"hall-a", "hall-b"}
        assert rows["hall-b"]["online"] is None and rows["hall-b"]["status_at"] is None
        return rows["hall-a"]

    row = await hall_a()
    assert (row["online"], row["session"], row["status_at"]) == (None, None, None)
    assert row["fingerprint"] == fingerprint(a.key.public_key()) and row["last_seq"] == 0
    assert row["added_at"] == "2026-01-01T00:00:00.000000Z"

    connect1, connect2 = T0 + 10_000_000, T0 + 60_000_000
    assert await store.halls.set_presence("hall-a", online=True, session=1, at=connect1 + 5)
    row = await hall_a()
    assert (row["online"], row["session"], row["status_at_us"]) == (True, 1, connect1 + 5)
    assert row["status_at"] == "2026-01-01T00:00:10.000005Z"
    # The agent reconnects (session 2) before the broker delivers session 1's last will.
    assert await store.halls.set_presence("hall-a", online=True, session=2, at=connect2 + 5)
    assert not await store.halls.set_presence("hall-a", online=False, session=1, at=connect1)
    row = await hall_a()
    assert (row["online"], row["session"]) == (True, 2)
    # Session 2's own will (built at connect time, so older than its online status) marks it offline...
    assert await store.halls.set_presence("hall-a", online=False, session=2, at=connect2)
    assert (await hall_a())["online"] is False
    # ...and a redelivered online status of the ended session does not bring it back.
    assert not await store.halls.set_presence("hall-a", online=True, session=2, at=connect2 + 5)
    assert (await hall_a())["online"] is False
    assert not await store.halls.set_presence("hall-zz", online=True, session=9, at=T0)


async def test_events_page_through_a_hall_with_after_seq(api: Api, store: Repositories, ingestor: Ingestor) -> None:
    a, b = await _fill(store, ingestor)
    seen: list[dict[str, Any]] = []
    query: dict[str, Any] = {"hall": "hall-a", "limit": 37}
    pages = 0
    while True:
        body = await api.get("/events", **query)
        seen += body["rows"]
        pages += 1
        if body["next_after_seq"] is None:
            break
        assert len(body["rows"]) == 37 and body["next_after_seq"] == body["rows"][-1]["seq"]
        query["after_seq"] = body["next_after_seq"]
    assert pages == len(a.events) // 37 + 1
    assert [e["seq"] for e in seen] == list(range(1, len(a.events) + 1))
    for got, sent in zip(seen, a.events, strict=True):
        assert (got["hash"], got["prev_hash"], got["data"], got["type"], got["device"], got["agent_time"]) == (
            sent.hash, sent.prev_hash, sent.data, sent.type, sent.device, sent.agent_time)
        assert got["central_time"] > 0

    # from/to as RFC 3339 or as integer microseconds select the same [from, to) window.
    lo, hi = a.events[10].agent_time, a.events[20].agent_time
    by_micros = await api.get("/events", hall="hall-a", **{"from": lo, "to": hi})
    by_text = await api.get("/events", hall="hall-a", **{"from": api_params.rfc3339(lo), "to": api_params.rfc3339(hi)})
    assert [e["seq"] for e in by_micros["rows"]] == [e["seq"] for e in by_text["rows"]] == list(range(11, 21))
    assert by_micros["next_after_seq"] is None

    bets = await api.get("/events", hall="hall-a", type="game.bet", device="egm-002", limit=1000)
    assert [e["seq"] for e in bets["rows"]] == [e.seq for e in a.events
                                               if e.type == "game.bet" and e.device == "egm-002"]
    # Without hall= the cursor is (hall, seq): paging crosses from one hall into the next (issue 16: it
    # used to stop after the first page with 13,000 events left).
    everything: list[tuple[str, int]] = []
    query = {"limit": 50}
    while True:
        body = await api.get("/events", **query)
        everything += [(e["hall"], e["seq"]) for e in body["rows"]]
        if body["next_after_seq"] is None:
            assert body["next_after_hall"] is None and len(body["rows"]) < 50
            break
        query = {"limit": 50, "after_hall": body["next_after_hall"], "after_seq": body["next_after_seq"]}
    assert everything == [("hall-a", e.seq) for e in a.events] + [("hall-b", e.seq) for e in b.events]
    status, body, _h = await api.raw("/events", await api.key(), after_seq="3")
    assert status == 400 and "after_hall" in body["error"]["message"]


async def test_integration_log_filters_by_kind(
        api: Api, store: Repositories, ingestor: Ingestor) -> None:
    hall = FakeHall("hall-a", seed=40)
    await register(store, hall)
    hall.play(20)
    payload = hall.batch(1, len(hall.events))
    assert (await ingestor.handle(hall.topic, b"\x00not a batch")).status == "format_error"
    assert (await ingestor.handle(hall.topic, payload)).status == "stored"
    assert (await ingestor.handle(hall.topic, payload)).status == "duplicate"

    (row,) = (await api.get("/integration-log", kind="format_error"))["rows"]
    assert (row["hall"], row["kind"], row["device"]) == ("hall-a", "format_error", None)
    assert RFC3339_US.match(row["time"]) and row["time"] == api_params.rfc3339(row["time_us"])
    (dup,) = (await api.get("/integration-log", kind="duplicate", hall="hall-a"))["rows"]
    assert "already stored" in dup["detail"]
    everything = (await api.get("/integration-log"))["rows"]
    assert [r["kind"] for r in everything] == ["duplicate", "format_error"]  # newest first
    assert len((await api.get("/integration-log", limit=1))["rows"]) == 1
    assert (await api.get("/integration-log", kind="missed"))["rows"] == []
    assert (await api.get("/integration-log", hall="hall-b"))["rows"] == []


async def test_integration_log_filters_by_device_and_period(api: Api, store: Repositories) -> None:
    """A technician looks for one machine's trouble yesterday: device and [from, to) narrow the log."""
    day = 86_400_000_000
    t0 = 1_780_000_000_000_000
    await store.ingest.log([
        LogEntry(kind="missed", detail="egm-1 yesterday", time=t0, hall="hall-a", device="egm-1"),
        LogEntry(kind="missed", detail="egm-2 yesterday", time=t0 + 1, hall="hall-a", device="egm-2"),
        LogEntry(kind="missed", detail="egm-1 today", time=t0 + day, hall="hall-a", device="egm-1"),
        LogEntry(kind="rejected", detail="no device", time=t0 + 2, hall="hall-a"),
    ])
    rows = (await api.get("/integration-log", device="egm-1"))["rows"]
    assert [r["detail"] for r in rows] == ["egm-1 today", "egm-1 yesterday"]
    rows = (await api.get("/integration-log", device="egm-1", **{"from": str(t0), "to": str(t0 + day)}))["rows"]
    assert [r["detail"] for r in rows] == ["egm-1 yesterday"]
    rows = (await api.get("/integration-log", **{"from": api_params.rfc3339(t0 + 2)}))["rows"]
    assert [r["detail"] for r in rows] == ["no device", "egm-1 today"]   # newest written first
    key = await api.key("technician")
    status, body, _ = await api.raw("/integration-log", key, **{"from": "2026-01-02T00:00:00Z",
                                                              "to": "2026-01-01T00:00:00Z"})
    assert status == 400 and body["error"]["code"] == "bad_request"
    status, body, _ = await api.raw("/integration-log", key, **{"from": "yesterday"})
    assert status == 400 and "from" in body["error"]["message"]


# --- auth and roles --------------------------------------------------------------------------------
def test_route_table_is_the_design_table() -> None:
    assert {route: (None if roles is None else set(roles)) for route, roles in ROUTE_ROLES.items()} == EXPECTED_ROLES


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", CORE)
async def test_every_route_for_every_role(api: Api, route: str, role: str) -> None:
    await api.command_hall()   # registered before the key, so a technician's key is scoped to it
    status, body, _ = await api.call(route, await api.key(role))
    allowed = EXPECTED_ROLES[route]
    if allowed is None or role in allowed:
        assert status == (202 if route.startswith("POST") else 200), body
    else:
        assert status == 403
        assert body["error"]["code"] == "forbidden" and role in body["error"]["message"]


@pytest.mark.parametrize("route", PROTECTED)
async def test_no_key_or_a_bad_key_is_401(api: Api, route: str) -> None:
    good = await api.key("admin")
    key_id = good.split("_")[1]
    bad_secret = f"hsk_{key_id}_" + ("A" * 43 if not good.endswith("A" * 43) else "B" * 43)
    attempts: list[dict[str, str]] = [
        {}, {"Authorization": ""}, {"Authorization": "Bearer"}, {"Authorization": f"Basic {good}"},
        {"Authorization": "Bearer nonsense"}, {"Authorization": f"Bearer {bad_secret}"},
        {"Authorization": f"Bearer hsk_0000000000000000_{'x' * 43}"}, {"X-Api-Key": good},
    ]
    for headers in attempts:
        status, body, response_headers = await api.call(route, headers=headers)
        assert status == 401, headers
        assert body["error"]["code"] == "unauthorized" and body["error"]["message"]
        assert response_headers["WWW-Authenticate"].startswith("Bearer")
    status, _, _ = await api.call(route, headers={"Authorization": f"bearer  {good} "})
    assert status == (202 if route.startswith("POST") else 200)


@pytest.mark.parametrize("route", sorted(r for r, roles in ROUTE_ROLES.items() if roles is None))
async def test_public_routes_need_no_key(api: Api, route: str) -> None:
    status, body, _ = await api.raw(route.split(" ", 1)[1])
    assert status == 200 and body


async def test_a_key_created_while_running_works_at_once(api: Api) -> None:
    key, record = new_key("viewer", None, now=T0)
    status, _, _ = await api.raw("/devices", key)
    assert status == 401  # not stored yet, and the failure must not be remembered
    await api.store.halls.add_api_key(record)
    status, body, _ = await api.raw("/devices", key)
    assert status == 200 and body == {"rows": []}
    _, other = await create_api_key(api.store.halls, "regulator", None, now=T0)
    assert (await api.raw("/events", other))[0] == 200
    api.clock.now += 60_000_000  # past the positive cache: still fine
    assert (await api.raw("/events", other))[0] == 200


async def test_hall_scoped_key_sees_only_its_halls(api: Api, store: Repositories, ingestor: Ingestor) -> None:
    a, b = await _fill(store, ingestor)
    assert await store.halls.set_presence("hall-a", online=True, session=1, at=T0)
    assert (await ingestor.handle(a.topic, b"junk")).status == "format_error"
    assert (await ingestor.handle(b.topic, b"junk")).status == "format_error"
    mine = ("hall-b",)

    ggr = (await api.get("/reports/ggr", group_by="hall", halls=mine))["rows"]
    assert [(r["key"], _money(r)) for r in ggr] == [("hall-b", _row(b.total))]
    provider = (await api.get("/reports/ggr", group_by="provider", halls=mine))["rows"]
    assert [_money(r) for r in provider] == [_row(b.total)]
    assert {r["hall"] for r in (await api.get("/devices", halls=mine))["rows"]} == {"hall-b"}
    assert [r["id"] for r in (await api.get("/halls", halls=mine))["rows"]] == ["hall-b"]
    events = (await api.get("/events", halls=mine, limit=1000))["rows"]
    assert {e["hall"] for e in events} == {"hall-b"} and len(events) == len(b.events)
    assert [r["hall"] for r in (await api.get("/integration-log", halls=mine))["rows"]] == ["hall-b"]
    assert (await api.get("/devices", halls=mine, hall="hall-b"))["rows"]

    for route in ("/reports/ggr", "/devices", "/events", "/integration-log"):
        body = await api.get(route, halls=mine, hall="hall-a", status=403)
        assert body["error"]["code"] == "forbidden" and "hall-a" in body["error"]["message"]
    # A scoped technician: devices of its hall only, and still no reports.
    assert {r["hall"] for r in (await api.get("/devices", role="technician", halls=mine))["rows"]} == {"hall-b"}
    await api.get("/reports/ggr", role="technician", halls=mine, status=403)


@pytest.mark.parametrize(("route", "query", "param"), [
    ("/reports/ggr", {"group_by": "casino"}, "group_by"),
    ("/reports/ggr", {"from": "2026-13-01"}, "from"),
    ("/reports/ggr", {"to": "01/02/2026"}, "to"),
    ("/reports/ggr", {"from": "20260101"}, "from"),
    ("/reports/ggr", {"from": "2026-01-02", "to": "2026-01-01"}, "from"),
    ("/events", {"from": "yesterday"}, "from"),
    ("/events", {"to": "2026-01-01T00:00:00"}, "to"),  # RFC 3339 needs an offset
    ("/events", {"from": "-5"}, "from"),
    ("/events", {"hall": "hall-a", "after_seq": "-1"}, "after_seq"),
    ("/events", {"hall": "hall-a", "after_seq": "1.5"}, "after_seq"),
    ("/events", {"after_seq": "10"}, "after_seq"),
    ("/events", {"limit": "0"}, "limit"),
    ("/events", {"limit": "1001"}, "limit"),
    ("/events", {"limit": "ten"}, "limit"),
    ("/integration-log", {"kind": "gossip"}, "kind"),
    ("/integration-log", {"limit": "0"}, "limit"),
])
async def test_bad_parameters_are_400_naming_the_parameter(
        api: Api, route: str, query: dict[str, str], param: str) -> None:
    body = await api.get(route, status=400, **query)
    assert body["error"]["code"] == "bad_request"
    assert body["error"]["message"].startswith(param) or f" {param} " in body["error"]["message"]


async def test_unknown_parameters_are_ignored_and_limits_accepted(api: Api) -> None:
    assert (await api.get("/devices", colour="blue"))["rows"] == []
    assert (await api.get("/events", limit=1000, hall="", device=""))["rows"] == []
    for kind in LOG_KINDS:
        assert (await api.get("/integration-log", kind=kind))["rows"] == []


async def test_unknown_route_and_method_are_json(api: Api) -> None:
    status, body, _ = await api.raw("/nope", await api.key())
    assert status == 404 and body["error"]["code"] == "not_found"
    response = await api.client.post(PREFIX + "/devices", headers={"Authorization": f"Bearer {await api.key()}"})
    assert response.status == 405 and (await response.json())["error"]["code"] == "method_not_allowed"


class _BrokenStore:
    """Delegates to a real store, except that listing devices fails with a secret in the message."""

    def __init__(self, inner: Repositories) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def devices(self, **_: Any) -> Any:
        raise RuntimeError("disk on fire at /secret/path")


async def test_unexpected_errors_are_a_bare_500_and_a_log_line(
        store: Repositories, monkeypatch: pytest.MonkeyPatch) -> None:
    async for api in _serve(_BrokenStore(store)):  # type: ignore[arg-type]
        key = await api.key("viewer")
        with capture_logs() as logs:
            # A fresh lazy logger, in case another test configured structlog to cache loggers on first use.
            monkeypatch.setattr(api_app, "log", structlog.get_logger("central.api"))
            response = await api.client.get(PREFIX + "/devices", headers={"Authorization": f"Bearer {key}"})
            text = await response.text()
        assert response.status == 500
        assert "secret" not in text and "Traceback" not in text
        assert (await response.json())["error"]["code"] == "internal"
        (entry,) = [e for e in logs if e["log_level"] == "error"]
        assert entry["event"] == "api_error" and entry["path"] == PREFIX + "/devices"
        assert (await api.raw("/halls", key))[0] == 200  # the app keeps serving


async def test_health_with_presence(store: Repositories) -> None:
    async for api in _serve(store, presence=lambda: {"mqtt": "connected"}):
        status, body, _ = await api.raw("/health")
        assert (status, body) == (200, {"status": "ok", "presence": {"mqtt": "connected"}})


# --- OpenAPI ---------------------------------------------------------------------------------------
def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


async def test_openapi_document_matches_the_app(api: Api) -> None:
    status, doc, _ = await api.raw("/openapi.json")
    assert status == 200 and doc == document()
    assert doc["openapi"] == "3.0.3" and doc["info"]["title"] and doc["info"]["version"]
    assert doc["servers"] == [{"url": PREFIX}]
    assert doc["components"]["securitySchemes"]["bearer"] == {**doc["components"]["securitySchemes"]["bearer"],
                                                              "type": "http", "scheme": "bearer"}
    assert doc["security"] == [{"bearer": []}]

    app = build_app(api.store, currency="EUR")
    registered = {f"{r.method} {r.resource.canonical[len(PREFIX):]}" for r in app.router.routes()
                  if r.resource is not None and r.resource.canonical.startswith(PREFIX)}  # not the dashboard
    documented = {f"{method.upper()} {path}" for path, item in doc["paths"].items() for method in item}
    assert registered == documented == set(ROUTE_ROLES)

    for path, item in doc["paths"].items():
        for method, op in item.items():
            route = f"{method.upper()} {path}"
            assert op["operationId"] and op["summary"] and {"200", "202"} & set(op["responses"]), route
            for code, response in op["responses"].items():
                assert re.fullmatch(r"[1-5]\d\d", code) and ("$ref" in response or "description" in response)
            for param in op.get("parameters", []):
                if "$ref" not in param:
                    assert {"name", "in", "schema"} <= set(param), route
                    assert param["in"] == "query" or (param["in"] == "path" and f"{{{param['name']}}}" in path)
            if ROUTE_ROLES[route] is None:
                assert op["security"] == [] and op["x-roles"] == ["public"]
            else:
                assert "security" not in op and {"401", "403"} <= set(op["responses"]), route
                assert op["x-roles"] == sorted(ROUTE_ROLES[route])  # type: ignore[arg-type]
    for ref in _refs(doc):
        assert ref.startswith("#/"), ref
        node: Any = doc
        for part in ref[2:].split("/"):
            node = node[part]
        assert isinstance(node, dict), ref
    # The parameters the handlers read are the documented ones.
    names = {(path, p.get("name") or p["$ref"].rsplit("/", 1)[1]) for path, item in doc["paths"].items()
             for op in item.values() for p in op.get("parameters", [])}
    names = {(path, name) for path, name in names if f"GET {path}" in CORE or f"POST {path}" in CORE}
    assert names == {("/reports/ggr", n) for n in ("group_by", "from", "to", "hall")} | {
        ("/devices", "hall")} | {("/events", n) for n in ("hall", "device", "type", "from", "to", "after_seq",
                                                           "after_hall", "limit")} | {
        ("/integration-log", n) for n in ("hall", "kind", "device", "from", "to", "limit")} | {("/commands/{id}", "id")}
    body_schema = doc["paths"]["/commands"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert _resolve(doc, body_schema)["properties"].keys() == {"hall", "device", "action", "game", "ttl_seconds"}


def _resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    for part in node["$ref"][2:].split("/"):
        doc = doc[part]
    return doc


async def test_app_does_not_close_the_store(store: Repositories) -> None:
    async for api in _serve(store):
        assert (await api.raw("/health"))[0] == 200
    assert await store.halls.halls() == []


async def test_build_app_returns_an_aiohttp_application(store: Repositories) -> None:
    assert isinstance(build_app(store, currency="EUR"), web.Application)


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/commands"), ("PUT", "/catalog/games/g-1"), ("POST", "/rules"), ("PUT", "/halls/h1/settings")])
@pytest.mark.parametrize("nesting", [33, 100_000])
async def test_deeply_nested_json_is_a_400_with_the_reason(api: Api, method: str, path: str, nesting: int) -> None:
    """~200 KB of brackets made the JSON parser give up with a RecursionError: a 500. It is bad input."""
    raw = b'{"hall": ' + b"[" * nesting + b"]" * nesting + b"}"
    headers = {"Authorization": f"Bearer {await api.key()}", "Content-Type": "application/json"}
    response = await api.client.request(method, PREFIX + path, data=raw, headers=headers)
    body = await response.json()
    assert response.status == 400, body
    assert body["error"]["code"] == "bad_request"
    assert "nests arrays or objects more than 32 deep" in body["error"]["message"]
    # a body of ordinary depth still reaches the handler (which judges its fields)
    response = await api.client.request(method, PREFIX + path, data=b'{"hall": [[1]]}', headers=headers)
    assert "nests" not in (await response.text())


async def test_a_disabled_or_removed_hall_takes_no_commands_and_halls_says_why(api: Api) -> None:
    hall = await api.command_hall()
    order = {"hall": hall, "device": "egm-001", "action": "disable_machine"}
    await api.post("/commands", order)
    for state in ("disabled", "removed"):
        await api.store.halls.set_hall_state(hall, state, now=T0)
        body = await api.post("/commands", order, status=409)
        assert body["error"]["code"] == "conflict" and state in body["error"]["message"]
        (row,) = (await api.get("/halls"))["rows"]
        assert (row["id"], row["state"]) == (hall, state)


async def test_event_routes_take_gaming_days_in_the_reports_date_grammar(api: Api, store: Repositories,
                                                                         ingestor: Ingestor) -> None:
    """Issue 16: /reports/ggr took YYYY-MM-DD, /export and /events refused it. A date is the whole gaming
    day of the halls in scope (to included); halls on different gaming days need hall= or instants."""
    from protocols.sync.gamingday import DayRule

    a, b = await _fill(store, ingestor)
    by_day = await api.get("/events", limit=1000, **{"from": "2026-01-01", "to": "2026-01-01"})
    by_instant = await api.get("/events", limit=1000, **{"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"})
    day_end = T0 + 86_400_000_000   # T0 is 2026-01-01T00:00:00Z
    truth = [(h.hall, e.seq) for h in (a, b) for e in h.events if T0 <= e.agent_time < day_end]
    assert by_day["rows"] == by_instant["rows"] and [(e["hall"], e["seq"]) for e in by_day["rows"]] == truth
    logged = await api.get("/integration-log", **{"from": "2026-01-01", "to": "today"})
    assert isinstance(logged["rows"], list)
    kyiv = DayRule("Europe/Kyiv", "06:00")
    await store.halls.set_day_rule("hall-b", kyiv, now=T0)
    status, body, _ = await api.raw("/events", await api.key(), **{"from": "2026-01-01"})
    assert status == 400 and "Europe/Kyiv 06:00" in body["error"]["message"] and "hall=" in body["error"]["message"]
    start, stop = kyiv.bounds(dt.date(2025, 12, 31))
    own = await api.get("/events", hall="hall-b", limit=1000, **{"from": "2025-12-31", "to": "2025-12-31"})
    assert [e["seq"] for e in own["rows"]] == [e.seq for e in b.events if start <= e.agent_time < stop]
    exported = await api.client.get(PREFIX + "/export", params={"hall": "hall-a", "from": "2026-01-01",
                                                                "to": "2026-01-01"},
                                    headers={"Authorization": f"Bearer {await api.key('regulator')}"})
    lines = (await exported.read()).splitlines()
    assert exported.status == 200 and len(lines) - 1 == sum(1 for h, _ in truth if h == "hall-a")


@pytest.mark.parametrize(("method", "path", "query", "body"), [
    ("GET", "/audit", {"action": "a\x00b"}, None),                  # a filter: PostgreSQL raised a 500
    ("GET", "/audit", {"hall\x00": "x"}, None),
    ("GET", "/catalog/games/g%00-1", {}, None),                      # a path id
    ("PUT", "/catalog/providers/prov-a", {}, {"name": "Provider\x00A"}),
    ("POST", "/commands", {}, {"hall": "h1", "device": "egm\x00", "action": "disable_machine"}),
])
async def test_a_nul_character_anywhere_in_a_request_is_a_400_on_either_backend(
        api: Api, method: str, path: str, query: dict[str, str], body: Any) -> None:
    """Schemathesis found it: U+0000 in a query value reached PostgreSQL, which cannot hold it in text (a
    500); SQLite would have stored it. Either way it is bad input, refused before any store call."""
    headers = {"Authorization": f"Bearer {await api.key()}"}
    response = await api.client.request(method, PREFIX + path, params=query, json=body, headers=headers)
    got = await response.json()
    assert response.status == 400, got
    assert got["error"]["code"] == "bad_request" and "NUL character" in got["error"]["message"]
    assert await api.store.catalog.catalog_providers() == []   # nothing was stored
