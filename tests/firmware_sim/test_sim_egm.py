"""The EGM model without any wire: meters, truth, queue, handpays, power."""

from __future__ import annotations

import pytest

from firmware_sim import meters as m
from firmware_sim.egm import Egm, GameConfig, PlayRefused
from firmware_sim.fifo import ExceptionQueue
from firmware_sim.games import Paytable, parse_games
from firmware_sim.players import Player

GAMES = [GameConfig(1, denomination=1, max_bet=100, rtp=0.96), GameConfig(2, denomination=5, max_bet=20, rtp=0.94)]


def assert_truth_matches_meters(egm: Egm) -> None:
    t = egm.truth
    assert t.bets == egm.meter(m.COIN_IN)
    assert t.wins == egm.meter(m.COIN_OUT) + egm.meter(m.JACKPOT)
    assert t.rounds == egm.meter(m.GAMES_PLAYED)
    assert t.cash_in == egm.meter(m.BILLS) + egm.meter(m.TICKET_IN_CENTS)
    assert t.cash_out == egm.meter(m.CANCELLED)
    assert egm.meter(m.CANCELLED) == egm.meter(m.TICKET_OUT_CENTS) + egm.meter(m.HANDPAID_CANCELLED)
    assert egm.credits == t.cash_in - t.bets + egm.meter(m.COIN_OUT) - t.cash_out
    assert egm.meter(m.GAMES_PLAYED) == egm.meter(m.GAMES_WON) + egm.meter(m.GAMES_LOST)


def test_scripted_play_gives_exact_meters() -> None:
    egm = Egm(1, GAMES, pace=0)
    assert egm.insert_bill(20) and egm.insert_bill(5)
    egm.play_game(10, game=1, win=0)          # 10¢ lost
    egm.play_game(4, game=2, win=12)          # 20¢ bet on the 5¢ game, 60¢ won
    egm.play_game(20, game=2, win=0)          # 100¢ lost
    assert egm.credits == 2500 - 10 - 20 + 60 - 100
    assert egm.cash_out() == 2430
    assert egm.meter(m.COIN_IN) == 130
    assert egm.meter(m.COIN_OUT) == 60
    assert egm.meter(m.GAMES_PLAYED) == 3 and egm.meter(m.GAMES_WON) == 1 and egm.meter(m.GAMES_LOST) == 2
    assert egm.meter(m.BILLS) == 2500 and egm.meter(m.DROP) == 2500
    assert egm.meter(m.TICKET_OUT_CENTS) == egm.meter(m.TICKET_OUT) == egm.meter(m.CANCELLED) == 2430
    assert egm.meter(m.CURRENT_CREDITS) == 0
    assert egm.meter(m.COIN_IN, game=2) == 120 and egm.meter(m.COIN_OUT, game=2) == 60
    assert egm.meter(m.GAMES_PLAYED, game=1) == 1
    assert egm.bill_counts[20] == 1 and egm.bill_counts[5] == 1
    assert egm.tickets[-1].amount == 2430
    assert_truth_matches_meters(egm)


def test_bets_beyond_credits_or_max_bet_are_refused() -> None:
    egm = Egm(1, GAMES, pace=0)
    egm.insert_bill(1)
    with pytest.raises(PlayRefused):
        egm.play_game(21, game=2)              # above max bet
    with pytest.raises(PlayRefused):
        egm.play_game(101, game=1)
    egm.play_game(20, game=2, win=0)           # exactly the 100¢ there are
    with pytest.raises(PlayRefused):
        egm.play_game(1, game=1)
    assert egm.truth.bets == 100


def test_win_at_the_handpay_limit_locks_until_the_attendant_resets() -> None:
    egm = Egm(1, GAMES, pace=0, handpay_limit=5000)
    egm.insert_bill(10)
    egm.play_game(10, game=2, win=1000)        # 1000 credits × 5¢ = 5000¢: a handpay
    assert egm.handpay is not None and egm.handpay.amount == 5000
    assert egm.pending_exceptions()[0] == 0x51
    assert not egm.can_start_game() and not egm.insert_bill(5)
    assert egm.meter(m.COIN_OUT) == 0 and egm.meter(m.JACKPOT) == 0 and egm.truth.wins == 0
    assert egm.reset_handpay() is not None
    assert egm.meter(m.JACKPOT) == 5000 and egm.meter(m.JACKPOT, game=2) == 5000
    assert egm.truth.wins == 5000 and egm.credits == 950
    assert 0x52 in egm.pending_exceptions()
    assert_truth_matches_meters(egm)


def test_cash_out_above_the_ticket_limit_is_a_handpay_of_cancelled_credits() -> None:
    egm = Egm(1, GAMES, pace=0, ticket_limit=1000)
    egm.insert_bill(20)
    assert egm.cash_out() == 2000
    assert egm.credits == 2000 and egm.handpay is not None
    egm.reset_handpay()
    assert egm.credits == 0
    assert egm.meter(m.HANDPAID_CANCELLED) == 2000 and egm.meter(m.CANCELLED) == 2000
    assert egm.meter(m.TICKET_OUT_CENTS) == 0
    assert_truth_matches_meters(egm)


def test_fifo_overflow_drops_the_oldest_and_raises_70_first() -> None:
    queue = ExceptionQueue(20)
    for i in range(25):
        queue.push(0x11 if i % 2 == 0 else 0x12)
    pending = queue.pending()
    assert pending[0] == 0x70
    assert len(pending) == 21 and queue.dropped == 5
    # the first five pushes (11 12 11 12 11) are gone: the oldest left is push #5, a 12
    assert pending[1] == 0x12


