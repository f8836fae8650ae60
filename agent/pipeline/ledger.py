"""Reconciliation of what a device's events reported against what its meters moved.

Meters are the ground truth (design.md). For each money quantity the ledger keeps, since the
current *epoch* (the first snapshot, or the first after a RAM clear / meter reset):

* ``meters``   — cumulative meter movement in minor units (or rounds), rollover-corrected;
* ``reported`` — what the normalizer's drafts contributed (events, ``missed`` records and
  meter-derived bets/wins), counted per :data:`QUANTITIES` (finer than money.py's five sums, so
  that a machine-paid win and a hand-paid jackpot, which move different meters at different
  moments, are never confused);
* ``excess``   — reported money already flagged as exceeding the meters (an anomaly), so it is
  flagged once and later comparisons start from the meters again;
* ``history``  — ``meters`` of the recent snapshots, with their time.

Why ``missed`` lags by a settle time: a meter snapshot can be read while exceptions are still
queued in the EGM (legacy polling answers long polls at once, one exception per general poll), so
at snapshot *k* the meters may be ahead of the events for activity reported a moment later. Events
that happened before snapshot *k* are confirmed within the settle time after it (the EGM's queue
drains at one entry per poll) or never (lost, e.g. FIFO overflow). So at a snapshot at least
``settle`` seconds after *k*, the difference ``meters(k) − (reported − excess)`` is exactly what
was lost before *k*: declared ``missed``.
Events confirmed before a snapshot, on the other hand, moved their meters before it (the EGM moves
meters first, then queues the exception), so ``reported − excess > meters`` is an anomaly at once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final

from protocols.sas.bcd import bcd_max
from protocols.sas.fields import meter_size_2f

QUANTITIES: Final[tuple[str, ...]] = (
    "bets", "wins_machine", "wins_handpay", "rounds",
    "cash_in_bills", "cash_in_tickets", "cash_out_tickets", "cash_out_handpay",
)
MONEY_KEY: Final[dict[str, str]] = {
    "bets": "bets", "wins_machine": "wins", "wins_handpay": "wins", "rounds": "rounds",
    "cash_in_bills": "cash_in", "cash_in_tickets": "cash_in",
    "cash_out_tickets": "cash_out", "cash_out_handpay": "cash_out",
}
"""Ledger quantity → the key of protocols.sync.money's ``Contribution`` (and of a ``missed`` record)."""

METER_SOURCES: Final[dict[str, tuple[tuple[int, str], ...]]] = {
    "bets": ((0x00, "credits"),),                          # coin in
    "wins_machine": ((0x01, "credits"),),                  # coin out: machine-paid wins
    "wins_handpay": ((0x02, "credits"),),                  # jackpot: hand-paid wins (moves at reset)
    "rounds": ((0x05, "count"),),                          # games played
    "cash_in_bills": ((0x0B, "credits"), (0x24, "credits")),   # bills accepted, else total drop (1C)
    "cash_in_tickets": ((0x0D, "cents"), (0x15, "credits")),
    "cash_out_tickets": ((0x0E, "cents"), (0x16, "credits")),
    "cash_out_handpay": ((0x03, "credits"),),              # hand-paid cancelled credits
}
"""Which meter (first one present in a snapshot) measures each quantity, and its unit."""

ROLLOVER_WINDOW_DIVISOR: Final = 10
"""A decrease is a rollover only if the wrapped delta is under 1/10 of the meter's range (the old
value was near the top); any other decrease is a reset (RAM clear, soft meter reset)."""


def meter_modulus(code: int) -> int:
    """Meters roll over to 0 past their BCD width (Table C-7 sizes, as the simulator keeps them)."""
    return bcd_max(meter_size_2f(code)) + 1


@dataclass
class Quantity:
    code: int | None = None        # meter code currently measuring it
    last_raw: int | None = None    # its raw value at the last snapshot
    meters: int = 0
    reported: int = 0
    excess: int = 0

    @property
    def effective(self) -> int:
        return self.reported - self.excess


