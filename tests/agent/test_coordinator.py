"""The poll coordinator against the simulator's EGM model over the in-process pair.

Each test checks what the next stage (the event pipeline) or a technician relies on: the facts,
their order, and that the EGM's own state agrees (exceptions consumed, play locked, meters equal).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from agent.sas import facts as F
from agent.sas.config import PollConfig
from agent.sas.coordinator import MachineCoordinator
from agent.sas.line import SasLine
from agent.sas.transaction import Timing
from firmware_sim.egm import Egm

from .memegm import MemoryEgm, next_fact, pair

FAST = PollConfig(poll_interval=0.01, fast_poll_interval=None, link_down_after=3, probe_interval=0.02,
                  probe_max_interval=0.05, liveness_interval=0.1, command_timeout=2.0)
TIMING = Timing(response_timeout=0.03, gap_timeout=0.01)


@dataclass
class Rig:
    egm: Egm
    sim: MemoryEgm
    line: SasLine
    coord: MachineCoordinator

    async def next_fact(self, kind: type, timeout: float = 3.0, where=lambda f: True) -> F.Fact:
        return await next_fact(self.coord.facts, kind, timeout, where)


@contextlib.asynccontextmanager
async def rig(config: PollConfig = FAST, **egm_kw) -> AsyncIterator[Rig]:
    host, dev = pair()
    egm = Egm(3, seed=1, pace=0, **egm_kw)
    sim = MemoryEgm(dev, egm)
    line = SasLine(host, TIMING)
    coord = MachineCoordinator(line, 3, device="egm-003", config=config)
    await sim.start()
    await line.start()
    await coord.start()
    try:
        yield Rig(egm, sim, line, coord)
    finally:
        await coord.stop()
        await line.stop()
        await sim.stop()


async def test_connect_sequence_link_identity_meters() -> None:
    async with rig() as r:
        up = await r.next_fact(F.LinkUp)
        assert up.reason == "connect" and up.device == "egm-003" and up.address == 3
        ident = await r.next_fact(F.Identity)
        assert ident.serial == r.egm.serial and ident.sas_version == "602"
        assert ident.enabled_games == tuple(r.egm.enabled_games())
        assert {g.number for g in ident.games} == set(r.egm.games)
        assert ident.accounting_denomination_cents == 1
        assert r.coord.rte_active, "the simulated EGM ACKs LP 0E"
        snap = await r.next_fact(F.MetersSnapshot)
        assert snap.reason == "connect"
        assert snap.by_code() == {code: r.egm.meter(code) for code in snap.by_code()}


async def test_sync_poll_is_needed_and_sent() -> None:
    """The EGM ignores its own address until it hears another one; the agent must sync first."""
    async with rig() as r:
        await r.next_fact(F.LinkUp)
        first_to_me = next(i for i, m in enumerate(r.sim.heard) if getattr(m, "address", None) == 3)
        assert any(getattr(m, "address", None) == 0 for m in r.sim.heard[:first_to_me])


async def test_meters_read_equal_the_machine_after_play() -> None:
    async with rig() as r:
        await r.next_fact(F.Identity)
        r.egm.insert_bill(20)
        for _ in range(5):
            r.egm.play_game(bet=10)
        snap = await r.coord.read_meters()
        assert snap is not None and snap.reason == "request"
        truth = r.egm.meters_by_name()
        got = snap.by_name()
        for name in ("coin_in", "coin_out", "games_played", "current_credits", "bills_accepted_credits"):
            assert got[name] == truth[name], name
        assert got["games_played"] == 5 and got["coin_in"] == 50


async def test_exception_counted_once_after_implied_ack() -> None:
    async with rig() as r:
        await r.next_fact(F.MetersSnapshot)
        r.egm.open_door("slot")
        fact = await r.next_fact(F.ExceptionFact)
        assert (fact.code, fact.name) == (0x11, "slot door opened")
        # the door is significant: a meter snapshot follows, and the EGM's queue is empty
        snap = await r.next_fact(F.MetersSnapshot)
        assert snap.reason == "event:11"
        await asyncio.sleep(0.1)
        assert r.egm.pending_exceptions() == []
        while not r.coord.facts.empty():
            extra = r.coord.facts.get_nowait()
            assert not (isinstance(extra, F.ExceptionFact) and extra.code == 0x11), "counted twice"


async def test_game_events_carry_rte_data() -> None:
    async with rig() as r:
        await r.next_fact(F.MetersSnapshot)
        r.egm.insert_bill(5)
        rnd = r.egm.play_game(bet=20, win=40)
        ended = await r.next_fact(F.ExceptionFact, where=lambda f: f.code == 0x7F)
        assert ended.rte and ended.data is not None and ended.data.win_amount == rnd.win_cents


async def test_handpay_flow_reads_lp_1b() -> None:
    async with rig() as r:
        await r.next_fact(F.MetersSnapshot)
        r.egm.insert_bill(100)
        r.egm.play_game(bet=100, win=150_000)   # above the $1,200 handpay limit
        pending = await r.next_fact(F.ExceptionFact, where=lambda f: f.code == 0x51)
        info = await r.next_fact(F.HandpayInfo)
        assert pending.mono <= info.mono
        assert info.amount_cents == r.egm.handpay.amount


async def test_disable_and_enable_machine() -> None:
    async with rig() as r:
        await r.next_fact(F.Identity)
        res = await r.coord.disable_machine()
        assert res.acked and res.action == "disable_machine"
        assert not r.egm.can_start_game()
        res = await r.coord.enable_machine()
        assert res.acked and r.egm.enabled
        res = await r.coord.disable_game(2)
        assert res.acked and r.egm.game_enabled[2] is False
        res = await r.coord.disable_game(77)     # no such game: the EGM does not ACK
        assert not res.acked


async def test_link_down_then_up_again() -> None:
    async with rig() as r:
        await r.next_fact(F.MetersSnapshot)
        r.sim.silent = True
        down = await r.next_fact(F.LinkDown)
        assert down.missed == FAST.link_down_after
        assert (await r.coord.disable_machine()).acked is False
        r.sim.silent = False
        up = await r.next_fact(F.LinkUp)
        assert up.reason in ("recovered", "chirp")
        await r.next_fact(F.Identity)


async def test_power_cycle_reports_17_18_and_resyncs_rte() -> None:
    async with rig() as r:
        await r.next_fact(F.MetersSnapshot)
        assert r.coord.rte_active
        r.egm.power_cycle()
        codes = set()
        async def collect() -> None:
            while not {0x17, 0x18} <= codes:
                f = await r.coord.facts.get()
                if isinstance(f, F.ExceptionFact):
                    codes.add(f.code)
        await asyncio.wait_for(collect(), 5)
        await asyncio.sleep(0.3)
        assert r.egm.rte, "the agent switched RTE back on after the power cycle"


async def test_chirp_triggers_resync() -> None:
    cfg = PollConfig(**{**FAST.__dict__, "poll_interval": 0.01})
    async with rig(cfg) as r:
        await r.next_fact(F.MetersSnapshot)
        r.sim.responder.config.chirp_after = 0.0    # make the EGM believe the loop broke
        up = await r.next_fact(F.LinkUp, where=lambda f: f.reason == "chirp")
        r.sim.responder.config.chirp_after = 5.0
        assert up.reason == "chirp"


@pytest.mark.parametrize("source", ["6F", "2F", "1C"])
async def test_each_meter_long_poll(source: str) -> None:
    cfg = PollConfig(**{**FAST.__dict__, "meter_poll": source})
    async with rig(cfg) as r:
        snap = await r.next_fact(F.MetersSnapshot)
        assert snap.source == source
        assert snap.by_code() == {code: r.egm.meter(code) for code in snap.by_code()}
