"""SIGKILL mid-stream: every event whose append() had returned is on disk, and the chain is intact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from agent.outbox import OutboxStore
from protocols.sync import GENESIS_HASH, verify_chain

HALL = "hall-crash"

# The writer prints each seq only after append() returned for it, i.e. after its commit.
WRITER = r"""
import asyncio, sys
from dataclasses import dataclass, field
from agent.logging_setup import setup_logging
from agent.outbox import Outbox

@dataclass
class Draft:
    device: str
    type: str = "game.win"
    device_time: int | None = None
    agent_time: int = 1_780_000_000_000_000
    data: dict = field(default_factory=lambda: {"amount": 250, "currency": "EUR"})

async def producer(ob, k):
    n = 0
    while True:
        n += 1
        events = await ob.append([Draft(device=f"egm-{k:03d}", agent_time=1_780_000_000_000_000 + n)
                                  for _ in range(1 + n % 3)])
        sys.stdout.write("".join(f"{e.seq}\n" for e in events))
        sys.stdout.flush()

async def main():
    setup_logging("warning")  # logs go to stderr; stdout carries only committed seqs
    ob = Outbox(sys.argv[1], sys.argv[2], linger=0.002)
    await ob.start()
    await asyncio.gather(*(producer(ob, k) for k in range(16)))

asyncio.run(main())
"""


def test_sigkill_loses_nothing_that_append_returned_for(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    printed: set[int] = set()
    for _round in range(2):  # kill, reopen, write on, kill again: the second run continues the chain
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db), HALL], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, env=env)
        assert proc.stdout is not None
        target, deadline = len(printed) + 3000, time.monotonic() + 30
        try:
            while len(printed) < target and time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                printed.add(int(line))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        # lines already in the pipe were printed after their commit too
        printed.update(int(line) for line in proc.stdout.read().split())
        assert len(printed) >= target, "the writer did not get far enough"

    store = OutboxStore(db, HALL)
    store.open()
    stored, after = [], 0
    while page := store.read(after, 5000):
        stored += page
        after = page[-1].seq
    store.close()
    seqs = [e.seq for e in stored]
    assert seqs == list(range(1, len(seqs) + 1))  # gap-free
    assert printed <= set(seqs), sorted(printed - set(seqs))[:10]
    assert verify_chain(GENESIS_HASH, stored, first_seq=1) == stored[-1].hash
