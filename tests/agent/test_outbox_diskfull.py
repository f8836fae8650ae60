"""Disk full on a real, tiny filesystem: the outbox fails closed, drops nothing, and recovers in order."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.outbox import Outbox, OutboxStore, OutboxUnavailable
from protocols.sync import GENESIS_HASH, Event, verify_chain
from tests.conftest import fill

HALL = "hall-full"
T0 = 1_780_000_000_000_000


@dataclass
class Draft:
    device: str
    type: str = "game.bet"
    device_time: int | None = None
    agent_time: int = T0
    data: dict[str, Any] = field(default_factory=lambda: {"amount": 100, "currency": "EUR", "note": "x" * 300})


async def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_disk_full_fails_closed_keeps_every_event_and_recovers(small_fs: Path) -> None:
    failures: list[tuple[str, frozenset[str]]] = []
    recoveries: list[bool] = []
    ob = Outbox(small_fs / "outbox.db", HALL, retry_interval=0.1, max_group=20, max_pending=60,
                on_fail_closed=lambda reason, devices: failures.append((reason, devices)),
                on_recovered=lambda: recoveries.append(True))
    await ob.start()
    try:
        before = await ob.append([Draft(device="egm-000")])
        filler = small_fs / "filler"
        fill(filler)

        # Producers keep appending: the first commits fail, and once the memory bound is reached
        # append raises OutboxUnavailable. Nothing else may escape to a caller.
        tasks: list[asyncio.Task[list[Event]]] = []
        refused = 0
        for i in range(200):
            if ob.state == "failed" and ob.status()["pending_in_memory"] + 1 > 60:
                with pytest.raises(OutboxUnavailable):
                    await ob.append([Draft(device=f"egm-{i % 5:03d}", agent_time=T0 + i)])
                refused += 1
                continue
            tasks.append(asyncio.create_task(ob.append([Draft(device=f"egm-{i % 5:03d}", agent_time=T0 + i)])))
            await asyncio.sleep(0.002)
        await wait_until(lambda: ob.state == "failed")
        assert refused > 0
        status = ob.status()
        assert status["state"] == "failed" and "SQLITE_FULL" in status["reason"]
        assert status["pending_in_memory"] == len(tasks) <= 60
        assert not any(t.done() for t in tasks)  # nothing claimed durable while the disk is full
        reported = frozenset().union(*(devices for _, devices in failures))
        assert reported == {f"egm-{i % 5:03d}" for i in range(5)}
        assert all("SQLITE_FULL" in reason for reason, _ in failures)

        filler.unlink()  # space comes back
        results = await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)
        assert ob.state == "ok" and recoveries == [True]
        assert [r[0].seq for r in results] == list(range(2, 2 + len(tasks)))  # in order, no gap
        after = await ob.append([Draft(device="egm-000")])
        assert after[0].seq == len(tasks) + 2
    finally:
        await ob.stop()

    store = OutboxStore(small_fs / "outbox.db", HALL)
    store.open()
    rows = store.read(0, 1000)
    store.close()
    assert rows == before + [r[0] for r in results] + after
    assert verify_chain(GENESIS_HASH, rows, first_seq=1) == after[0].hash
