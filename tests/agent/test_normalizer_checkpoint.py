"""Crash safety of the normalizer: checkpoints committed with the events, restored after a crash.

The agent commits ``take_checkpoints()`` in the same outbox transaction as the drafts fed since the
previous call. A crash loses the facts read after the last commit (the EGM will not send them
again) but not their meters: once restored, the normalizer declares exactly that as ``missed``.
Hand-made fact sequences first, then the simulated EGM with the real coordinator (``Harness``):
an agent that stops committing at some point, is killed, and a new one restored from what was
committed — whose sum must still be the machine's truth, to the cent.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.pipeline import EventDraft
from agent.sas import facts as F
from agent.sas.checkpoint import VERSION
from agent.sas.config import PollConfig
from agent.sas.coordinator import MachineCoordinator
from agent.sas.device_state import DeviceState
from agent.sas.line import SasLine
from agent.sas.normalizer import Normalizer
from firmware_sim.egm import Egm
from protocols.sas.exceptions import BillAcceptedData, GameEndedData, GameSelectedData, GameStartedData
from protocols.sync.money import ZERO, Contribution, contribution

from .memegm import MemoryEgm, pair
from .test_normalizer import DEV, Feed, sealed
from .test_normalizer_sim import FAST, SETTLE, TIMING, play_session

# ---- hand-made facts ---------------------------------------------------------------------------------


def restarted(f: Feed, checkpoints: dict[str, bytes]) -> Feed:
    """A new agent process: a new normalizer restored from the committed checkpoints, same clock."""
    g = Feed(settle=f.norm.settle_seconds)
    g.t, g.denom = f.t, f.denom
    assert g.norm.restore(checkpoints) == []
    return g


def totals(drafts: list[EventDraft]) -> Contribution:
    total = ZERO
    for d in drafts:
        total = total + contribution(d.type, d.data)
    return total


def of(drafts: list[EventDraft], type_: str, kind: str | None = None) -> list[EventDraft]:
    return [d for d in drafts if d.type == type_ and (kind is None or d.data.get("kind") == kind)]


def identity(f: Feed) -> None:
    f.fact(F.Identity, game_id="AT", additional_id="000", paytable_id="P1", base_percent="9500",
           accounting_denomination_cents=f.denom, max_bet=10, sas_version="603", serial="S1", game_count=1,
           enabled_games=(1,), games=(F.GameIdentity(1, "AT", "P1", 1, 10, "9500"),), fast_polling=False, rte=True)


def test_lost_activity_after_the_checkpoint_becomes_exactly_missed() -> None:
    f = Feed(settle=5)
    f.fact(F.LinkUp, reason="connect")
    f.meters(reason="connect")
    f.exc(0x4F, BillAcceptedData(0, 4, 1))                       # $20
    f.game(bet=10, win=0, coin_in=10)
    f.game(bet=5, win=20, coin_in=15)
    f.meters(dt_=10, coin_in=15, coin_out=20, games_played=2, bills_accepted_credits=2000)
    committed, checkpoints = list(f.drafts), f.norm.take_checkpoints()
    assert list(checkpoints) == [DEV]
    f.game(bet=7, win=0, coin_in=22)                             # read, then lost with the process
    f.game(bet=3, win=9, coin_in=25)
    f.exc(0x4F, BillAcceptedData(0, 3, 1))                       # $10
    g = restarted(f, checkpoints)
    g.fact(F.LinkUp, dt_=30, reason="connect")
    g.meters(reason="connect", coin_in=25, coin_out=29, games_played=4, bills_accepted_credits=3000)
    assert not g.of("integration")                               # not settled yet
    g.game(bet=5, win=0, coin_in=30)
    for _ in range(2):
        g.meters(dt_=10, coin_in=30, coin_out=29, games_played=5, bills_accepted_credits=3000)
    missed = g.of("integration", "missed")
    assert [{k: m.data.get(k) for k in ("bets", "wins", "rounds", "cash_in")} for m in missed] == [
        {"bets": 10, "wins": 9, "rounds": 2, "cash_in": 1000}]
    assert "agent_restart" in missed[0].data["reason"]
    assert not g.of("integration", "anomaly")
    assert totals(committed + g.drafts) == Contribution(bets=30, wins=29, rounds=5, cash_in=3000)
    sealed(committed + g.drafts)


def test_nothing_lost_means_nothing_missed_and_nothing_counted_twice() -> None:
    """Everything read was committed: the restart snapshot squares with the restored ledger."""
    f = Feed(settle=5)
    f.fact(F.LinkUp, reason="connect")
    f.meters(reason="connect", coin_in=1000, coin_out=500, games_played=40)
    f.game(bet=10, win=30, coin_in=1010)
    committed, checkpoints = list(f.drafts), f.norm.take_checkpoints()
    g = restarted(f, checkpoints)
    g.fact(F.LinkUp, dt_=2, reason="connect")
    g.game(bet=4, win=0, coin_in=1014)                           # still queued in the EGM at the crash
    for _ in range(3):
        g.meters(dt_=10, coin_in=1014, coin_out=530, games_played=42)
    assert not g.of("integration")
    assert totals(committed + g.drafts) == Contribution(bets=14, wins=30, rounds=2)


def test_open_round_whose_game_end_was_still_queued_ends_after_the_restart() -> None:
    f = Feed(settle=5)
    f.fact(F.LinkUp, reason="connect")
    f.meters(reason="connect")
    f.game(bet=10, win=0, coin_in=10)
    f.exc(0x7E, GameStartedData(25, 35, 0, 0))                   # committed; its 7F is not sent yet
    committed, checkpoints = list(f.drafts), f.norm.take_checkpoints()
    g = restarted(f, checkpoints)
    g.fact(F.LinkUp, dt_=30, reason="connect")
    g.meters(reason="connect", coin_in=35, coin_out=50, games_played=2)
    g.exc(0x7F, GameEndedData(50))                               # the round's end, after the restart
    ended = g.of("game.ended")
    assert [(e.data["bet"], e.data["win"]) for e in ended] == [(25, 50)]
    for _ in range(2):
        g.meters(dt_=10, coin_in=35, coin_out=50, games_played=2)
    assert not g.of("integration")
    assert totals(committed + g.drafts) == Contribution(bets=35, wins=50, rounds=2)


def test_open_round_whose_game_end_was_lost_shows_its_win_as_missed() -> None:
    f = Feed(settle=5)
    f.fact(F.LinkUp, reason="connect")
    f.meters(reason="connect")
    f.exc(0x7E, GameStartedData(25, 25, 0, 0))                   # committed with the checkpoint…
    committed, checkpoints = list(f.drafts), f.norm.take_checkpoints()
    f.exc(0x7F, GameEndedData(60))                               # … its 7F read, then lost
    g = restarted(f, checkpoints)
    g.fact(F.LinkUp, dt_=30, reason="connect")
    g.meters(reason="connect", coin_in=25, coin_out=60, games_played=1)
    g.game(bet=5, win=0, coin_in=30)                             # the next game replaces the open round
    for _ in range(2):
        g.meters(dt_=10, coin_in=30, coin_out=60, games_played=2)
    missed = g.of("integration", "missed")
    assert [{k: m.data.get(k) for k in ("bets", "wins", "rounds")} for m in missed] == [
        {"bets": None, "wins": 60, "rounds": 1}]
    assert "lost_game_end" in missed[0].data["reason"] and "agent_restart" in missed[0].data["reason"]
    assert totals(committed + g.drafts) == Contribution(bets=30, wins=60, rounds=2)


def test_legacy_meters_mode_derives_the_lost_bets_at_the_restart() -> None:
    f = Feed(settle=5)
    f.fact(F.LinkUp, reason="connect")
    f.meters(reason="connect")
    for _ in range(2):
        f.exc(0x7E)
        f.exc(0x7F)
    f.meters(coin_in=20, coin_out=8, games_played=2)
    f.exc(0x7E)                                                  # open (legacy) round at the checkpoint
    committed, checkpoints = list(f.drafts), f.norm.take_checkpoints()
    f.exc(0x7F)                                                  # lost
    f.exc(0x7E)
    f.exc(0x7F)
    f.meters(coin_in=40, coin_out=8, games_played=4)             # lost too (its derived bets with it)
    g = restarted(f, checkpoints)
    g.fact(F.LinkUp, dt_=30, reason="connect")
    g.meters(reason="connect", coin_in=40, coin_out=18, games_played=4)
    g.exc(0x7E)                                                  # played after the restart
    g.exc(0x7F)
    for _ in range(2):
        g.meters(dt_=10, coin_in=50, coin_out=18, games_played=5)
    assert totals(committed + g.drafts) == Contribution(bets=50, wins=18, rounds=5)
    assert sum(m.data.get("rounds", 0) for m in g.of("integration", "missed")) == 2
    assert not g.of("integration", "anomaly")


def test_wall_clock_set_back_during_the_outage_still_settles() -> None:
    """The host's clock went back an hour while the agent was down: without moving the checkpoint's
    times back with it, its snapshots would settle — and the loss be declared — an hour late."""
    f = Feed(settle=5)
    f.fact(F.LinkUp, reason="connect")
    f.meters(reason="connect")
    f.game(bet=10, win=0, coin_in=10)
    f.meters(dt_=10, coin_in=10, games_played=1)
    committed, checkpoints = list(f.drafts), f.norm.take_checkpoints()
    f.game(bet=20, win=40, coin_in=30)                           # lost
    g = restarted(f, checkpoints)
    g.t -= 3600
    g.fact(F.LinkUp, reason="connect")
    g.meters(reason="connect", coin_in=30, coin_out=40, games_played=2)
    for _ in range(2):
        g.meters(dt_=10, coin_in=30, coin_out=40, games_played=2)
    assert [{k: m.data.get(k) for k in ("bets", "wins", "rounds")} for m in g.of("integration", "missed")] == [
        {"bets": 20, "wins": 40, "rounds": 1}]
    assert totals(committed + g.drafts) == Contribution(bets=30, wins=40, rounds=2)


def test_queue_drains_only_after_the_restart_so_settling_waits_for_it() -> None:
    """Snapshots of before the crash settle a settle time after the new link-up, not at once: the
    events the EGM still held (never sent to the dead agent) arrive first."""
    f = Feed(settle=5)
    f.fact(F.LinkUp, reason="connect")
    f.meters(reason="connect")
    f.meters(dt_=10, coin_in=30, games_played=1)                 # the game is queued in the EGM
    committed, checkpoints = list(f.drafts), f.norm.take_checkpoints()
    g = restarted(f, checkpoints)
    g.fact(F.LinkUp, dt_=600, reason="connect")                  # down for ten minutes
    g.meters(dt_=0.1, reason="connect", coin_in=30, games_played=1)
    assert not g.of("integration")
    g.game(bet=30, win=0, coin_in=30)
    for _ in range(2):
        g.meters(dt_=10, coin_in=30, games_played=1)
    assert not g.of("integration")
    assert totals(committed + g.drafts) == Contribution(bets=30, rounds=1)


def rich_prefix(f: Feed) -> None:
    """Facts that leave most of the state non-trivial: identity, session, bills, a ticket, a missed
    window and its late game, a held win under a pending handpay, and an open round."""
    f.fact(F.LinkUp, reason="connect")
    identity(f)
    f.meters(reason="connect", coin_in=100, games_played=3, current_credits=0)
    f.exc(0x4F, BillAcceptedData(0, 5, 1))                       # $50
    f.exc(0x8C, GameSelectedData(1))
    f.game(bet=10, win=0, coin_in=110)
    f.exc(0x70)
    f.meters(dt_=10, coin_in=150, games_played=5, bills_accepted_credits=5000, current_credits=4960)
    f.meters(dt_=10, coin_in=150, games_played=5, bills_accepted_credits=5000, current_credits=4960)
    f.game(bet=20, win=0, coin_in=130)                           # late: absorbed by the missed record
    f.game(bet=5, win=7, coin_in=155)
    f.exc(0x3D)
    f.fact(F.TicketInfo, validation_number=4242, amount_cents=500)
    f.exc(0x4F, BillAcceptedData(0, 3, 1))                       # $10: a new session
    f.exc(0x51)
    f.game(bet=5, win=6000, coin_in=160)                         # held: jackpot or machine-paid?
    f.exc(0x7E, GameStartedData(9, 169, 0, 0))                   # open round


def rich_suffix(f: Feed) -> None:
    f.fact(F.LinkUp, dt_=20, reason="connect")
    f.fact(F.HandpayInfo, progressive_group=0, level=0, amount_cents=6000, partial_pay_cents=0, reset_id=0)
    f.exc(0x7F, GameEndedData(3))
    f.exc(0x52)
    identity(f)
    f.game(bet=4, win=0, coin_in=173)
    f.exc(0x4F, BillAcceptedData(0, 5, 1))                       # same bill meter: a duplicate
    f.exc(0x3D)
    f.fact(F.TicketInfo, validation_number=4242, amount_cents=500)   # the same ticket again
    values = {"coin_in": 190, "coin_out": 10, "jackpot": 6000, "games_played": 11,
              "bills_accepted_credits": 6000, "ticket_out_cents": 500, "current_credits": 0}
    for _ in range(3):
        f.meters(dt_=10, **values)


def normalized(drafts: list[EventDraft]) -> list[tuple[Any, ...]]:
    """Drafts without the restart's mark on `missed` reasons."""
    out = []
    for d in drafts:
        data = dict(d.data)
        if d.type == "integration" and data.get("kind") == "missed":
            data["reason"] = ",".join(r for r in data["reason"].split(",") if r != "agent_restart") or "unreported"
        out.append((d.device, d.type, d.device_time, d.agent_time, json.dumps(data, sort_keys=True)))
    return out


