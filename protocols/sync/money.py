"""What each event contributes to GGR and cash: the one rule agents and central share.

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

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Contribution:
    bets: int = 0
    wins: int = 0
    rounds: int = 0
    cash_in: int = 0
    cash_out: int = 0

    def __add__(self, other: Contribution) -> Contribution:
        return Contribution(self.bets + other.bets, self.wins + other.wins, self.rounds + other.rounds,
                            self.cash_in + other.cash_in, self.cash_out + other.cash_out)

    @property
    def ggr(self) -> int:
        return self.bets - self.wins


ZERO = Contribution()
MISSED_KEYS = ("bets", "wins", "rounds", "cash_in", "cash_out")


def _int(data: dict[str, Any], key: str) -> int:
    value = data.get(key, 0)
    if type(value) is not int or value < 0:
        raise ValueError(f"data.{key} must be an integer ≥ 0, got {value!r}")
    return value


def contribution(event_type: str, data: dict[str, Any]) -> Contribution:
    """The money one event adds; raises ValueError for an amount that is not an int ≥ 0."""
    if event_type == "game.bet":
        return Contribution(bets=_int(data, "amount"))
    if event_type == "game.win":
        return Contribution(wins=_int(data, "amount"))
    if event_type == "game.ended":
        if "rounds" not in data:
            return Contribution(rounds=1)
        rounds = _int(data, "rounds")
        if rounds < 1:
            raise ValueError("data.rounds of game.ended must be ≥ 1")
        return Contribution(rounds=rounds)
    if event_type in ("bill.accepted", "ticket.redeemed"):
        return Contribution(cash_in=_int(data, "amount"))
    if event_type == "ticket.printed":
        return Contribution(cash_out=_int(data, "amount"))
    if event_type == "transfer":
        direction = data.get("direction")
        if direction == "in":
            return Contribution(cash_in=_int(data, "amount"))
        if direction == "out":
            return Contribution(cash_out=_int(data, "amount"))
        raise ValueError(f"transfer direction must be 'in' or 'out', got {direction!r}")
    if event_type == "handpay" and data.get("kind") == "cancelled_credits":
        return Contribution(cash_out=_int(data, "amount"))
    if event_type == "integration" and data.get("kind") == "missed":
        return Contribution(*(_int(data, key) for key in MISSED_KEYS))
    return ZERO
