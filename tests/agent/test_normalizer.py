"""The normalizer on hand-made fact sequences: money rules, reconciliation edge cases, gaming day."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.pipeline import EventDraft
from agent.sas import facts as F
from agent.sas.normalizer import Normalizer
from protocols.sas.exceptions import BillAcceptedData, GameEndedData, GameSelectedData, GameStartedData
from protocols.sync.events import UnsealedEvent, seal
from protocols.sync.fields import GENESIS_HASH
from protocols.sync.gamingday import DayRule
from protocols.sync.money import ZERO, Contribution, contribution

DEV = "egm-1"


class Feed:
    """Builds facts with a moving clock and collects the drafts."""

    def __init__(self, settle: float = 10.0) -> None:
        self.norm = Normalizer("EUR", settle_seconds=settle, tz=dt.UTC)
        self.t = 1_700_000_000.0
        self.drafts: list[EventDraft] = []

    def _base(self, dt_: float) -> dict:
        self.t += dt_
        return {"device": DEV, "address": 1, "mono": self.t, "wall": self.t}

    def fact(self, cls: type, dt_: float = 1.0, **kw) -> list[EventDraft]:
        out = self.norm.feed(cls(**self._base(dt_), **kw))
        self.drafts.extend(out)
        return out

    def exc(self, code: int, data=None, dt_: float = 1.0) -> list[EventDraft]:
        return self.fact(F.ExceptionFact, dt_, code=code, name=f"{code:02X}", rte=data is not None, data=data)

    def meters(self, dt_: float = 1.0, reason: str = "schedule", **values: int) -> list[EventDraft]:
        codes = {"coin_in": 0x00, "coin_out": 0x01, "jackpot": 0x02, "handpaid_cancelled_credits": 0x03,
                 "games_played": 0x05, "bills_accepted_credits": 0x0B, "current_credits": 0x0C,
                 "ticket_out_cents": 0x0E}
        base = dict.fromkeys(codes, 0) | values
        meters = tuple(F.Meter(codes[n], n, v, "count" if n == "games_played" else
                               "cents" if n == "ticket_out_cents" else "credits") for n, v in base.items())
        return self.fact(F.MetersSnapshot, dt_, reason=reason, source="6F", game=0,
                         accounting_denomination_cents=self.denom, meters=meters)

    denom = 1

    def game(self, bet: int, win: int, coin_in: int) -> None:
        self.exc(0x7E, GameStartedData(bet, coin_in, 0, 0), dt_=0.1)
        self.exc(0x7F, GameEndedData(win), dt_=0.1)

    def totals(self, drafts: list[EventDraft] | None = None) -> Contribution:
        total = ZERO
        for d in self.drafts if drafts is None else drafts:
            total = total + contribution(d.type, d.data)
        return total

    def of(self, type_: str, kind: str | None = None) -> list[EventDraft]:
        return [d for d in self.drafts if d.type == type_ and (kind is None or d.data.get("kind") == kind)]


def sealed(drafts: list[EventDraft]) -> None:
    prev = GENESIS_HASH
    for seq, d in enumerate(drafts, 1):
        ev = UnsealedEvent(seq=seq, id=str(uuid.uuid4()), hall="h1", device=d.device, type=d.type,  # type: ignore[arg-type]
                           device_time=d.device_time, agent_time=d.agent_time, data=d.data)
        prev = seal(ev, prev).hash


def test_rte_game_bill_ticket_and_accounting_denomination() -> None:
    f = Feed()
    f.denom = 5  # a 5¢ accounting denomination: credits × 5 = cents
    f.meters(reason="connect")
    f.exc(0x4F, BillAcceptedData(0, 4, 1))          # $20
    f.game(bet=10, win=30, coin_in=10)
    f.game(bet=10, win=0, coin_in=20)
    f.exc(0x3D)
    f.fact(F.TicketInfo, validation_number=12345678, amount_cents=2050)
    bet = f.of("game.bet")[0].data
    assert bet == {"amount": 50, "currency": "EUR", "game": 0, "credits": 10, "coin_in_meter": 10, "source": "rte"}
    assert f.of("game.win")[0].data["amount"] == 150 and f.of("game.loss")
    assert f.totals() == Contribution(bets=100, wins=150, rounds=2, cash_in=2000, cash_out=2050)
    assert [d.type for d in f.drafts if d.type.startswith("session")] == ["session.started", "session.ended"]
    f.meters(coin_in=20, coin_out=30, games_played=2, bills_accepted_credits=400, ticket_out_cents=2050)
    f.meters(dt_=20, coin_in=20, coin_out=30, games_played=2, bills_accepted_credits=400, ticket_out_cents=2050)
    assert not f.of("integration")
    sealed(f.drafts)


def test_legacy_bill_codes_give_dollars() -> None:
    f = Feed()
    f.exc(0x4A)   # $20, no RTE data
    assert f.of("bill.accepted")[0].data["amount"] == 2000


def test_snapshot_mid_game_makes_no_false_missed() -> None:
    f = Feed(settle=5)
    f.meters(reason="connect")
    f.exc(0x7E, GameStartedData(25, 25, 0, 0))
    f.meters(coin_in=25)                              # game in progress: 7F not yet
    f.exc(0x7F, GameEndedData(40))
    f.meters(dt_=10, coin_in=25, coin_out=40, games_played=1)
    f.meters(dt_=10, coin_in=25, coin_out=40, games_played=1)
    assert not f.of("integration")
    assert f.totals() == Contribution(bets=25, wins=40, rounds=1)


def test_meters_read_before_queued_events_arrive_makes_no_false_missed() -> None:
    """Legacy polling: the snapshot answers at once while the bill still waits in the EGM queue."""
    f = Feed(settle=5)
    f.meters(reason="connect")
    f.meters(bills_accepted_credits=1000)            # the $10 is in the meters…
    f.meters(dt_=1, bills_accepted_credits=1000)     # … still within the settle time
    f.exc(0x49)                                       # … and now reported
    f.meters(dt_=10, bills_accepted_credits=1000)
    assert not f.of("integration")
    assert f.totals().cash_in == 1000


def test_lost_events_become_one_exact_missed_record() -> None:
    f = Feed(settle=5)
    f.meters(reason="connect")
    f.game(bet=10, win=0, coin_in=10)
    f.exc(0x70)                                       # overflow: two games and a bill were dropped
    f.game(bet=5, win=10, coin_in=45)
    f.meters(coin_in=45, coin_out=20, games_played=4, bills_accepted_credits=500)
    assert not f.of("integration", "missed")         # not settled yet
    f.meters(dt_=10, coin_in=45, coin_out=20, games_played=4, bills_accepted_credits=500)
    missed = f.of("integration", "missed")
    assert len(missed) == 1
    assert {k: missed[0].data[k] for k in ("bets", "wins", "rounds", "cash_in")} == {
        "bets": 30, "wins": 10, "rounds": 2, "cash_in": 500}
    assert "buffer_overflow" in missed[0].data["reason"]
    assert f.totals() == Contribution(bets=45, wins=20, rounds=4, cash_in=500)
    f.meters(dt_=10, coin_in=45, coin_out=20, games_played=4, bills_accepted_credits=500)
    assert len(f.of("integration", "missed")) == 1   # declared once
    sealed(f.drafts)


def test_events_exceeding_meters_are_flagged_without_money() -> None:
    f = Feed(settle=5)
    f.meters(reason="connect")
    f.meters(dt_=10)                                  # out of the baseline grace
    f.exc(0x4F, BillAcceptedData(0, 3, 1))            # $10 …
    f.meters(dt_=1)                                   # … that the meters never saw
    assert not f.of("integration", "anomaly")         # (it may have come while this one was read)
    f.meters(dt_=1)                                   # read after the bill was fed: certain now
    anomalies = f.of("integration", "anomaly")
    assert len(anomalies) == 1 and anomalies[0].data["excess"] == {"cash_in_bills": 1000}
    assert contribution("integration", anomalies[0].data) == ZERO
    f.meters(dt_=10)
    assert len(f.of("integration", "anomaly")) == 1   # flagged once
    assert not f.of("integration", "missed")


def test_rollover_is_a_small_positive_delta() -> None:
    f = Feed(settle=1)
    top = 10**8 - 5                                   # 4-byte BCD meter: 99 999 999 max
    f.meters(reason="connect", coin_in=top, games_played=7)
    f.game(bet=10, win=0, coin_in=5)
    f.meters(coin_in=5, games_played=8)
    f.meters(dt_=5, coin_in=5, games_played=8)
    assert not f.of("integration")
    assert f.totals().bets == 10


def test_ram_clear_starts_a_new_epoch_without_negative_or_huge_amounts() -> None:
    f = Feed(settle=1)
    f.meters(reason="connect", coin_in=5000, coin_out=4000, games_played=100, bills_accepted_credits=9000)
    f.exc(0x3A)
    f.meters(reason="event:3A")                       # all zero now
    f.game(bet=10, win=0, coin_in=10)
    f.meters(dt_=5, coin_in=10, games_played=1)
    f.meters(dt_=5, coin_in=10, games_played=1)
    assert [d.data["kind"] for d in f.of("service")] == ["ram_clear"]
    assert f.of("integration", "meters_reset")
    assert not f.of("integration", "missed") and not f.of("integration", "anomaly")
    assert f.totals() == Contribution(bets=10, rounds=1)
    sealed(f.drafts)


def test_unexplained_meter_drop_is_a_reset_not_a_negative_amount() -> None:
    f = Feed(settle=1)
    f.meters(reason="connect", coin_in=500_000)
    f.meters(coin_in=100)
    assert f.of("integration", "meters_reset")
    f.meters(dt_=5, coin_in=150)
    f.meters(dt_=5, coin_in=150)
    assert [d.data["bets"] for d in f.of("integration", "missed")] == [50]


def test_hand_paid_jackpot_counts_once_at_the_reset() -> None:
    f = Feed(settle=1)
    f.meters(reason="connect")
    f.exc(0x51)                                       # priority: before the game's 7E/7F
    f.game(bet=100, win=150_000, coin_in=100)
    assert not f.of("game.win")                       # held: jackpot or machine-paid?
    f.fact(F.HandpayInfo, progressive_group=0, level=0, amount_cents=150_000, partial_pay_cents=0, reset_id=0)
    f.meters(coin_in=100, games_played=1)             # jackpot meter moves only at the reset
    assert not f.of("game.win")
    f.exc(0x52)
    wins = f.of("game.win")
    assert [(w.data["amount"], w.data["paid_by"]) for w in wins] == [(150_000, "handpay")]
    assert f.of("handpay")[0].data["kind"] == "jackpot"
    f.meters(dt_=5, coin_in=100, games_played=1, jackpot=150_000)
    f.meters(dt_=5, coin_in=100, games_played=1, jackpot=150_000)
    assert not f.of("integration")
    assert f.totals() == Contribution(bets=100, wins=150_000, rounds=1)
    sealed(f.drafts)


def test_win_before_a_cash_out_handpay_is_machine_paid() -> None:
    f = Feed(settle=1)
    f.meters(reason="connect")
    f.exc(0x4F, BillAcceptedData(0, 7, 1))            # $100
    f.exc(0x51)                                       # cash-out handpay, reported before the game
    f.game(bet=10, win=20, coin_in=10)
    f.fact(F.HandpayInfo, progressive_group=0, level=0x80, amount_cents=10_010, partial_pay_cents=0, reset_id=0)
    assert [w.data["paid_by"] for w in f.of("game.win")] == ["machine"]
    f.exc(0x52)
    assert f.of("handpay")[0].data == {"amount": 10_010, "currency": "EUR", "kind": "cancelled_credits",
                                       "level": 0x80, "progressive_group": 0, "partial_pay_cents": 0}
    assert f.totals() == Contribution(bets=10, wins=20, rounds=1, cash_in=10_000, cash_out=10_010)
    f.meters(dt_=5, coin_in=10, coin_out=20, games_played=1, bills_accepted_credits=10_000,
             handpaid_cancelled_credits=10_010)
    f.meters(dt_=5, coin_in=10, coin_out=20, games_played=1, bills_accepted_credits=10_000,
             handpaid_cancelled_credits=10_010)
    assert not f.of("integration")


def test_legacy_games_take_bets_and_wins_from_meters() -> None:
    f = Feed(settle=1)
    f.meters(reason="connect")
    for _ in range(3):
        f.exc(0x7E)
        f.exc(0x7F)
    f.meters(coin_in=30, coin_out=12, games_played=3)
    bet, win = f.of("game.bet"), f.of("game.win")
    assert [(d.data["amount"], d.data["source"]) for d in bet] == [(30, "meters")]
    assert [(d.data["amount"], d.data["source"]) for d in win] == [(12, "meters")]
    assert f.totals() == Contribution(bets=30, wins=12, rounds=3)


def test_every_exception_code_makes_valid_data() -> None:
    f = Feed()
    f.meters(reason="connect")
    for code in range(0x01, 0xA3):
        if code not in (0x7E, 0x7F, 0x4F):
            f.exc(code)
    f.fact(F.LinkDown, missed=3, last_seen_wall=None)
    f.fact(F.LinkUp, reason="recovered")
    f.fact(F.ClockRead, egm_time=None, agent_time=dt.datetime(2025, 1, 1), drift_seconds=1.25, set=True)
    f.fact(F.CommandResult, action="disable_machine", game=None, acked=True)
    types = {d.type for d in f.drafts}
    assert {"device.door", "service", "game.error", "device.status", "integration"} <= types
    sealed(f.drafts)


def test_gaming_day_close_requests_and_tags_a_snapshot() -> None:
    f = Feed()
    f.meters(reason="connect")
    day = dt.datetime(2025, 3, 1, 5, 59, tzinfo=dt.UTC).timestamp()
    assert f.norm.tick(day) == []
    requests = f.norm.tick(day + 120)                  # 06:01: the gaming day of 28 Feb closed
    assert [(r.device, r.reason, r.gaming_day) for r in requests] == [(DEV, "gaming_day_close", "2025-02-28")]
    assert f.norm.tick(day + 240) == []
    snap = f.meters(reason="request")[0]
    assert snap.data["reason"] == "gaming_day_close" and snap.data["gaming_day"] == "2025-02-28"
    assert f.meters()[0].data["reason"] == "schedule"


def test_the_day_from_hqs_standing_data_closes_where_centrals_reports_end_it() -> None:
    """With a day rule from HQ (Kyiv, 06:00 local) the close falls at 04:00 UTC in winter, whatever the
    host's own time zone and the --gaming-day-start it was started with."""
    f = Feed()
    f.norm.day_rule = DayRule("Europe/Kyiv", "06:00")
    f.meters(reason="connect")
    before = dt.datetime(2026, 12, 2, 3, 59, tzinfo=dt.UTC).timestamp()   # 05:59 in Kyiv
    assert f.norm.gaming_day(before) == dt.date(2026, 12, 1)
    assert f.norm.tick(before) == []              # the first tick learns the day
    assert f.norm.tick(before + 30) == []         # 05:59:30: still 1 December's gaming day
    requests = f.norm.tick(before + 61)           # 06:00:01 in Kyiv
    assert [(r.device, r.reason, r.gaming_day) for r in requests] == [(DEV, "gaming_day_close", "2026-12-01")]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 500), st.integers(0, 2000), st.booleans()), min_size=1, max_size=30))
