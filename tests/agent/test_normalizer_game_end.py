"""A game whose wager is in the baseline snapshot but whose end may not be: its win and round are
counted exactly once, whichever side of each meter's read the game ended on, across a restart too.

The order is the line's, not a guess: every meter carries when the reply that read it arrived and
every 7F when it arrived (in RTE mode the EGM answers any poll with a queued event first)."""

from __future__ import annotations

import datetime as dt
import json

from agent.pipeline import EventDraft
from agent.sas import facts as F
from agent.sas.normalizer import Normalizer
from protocols.sas.exceptions import GameEndedData, GameStartedData
from protocols.sync.money import ZERO, Contribution, contribution

DEV = "egm-1"
CODES = {"coin_in": 0x00, "coin_out": 0x01, "jackpot": 0x02, "games_played": 0x05}
T0 = 1_700_000_000.0


class Machine:
    """Feeds one device's facts at explicit monotonic times (mono == wall here) and keeps the drafts."""

    def __init__(self, norm: Normalizer | None = None) -> None:
        self.norm = norm or Normalizer("EUR", settle_seconds=5, tz=dt.UTC)
        self.drafts: list[EventDraft] = []

    def feed(self, fact: F.Fact) -> None:
        self.drafts.extend(self.norm.feed(fact))

    def game_started(self, at: float, bet: int, coin_in: int) -> None:
        self.feed(F.ExceptionFact(device=DEV, address=1, mono=at, wall=at, code=0x7E, name="7E", rte=True,
                                  data=GameStartedData(bet, coin_in, 0, 0)))

    def game_ended(self, at: float, win: int) -> None:
        self.feed(F.ExceptionFact(device=DEV, address=1, mono=at, wall=at, code=0x7F, name="7F", rte=True,
                                  data=GameEndedData(win)))

    def meters(self, at: float, reads: dict[str, float] | None = None, **values: int) -> None:
        """A snapshot fed at ``at``; ``reads``: when each meter's reply arrived (None: all at ``at``;
        a meter missing from ``reads`` has no time)."""
        stamps: dict[str, float] = dict.fromkeys(CODES, at) if reads is None else reads
        meters = tuple(F.Meter(code, name, values.get(name, 0), "count" if name == "games_played" else "credits",
                               stamps.get(name)) for name, code in CODES.items())
        self.feed(F.MetersSnapshot(device=DEV, address=1, mono=at, wall=at, reason="schedule", source="6F",
                                   game=0, accounting_denomination_cents=1, meters=meters))

    def totals(self) -> Contribution:
        """What central counts: every draft's money by the shared rule (events and ``missed`` records)."""
        total = ZERO
        for d in self.drafts:
            total = total + contribution(d.type, d.data)
        return total

    def integration(self) -> list[dict]:
        return [d.data for d in self.drafts if d.type == "integration"]


def settle(m: Machine, at: float, **values: int) -> None:
    """Two snapshots well past the settle time: whatever the ledger would call missed, it has by now."""
    m.meters(at, **values)
    m.meters(at + 10, **values)
    m.meters(at + 20, **values)


def test_game_in_the_baseline_that_ends_after_the_read_counts_its_end_once() -> None:
    m = Machine()
    m.game_started(T0, bet=25, coin_in=25)                    # its wager is in the baseline's coin in
    m.meters(T0 + 0.2, reads=dict.fromkeys(CODES, T0 + 0.1), coin_in=25)
    m.game_ended(T0 + 1.0, win=40)                            # arrived after every meter was read
    settle(m, T0 + 10, coin_in=25, coin_out=40, games_played=1)
    assert m.integration() == []                              # no missed record, no anomaly
    assert m.totals() == Contribution(bets=25, wins=40, rounds=1)


def test_game_whose_end_the_baseline_read_contains_is_not_counted_again() -> None:
    m = Machine()
    m.game_started(T0, bet=25, coin_in=25)
    m.game_ended(T0 + 0.05, win=40)                           # ended before the meters were read
    m.meters(T0 + 0.2, reads=dict.fromkeys(CODES, T0 + 0.1), coin_in=25, coin_out=40, games_played=1)
    settle(m, T0 + 10, coin_in=25, coin_out=40, games_played=1)
    assert m.integration() == []
    assert m.totals() == Contribution(bets=25, wins=40, rounds=1)


def test_snapshot_read_over_several_polls_with_the_game_ending_between_them() -> None:
    """Games played and coin out were read first, then the game started and ended (its events came
    in answer to the next polls), then coin in, which contains its wager. The end is the new epoch's."""
    m = Machine()
    reads = {"coin_out": T0, "games_played": T0, "jackpot": T0, "coin_in": T0 + 0.3}
    m.game_started(T0 + 0.1, bet=25, coin_in=25)
    m.game_ended(T0 + 0.2, win=40)
    m.meters(T0 + 0.4, reads=reads, coin_in=25)
    settle(m, T0 + 10, coin_in=25, coin_out=40, games_played=1)
    assert m.integration() == []
    assert m.totals() == Contribution(bets=25, wins=40, rounds=1)


def test_losing_game_of_the_baseline_ending_after_it_counts_its_round_once() -> None:
    m = Machine()
    m.game_started(T0, bet=10, coin_in=10)
    m.meters(T0 + 0.2, reads=dict.fromkeys(CODES, T0 + 0.1), coin_in=10)
    m.game_ended(T0 + 0.5, win=0)
    settle(m, T0 + 10, coin_in=10, games_played=1)
    assert m.integration() == []
    assert m.totals() == Contribution(bets=10, wins=0, rounds=1)


def test_agent_killed_after_the_baseline_and_the_end_arrives_to_the_restarted_agent() -> None:
    """The restart of tests/e2e/test_hall.py in miniature: the baseline and the open round are
    committed with their checkpoint; the new process restores it and gets the game's 7F."""
    first = Machine()
    first.game_started(T0, bet=25, coin_in=25)
    first.meters(T0 + 0.2, reads=dict.fromkeys(CODES, T0 + 0.1), coin_in=25)
    committed = first.norm.take_checkpoints()
    second = Machine()
    assert second.norm.restore(committed) == []
    second.game_ended(T0 + 2.0, win=40)
    settle(second, T0 + 10, coin_in=25, coin_out=40, games_played=1)
    assert second.integration() == []
    assert (first.totals() + second.totals()) == Contribution(bets=25, wins=40, rounds=1)


def test_without_read_times_the_end_of_a_baseline_game_stays_in_the_baseline() -> None:
    """No stamps (RTE off, or a checkpoint from another boot): the old rule — the game belongs to
    the baseline — so a game that did end inside the baseline read is not counted twice."""
    m = Machine()
    m.game_started(T0, bet=25, coin_in=25)
    m.game_ended(T0 + 0.05, win=40)
    m.meters(T0 + 0.2, reads={}, coin_in=25, coin_out=40, games_played=1)
    checkpoint = m.norm.take_checkpoints()[DEV]
    body = json.loads(checkpoint)
    body["ledger"]["boot"] = "another-boot"
    restored = Machine()
    restored.norm.restore({DEV: json.dumps(body).encode()})
    assert all(q.read_at is None for q in restored.norm.devices[DEV].ledger.quantities.values())
    settle(m, T0 + 10, coin_in=25, coin_out=40, games_played=1)
    assert m.integration() == []
    assert m.totals() == Contribution(bets=25, wins=40, rounds=1)
