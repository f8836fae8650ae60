"""A full disk under a running agent: the machines are locked, no event is lost, play resumes after.

Real parts: simulated EGMs on real ptys, the agent's whole runtime (pollers, normalizer, outbox,
replicator) with its data directory on a tiny real filesystem that the test fills, and Mosquitto.
What the operator checks: while the outbox cannot commit, the EGMs refuse play (LP 01 reached them);
once space is back they are enabled again and every game played before the lock is in the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from agent.keys import init_keys
from agent.runtime import AgentConfig, HallAgent
from agent.sas.config import PollConfig
from firmware_sim.egm import Egm, PlayRefused
from firmware_sim.pty_egm import PtyEgmServer
from protocols.sync import decode_event, generate_private_key, public_key_to_pem
from protocols.sync.money import ZERO, contribution
from tests.conftest import fill

HALL = "hall-full"


async def wait_until(predicate, timeout: float, what: str) -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out: {what}")


def outbox_totals(path: Path) -> dict[str, object]:
    import sqlite3

    con = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        bodies = [row[0] for row in con.execute("SELECT body FROM events ORDER BY seq")]
    finally:
        con.close()
    totals: dict[str, object] = {}
    for body in bodies:
        event = decode_event(body)
        totals[event.device] = totals.get(event.device, ZERO) + contribution(event.type, event.data)
    return totals


@pytest.mark.slow
async def test_disk_full_locks_the_machines_and_loses_nothing(small_fs: Path, tmp_path: Path, mosquitto) -> None:
    data = small_fs / "agent"
    init_keys(data)
    central = tmp_path / "central.pub"
    central.write_bytes(public_key_to_pem(generate_private_key().public_key()))
    egms = [Egm(address, seed=address, pace=0) for address in (1, 2)]
    servers = [PtyEgmServer(egm) for egm in egms]
    ports = [await s.start() for s in servers]
    devices = tmp_path / "devices.toml"
    devices.write_text("".join(f'[[devices]]\nid = "egm-00{i + 1}"\nprotocol = "sas"\nport = "{port}"\n'
                               f'address = {i + 1}\nframing = "marks"\n\n' for i, port in enumerate(ports)))
    agent = HallAgent(AgentConfig(hall=HALL, data_dir=data, devices=devices, mqtt=mosquitto.url_text,
                                  central_key=central, meter_settle_seconds=0.5,
                                  poll=PollConfig(meter_interval=1.0)))
    agent.outbox.retry_interval = 0.2
    stop = asyncio.Event()
    run = asyncio.create_task(agent.run(stop))
    filler = small_fs / "filler"
    try:
        await wait_until(lambda: all(c.link_up and c.identity for c in agent.poller.coordinators.values()), 15,
                         "both machines identified")
        for egm in egms:
            assert egm.insert_bill(100)
        for _ in range(5):
            for egm in egms:
                egm.play_game(bet=10)
            await asyncio.sleep(0.05)
        await wait_until(lambda: agent.outbox.last_seq > 20, 10, "first events committed")

        fill(filler)  # the disk is full: the next commit fails
        for egm in egms:
            egm.play_game(bet=20)
            egm.play_game(bet=30)
        await wait_until(lambda: agent.fail_closed is not None, 15, "the agent to fail closed")
        await wait_until(lambda: not any(e.enabled for e in egms), 10, "LP 01 to reach both machines")
        for egm in egms:
            with pytest.raises(PlayRefused, match=r"disabled|enabled|locked|cannot"):
                egm.play_game(bet=10)
        assert agent.outbox.state == "failed" and "FULL" in str(agent.outbox.status()["reason"]).upper()

        filler.unlink()  # space is back
        await wait_until(lambda: agent.outbox.state == "ok" and agent.fail_closed is None, 15, "recovery")
        await wait_until(lambda: all(e.enabled for e in egms), 10, "LP 02 to re-enable both machines")
        egms[0].play_game(bet=40)

        def matches() -> bool:
            totals = outbox_totals(data / "outbox.db")
            return all(totals.get(f"egm-00{i + 1}", ZERO).bets == e.truth.bets
                       and totals.get(f"egm-00{i + 1}", ZERO).rounds == e.truth.rounds
                       and totals.get(f"egm-00{i + 1}", ZERO).wins == e.truth.wins for i, e in enumerate(egms))

        await wait_until(matches, 15, "every game in the outbox")
    finally:
        with contextlib.suppress(FileNotFoundError):
            filler.unlink()
        stop.set()
        await asyncio.wait_for(run, 30)
        for s in servers:
            await s.stop()


@pytest.mark.slow
async def test_an_agent_killed_while_failed_closed_unlocks_the_machines_when_it_comes_back(
        small_fs: Path, tmp_path: Path, mosquitto) -> None:
    """The set of machines the agent locked lived in memory: killed while the disk was full (systemd
    restarts it), the new process did not know it had locked the hall, and every machine stayed
    disabled for good (bench/chaos.py: an agent SIGKILL during a full disk). The record survives a
    kill, is written on the full disk itself, and the next run enables what it lists."""
    data = small_fs / "agent"
    init_keys(data)
    central = tmp_path / "central.pub"
    central.write_bytes(public_key_to_pem(generate_private_key().public_key()))
    egm = Egm(1, seed=1, pace=0)
    server = PtyEgmServer(egm)
    port = await server.start()
    devices = tmp_path / "devices.toml"
    devices.write_text(f'[[devices]]\nid = "egm-001"\nprotocol = "sas"\nport = "{port}"\naddress = 1\n'
                       'framing = "marks"\n')

    def agent() -> HallAgent:
        a = HallAgent(AgentConfig(hall=HALL, data_dir=data, devices=devices, mqtt=mosquitto.url_text,
                                  central_key=central, meter_settle_seconds=0.5, poll=PollConfig(meter_interval=1.0)))
        a.outbox.retry_interval = 0.2
        return a

    first = agent()
    stop = asyncio.Event()
    run = asyncio.create_task(first.run(stop))
    filler = small_fs / "filler"
    try:
        await wait_until(lambda: all(c.link_up and c.identity for c in first.poller.coordinators.values()), 15,
                         "the machine identified")
        assert egm.insert_bill(100)
        egm.play_game(bet=10)
        await wait_until(lambda: first.outbox.last_seq > 5, 10, "first events committed")
        fill(filler)
        egm.play_game(bet=20)
        await wait_until(lambda: first.fail_closed is not None and not egm.enabled, 15, "the hall locked")
        run.cancel()                                   # killed: no recovery, no goodbye
        with contextlib.suppress(asyncio.CancelledError):
            await run
        assert not egm.enabled
        filler.unlink()                                # space is back; systemd starts the agent again
        # ... but the cable is out: this run cannot reach the machine, and is killed in turn. It must
        # not forget the lock before the machine has ACKed its enable.
        server.faults.kill_link(60)
        between = agent()
        run_between = asyncio.create_task(between.run(asyncio.Event()))
        await wait_until(lambda: between.poller.coordinators["egm-001"].stats.transmissions > 3, 15,
                         "the next run polling the dead line")
        run_between.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run_between
        assert not egm.enabled
        server.faults.kill_link(0)
        second = agent()
        stop2 = asyncio.Event()
        run2 = asyncio.create_task(second.run(stop2))
        try:
            await wait_until(lambda: egm.enabled, 20, "the new agent to enable the machine the old one locked")
            egm.play_game(bet=30)
        finally:
            stop2.set()
            await asyncio.wait_for(run2, 30)
    finally:
        with contextlib.suppress(FileNotFoundError):
            filler.unlink()
        await server.stop()
