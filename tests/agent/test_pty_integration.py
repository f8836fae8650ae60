"""The poller against simulated EGMs over real ptys (PARMRK marks and structural framing), faults
included: what a hall would see on a bad cable, a pulled cable, a power cycle."""

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
from agent.transport import PtyTransport
from firmware_sim.egm import Egm
from firmware_sim.pty_egm import PtyEgmServer

from .memegm import next_fact

CFG = PollConfig(poll_interval=0.02, fast_poll_interval=None, link_down_after=3, probe_interval=0.05,
                 probe_max_interval=0.1, liveness_interval=0.2, command_timeout=3.0)
TIMING = Timing(response_timeout=0.05, gap_timeout=0.02)


@dataclass
class PtyRig:
    egm: Egm
    server: PtyEgmServer
    line: SasLine
    coord: MachineCoordinator

    async def next_fact(self, kind: type, timeout: float = 5.0, where=lambda f: True) -> F.Fact:
        return await next_fact(self.coord.facts, kind, timeout, where)


@contextlib.asynccontextmanager
async def pty_rig(framing: str = "marks", config: PollConfig = CFG) -> AsyncIterator[PtyRig]:
    egm = Egm(5, seed=2, pace=0)
    server = PtyEgmServer(egm, framing=framing)  # type: ignore[arg-type]
    path = await server.start()
    line = SasLine(PtyTransport(path, framing), TIMING)  # type: ignore[arg-type]
    coord = MachineCoordinator(line, 5, device="egm-005", config=config)
    await line.start()
    await coord.start()
    try:
        yield PtyRig(egm, server, line, coord)
    finally:
        await coord.stop()
        await line.stop()
        await server.stop()


@pytest.mark.parametrize("framing", ["marks", "structural"])
async def test_identity_and_meters_over_a_pty(framing: str) -> None:
    async with pty_rig(framing) as r:
        r.egm.insert_bill(10)
        r.egm.play_game(bet=5)
        ident = await r.next_fact(F.Identity)
        assert ident.serial == r.egm.serial
        snap = await r.next_fact(F.MetersSnapshot)
        assert snap.by_code() == {code: r.egm.meter(code) for code in snap.by_code()}
        assert snap.by_name()["games_played"] == 1


async def test_corrupt_and_dropped_replies_are_retried_not_lost() -> None:
    async with pty_rig() as r:
        await r.next_fact(F.MetersSnapshot)
        retries_before = r.coord.stats.retries
        r.server.faults.corrupt_replies = 1
        r.egm.open_door("slot")
        assert (await r.next_fact(F.ExceptionFact)).code == 0x11
        r.server.faults.drop_replies = 1
        r.egm.close_door("slot")
        assert (await r.next_fact(F.ExceptionFact, where=lambda f: f.code != 0x11)).code == 0x12
        assert r.coord.stats.retries >= retries_before + 1
        assert r.coord.link_up


async def test_garbled_reply_repeats_the_same_poll_at_once() -> None:
    async with pty_rig() as r:
        await r.next_fact(F.MetersSnapshot)
        before = r.coord.stats.outcomes["garbled"]
        r.server.faults.corrupt_replies = 1
        snap = await r.coord.read_meters()
        assert snap is not None and snap.by_code() == {c: r.egm.meter(c) for c in snap.by_code()}
        assert r.coord.stats.outcomes["garbled"] == before + 1


async def test_dead_link_goes_down_then_up() -> None:
    async with pty_rig() as r:
        await r.next_fact(F.MetersSnapshot)
        r.server.faults.kill_link(0.8)
        down = await r.next_fact(F.LinkDown)
        assert down.missed == CFG.link_down_after
        up = await r.next_fact(F.LinkUp)
        assert up.reason in ("recovered", "chirp")
        await r.next_fact(F.Identity)


async def test_power_cycle_resyncs_and_reports_power_exceptions() -> None:
    async with pty_rig() as r:
        await r.next_fact(F.MetersSnapshot)
        await r.server.power_cycle(0.3)
        seen: set[int] = set()

        async def collect() -> None:
            while not {0x17, 0x18} <= seen:
                f = await r.coord.facts.get()
                if isinstance(f, F.ExceptionFact):
                    seen.add(f.code)
        await asyncio.wait_for(collect(), 6)
        snap = await r.next_fact(F.MetersSnapshot)
        assert snap.by_code() == {c: r.egm.meter(c) for c in snap.by_code()}


async def test_handpay_over_pty() -> None:
    async with pty_rig() as r:
        await r.next_fact(F.MetersSnapshot)
        r.egm.insert_bill(100)
        r.egm.play_game(bet=100, win=200_000)
        info = await r.next_fact(F.HandpayInfo)
        assert info.amount_cents == r.egm.handpay.amount >= 120_000


async def test_disable_stops_play_and_enable_restarts_it() -> None:
    egm_pace = PollConfig(**{**CFG.__dict__})
    async with pty_rig(config=egm_pace) as r:
        await r.next_fact(F.Identity)
        r.egm.insert_bill(20)
        assert (await r.coord.disable_machine()).acked
        assert not r.egm.can_start_game()
        from firmware_sim.egm import PlayRefused
        with pytest.raises(PlayRefused):
            r.egm.play_game(bet=1)
        assert (await r.coord.enable_machine()).acked
        r.egm.play_game(bet=1)
        assert r.egm.meter(0x05) == 1
