"""``hall``: one command for the whole system.

``hall demo`` starts a simulated hall and shows the agent polling it. The full demo of design.md
(broker, central, agent and the dashboard URL as its last line) grows into this command as the
delivery spine and the dashboard land (issues 02 and 05).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import tomllib
from pathlib import Path


async def _wait_for(path: Path, proc: asyncio.subprocess.Process, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not path.exists():
        if proc.returncode is not None:
            raise RuntimeError(f"the simulator exited with code {proc.returncode}")
        if loop.time() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout:.0f} s")
        await asyncio.sleep(0.1)


async def _demo(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="hallsync-demo-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    floor_dir = data_dir / "floor"
    sim = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "firmware_sim.cli", "floor", "--egms", str(args.egms), "--seed", str(args.seed),
        "--pace", str(args.pace), "--out", str(floor_dir))
    diag: asyncio.subprocess.Process | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        devices_file = floor_dir / "devices.toml"
        await _wait_for(devices_file, sim, 30)
        devices = tomllib.loads(devices_file.read_text())["devices"]
        first = devices[0]
        print(f"simulated hall: {len(devices)} EGMs, device list {devices_file}", flush=True)
        for dev in devices:
            print(f"  {dev['id']}  SAS address {dev['address']:>3}  on {dev['port']}", flush=True)
        print(f"watching {first['id']} with the technician's diagnostics (Ctrl-C stops everything)", flush=True)
        diag = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent.cli", "diag", "sas", "--port", first["port"], "--address",
            str(first["address"]), "--framing", first.get("framing", "marks"), "--watch")
        waiters = {asyncio.create_task(stop.wait()), asyncio.create_task(diag.wait()),
                   asyncio.create_task(sim.wait())}
        _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        return 0
    finally:
        for proc in (diag, sim):
            if proc is not None and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except TimeoutError:
                    proc.kill()
        truth = floor_dir / "truth.json"
        if truth.exists():
            print(f"what the simulated players really did: {truth}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hall", description="hallsync: the whole system in one command.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo = sub.add_parser("demo", help="start a simulated hall and watch the agent poll it")
    demo.add_argument("--data-dir", help="where the demo keeps its files (default: a new temporary folder)")
    demo.add_argument("--http", help="dashboard address HOST:PORT (the dashboard lands with issue 05)")
    demo.add_argument("--egms", type=int, default=4, help="simulated slot machines (default 4)")
    demo.add_argument("--pace", type=float, default=1.0, help="seconds between games per machine (default 1)")
    demo.add_argument("--seed", type=int, default=1, help="seed of the simulated players (default 1)")
    args = parser.parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        return asyncio.run(_demo(args))
    except (RuntimeError, TimeoutError) as exc:
        print(f"hall demo: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
