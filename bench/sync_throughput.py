"""End-to-end replication throughput: agent outbox → signed batches → Mosquitto → ``hall-central serve`` → ack.

Run: ``.venv/bin/python bench/sync_throughput.py --events 100000 [--mqtt URL] [--batch 1000] [--window 20000]
[--bare] [--keep DIR]``.

Full mode: a temp dir, our own Mosquitto (unless ``--mqtt``), central's and the hall's keys, the hall
registered, ``hall-central serve`` as a separate process (the machine's second core). This process is
the agent: it fills its durable outbox with N realistic events (``tests.central.builders.FakeHall``:
bills, bets, wins, games ended, tickets, status, at a hall's pace: ``--rate`` events per second of hall
time, by default half an event per EGM; timed on its own), then starts the real replicator
and times until ``outbox.acked_through == N``, i.e. every event is signed, published, verified by
central, stored with its rollups, committed and acked (with central's signature, checked here).
Then central's per-device GGR is compared with FakeHall's truth.

``--bare``: the baseline on the same machine and broker (notes/pitfalls.md): durable SQLite at both
ends (WAL, synchronous=FULL), QoS 1, ~200-byte JSON events, batches of ``--batch``, a window of
unacked batches, no crypto, no hash chain, no rollups. The receiver is this file in
``--bare-receiver`` mode, a separate process: one transaction per batch, then an ack.

The last line is always ``events/s: X``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # the repo root goes on sys.path first
    Proc,
    cpu_seconds,
    fmt_s,
    http_json,
    peak_rss_mb,
    reset_peak_rss,
    rss_mb,
    setup_hq,
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

HALL = "bench-hall"
GEN_CHUNK = 20_000  # events generated at a time (bounded memory while filling a 1M backlog)
APPEND_SIZE = 1000  # drafts per Outbox.append
APPENDS_IN_FLIGHT = 16


def self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f} events/s" if seconds > 0 else "-"


class Sampler:
    """Samples the current RSS of this process every ``interval`` s while awaited alongside the run."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    async def run(self, interval: float = 0.25) -> None:
        while True:
            self.samples.append(rss_mb())
            await asyncio.sleep(interval)

    def summary(self) -> str:
        if not self.samples:
            return "-"
        return (f"min {min(self.samples):.0f} / median {sorted(self.samples)[len(self.samples) // 2]:.0f} / "
                f"max {max(self.samples):.0f} MiB over {len(self.samples)} samples")


# =====================================================================================================
# full pipeline
# =====================================================================================================

def _minus(a: Any, b: Any) -> Any:
    from protocols.sync.money import Contribution

    return Contribution(a.bets - b.bets, a.wins - b.wins, a.rounds - b.rounds, a.cash_in - b.cash_in,
                        a.cash_out - b.cash_out)


async def fill_outbox(outbox: Any, n: int, seed: int, devices: int,
                      rate: float) -> tuple[dict[str, Any], float, float]:
    """Append exactly ``n`` FakeHall events, ``rate`` per second of hall time on average (so the rollups
    get a real hall's number of device x game x day keys per batch); (truth per device, generation
    seconds, append seconds)."""
    from agent.pipeline.drafts import EventDraft
    from protocols.sync.money import contribution
    from tests.central.builders import FakeHall

    fake = FakeHall(HALL, seed=seed, devices=devices, gap_us=(1, max(2, round(2_000_000 / rate))))
    gen_s = append_s = 0.0
    left = n
    while left:
        t0 = time.perf_counter()
        events = fake.play(min(GEN_CHUNK, left))
        for extra in events[left:]:  # play() may finish a game round past the count: not sent, not truth
            fake.per_device[extra.device] = _minus(fake.per_device[extra.device],
                                                   contribution(extra.type, extra.data))
        events = events[:left]
        drafts = [EventDraft(e.device, e.type, e.device_time, e.agent_time, dict(e.data)) for e in events]
        fake.events.clear()  # FakeHall keeps every sealed event; we only need its running truth
        del events
        t1 = time.perf_counter()
        gen_s += t1 - t0
        pending: set[asyncio.Task[Any]] = set()
        for i in range(0, len(drafts), APPEND_SIZE):
            pending.add(asyncio.create_task(outbox.append(drafts[i:i + APPEND_SIZE])))
            if len(pending) >= APPENDS_IN_FLIGHT:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
        for task in asyncio.as_completed(pending):
            await task
        append_s += time.perf_counter() - t1
        left -= len(drafts)
    return fake.per_device, gen_s, append_s


