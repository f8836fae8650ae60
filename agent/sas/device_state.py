"""The little the normalizer remembers per device between facts.

Kept small on purpose (the brief: last meters, current game, session, denomination): everything
money-relevant that spans facts is here, so a reader can see all the normalizer's memory at once.
It is persisted by :mod:`.checkpoint` (committed with the events it produced): after an agent
restart the ledger continues, and what the meters moved meanwhile without committed events
becomes ``missed``. A field added here must be added there too (and to its round-trip test).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .facts import HandpayInfo
from .ledger import Game, Ledger


@dataclass
class OpenRound:
    """A game between its 7E and its 7F (``bet`` in minor units; None when 7E carried no data).

    ``placed``: where its 7E put it on the coin-in meter (:meth:`.ledger.Ledger.place`), so that its
    7F is judged like its 7E (counted, absorbed by a ``missed`` record, or part of the baseline)."""

    game: int
    bet: int | None
    credits: int | None
    placed: Game | None = None


@dataclass
class HeldWin:
    """A 7F win seen while a handpay of unknown kind was pending: machine-paid or the jackpot?

    It is emitted once LP 1B (HandpayInfo) tells which, or at the handpay reset (52)."""

    amount: int
    game: int
    agent_time: int


@dataclass
class DeviceState:
    device: str
    denom: int | None = None                 # accounting denomination, cents per credit
    denom_warned: bool = False
    identity_key: tuple[object, ...] | None = None
    rte_mode: bool | None = None             # do 7E/7F carry data? (None: not known yet)
    legacy_in_interval: bool = False         # a data-less 7E/7F since the last snapshot
    game: int = 0                            # selected game (8C), 0 = unknown
    round: OpenRound | None = None
    session: str | None = None               # id of the open session
    session_count: int = 0
    # handpay (51 → LP 1B → 52)
    handpay_pending: bool = False
    handpay_info: HandpayInfo | None = None
    handpay_bound: bool = False              # a 7F win is this jackpot handpay (emitted at 52)
    held_wins: list[HeldWin] = field(default_factory=list)
    last_ticket: int | None = None           # validation number of the last ticket.printed
    bill_meters: dict[int, int] = field(default_factory=dict)  # RTE 4F: denomination code → lifetime count
    reset_pending: bool = False              # 3A/7A seen: the next snapshot starts a new epoch
    hints: set[str] = field(default_factory=set)       # why events may have been lost (for `missed`)
    last_snapshot_time: int | None = None
    link_up_since: float | None = None       # wall time of the last link-up (the queue drains from then)
    close_pending: str | None = None         # gaming day whose close the next snapshot records
    ledger: Ledger = field(default_factory=Ledger)
    last_wall: float | None = None           # wall time of the last fact fed
    resumed: bool = False                    # restored from a checkpoint, no fact fed since (not persisted)
    # Not persisted (they name this boot's moments; after a restart the link comes up again first):
    link_up: bool = field(default=True, compare=False)
    """False after a LinkDown until the next LinkUp."""
    ticket_mono: float | None = field(default=None, compare=False)
    """Arrival of the 3D whose LP 3D read is still to come (the ticket's place among the meter reads)."""
    activity_wall: float | None = field(default=None, compare=False)
    """Money moved (or events were lost) after the last snapshot: the books are open."""
    logged: list[tuple[str, int, float | None]] = field(default_factory=list, compare=False)
    """(ledger quantity, value, arrival) of every money draft since the last snapshot: which of them
    the next snapshot's meters lack (its ``unmetered``). After a restart the first snapshot is read
    after every earlier event arrived, so nothing is lost by not persisting it."""
    judge_asked_at: float | None = field(default=None, compare=False)
    """Wall time a snapshot was last asked to close the books (``Normalizer.tick``)."""


__all__ = ["DeviceState", "HeldWin", "OpenRound"]
