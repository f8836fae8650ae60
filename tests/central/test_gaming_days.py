"""Hall-local gaming days end to end on a real SQLite store: every report, hourly chart and device day
equals a naive recomputation from the events by each hall's own day (across DST changes), a change of a
hall's day re-buckets what is stored, an older file gains the new tables, and the API speaks each
hall's day ("today", settings, the zones it used)."""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from central.api import PREFIX, build_app
from central.apikeys import create_api_key
from central.ingest import Ingestor
from central.repos import Repositories
from central.repos.catalog import CatalogGame, Placement, Provider
from central.repos.reports import GROUP_BY
from central.rollup import game_of
from central.store import open_sqlite
from central.store.schema import FILL_HALL_HOURS
from protocols.sync import Event, encode_batch, generate_private_key, public_key_to_pem, topic
from protocols.sync.gamingday import UTC_MIDNIGHT, DayRule
from protocols.sync.money import ZERO, Contribution, contribution
from tests.keys import key_scope

from . import rawsql
from .builders import Clock
from .conftest import StepClock
from .floor_model import Chain, Egm

US = 1_000_000
MIN = 60 * US
H = 60 * MIN
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def at(text: str) -> int:
    return (dt.datetime.fromisoformat(text) - EPOCH) // dt.timedelta(microseconds=1)


# three halls whose days differ; the period holds the EU (25 Oct) and US (1 Nov) fall-back nights
RULES = {"hall-utc": UTC_MIDNIGHT, "hall-kyiv": DayRule("Europe/Kyiv", "06:00"),
         "hall-ny": DayRule("America/New_York", "04:30")}
START = at("2026-10-22T00:00:00+00:00")
END = at("2026-11-04T00:00:00+00:00")


def money(event: Event) -> Contribution:
    try:
        return contribution(event.type, event.data)
    except ValueError:
        return ZERO


async def register(store: Repositories, name: str) -> Chain:
    chain = Chain(name)
    await store.halls.add_hall(name, public_key_to_pem(chain.key.public_key()).decode(), now=START)
    return chain


def play_floor(chains: dict[str, Chain], seed: int) -> None:
    """Machines played at random times over the period, with bills, tickets and snapshots."""
    rnd = random.Random(seed)
    for name, chain in chains.items():
        egms = [Egm(chain, f"egm-{n:03d}") for n in range(4)]
        # keys a period read as "month minus its days outside" must get right: game 8 played on
        # 31 October only, game 9 with zero-amount bets only (on the 25th and the 31st, other machines)
        extra = [(at("2026-10-25T12:00:00+00:00"), 1, {"amount": 0, "currency": "EUR", "game": 9}),
                 (at("2026-10-31T12:00:00+00:00"), 0, {"amount": 25, "currency": "EUR", "game": 8}),
                 (at("2026-10-31T13:00:00+00:00"), 2, {"amount": 0, "currency": "EUR", "game": 9})]
        t = START + rnd.randrange(H)
        while t < END:
            while extra and t >= extra[0][0]:
                egms[extra[0][1]].emit("game.bet", extra.pop(0)[2], t)
            egm = rnd.choice(egms)
            kind = rnd.random()
            if kind < 0.8:
                egm.play(bet=rnd.choice((10, 20, 50)), win=rnd.choice((0, 0, 0, 40, 100)), at=t)
            elif kind < 0.9:
                egm.bill(rnd.choice((500, 1000, 2000)), t)
            elif kind < 0.95:
                egm.ticket_out(rnd.randrange(1, 5000), t)
            else:
                egm.snapshot(t)
            t += rnd.randrange(1, 40) * MIN
        del name


async def flush_randomly(chains: dict[str, Chain], ingestor: Ingestor, seed: int) -> None:
    rnd = random.Random(seed)
    for chain in chains.values():
        while chain.sent < len(chain.events):
            last = min(len(chain.events), chain.sent + rnd.randrange(1, 300))
            events, chain.events = chain.events, chain.events[:last]
            await chain.flush(ingestor, size=last - chain.sent)
            chain.events = events


