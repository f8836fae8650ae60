"""Simulated customers (and the attendant) at one terminal, as a step function like ``players.py``.

:meth:`Customer.act` performs the next action and says how long to wait before the one after. Every
choice comes from one seeded ``random.Random``, so the same seed gives the same actions (and the
same truth) whatever the timing — as long as the host does not disable the terminal meanwhile.
"""

from __future__ import annotations

import random

from .terminal import ERROR_CODES, Terminal

_NOTES = (500, 1000, 2000, 5000, 10000)
_NOTE_WEIGHTS = (20, 30, 25, 15, 10)
_TICKETS = (250, 500, 1000, 2500, 5000)
_REDEEM_TICKET = 0.25          # funding by a ticket instead of cash
_CASH_OUT_AFTER_BET = 0.04
_CASH_OUT_AS_TICKET = 0.4
_DOOR_OPEN = 0.01              # per idle step: the attendant opens the door (service)
_ERROR = 0.01                  # per idle step: a fault (jam, empty dispenser)
_PAPER_LOW_ON_TICKET = 0.05


class Customer:
    """A stream of customers: money in (cash or ticket), bets, cash-out as cash or ticket.

    Stops starting bets after ``terminal.rounds`` bets, cashes out what is left and is then
    :attr:`finished`; the terminal keeps answering the host.
    """

    def __init__(self, terminal: Terminal, rng: random.Random | None = None) -> None:
        self.terminal = terminal
        self.rng = rng or random.Random(f"customer:{terminal.seed}:{terminal.number}")
        self.finished = False
        self.started = 0

    @property
    def bet_time(self) -> float:
        """How long a bet stays open before it is settled: a slice of the pace."""
        return min(1.0, self.terminal.pace * 0.3)

    def _pause(self) -> float:
        return self.terminal.pace * self.rng.uniform(0.7, 1.3)

    def _rounds_done(self) -> bool:
        return self.terminal.rounds is not None and self.started >= self.terminal.rounds

    def _cash_out(self) -> None:
        ticket = self.rng.random() < _CASH_OUT_AS_TICKET
        if self.terminal.cash_out(ticket=ticket) and ticket and self.rng.random() < _PAPER_LOW_ON_TICKET:
            self.terminal.paper_low = True

    def act(self) -> float | None:
        """Do one thing; return the delay until the next action, or None once finished."""
        term = self.terminal
        if self.finished:
            return None
        if term.pending is not None:
            term.settle()
            if self._rounds_done() or self.rng.random() < _CASH_OUT_AFTER_BET:
                self._cash_out()
            return max(0.0, self._pause() - self.bet_time)
        if term.door_open:
            term.close_door()              # the attendant is done
            return self._pause()
        if term.error_code:
            term.clear_error()             # the attendant clears the jam
            return self._pause()
        if self._rounds_done():
            self._cash_out()
            if term.credits == 0:
                self.finished = True
                return None
            return self._pause()
        draw = self.rng.random()
        if draw < _DOOR_OPEN:
            term.open_door()
            return self._pause()
        if draw < _DOOR_OPEN + _ERROR:
            term.set_error(self.rng.choice(sorted(ERROR_CODES)))
            return self._pause()
        return self._bet_or_fund()

    def _bet_or_fund(self) -> float:
        term = self.terminal
        if term.credits < term.min_bet:
            if self.rng.random() < _REDEEM_TICKET:
                term.redeem_ticket(self.rng.choice(_TICKETS))   # refused while disabled: try later
            else:
                term.insert_cash(self.rng.choices(_NOTES, _NOTE_WEIGHTS)[0])
            return self._pause() * 0.3
        if not term.can_bet():
            return self._pause()
        units = min(term.max_bet, term.credits) // term.min_bet
        term.place_bet(self.rng.randint(1, units) * term.min_bet)
        self.started += 1
        return self.bet_time


__all__ = ["Customer"]