@dataclass
class Observation:
    """What one snapshot did to the ledger (the normalizer turns it into drafts and logs)."""

    rebaselined: bool = False
    why: str = ""
    available: set[str] = field(default_factory=set)
    rollovers: list[str] = field(default_factory=list)


@dataclass
class Ledger:
    quantities: dict[str, Quantity] = field(default_factory=lambda: {q: Quantity() for q in QUANTITIES})
    active: bool = False           # a baseline exists
    baseline_wall: float = 0.0
    history: deque[tuple[float, dict[str, int]]] = field(default_factory=deque)

    def report(self, quantity: str, value: int) -> None:
        """Count a draft's contribution (only once a baseline exists: earlier ones are in it)."""
        if self.active and value:
            self.quantities[quantity].reported += value

    def rebaseline(self, raw: dict[int, int], wall: float) -> None:
        self.active = True
        self.baseline_wall = wall
        for name, q in self.quantities.items():
            q.meters = q.reported = q.excess = 0
            q.code, q.last_raw = _pick(name, raw)
        self.history = deque([(wall, dict.fromkeys(QUANTITIES, 0))])

    def settled(self, wall: float, settle: float) -> tuple[float | None, dict[str, int]]:
        """Cumulative meters of the latest snapshot at least ``settle`` seconds old (older ones are
        dropped): every event that happened before it has been reported by now, or is lost."""
        due: int | None = None
        for index, (when, _) in enumerate(self.history):
            if wall - when < settle:
                break
            due = index
        if due is None:
            return None, {}
        for _ in range(due):
            self.history.popleft()
        return self.history[0]

    def in_grace(self, wall: float, settle: float) -> bool:
        """Right after a baseline, events may still arrive that happened before it."""
        return wall - self.baseline_wall < settle

    def remember(self, wall: float, available: set[str]) -> None:
        self.history.append((wall, {name: self.quantities[name].meters for name in available}))

    def observe(self, raw: dict[int, int], denom: int, wall: float, *, force_reset: bool = False) -> Observation:
        """Advance the cumulative meters to this snapshot (raw values by meter code)."""
        if not self.active or force_reset:
            self.rebaseline(raw, wall)
            return Observation(True, "baseline" if not force_reset else "reset", self._available(raw))
        deltas: dict[str, int] = {}
        obs = Observation(available=set())
        for name, q in self.quantities.items():
            code, value = _pick(name, raw)
            if code is None or value is None:
                continue
            if q.code != code or q.last_raw is None:
                # New or changed meter source: anchor it here; its movement counts from now on.
                q.code, q.last_raw = code, value
                q.meters = q.effective
                for _, values in self.history:
                    values.pop(name, None)
                continue
            delta = value - q.last_raw
            if delta < 0:
                modulus = meter_modulus(code)
                wrapped = delta + modulus
                if wrapped < modulus // ROLLOVER_WINDOW_DIVISOR:
                    delta = wrapped
                    obs.rollovers.append(name)
                else:
                    self.rebaseline(raw, wall)
                    return Observation(True, f"meter {code:02X} went back from {q.last_raw} to {value}",
                                       self._available(raw))
            deltas[name] = delta
        for name, delta in deltas.items():
            q = self.quantities[name]
            q.last_raw = raw[q.code]  # type: ignore[index]
            q.meters += delta * _unit_factor(q.code, denom)  # type: ignore[arg-type]
            obs.available.add(name)
        return obs

    def _available(self, raw: dict[int, int]) -> set[str]:
        return {name for name in QUANTITIES if _pick(name, raw)[0] is not None}


def _pick(name: str, raw: dict[int, int]) -> tuple[int | None, int | None]:
    for code, _unit in METER_SOURCES[name]:
        if code in raw:
            return code, raw[code]
    return None, None


def _unit_factor(code: int, denom: int) -> int:
    for sources in METER_SOURCES.values():
        for c, unit in sources:
            if c == code:
                return denom if unit == "credits" else 1
    return 1


__all__ = ["MONEY_KEY", "QUANTITIES", "Ledger", "Observation", "Quantity", "meter_modulus"]