async def agent_side(args: argparse.Namespace, agent_dir: Path, central_dir: Path, mqtt: str,
                     centrals: list[Proc], health_urls: list[str], pg: Any = None) -> dict[str, Any]:
    from agent.keys import load_private_key
    from agent.logging_setup import setup_logging
    from agent.outbox import Outbox
    from agent.replicator import Replicator, ReplicatorConfig
    from agent.standing import STANDING_FILE, StandingStore
    from mqttlink import parse_broker_url
    from protocols.sync import public_key_from_pem

    setup_logging("warning", json=False)
    n = args.events
    out: dict[str, Any] = {}
    outbox = Outbox(agent_dir / "outbox.db", HALL)
    await outbox.start()
    try:
        rss0 = rss_mb()
        truth, gen_s, append_s = await fill_outbox(outbox, n, args.seed, args.devices,
                                                   args.rate or args.devices / 2)
        assert outbox.last_seq == n, (outbox.last_seq, n)
        status = outbox.status()
        print(f"fill: {n:,} events in {append_s:.2f} s ({rate(n, append_s)}; durable appends of {APPEND_SIZE}, "
              f"{status['commits']:,} commits), outbox {status['db_bytes'] / 2**20:,.0f} MiB; "
              f"FakeHall generation not counted: {gen_s:.2f} s", flush=True)
        print(f"agent RSS: {rss0:.0f} MiB before fill, {rss_mb():.0f} MiB after, peak {peak_rss_mb():.0f} MiB "
              f"during fill", flush=True)
        out["truth"] = truth

        key = load_private_key(agent_dir / "hall.key")
        central_pub = public_key_from_pem((central_dir / "central.pub").read_bytes())
        config = ReplicatorConfig(batch_max=args.batch, linger=args.linger, window_events=args.window)
        replicator = Replicator(outbox, HALL, key, central_pub, parse_broker_url(mqtt), data_dir=agent_dir,
                                config=config)
        # the standing data HQ sends on connect, verified and kept as the agent does (nothing to apply it to)
        replicator.standing = StandingStore(HALL, central_pub, agent_dir / STANDING_FILE, lambda doc: None).on_message
        peak_reset = reset_peak_rss()
        sampler = Sampler()
        sampling = asyncio.create_task(sampler.run())
        c_cpu0, a_cpu0 = [cpu_seconds(c.pid) for c in centrals], self_cpu()
        pg_cpu0 = pg.cpu_seconds() if pg is not None else float("nan")
        t0 = time.perf_counter()
        await replicator.start()
        last_progress, last_acked = time.monotonic(), 0
        try:
            while outbox.acked_through < n:
                await asyncio.sleep(0.005)
                if outbox.acked_through != last_acked:
                    last_acked, last_progress = outbox.acked_through, time.monotonic()
                elif time.monotonic() - last_progress > args.stall:
                    tails = "".join(f"\n--- {c.name} ---\n{c.tail()}" for c in centrals)
                    raise SystemExit(f"no ack progress for {args.stall} s: acked through {outbox.acked_through:,} "
                                     f"of {n:,}; replicator {replicator.status()}{tails}")
                for central in centrals:
                    if not central.alive():
                        raise SystemExit(f"{central.name} exited ({central.proc.returncode}):\n{central.tail()}")
            elapsed = time.perf_counter() - t0
        finally:
            sampling.cancel()
        out.update(elapsed=elapsed, agent_cpu=self_cpu() - a_cpu0,
                   central_cpus=[cpu_seconds(c.pid) - c0 for c, c0 in zip(centrals, c_cpu0, strict=True)],
                   pg_cpu=(pg.cpu_seconds() - pg_cpu0) if pg is not None else float("nan"),
                   agent_hwm=peak_rss_mb(), agent_rss=sampler.summary(), peak_reset=peak_reset,
                   central_hwms=[peak_rss_mb(c.pid) for c in centrals],
                   central_rsss=[rss_mb(c.pid) for c in centrals], replicator=replicator.status())
        out["central_ingest"] = []
        for url in health_urls:
            try:
                out["central_ingest"].append(http_json(url).get("presence", {}).get("ingest", {}))
            except OSError:
                out["central_ingest"].append({})
        await replicator.stop()
    finally:
        await outbox.stop()
    return out