def comparable(state: DeviceState) -> DeviceState:
    info = state.handpay_info
    return dataclasses.replace(state, resumed=False,
                               handpay_info=None if info is None else dataclasses.replace(info, mono=0.0))


def test_round_trip_restores_the_same_state() -> None:
    f = Feed(settle=5)
    rich_prefix(f)
    checkpoints = f.norm.take_checkpoints()
    g = restarted(f, checkpoints)
    before, after = f.norm.devices[DEV], g.norm.devices[DEV]
    assert after.resumed
    assert comparable(after) == comparable(before)
    assert after.round is not None and after.round.placed is not None
    assert after.round.placed is after.ledger.games[-1]          # one game, as in the ledger it was
    assert after.held_wins and after.session and after.ledger.declared and after.ledger.quantities["bets"].absorbed
    assert g.norm.take_checkpoints() == {}                       # restoring changes nothing to commit
    g.exc(0x00)
    assert g.norm.take_checkpoints()[DEV] != checkpoints[DEV]    # last fact, restart mark: a new state


def test_restored_normalizer_behaves_like_the_one_that_was_not_killed() -> None:
    f, g = Feed(settle=5), Feed(settle=5)
    rich_prefix(f)
    h = restarted(f, f.norm.take_checkpoints())
    rich_prefix(g)
    rich_suffix(g)                                               # the agent that kept running
    rich_suffix(h)                                               # the agent restored at the same point
    prefix = len(f.drafts)
    assert normalized(h.drafts) == normalized(g.drafts[prefix:])
    assert h.of("integration", "duplicate") and h.of("game.win")
    assert totals(f.drafts + h.drafts) == totals(g.drafts)