class Truth:
    """Every aggregate recomputed from the events alone, by each hall's rule."""

    def __init__(self, chains: dict[str, Chain], rules: dict[str, DayRule]) -> None:
        self.cells: list[tuple[str, str, str, str, int, Contribution]] = []   # hall, device, game, day, hour, money
        self.snapshots: dict[tuple[str, str, str], int] = defaultdict(int)
        for name, chain in chains.items():
            rule = rules[name]
            for e in chain.events:
                day = rule.day_of(e.agent_time).isoformat()
                if e.type == "meters.snapshot":
                    self.snapshots[(name, e.device, day)] += 1
                m = money(e)
                if m is not ZERO:
                    self.cells.append((name, e.device, game_of(e.data), day, rule.hour_of(e.agent_time), m))

    def ggr(self, group_by: str, day_from: str | None, day_to: str | None) -> dict[tuple[str | None, str], tuple]:
        out: dict[tuple[str | None, str], Contribution] = {}
        for hall, device, game, day, _, m in self.cells:
            if (day_from and day < day_from) or (day_to and day > day_to):
                continue
            key = {"device": (hall, device), "game": (None, game), "hall": (None, hall), "day": (None, day),
                   "network": (None, "network")}[group_by]
            out[key] = out.get(key, ZERO) + m
        return {k: (c.bets, c.wins, c.rounds, c.cash_in, c.cash_out) for k, c in out.items()}

    def hours(self, hall: str, day: str) -> dict[int, tuple]:
        out: dict[int, Contribution] = {}
        for h, _, _, d, hour, m in self.cells:
            if h == hall and d == day:
                out[hour] = out.get(hour, ZERO) + m
        return {k: (c.bets, c.wins, c.rounds, c.cash_in, c.cash_out) for k, c in out.items()}

    def device_days(self) -> dict[tuple[str, str, str], tuple]:
        out: dict[tuple[str, str, str], Contribution] = {}
        for hall, device, _, day, _, m in self.cells:
            out[(hall, device, day)] = out.get((hall, device, day), ZERO) + m
        for key in self.snapshots:
            out.setdefault(key, ZERO)
        return {k: (c.bets, c.wins, c.rounds, c.cash_in, c.cash_out, self.snapshots.get(k, 0))
                for k, c in out.items()}


async def stored_ggr(store: Repositories, group_by: str, day_from: str | None,
                     day_to: str | None) -> dict[tuple[str | None, str], tuple]:
    rows = await store.reports.ggr(group_by, day_from=None if day_from is None else dt.date.fromisoformat(day_from),
                           day_to=None if day_to is None else dt.date.fromisoformat(day_to))
    return {(r.hall, r.key): (r.bets, r.wins, r.rounds, r.cash_in, r.cash_out) for r in rows}


async def stored_device_days(store: Repositories) -> dict[tuple[str, str, str], tuple]:
    sql = "SELECT hall, device, day, bets, wins, rounds, cash_in, cash_out, snapshots FROM device_days"
    database: Any = store.database
    if hasattr(database, "fetch"):   # PostgreSQL
        return {(r[0], r[1], r[2]): tuple(r[3:]) for r in await database.fetch(sql)}
    con = sqlite3.connect(database.path)
    try:
        return {(r[0], r[1], r[2]): tuple(r[3:]) for r in con.execute(sql)}
    finally:
        con.close()


def _file_device_days(path: Path) -> dict[tuple[str, str, str], tuple]:
    con = sqlite3.connect(path)
    try:
        return {(r[0], r[1], r[2]): tuple(r[3:]) for r in con.execute(
            "SELECT hall, device, day, bets, wins, rounds, cash_in, cash_out, snapshots FROM device_days")}
    finally:
        con.close()


# where each hall's machines have their games (the numbers of egm-001's and egm-003's plays have none)
PLACED = {("egm-000", 1): "fruits", ("egm-000", 8): "poker", ("egm-001", 9): "poker",
          ("egm-002", 9): "fruits", ("egm-003", 5): "poker"}


