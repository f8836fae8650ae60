"""Throughput of central's ingest: Ingestor.handle on a real SQLite file (WAL, synchronous=FULL).

Run: ``.venv/bin/python bench/central_ingest.py [--batches 50] [--size 1000] [--halls 1]``.
Events are the codec bench's realistic game events (bet/win/ended); each message goes through topic
parsing, strict decoding, signature and chain verification, the store transaction (events, rollups,
devices, chain state), commit and a signed ack. Halls are fed concurrently, one message in flight per
hall, as a shared subscription with one worker per hall would.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sync_codec import make_unsealed, seal_all

from central.ingest import Ingestor
from central.logging_setup import setup_logging
from central.store import open_sqlite
from protocols.sync import encode_batch, generate_private_key, public_key_to_pem, topic


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=50, help="batches per hall")
    parser.add_argument("--size", type=int, default=1000, help="events per batch")
    parser.add_argument("--halls", type=int, default=1, help="halls fed concurrently")
    args = parser.parse_args()
    setup_logging("warning")

    central_key = generate_private_key()
    feeds = []
    for h in range(args.halls):
        hall = f"hall-{h:02d}"
        key = generate_private_key()
        events = seal_all(make_unsealed(args.batches * args.size, hall))
        payloads = [encode_batch(events[i:i + args.size], hall, key, created_at=0)
                    for i in range(0, len(events), args.size)]
        feeds.append((hall, key, payloads))
    size_kb = len(feeds[0][2][0]) / 1024
    with tempfile.TemporaryDirectory() as tmp:
        store = await open_sqlite(Path(tmp) / "bench.db")
        for hall, key, _ in feeds:
            await store.halls.add_hall(hall, public_key_to_pem(key.public_key()).decode(), now=0)
        ingestor = Ingestor(store, central_key)

        async def feed(hall: str, payloads: list[bytes]) -> None:
            name = topic(hall, "batches")
            for payload in payloads:
                outcome = await ingestor.handle(name, payload)
                assert outcome.status == "stored", outcome

        start, cpu_start = time.perf_counter(), time.process_time()
        await asyncio.gather(*(feed(hall, payloads) for hall, _, payloads in feeds))
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        total = args.halls * args.batches * args.size
        replay_start = time.perf_counter()
        for payload in feeds[0][2][:10]:
            assert (await ingestor.handle(topic(feeds[0][0], "batches"), payload)).status == "duplicate"
        replay = time.perf_counter() - replay_start
        await store.close()
    print(f"ingest {total:,} events ({args.halls} hall(s) × {args.batches} batches × {args.size}, "
          f"{size_kb:.0f} KB/batch): {total / seconds:,.0f} events/s  ({seconds / total * 1e6:.1f} µs/event, "
          f"{seconds / (args.halls * args.batches) * 1e3:.1f} ms/batch)")
    print(f"CPU (all threads of this process): {cpu / total * 1e6:.1f} µs/event, "
          f"{cpu / (args.halls * args.batches) * 1e3:.2f} ms/batch; load average {os.getloadavg()[0]:.2f}")
    print(f"duplicate replay: {10 * args.size / replay:,.0f} events/s (verify only, nothing written)")


if __name__ == "__main__":
    asyncio.run(main())
