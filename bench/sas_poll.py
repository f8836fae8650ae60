"""Benchmark: the agent's SAS coordinators against a simulated floor of EGMs.

The EGMs run in a separate ``hall-sim floor`` process (each on its own pty), so the CPU figure is
the agent's alone: process CPU time / wall time over the measured window, in % of one core.
Prints figures, asserts nothing.

    .venv/bin/python bench/sas_poll.py --egms 64 --cadence 40 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.logging_setup import setup_logging
from agent.sas.config import PollConfig
from agent.sas.poller import SasPoller, load_devices
from agent.sas.stats import LinkStats
from agent.sas.transaction import Timing


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--egms", type=int, default=64, help="simulated EGMs (default 64)")
    p.add_argument("--seconds", type=float, default=20.0, help="measured window (default 20)")
    p.add_argument("--cadence", type=int, choices=(200, 40), default=40,
                   help="general-poll cadence in ms (40 needs the EGM's LP A0 permission; the simulator gives it)")
    p.add_argument("--pace", type=float, default=3.0, help="simulated players: one game every PACE s per EGM")
    p.add_argument("--rte", action=argparse.BooleanOptionalAction, default=True, help="real-time event reporting")
    p.add_argument("--response-timeout-ms", type=float, default=20.0, help="reply start timeout (spec: 20)")
    p.add_argument("--gap-timeout-ms", type=float, default=10.0, help="inter-byte gap timeout")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring (connect, identity)")
    return p.parse_args()


async def start_floor(args: argparse.Namespace, out: Path) -> subprocess.Popen[bytes]:
    sim = Path(sys.executable).parent / "hall-sim"
    argv = [str(sim), "floor", "--egms", str(args.egms), "--pace", str(args.pace), "--seed", "1",
            "--out", str(out), "--log-level", "warning"]
    # started once, before any polling: a blocking spawn is fine here
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: ASYNC220
    devices = out / "devices.toml"
    for _ in range(200):
        if devices.exists() and devices.stat().st_size > 0:
            await asyncio.sleep(0.2)
            return proc
        if proc.poll() is not None:
            raise SystemExit(f"hall-sim floor exited with {proc.returncode}")
        await asyncio.sleep(0.05)
    proc.kill()
    raise SystemExit("hall-sim floor did not write devices.toml in 10 s")


async def main() -> None:
    args = parse()
    setup_logging("error")
    with tempfile.TemporaryDirectory() as tmp:
        proc = await start_floor(args, Path(tmp))
        try:
            devices = load_devices(Path(tmp) / "devices.toml")
            config = PollConfig(poll_interval=0.2, fast_poll_interval=0.04 if args.cadence == 40 else None,
                                rte=args.rte, link_down_after=5)
            timing = Timing(args.response_timeout_ms / 1000, args.gap_timeout_ms / 1000)
            poller = SasPoller(devices, config, timing=timing)
            kinds: Counter[str] = Counter()

            async def drain() -> None:
                while True:
                    fact = await poller.facts.get()
                    kinds[type(fact).__name__] += 1

            drainer = asyncio.create_task(drain())
            await poller.start()
            await asyncio.sleep(args.warmup)
            up = sum(c.link_up for c in poller.coordinators.values())
            for c in poller.coordinators.values():
                c.stats = LinkStats()
            kinds.clear()
            cpu0, wall0 = time.process_time(), time.monotonic()
            await asyncio.sleep(args.seconds)
            cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
            stats = [c.stats for c in poller.coordinators.values()]
            intervals = sorted({round(c.poll_interval * 1000) for c in poller.coordinators.values()})
            await poller.stop()
            drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drainer
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    total = LinkStats()
    for s in stats:
        total.outcomes.update(s.outcomes)
        total.quiet += s.quiet
        total.latencies.extend(s.latencies)
        total.retries += s.retries
        total.missed_polls += s.missed_polls
    p50, p99 = total.percentile(50), total.percentile(99)
    print(f"EGMs {args.egms} (linked at start: {up}), cadence {args.cadence} ms (effective {intervals} ms), "
          f"RTE {'on' if args.rte else 'off'}, response timeout {args.response_timeout_ms:g} ms, "
          f"window {wall:.1f} s, python {sys.version.split()[0]}, pid {os.getpid()}")
    print(f"polls/s            {total.transmissions / wall:9.1f}   (answered {total.answered / wall:.1f}/s, "
          f"quiet RTE polls {total.quiet / wall:.1f}/s)")
    nan = float("nan")
    print(f"latency p50 / p99  {p50 * 1000 if p50 else nan:6.2f} / {p99 * 1000 if p99 else nan:.2f} ms")
    print(f"timeouts {total.outcomes['timeout']}, garbled {total.outcomes['garbled']}, nacks {total.outcomes['nack']}, "
          f"busy {total.outcomes['busy']}, chirps {total.outcomes['chirp']}, retries {total.retries}, "
          f"missed polls {total.missed_polls}")
    print(f"facts              {dict(kinds)}")
    print(f"agent CPU          {100 * cpu / wall:6.1f} % of one core ({cpu:.2f} s CPU in {wall:.1f} s)")


if __name__ == "__main__":
    asyncio.run(main())