async def verify_central(db: Path | str, truth: dict[str, Any], n: int) -> bool:
    from central.store import open_store
    from protocols.sync.money import ZERO, Contribution

    store = await open_store(str(db))
    try:
        rows = await store.reports.ggr("device", hall=HALL)
        hall = await store.halls.get_hall(HALL)
        count = (await store.database.fetch("SELECT count(*) FROM events WHERE hall = ?", HALL))[0][0]
    finally:
        await store.close()
    got = {r.key: Contribution(r.bets, r.wins, r.rounds, r.cash_in, r.cash_out) for r in rows}
    got = {k: v for k, v in got.items() if v != ZERO}
    want = {k: v for k, v in truth.items() if v != ZERO}
    total = sum((v for v in want.values()), ZERO)
    ok = got == want and count == n and hall is not None and hall.last_seq == n
    print(f"central: {count:,} events stored, chain end {hall.last_seq if hall else None:,}, "
          f"{len(got)} devices; bets {total.bets:,} wins {total.wins:,} rounds {total.rounds:,} "
          f"cash in {total.cash_in:,} cash out {total.cash_out:,} (FakeHall truth)")
    if ok:
        print("totals: OK (central's per-device bets/wins/rounds/cash equal FakeHall's truth, every event once)")
    else:
        diff = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
        print(f"totals: MISMATCH ({len(diff)} devices differ, e.g. {diff[:3]}; events {count:,} vs {n:,})")
        for k in diff[:3]:
            print(f"  {k}: central {got.get(k)} truth {want.get(k)}")
    return ok


def start_centrals(work: Path, central_dir: Path, db: Path | str, mqtt: str, workers: int | None,
                   share_group: str, log_level: str = "warning") -> tuple[list[Proc], list[str]]:
    """One ``serve`` (role all) when ``workers`` is None, else that many ``serve --role ingest`` on the
    shared subscription; (processes, their health URLs)."""
    from mqttlink.broker import free_port

    procs: list[Proc] = []
    urls: list[str] = []
    try:
        for i in range(1 if workers is None else workers):
            port = free_port()
            if workers is None:
                procs.append(start_central(work, central_dir, db, mqtt, port, log_level, share_group=share_group))
            else:
                procs.append(start_central(work, central_dir, db, mqtt, port, log_level, role="ingest",
                                           name=f"ingest-{i}", client_id=f"bench-ingest-{i}",
                                           share_group=share_group))
            urls.append(f"http://127.0.0.1:{port}/api/v1/health")
    except BaseException:
        for proc in procs:
            proc.stop()
        raise
    return procs, urls


def per_1000(seconds: float, n: int) -> str:
    return "-" if seconds != seconds else f"{seconds / n * 1000:.3f}"


