"""The terminal model and its customers, without any Modbus: counters against truth, control, rollover."""

from __future__ import annotations

import pytest

from firmware_sim.customers import Customer
from firmware_sim.terminal import COUNTER_MODULUS, COUNTERS, Terminal, TerminalRefused
from protocols.modbus import HALLSYNC_TERMINAL_V1, counter_delta, decode

pytestmark = pytest.mark.timeout(10)


def run_customers(term: Terminal, max_steps: int = 100_000) -> Customer:
    customer = Customer(term)
    for _ in range(max_steps):
        if customer.act() is None:
            return customer
    raise AssertionError("the customers never finished")


def assert_counters_match_truth(term: Terminal) -> None:
    truth = term.truth
    assert term.counted("bets") == truth.bets
    assert term.counted("wins") == truth.wins
    assert term.counted("rounds") == truth.rounds
    assert term.counted("cash_in") + term.counted("tickets_in") == truth.cash_in
    assert term.counted("cash_out") + term.counted("tickets_out") == truth.cash_out
    assert term.credits == truth.cash_in - truth.bets + truth.wins - truth.cash_out


def test_customers_play_their_rounds_and_the_counters_account_for_every_cent() -> None:
    term = Terminal(3, seed=7, pace=1.0, rounds=400)
    run_customers(term)
    assert term.truth.rounds == 400
    assert term.credits == 0 and term.pending is None
    assert_counters_match_truth(term)
    # every kind of money movement happened: notes, tickets in, cash out, tickets out
    assert all(term.counters[name] > 0 for name in COUNTERS), term.counters
    snap = term.snapshot()
    assert snap["kind"] == "terminal" and snap["meters"] == term.counters
    assert {k: snap[k] for k in ("bets", "wins", "rounds", "cash_in", "cash_out")} == term.truth.as_dict()


def test_the_same_seed_gives_the_same_truth() -> None:
    def play(seed: int) -> dict[str, object]:
        term = Terminal(1, seed=seed, pace=1.0, rounds=150)
        run_customers(term)
        return term.snapshot()

    assert play(5) == play(5)
    assert play(5) != play(6)


def test_bets_are_settled_at_the_configured_rtp() -> None:
    term = Terminal(rtp=0.9, min_bet=10, max_bet=10)
    assert term._paytable.expected_return() == pytest.approx(0.9)
    for _ in range(40_000):
        if term.credits < 10:
            term.insert_cash(10_000)
        term.bet(10)
    assert 0.6 < term.truth.wins / term.truth.bets < 1.2
    assert_counters_match_truth(term)


def test_control_disable_stops_new_bets_but_not_settlement_or_cash_out() -> None:
    term = Terminal()
    assert term.insert_cash(1000)
    term.place_bet(100, win=300)
    term.write_control(1)
    assert not term.enabled and term.control == 1
    assert not decode(HALLSYNC_TERMINAL_V1, term.registers()).flags["enabled"]
    assert term.settle().win == 300                    # a bet accepted is a bet settled
    with pytest.raises(TerminalRefused):
        term.place_bet(100)
    assert not term.insert_cash(500) and not term.redeem_ticket(500)
    assert term.cash_out(ticket=True) == 1200           # the customer still gets the money
    term.write_control(2)
    assert term.enabled and term.control == 2
    assert term.insert_cash(500)
    term.bet(100, win=0)
    with pytest.raises(ValueError):
        term.write_control(3)
    assert_counters_match_truth(term)


def test_customers_do_not_bet_while_the_host_disables_the_terminal() -> None:
    term = Terminal(seed=2, pace=1.0, rounds=50)
    customer = Customer(term)
    for _ in range(20):
        customer.act()
    term.write_control(1)
    rounds_before, bets_before = term.truth.rounds, term.truth.bets
    for _ in range(200):
        assert customer.act() is not None
    assert term.truth.bets == bets_before
    assert term.truth.rounds <= rounds_before + 1       # at most the bet already placed
    term.write_control(2)
    run_customers_from(customer)
    assert term.truth.rounds == 50
    assert_counters_match_truth(term)


def run_customers_from(customer: Customer) -> None:
    for _ in range(100_000):
        if customer.act() is None:
            return
    raise AssertionError("the customers never finished")


def test_door_and_error_take_the_terminal_out_of_service() -> None:
    term = Terminal()
    term.insert_cash(1000)
    term.open_door()
    flags = decode(HALLSYNC_TERMINAL_V1, term.registers()).flags
    assert flags["door_open"] and not flags["in_service"] and flags["enabled"]
    with pytest.raises(TerminalRefused):
        term.place_bet(10)
    term.close_door()
    term.set_error(0x0201)
    reading = decode(HALLSYNC_TERMINAL_V1, term.registers())
    assert reading.flags["error"] and not reading.flags["in_service"] and reading["error_code"] == 0x0201
    assert term.cash_out() == 0                          # no pay-out during a fault
    term.clear_error()
    term.paper_low = True
    reading = decode(HALLSYNC_TERMINAL_V1, term.registers())
    assert reading.flags["in_service"] and reading.flags["paper_low"] and reading["error_code"] == 0
    term.close_door()                                    # the attendant refills the paper
    assert not decode(HALLSYNC_TERMINAL_V1, term.registers()).flags["paper_low"]


def test_preset_counters_roll_over_at_2_32() -> None:
    top = COUNTER_MODULUS
    term = Terminal(preset={"cash_in": top - 300, "bets": top - 50, "rounds": top - 1})
    before = decode(HALLSYNC_TERMINAL_V1, term.registers())
    assert before["cash_in"] == top - 300 and before["wins"] == 0
    term.insert_cash(1000)
    term.bet(100, win=0)
    after = decode(HALLSYNC_TERMINAL_V1, term.registers())
    assert after["cash_in"] == 700 and after["bets"] == 50 and after["rounds"] == 0
    delta = counter_delta(before["cash_in"], after["cash_in"])
    assert delta.wrapped and delta.amount == 1000
    assert counter_delta(before["rounds"], after["rounds"]).amount == 1
    assert_counters_match_truth(term)
    assert Terminal(preset=top - 10).counters == dict.fromkeys(COUNTERS, top - 10)
    with pytest.raises(ValueError):
        Terminal(preset={"coins": 1})


def test_registers_follow_the_map_and_the_heartbeat_counts_seconds() -> None:
    now = [1000.0]
    term = Terminal(firmware=(2, 7), clock=lambda: now[0])
    reading = decode(HALLSYNC_TERMINAL_V1, term.registers())
    assert reading["firmware"] == 0x0207 and reading["map_version"] == 1 and reading["heartbeat"] == 0
    assert reading.values == term.values()
    now[0] += 2.5
    assert term.heartbeat == 2
    now[0] += 65536
    assert term.heartbeat == 2                           # wraps at 65535
    term.freeze()
    now[0] += 10
    assert term.heartbeat == 2
    term.unfreeze()
    now[0] += 1
    assert term.heartbeat == 3
