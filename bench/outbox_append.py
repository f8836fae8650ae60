"""Outbox throughput and memory: durable appends/s by group size, and RSS while paging a big backlog.

Run: ``.venv/bin/python bench/outbox_append.py [--seconds 2] [--backlog 1000000] [--dir DIR]``.

Part 1: N producers each append one event at a time (awaiting durability), with ``max_group`` = N,
so concurrent appends share transactions of up to N events (WAL, ``synchronous=FULL``: one fsync per
transaction). N = 1 is the worst case, one commit per event.
Part 2: a backlog of ``--backlog`` committed events is read back in pages of 1000, as the
replicator does; RSS is sampled per page to show memory does not grow with the backlog.
Put ``--dir`` on the disk you care about: fsync cost is the whole story (notes/pitfalls.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.logging_setup import setup_logging
from agent.outbox import Outbox

T0 = 1_780_000_000_000_000


@dataclass
class Draft:
    device: str
    type: str = "game.bet"
    device_time: int | None = None
    agent_time: int = T0
    data: dict[str, Any] = field(default_factory=lambda: {"amount": 100, "currency": "EUR", "game": "g-07",
                                                          "denom": 1, "session": 10_042})


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def appends_per_second(path: Path, producers: int, seconds: float) -> None:
    async with Outbox(path, "bench", linger=0.002, max_group=producers, max_pending=max(producers, 1000)) as ob:
        stop = time.perf_counter() + seconds
        count = 0

        async def producer(k: int) -> None:
            nonlocal count
            draft = Draft(device=f"egm-{k:03d}")
            while time.perf_counter() < stop:
                await ob.append([draft])
                count += 1

        start = time.perf_counter()
        await asyncio.gather(*(producer(k) for k in range(producers)))
        elapsed = time.perf_counter() - start
        commits = ob.status()["commits"]
    print(f"group ≤{producers:5d}: {count / elapsed:>10,.0f} appends/s   {commits / elapsed:>8,.0f} commits/s   "
          f"{count / max(commits, 1):7.1f} events/commit")


async def backlog(path: Path, total: int) -> None:
    async with Outbox(path, "bench", max_group=1000, max_pending=20_000) as ob:
        start = time.perf_counter()
        chunk = [Draft(device=f"egm-{i % 200:03d}", agent_time=T0 + i) for i in range(1000)]
        inflight: set[asyncio.Task[Any]] = set()
        for _ in range(total // 1000):
            inflight.add(asyncio.create_task(ob.append(chunk)))
            if len(inflight) >= 8:
                _, inflight = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
        await asyncio.gather(*inflight)
        elapsed = time.perf_counter() - start
        status = ob.status()
        print(f"backlog: {status['last_seq']:,} events appended in {elapsed:.1f} s "
              f"({status['last_seq'] / elapsed:,.0f}/s, 1000 per append), db {status['db_bytes'] / 2**20:,.0f} MiB")
        before = peak = rss_mb()
        start, after, pages = time.perf_counter(), 0, 0
        while page := await ob.read_unacked(after, 1000):
            after, pages = page[-1].seq, pages + 1
            if pages % 50 == 0:
                peak = max(peak, rss_mb())
        elapsed = time.perf_counter() - start
        print(f"read back: {after:,} events in {pages:,} pages of 1000 in {elapsed:.1f} s ({after / elapsed:,.0f}/s); "
              f"RSS {before:.0f} MiB before, peak {peak:.0f} MiB while paging, {rss_mb():.0f} MiB after")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per group size (default 2)")
    parser.add_argument("--backlog", type=int, default=1_000_000, help="events in the backlog (default 1M)")
    parser.add_argument("--dir", default=None, help="where the database goes (default: a temp dir)")
    args = parser.parse_args()
    setup_logging("warning")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        print(f"SQLite WAL + synchronous=FULL in {tmp}, RSS at start {rss_mb():.0f} MiB")
        for producers in (1, 10, 100, 1000):
            path = Path(tmp) / f"group-{producers}.db"
            await appends_per_second(path, producers, args.seconds)
            os.unlink(path)
        await backlog(Path(tmp) / "backlog.db", args.backlog)


if __name__ == "__main__":
    asyncio.run(main())