def run_full(args: argparse.Namespace, work: Path, mqtt: str, broker: Any, *, db: Path | str | None = None,
             workers: int | None = None, pg: Any = None, share_group: str = "bench") -> tuple[int, dict[str, Any]]:
    """One drain: SQLite in ``work`` and one ``serve`` (the defaults), or ``workers`` ingest processes on
    ``db`` (a PostgreSQL URL; ``pg`` the server whose CPU is measured). (exit code, figures)."""
    t_setup = time.perf_counter()
    central_dir, agent_dir, db = setup_hq(work, HALL, db)
    centrals, health_urls = start_centrals(work, central_dir, db, mqtt, workers, share_group, args.log_level)
    shape = "1 serve (role all)" if workers is None else f"{workers} × serve --role ingest"
    print(f"setup: broker {mqtt}, central {shape}, pid {', '.join(str(c.pid) for c in centrals)}, "
          f"db {'SQLite' if pg is None else 'PostgreSQL'}, work dir {work}, {time.perf_counter() - t_setup:.1f} s",
          flush=True)
    b_cpu0 = cpu_seconds(broker.proc.pid) if broker is not None else float("nan")
    try:
        res = asyncio.run(agent_side(args, agent_dir, central_dir, mqtt, centrals, health_urls, pg))
    finally:
        b_cpu = cpu_seconds(broker.proc.pid) - b_cpu0 if broker is not None else float("nan")
        for central in centrals:
            code = central.stop()
            if code not in (0, None):
                print(f"warning: {central.name} exited with {code}:\n{central.tail()}", file=sys.stderr)
    n, elapsed = args.events, res["elapsed"]
    rep = res["replicator"]
    print(f"drain: {n:,} events acked in {elapsed:.2f} s ({rate(n, elapsed)}); batch {args.batch}, "
          f"window {args.window:,} events, linger {args.linger} s"
          )
    print(f"replicator: {rep.get('batches', 0):,} batches published, {rep.get('acks', 0):,} acks, "
          f"{rep.get('ack_timeouts', 0)} ack timeouts, {rep.get('resend_requests', 0)} resend requests, "
          f"{rep.get('publish_failures', 0)} publish failures")
    for central, ing in zip(centrals, res["central_ingest"], strict=True):
        if ing:
            label = "central ingest" if len(centrals) == 1 else f"{central.name}"
            print(f"{label}: " + ", ".join(f"{k} {v}" for k, v in sorted(ing.items()) if k not in ("broker",)))
    hwm_note = "" if res["peak_reset"] else " (VmHWM could not be reset after the fill: includes it)"
    print(f"agent RSS during drain: peak {res['agent_hwm']:.0f} MiB (VmHWM{hwm_note}); current {res['agent_rss']}")
    for central, hwm, now in zip(centrals, res["central_hwms"], res["central_rsss"], strict=True):
        label = "central" if len(centrals) == 1 else central.name
        print(f"{label} RSS: peak {hwm:.0f} MiB (VmHWM, whole life), {now:.0f} MiB at end")
    central_cpu = sum(res["central_cpus"])
    print(f"CPU during drain: agent {res['agent_cpu']:.1f} s ({res['agent_cpu'] / elapsed:.0%} of a core), "
          f"central {central_cpu:.1f} s ({central_cpu / elapsed:.0%})"
          + ("" if broker is None else f", mosquitto {b_cpu:.1f} s ({b_cpu / elapsed:.0%})")
          + ("" if res["pg_cpu"] != res["pg_cpu"] else f", postgresql {res['pg_cpu']:.1f} s "
                                                       f"({res['pg_cpu'] / elapsed:.0%})")
          + f"; {(res['agent_cpu'] + central_cpu) / n * 1e6:.0f} µs of agent+central CPU per event")
    workers_text = " ".join(per_1000(c, n) for c in res["central_cpus"])
    print(f"CPU s per 1,000 events: {'central' if workers is None else 'each worker'} {workers_text}"
          f" (with its verify child), postgresql {per_1000(res['pg_cpu'], n)}, mosquitto {per_1000(b_cpu, n)}, "
          f"agent {per_1000(res['agent_cpu'], n)}")
    ok = asyncio.run(verify_central(db, res["truth"], n))
    figures = {"events_per_s": n / elapsed, "central": res["central_cpus"], "postgres": res["pg_cpu"],
               "mosquitto": b_cpu, "agent": res["agent_cpu"]}
    return (0 if ok else 1), figures


