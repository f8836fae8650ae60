"""An agent restarting against an EGM that is still in RTE mode (issue 12, "the smaller ones").

The EGM keeps its RTE setting across a host restart; the new agent starts in legacy mode until its
LP 0E is ACKed. In that window the EGM answers in the RTE form (``addr FF code data CRC``) or with
its address alone. Before the fix the first byte of such an answer was taken as exception code
``addr`` (``device.status`` "unknown exception 01") and the real event behind it was acknowledged
and lost. These tests run the coordinator against the simulator's honest EGM model at address 1.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from agent.sas import facts as F
from agent.sas.config import PollConfig
from agent.sas.coordinator import MachineCoordinator
from agent.sas.line import SasLine
from agent.sas.transaction import Timing
from firmware_sim.egm import Egm
from protocols.sas import framing

from .memegm import MemoryEgm, pair

FAST = PollConfig(poll_interval=0.01, fast_poll_interval=None, link_down_after=3, probe_interval=0.02,
                  probe_max_interval=0.05, liveness_interval=0.1, command_timeout=2.0, identity=False,
                  clock_interval=0)
TIMING = Timing(response_timeout=0.03, gap_timeout=0.01)


@contextlib.asynccontextmanager
async def restarted_agent(egm: Egm) -> AsyncIterator[MachineCoordinator]:
    """A fresh coordinator (as after an agent restart) polling ``egm`` as it is."""
    host, dev = pair()
    sim = MemoryEgm(dev, egm)
    line = SasLine(host, TIMING)
    coord = MachineCoordinator(line, egm.address, device="egm-001", config=FAST)
    await sim.start()
    await line.start()
    await coord.start()
    try:
        yield coord
    finally:
        await coord.stop()
        await line.stop()
        await sim.stop()


async def _exceptions_until_drained(coord: MachineCoordinator, egm: Egm, timeout: float = 5.0) -> list[F.ExceptionFact]:
    """Every ExceptionFact until RTE is back on and the EGM's queue is empty (or the timeout)."""
    got: list[F.ExceptionFact] = []

    async def collect() -> None:
        while not (coord.rte_active and not egm.pending_exceptions() and coord.facts.empty()
                   and {0x7E, 0x7F} <= {f.code for f in got}):
            with contextlib.suppress(TimeoutError):
                fact = await asyncio.wait_for(coord.facts.get(), 0.05)
                if isinstance(fact, F.ExceptionFact):
                    got.append(fact)

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(collect(), timeout)
    return got


async def test_restart_against_an_egm_still_in_rte_mode_reports_its_events_not_its_address() -> None:
    egm = Egm(1, seed=1, pace=0)
    egm.set_rte(True)                  # the previous agent run enabled RTE; the EGM kept it
    egm.insert_bill(20)
    egm.play_game(bet=10, win=0)
    queued = egm.pending_exceptions()
    assert 0x7E in queued and 0x7F in queued
    async with restarted_agent(egm) as coord:
        facts = await _exceptions_until_drained(coord, egm)
    codes = [f.code for f in facts]
    assert 0x01 not in codes, f"the EGM's address was reported as an exception: {codes}"
    assert [c for c in codes if c in (0x4F, 0x7E, 0x7F)] == [c for c in queued if c in (0x4F, 0x7E, 0x7F)]
    ended = next(f for f in facts if f.code == 0x7F)
    assert ended.rte and ended.data is not None, "the game end came in the RTE form, with its win amount"


class EchoingEgm(MemoryEgm):
    """An EGM that answers an empty RTE general poll with its address (an ACK-like echo)."""

    echoes = 0

    def answer(self, msg: framing.HostMessage, now: float) -> list[int] | None:
        reply = super().answer(msg, now)
        if reply is None and isinstance(msg, framing.GeneralPoll) and msg.address == self.egm.address \
                and self.egm.rte:
            self.echoes += 1
            return [self.egm.address]
        return reply


async def test_an_echoed_address_in_rte_mode_is_a_sign_of_life_not_an_exception() -> None:
    egm = Egm(1, seed=1, pace=0)
    host, dev = pair()
    sim = EchoingEgm(dev, egm)
    line = SasLine(host, TIMING)
    coord = MachineCoordinator(line, 1, device="egm-001", config=FAST)
    await sim.start()
    await line.start()
    await coord.start()
    seen: list[F.Fact] = []

    async def until(cond: Callable[[], bool]) -> None:
        while not cond():
            with contextlib.suppress(TimeoutError):
                seen.append(await asyncio.wait_for(coord.facts.get(), 0.05))

    try:
        await asyncio.wait_for(until(lambda: coord.rte_active and sim.echoes >= 20), 5)
        egm.open_door("slot")
        await asyncio.wait_for(until(lambda: any(isinstance(f, F.ExceptionFact) and f.code == 0x11
                                                 for f in seen)), 5)
    finally:
        await coord.stop()
        await line.stop()
        await sim.stop()
    codes = [f.code for f in seen if isinstance(f, F.ExceptionFact)]
    assert codes == [0x11], codes
    assert not any(isinstance(f, F.LinkDown) for f in seen)
