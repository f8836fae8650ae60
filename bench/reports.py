"""Report latency at HQ on a large store: p50/p95 of every report over the real HTTP API (issue 13).

Run: ``.venv/bin/python bench/reports.py --events 1000000 [3000000] [--halls 5 --egms 200 --days 90]
[--db sqlite|postgresql|postgresql://…]
[--reps 20] [--dense] [--keep DIR]``.

Each store is built through the real ingest (``Ingestor.handle`` on signed, hash-chained batches of
500 events, as ``bench/central_ingest.py`` does): per hall ``--egms`` machines played over ``--days``
days (game.bet / game.win / game.ended with a SAS game number, bill.accepted, a meters.snapshot of
absolute meters at most every 12 h of a machine's activity and at the end, so the reconciliation is
exact; a device.status clock check on each day a machine plays, and its identity on its first day
and every 30th, as the agent reports them), agent times spread evenly over the period. Halls 1 and 3
have Kyiv gaming days starting at 06:00 (set before ingesting); the others UTC midnight. The last
machine of every hall is quiet: five events on the first day (the ``/events?device=`` case). A small
catalog (3 providers, 9 games, 1–3 games per machine) feeds the provider and hold reports. ``--keep
DIR`` builds into (or reuses) ``DIR/events-N``.

Before the reports, the alert monitor is caught up to every hall's end (``hall-central serve`` runs it
every 15 s, so in service its cursor is seconds behind; the floor reads the events after it). Then the app
(``central.api.build_app``, an admin key) is served in-process on 127.0.0.1 and every
report is asked ``--reps`` times after one warm-up with aiohttp's client (fewer repetitions when one
answer takes seconds: the table says how many). It prints report, period, p50, p95, rows and bytes,
the load average, and the issue's goals with PASS/FAIL (latencies judged on p95).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: F401  (puts the repo root on sys.path)
from aiohttp import ClientSession, web

from central.api import PREFIX, build_app
from central.apikeys import create_api_key
from central.ingest import Ingestor
from central.logging_setup import setup_logging
from central.monitor import Monitor
from central.repos import Repositories
from central.store import open_store
from protocols.sync import (
    GENESIS_HASH,
    Event,
    UnsealedEvent,
    encode_batch,
    generate_private_key,
    public_key_to_pem,
    seal,
    topic,
)
from protocols.sync.gamingday import DayRule

DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000
START = dt.date(2026, 9, 1)
START_US = (START - dt.date(1970, 1, 1)).days * DAY_US
BATCH = 500
SNAPSHOT_EVERY_US = 12 * HOUR_US
KYIV = DayRule("Europe/Kyiv", "06:00")
METERS = ("coin_in", "coin_out", "jackpot", "games_played", "bills_accepted_credits", "ticket_in_cents",
          "ticket_out_cents", "handpaid_cancelled_credits", "current_credits")
BETS = (10, 20, 50, 100, 200, 500)
WIN_MULTIPLES = (1, 1, 2, 2, 3, 5, 8)   # a win in 30 % of games: RTP ≈ 94 %
BILLS = (500, 1000, 2000, 5000, 10_000)
PROVIDERS = ("prov-a", "prov-b", "prov-c")
GAMES = tuple(f"g-{i:02d}" for i in range(1, 10))


def hall_name(index: int) -> str:
    return f"hall-{index:02d}"


def egm_name(index: int) -> str:
    return f"egm-{index:03d}"


def kyiv(index: int) -> bool:
    return index in (1, 3)


def games_of(egm: int) -> int:
    """How many games (SAS game numbers 1..n) machine ``egm`` offers."""
    return 1 + egm % 3


# -- the hall's events ---------------------------------------------------------------------------------

class HallFeed:
    """One hall's chain, generated in agent-time order: ``count`` events, agent time ∝ seq over the period."""

    def __init__(self, index: int, count: int, egms: int, days: int, dense: bool = False) -> None:
        self.index = index
        self.dense = dense
        """Machines take turns and each cycles through its games, and each machine takes a bill on every
        day it plays: every (device, game) and every machine's bill cell has money every day at any
        size (so a 1-day report's answer is the same size at 1M and 3M events)."""
        self.bill_day = [-1] * egms
        self.status_day = [-1] * egms
        self.rounds = [0] * egms
        self.hall = hall_name(index)
        self.key = generate_private_key()
        self.count = count
        self.egms = egms
        self.step = days * DAY_US / count
        self.rng = random.Random(1000 + index)
        self.meters = [dict.fromkeys(METERS, 0) for _ in range(egms)]
        self.last_snapshot = [-SNAPSHOT_EVERY_US] * egms
        self.prev = GENESIS_HASH
        self.seq = 0

    def _emit(self, egm: int, kind: str, data: dict[str, Any]) -> Event:
        self.seq += 1
        seq = self.seq
        event = seal(UnsealedEvent(seq=seq, id=str(uuid.UUID(int=self.index << 64 | seq, version=4)), hall=self.hall,
                                   device=egm_name(egm), type=kind, device_time=None,
                                   agent_time=START_US + int(seq * self.step), data=data), self.prev)
        self.prev = event.hash
        return event

    def _snapshot(self, egm: int, reason: str) -> Event:
        self.last_snapshot[egm] = START_US + int((self.seq + 1) * self.step)
        return self._emit(egm, "meters.snapshot", {"reason": reason, "source": "6F", "game": 0,
                                                   "denomination_cents": 1, "meters": dict(self.meters[egm])})

    def _game(self, egm: int) -> Iterator[Event]:
        rng, meters = self.rng, self.meters[egm]
        if self.dense:
            game = 1 + self.rounds[egm] % games_of(egm)
            self.rounds[egm] += 1
        else:
            game = 1 + rng.randrange(games_of(egm))
        bet = rng.choice(BETS)
        win = bet * rng.choice(WIN_MULTIPLES) if rng.random() < 0.3 else 0
        meters["coin_in"] += bet
        meters["games_played"] += 1
        meters["coin_out"] += win
        yield self._emit(egm, "game.bet", {"amount": bet, "currency": "EUR", "game": game,
                                           "coin_in_meter": meters["coin_in"], "source": "rte"})
        if win:
            yield self._emit(egm, "game.win", {"amount": win, "currency": "EUR", "game": game, "paid_by": "machine",
                                               "source": "rte"})
        yield self._emit(egm, "game.ended", {"game": game, "bet": bet, "win": win, "source": "rte"})

    def _identity(self, egm: int) -> Event:
        """What the agent's normalizer reports on start (LP 1F/53/56): the machine's game numbers."""
        games = [{"number": n, "game_id": f"S{(egm + n) % len(GAMES)}", "paytable_id": f"P{egm:03d}{n}",
                  "denomination_cents": 1, "max_bet": 500} for n in range(1, games_of(egm) + 1)]
        return self._emit(egm, "device.status", {
            "status": "identity", "game_id": games[0]["game_id"], "serial": f"SN{self.index:02d}{egm:04d}",
            "paytable_id": games[0]["paytable_id"], "sas_version": "602", "accounting_denomination_cents": 1,
            "enabled_games": [g["number"] for g in games], "rte": True, "games": games})

    def _bill(self, egm: int) -> Event:
        amount = self.rng.choice(BILLS)
        self.meters[egm]["bills_accepted_credits"] += amount
        return self._emit(egm, "bill.accepted", {"amount": amount, "currency": "EUR"})

    def events(self) -> Iterator[Event]:
        quiet = self.egms - 1   # five events on the first day, then nothing
        yield self._snapshot(quiet, "enroll")
        yield self._bill(quiet)
        yield from self._game(quiet)   # bet (+ win) + ended
        busy = quiet
        last_lap = self.count - busy - 7   # room for the closing snapshots
        rng, now_of = self.rng, self.step
        turn = 0
        while self.seq < last_lap:
            if self.dense:
                egm, turn = turn, (turn + 1) % busy
            else:
                egm = rng.randrange(busy)
            if START_US + (self.seq + 1) * now_of - self.last_snapshot[egm] >= SNAPSHOT_EVERY_US:
                yield self._snapshot(egm, "schedule")
            today = (START_US + (self.seq + 1) * now_of) // DAY_US
            if self.status_day[egm] != today:   # the agent's daily clock check, its identity at start and monthly
                first = self.status_day[egm] < 0
                self.status_day[egm] = today
                yield self._emit(egm, "device.status", {"status": "clock", "drift_ms": 0, "set": False})
                if first or today % 30 == 0:
                    yield self._identity(egm)
            if self.dense and self.bill_day[egm] != today:
                self.bill_day[egm] = today
                yield self._bill(egm)
            elif rng.random() < 0.06:
                yield self._bill(egm)
            else:
                yield from self._game(egm)
        for egm in range(busy):
            yield self._snapshot(egm, "schedule")

    def payloads(self) -> Iterator[tuple[bytes, int]]:
        chunk: list[Event] = []
        for event in self.events():
            chunk.append(event)
            if len(chunk) == BATCH:
                yield encode_batch(chunk, self.hall, self.key, created_at=chunk[0].agent_time), len(chunk)
                chunk = []
        if chunk:
            yield encode_batch(chunk, self.hall, self.key, created_at=chunk[0].agent_time), len(chunk)