def test_priority_exceptions_skip_the_queue_in_monaco_order() -> None:
    egm = Egm(1, GAMES, pace=0, handpay_limit=100)
    egm.open_door("slot")
    egm.close_door("slot")
    egm.insert_bill(5)
    egm.cash_out()                              # 3D: priority
    egm.insert_bill(5)
    egm.play_game(1, game=1, win=100)           # 51: priority, after 3D in Monaco's order
    pending = egm.pending_exceptions()
    assert pending[:2] == [0x3D, 0x51]
    assert pending[2:5] == [0x11, 0x12, 0x4F]


def test_shutdown_during_a_game_waits_for_its_end() -> None:
    egm = Egm(1, GAMES, pace=0)
    egm.insert_bill(1)
    egm.start_game(5, game=1, win=0)
    egm.host_disable()
    assert egm.enabled and egm.disable_pending and not egm.can_start_game()
    egm.end_game()
    assert not egm.enabled and not egm.disable_pending
    with pytest.raises(PlayRefused):
        egm.play_game(1)
    egm.host_enable()
    egm.play_game(1, win=0)
    assert egm.truth.rounds == 2


def test_power_cycle_keeps_meters_and_resolves_the_game_in_progress() -> None:
    egm = Egm(1, GAMES, pace=0)
    egm.insert_bill(1)
    egm.set_rte(True)
    egm.start_game(10, game=1, win=30)
    egm.power_cycle()
    assert egm.current_round is None and egm.credits == 120 and egm.meter(m.COIN_OUT) == 30
    assert egm.pending_exceptions()[-2:] == [0x18, 0x17]
    assert not egm.rte
    assert egm.meter(m.GAMES_SINCE_POWER) == 0 and egm.meter(m.GAMES_PLAYED) == 1
    assert egm.power_resets == 1
    assert_truth_matches_meters(egm)


def test_ram_clear_wipes_meters_and_queue_then_reports_3a() -> None:
    egm = Egm(1, GAMES, pace=0)
    egm.insert_bill(5)
    egm.play_game(3, game=1, win=0)
    egm.ram_clear()
    assert egm.meter(m.COIN_IN) == 0 and egm.credits == 0 and egm.meter(m.BILLS) == 0
    assert egm.pending_exceptions() == [0x3A]


def test_doors_count_openings_and_reset_games_since_door_closure() -> None:
    egm = Egm(1, GAMES, pace=0)
    egm.insert_bill(1)
    egm.play_game(1, game=1, win=0)
    egm.open_door("slot")
    assert not egm.can_start_game()
    egm.close_door("slot")
    egm.open_door("belly")
    egm.close_door("belly")
    assert egm.slot_door_opened == 1
    assert egm.meter(m.GAMES_SINCE_DOOR) == 0 and egm.meter(m.GAMES_SINCE_POWER) == 1
    assert egm.pending_exceptions()[-4:] == [0x11, 0x12, 0x1D, 0x1E]
    with pytest.raises(ValueError):
        egm.open_door("roof")


def test_meters_roll_over_at_their_bcd_width() -> None:
    bank = m.MeterBank()
    bank.add(m.COIN_IN, 99_999_990)
    bank.add(m.COIN_IN, 15)
    assert bank[m.COIN_IN] == 5
    bank.add(m.TICKET_OUT_CENTS, 99_999_999)
    bank.add(m.TICKET_OUT_CENTS, 2)
    assert bank[m.TICKET_OUT_CENTS] == 100_000_001     # 5 BCD bytes: 10 digits


def test_paytable_expectation_is_the_configured_rtp() -> None:
    for rtp in (0.85, 0.92, 0.96, 0.985):
        table = Paytable(rtp)
        assert table.expected_return() == pytest.approx(rtp, rel=1e-12)
        assert sum(p for _, p in table.tiers) < 1


def test_game_configs_are_validated_and_parsed() -> None:
    assert parse_games("1:1:100:96,7:5:20:94.5")[1] == GameConfig(7, denomination=5, max_bet=20, rtp=0.945)
    with pytest.raises(ValueError):
        GameConfig(1, denomination=7)           # SAS has no 7¢ denomination
    with pytest.raises(ValueError):
        GameConfig(1, denomination=100, max_bet=200)   # a 200$ wager does not fit RTE's 4 digits
    with pytest.raises(ValueError):
        parse_games("1:1:100:96,1:5:20:94")


def _run_players(seed: int, rounds: int) -> Egm:
    egm = Egm(3, seed=seed, pace=1.0, rounds=rounds, handpay_limit=2000)
    player = Player(egm)
    for _ in range(100_000):
        if player.act() is None:
            break
    assert player.finished
    return egm


def test_players_are_reproducible_and_the_truth_matches_the_meters() -> None:
    first, again, other = _run_players(11, 300), _run_players(11, 300), _run_players(12, 300)
    assert first.truth == again.truth and first.meters_by_name() == again.meters_by_name()
    assert first.truth != other.truth
    for egm in (first, other):
        assert egm.truth.rounds == 300
        assert egm.credits == 0                  # the last player cashed out
        assert egm.truth.cash_out > 0 and egm.truth.cash_in > 0
        assert_truth_matches_meters(egm)