def test_only_devices_changed_since_the_last_call_are_checkpointed() -> None:
    norm = Normalizer("EUR", settle_seconds=5, tz=dt.UTC)
    wall = dt.datetime(2025, 3, 1, 5, 0, tzinfo=dt.UTC).timestamp()

    def link(device: str) -> None:
        norm.feed(F.LinkUp(device=device, address=1, mono=wall, wall=wall, reason="connect"))

    assert norm.take_checkpoints() == {}
    link("a")
    link("b")
    assert sorted(norm.take_checkpoints()) == ["a", "b"]
    assert norm.take_checkpoints() == {}
    link("b")
    assert list(norm.take_checkpoints()) == ["b"]
    norm.tick(wall)
    assert norm.take_checkpoints() == {}                          # the day did not change
    norm.tick(wall + 3 * 3600)                                    # 08:00: the gaming day of 28 Feb closed
    checkpoints = norm.take_checkpoints()
    assert sorted(checkpoints) == ["a", "b"]
    restored = Normalizer("EUR", settle_seconds=5, tz=dt.UTC)
    assert restored.restore(checkpoints) == []
    assert restored.devices["a"].close_pending == "2025-02-28"


def test_a_day_that_ended_while_the_agent_was_down_is_closed_at_the_restart() -> None:
    norm = Normalizer("EUR", settle_seconds=5, tz=dt.UTC)
    wall = dt.datetime(2025, 3, 1, 23, 0, tzinfo=dt.UTC).timestamp()
    norm.tick(wall)
    norm.feed(F.LinkUp(device="a", address=1, mono=wall, wall=wall, reason="connect"))
    restored = Normalizer("EUR", settle_seconds=5, tz=dt.UTC)
    restored.restore(norm.take_checkpoints())
    requests = restored.tick(wall + 8 * 3600)                     # 07:00 next day
    assert [(r.device, r.gaming_day) for r in requests] == [("a", "2025-03-01")]


