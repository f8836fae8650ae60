"""What one ingest's SQLite work costs per event, by schema variant and by insert method.

Run: ``.venv/bin/python bench/store_insert.py [--method values|executemany|json] [--variant base|device|notime]
[--batch 5000] [--batches 60] [--busy]``.

Central's schema from ``central.store.schema`` in a fresh file (WAL, synchronous=FULL, the writer's
page cache), then ``--batches`` transactions of ``--batch`` realistic event rows (200 devices, seqs
in order). The first third warm the file up; the rest are timed: the INSERT alone and the COMMIT
(WAL write, fsync, automatic checkpoints). ``--busy`` runs a thread spinning in Python beside the
writer, as central's verifying thread does: it shows what a method pays for giving up the GIL
(``executemany`` gives it up after every row and waits out the switch interval to get it back; keep
``--batches`` small with it). ``--variant`` adds schema 4's per-event device index, or drops the
time index, to price them.

The last line is ``insert µs/event: X  commit µs/event: Y``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec

from central.staging import EVENT_COLUMNS, WIDTH
from central.store.schema import DDL
from central.store.sqlhelpers import insert_rows

_TIME_INDEX = "CREATE INDEX IF NOT EXISTS events_by_time ON events (agent_time);"
_DEVICE_INDEX = "CREATE INDEX events_by_device ON events (hall, device, seq);"   # schema 4's, for comparison
_HEAD = f"INSERT INTO events ({', '.join(EVENT_COLUMNS)})"
_JSON = (f"{_HEAD} SELECT ?1, value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, ?2,"
         " value ->> 6, value ->> 7, value ->> 8 FROM json_each(?3)")


def rows_of(batch: int, first_seq: int, rng: random.Random, t0: int) -> list[object]:
    devices = [f"egm-{i:03d}" for i in range(200)]
    out: list[object] = []
    prev = "0" * 64
    for seq in range(first_seq, first_seq + batch):
        digest = hashlib.sha256(str(seq).encode()).hexdigest()
        at = t0 + seq * 20_000
        out.extend(("bench-hall", seq, str(uuid.UUID(int=rng.getrandbits(128))), rng.choice(devices), "game.bet",
                    at, at - 5_000, at + 100, prev, digest,
                    '{"amount":100,"currency":"EUR","denom":1,"game":"3"}'))
        prev = digest
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", choices=("values", "executemany", "json"), default="values")
    p.add_argument("--variant", choices=("base", "device", "notime"), default="base",
                   help="base: today's schema; device: plus schema 4's events_by_device; notime: no events_by_time")
    p.add_argument("--batch", type=int, default=5000)
    p.add_argument("--batches", type=int, default=60)
    p.add_argument("--busy", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="hallsync-insert-") as tmp:
        con = sqlite3.connect(os.path.join(tmp, "central.db"), isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        con.execute("PRAGMA cache_size=-65536")
        con.executescript(DDL.replace(_TIME_INDEX, "") if args.variant == "notime" else DDL)
        if args.variant == "device":
            con.execute(_DEVICE_INDEX)
        stop = threading.Event()

        def spin() -> None:
            x = 0
            while not stop.is_set():
                for i in range(1000):
                    x += i * i

        if args.busy:
            threading.Thread(target=spin, daemon=True).start()
        rng, seq, warm = random.Random(1), 1, args.batches // 3
        insert_s = commit_s = 0.0
        for number in range(args.batches):
            values = rows_of(args.batch, seq, rng, 1_790_000_000_000_000)
            seq += args.batch
            con.execute("BEGIN IMMEDIATE")
            a = time.perf_counter()
            if args.method == "values":
                insert_rows(con, _HEAD, WIDTH, values)
            elif args.method == "executemany":
                con.executemany(f"{_HEAD} VALUES ({', '.join('?' * WIDTH)})",
                                [values[i:i + WIDTH] for i in range(0, len(values), WIDTH)])
            else:
                rows = [values[i + 1:i + 7] + values[i + 8:i + WIDTH] for i in range(0, len(values), WIDTH)]
                con.execute(_JSON, ("bench-hall", values[7], msgspec.json.encode(rows)))
            b = time.perf_counter()
            con.execute("COMMIT")
            c = time.perf_counter()
            if number >= warm:
                insert_s += b - a
                commit_s += c - b
        stop.set()
        timed = (args.batches - warm) * args.batch
        print(f"{args.method} {args.variant}{' busy' if args.busy else ''}: {timed:,} events timed in batches of"
              f" {args.batch}, file {os.path.getsize(os.path.join(tmp, 'central.db')) / 1e6:.0f} MB")
        print(f"insert µs/event: {insert_s / timed * 1e6:.2f}  commit µs/event: {commit_s / timed * 1e6:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