# =====================================================================================================
# bare baseline
# =====================================================================================================

def _durable(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    return con


def bare_topic(hall: str, kind: str) -> str:
    return f"hallsync-bench/bare/{hall}/{kind}"


async def bare_receiver(args: argparse.Namespace) -> int:
    """Insert every batch in one transaction, commit, then publish an ack with its last seq."""
    from concurrent.futures import ThreadPoolExecutor

    from agent.logging_setup import setup_logging
    from mqttlink import MqttLink, Received, parse_broker_url

    setup_logging("warning", json=False)
    con = _durable(Path(args.receiver_db))
    con.execute("CREATE TABLE IF NOT EXISTS events (hall TEXT NOT NULL, seq INTEGER NOT NULL, body TEXT NOT NULL,"
                " PRIMARY KEY (hall, seq))")
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bare-sqlite")
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Received] = asyncio.Queue()

    async def on_message(msg: Received) -> None:
        queue.put_nowait(msg)

    def store(payload: bytes) -> int:
        rows = [(args.hall, json.loads(line)["seq"], line) for line in payload.decode().split("\n")]
        con.execute("BEGIN IMMEDIATE")
        con.executemany("INSERT OR IGNORE INTO events (hall, seq, body) VALUES (?, ?, ?)", rows)
        con.execute("COMMIT")
        return rows[-1][1]

    link = MqttLink(parse_broker_url(args.mqtt), client_id=f"bare-receiver-{os.getpid()}", handler=on_message,
                    subscriptions=[bare_topic(args.hall, "batches")], clean_session=True)
    task = asyncio.create_task(link.run())
    if not await link.wait_connected(20):
        print("receiver: broker not reachable", flush=True)
        return 1
    print("ready", flush=True)
    try:
        while True:
            msg = await queue.get()
            last = await loop.run_in_executor(pool, store, msg.payload)
            await link.publish(bare_topic(args.hall, "acks"), str(last).encode(), qos=1)
    finally:
        task.cancel()