def good_checkpoint() -> bytes:
    f = Feed(settle=5)
    f.fact(F.LinkUp, reason="connect")
    f.meters(reason="connect", coin_in=100, games_played=3)
    f.game(bet=10, win=0, coin_in=110)
    return f.norm.take_checkpoints()[DEV]


@pytest.mark.parametrize("blob", [
    b"", b"\x00\xff garbage", b"[1, 2]", b'"text"', b"{}", b'{"v": "1"}', b"null",
    b'{"v": 2, "device": "egm-1"}',                               # a version this agent does not know
    b'{"v": 0, "device": "egm-1"}',
    b'{"v": 1, "device": "egm-2"}',                               # someone else's state
    b'{"v": 1, "device": "egm-1", "denom": 1.5}',                 # money must be integers
    b'{"v": 1, "device": "egm-1", "ledger": {"quantities": {"bets": {"meters": true}}}}',
    b'{"v": 1, "device": "egm-1", "ledger": {"quantities": {"tips": {}}}}',
    b'{"v": 1, "device": "egm-1", "round": {"game": 1, "placed_in": "games", "placed_index": 3}}',
    b'{"v": 1, "device": "egm-1", "gaming_day": "yesterday"}',
    b'{"v": 1, "device": "egm-1", "ledger": {"games": [{"raw": 1, "credits": 1, "status": "weird"}]}}',
    b'{"v": 1, "device": "egm-1", "ledger": {"history": [[1.0, {"bets": 1.5}]]}}',
    "a str, not bytes",
    None,
    12,
    b"[" * 100_000,
])
def test_unreadable_checkpoint_starts_the_device_afresh(blob: Any) -> None:
    norm = Normalizer("EUR", settle_seconds=5)
    norm.feed(F.LinkUp(device=DEV, address=1, mono=0.0, wall=1.0, reason="connect"))   # state it had
    assert norm.restore({DEV: blob, "egm-ok": good_checkpoint().replace(b'"egm-1"', b'"egm-ok"')}) == [DEV]
    assert DEV not in norm.devices and norm.devices["egm-ok"].ledger.active
    f = Feed(settle=5)
    f.norm = norm
    f.meters(reason="connect", coin_in=500, games_played=9)       # a fresh baseline: nothing missed
    for _ in range(2):
        f.meters(dt_=10, coin_in=500, games_played=9)
    assert not f.of("integration")


