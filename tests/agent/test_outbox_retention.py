"""Outbox retention on real SQLite files (issue 12): acked events go by age *or* by size, whichever
keeps less; unacked events and the newest event never go; the freed pages are reused by later
appends; and the agent runs its first prune soon after start, not one ``prune_interval`` later."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent import runtime
from agent.keys import init_keys
from agent.outbox import Outbox, OutboxStore
from agent.runtime import AgentConfig, HallAgent
from protocols.sync import generate_private_key, public_key_to_pem, verify_chain

HALL = "hall-ret"
DAY = 86_400 * 1_000_000
NOW = 1_780_000_000_000_000 + 30 * DAY
MB = 1_000_000


@dataclass
class Draft:
    device: str = "egm-001"
    type: str = "game.bet"
    device_time: int | None = None
    agent_time: int = NOW
    data: dict[str, Any] = field(default_factory=lambda: {"amount": 100, "currency": "EUR", "note": "x" * 500})


async def fill_outbox(ob: Outbox, count: int, agent_time: int) -> list[Any]:
    events: list[Any] = []
    for start in range(0, count, 1000):
        events += await ob.append([Draft(agent_time=agent_time + i) for i in range(start, min(count, start + 1000))])
    return events


def used_and_free(path: Path) -> tuple[int, int]:
    store = OutboxStore(path, HALL)
    store.open()
    try:
        return store.space()
    finally:
        store.close()


async def test_the_size_cap_prunes_the_oldest_acked_events_even_when_young(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    async with Outbox(db, HALL, retention_seconds=7 * 86400, retention_max_bytes=4 * MB, max_group=1000) as ob:
        events = await fill_outbox(ob, 12_000, NOW - DAY)            # one day old: within 7 days
        used_before, _ = await ob._call(ob._store.space)
        assert used_before > 8 * MB, "the test needs more acked data than the cap"
        assert await ob.prune(NOW) == 0, "nothing acked: nothing goes, whatever the size"
        assert await ob.mark_acked(9_000, events[8_999].hash)         # 3,000 stay unacked
        pruned = await ob.prune(NOW)
        used, free = await ob._call(ob._store.space)
        status = ob.status()
    assert 0 < pruned <= 9_000
    assert used <= 4 * MB or status["pruned_through"] == 9_000, (used, status)
    assert used <= 4 * MB + 64 * 1024, "the cap is met within a few pages"
    assert free >= used_before - used - 64 * 1024, "the pruned rows' pages are free in the file"
    assert status["pruned_through"] == pruned and status["unacked_count"] == 3_000
    assert status["retention"] == {"days": 7.0, "max_mb": 4.0}
    assert status["last_prune"]["events"] == pruned and status["last_prune"]["used_bytes"] == used
    rows = OutboxStore(db, HALL)
    rows.open()
    try:
        kept: list[Any] = []
        after = pruned
        while page := rows.read(after, 5000):
            kept += page
            after = page[-1].seq
    finally:
        rows.close()
    # a prefix went: what is left starts right after the cut, chains on, and holds every unacked event
    assert [e.seq for e in kept] == list(range(pruned + 1, 12_001))
    assert verify_chain(events[pruned - 1].hash, kept, first_seq=pruned + 1) == events[-1].hash


async def test_unacked_events_and_the_newest_are_never_pruned_however_far_over_the_cap(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    async with Outbox(db, HALL, retention_seconds=1, retention_max_bytes=MB) as ob:
        events = await fill_outbox(ob, 5_000, NOW - 30 * DAY)        # old and far over the cap
        assert await ob.mark_acked(2_000, events[1_999].hash)
        assert await ob.prune(NOW) == 2_000                           # every acked event, not one more
        assert await ob.prune(NOW) == 0
        assert [e.seq for e in await ob.read_unacked(0, 10_000)] == list(range(2_001, 5_001))
        assert await ob.mark_acked(5_000, events[-1].hash)
        assert await ob.prune(NOW) == 2_999                           # all acked now; the newest row stays
        assert ob.status()["pruned_through"] == 4_999 and ob.status()["last_seq"] == 5_000


async def test_age_still_prunes_below_the_cap_and_young_events_stay_below_it(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    async with Outbox(db, HALL, retention_seconds=7 * 86400, retention_max_bytes=100 * MB) as ob:
        old = await fill_outbox(ob, 300, NOW - 8 * DAY)
        young = await ob.append([Draft(agent_time=NOW - DAY + i) for i in range(200)])
        assert await ob.mark_acked(500, young[-1].hash)
        assert await ob.prune(NOW) == 300                            # the 8-day-old ones; the young stay
        assert ob.status()["pruned_through"] == 300
        assert ob.status()["last_prune"]["oldest_kept_agent_time"] == young[0].agent_time
    assert old[-1].seq == 300


async def test_pruned_space_is_reused_before_the_file_grows(tmp_path: Path) -> None:
    """SQLite does not give pruned pages back (no auto_vacuum, no VACUUM: store.py says why); the next
    appends fill them, so a pruned outbox does not grow until its free pages are used up."""
    db = tmp_path / "outbox.db"
    async with Outbox(db, HALL, retention_seconds=86400, max_group=1000) as ob:
        events = await fill_outbox(ob, 8_000, NOW - 30 * DAY)
        assert await ob.mark_acked(8_000, events[-1].hash)
        assert await ob.prune(NOW) == 7_999
        await ob._call(ob._store._db().execute, "PRAGMA wal_checkpoint(TRUNCATE)")
        size_after_prune = os.path.getsize(db)
        _, free_after_prune = await ob._call(ob._store.space)
        await fill_outbox(ob, 6_000, NOW)                            # fewer bytes than were pruned
        await ob._call(ob._store._db().execute, "PRAGMA wal_checkpoint(TRUNCATE)")
        size_after_refill = os.path.getsize(db)
        _, free_after_refill = await ob._call(ob._store.space)
    assert free_after_prune > 3 * MB
    assert size_after_refill == size_after_prune, "the appends went into the free pages"
    assert free_after_refill < free_after_prune / 2
    assert used_and_free(db)[1] == free_after_refill


async def test_the_agent_prunes_soon_after_start_not_one_interval_later(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent restarted more often than its prune interval (an hour) used to never prune."""
    data = tmp_path / "agent"
    init_keys(data)
    async with Outbox(data / runtime.OUTBOX_FILE, HALL) as ob:        # a previous run: 500 acked, 8 days old
        events = await fill_outbox(ob, 500, int(time.time() * 1e6) - 8 * DAY)
        assert await ob.mark_acked(500, events[-1].hash)
    central = tmp_path / "central.pub"
    central.write_bytes(public_key_to_pem(generate_private_key().public_key()))
    devices = tmp_path / "devices.toml"
    devices.write_text('[[devices]]\nid = "egm-001"\nprotocol = "sas"\nport = "/dev/ttyNOSUCH8"\naddress = 1\n')
    monkeypatch.setattr(runtime, "PRUNE_FIRST_DELAY", 0.2, raising=False)
    agent = HallAgent(AgentConfig(hall=HALL, data_dir=data, devices=devices, mqtt="mqtt://127.0.0.1:1",
                                  central_key=central))                 # default prune_interval: one hour
    stop = asyncio.Event()
    run = asyncio.create_task(agent.run(stop))
    try:
        deadline = time.monotonic() + 10
        while agent.outbox.status()["pruned_through"] < 499:
            assert time.monotonic() < deadline, f"no prune after start: {agent.outbox.status()}"
            assert not run.done(), run
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(run, 30)
    assert agent.outbox.status()["last_prune"]["events"] == 499       # the newest row stays for the chain


def test_run_refuses_a_retention_that_would_prune_at_once(tmp_path: Path) -> None:
    agent = str(Path(sys.executable).parent / "hall-agent")
    res = subprocess.run([agent, "run", "--hall", "h1", "--data-dir", str(tmp_path), "--devices", "d.toml",
                          "--mqtt", "mqtt://127.0.0.1:1", "--central-key", "c.pub", "--retention-days", "0"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "--retention-days" in res.stderr
    helped = subprocess.run([agent, "run", "--help"], capture_output=True, text=True, timeout=60).stdout
    assert "--retention-days" in helped and "--retention-max-mb" in helped and "--prune-interval" in helped