# -- building a store ----------------------------------------------------------------------------------

def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


class Target:
    """Where one store size is built: a SQLite file, or one database of a PostgreSQL server."""

    def __init__(self, where: Path, server: str | None, events: int) -> None:
        self.where = where
        self.server = server
        self.path = where / "central.db"
        self.database = f"hallsync_reports_{events}"

    @property
    def locator(self) -> str:
        """What ``open_store`` takes."""
        if self.server is None:
            return str(self.path)
        return self.server.rsplit("/", 1)[0] + "/" + self.database

    def __str__(self) -> str:
        return str(self.path) if self.server is None else f"PostgreSQL database {self.database}"

    async def create(self) -> None:
        """A fresh PostgreSQL database (dropped first: a half-built one must not be measured)."""
        if self.server is None:
            return
        import asyncpg

        con = await asyncpg.connect(self.server)
        try:
            await con.execute(f'DROP DATABASE IF EXISTS "{self.database}"')
            await con.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            await con.close()

    async def fetchval(self, sql: str, *args: Any) -> Any:
        """One value by a raw connection (sizes and cell counts are not an API read)."""
        if self.server is None:
            con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            try:
                return con.execute(sql.replace("$1", "?").replace("$2", "?"), args).fetchone()[0]
            finally:
                con.close()
        import asyncpg

        pg = await asyncpg.connect(self.locator)
        try:
            return await pg.fetchval(sql, *args)
        finally:
            await pg.close()

    async def settle(self) -> None:
        """PostgreSQL: ``VACUUM (ANALYZE)`` after the build, as autovacuum does some time after a bulk
        load; timed reports would otherwise meet it half-way (a 90-day p95 of 229 ms against a p50 of
        139 ms at 1M events, December 2026) and measure the vacuum. SQLite has nothing running behind."""
        if self.server is None:
            return
        import asyncpg

        started = time.perf_counter()
        pg = await asyncpg.connect(self.locator)
        try:
            await pg.execute("VACUUM (ANALYZE)")
        finally:
            await pg.close()
        print(f"settled: VACUUM (ANALYZE) in {time.perf_counter() - started:.1f} s", flush=True)

    async def size(self) -> int:
        if self.server is None:
            return sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*"))
        return int(await self.fetchval("SELECT pg_database_size(current_database())"))