def test_restore_never_raises_whatever_it_is_given() -> None:
    norm = Normalizer("EUR")
    assert norm.restore({}) == []
    assert norm.restore(None) == []                              # type: ignore[arg-type]
    assert norm.restore({3: b"{}"}) == ["3"]                      # type: ignore[dict-item]


def test_checkpoint_format_is_compact_versioned_json_with_integer_money() -> None:
    blob = good_checkpoint()
    assert b" " not in blob and b"\n" not in blob
    body = json.loads(blob)
    assert body["v"] == VERSION == 1 and body["device"] == DEV
    assert body["ledger"]["quantities"]["bets"] == {"code": 0, "last_raw": 100, "reported": 10}   # defaults omitted
    game = body["ledger"]["games"][0]
    assert isinstance(game.pop("end_at"), float)   # when its 7F arrived (monotonic; compared within one boot)
    assert body["ledger"]["games"] == [{"raw": 110, "credits": 10, "pos": 10, "contributed": {"bets": 10, "rounds": 1}}]
    assert body["ledger"]["boot"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def test_old_checkpoint_without_newer_fields_is_read_with_their_defaults() -> None:
    """The format's rule: an added field has a default meaning "as before", unknown fields are
    ignored — so dropping fields (an older writer) or adding some (a newer one) still reads."""
    body = json.loads(good_checkpoint())
    for key in ("hints", "session_count", "wall", "link_up_since"):
        body.pop(key, None)
    body["ledger"].pop("history")
    body["ledger"]["quantities"].pop("cash_out_handpay")
    body["future_field"] = {"anything": [1, 2]}
    norm = Normalizer("EUR", settle_seconds=5)
    assert norm.restore({DEV: json.dumps(body).encode()}) == []
    state = norm.devices[DEV]
    assert state.ledger.quantities["bets"].reported == 10 and state.ledger.quantities["cash_out_handpay"].code is None
    assert not state.ledger.history


# ---- the simulated machine, the real coordinator, killed and restarted ----------------------------------


@dataclasses.dataclass
class Store:
    """The outbox as far as a crash goes: what was committed, and the last checkpoint per device."""

    drafts: list[EventDraft] = dataclasses.field(default_factory=list)
    checkpoints: dict[str, bytes] = dataclasses.field(default_factory=dict)


class Agent:
    """One agent process: line, coordinator, normalizer, and the runtime's pipeline loop — feed a
    batch of facts, then commit its drafts with ``take_checkpoints()`` (unless ``committing`` is off:
    from then on what it reads is lost, as by a process killed before its next commit)."""

    def __init__(self, host: Any, store: Store, config: PollConfig, *, ticking: bool = False) -> None:
        self.store = store
        self.ticking = ticking
        """Also run the runtime's ticker: the snapshots the normalizer asks for are read."""
        self.norm = Normalizer("EUR", settle_seconds=SETTLE)
        self.unreadable = self.norm.restore(store.checkpoints)
        self.line = SasLine(host, TIMING)
        self.coord = MachineCoordinator(self.line, 3, device="egm-003", config=config)
        self.facts: list[F.Fact] = []
        self.lost: list[EventDraft] = []
        self.committing = True
        self._task: asyncio.Task[None] | None = None
        self._ticker_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.line.start()
        await self.coord.start()
        self._task = asyncio.create_task(self._pipeline())
        if self.ticking:
            self._ticker_task = asyncio.create_task(self._ticker())

    async def _ticker(self) -> None:
        """As ``HallAgent._ticker``: read every snapshot the normalizer asks for (a failed read is
        asked again later)."""
        while True:
            for request in self.norm.tick(time.time()):
                with contextlib.suppress(Exception):
                    await self.coord.read_meters(request.reason)
            await asyncio.sleep(0.02)

    async def _pipeline(self) -> None:
        facts = self.coord.facts
        while True:
            batch = [await facts.get()]
            while not facts.empty():
                batch.append(facts.get_nowait())
            drafts: list[EventDraft] = []
            for fact in batch:
                self.facts.append(fact)
                drafts.extend(self.norm.feed(fact))
            checkpoints = self.norm.take_checkpoints()
            if self.committing:
                self.store.drafts.extend(drafts)
                self.store.checkpoints.update(checkpoints)
            else:
                self.lost.extend(drafts)

    async def kill(self) -> None:
        """SIGKILL: nothing more is fed or committed, nothing is flushed or confirmed, the port closes.

        The tasks are cancelled until they are done rather than stopped (``stop()`` confirms what
        the line holds, which a killed process never does; and on Python 3.11 ``asyncio.wait_for``
        can swallow a cancellation, which leaves ``SasLine.stop()`` waiting for ever)."""
        for task in (self._ticker_task, self._task, self.coord._task, self.line._task):
            while task is not None and not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.05)
        await self.line.transport.close()


