"""Benchmark: does one busy serial line, or a CPU-starved event loop, starve the other lines' poll cadence?

Issue 12 item 4. The EGMs run in a child process of this script (one simulated EGM per pty, i.e. per
serial line); the agent's :class:`~agent.sas.poller.SasPoller` polls them here, with the same timing
the agent uses on ptys. Scenarios, each on a fresh floor:

* ``baseline`` — every line healthy;
* ``busy`` — line 1 carries a slow EGM (every reply ``--slow-ms`` late), corrupted replies
  (``--corrupt-per-s``) and ``--dead`` addresses nobody answers (powered-off machines on the bus);
* ``starved`` — healthy lines, but the agent's event loop is busy with CPU work ``--hog-ms`` out of
  every ``--hog-period-ms`` (a normalizer or signer burst on the loop; two CPU hogs on the box look
  alike from inside);
* ``both`` — the busy line and the starved loop together;
* ``agent`` — no synthetic load: the real :class:`~agent.runtime.HallAgent` (normalizer, outbox
  commits, state file, metrics) behind the pollers, at ``--agent-pace`` (the issue's fast pace, where
  the EGMs produce more events than a 40 ms cadence can carry), to see how much the agent's own
  work lags the loop. No broker: the replicator just keeps failing to connect.

For each scenario: per line, general polls per second, cadence misses (a general poll more than one
poll interval late, as ``hallsync_agent_sas_poll_cadence_misses_total`` counts them) and the lateness
p50 / p99 / worst, over the measured window. The figure to look at is the *other* lines in ``busy``
against ``baseline``. Prints figures, asserts nothing.

    .venv/bin/python bench/sas_lines.py --lines 4 --seconds 15
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.logging_setup import setup_logging
from agent.sas import coordinator
from agent.sas.config import PollConfig
from agent.sas.poller import LoopLag, SasDevice, SasPoller, load_devices, timing_for
from agent.sas.stats import LinkStats
from agent.sas.transaction import PTY_TIMING
from protocols.metrics import HistogramValue

SCENARIOS = ("baseline", "busy", "starved", "both", "agent")
DEAD_BASE = 100  # SAS addresses of the dead machines on line 1


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lines", type=int, default=4, help="serial lines, one EGM each (default 4)")
    p.add_argument("--seconds", type=float, default=15.0, help="measured window per scenario (default 15)")
    p.add_argument("--warmup", type=float, default=4.0, help="seconds before measuring (connect, identity)")
    p.add_argument("--pace", type=float, default=0.5, help="simulated players: one game every PACE s per EGM")
    p.add_argument("--slow-ms", type=float, default=60.0, help="busy line: every reply this late (default 60)")
    p.add_argument("--corrupt-per-s", type=float, default=5.0, help="busy line: corrupted replies per second")
    p.add_argument("--dead", type=int, default=2, help="busy line: addresses nobody answers (default 2)")
    p.add_argument("--hog-ms", type=float, default=40.0, help="starved loop: CPU work per burst (default 40)")
    p.add_argument("--hog-period-ms", type=float, default=80.0, help="starved loop: one burst every (default 80)")
    p.add_argument("--agent-pace", type=float, default=0.05, help="agent scenario: players' pace (default 0.05)")
    p.add_argument("--identity-tries", type=int, default=None,
                   help="identity re-reads per link-up (default: the agent's; 0 shows the cadence before issue 12)")
    p.add_argument("--response-timeout-ms", type=float, default=None,
                   help="reply start timeout (default: the agent's pty timing, 100 ms; a UART's is 20)")
    p.add_argument("--scenario", choices=SCENARIOS, action="append",
                   help="run only these (repeatable; default all)")
    p.add_argument("--serve", type=Path, help=argparse.SUPPRESS)     # child: run the floor, write DIR
    p.add_argument("--busy", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ---- the child: EGMs on ptys ----------------------------------------------------------------------

async def serve(args: argparse.Namespace) -> None:
    from firmware_sim.egm import Egm
    from firmware_sim.pty_egm import PtyEgmServer

    setup_logging("error")
    servers = [PtyEgmServer(Egm(n, seed=n, pace=args.pace)) for n in range(1, args.lines + 1)]
    paths = [await s.start() for s in servers]
    lines = [f'[[devices]]\nid = "egm-{n:03d}"\nprotocol = "sas"\nport = {json.dumps(path)}\naddress = {n}\n'
             for n, path in enumerate(paths, 1)]
    if args.busy:
        servers[0].faults.reply_delay = args.slow_ms / 1000
        lines += [f'[[devices]]\nid = "dead-{k}"\nprotocol = "sas"\nport = {json.dumps(paths[0])}\n'
                  f'address = {DEAD_BASE + k}\n' for k in range(args.dead)]
    out = args.serve / "devices.toml"
    tmp = out.with_suffix(".tmp")
    tmp.write_text("\n".join(lines))
    tmp.rename(out)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    period = 1 / args.corrupt_per_s if args.busy and args.corrupt_per_s > 0 else None
    while not stop.is_set():
        if period is not None:
            servers[0].faults.corrupt_replies = 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), period or 1.0)
    for s in servers:
        await s.stop()


# ---- the agent side -------------------------------------------------------------------------------

async def hog(burst: float, period: float) -> None:
    """CPU work on the event loop: ``burst`` seconds of it every ``period`` seconds."""
    while True:
        end = time.monotonic() + burst
        while time.monotonic() < end:
            sum(range(2000))
        await asyncio.sleep(max(0.0, period - burst))


def pct(data: list[float], p: float) -> float:
    if not data:
        return float("nan")
    data = sorted(data)
    return data[min(len(data) - 1, max(0, round(p / 100 * (len(data) - 1))))]


async def start_child(args: argparse.Namespace, out: str, pace: float, busy: bool) -> subprocess.Popen[bytes]:
    argv = [sys.executable, __file__, "--serve", out, "--lines", str(args.lines), "--pace", str(pace),
            "--slow-ms", str(args.slow_ms), "--corrupt-per-s", str(args.corrupt_per_s), "--dead", str(args.dead)]
    if busy:
        argv.append("--busy")
    proc = subprocess.Popen(argv)  # noqa: ASYNC220 (once, before any polling)
    deadline = time.monotonic() + 15
    while not (Path(out) / "devices.toml").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("the EGM child did not write devices.toml")
        await asyncio.sleep(0.05)
    return proc


def figures(poller: SasPoller, devices: list[SasDevice], wall: float) -> list[tuple[str, str, dict[str, float]]]:
    rows = []
    for dev in devices:
        c = poller.coordinators[dev.id]
        s = c.stats
        late = list(s.lateness)
        rows.append((dev.id, "line 1" if dev.port == devices[0].port else "other", {
            "up": float(c.link_up), "interval_ms": c.poll_interval * 1000,
            "gp_per_s": len(late) / wall, "misses": float(s.cadence_misses),
            "p50_ms": pct(late, 50) * 1000, "p99_ms": pct(late, 99) * 1000,
            "worst_ms": s.worst_lateness * 1000, "garbled": float(s.outcomes["garbled"]),
            "timeouts": float(s.outcomes["timeout"]), "overflows": float(s.exception_overflows)}))
    return rows


def reset(poller: SasPoller) -> None:
    """Forget the warm-up (connect, identity, first snapshot): figures are for the window only."""
    for c in poller.coordinators.values():
        c.stats = LinkStats()
    poller.loop_lag.worst = 0.0
    poller.loop_lag.histogram = LoopLag().histogram


def lag_line(poller: SasPoller) -> str:
    family = poller.loop_lag.histogram.collect()
    sample = next(iter(family.samples.values()), None)
    if not isinstance(sample, HistogramValue) or not sample.count:
        return "loop lag: no samples"
    over = sum(n for bound, n in zip(family.buckets, sample.counts, strict=False) if bound > 0.04)
    over += sample.count - sum(sample.counts)
    return (f"loop lag: mean {sample.total / sample.count * 1000:.2f} ms, worst {poller.loop_lag.worst * 1000:.1f} ms, "
            f"{over} of {sample.count} samples > 40 ms")


async def run_scenario(args: argparse.Namespace, name: str) -> tuple[list[tuple[str, str, dict[str, float]]], str]:
    if name == "agent":
        return await run_agent(args)
    busy = name in ("busy", "both")
    starved = name in ("starved", "both")
    with tempfile.TemporaryDirectory() as tmp:
        proc = await start_child(args, tmp, args.pace, busy)
        try:
            devices = load_devices(Path(tmp) / "devices.toml")
            timing = None if args.response_timeout_ms is None else timing_for(
                "pty", args.response_timeout_ms / 1000, min(PTY_TIMING.gap_timeout, args.response_timeout_ms / 2000))
            poller = SasPoller(devices, PollConfig(poll_interval=0.2, fast_poll_interval=0.04), timing=timing)

            async def drain() -> None:
                while True:
                    await poller.facts.get()

            tasks = [asyncio.create_task(drain())]
            await poller.start()
            if starved:
                tasks.append(asyncio.create_task(hog(args.hog_ms / 1000, args.hog_period_ms / 1000)))
            await asyncio.sleep(args.warmup)
            reset(poller)
            t0 = time.monotonic()
            await asyncio.sleep(args.seconds)
            rows, lag = figures(poller, devices, time.monotonic() - t0), lag_line(poller)
            await poller.stop()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return rows, lag


async def run_agent(args: argparse.Namespace) -> tuple[list[tuple[str, str, dict[str, float]]], str]:
    from agent.keys import init_keys
    from agent.runtime import AgentConfig, HallAgent
    from protocols.sync import generate_private_key, public_key_to_pem

    with tempfile.TemporaryDirectory() as tmp:
        proc = await start_child(args, tmp, args.agent_pace, False)
        try:
            data = Path(tmp) / "agent"
            init_keys(data)
            central = Path(tmp) / "central.pub"
            central.write_bytes(public_key_to_pem(generate_private_key().public_key()))
            agent = HallAgent(AgentConfig(hall="bench", data_dir=data, devices=Path(tmp) / "devices.toml",
                                          mqtt="mqtt://127.0.0.1:1", central_key=central))
            stop = asyncio.Event()
            run = asyncio.create_task(agent.run(stop))
            await asyncio.sleep(args.warmup)
            reset(agent.poller)
            seq0, cpu0, t0 = agent.outbox.last_seq, time.process_time(), time.monotonic()
            await asyncio.sleep(args.seconds)
            wall = time.monotonic() - t0
            rows, lag = figures(agent.poller, agent.devices, wall), lag_line(agent.poller)
            lag += (f"; {(agent.outbox.last_seq - seq0) / wall:.0f} events/s committed, agent CPU "
                    f"{100 * (time.process_time() - cpu0) / wall:.0f} % of one core")
            stop.set()
            await asyncio.wait_for(run, 30)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return rows, lag


async def main(args: argparse.Namespace) -> None:
    setup_logging("error")
    if args.identity_tries is not None:
        coordinator.IDENTITY_TRIES = args.identity_tries
    print(f"lines {args.lines} (one EGM each), pace {args.pace:g} s, window {args.seconds:g} s; busy line: replies "
          f"+{args.slow_ms:g} ms, {args.corrupt_per_s:g} corrupted/s, {args.dead} dead addresses; starved loop: "
          f"{args.hog_ms:g} ms CPU every {args.hog_period_ms:g} ms; python {sys.version.split()[0]}")
    print(f"{'scenario':9} {'device':8} {'line':6} {'up':>2} {'int':>4} {'gp/s':>6} {'miss':>5} {'p50':>7} "
          f"{'p99':>7} {'worst':>7} {'garb':>5} {'tmo':>5} {'ovf':>4}   (lateness in ms)")
    for name in args.scenario or SCENARIOS:
        rows, lag = await run_scenario(args, name)
        for device, where, r in rows:
            if device.startswith("dead-"):
                print(f"{name:9} {device:8} {where:6} {int(r['up']):>2} {'':>4} {'':>6} {'':>5} {'':>7} {'':>7} "
                      f"{'':>7} {int(r['garbled']):>5} {int(r['timeouts']):>5}")
                continue
            print(f"{name:9} {device:8} {where:6} {int(r['up']):>2} {r['interval_ms']:4.0f} {r['gp_per_s']:6.1f} "
                  f"{int(r['misses']):>5} {r['p50_ms']:7.1f} {r['p99_ms']:7.1f} {r['worst_ms']:7.1f} "
                  f"{int(r['garbled']):>5} {int(r['timeouts']):>5} {int(r['overflows']):>4}")
        print(f"{name:9} {lag}")


if __name__ == "__main__":
    ns = parse()
    if ns.serve is not None:
        asyncio.run(serve(ns))
    else:
        asyncio.run(main(ns))
