"""The shared GGR rule: which events count as bets, wins, rounds and cash."""

from __future__ import annotations

import pytest

from protocols.sync.money import Contribution, contribution


def test_game_events_count_once() -> None:
    total = (contribution("game.bet", {"amount": 500, "currency": "EUR"})
             + contribution("game.win", {"amount": 1200, "currency": "EUR", "paid_by": "handpay"})
             + contribution("game.ended", {"game": 1, "bet": 500, "win": 1200})
             + contribution("handpay", {"amount": 1200, "currency": "EUR", "kind": "jackpot"})
             + contribution("jackpot", {"amount": 1200, "currency": "EUR"}))
    assert total == Contribution(bets=500, wins=1200, rounds=1)
    assert total.ggr == -700


def test_cash_movements() -> None:
    total = (contribution("bill.accepted", {"amount": 2000, "currency": "EUR"})
             + contribution("ticket.printed", {"amount": 150, "currency": "EUR"})
             + contribution("handpay", {"amount": 9000, "currency": "EUR", "kind": "cancelled_credits"})
             + contribution("transfer", {"amount": 70, "currency": "EUR", "direction": "in"}))
    assert total == Contribution(cash_in=2070, cash_out=9150)


def test_missed_record_counts_what_it_stands_for() -> None:
    missed = contribution("integration", {"kind": "missed", "bets": 40, "wins": 10, "rounds": 2})
    assert missed == Contribution(bets=40, wins=10, rounds=2)
    assert contribution("integration", {"kind": "connection"}) == Contribution()


@pytest.mark.parametrize("data", [{"amount": -1}, {"amount": 1.5}, {"amount": "5"}, {"amount": True}])
def test_bad_amounts_are_refused(data: dict) -> None:
    with pytest.raises(ValueError):
        contribution("game.bet", data)
    with pytest.raises(ValueError):
        contribution("transfer", {"amount": 5})


def test_game_ended_may_report_several_rounds() -> None:
    from protocols.sync.money import contribution

    assert contribution("game.ended", {"game": "g"}).rounds == 1
    assert contribution("game.ended", {"rounds": 3}).rounds == 3
    for bad in (0, -1, "2", True):
        with pytest.raises(ValueError):
            contribution("game.ended", {"rounds": bad})