async def place_games(store: Repositories) -> None:
    await store.catalog.put_provider(Provider("novo", "Novo Games"))
    await store.catalog.put_provider(Provider("acme", "Acme Play"))
    for game, provider in (("fruits", "novo"), ("poker", "acme")):
        await store.catalog.put_game(CatalogGame(game, provider, game.title(), "slot", 9600, "active", 10, 500))
    for hall in RULES:
        for device in sorted({d for d, _ in PLACED}):
            await store.catalog.replace_placements(hall, device, [
                Placement(hall, device, n, g) for (d, n), g in sorted(PLACED.items()) if d == device])


def placed_truth(cells: dict[tuple[str, str, str], Contribution]) -> dict[tuple, tuple]:
    """The period's cells regrouped by hand as :class:`central.repos.reports.PlacedCell` groups them."""
    out: dict[tuple, Contribution] = {}
    for (hall, device, game), m in cells.items():
        placed = PLACED.get((device, int(game))) if game.isdigit() else None
        key = (hall, placed, game, device if placed is None and game else None)
        out[key] = out.get(key, ZERO) + m
    return {k: (c.bets, c.wins, c.rounds, c.cash_in, c.cash_out) for k, c in out.items()}


async def stored_placed(store: Repositories, day_from: str | None, day_to: str | None) -> dict[tuple, tuple]:
    rows = await store.reports.placed_cells(day_from=None if day_from is None else dt.date.fromisoformat(day_from),
                                            day_to=None if day_to is None else dt.date.fromisoformat(day_to))
    got = {(c.hall, c.game, c.number, c.device): (c.bets, c.wins, c.rounds, c.cash_in, c.cash_out) for c in rows}
    assert len(got) == len(rows)   # each group once
    return got


async def check_everything(store: Repositories, truth: Truth, seed: int) -> None:
    rnd = random.Random(seed)
    await place_games(store)
    days = sorted({c[3] for c in truth.cells})
    periods: list[tuple[str | None, str | None]] = [(None, None), (days[0], days[-1])]
    for _ in range(6):
        a, b = sorted(rnd.sample(days, 2))
        periods += [(a, b), (a, a)]
    for group_by in GROUP_BY:
        if group_by == "provider":
            continue   # the catalog's mapping has its own tests; the days are the rollups' either way
        for day_from, day_to in periods:
            assert await stored_ggr(store, group_by, day_from, day_to) == truth.ggr(group_by, day_from, day_to), \
                (group_by, day_from, day_to)
    # rollup cells (the provider and hold reports' input) over periods that cut months anywhere
    month_edges = ["2026-10-01", "2026-10-31", "2026-11-01", "2026-11-30"]
    subtracted = [("2026-10-05", "2026-10-30"), ("2026-10-02", "2026-11-29"), ("2026-10-10", "2026-10-31"),
                  ("2026-10-26", "2026-10-30"), ("2026-11-02", "2026-11-30"), (None, "2026-10-30"),
                  ("2026-10-02", None), ("2026-10-01", "2026-11-28")]   # more of a month inside than outside
    for day_from, day_to in [*periods, *((a, b) for a in month_edges for b in month_edges if a <= b),
                             (None, "2026-10-31"), ("2026-11-01", None), (None, "2026-10-15"), *subtracted]:
        cells = await store.reports.rollup_cells(day_from=None if day_from is None else dt.date.fromisoformat(day_from),
                                         day_to=None if day_to is None else dt.date.fromisoformat(day_to))
        want: dict[tuple[str, str, str], Contribution] = {}
        for hall, device, game, day, _, m in truth.cells:
            if (day_from is None or day >= day_from) and (day_to is None or day <= day_to):
                want[(hall, device, game)] = want.get((hall, device, game), ZERO) + m
        assert {(c.hall, c.device, c.game): (c.bets, c.wins, c.rounds, c.cash_in, c.cash_out) for c in cells} == {
            k: (c.bets, c.wins, c.rounds, c.cash_in, c.cash_out) for k, c in want.items()}, (day_from, day_to)
        keys = [(c.hall, c.device, c.game) for c in cells]
        assert keys == sorted(set(keys)), (day_from, day_to)   # in key order, each key once (one day or many)
        assert await stored_placed(store, day_from, day_to) == placed_truth(want), (day_from, day_to)
        assert await stored_ggr(store, "game", day_from, day_to) == truth.ggr("game", day_from, day_to)
    for hall in RULES:
        for day in [*rnd.sample(days, 4), "2026-10-24", "2026-10-31", "2026-11-01"]:   # the 25-hour days
            rows = await store.reports.hourly(day=dt.date.fromisoformat(day), hall=hall)
            assert {r.hour: (r.bets, r.wins, r.rounds, r.cash_in, r.cash_out) for r in rows} == truth.hours(hall, day)
            assert all(r.hall == hall and r.day == day for r in rows)
    assert await stored_device_days(store) == truth.device_days()