class Harness:
    """One simulated EGM on one serial line, and the agent processes that poll it in turn."""

    def __init__(self, config: PollConfig, *, ticking: bool = False, **egm_kw: Any) -> None:
        self.ticking = ticking
        self.host, dev = pair()
        self.egm = Egm(3, seed=11, pace=0, **egm_kw)
        self.sim = MemoryEgm(dev, self.egm)
        self.config = config
        self.store = Store()
        self.agent: Agent | None = None
        self.agents: list[Agent] = []

    @property
    def facts(self) -> list[F.Fact]:
        assert self.agent is not None
        return self.agent.facts

    async def wait_for(self, pred: Any, timeout: float = 5.0) -> None:
        async def loop() -> None:
            while True:
                if pred():
                    return
                await asyncio.sleep(0.005)
        await asyncio.wait_for(loop(), timeout)

    async def boot(self) -> Agent:
        """A new agent process, restored from what the previous ones committed; until its first snapshot."""
        agent = self.agent = Agent(self.host, self.store, self.config, ticking=self.ticking)
        self.agents.append(agent)
        assert agent.unreadable == []
        await agent.start()
        await self.wait_for(lambda: any(isinstance(f, F.MetersSnapshot) for f in agent.facts))
        return agent

    async def kill(self) -> None:
        assert self.agent is not None
        await self.agent.kill()
        self.agent = None

    async def drained(self) -> None:
        """The EGM has nothing queued and the agent has fed (and, if committing, committed) every fact."""
        agent = self.agent
        assert agent is not None

        def idle() -> bool:
            return not self.egm.pending_exceptions() and agent.coord.facts.empty() and agent.coord.link_up
        await self.wait_for(idle)
        await asyncio.sleep(0.05)
        await self.wait_for(idle)
        await asyncio.sleep(0.01)

    async def settle(self) -> None:
        """Two quiet snapshots a settle time apart: the second closes the first's window."""
        agent = self.agent
        assert agent is not None
        await self.drained()
        for _ in range(2):
            await asyncio.sleep(SETTLE)
            before = sum(isinstance(f, F.MetersSnapshot) for f in agent.facts)
            assert await agent.coord.read_meters() is not None
            await self.wait_for(lambda before=before: sum(isinstance(f, F.MetersSnapshot)
                                                          for f in agent.facts) > before)
            await self.drained()

    async def resolve_handpay(self) -> None:
        if self.egm.handpay is None:
            return
        amount = self.egm.handpay.amount
        await self.wait_for(lambda: any(isinstance(f, F.HandpayInfo) and f.amount_cents == amount
                                        for f in self.facts[-40:]))
        self.egm.reset_handpay()
        await asyncio.sleep(0.02)

    def committed(self) -> Contribution:
        return totals(self.store.drafts)

    def assert_exact(self) -> None:
        t, got = self.egm.truth, self.committed()
        assert (got.bets, got.wins, got.rounds, got.cash_in, got.cash_out) == (
            t.bets, t.wins, t.rounds, t.cash_in, t.cash_out), (got, t)
        assert not of(self.store.drafts, "integration", "anomaly")
        sealed(self.store.drafts)

    def lost_money(self) -> Contribution:
        return totals([d for agent in self.agents for d in agent.lost])


