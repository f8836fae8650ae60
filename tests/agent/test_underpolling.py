"""Under-polling is visible (issue 12 item 4): exception-queue overflows, breaks in the 7E/7F sequence
and late general polls are counted per machine, as the line confirmed them, and rendered on
``/metrics`` with ``device`` and ``port``; the event loop's lag and each line's busy time tell a
starved process from an overloaded line; and a machine whose own events beat its identity read at
connect still gets its 40 ms cadence."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from agent.sas import coordinator as coordinator_module
from agent.sas import facts as F
from agent.sas.config import PollConfig
from agent.sas.coordinator import MachineCoordinator
from agent.sas.line import SasLine
from agent.sas.metrics import sas_metric_families
from agent.sas.poller import LoopLag
from agent.sas.stats import LinkStats
from agent.sas.transaction import Timing
from firmware_sim.egm import Egm
from protocols.metrics import render
from protocols.sas.exceptions import GameEndedData, GameStartedData
from tests import promtext

from .memegm import MemoryEgm, next_fact, pair

FAST = PollConfig(poll_interval=0.01, fast_poll_interval=None, link_down_after=3, probe_interval=0.02,
                  probe_max_interval=0.05, liveness_interval=0.1, command_timeout=2.0)
TIMING = Timing(response_timeout=0.03, gap_timeout=0.01)


async def wait_for(condition, timeout: float, what: str) -> None:
    """Poll ``condition`` until true; fail after ``timeout`` seconds saying ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass
class Rig:
    egm: Egm
    sim: MemoryEgm
    line: SasLine
    coord: MachineCoordinator


@contextlib.asynccontextmanager
async def rig(egm: Egm | None = None, config: PollConfig = FAST) -> AsyncIterator[Rig]:
    host, dev = pair()
    egm = egm or Egm(3, seed=1, pace=0)
    sim = MemoryEgm(dev, egm)
    line = SasLine(host, TIMING)
    coord = MachineCoordinator(line, egm.address, device=f"egm-{egm.address:03d}", config=config)
    await sim.start()
    await line.start()
    await coord.start()
    try:
        yield Rig(egm, sim, line, coord)
    finally:
        await coord.stop()
        await line.stop()
        await sim.stop()


def game_started(egm: Egm) -> None:
    egm.exceptions.push(0x7E, GameStartedData(1, egm.meter(0x00), 0, 0))


def game_ended(egm: Egm) -> None:
    egm.exceptions.push(0x7F, GameEndedData(0))


# ---- counting, as the line confirms -------------------------------------------------------------------

def test_the_game_sequence_is_judged_from_the_first_exception_seen() -> None:
    stats = LinkStats()
    stats.exception(0x7F)            # a game started before this process: not judged
    assert (stats.lost_game_ends, stats.lost_game_starts) == (0, 0)
    for code in (0x7E, 0x7F, 0x7E, 0x7E, 0x7F, 0x7F, 0x70, 0x70):
        stats.exception(code)
    assert (stats.lost_game_ends, stats.lost_game_starts, stats.exception_overflows) == (1, 1, 2)


async def test_overflows_and_lost_7e_7f_are_counted_once_confirmed() -> None:
    egm = Egm(3, seed=1, pace=0)
    assert egm.insert_bill(20)
    async with rig(egm) as r:
        await next_fact(r.coord.facts, F.MetersSnapshot, 3, lambda f: True)
        egm.play_game(bet=1)                            # a whole game: nothing lost
        await wait_for(lambda: r.coord.stats.game_open is False, 3, "the game's 7F")
        game_started(egm)
        game_started(egm)                               # the first game's 7F never came
        game_ended(egm)
        game_ended(egm)                                 # a 7F without its 7E
        await wait_for(lambda: not egm.exceptions.pending(), 3, "the EGM's queue drained")
        await wait_for(lambda: r.coord.stats.game_open is False and r.coord.stats.lost_game_starts, 3,
                       "the last 7F confirmed")
        assert (r.coord.stats.lost_game_ends, r.coord.stats.lost_game_starts) == (1, 1)
        for _ in range(egm.exceptions.size + 5):        # more than the FIFO holds, between two polls
            egm.exceptions.push(0x71)                  # change lamp on
        await wait_for(lambda: r.coord.stats.exception_overflows == 1, 3, "exception 70 confirmed")
        await wait_for(lambda: not egm.exceptions.pending(), 3, "the EGM's queue drained")
        assert r.coord.stats.exception_overflows == 1
        assert r.coord.stats.as_dict()["exception_overflows"] == 1


async def test_a_stalled_loop_shows_as_late_general_polls_and_loop_lag() -> None:
    lag = LoopLag(period=0.005)
    lag.start()
    try:
        async with rig() as r:
            await next_fact(r.coord.facts, F.MetersSnapshot, 3, lambda f: True)
            await wait_for(lambda: len(r.coord.stats.lateness) > 5, 3, "general polls timed")
            before = r.coord.stats.cadence_misses
            burn = time.monotonic() + 0.15                # a CPU burst elsewhere holds the whole loop
            while time.monotonic() < burn:
                pass
            await wait_for(lambda: r.coord.stats.cadence_misses > before, 3, "a cadence miss")
            assert r.coord.stats.worst_lateness >= 0.1
            assert r.line.busy_seconds > 0
        assert lag.worst >= 0.1
        (sample,) = lag.histogram.collect().samples.values()
        assert sample.count > 0 and sample.total >= 0.1
    finally:
        await lag.stop()