@asynccontextmanager
async def served(store: Repositories, now: int) -> AsyncIterator[tuple[ClientSession, str]]:
    """The API on 127.0.0.1 (a free port) with a fresh admin key: (session with the key, base URL)."""
    app = build_app(store, currency="EUR", clock=lambda: now, central_key=generate_private_key())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    _, key = await create_api_key(store.halls, "admin", None, now=now)
    try:
        async with ClientSession(headers={"Authorization": f"Bearer {key}"}) as session:
            yield session, f"http://127.0.0.1:{port}{PREFIX}"
    finally:
        await runner.cleanup()


async def put_catalog(session: ClientSession, base: str, halls: int, egms: int) -> None:
    async def put(path: str, body: dict[str, Any]) -> None:
        async with session.put(base + path, json=body) as response:
            if response.status not in (200, 201):
                raise SystemExit(f"PUT {path}: {response.status} {await response.text()}")

    for i, provider in enumerate(PROVIDERS):
        await put(f"/catalog/providers/{provider}", {"name": f"Provider {i}"})
    for i, game in enumerate(GAMES):
        await put(f"/catalog/games/{game}", {"provider": PROVIDERS[i % 3], "name": f"Game {i}", "category": "slot",
                                             "rtp_bp": 9200 + 50 * i, "min_bet": 10, "max_bet": 500})
    for h in range(halls):
        for e in range(egms):
            placements = [{"number": n, "game": GAMES[(e + n) % len(GAMES)]} for n in range(1, games_of(e) + 1)]
            await put(f"/catalog/placements/{hall_name(h)}/{egm_name(e)}", {"games": placements})