def test_property_lost_games_are_always_made_exact(games: list[tuple[int, int, bool]]) -> None:
    """Whatever subset of games loses its exceptions, events + missed equal the meters exactly."""
    f = Feed(settle=1)
    f.meters(reason="connect")
    coin_in = coin_out = 0
    for bet, win, lost in games:
        coin_in += bet
        coin_out += win
        if not lost:
            f.game(bet=bet, win=win, coin_in=coin_in)
    for _ in range(2):
        f.meters(dt_=5, coin_in=coin_in, coin_out=coin_out, games_played=len(games))
    assert f.totals() == Contribution(bets=coin_in, wins=coin_out, rounds=len(games))
    assert not f.of("integration", "anomaly")


def test_currency_is_checked() -> None:
    with pytest.raises(ValueError):
        Normalizer("eur")


def test_game_confirmed_during_a_meter_read_is_counted_once() -> None:
    """The interleaving of the sim's double count: a 6F read takes several long polls and RTE events
    answer them in between, so a game's 7E/7F can be fed *before* a snapshot whose coin-in was read
    *before* that game. It is not an excess (nor, later, a missed): the next snapshot has it."""
    f = Feed(settle=5)
    f.meters(reason="connect")
    f.meters(dt_=10)                                  # out of the baseline's grace
    f.game(bet=5, win=0, coin_in=5)
    f.meters(coin_in=5, games_played=1)
    f.game(bet=30, win=0, coin_in=35)                 # confirmed while the next read was under way…
    f.meters(dt_=0.01, coin_in=5, games_played=1)     # … whose coin in was read before the game
    for _ in range(3):
        f.meters(dt_=10, coin_in=35, games_played=2)
    assert not f.of("integration", "anomaly") and not f.of("integration", "missed")
    assert f.totals() == Contribution(bets=35, rounds=2)
    sealed(f.drafts)


