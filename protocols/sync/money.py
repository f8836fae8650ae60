"""What each event contributes to GGR and cash: the one rule agents and central share.

The rule is defined on the event types themselves (each :mod:`.vocabulary` struct's ``contribution``);
this module names it for the readers of money.

The agent's normalizer writes events so that summing these contributions over a device's events
gives exactly what its meters say; central's rollups sum the same contributions. Keeping the rule
here (not in agent or central) is what lets both sides, and the end-to-end tests, agree to the cent.

* ``game.bet``  — ``amount`` counts as bets.
* ``game.win``  — ``amount`` counts as wins: every payout of a game, machine-paid or hand-paid
  (``data.paid_by``: ``"machine"``, ``"handpay"``), jackpots included. A hand-paid jackpot therefore
  appears as a ``game.win`` (money) *and* as a ``handpay``/``jackpot`` event (the attendant's
  record), and only the ``game.win`` counts.
* ``game.ended`` — one round (``data.game``, ``data.bet``, ``data.win`` for reading; not summed), or
  ``data.rounds`` rounds (int ≥ 1) when one event reports several settled together (a terminal's
  rounds counter moving by more than one between two polls).
* ``bill.accepted``, ``ticket.redeemed``, ``transfer`` with ``data.direction == "in"`` — cash in.
* ``ticket.printed``, ``transfer`` with ``data.direction == "out"``, ``handpay`` with
  ``data.kind == "cancelled_credits"`` — cash out.
* ``integration`` with ``data.kind == "missed"`` — activity the meters showed but events missed:
  ``data.bets``, ``data.wins``, ``data.rounds``, ``data.cash_in``, ``data.cash_out`` (ints ≥ 0, any
  may be absent) count like the events they stand for, so nothing is silent and nothing is lost.

Everything else (doors, status, snapshots, ``handpay`` of a jackpot, ``jackpot``) contributes nothing.
"""

from __future__ import annotations

from .vocabulary import MISSED_KEYS, ZERO, Contribution, contribution

__all__ = ["MISSED_KEYS", "ZERO", "Contribution", "contribution"]
