"""Event → central latency of a whole hall: EGMs on ptys → ``hall-agent run`` → Mosquitto → ``hall-central serve``.

Run: ``.venv/bin/python bench/hall_latency.py --egms 200 [--seconds 60] [--pace 1.0] [--mqtt URL] [--keep DIR]``.

Every part is its own process, as in the field: ``hall-sim floor`` (one pty per EGM; one floor process
holds at most 127 EGMs — one SAS loop's addresses — so larger halls are split over several floor
processes and their devices files merged, IDs renumbered egm-001…), ``hall-agent run``,
``hall-central serve`` and our own Mosquitto (unless ``--mqtt``). The hall plays for ``--seconds``
after a ``--warmup`` (links up, identities read); then the floors stop, the agent gets time to ship
what it holds, everything stops, and central's ``events`` table gives ``central_time - agent_time``
per event. Only events whose ``agent_time`` falls inside the measured window are counted.

``agent_time`` is taken by the agent when its poller saw the fact; ``central_time`` is central's clock
when it began verifying the batch (so it excludes the wait for the single writer and the commit; at a
hall's pace both are a few ms). Both clocks are this machine's. Also printed: the agent's CPU% and RSS, polls/s from the
agent's state file, and the CPU% of the other processes (they share the machine's cores).

The last line is ``p99 ms: X``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sqlite3
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # the repo root goes on sys.path first
    BIN,
    Proc,
    cpu_seconds,
    fmt_s,
    peak_rss_mb,
    rss_mb,
    setup_hq,
    start_broker,
    start_central,
    wait_until,
    work_dir,
)

HALL = "bench-latency"
MAX_PER_FLOOR = 127


def split(total: int, most: int) -> list[int]:
    """``total`` EGMs over as few floors as possible, evenly: 200 → [100, 100]."""
    floors = math.ceil(total / most)
    return [total // floors + (1 if i < total % floors else 0) for i in range(floors)]


def merge_devices(floor_dirs: list[Path], out: Path) -> list[dict[str, Any]]:
    """One devices.toml for the agent; IDs renumbered so two floors' egm-001 do not collide."""
    devices: list[dict[str, Any]] = []
    for d in floor_dirs:
        with open(d / "devices.toml", "rb") as fh:
            devices.extend(tomllib.load(fh)["devices"])
    lines = []
    for n, dev in enumerate(devices, 1):
        dev["id"] = f"egm-{n:03d}"
        lines.append("[[devices]]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in dev.items()]
        lines.append("")
    out.write_text("\n".join(lines))
    return devices


def read_state(agent_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((agent_dir / "agent-state.json").read_text())
    except (OSError, ValueError):
        return None


def poll_totals(state: dict[str, Any]) -> tuple[float, int, int, int, int]:
    """(updated_at, polls, answered, missed polls, links up) summed over the devices."""
    devs = state.get("devices", [])
    return (float(state.get("updated_at", 0)), sum(int(d.get("polls") or 0) for d in devs),
            sum(int(d.get("answered") or 0) for d in devs), sum(int(d.get("missed_polls") or 0) for d in devs),
            sum(1 for d in devs if d.get("link_up")))


def fresh_state(agent_dir: Path, after: float, timeout: float = 10.0) -> dict[str, Any]:
    """The first state file written after wall time ``after`` (the agent rewrites it every ~2 s)."""
    def check() -> dict[str, Any] | None:
        s = read_state(agent_dir)
        return s if s is not None and float(s.get("updated_at", 0)) > after else None

    return wait_until(check, timeout, "a fresh agent-state.json")


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


class CpuWindow:
    """CPU seconds of some processes between ``start()`` and ``stop()``."""

    def __init__(self, procs: dict[str, int]) -> None:
        self.procs = procs
        self.begin: dict[str, float] = {}
        self.end: dict[str, float] = {}

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.begin = {name: cpu_seconds(pid) for name, pid in self.procs.items()}

    def stop(self) -> None:
        self.seconds = time.monotonic() - self.t0
        self.end = {name: cpu_seconds(pid) for name, pid in self.procs.items()}

    def percent(self, name: str) -> float:
        return 100 * (self.end[name] - self.begin[name]) / self.seconds


def run(args: argparse.Namespace, work: Path) -> float:
    from mqttlink.broker import free_port

    t_setup = time.perf_counter()
    broker, mqtt = start_broker(work, args.mqtt)
    procs: list[Proc] = []
    try:
        central_dir, agent_dir, db = setup_hq(work, HALL)
        floor_dirs, floors = [], []
        for i, count in enumerate(split(args.egms, MAX_PER_FLOOR)):
            d = work / f"floor-{i + 1}"
            floor_dirs.append(d)
            floors.append(Proc(f"floor-{i + 1}", [str(BIN / "hall-sim"), "floor", "--egms", str(count), "--pace",
                                                  str(args.pace), "--seed", str(args.seed + i), "--out", str(d),
                                                  "--log-level", "warning"], work).start())
        procs += floors
        for d, p in zip(floor_dirs, floors, strict=True):
            wait_until(lambda d=d: (d / "devices.toml").exists(), 60, f"{d}/devices.toml", p)
        devices_file = work / "devices.toml"
        devices = merge_devices(floor_dirs, devices_file)
        port = free_port()
        central = start_central(work, central_dir, db, mqtt, port)
        procs.append(central)
        agent = Proc("agent", [str(BIN / "hall-agent"), "run", "--hall", HALL, "--data-dir", str(agent_dir),
                               "--devices", str(devices_file), "--mqtt", mqtt, "--central-key",
                               str(central_dir / "central.pub"), "--log-level", "warning", "--log-format", "json"],
                      work).start()
        procs.append(agent)
        print(f"setup: {len(devices)} EGMs on {len(floors)} hall-sim floor process(es) {split(args.egms, 127)}, "
              f"pace {args.pace} s, broker {mqtt}, work dir {work}; {time.perf_counter() - t_setup:.1f} s", flush=True)

        # -- warm-up, then the measured window ------------------------------------------------------
        wait_until(lambda: read_state(agent_dir), 30, "the agent's state file", agent)
        time.sleep(args.warmup)
        pids = {"agent": agent.pid, "central": central.pid, **{p.name: p.pid for p in floors}}
        if broker is not None:
            pids["mosquitto"] = broker.proc.pid
        cpu = CpuWindow(pids)
        state0 = fresh_state(agent_dir, time.time())
        window_start = time.time()
        cpu.start()
        rss_samples: list[float] = []
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            for p in procs:
                if not p.alive():
                    raise SystemExit(f"{p.name} exited ({p.proc.returncode}) during the run:\n{p.tail()}")
            rss_samples.append(rss_mb(agent.pid))
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        cpu.stop()
        window_end = time.time()
        state1 = fresh_state(agent_dir, window_end)
        agent_hwm = peak_rss_mb(agent.pid)

        # -- wind down: stop the games, let the agent ship what it holds ----------------------------
        t_drain = time.monotonic()
        for p in floors:
            p.stop()

        def caught_up() -> bool:
            s = read_state(agent_dir)
            return (s is not None and float(s["updated_at"]) > time.time() - 3
                    and s["outbox"]["acked_through"] == s["outbox"]["last_seq"])

        try:
            wait_until(caught_up, 60, "the agent's outbox to be fully acked", agent, central, interval=0.5)
            drained = f"fully acked {time.monotonic() - t_drain:.1f} s after the floors stopped"
        except SystemExit as exc:
            drained = f"NOT fully acked 60 s after the floors stopped ({str(exc).splitlines()[0]})"
        final = read_state(agent_dir) or {}
        agent_code = agent.stop()
        central.stop()
    finally:
        for p in reversed(procs):
            p.stop()
        if broker is not None:
            broker.stop()

    # -- figures -------------------------------------------------------------------------------------
    lo, hi = int(window_start * 1e6), int(window_end * 1e6)
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        rows = con.execute("SELECT agent_time, central_time, type FROM events WHERE hall = ?", (HALL,)).fetchall()
    per_type: dict[str, list[float]] = {}
    for a, c, t in rows:
        if lo <= a <= hi:
            per_type.setdefault(t, []).append((c - a) / 1000)
    lat = sorted(x for values in per_type.values() for x in values)
    seconds = (hi - lo) / 1e6
    t0, polls0, ans0, miss0, _ = poll_totals(state0)
    t1, polls1, ans1, miss1, up1 = poll_totals(state1)
    rte = sum(1 for d in state1.get("devices", []) if d.get("rte"))
    fast = sum(1 for d in state1.get("devices", []) if d.get("fast_polling"))
    ob = final.get("outbox", {})
    rep = final.get("replicator", {})

    print(f"window: {seconds:.1f} s measured after {args.warmup:.0f} s warm-up; central holds {len(rows):,} events "
          f"in all, {len(lat):,} from the window ({len(lat) / seconds:,.0f} events/s)")
    for t, values in sorted(per_type.items(), key=lambda kv: -len(kv[1])):
        values.sort()
        print(f"  {t:<16} {len(values):>7,}  p50 {percentile(values, 50):6.1f} ms  "
              f"p99 {percentile(values, 99):6.1f} ms")
    if lat:
        print(f"latency event→central (central_time - agent_time): count {len(lat):,}, p50 "
              f"{percentile(lat, 50):.1f} ms, p95 {percentile(lat, 95):.1f} ms, p99 {percentile(lat, 99):.1f} ms, "
              f"max {lat[-1]:.1f} ms, min {lat[0]:.1f} ms")
    if t1 > t0:
        print(f"polling: {(polls1 - polls0) / (t1 - t0):,.0f} polls/s ({(ans1 - ans0) / (t1 - t0):,.0f} answered/s, "
              f"{(miss1 - miss0) / (t1 - t0):,.1f} missed/s; the rest are silent general polls in RTE mode) over "
              f"{t1 - t0:.1f} s (agent-state.json), "
              f"{(polls1 - polls0) / (t1 - t0) / len(devices):.1f} polls/s per EGM; "
              f"at the window's end {up1}/{len(devices)} links up, {rte} in RTE mode, {fast} allowing 40 ms polling")
    print(f"agent: CPU {cpu.percent('agent'):.0f}% of one core; RSS {min(rss_samples):.0f}..{max(rss_samples):.0f} MiB "
          f"during the window, peak {agent_hwm:.0f} MiB (VmHWM); exit code {agent_code}")
    print("other processes' CPU: " + ", ".join(f"{name} {cpu.percent(name):.0f}%" for name in pids if name != "agent")
          + " (of one core; the machine has 2)")
    print(f"outbox at stop: last seq {ob.get('last_seq')}, acked through {ob.get('acked_through')}, {drained}; "
          f"replicator {rep.get('batches', 0)} batches, {rep.get('ack_timeouts', 0)} ack timeouts, "
          f"{rep.get('resend_requests', 0)} resends")
    return percentile(lat, 99) if lat else float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--egms", type=int, default=200, help="simulated EGMs (default 200)")
    p.add_argument("--seconds", type=float, default=60.0, help="measured window (default 60)")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds before the window (default 5)")
    p.add_argument("--pace", type=float, default=1.0, help="seconds between a player's games (default 1.0)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--mqtt", metavar="URL", help="use this broker instead of starting a Mosquitto")
    p.add_argument("--keep", metavar="DIR", help="work in DIR (created, must be empty) and keep it")
    args = p.parse_args(argv)
    if args.egms < 1 or args.seconds <= 0:
        p.error("need --egms >= 1 and --seconds > 0")
    work = work_dir(args.keep, "hallsync-latency-")
    started = time.perf_counter()
    try:
        p99 = run(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"run: {fmt_s(time.perf_counter() - started)} wall in all")
    print(f"p99 ms: {p99:.1f}")
    return 0 if not math.isnan(p99) else 1


if __name__ == "__main__":
    sys.exit(main())