async def test_every_aggregate_equals_a_recomputation_from_the_events_by_each_halls_day(store: Repositories) -> None:
    chains = {name: await register(store, name) for name in RULES}
    for name, rule in RULES.items():   # set before the first event: staged with the right day
        assert await store.halls.set_day_rule(name, rule, now=START) is not None
    play_floor(chains, seed=1)
    await flush_randomly(chains, Ingestor(store, generate_private_key(), StepClock(END)), seed=2)
    truth = Truth(chains, RULES)
    # the EU fall-back day of the Kyiv hall has 25 hours of buckets when played through the night
    assert len({c[4] for c in truth.cells if c[0] == "hall-kyiv" and c[3] == "2026-10-24"}) > 23
    await check_everything(store, truth, seed=3)


async def test_changing_a_halls_day_rebuckets_what_is_stored(store: Repositories) -> None:
    chains = {name: await register(store, name) for name in RULES}
    play_floor(chains, seed=4)
    ingestor = Ingestor(store, generate_private_key(), StepClock(END))
    half = {name: len(chain.events) // 2 for name, chain in chains.items()}
    for name, chain in chains.items():   # half the history on UTC days (the halls' defaults)...
        events, chain.events = chain.events, chain.events[:half[name]]
        await chain.flush(ingestor, size=97)
        chain.events = events
    await check_everything(store, Truth({n: _prefix(c, half[n]) for n, c in chains.items()},
                                              dict.fromkeys(RULES, UTC_MIDNIGHT)), seed=5)
    for name, rule in RULES.items():     # ...then the halls get their own days, and the rest arrives
        record = await store.halls.set_day_rule(name, rule, now=END)
        assert record is not None and record.day_rule == rule
        assert record.settings_version == (0 if rule == UTC_MIDNIGHT else 1)
    for chain in chains.values():
        await chain.flush(ingestor, size=113)
    await check_everything(store, Truth(chains, RULES), seed=6)
    again = await store.halls.set_day_rule("hall-kyiv", RULES["hall-kyiv"], now=END)
    assert again is not None and again.settings_version == 1   # the same rule changes nothing
    log = await store.ingest.integration_log(hall="hall-kyiv", kind="manual")
    assert len(log) == 1 and "Europe/Kyiv 06:00" in log[0].detail


def _prefix(chain: Chain, count: int) -> Chain:
    return Chain(chain.hall, chain.key, chain.events[:count], count)


async def test_a_batch_staged_before_a_change_is_stored_by_the_new_day(store: Repositories) -> None:
    chains = {"hall-kyiv": await register(store, "hall-kyiv")}
    play_floor(chains, seed=8)
    ingestor = Ingestor(store, generate_private_key(), StepClock(END))
    chain = chains["hall-kyiv"]
    payload = encode_batch(chain.events, chain.hall, chain.key, created_at=START)
    prepared = await ingestor.prepare(topic(chain.hall, "batches"), payload)   # staged on UTC days
    await store.halls.set_day_rule("hall-kyiv", RULES["hall-kyiv"], now=END)
    assert (await ingestor.commit(prepared)).status == "stored"
    await check_everything(store, Truth(chains, {"hall-kyiv": RULES["hall-kyiv"]}), seed=9)


async def test_an_older_file_gains_the_hourly_rollups_and_device_days(tmp_path: Path) -> None:
    path = tmp_path / "central.db"
    store = await open_sqlite(path)
    chains = {name: await register(store, name) for name in ("hall-utc",)}
    play_floor(chains, seed=10)
    await flush_randomly(chains, Ingestor(store, generate_private_key(), StepClock(END)), seed=11)
    await store.close()
    before = _file_device_days(path)
    con = sqlite3.connect(path, isolation_level=None)
    hours = con.execute("SELECT * FROM rollups_hourly ORDER BY day, hall, hour, device").fetchall()
    hall_hours = con.execute("SELECT * FROM rollups_hourly_halls ORDER BY day, hall, hour").fetchall()
    months = con.execute("SELECT * FROM rollups_monthly ORDER BY hall, device, game, month").fetchall()
    assert hours and hall_hours and before and months
    con.execute("DROP TABLE rollups_hourly")    # as schema 5 left it
    con.execute("DROP TABLE rollups_hourly_halls")
    con.execute("DROP TABLE device_days")
    con.execute("DROP TABLE rollups_monthly")
    con.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
    con.close()
    store = await open_sqlite(path)
    await store.close()
    con = sqlite3.connect(path)
    try:
        assert con.execute("SELECT * FROM rollups_hourly ORDER BY day, hall, hour, device").fetchall() == hours
        assert con.execute("SELECT * FROM rollups_hourly_halls ORDER BY day, hall, hour").fetchall() == hall_hours
        assert con.execute("SELECT * FROM rollups_monthly ORDER BY hall, device, game, month").fetchall() == months
        con.execute("DROP TABLE rollups_hourly_halls")    # as schema 9 left it: filled from the devices' hours
        con.execute("UPDATE meta SET value = '9' WHERE key = 'schema_version'")
        con.commit()
    finally:
        con.close()
    assert _file_device_days(path) == before
    store = await open_sqlite(path)
    await store.close()
    con = sqlite3.connect(path)
    try:
        assert con.execute("SELECT * FROM rollups_hourly_halls ORDER BY day, hall, hour").fetchall() == hall_hours
    finally:
        con.close()


async def test_the_halls_hours_are_their_devices_hours_summed_and_a_fill_rebuilds_them(
        store: Repositories) -> None:
    """Schema 10 / migration 4: the hall's and the network's hourly chart read ``rollups_hourly_halls``;
    each of its rows is the sum of that hall's devices' rows for the hour, and a database that has only
    the devices' hours gets the same rows from the migration's fill."""
    chains = {name: await register(store, name) for name in RULES}
    for name, rule in RULES.items():
        assert await store.halls.set_day_rule(name, rule, now=START) is not None
    play_floor(chains, seed=5)
    await flush_randomly(chains, Ingestor(store, generate_private_key(), StepClock(END)), seed=6)
    truth = Truth(chains, RULES)
    database: Any = store.database
    summed = ("SELECT day, hall, hour, SUM(bets), SUM(wins), SUM(rounds), SUM(cash_in), SUM(cash_out)"
              " FROM rollups_hourly GROUP BY day, hall, hour ORDER BY day, hall, hour")
    own = ("SELECT day, hall, hour, bets, wins, rounds, cash_in, cash_out FROM rollups_hourly_halls"
           " ORDER BY day, hall, hour")
    want = [tuple(r) for r in await database.fetch(summed)]
    assert want and [tuple(r) for r in await database.fetch(own)] == want
    days = sorted({c[3] for c in truth.cells})
    charts = {(hall, day): await store.reports.hourly(day=dt.date.fromisoformat(day), hall=hall)
              for hall in RULES for day in days[:3]}
    network = await store.reports.hourly(day=dt.date.fromisoformat(days[1]))
    assert {r.hall for r in network} == {hall for hall in RULES if truth.hours(hall, days[1])}
    for (hall, day), rows in charts.items():
        assert {r.hour: (r.bets, r.wins, r.rounds, r.cash_in, r.cash_out) for r in rows} == truth.hours(hall, day)
    await rawsql.execute(database, "DELETE FROM rollups_hourly_halls")
    assert await store.reports.hourly(day=dt.date.fromisoformat(days[0])) == []
    await rawsql.execute(database, FILL_HALL_HOURS)
    assert [tuple(r) for r in await database.fetch(own)] == want
    for (hall, day), rows in charts.items():
        assert await store.reports.hourly(day=dt.date.fromisoformat(day), hall=hall) == rows


# ---- the API ---------------------------------------------------------------------------------------

@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[Repositories, TestClient, Clock]]:
    store = await open_sqlite(tmp_path / "central.db")
    clock = Clock(at("2026-12-01T23:30:00+00:00"))   # Kyiv (UTC+2, days from 00:00) is already on 2 Dec
    app = build_app(store, currency="EUR", clock=clock, central_key=generate_private_key())
    async with TestClient(TestServer(app)) as client:
        yield store, client, clock
    await store.close()