@contextlib.asynccontextmanager
async def harness(config: PollConfig = FAST, *, ticking: bool = False, **egm_kw: Any) -> AsyncIterator[Harness]:
    h = Harness(config, ticking=ticking, **egm_kw)
    await h.sim.start()
    try:
        await h.boot()
        yield h
    finally:
        if h.agent is not None:
            await h.kill()
        await h.sim.stop()


METERS_MODE = PollConfig(**{**FAST.__dict__, "rte": False})


async def crash_and_restart(h: Harness, rng: random.Random) -> None:
    """Play, stop committing (the last commit is the checkpoint), play on, get killed with events
    still queued in the EGM, play while nobody polls, restart."""
    await play_session(h, rng, 12, pace=0.02)                    # type: ignore[arg-type]
    await h.drained()
    assert h.agent is not None
    h.agent.committing = False
    await play_session(h, rng, 8, bills=(10,), pace=0.02)        # type: ignore[arg-type]
    assert h.egm.cash_out() > 0                                  # a ticket, lost with the rest
    await h.drained()
    h.egm.insert_bill(5)
    for _ in range(3):                                           # read or not: killed meanwhile
        h.egm.play_game(bet=rng.randint(1, 5), game=1)
    await asyncio.sleep(0.01)
    await h.kill()
    h.egm.insert_bill(5)                                         # nobody polls: queued in the EGM
    h.egm.play_game(bet=2, game=1, win=4)
    await h.boot()


@pytest.mark.parametrize("config", [FAST, METERS_MODE], ids=["rte", "meters"])
async def test_sim_crash_lost_facts_become_missed_and_the_sum_is_exact(config: PollConfig) -> None:
    async with harness(config, handpay_limit=1_000_000) as h:
        rng = random.Random(5)
        await crash_and_restart(h, rng)
        await play_session(h, rng, 10, bills=(20,), pace=0.02)   # type: ignore[arg-type]
        h.egm.cash_out()
        await h.settle()
        lost = h.lost_money()
        assert lost.bets > 0 or config is METERS_MODE
        assert lost.rounds > 0 and lost.cash_in > 0 and lost.cash_out > 0
        missed = of(h.store.drafts, "integration", "missed")
        assert missed and all("agent_restart" in m.data["reason"] for m in missed)
        h.assert_exact()