def test_lateness_is_measured_after_the_previous_polls_own_answer() -> None:
    """A quiet RTE poll waits its whole response timeout (100 ms on a pty): the next one cannot be
    due before that, so a 40 ms cadence on a pty is not a miss per poll."""
    stats = LinkStats()
    coord = MachineCoordinator.__new__(MachineCoordinator)
    coord.stats, coord._last_general = stats, None
    coord.fast_polling, coord.config = True, PollConfig(fast_poll_interval=0.04)
    coord._general_sent(10.0, 0.1)           # sent at 10.0, quiet: 100 ms at least
    coord._general_sent(10.101, 0.0)         # 1 ms after the first one could end: on time
    coord._general_sent(10.25, 0.0)          # answered, so due at 10.141: 109 ms late, a miss
    assert stats.cadence_misses == 1
    assert stats.worst_lateness == pytest.approx(0.109)
    assert [round(x, 3) for x in stats.lateness] == [0.001, 0.109]


async def test_a_busy_machine_whose_events_beat_its_identity_read_gets_it_on_a_later_try(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """More events queued at connect than a long poll is asked again for (RTE_REQUEUE_LIMIT): the
    first LP 1F loses against them. Read again, the machine gets its identity and its 40 ms cadence;
    before, it stayed at 200 ms until the next link-up."""
    def busy_egm() -> Egm:
        egm = Egm(3, seed=1, pace=0, fifo_size=120)
        assert egm.insert_bill(100)
        for _ in range(45):                           # 90 events, 7E and 7F
            egm.play_game(bet=1)
        return egm

    monkeypatch.setattr(coordinator_module, "IDENTITY_TRIES", 0)   # what the agent did before
    async with rig(busy_egm()) as r:
        await next_fact(r.coord.facts, F.MetersSnapshot, 5, lambda f: True)
        await wait_for(lambda: not r.egm.exceptions.pending(), 5, "the backlog drained")
        assert r.coord.identity is None and r.coord.fast_polling is False

    monkeypatch.setattr(coordinator_module, "IDENTITY_TRIES", 5)
    async with rig(busy_egm()) as r:
        ident = await next_fact(r.coord.facts, F.Identity, 5, lambda f: True)
        assert ident.fast_polling is True and r.coord.fast_polling is True
        assert ident.serial == r.egm.serial


# ---- on /metrics ----------------------------------------------------------------------------------------

def test_the_counters_are_rendered_per_machine_and_per_line() -> None:
    def coord(port: str, **counts: int) -> SimpleNamespace:
        stats = LinkStats()
        for name, value in counts.items():
            setattr(stats, name, value)
        stats.worst_lateness = 0.25
        stats.outcomes["garbled"] = counts.get("exception_overflows", 0) + 1
        return SimpleNamespace(line=SimpleNamespace(name=port), stats=stats)

    poller = SimpleNamespace(
        coordinators={"egm-001": coord("/dev/ttyS0", exception_overflows=3, lost_game_ends=2, cadence_misses=7),
                      "egm-002": coord("/dev/ttyS0", lost_game_starts=1, cadence_misses=1),
                      "egm-003": coord("/dev/ttyS1")},
        lines={"/dev/ttyS0": SimpleNamespace(name="/dev/ttyS0", busy_seconds=1.5),
               "/dev/ttyS1": SimpleNamespace(name="/dev/ttyS1", busy_seconds=0.25)},
        loop_lag=LoopLag())
    poller.loop_lag.observe(0.05)
    families = promtext.parse(render(sas_metric_families(poller)))  # type: ignore[arg-type]
    v = promtext.value
    s0 = {"port": "/dev/ttyS0"}
    assert v(families, "hallsync_agent_sas_exception_overflows_total", device="egm-001", **s0) == 3
    assert v(families, "hallsync_agent_sas_lost_game_events_total", device="egm-001", lost="7F", **s0) == 2
    assert v(families, "hallsync_agent_sas_lost_game_events_total", device="egm-002", lost="7E", **s0) == 1
    assert v(families, "hallsync_agent_sas_poll_cadence_misses_total", device="egm-001", **s0) == 7
    assert v(families, "hallsync_agent_sas_poll_lateness_max_seconds", device="egm-003", port="/dev/ttyS1") == 0.25
    assert v(families, "hallsync_agent_sas_transmissions_total", device="egm-001", outcome="garbled", **s0) == 4
    assert v(families, "hallsync_agent_sas_line_garbled_total", **s0) == 5
    assert v(families, "hallsync_agent_sas_line_exception_overflows_total", **s0) == 3
    assert v(families, "hallsync_agent_sas_line_lost_game_events_total", lost="7E", **s0) == 1
    assert v(families, "hallsync_agent_sas_line_poll_cadence_misses_total", **s0) == 8
    assert v(families, "hallsync_agent_sas_line_poll_cadence_misses_total", port="/dev/ttyS1") == 0
    assert v(families, "hallsync_agent_sas_line_busy_seconds_total", **s0) == 1.5
    assert v(families, "hallsync_agent_event_loop_lag_seconds_count") == 1
    assert v(families, "hallsync_agent_event_loop_lag_max_seconds") == 0.05
    for name, family in families.items():
        if family.type == "counter":
            assert name.endswith("_total"), name