async def call(client: TestClient, store: Repositories, method: str, path: str, role: str = "admin",
               status: int = 200, **kwargs: Any) -> Any:
    _, key = await create_api_key(store.halls, role, await key_scope(store, role, None), now=START)
    response = await client.request(method, PREFIX + path, headers={"Authorization": f"Bearer {key}"}, **kwargs)
    body = await response.json()
    assert response.status == status, body
    return body


async def test_settings_today_and_the_zones_a_report_used(api: tuple[Repositories, TestClient, Clock]) -> None:
    store, client, clock = api
    utc, kyiv = await register(store, "hall-utc"), await register(store, "hall-kyiv")
    body = await call(client, store, "PUT", "/halls/hall-kyiv/settings", json={"timezone": "Europe/Kyiv"})
    assert body == {"hall": "hall-kyiv", "timezone": "Europe/Kyiv", "gaming_day_start": "00:00",
                    "settings_version": 1}
    await call(client, store, "PUT", "/halls/hall-kyiv/settings", role="operator", status=403,
               json={"gaming_day_start": "06:00"})
    bad = await call(client, store, "PUT", "/halls/hall-kyiv/settings", status=400, json={"timezone": "Mars/Base"})
    assert "Mars/Base" in bad["error"]["message"]
    await call(client, store, "PUT", "/halls/nowhere/settings", status=404, json={"timezone": "UTC"})
    await call(client, store, "PUT", "/halls/hall-kyiv/settings", status=400, json={"zone": "UTC"})
    halls = {r["id"]: r for r in (await call(client, store, "GET", "/halls"))["rows"]}
    assert (halls["hall-kyiv"]["timezone"], halls["hall-utc"]["timezone"]) == ("Europe/Kyiv", "UTC")
    audit = (await call(client, store, "GET", "/audit"))["rows"]
    assert [(e["action"], e["before"]["timezone"], e["after"]["timezone"]) for e in audit
            if e["action"] == "hall.settings.update"] == [("hall.settings.update", "UTC", "Europe/Kyiv")]

    # the same instant, 23:10 UTC on 1 Dec, is 1 Dec at the UTC hall and 2 Dec (01:10) at the Kyiv hall
    moment = at("2026-12-01T23:10:00+00:00")
    Egm(utc, "egm-001").play(bet=100, win=30, at=moment)
    Egm(kyiv, "egm-001").play(bet=200, win=0, at=moment)
    ingestor = Ingestor(store, generate_private_key(), StepClock(clock.now))
    await utc.flush(ingestor)
    await kyiv.flush(ingestor)
    by_day = await call(client, store, "GET", "/reports/ggr", params={"group_by": "day"})
    assert {r["key"]: r["ggr"] for r in by_day["rows"]} == {"2026-12-01": 70, "2026-12-02": 200}
    assert by_day["days"] == {"hall-kyiv": {"timezone": "Europe/Kyiv", "gaming_day_start": "00:00"},
                              "hall-utc": {"timezone": "UTC", "gaming_day_start": "00:00"}}
    today = await call(client, store, "GET", "/reports/ggr", params={"group_by": "hall", "from": "today",
                                                                     "to": "today"})
    assert {r["key"]: r["ggr"] for r in today["rows"]} == {"hall-utc": 70, "hall-kyiv": 200}
    # a fixed date means that gaming day of every hall: 2 Dec has only the Kyiv hall's game
    second = await call(client, store, "GET", "/reports/ggr", params={"group_by": "network", "from": "2026-12-02",
                                                                      "to": "2026-12-02"})
    assert [(r["key"], r["ggr"]) for r in second["rows"]] == [("network", 200)]
    hourly = await call(client, store, "GET", "/reports/hourly", params={"hall": "hall-kyiv"})
    assert [(r["day"], r["local_hour"], r["bets"]) for r in hourly["rows"]] == [
        ("2026-12-02", "2026-12-02T01:00+02:00", 200)]
    per_device = await call(client, store, "GET", "/reports/hourly",
                            params={"hall": "hall-utc", "device": "egm-001", "day": "2026-12-01"})
    assert [(r["device"], r["hour"], r["ggr"]) for r in per_device["rows"]] == [
        ("egm-001", "2026-12-01T23:00:00.000000Z", 70)]
    await call(client, store, "GET", "/reports/hourly", status=400, params={"day": "1 Dec"})
    await call(client, store, "GET", "/reports/hourly", status=400, params={"device": "egm-001"})
    recon = await call(client, store, "GET", "/reports/reconciliation", params={"from": "2026-12-01",
                                                                                "to": "2026-12-02"})
    assert {(r["hall"], r["day"]) for r in recon["rows"]} == {("hall-utc", "2026-12-01"), ("hall-kyiv", "2026-12-02")}
    assert recon["days"]["hall-kyiv"]["timezone"] == "Europe/Kyiv"