def test_jackpot_reset_confirmed_during_a_meter_read_is_counted_once() -> None:
    """Same interleaving with a hand-paid jackpot: 52 (and its game.win) is fed before a snapshot
    whose jackpot meter was read before the attendant's reset — inside the baseline's grace,
    where the excess used to be written off as "before the baseline" and then declared missed."""
    f = Feed(settle=5)
    f.meters(reason="connect")
    f.exc(0x51)
    f.game(bet=100, win=6000, coin_in=100)
    f.fact(F.HandpayInfo, progressive_group=0, level=0, amount_cents=6000, partial_pay_cents=0, reset_id=0)
    f.exc(0x52)
    f.meters(dt_=0.01, coin_in=100, games_played=1)            # jackpot meter read before the reset
    for _ in range(3):
        f.meters(dt_=10, coin_in=100, games_played=1, jackpot=6000)
    assert not f.of("integration", "anomaly") and not f.of("integration", "missed")
    assert f.totals() == Contribution(bets=100, wins=6000, rounds=1)


def test_late_game_after_its_missed_record_is_absorbed_not_counted_again() -> None:
    """A game still queued in the EGM when its window settled: `missed` stands for it, and when its
    7E/7F finally come, their coin-in meter says so — they are logged as `late`, without money."""
    f = Feed(settle=5)
    f.meters(reason="connect")
    f.game(bet=10, win=0, coin_in=10)
    f.meters(dt_=10, coin_in=40, coin_out=60, games_played=2)   # game 2 (bet 30, win 60) still queued
    f.meters(dt_=10, coin_in=40, coin_out=60, games_played=2)   # settles the first: declared missed
    missed = f.of("integration", "missed")
    assert [{k: m.data.get(k) for k in ("bets", "wins", "rounds")} for m in missed] == [
        {"bets": 30, "wins": 60, "rounds": 1}]
    f.game(bet=30, win=60, coin_in=40)                           # … and now it arrives
    late = f.of("integration", "late")
    assert [(d.data["event"], d.data["quantity"]) for d in late] == [
        ("game.bet", "bets"), ("game.win", "wins_machine"), ("game.ended", "rounds")]
    assert late[0].data["data"]["amount"] == 30 and all(contribution(d.type, d.data) == ZERO for d in late)
    assert f.totals() == Contribution(bets=40, wins=60, rounds=2)
    f.game(bet=5, win=0, coin_in=45)                             # new play counts as usual
    for _ in range(2):
        f.meters(dt_=10, coin_in=45, coin_out=60, games_played=3)
    assert not f.of("integration", "anomaly") and len(f.of("integration", "missed")) == 1
    assert f.totals() == Contribution(bets=45, wins=60, rounds=3)
    sealed(f.drafts)


