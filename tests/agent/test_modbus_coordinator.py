"""TerminalCoordinator and ModbusPoller against an in-test pymodbus terminal on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from agent.modbus import (
    ModbusAdapter,
    ModbusEndpoint,
    ModbusPollConfig,
    ModbusPoller,
    TerminalCoordinator,
    TerminalLinkDown,
    TerminalLinkUp,
    TerminalNormalizer,
    TerminalRead,
    load_modbus_devices,
)
from protocols.sync.money import ZERO, Contribution, contribution

from .modbus_helpers import TestTerminal

FAST = ModbusPollConfig(poll_interval=0.05, timeout=0.3, offline_after=2, probe_interval=0.05,
                        probe_max_interval=0.2, stale_after=0, command_timeout=1.0)


async def wait_for(facts: list[Any], queue: asyncio.Queue[Any], pred: Callable[[Any], bool],
                   timeout: float = 3.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out; facts so far: {[type(f).__name__ for f in facts]}"
        fact = await asyncio.wait_for(queue.get(), left)
        facts.append(fact)
        if pred(fact):
            return fact


def money(drafts_facts: list[Any]) -> Contribution:
    n = TerminalNormalizer("EUR")
    out = ZERO
    for fact in drafts_facts:
        for d in n.feed(fact):
            out = out + contribution(d.type, d.data)
    return out


def test_offline_then_back_counts_what_moved_while_away() -> None:
    async def go() -> None:
        term = TestTerminal(bets=1000, wins=100, rounds=1, cash_in=5000)
        await term.start()
        coord = TerminalCoordinator(ModbusAdapter(ModbusEndpoint(host="127.0.0.1", port=term.port), timeout=0.3),
                                    device="term-01", config=FAST)
        facts: list[Any] = []
        await coord.start()
        up = await wait_for(facts, coord.facts, lambda f: isinstance(f, TerminalLinkUp))
        assert up.reason == "connect" and coord.link_up
        await wait_for(facts, coord.facts, lambda f: isinstance(f, TerminalRead))
        term.add(bets=200, wins=50, rounds=2)
        await wait_for(facts, coord.facts, lambda f: isinstance(f, TerminalRead) and f.reading["bets"] == 1200)
        await term.stop()                                     # the terminal vanishes...
        down = await wait_for(facts, coord.facts, lambda f: isinstance(f, TerminalLinkDown))
        assert down.reason in ("unreachable", "timeout") and down.missed == 2 and not coord.link_up
        term.add(bets=700, wins=300, rounds=5, cash_in=2000, cash_out=1500)   # ...and is played meanwhile
        await asyncio.sleep(0.3)
        await term.start()
        back = await wait_for(facts, coord.facts, lambda f: isinstance(f, TerminalLinkUp))
        assert back.reason == "recovered"
        await wait_for(facts, coord.facts, lambda f: isinstance(f, TerminalRead) and f.reading["bets"] == 1900)
        await coord.stop()
        await term.stop()
        assert money(facts) == Contribution(bets=900, wins=350, rounds=7, cash_in=2000, cash_out=1500)
        assert coord.errors >= 2 and coord.polls > coord.errors

    asyncio.run(go())


def test_backoff_while_unreachable() -> None:
    async def go() -> None:
        cfg = ModbusPollConfig(poll_interval=0.02, timeout=0.2, offline_after=1, probe_interval=0.05,
                               probe_max_interval=0.4, stale_after=0)
        term = TestTerminal()
        coord = TerminalCoordinator(ModbusAdapter(ModbusEndpoint(host="127.0.0.1", port=term.port), timeout=0.2),
                                    device="term-02", config=cfg)
        await coord.start()
        await asyncio.sleep(1.2)
        polls = coord.polls
        await coord.stop()
        # 0.05 + 0.1 + 0.2 + 0.4 + 0.4 ... ≈ 5 probes in 1.2 s, not 60 at the poll interval
        assert 3 <= polls <= 8, polls
        downs = [f for f in [coord.facts.get_nowait() for _ in range(coord.facts.qsize())]
                 if isinstance(f, TerminalLinkDown)]
        assert len(downs) == 1 and downs[0].last_seen_wall is None

    asyncio.run(go())


def test_frozen_heartbeat_is_stale_and_recovers() -> None:
    async def go() -> None:
        cfg = ModbusPollConfig(poll_interval=0.03, timeout=0.3, offline_after=2, stale_after=0.2)
        async with TestTerminal() as term:
            coord = TerminalCoordinator(ModbusAdapter(ModbusEndpoint(host="127.0.0.1", port=term.port)),
                                        device="term-03", config=cfg)
            facts: list[Any] = []
            await coord.start()
            await wait_for(facts, coord.facts, lambda f: isinstance(f, TerminalLinkUp))
            term.heartbeat_moves = False
            stale = await wait_for(facts, coord.facts, lambda f: isinstance(f, TerminalLinkDown))
            assert stale.reason == "stale" and coord.stale and not coord.link_up
            term.add(bets=10)                         # readings keep flowing while stale
            await wait_for(facts, coord.facts, lambda f: isinstance(f, TerminalRead) and f.reading["bets"] == 10)
            term.heartbeat_moves = True
            up = await wait_for(facts, coord.facts, lambda f: isinstance(f, TerminalLinkUp))
            assert up.reason == "heartbeat" and coord.link_up and not coord.stale
            await coord.stop()

    asyncio.run(go())


def test_disable_and_enable_write_the_control_register() -> None:
    async def go() -> None:
        async with TestTerminal() as term:
            coord = TerminalCoordinator(ModbusAdapter(ModbusEndpoint(host="127.0.0.1", port=term.port)),
                                        device="term-04", config=FAST)
            await coord.start()
            off = await coord.disable_machine()
            assert off.acked and term.writes[-1] == (18, 1)
            on = await coord.enable_machine()
            assert on.acked and term.writes[-1] == (18, 2)
            await coord.stop()
        failed = await coord.disable_machine()      # terminal gone: not acked, never raises
        assert not failed.acked and failed.detail

    asyncio.run(go())


def test_poller_loads_devices_and_shares_one_queue(tmp_path) -> None:
    async def go() -> None:
        async with TestTerminal(bets=5) as t1, TestTerminal(bets=7, unit=3) as t2:
            path = tmp_path / "devices.toml"
            path.write_text(
                '[[devices]]\nid = "egm-001"\nprotocol = "sas"\nport = "/dev/null"\naddress = 1\n'
                f'[[devices]]\nid = "term-01"\nprotocol = "modbus"\nhost = "127.0.0.1"\nport = {t1.port}\nunit = 1\n'
                f'[[devices]]\nid = "term-02"\nprotocol = "modbus"\nhost = "127.0.0.1"\nport = {t2.port}\nunit = 3\n'
                'map = "hallsync-terminal-v1"\n'
                '[[devices]]\nid = "term-03"\nprotocol = "modbus"\nserial = "/dev/pts/99"\nbaudrate = 9600\n')
            devices = load_modbus_devices(path)
            assert [d.id for d in devices] == ["term-01", "term-02", "term-03"]
            assert devices[2].endpoint.serial == "/dev/pts/99" and devices[2].endpoint.baudrate == 9600
            poller = ModbusPoller(devices[:2], FAST)
            await poller.start()
            seen: dict[str, int] = {}
            deadline = time.monotonic() + 3
            while len(seen) < 2 and time.monotonic() < deadline:
                fact = await asyncio.wait_for(poller.facts.get(), 3)
                if isinstance(fact, TerminalRead):
                    seen[fact.device] = fact.reading["bets"]
            await poller.stop()
            assert seen == {"term-01": 5, "term-02": 7}

    asyncio.run(go())