async def test_a_kyiv_machine_reconciles_exactly_across_the_dst_change(
        api: tuple[Repositories, TestClient, Clock]) -> None:
    store, client, clock = api
    chain = await register(store, "hall-kyiv")
    await store.halls.set_day_rule("hall-kyiv", DayRule("Europe/Kyiv", "06:00"), now=START)
    egm = Egm(chain, "egm-001")
    kyiv = DayRule("Europe/Kyiv", "06:00")
    truth_at_close: dict[str, Contribution] = {}
    day = dt.date(2026, 10, 23)
    egm.snapshot(kyiv.bounds(day)[0] - MIN, reason="gaming_day_close")
    for _ in range(4):   # 23..26 October: the 25-hour day is the 24th (the night of the 25th)
        start, end = kyiv.bounds(day)
        t = start + 10 * MIN
        while t < end - 30 * MIN:
            egm.play(bet=25, win=(0, 60)[(t // MIN) % 2], at=t)
            t += 47 * MIN
        egm.snapshot(end - MIN, reason="gaming_day_close")
        truth_at_close[day.isoformat()] = egm.truth
        day += dt.timedelta(days=1)
    await chain.flush(Ingestor(store, generate_private_key(), StepClock(clock.now)))
    body = await call(client, store, "GET", "/reports/reconciliation",
                      params={"hall": "hall-kyiv", "from": "2026-10-23", "to": "2026-10-26"})
    rows = {r["day"]: r for r in body["rows"]}
    assert sorted(rows) == ["2026-10-23", "2026-10-24", "2026-10-25", "2026-10-26"]
    previous = ZERO
    for name, close in sorted(truth_at_close.items()):
        row = rows[name]
        assert row["reason"] == "exact", row
        assert row["quantities"]["bets"]["meters"] == close.bets - previous.bets == row["quantities"]["bets"]["events"]
        previous = close
    ggr = await call(client, store, "GET", "/reports/ggr", params={"group_by": "day", "hall": "hall-kyiv"})
    assert {r["key"]: r["bets"] for r in ggr["rows"]} == {
        d: truth_at_close[d].bets - (truth_at_close.get((dt.date.fromisoformat(d) - dt.timedelta(days=1))
                                                        .isoformat(), ZERO).bets) for d in truth_at_close}