async def build(db: Target, args: argparse.Namespace, events: int) -> None:
    per_hall = events // args.halls
    feeds = [HallFeed(h, per_hall, args.egms, args.days, args.dense) for h in range(args.halls)]
    end_us = START_US + args.days * DAY_US
    await db.create()
    store = await open_store(db.locator)
    try:
        for feed in feeds:
            await store.halls.add_hall(feed.hall, public_key_to_pem(feed.key.public_key()).decode(), now=START_US)
            if kyiv(feed.index):
                await store.halls.set_day_rule(feed.hall, KYIV, now=START_US)
        async with served(store, end_us) as (session, base):
            await put_catalog(session, base, args.halls, args.egms)
        ingestor = Ingestor(store, generate_private_key())
        done = 0
        started = time.perf_counter()
        next_report = events / 20

        async def feed_hall(feed: HallFeed) -> None:
            nonlocal done, next_report
            name = topic(feed.hall, "batches")
            for payload, n in feed.payloads():
                outcome = await ingestor.handle(name, payload)
                if outcome.status != "stored":
                    raise SystemExit(f"{feed.hall}: batch {outcome}")
                done += n
                if done >= next_report:
                    next_report += events / 20
                    seconds = time.perf_counter() - started
                    print(f"  built {done:>10,} events  {seconds:7.1f} s  {done / seconds:8,.0f} events/s  "
                          f"db {await db.size() / 2**20:7.1f} MiB  {load()}", flush=True)

        await asyncio.gather(*(feed_hall(feed) for feed in feeds))
        seconds = time.perf_counter() - started
    finally:
        await store.close()
    size = await db.size()
    print(f"built {done:,} events in {seconds:.1f} s ({done / seconds:,.0f} events/s, generation + seal + "
          f"encode + ingest); db {size / 2**20:.1f} MiB = {size / 2**20 / (done / 1e6):.1f} MiB per million events")
    (db.where / "build.json").write_text(json.dumps({"events": done, "halls": args.halls, "egms": args.egms,
                                                       "days": args.days, "dense": args.dense, "seconds": seconds,
                                                       "db": "sqlite" if db.server is None else db.server,
                                                       "bytes": size}))


# -- measuring -----------------------------------------------------------------------------------------

def rows_of(body: Any) -> int:
    if isinstance(body, dict):
        for key in ("rows", "machines", "devices"):
            if isinstance(body.get(key), list):
                return len(body[key])
        for value in body.values():
            if isinstance(value, list):
                return len(value)
    return len(body) if isinstance(body, list) else 1


def cases(args: argparse.Namespace) -> list[tuple[str, str, str, dict[str, str]]]:
    """(report, period, path, query) in table order."""
    last = START + dt.timedelta(days=args.days - 1)
    periods = {"1 day": (last, last), "30 days": (last - dt.timedelta(days=29), last),
               "90 days": (last - dt.timedelta(days=args.days - 1), last)}

    def span(name: str) -> dict[str, str]:
        a, b = periods[name]
        return {"from": a.isoformat(), "to": b.isoformat()}

    out: list[tuple[str, str, str, dict[str, str]]] = []
    for group in ("device", "game", "provider", "hall", "day", "network"):
        for name in periods:
            out.append((f"ggr group_by={group}", name, "/reports/ggr", {"group_by": group, **span(name)}))
    out.append(("hourly", "1 day", "/reports/hourly", {"day": last.isoformat()}))
    for name in ("1 day", "30 days"):
        out.append(("reconciliation", name, "/reports/reconciliation", span(name)))
    for report in ("providers", "hold"):
        for name in periods:
            out.append((report, name, f"/reports/{report}", span(name)))
    for h in (0, 1):
        out.append((f"floor hall={hall_name(h)}", "now", "/floor", {"hall": hall_name(h)}))
    out.append(("catalog/devices", "now", "/catalog/devices", {}))
    out.append(("devices", "now", "/devices", {}))
    for h in (0, 1):
        out.append((f"events {hall_name(h)} quiet device", "all", "/events",
                    {"hall": hall_name(h), "device": egm_name(args.egms - 1), "limit": "100"}))
    return out