async def test_sim_crash_with_a_handpay_and_the_checkpoint_inside_a_round() -> None:
    """The checkpoint holds a round whose 7F the dead agent read (lost); then a hand-paid jackpot
    before another crash, restarted twice."""
    async with harness(FAST, handpay_limit=5000, ticket_limit=20_000) as h:
        rng = random.Random(9)
        await play_session(h, rng, 6, pace=0.02)                 # type: ignore[arg-type]
        await h.drained()
        assert h.agent is not None
        h.egm.start_game(bet=4, game=1, win=12)
        coin_in = h.egm.meter(0x00)
        await h.wait_for(lambda: any(d.type == "game.bet" and d.data.get("coin_in_meter") == coin_in
                                     for d in h.store.drafts))
        h.agent.committing = False                               # the round is open at the checkpoint
        h.egm.end_game()
        await h.drained()                                        # its 7F read, never committed
        await h.kill()
        await h.boot()
        h.egm.insert_bill(10)
        h.egm.play_game(bet=5, game=1, win=6000)                 # a hand-paid jackpot
        await h.resolve_handpay()
        await play_session(h, rng, 5, bills=(), pace=0.02)       # type: ignore[arg-type]
        await h.drained()
        assert h.agent is not None
        h.agent.committing = False
        await play_session(h, rng, 5, bills=(5,), pace=0.02)     # type: ignore[arg-type]
        await h.drained()
        await h.kill()
        await h.boot()
        await play_session(h, rng, 5, bills=(), pace=0.02)       # type: ignore[arg-type]
        h.egm.cash_out()
        await h.settle()
        assert h.lost_money().wins >= 12
        h.assert_exact()


@pytest.mark.parametrize("config", [FAST, METERS_MODE], ids=["rte", "meters"])
async def test_sim_crash_mid_round_the_game_end_arrives_after_the_restart(config: PollConfig) -> None:
    """Killed between a game's start and its end: the end waits in the EGM and ends the restored round."""
    async with harness(config, handpay_limit=1_000_000) as h:
        rng = random.Random(7)
        await play_session(h, rng, 8, pace=0.02)                 # type: ignore[arg-type]
        await h.drained()
        h.egm.start_game(bet=6, game=1, win=18)
        await h.drained()                                        # the 7E is committed
        await h.kill()
        h.egm.end_game()                                         # while nobody polls
        await h.boot()
        await play_session(h, rng, 5, bills=(), pace=0.02)       # type: ignore[arg-type]
        await h.settle()
        assert not h.lost_money().rounds
        ended = [d for d in h.store.drafts if d.type == "game.ended"]
        if config is FAST:
            restored_round = [d for d in ended if d.data["win"] == 18 and d.data["bet"] == 6]
            assert len(restored_round) == 1
        assert not of(h.store.drafts, "integration", "missed")   # nothing was lost
        h.assert_exact()


async def test_sim_crash_with_a_handpay_pending_its_reset_comes_after_the_restart() -> None:
    """LP 1B was read and committed, the attendant keys the jackpot off while the agent is down:
    the restored handpay makes the 52 a hand-paid win of the right amount, nothing missed."""
    async with harness(FAST, handpay_limit=5000, ticket_limit=20_000) as h:
        rng = random.Random(4)
        await play_session(h, rng, 6, pace=0.02)                 # type: ignore[arg-type]
        h.egm.insert_bill(10)
        h.egm.play_game(bet=5, game=1, win=6000)
        assert h.egm.handpay is not None
        amount = h.egm.handpay.amount
        await h.wait_for(lambda: any(isinstance(f, F.HandpayInfo) and f.amount_cents == amount for f in h.facts))
        await h.drained()
        await h.kill()
        h.egm.reset_handpay()                                    # 52 waits in the EGM
        await h.boot()
        await play_session(h, rng, 6, bills=(), pace=0.02)       # type: ignore[arg-type]
        h.egm.cash_out()
        await h.settle()
        assert not h.lost_money().wins
        jackpots = [d for d in h.store.drafts if d.type == "game.win" and d.data["paid_by"] == "handpay"]
        assert [d.data["amount"] for d in jackpots] == [amount]
        assert not of(h.store.drafts, "integration", "missed")
        h.assert_exact()