async def bare_sender(args: argparse.Namespace, work: Path, mqtt: str, receiver: Proc) -> dict[str, Any]:
    """Fill a durable SQLite outbox with N JSON events, then ship it in batches with a window of unacked ones."""
    import uuid
    from concurrent.futures import ThreadPoolExecutor

    from agent.logging_setup import setup_logging
    from mqttlink import MqttLink, Received, parse_broker_url
    from tests.central.builders import FakeHall

    setup_logging("warning", json=False)
    n, batch = args.events, args.batch
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bare-sqlite")
    loop = asyncio.get_running_loop()
    con = _durable(work / "bare-outbox.db")
    con.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, body TEXT NOT NULL)")
    con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    con.execute("INSERT INTO meta VALUES ('acked_through', 0)")

    # -- fill: the same FakeHall content as the full mode, as plain JSON lines (no hashes) ----------
    fake = FakeHall(HALL, seed=args.seed, devices=args.devices)
    gen_s = append_s = 0.0
    seq, size_total = 0, 0
    while seq < n:
        t0 = time.perf_counter()
        events = fake.play(min(GEN_CHUNK, n - seq))[: n - seq]
        fake.events.clear()
        rows = []
        for e in events:
            seq += 1
            body = json.dumps({"seq": seq, "id": str(uuid.uuid4()), "hall": HALL, "device": e.device, "type": e.type,
                               "device_time": e.device_time, "agent_time": e.agent_time, "data": dict(e.data)},
                              separators=(",", ":"))
            size_total += len(body)
            rows.append((seq, body))
        t1 = time.perf_counter()
        gen_s += t1 - t0
        for i in range(0, len(rows), APPEND_SIZE):
            con.execute("BEGIN IMMEDIATE")
            con.executemany("INSERT INTO events (seq, body) VALUES (?, ?)", rows[i:i + APPEND_SIZE])
            con.execute("COMMIT")
        append_s += time.perf_counter() - t1
    print(f"fill: {n:,} events in {append_s:.2f} s ({rate(n, append_s)}; transactions of {APPEND_SIZE}), "
          f"mean event {size_total / n:.0f} bytes of JSON; generation not counted: {gen_s:.2f} s", flush=True)

    # -- drain ------------------------------------------------------------------------------------
    acked = 0
    progressed = asyncio.Event()

    def record_ack(through: int) -> None:
        con.execute("BEGIN IMMEDIATE")
        con.execute("UPDATE meta SET value = ? WHERE key = 'acked_through'", (through,))
        con.execute("COMMIT")

    async def on_ack(msg: Received) -> None:
        nonlocal acked
        through = int(msg.payload)
        if through > acked:
            await loop.run_in_executor(pool, record_ack, through)
            acked = max(acked, through)
            progressed.set()

    def read(after: int, limit: int) -> list[tuple[int, str]]:
        return con.execute("SELECT seq, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)).fetchall()

    link = MqttLink(parse_broker_url(mqtt), client_id=f"bare-sender-{os.getpid()}", handler=on_ack,
                    subscriptions=[bare_topic(HALL, "acks")], clean_session=True)
    link_task = asyncio.create_task(link.run())
    if not await link.wait_connected(20):
        raise SystemExit("sender: broker not reachable")
    reset_peak_rss()
    sampler = Sampler()
    sampling = asyncio.create_task(sampler.run())
    r_cpu0, s_cpu0 = cpu_seconds(receiver.pid), self_cpu()
    t0 = time.perf_counter()
    sent, batches = 0, 0
    last_progress = time.monotonic()
    try:
        while acked < n:
            if sent - acked + batch > args.window or sent >= n:
                progressed.clear()
                try:
                    await asyncio.wait_for(progressed.wait(), 1.0)
                    last_progress = time.monotonic()
                except TimeoutError:
                    if time.monotonic() - last_progress > args.stall:
                        raise SystemExit(f"bare: no ack for {args.stall} s (acked {acked:,}, sent {sent:,})\n"
                                         f"{receiver.tail()}") from None
                continue
            rows = await loop.run_in_executor(pool, read, sent, batch)
            await link.publish(bare_topic(HALL, "batches"), "\n".join(r[1] for r in rows).encode(), qos=1)
            sent, batches = rows[-1][0], batches + 1
        elapsed = time.perf_counter() - t0
    finally:
        sampling.cancel()
        link_task.cancel()
    return {"elapsed": elapsed, "sender_cpu": self_cpu() - s_cpu0, "receiver_cpu": cpu_seconds(receiver.pid) - r_cpu0,
            "sender_hwm": peak_rss_mb(), "sender_rss": sampler.summary(), "receiver_hwm": peak_rss_mb(receiver.pid),
            "batches": batches}


def run_bare(args: argparse.Namespace, work: Path, mqtt: str, broker: Any) -> tuple[int, int]:
    db = work / "bare-central.db"
    receiver = Proc("bare-receiver", [sys.executable, str(Path(__file__).resolve()), "--bare-receiver",
                                      "--mqtt", mqtt, "--receiver-db", str(db), "--hall", HALL,
                                      ], work).start()
    wait_until(lambda: "ready" in receiver.log.read_text(), 30, "the bare receiver", receiver)
    b_cpu0 = cpu_seconds(broker.proc.pid) if broker is not None else float("nan")
    try:
        res = asyncio.run(bare_sender(args, work, mqtt, receiver))
    finally:
        b_cpu = cpu_seconds(broker.proc.pid) - b_cpu0 if broker is not None else float("nan")
        receiver.stop()
    n, elapsed = args.events, res["elapsed"]
    print(f"drain: {n:,} events acked in {elapsed:.2f} s ({rate(n, elapsed)}); {res['batches']:,} batches of "
          f"{args.batch}, window {args.window:,} events")
    print(f"sender RSS during drain: peak {res['sender_hwm']:.0f} MiB; current {res['sender_rss']}")
    print(f"receiver RSS: peak {res['receiver_hwm']:.0f} MiB")
    print(f"CPU during drain: sender {res['sender_cpu']:.1f} s ({res['sender_cpu'] / elapsed:.0%}), receiver "
          f"{res['receiver_cpu']:.1f} s ({res['receiver_cpu'] / elapsed:.0%})"
          + ("" if broker is None else f", mosquitto {b_cpu:.1f} s ({b_cpu / elapsed:.0%})"))
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        count, first, last = con.execute("SELECT count(*), min(seq), max(seq) FROM events").fetchone()
    ok = (count, first, last) == (n, 1, n)
    print(f"receiver: {count:,} rows, seq {first}..{last}: {'OK' if ok else 'MISMATCH'}")
    return (0 if ok else 1), round(n / elapsed)


# =====================================================================================================

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=100_000, help="events in the backlog (default 100000)")
    p.add_argument("--mqtt", metavar="URL", help="use this broker instead of starting a Mosquitto")
    p.add_argument("--batch", type=int, default=None,
                   help="events per batch (default: the agent's 5000; 1000 with --bare, the reference pipeline)")
    p.add_argument("--window", type=int, default=None,
                   help="unacked events in flight (default: the agent's 50000; 20000 with --bare)")
    p.add_argument("--linger", type=float, default=0.05, help="replicator linger in s (default 0.05)")
    p.add_argument("--devices", type=int, default=200, help="EGMs in the fake hall (default 200)")
    p.add_argument("--rate", type=float, default=None,
                   help="the hall's events per second of its own time (default devices / 2: a game every ~5 s per"
                        " EGM, bet + end + every other a win)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--stall", type=float, default=120.0, help="give up after this long without ack progress (s)")
    p.add_argument("--bare", action="store_true", help="the baseline pipeline: no crypto, no chain, no rollups")
    add_db_options(p, "a file in the work dir, one serve")
    p.add_argument("--keep", metavar="DIR", help="work in DIR (created) and keep it afterwards")
    p.add_argument("--log-level", default="warning", help="central's --log-level (its log is in the work dir)")
    p.add_argument("--bare-receiver", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--receiver-db", help=argparse.SUPPRESS)
    p.add_argument("--hall", default=HALL, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    bare = args.bare or args.bare_receiver
    if args.batch is None:
        args.batch = 1000 if bare else 5000
    if args.window is None:
        args.window = 20_000 if bare else 50_000
    if args.events < 1 or args.batch < 1 or args.window < args.batch or args.repeat < 1:
        p.error("need --events >= 1, --batch >= 1, --window >= --batch and --repeat >= 1")
    if args.bare_receiver and not (args.mqtt and args.receiver_db):
        p.error("--bare-receiver needs --mqtt and --receiver-db")
    check_db_options(p, args)
    if args.bare and (args.db != "sqlite" or args.workers or args.repeat > 1):
        p.error("--bare runs the baseline pipeline alone: no --db, --workers or --repeat")
    return args


def run_one(args: argparse.Namespace, work: Path, k: int, workers: int | None, pg: PgServer | None,
            broker_for_all: str | None) -> tuple[int, dict[str, Any]]:
    """One configuration in a sub-directory of its own, with its own broker (unless ``--mqtt``) and database."""
    sub = work / f"run-{k}"
    sub.mkdir()
    broker, mqtt = start_broker(sub, broker_for_all)
    db = None if workers is None or pg is None else pg.database(f"r{k}")
    try:
        return run_full(args, sub, mqtt, broker, db=db, workers=workers, pg=None if db is None else pg,
                        share_group=f"bench{k}")
    finally:
        if broker is not None:
            broker.stop()
        if db is not None:
            pg.drop(db)


def summary(args: argparse.Namespace, runs: list[tuple[str, int | None, dict[str, Any]]]) -> float:
    """The side-by-side table; returns the events/s of the last configuration (median over repeats)."""
    import statistics

    n = args.events
    labels = list(dict.fromkeys(label for label, _, _ in runs))
    medians: dict[str, float] = {}
    print(f"\nsummary: {n:,} events per run, {args.repeat} run(s) per configuration, interleaved; CPU seconds per "
          "1,000 events (median): each worker (with its verify child) | all workers | PostgreSQL (all backends) | "
          "Mosquitto | agent")
    print(f"{'configuration':<22} {'events/s median (range)':<28} {'vs SQLite':>9}  {'worker':>7} {'workers':>7} "
          f"{'pg':>7} {'mqtt':>7} {'agent':>7}")
    for label in labels:
        mine = [f for lab, _, f in runs if lab == label]
        eps = [f["events_per_s"] for f in mine]
        medians[label] = statistics.median(eps)
        spread = f"{medians[label]:,.0f} ({min(eps):,.0f}–{max(eps):,.0f})"

        def med(key: str, mine: list[dict[str, Any]] = mine, total: bool = False) -> str:
            values = [v for f in mine for v in ([sum(f[key])] if total else f[key] if isinstance(f[key], list)
                                                 else [f[key]]) if v == v]
            return "-" if not values else f"{statistics.median(values) / n * 1000:.3f}"

        versus = versus_sqlite(labels, medians, label)
        print(f"{label:<22} {spread:<28} {versus:>9}  {med('central'):>7} {med('central', total=True):>7} "
              f"{med('postgres'):>7} {med('mosquitto'):>7} {med('agent'):>7}")
    print_scaling(labels, medians)
    return medians[labels[-1]]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.bare_receiver:
        try:
            return asyncio.run(bare_receiver(args))
        except KeyboardInterrupt:
            return 0
    work = work_dir(args.keep, "hallsync-bench-")
    started = time.perf_counter()
    load0 = os.getloadavg()
    code = 0
    try:
        if args.bare:
            broker, mqtt = start_broker(work, args.mqtt)
            try:
                code, per_second = run_bare(args, work, mqtt, broker)
            finally:
                if broker is not None:
                    broker.stop()
        else:
            configs = configurations(args)
            pg = PgServer(args.db) if is_postgres(args.db) else None
            runs: list[tuple[str, int | None, dict[str, Any]]] = []
            try:
                if pg is not None:
                    print(f"postgresql: {pg.describe()}", flush=True)
                k = 0
                for _ in range(args.repeat):
                    for label, workers in configs:
                        if len(configs) > 1 or args.repeat > 1:
                            print(f"\n== {label} (run {k + 1} of {len(configs) * args.repeat}) ==", flush=True)
                        one_code, figures = run_one(args, work, k, workers, pg, args.mqtt)
                        code = code or one_code
                        runs.append((label, workers, figures))
                        k += 1
            finally:
                if pg is not None:
                    pg.stop()
            if len(runs) > 1:
                per_second = round(summary(args, runs))
            else:
                per_second = round(runs[0][2]["events_per_s"])
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    load1 = os.getloadavg()
    print(f"run: {fmt_s(time.perf_counter() - started)} wall in all (set-up, fill, drain, checks, teardown); "
          f"{os.cpu_count()} CPUs, load average {load0[0]:.2f} at start, {load1[0]:.2f} at end, "
          f"Python {sys.version.split()[0]}")
    print(f"events/s: {per_second}")
    return code


if __name__ == "__main__":
    sys.exit(main())