async def catch_up_monitor(store: Repositories, now: int) -> None:
    """Tick the monitor until no hall is behind (a reused store: one tick reading nothing)."""
    monitor = Monitor(store, clock=lambda: now)
    started, read, ticks = time.perf_counter(), 0, 0
    while True:
        tick = await monitor.tick()
        read, ticks = read + tick.events_read, ticks + 1
        if not tick.behind:
            break
    print(f"monitor caught up: {read:,d} events read in {ticks} tick(s), {time.perf_counter() - started:.1f} s"
          f" ({tick.active} alerts active)")


async def measure(db: Target, args: argparse.Namespace) -> list[dict[str, Any]]:
    end_us = START_US + args.days * DAY_US
    store = await open_store(db.locator)
    results = []
    try:
        await catch_up_monitor(store, end_us)
        async with served(store, end_us) as (session, base):
            for report, period, path, query in cases(args):
                async def once(path: str = path, query: dict[str, str] = query) -> tuple[float, int, Any]:
                    t = time.perf_counter()
                    async with session.get(base + path, params=query) as response:
                        raw = await response.read()
                        if response.status != 200:
                            raise SystemExit(f"GET {path} {query}: {response.status} {raw[:500]!r}")
                    return time.perf_counter() - t, len(raw), json.loads(raw)

                warm, size, body = await once()
                rows = rows_of(body)
                if report == "reconciliation":   # the store is exact: every row should say so
                    reasons: dict[str, int] = {}
                    for row in body["rows"]:
                        reasons[row["reason"]] = reasons.get(row["reason"], 0) + 1
                    print(f"  ({report} {period}: rows by reason {reasons})")
                reps = args.reps if warm < 1.0 else max(3, min(args.reps, int(20 / warm)))
                times = [(await once())[0] for _ in range(reps)]
                times.sort()
                p50 = statistics.median(times) * 1e3
                p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))] * 1e3
                results.append({"report": report, "period": period, "p50": p50, "p95": p95, "rows": rows,
                                "bytes": size, "reps": reps})
                print(f"  {report:34s} {period:8s} {p50:9.1f} {p95:9.1f} {rows:8,d} {size:11,d} {reps:4d}", flush=True)
    finally:
        await store.close()
    return results


async def rollup_cells(db: Target, args: argparse.Namespace) -> str:
    """How many rollup rows the 1/30/90-day GGR reads (what grows with the events at a fixed floor)."""
    last = START + dt.timedelta(days=args.days - 1)
    counts = [await db.fetchval("SELECT COUNT(*) FROM rollups WHERE day >= $1 AND day <= $2",
                                (last - dt.timedelta(days=n - 1)).isoformat(), last.isoformat())
              for n in (1, 30, args.days)]
    return f"{counts[0]:,} (1 day), {counts[1]:,} (30 days), {counts[2]:,} ({args.days} days)"


def header() -> None:
    print(f"  {'report':34s} {'period':8s} {'p50 ms':>9s} {'p95 ms':>9s} {'rows':>8s} {'bytes':>11s} {'reps':>4s}")


