"""Many halls into one HQ: H halls' real outboxes and replicators → Mosquitto → one ``hall-central serve``.

Run: ``.venv/bin/python bench/many_halls.py --halls 100 --live [--seconds 30]`` or
``.venv/bin/python bench/many_halls.py --halls 100 --backlog [--backlog-events 5000]``.

Every hall is the agent's own code: a durable :class:`agent.outbox.Outbox` and the real
:class:`agent.replicator.Replicator` (its defaults, or ``--linger``/``--congested-linger``/``--batch``), so
batches leave at the replicator's own pacing. The halls run in ``--agent-procs`` processes (``hall-central
serve`` and Mosquitto are processes of their own, as in the field). The outboxes sit on ``/dev/shm`` when it
exists: the halls' disks are not HQ's disk, so their fsyncs must not queue in front of central's.

``--live``: each hall has ``--egms`` machines producing ``--rate`` events per machine per second (bets,
wins, game ends, bills: the money rule's types), appended every 20 ms with the agent time at which each
event happened. After ``--warmup`` s, for ``--seconds`` s: offered = events appended, sustained = events
central acked (as seen by the halls), ack latency = from an event's agent time to its hall receiving the
ack that covers it (p50/p99 over events). ``--backlog``: each outbox is filled with ``--backlog-events``
first, then every replicator starts at once; the figure is all events over the time until every hall is
fully acked.

At the end every hall drains, and central's per-hall bets/wins/rounds/cash and chain end are compared
with what the halls appended (exit 1 on any difference). The last line is ``events/s: X`` (sustained).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # the repo root goes on sys.path first
    Proc,
    cli,
    cpu_seconds,
    http_json,
    start_broker,
    start_central,
    wait_until,
    work_dir,
)
from _pg import (
    PgServer,
    add_db_options,
    check_db_options,
    configurations,
    is_postgres,
    print_scaling,
    versus_sqlite,
)

TICK = 0.02
"""Seconds between two appends of a live hall (its pollers' events arrive in small groups)."""
GAMES = ("g-fruits", "g-poker", "g-roulette")


def _money(c: Any) -> list[int]:
    return [c.bets, c.wins, c.rounds, c.cash_in, c.cash_out]


def hall_name(i: int) -> str:
    return f"hall-{i:03d}"


# =====================================================================================================
# agent processes: one asyncio loop with several halls
# =====================================================================================================

def _templates() -> list[tuple[float, list[tuple[str, dict[str, Any]]]]]:
    """The plays a machine makes, as (threshold of a roll in [0, 1), the (type, data) it may be)."""
    bills = [("bill.accepted", {"amount": a, "currency": "EUR", "denomination": 1000}) for a in (500, 1000, 2000)]
    bets = [("game.bet", {"amount": a, "currency": "EUR", "game": g, "denom": 1}) for a in (10, 20, 50, 100)
            for g in GAMES]
    wins = [("game.win", {"amount": a, "currency": "EUR", "game": g, "paid_by": "machine"}) for a in (20, 50, 200)
            for g in GAMES]
    ends = [("game.ended", {"game": g, "bet": 10, "win": 0}) for g in GAMES]
    return [(0.05, bills), (0.55, bets), (0.70, wins), (1.0, ends)]


class Plays:
    """What a hall's machines do: bets, wins, game ends and bills; keeps the money truth per the shared rule.

    The truth is counted per kind of play and summed by the money rule at the end: the halls' processes
    share 2 cores with central, and the bench's own bookkeeping should not take what the agent needs."""

    def __init__(self, seed: int, egms: int) -> None:
        self.rng = random.Random(seed)
        self.egms = egms
        self.groups = _templates()
        self.counts: dict[tuple[int, int], int] = {}

    def drafts(self, times: list[int]) -> list[Any]:
        from agent.pipeline.drafts import EventDraft

        out = []
        rng, groups, counts, egms = self.rng, self.groups, self.counts, self.egms
        for at in times:
            device = f"egm-{rng.randint(1, egms):03d}"
            roll = rng.random()
            g = next(i for i, (upto, _) in enumerate(groups) if roll < upto)
            choice = rng.randrange(len(groups[g][1]))
            kind, data = groups[g][1][choice]
            counts[(g, choice)] = counts.get((g, choice), 0) + 1
            out.append(EventDraft(device, kind, at - 100, at, dict(data)))
        return out

    @property
    def total(self) -> list[int]:
        """bets, wins, rounds, cash in, cash out of every play so far (the shared money rule)."""
        from protocols.sync.money import contribution

        money = [0, 0, 0, 0, 0]
        for (g, choice), n in self.counts.items():
            c = contribution(*self.groups[g][1][choice])
            for i, amount in enumerate(_money(c)):
                money[i] += amount * n
        return money


async def agent_proc(args: argparse.Namespace) -> int:
    """Run halls ``--first``..``--last`` (inclusive); write ``--out`` (JSON) at the end."""
    from agent.keys import load_private_key
    from agent.logging_setup import setup_logging
    from agent.outbox import Outbox
    from agent.replicator import Replicator, ReplicatorConfig
    from agent.standing import STANDING_FILE, StandingStore
    from mqttlink import parse_broker_url
    from protocols.sync import public_key_from_pem

    setup_logging("warning", json=False)
    work, outboxes = Path(args.work), Path(args.outboxes)
    central_pub = public_key_from_pem((work / "central" / "central.pub").read_bytes())
    defaults = ReplicatorConfig()
    config = ReplicatorConfig(batch_max=args.batch or defaults.batch_max,
                              linger=defaults.linger if args.linger is None else args.linger,
                              congested_linger=(defaults.congested_linger if args.congested_linger is None
                                                else args.congested_linger))
    url = parse_broker_url(args.mqtt)
    window: list[float] = [math.inf, math.inf]   # the measured window (time.time()), set once known
    samples: list[tuple[float, int]] = []        # (ack latency s, events) for events appended in the window
    acked_in_window = 0

    class TimedReplicator(Replicator):
        """The real replicator; notes when each appended group of events is covered by an ack."""

        pending: list[tuple[int, int, int]]   # (last seq, oldest agent time µs, events) of each append

        async def _ack(self, through: int, last_hash: str) -> None:
            nonlocal acked_in_window
            await super()._ack(through, last_hash)
            now = time.time()
            while self.pending and self.pending[0][0] <= self.outbox.acked_through:
                _, oldest, count = self.pending.pop(0)
                if window[0] <= oldest / 1e6 < window[1]:
                    samples.append((now - oldest / 1e6, count))
                if window[0] <= now < window[1]:
                    acked_in_window += count

    halls: list[dict[str, Any]] = []
    for i in range(args.first, args.last + 1):
        name = hall_name(i)
        data_dir = work / "halls" / name
        (outboxes / name).mkdir(parents=True, exist_ok=True)
        outbox = Outbox(outboxes / name / "outbox.db", name)
        await outbox.start()
        replicator = TimedReplicator(outbox, name, load_private_key(data_dir / "hall.key"), central_pub, url,
                                     data_dir=data_dir, config=config, client_id=f"bench-agent-{name}")
        replicator.pending = []
        # HQ sends each hall its standing data (the gaming day) when it comes online: verified and kept as
        # the agent does; nothing here plays by the day, so there is nothing to apply it to
        replicator.standing = StandingStore(name, central_pub, data_dir / STANDING_FILE, lambda doc: None).on_message
        halls.append({"name": name, "outbox": outbox, "replicator": replicator, "plays": Plays(i, args.egms),
                      "offered": 0})

    async def append(hall: dict[str, Any], times: list[int]) -> None:
        outbox = hall["outbox"]
        await outbox.append(hall["plays"].drafts(times))
        hall["replicator"].pending.append((outbox.last_seq, times[0], len(times)))

    if args.mode == "backlog":
        for hall in halls:
            left = args.backlog_events
            while left:
                n = min(1000, left)
                now = time.time_ns() // 1000
                await append(hall, [now] * n)
                left -= n
        (work / f"filled-{args.first}").write_text("ok")
        while not (work / "go").exists():  # noqa: ASYNC110  (the parent writes it once every process filled)
            await asyncio.sleep(0.01)
    started = time.time()
    for hall in halls:
        await hall["replicator"].start()
    producers: list[asyncio.Task[None]] = []
    if args.mode == "live":
        window[0] = started + args.warmup
        window[1] = window[0] + args.seconds
        per_tick = args.egms * args.rate * TICK

        async def produce(hall: dict[str, Any]) -> None:
            await asyncio.sleep(random.random() * TICK)   # halls out of phase, as in the field
            owed, last = 0.0, time.time()
            while time.time() < window[1]:
                await asyncio.sleep(TICK)
                now = time.time()
                owed += per_tick * (now - last) / TICK
                n, last = int(owed), now
                if not n:
                    continue
                owed -= n
                # the events happened during the last tick, evenly spread
                times = [int((now - TICK * (n - 1 - k) / n) * 1e6) for k in range(n)]
                await append(hall, times)
                if window[0] <= now < window[1]:
                    hall["offered"] += n

        producers = [asyncio.create_task(produce(h)) for h in halls]
        await asyncio.gather(*producers)
    # drain: every hall fully acked
    deadline = time.time() + args.drain
    while any(h["outbox"].acked_through < h["outbox"].last_seq for h in halls):
        if time.time() > deadline:
            break
        await asyncio.sleep(0.01)
    finished = time.time()
    result = {
        "started": started, "finished": finished, "window": window if args.mode == "live" else None,
        "offered": sum(h["offered"] for h in halls), "acked_in_window": acked_in_window, "samples": samples,
        "halls": {h["name"]: {"last_seq": h["outbox"].last_seq, "acked_through": h["outbox"].acked_through,
                              "total": h["plays"].total, "batches": h["replicator"].stats.get("batches", 0),
                              "ack_timeouts": h["replicator"].stats.get("ack_timeouts", 0),
                              "resends": h["replicator"].stats.get("resend_requests", 0)}
                  for h in halls},
    }
    for hall in halls:
        await hall["replicator"].stop()
        await hall["outbox"].stop()
    Path(args.out).write_text(json.dumps(result))
    return 0


# =====================================================================================================
# the parent: broker, central, halls registered, agent processes, figures
# =====================================================================================================

def register(work: Path, db: Path | str, halls: int) -> None:
    """Each hall's key pair (agent.keys, as ``hall-agent keys init``) and its registration in central's store."""
    from agent.keys import init_keys
    from central.store import open_store

    async def add() -> None:
        store = await open_store(str(db))
        try:
            for i in range(halls):
                files = init_keys(work / "halls" / hall_name(i))
                await store.halls.add_hall(hall_name(i), files.public.read_text(), now=time.time_ns() // 1000)
        finally:
            await store.close()

    asyncio.run(add())


def percentile(samples: list[tuple[float, int]], q: float) -> float:
    """The ``q`` quantile of latencies weighted by their event counts."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    total = sum(n for _, n in ordered)
    at, target = 0, q * total
    for latency, n in ordered:
        at += n
        if at >= target:
            return latency
    return ordered[-1][0]


def check_central(db: Path | str, results: list[dict[str, Any]]) -> bool:
    from central.store import open_store

    async def read() -> tuple[dict[str, tuple[int, ...]], dict[str, int], dict[str, int]]:
        store = await open_store(str(db))
        try:
            fetch = store.database.fetch  # type: ignore[attr-defined]  (both backends have it)
            got = {r[0]: tuple(int(v) for v in r[1:]) for r in await fetch(
                "SELECT hall, SUM(bets), SUM(wins), SUM(rounds), SUM(cash_in), SUM(cash_out) FROM rollups"
                " GROUP BY hall")}
            ends = {r[0]: r[1] for r in await fetch("SELECT id, last_seq FROM halls")}
            counts = {r[0]: r[1] for r in await fetch("SELECT hall, COUNT(*) FROM events GROUP BY hall")}
        finally:
            await store.close()
        return got, ends, counts

    got, ends, counts = asyncio.run(read())
    bad = []
    behind = []
    for result in results:
        for name, hall in result["halls"].items():
            want = tuple(hall["total"])
            have = tuple(got.get(name, (0, 0, 0, 0, 0)))
            acked = hall["acked_through"]
            if acked < hall["last_seq"] and ends.get(name) == acked and counts.get(name, 0) == acked:
                behind.append(f"{name} acked {acked:,} of {hall['last_seq']:,}")   # stored exactly what was acked
                continue
            if (have != want or ends.get(name) != hall["last_seq"] or counts.get(name, 0) != hall["last_seq"]
                    or hall["acked_through"] != hall["last_seq"]):
                bad.append(f"{name}: central {have} end {ends.get(name)} events {counts.get(name, 0)}; hall {want} "
                           f"last {hall['last_seq']} acked {hall['acked_through']}")
    if behind:
        print(f"central: NOT DRAINED within --drain in {len(behind)} halls (central's chain end and events are what "
              f"it acked; the rest was still queued), e.g. " + "; ".join(behind[:3]))
    if bad:
        print(f"central: MISMATCH in {len(bad)} halls, e.g. " + "; ".join(bad[:3]))
    if bad or behind:
        return False
    print("central: OK (every hall's events once, chain end, bets/wins/rounds/cash equal what the halls appended)")
    return True


def start_centrals(work: Path, db: Path | str, mqtt: str, workers: int | None,
                   share_group: str) -> tuple[list[Proc], list[str]]:
    """One ``serve`` (role all) when ``workers`` is None, else that many ``serve --role ingest``."""
    from mqttlink.broker import free_port

    procs: list[Proc] = []
    urls: list[str] = []
    try:
        for i in range(1 if workers is None else workers):
            port = free_port()
            if workers is None:
                procs.append(start_central(work, work / "central", db, mqtt, port, share_group=share_group))
            else:
                procs.append(start_central(work, work / "central", db, mqtt, port, role="ingest",
                                           name=f"ingest-{i}", client_id=f"bench-ingest-{i}",
                                           share_group=share_group))
            urls.append(f"http://127.0.0.1:{port}/api/v1/health")
    except BaseException:
        for proc in procs:
            proc.stop()
        raise
    return procs, urls


def run_once(args: argparse.Namespace, work: Path, *, db: Path | str | None = None, workers: int | None = None,
             pg: PgServer | None = None, share_group: str = "bench") -> tuple[int, dict[str, Any]]:
    """One run in ``work``: SQLite and one ``serve`` (the defaults) or ``workers`` ingest processes on
    ``db`` (PostgreSQL; ``pg`` the server whose CPU is measured). (exit code, figures)."""
    shm = Path("/dev/shm")
    outboxes = Path(f"/dev/shm/{work.parent.name}-{work.name}-outboxes") if shm.is_dir() else work / "outboxes"
    outboxes.mkdir(parents=True, exist_ok=True)
    broker, mqtt = start_broker(work, args.mqtt)
    centrals: list[Proc] = []
    code = 1
    try:
        cli("hall-central", "keys", "init", "--data-dir", str(work / "central"))
        db = work / "central.db" if db is None else db
        register(work, db, args.halls)
        centrals, health_urls = start_centrals(work, db, mqtt, workers, share_group)
        procs = max(1, min(args.agent_procs, args.halls))
        spans = [(k * args.halls // procs, (k + 1) * args.halls // procs - 1) for k in range(procs)]
        agents = []
        for first, last in spans:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--agent-proc", "--mqtt", mqtt, "--work", str(work),
                   "--outboxes", str(outboxes), "--out", str(work / f"agents-{first}.json"), "--first", str(first),
                   "--last", str(last), "--egms", str(args.egms), "--rate", str(args.rate), "--seconds",
                   str(args.seconds), "--warmup", str(args.warmup), "--backlog-events", str(args.backlog_events),
                   "--drain", str(args.drain), f"--{args.mode}"]
            if args.linger is not None:
                cmd += ["--linger", str(args.linger)]
            if args.batch is not None:
                cmd += ["--batch", str(args.batch)]
            if args.congested_linger is not None:
                cmd += ["--congested-linger", str(args.congested_linger)]
            agents.append(Proc(f"agents-{first}", cmd, work).start())
        if args.mode == "backlog":
            wait_until(lambda: all((work / f"filled-{first}").exists() for first, _ in spans), 600,
                       "the outboxes filled", *agents)
        cpu0 = {"central": [cpu_seconds(c.pid) for c in centrals],
                "mosquitto": cpu_seconds(broker.proc.pid) if broker is not None else math.nan,
                "postgres": pg.cpu_seconds() if pg is not None else math.nan}
        load0 = os.getloadavg()
        children0 = os.times()
        t0 = time.time()
        (work / "go").write_text("go")
        for agent in agents:
            assert agent.proc is not None
            while agent.proc.poll() is None:
                time.sleep(0.2)
                for central in centrals:
                    if not central.alive():
                        raise SystemExit(f"{central.name} exited:\n{central.tail()}")
            if agent.proc.returncode != 0:
                raise SystemExit(f"{agent.name} failed ({agent.proc.returncode}):\n{agent.tail()}")
        elapsed = time.time() - t0
        ingests = [http_json(url).get("presence", {}).get("ingest", {}) for url in health_urls]
        cpu: dict[str, Any] = {
            "central": [cpu_seconds(c.pid) - c0 for c, c0 in zip(centrals, cpu0["central"], strict=True)],
            "mosquitto": (cpu_seconds(broker.proc.pid) - cpu0["mosquitto"]) if broker is not None else math.nan,
            "postgres": (pg.cpu_seconds() - cpu0["postgres"]) if pg is not None else math.nan}
        load1 = os.getloadavg()
        children1 = os.times()   # the agent processes, reaped by now
        cpu["agents"] = (children1.children_user + children1.children_system - children0.children_user
                         - children0.children_system)
        results = [json.loads((work / f"agents-{first}.json").read_text()) for first, _ in spans]
        halls = {name: h for r in results for name, h in r["halls"].items()}
        batches = sum(h["batches"] for h in halls.values())
        events = sum(h["last_seq"] for h in halls.values())
        shape = "1 serve (role all), SQLite" if workers is None else f"{workers} × serve --role ingest, PostgreSQL"
        print(f"{args.halls} halls × {args.egms} EGMs, {args.mode}; {len(agents)} agent processes; outboxes in "
              f"{outboxes.parent}; central {shape}, pid {', '.join(str(c.pid) for c in centrals)}")
        if args.mode == "live":
            offered = sum(r["offered"] for r in results) / args.seconds
            sustained = sum(r["acked_in_window"] for r in results) / args.seconds
            samples = [tuple(s) for r in results for s in r["samples"]]
            print(f"offered: {offered:,.0f} events/s; sustained (acked in the window): {sustained:,.0f} events/s "
                  f"({sustained / offered:.1%}) over {args.seconds:.0f} s after {args.warmup:.0f} s warm-up")
            print(f"ack latency (agent time → ack at the hall): p50 {percentile(samples, 0.5) * 1e3:,.0f} ms, "
                  f"p99 {percentile(samples, 0.99) * 1e3:,.0f} ms, max {max(s[0] for s in samples) * 1e3:,.0f} ms")
        else:
            first_start = min(r["started"] for r in results)
            last_done = max(r["finished"] for r in results)
            sustained = events / (last_done - first_start)
            print(f"backlog: {events:,} events ({args.backlog_events:,} per hall) acked in "
                  f"{last_done - first_start:.2f} s: {sustained:,.0f} events/s")
        print(f"batches: {batches:,} ({events / max(1, batches):.1f} events each); ack timeouts "
              f"{sum(h['ack_timeouts'] for h in halls.values())}, resend requests "
              f"{sum(h['resends'] for h in halls.values())}")
        for central, ingest in zip(centrals, ingests, strict=True):
            if "group_commits" in ingest:
                print(f"central group commit: {ingest['group_commits']:,} commits for {ingest['group_units']:,} "
                      f"units ({ingest['group_units'] / max(1, ingest['group_commits']):.1f} per commit, largest "
                      f"{ingest['largest_group']})")
            elif workers is not None:
                print(f"{central.name}: {ingest.get('events_stored', 0):,} events stored, "
                      f"{ingest.get('stored_after_recheck', 0)} stored after a gap recheck, "
                      f"{ingest.get('gap_held_by_peer', 0)} gaps held by the other worker, "
                      f"{ingest.get('resends_asked', 0)} resends asked")
        central_cpu = sum(cpu["central"])
        print(f"CPU over {elapsed:.1f} s: central {central_cpu:.1f} s ({central_cpu / elapsed:.0%} of a core"
              + ("" if len(centrals) == 1 else ": " + " + ".join(f"{c:.1f}" for c in cpu["central"])) + "), "
              f"mosquitto {cpu['mosquitto']:.1f} s, "
              + ("" if pg is None else f"postgresql {cpu['postgres']:.1f} s, ")
              + f"the halls' agents {cpu['agents']:.1f} s (their whole life, fill included); "
              f"load average {load0[0]:.2f} at start, {load1[0]:.2f} at end; "
              f"{os.cpu_count()} CPUs")
        # What one event costs each side, over every event of the run (warm-up and drain included): at
        # 100 halls × 100 events/s the sum times 10,000 must fit the machine's cores for any goal to hold.
        print(f"CPU per event: central {central_cpu / max(1, events) * 1e6:,.0f} µs (with its verify child), "
              + ("" if pg is None else f"postgresql {cpu['postgres'] / max(1, events) * 1e6:,.0f} µs, ")
              + f"mosquitto {cpu['mosquitto'] / max(1, events) * 1e6:,.0f} µs, "
              f"the halls' agents {cpu['agents'] / max(1, events) * 1e6:,.0f} µs")
        code = 0 if check_central(db, results) else 1
        figures = {"events_per_s": sustained, "events": events, "central": cpu["central"],
                   "postgres": cpu["postgres"], "mosquitto": cpu["mosquitto"], "agent": cpu["agents"]}
    finally:
        for central in centrals:
            central.stop()
        if broker is not None:
            broker.stop()
        shutil.rmtree(outboxes, ignore_errors=True)
    return code, figures


def summary(runs: list[tuple[str, dict[str, Any]]]) -> float:
    """The side-by-side table; returns the events/s of the last configuration (median over repeats)."""
    import statistics

    labels = list(dict.fromkeys(label for label, _ in runs))
    medians: dict[str, float] = {}
    print("\nsummary: CPU seconds per 1,000 events (median over runs): central (all its processes, with their "
          "verify children) | PostgreSQL (all backends) | Mosquitto | the halls' agents")
    print(f"{'configuration':<22} {'events/s median (range)':<28} {'vs SQLite':>9}  {'central':>7} {'pg':>7} "
          f"{'mqtt':>7} {'agents':>7}")
    for label in labels:
        mine = [f for lab, f in runs if lab == label]
        eps = [f["events_per_s"] for f in mine]
        medians[label] = statistics.median(eps)

        def med(key: str, mine: list[dict[str, Any]] = mine) -> str:
            values = [(sum(f[key]) if isinstance(f[key], list) else f[key]) / max(1, f["events"]) * 1000
                      for f in mine]
            values = [v for v in values if v == v]
            return "-" if not values else f"{statistics.median(values):.3f}"

        versus = versus_sqlite(labels, medians, label)
        spread = f"{medians[label]:,.0f} ({min(eps):,.0f}–{max(eps):,.0f})"
        print(f"{label:<22} {spread:<28} {versus:>9}  {med('central'):>7} {med('postgres'):>7} "
              f"{med('mosquitto'):>7} {med('agent'):>7}")
    print_scaling(labels, medians)
    return medians[labels[-1]]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--halls", type=int, default=20)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--live", dest="mode", action="store_const", const="live", help="halls playing (default)")
    mode.add_argument("--backlog", dest="mode", action="store_const", const="backlog",
                      help="every hall ships a filled outbox at once")
    p.add_argument("--egms", type=int, default=200, help="machines per hall (default 200)")
    p.add_argument("--rate", type=float, default=0.5, help="events per machine per second (default 0.5)")
    p.add_argument("--seconds", type=float, default=30.0, help="measured window of --live (default 30)")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds before the window (default 5)")
    p.add_argument("--backlog-events", type=int, default=5000, help="events per hall for --backlog (default 5000)")
    p.add_argument("--linger", type=float, default=None, help="replicator linger (default: the agent's)")
    p.add_argument("--congested-linger", type=float, default=None,
                   help="replicator congested_linger (default: the agent's; 0: off, the pre-issue-13 pacing)")
    p.add_argument("--batch", type=int, default=None, help="replicator batch_max (default: the agent's)")
    p.add_argument("--agent-procs", type=int, default=2, help="processes the halls are spread over (default 2)")
    p.add_argument("--drain", type=float, default=120.0, help="seconds allowed for the final drain")
    p.add_argument("--mqtt", metavar="URL", help="use this broker instead of starting a Mosquitto")
    add_db_options(p, "a file, one serve")
    p.add_argument("--keep", metavar="DIR", help="work in DIR (created) and keep it afterwards")
    p.add_argument("--agent-proc", action="store_true", help=argparse.SUPPRESS)
    for hidden in ("--work", "--outboxes", "--out"):
        p.add_argument(hidden, help=argparse.SUPPRESS)
    p.add_argument("--first", type=int, help=argparse.SUPPRESS)
    p.add_argument("--last", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.mode = args.mode or "live"
    if args.agent_proc:
        return asyncio.run(agent_proc(args))
    check_db_options(p, args)
    configs = configurations(args)
    work = work_dir(args.keep, "hallsync-many-")
    pg = PgServer(args.db) if is_postgres(args.db) else None
    runs: list[tuple[str, dict[str, Any]]] = []
    code = 0
    try:
        if pg is not None:
            print(f"postgresql: {pg.describe()}", flush=True)
        single = len(configs) == 1 and args.repeat == 1
        k = 0
        for _ in range(args.repeat):
            for label, workers in configs:
                sub = work if single else work / f"run-{k}"
                sub.mkdir(exist_ok=True)
                if not single:
                    print(f"\n== {label} (run {k + 1} of {len(configs) * args.repeat}) ==", flush=True)
                db = None if workers is None or pg is None else pg.database(f"r{k}")
                try:
                    one_code, figures = run_once(args, sub, db=db, workers=workers,
                                                 pg=None if db is None else pg, share_group=f"bench{k}")
                finally:
                    if db is not None and pg is not None:
                        pg.drop(db)
                code = code or one_code
                runs.append((label, figures))
                k += 1
        sustained = summary(runs) if len(runs) > 1 else runs[0][1]["events_per_s"]
        print(f"events/s: {sustained:.0f}")
    finally:
        if pg is not None:
            pg.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