def test_games_placed_after_the_settled_snapshot_do_not_hide_a_loss() -> None:
    """`missed` for a settled window leaves out games its coin in does not reach: the loss is declared
    whole (not netted against later play), so a straggler of that window finds it covered."""
    f = Feed(settle=5)
    f.meters(reason="connect")
    f.meters(dt_=10, coin_in=50, games_played=2)     # two games of 25: one lost, one still queued
    f.game(bet=20, win=0, coin_in=70)                # later play, confirmed before the settle…
    f.meters(dt_=10, coin_in=70, games_played=3)     # … which judges only coin in up to 50
    assert [m.data["bets"] for m in f.of("integration", "missed")] == [50]
    f.game(bet=25, win=0, coin_in=50)                # the straggler: covered, absorbed
    assert [d.data["event"] for d in f.of("integration", "late")] == ["game.bet", "game.ended"]
    for _ in range(2):
        f.meters(dt_=10, coin_in=70, games_played=3)
    assert not f.of("integration", "anomaly") and len(f.of("integration", "missed")) == 1
    assert f.totals() == Contribution(bets=70, rounds=3)


def test_queue_held_during_a_link_outage_settles_after_the_link_is_back() -> None:
    """Nobody polls a disconnected EGM, so its queue cannot drain: the settle time counts from the
    link-up, and the events queued before the outage arrive before any `missed` is declared."""
    f = Feed(settle=5)
    f.fact(F.LinkUp, reason="connect")
    f.meters(reason="connect")
    f.exc(0x4F, BillAcceptedData(0, 3, 1))
    f.meters(dt_=10, coin_in=30, games_played=1, bills_accepted_credits=1000)   # the game is queued
    f.fact(F.LinkDown, dt_=0.1, missed=3, last_seen_wall=None)
    f.fact(F.LinkUp, dt_=60, reason="recovered")
    f.meters(dt_=0.1, reason="connect", coin_in=30, games_played=1, bills_accepted_credits=1000)
    assert not f.of("integration", "missed")
    f.game(bet=30, win=0, coin_in=30)
    for _ in range(2):
        f.meters(dt_=10, coin_in=30, games_played=1, bills_accepted_credits=1000)
    assert not f.of("integration", "missed") and not f.of("integration", "anomaly")
    assert f.totals() == Contribution(bets=30, rounds=1, cash_in=1000)