def goals(by_size: dict[int, list[dict[str, Any]]]) -> None:
    print("\ngoals (issue 13; latencies on p95):")
    for events, results in by_size.items():
        ggr = [r for r in results if r["report"].startswith("ggr ")]
        for period, limit in (("1 day", 50), ("90 days", 200)):
            worst = max((r for r in ggr if r["period"] == period), key=lambda r: r["p95"])
            verdict = "PASS" if worst["p95"] < limit else "FAIL"
            print(f"  {verdict}  {events:>9,} events: GGR every grouping over {period} < {limit} ms "
                  f"(worst {worst['report']}: {worst['p95']:.1f} ms)")
        recon = next(r for r in results if r["report"] == "reconciliation" and r["period"] == "30 days")
        verdict = "PASS" if recon["p95"] < 1000 else "FAIL"
        print(f"  {verdict}  {events:>9,} events: reconciliation over 30 days < 1 s ({recon['p95']:.0f} ms)")
    sizes = sorted(by_size)
    if len(sizes) < 2:
        print("  (1-day scaling: give two --events sizes)")
        return
    small, large = sizes[0], sizes[-1]
    base = {(r["report"], r["period"]): r for r in by_size[small] if r["period"] == "1 day"}
    worst_ratio, worst_name, failed = 0.0, "", []
    for r in by_size[large]:
        b = base.get((r["report"], r["period"]))
        if b is None:
            continue
        # the same query over a longer history; where the dense data still gives a larger answer (more
        # hours with play, a few more cells), the time is judged per byte of answer
        grown = max(1.0, r["bytes"] / b["bytes"])
        ratio = r["p50"] / b["p50"] / grown
        if grown > 1.01:
            print(f"  ({r['report']}: answer {grown:.2f}× larger at {large:,}; "
                  f"p50 {r['p50'] / b['p50']:.2f}×, {ratio:.2f}× per byte)")
        if ratio > worst_ratio:
            worst_ratio, worst_name = ratio, r["report"]
        if ratio > 1.2:
            failed.append(f"{r['report']} {ratio:.2f}×")
    verdict = "PASS" if not failed else "FAIL"
    over = "; over: " + ", ".join(failed) if failed else ""
    print(f"  {verdict}  1-day figures (p50) at {large:,} within 1.2× of those at {small:,} "
          f"per byte of answer (worst {worst_name}: {worst_ratio:.2f}×){over}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000], help="store sizes (total events)")
    parser.add_argument("--halls", type=int, default=5)
    parser.add_argument("--egms", type=int, default=200, help="machines per hall (the last one is quiet)")
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--dense", action="store_true",
                        help="every machine plays each of its games every day (the 1.2x goal compares equal answers)")
    parser.add_argument("--reps", type=int, default=20, help="timed requests per report, after one warm-up")
    parser.add_argument("--keep", help="build into / reuse DIR/events-N (else a temporary directory, deleted)")
    parser.add_argument("--db", default="sqlite", metavar="sqlite|postgresql|URL",
                        help="sqlite (a file per size, the default); postgresql (a private throwaway cluster, "
                             "as the tests start); or a postgresql:// URL of a server to build a database "
                             "hallsync_reports_N per size in")
    args = parser.parse_args()
    if args.halls < 2 or args.egms < 2:
        raise SystemExit("--halls and --egms must be at least 2")
    setup_logging("warning")

    root = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="hallsync-reports-"))
    by_size: dict[int, list[dict[str, Any]]] = {}
    cluster = None
    server: str | None = None
    if args.db == "postgresql":
        from tests.pgcluster import PgCluster

        cluster = PgCluster().start()
        server = cluster.url
        if args.keep:
            print("note: a private cluster is deleted at the end; --keep keeps only build.json", flush=True)
    elif args.db.startswith(("postgresql://", "postgres://")):
        server = args.db
    elif args.db != "sqlite":
        raise SystemExit(f"--db {args.db!r}: give sqlite, postgresql or a postgresql:// URL")
    try:
        for events in args.events:
            where = root / f"events-{events}"
            db = Target(where, server, events)
            meta = where / "build.json"
            print(f"\n== {events:,} events: {args.halls} halls × {args.egms} EGMs × {args.days} days "
                  f"({db}) {load()}", flush=True)
            if meta.exists() and cluster is None:
                got = json.loads(meta.read_text())
                if ([got["halls"], got["egms"], got["days"], got.get("dense", False), got.get("db", "sqlite")]
                        != [args.halls, args.egms, args.days, args.dense, "sqlite" if server is None else server]):
                    raise SystemExit(f"{where} was built with other settings: {got}")
                print(f"reusing it: {got['events']:,} events, built in {got['seconds']:.0f} s; "
                      f"db {await db.size() / 2**20:.1f} MiB", flush=True)
            else:
                if where.exists() and any(where.iterdir()) and cluster is None:
                    raise SystemExit(f"{where} holds an unfinished build: remove it")
                where.mkdir(parents=True, exist_ok=True)
                await build(db, args, events)
            await db.settle()
            print(f"rollup cells (hall, device, game, day) summed by GGR: {await rollup_cells(db, args)}")
            print(f"reports over HTTP ({load()}):")
            header()
            by_size[events] = await measure(db, args)
            print(f"after the reports: {load()}")
        goals(by_size)
        print(f"\n{load()} (2 cores, shared); store: {'SQLite' if server is None else 'PostgreSQL'}")
    finally:
        if cluster is not None:
            cluster.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
