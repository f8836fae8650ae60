"""HallAgent with one Modbus terminal (in-test pymodbus server) and a real Mosquitto: the outbox's
events for the terminal sum to the counter movement, across a restart; fail-closed writes control."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

from agent.keys import init_keys
from agent.runtime import AgentConfig, HallAgent
from protocols.sync import decode_event, generate_private_key, public_key_to_pem
from protocols.sync.money import ZERO, Contribution, contribution

from .modbus_helpers import POLL, TestTerminal, wait_until

HALL = "hall-term"


def outbox_events(path: Path, device: str) -> list:
    con = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        bodies = [row[0] for row in con.execute("SELECT body FROM events ORDER BY seq")]
    finally:
        con.close()
    return [e for e in map(decode_event, bodies) if e.device == device]


def totals(path: Path, device: str) -> Contribution:
    out = ZERO
    for e in outbox_events(path, device):
        out = out + contribution(e.type, e.data)
    return out


def make_agent(tmp_path: Path, term: TestTerminal, mqtt: str) -> HallAgent:
    data = tmp_path / "agent"
    if not (data / "hall.key").exists():
        init_keys(data)
    central = tmp_path / "central.pub"
    if not central.exists():
        central.write_bytes(public_key_to_pem(generate_private_key().public_key()))
    devices = tmp_path / "devices.toml"
    devices.write_text(f'[[devices]]\nid = "term-01"\nprotocol = "modbus"\nhost = "127.0.0.1"\nport = {term.port}\n'
                       f'unit = {term.unit}\n')
    return HallAgent(AgentConfig(hall=HALL, data_dir=data, devices=devices, mqtt=mqtt, central_key=central,
                                 state_interval=0.2, modbus=POLL))


async def test_terminal_money_reaches_the_outbox_exactly_across_a_restart(tmp_path: Path, mosquitto) -> None:
    term = TestTerminal(bets=10_000, wins=8_000, rounds=40, cash_in=50_000, cash_out=3_000, tickets_out=1_000)
    await term.start()
    db = tmp_path / "agent" / "outbox.db"
    agent = make_agent(tmp_path, term, mosquitto.url_text)
    stop = asyncio.Event()
    run = asyncio.create_task(agent.run(stop))
    try:
        coord = agent.coordinators["term-01"]
        await wait_until(lambda: coord.link_up and coord.last_reading is not None, 5, "terminal online")
        await wait_until(lambda: any(e.type == "device.status" for e in outbox_events(db, "term-01")), 5,
                         "baseline committed")
        term.add(bets=500, wins=300, rounds=3, cash_in=2_000)
        await asyncio.sleep(0.15)
        term.add(bets=250, rounds=1, cash_out=700, tickets_in=400, tickets_out=100)
        want = Contribution(bets=750, wins=300, rounds=4, cash_in=2_400, cash_out=800)
        await wait_until(lambda: totals(db, "term-01") == want, 5, "first movement in the outbox")
        await wait_until(lambda: (tmp_path / "agent" / "agent-state.json").exists(), 2, "state file")
        await asyncio.sleep(0.3)
        state = json.loads((tmp_path / "agent" / "agent-state.json").read_text())
        [dev] = [d for d in state["devices"] if d["id"] == "term-01"]
        assert dev["protocol"] == "modbus" and dev["host"] == "127.0.0.1" and dev["port"] == term.port
        assert dev["unit"] == 1 and dev["link_up"] is True and dev["polls"] > 0 and dev["last_seen"]
    finally:
        stop.set()
        await asyncio.wait_for(run, 15)
    # the terminal is played while the agent is down; the restored counters count it on restart
    term.add(bets=1_000, wins=900, rounds=7, cash_in=5_000)
    agent = make_agent(tmp_path, term, mosquitto.url_text)
    stop = asyncio.Event()
    run = asyncio.create_task(agent.run(stop))
    try:
        want = Contribution(bets=1_750, wins=1_200, rounds=11, cash_in=7_400, cash_out=800)
        await wait_until(lambda: totals(db, "term-01") == want, 5, "movement while down in the outbox")
        baselines = [e for e in outbox_events(db, "term-01") if e.data.get("status") == "baseline"]
        assert len(baselines) == 1   # restored, not re-baselined
    finally:
        stop.set()
        await asyncio.wait_for(run, 15)
        await term.stop()


async def test_fail_closed_disables_terminals_and_recovery_enables_them(tmp_path: Path, mosquitto) -> None:
    async with TestTerminal() as term:
        agent = make_agent(tmp_path, term, mosquitto.url_text)
        stop = asyncio.Event()
        run = asyncio.create_task(agent.run(stop))
        try:
            coord = agent.coordinators["term-01"]
            await wait_until(lambda: coord.link_up, 5, "terminal online")
            agent._fail_closed("disk full (test)", frozenset())
            await wait_until(lambda: (18, 1) in term.writes, 3, "control=1 written")
            assert "term-01" in agent._locked_by_us
            agent._recovered()
            await wait_until(lambda: term.writes[-1:] == [(18, 2)], 3, "control=2 written")
            assert not agent._locked_by_us
        finally:
            stop.set()
            await asyncio.wait_for(run, 15)