def test_game_fed_before_the_baseline_but_played_after_its_read_counts() -> None:
    """The baseline is read over several polls too: a game confirmed meanwhile whose coin in is
    beyond the baseline's belongs to the new epoch (else the next windows would call it missed)."""
    f = Feed(settle=5)
    f.game(bet=5, win=0, coin_in=105)                # queued from before: in the baseline
    f.game(bet=30, win=0, coin_in=135)               # played while the baseline was being read
    f.meters(dt_=0.01, reason="connect", coin_in=105, games_played=7)
    for _ in range(3):
        f.meters(dt_=10, coin_in=135, games_played=8)
    assert not f.of("integration", "missed") and not f.of("integration", "anomaly")


def test_game_queued_before_the_baseline_is_not_this_epochs() -> None:
    """Right after connecting, queued games of the baseline arrive; their coin in says so."""
    f = Feed(settle=5)
    f.meters(reason="connect", coin_in=100, coin_out=40, games_played=4)
    f.game(bet=20, win=40, coin_in=100)              # already in the baseline's meters
    f.game(bet=5, win=0, coin_in=105)                # new play
    for _ in range(3):
        f.meters(dt_=10, coin_in=105, coin_out=40, games_played=5)
    assert not f.of("integration", "missed") and not f.of("integration", "anomaly")
    assert f.norm.devices[DEV].ledger.quantities["bets"].reported == 5


def test_event_of_the_baseline_is_excused_only_during_the_grace() -> None:
    """Right after connecting, a queued bill already in the baseline is no anomaly; the allowance
    ends once the grace has been judged, so a later double report is flagged."""
    f = Feed(settle=5)
    f.meters(reason="connect", bills_accepted_credits=1000)
    f.exc(0x4F, BillAcceptedData(0, 3, 1))            # the baseline's $10, confirmed after it
    for _ in range(3):
        f.meters(dt_=10, bills_accepted_credits=1000)
    assert not f.of("integration")
    f.exc(0x4F, BillAcceptedData(0, 3, 2))            # a $10 the meters never saw
    for _ in range(2):
        f.meters(dt_=10, bills_accepted_credits=1000)
    assert [d.data["excess"] for d in f.of("integration", "anomaly")] == [{"cash_in_bills": 1000}]


def test_selected_game_from_lp55_numbers_the_games_before_any_8c() -> None:
    """A machine connected mid-session: 8C reports only changes, so the wagers before the first
    change take their game number from LP 55 read with the identity."""
    f = Feed()
    f.meters(reason="connect")
    f.fact(F.Identity, game_id="HS", additional_id="000", paytable_id="P00196", base_percent="9600",
           accounting_denomination_cents=1, max_bet=100, sas_version="602", serial="S1", game_count=3,
           enabled_games=(1, 2, 3), games=(), fast_polling=False, rte=True, selected_game=2)
    f.game(bet=10, win=0, coin_in=10)
    assert [d.data["game"] for d in f.drafts if d.type in ("game.bet", "game.ended", "game.loss")] == [2, 2, 2]
    assert [d.data for d in f.of("device.status") if d.data.get("status") == "game_selected"] == [
        {"status": "game_selected", "game": 2, "source": "LP 55"}]
    f.exc(0x8C, GameSelectedData(3))
    f.game(bet=10, win=0, coin_in=20)
    assert f.of("game.bet")[-1].data["game"] == 3
