"""Reconciliation of what a device's events reported against what its meters moved.

Meters are the ground truth (design.md). For each money quantity the ledger keeps, since the
current *epoch* (the first snapshot, or the first after a RAM clear / meter reset):

* ``meters``   — cumulative meter movement in minor units (or rounds), rollover-corrected;
* ``reported`` — what the normalizer's drafts contributed (events, ``missed`` records and
  meter-derived bets/wins), counted per :data:`QUANTITIES` (finer than money.py's five sums, so
  that a machine-paid win and a hand-paid jackpot, which move different meters at different
  moments, are never confused);
* ``seen``     — ``reported`` as it was when the previous snapshot was fed (see "excess" below);
* ``excess``   — reported money already flagged as exceeding the meters (an anomaly), so it is
  flagged once and later comparisons start from the meters again;
* ``missed`` / ``absorbed`` — money declared ``missed`` in this epoch, and the part of it that
  late events have since turned out to be (they were absorbed, not counted again);
* ``history``  — ``meters`` of the recent snapshots, with their time.

A snapshot is not an instant. The coordinator reads the meters with several long polls and, in
RTE mode, the EGM answers some of them with queued events; those are confirmed — and fed here —
*before* the snapshot fact, although the meters read first may not contain them yet. The reverse
also holds: an event can wait in the EGM's queue well after a snapshot that contains it. Hence:

* **excess** (events above the meters: counted twice, or meters wrong) is judged one snapshot
  late: money fed before snapshot *k−1* was confirmed before the read of snapshot *k* began, and
  the EGM moves its meters before it queues the exception, so ``seen − excess > meters(k)`` is a
  certain anomaly, while ``reported − excess > meters(k)`` may only be a game that happened
  during the read. Flagging the latter once made the later ``missed`` count it a second time.
* **missed** lags by a settle time: events that happened before snapshot *k* are confirmed
  within the settle time after it (the EGM's queue drains at one entry per poll) or never (lost,
  e.g. FIFO overflow) — provided the link was up: the queue does not drain while nobody polls, so
  the settle time counts from the later of the snapshot and the last link-up. At a snapshot that
  much later, ``meters(k) − (reported − excess)`` is what was lost before *k*: declared ``missed``.
* **RTE games are placed on the coin-in meter**: 7E carries the coin-in meter after its wager,
  which says exactly which snapshot first contains the game (:meth:`Ledger.place`). Games placed
  after the settled snapshot are left out of its ``missed`` (they are the next window's), and a
  game placed at or before a window already declared ``missed`` is *late*: the missed record
  already stands for it, so it is absorbed against the record (:meth:`Ledger.absorb`) instead of
  being counted twice. Games placed at or before the baseline belong to the previous epoch.
* **The end of a game of the baseline is ordered by poll, not guessed**: a game's wager is in the
  baseline when its 7E's coin in is, but its win and round move their meters when it *ends*,
  which may be after those meters were read (the snapshot is read over several polls; the agent
  may have been restarted right after it). Each meter carries when the reply that read it arrived
  and each 7F when it arrived: in RTE mode the EGM answers any poll with a queued event first, so
  a 7F that reached us after a meter's reply happened after that meter was read. Such an end is
  counted in the new epoch (:meth:`Ledger.ended_after_read`); an earlier one is in the baseline.
  Without those stamps (a checkpoint from another boot, a fake line) the end is taken to be in
  the baseline, as its wager is.
* **Every other event of an epoch's start is ordered the same way** (bills, tickets, handpays):
  one confirmed before the baseline snapshot's fact but after the reply that read its meter
  (a bill answering the second 6F of the read, say) is *not* in the baseline, so it is counted in
  the new epoch (:attr:`Ledger.recent`); one fed after the baseline whose exception arrived before
  that reply (a ticket: its LP 3D is read after the meters, its 3D came before) *is* in the
  baseline and is not counted. Counting the first as "before the baseline" made its meter
  movement a ``missed`` record as well: the same bill twice. The same holds at every rebaseline
  (RAM clear, meters reset): what arrived after the new baseline's read belongs to the new epoch.
* **A window is judged even when the machine goes idle** (:meth:`Ledger.unjudged`): the newest
  snapshot is judged only by a later one, so the normalizer asks for one once it has settled.
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

COIN_IN: Final = 0x00
"""The meter a 7E's RTE data repeats (after the wager): what places a game on the meter timeline."""
GAME_QUANTITIES: Final[tuple[str, ...]] = ("bets", "wins_machine", "rounds")
"""What a placed game contributes (its machine-paid win and round move their meters at its end,
which is after its wager; a hand-paid jackpot moves the jackpot meter at the reset instead)."""
END_QUANTITIES: Final[frozenset[str]] = frozenset({"wins_machine", "rounds"})
"""What a game's end (its 7F) moves."""
MAX_TRACKED_GAMES: Final = 4096
"""Bound on games remembered per device; forgetting one only makes a ``missed`` smaller (later)."""


def meter_modulus(code: int) -> int:
    """Meters roll over to 0 past their BCD width (Table C-7 sizes, as the simulator keeps them)."""
    return bcd_max(meter_size_2f(code)) + 1


@dataclass
class Quantity:
    code: int | None = None        # meter code currently measuring it
    last_raw: int | None = None    # its raw value at the last snapshot
    meters: int = 0
    reported: int = 0
    seen: int = 0                  # ``reported`` when the previous snapshot was fed
    excess: int = 0
    grace: int = 0                 # reported right after the baseline: may have happened before it
    missed: int = 0                # declared ``missed`` (or derived from the meters) in this epoch
    absorbed: int = 0              # late events absorbed against ``missed``
    read_at: float | None = None   # monotonic arrival of the reply that read its baseline meter

    @property
    def effective(self) -> int:
        return self.reported - self.excess

    @property
    def certain(self) -> int:
        """Money fed before the previous snapshot (net of flagged excess): every later snapshot's
        meters contain it, so exceeding them is a certain anomaly (see the module docstring)."""
        return self.seen - self.excess


@dataclass
class Game:
    """An RTE game as its 7E placed it on the coin-in meter, and what its drafts contributed.

    ``raw`` is the 7E's coin-in meter (after the wager, meter units); ``pos`` the same as coin in
    since the epoch's baseline (minor units), None while it cannot be placed (no baseline yet, or
    a meter reset pending: the next baseline places it). ``status``: ``open`` (counted as usual),
    ``late`` (at or before a window already declared ``missed``: absorbed against the record while
    it lasts) or ``before`` (part of the baseline: emitted, not reconciled in this epoch).
    """

    raw: int
    credits: int
    pos: int | None = None
    status: str = "open"
    contributed: dict[str, int] = field(default_factory=dict)
    end_at: float | None = None    # monotonic arrival of its 7F (None: not ended, or unknown)


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
    settle: float = 30.0           # the normalizer's settle_seconds
    history: deque[tuple[float, dict[str, int]]] = field(default_factory=deque)
    games: deque[Game] = field(default_factory=deque)   # counted, placed after ``declared``
    unplaced: list[Game] = field(default_factory=list)  # fed while they could not be placed
    declared: int | None = None    # coin in (cumulative) up to which ``missed`` has been judged
    seen_wall: float = 0.0         # when the previous snapshot was fed
    recent: list[tuple[str, int, float | None]] = field(default_factory=list, compare=False)
    """(quantity, value, monotonic arrival) of every contribution outside a game fed since the last
    snapshot: at a rebaseline, those that arrived after the new baseline read their meter are the
    new epoch's (module docstring). Not persisted: after a restart every later read follows them."""

    def report(self, quantity: str, value: int, wall: float, game: Game | None = None, *,
               mono: float | None = None, reset_pending: bool = False) -> None:
        """Count a draft's contribution in this epoch.

        ``mono``: when the exception that carried it arrived (monotonic). Before a baseline exists
        (or while a reset waits for the next one) nothing is counted yet: :meth:`rebaseline` decides
        by ``mono`` whether the new baseline contains it. After the baseline, one that arrived
        before the baseline read its meter is in the baseline and is not counted."""
        if game is not None:
            game.contributed[quantity] = game.contributed.get(quantity, 0) + value
        if not value:
            return
        if game is None:
            self.recent.append((quantity, value, mono))
        if self.active and not reset_pending:
            q = self.quantities[quantity]
            if game is None and mono is not None and q.read_at is not None and mono < q.read_at:
                return   # its meter moved before the baseline read it
            q.reported += value
            if game is None and self.in_grace(wall):
                q.grace += value

    def place(self, raw: int, credits: int, denom: int, wall: float, *, reset_pending: bool = False) -> Game:
        """Place a game on the coin-in timeline from its 7E's coin-in meter (``raw``, after the wager).

        The snapshot that first contains the game is the first whose coin in reaches ``pos``: this
        is what tells a game confirmed during a meter read, or one that waited in the EGM's queue,
        from new play — exactly, where the time of its confirmation can only guess."""
        game = Game(raw, credits)
        q = self.quantities["bets"]
        if not self.active or reset_pending or q.code != COIN_IN or q.last_raw is None:
            if len(self.unplaced) < MAX_TRACKED_GAMES:
                self.unplaced.append(game)
            return game
        game.pos = q.meters + _signed_delta(raw, q.last_raw, COIN_IN) * denom
        if game.pos <= 0:
            # In the baseline. Plausible right after it (queued at connect); later, distrust the
            # placement and count the game: the meters will tell.
            if self.in_grace(wall):
                game.status = "before"
        elif self.declared is not None and game.pos <= self.declared:
            game.status = "late"
        if game.status == "open" and game.pos > (self.declared or 0):
            self._track(game)
        return game

    def absorb(self, quantity: str, value: int) -> bool:
        """A late event's ``value`` is already in a ``missed`` record: take it from the record's
        still unexplained part instead of counting it again. False (count it) when the records
        of this epoch hold less than that — then the event was not covered.

        The budget is per money key (money.py's sums), own quantity first: a machine-paid win may
        have been declared on the jackpot meter's side after a (money-neutral) re-attribution."""
        if not self.active or value <= 0:
            return False
        group = [quantity] + [n for n in QUANTITIES if n != quantity and MONEY_KEY[n] == MONEY_KEY[quantity]]
        if sum(self.quantities[n].missed - self.quantities[n].absorbed for n in group) < value:
            return False
        left = value
        for name in group:
            q = self.quantities[name]
            take = min(left, q.missed - q.absorbed)
            q.absorbed += take
            left -= take
        return True

    def ended_after_read(self, quantity: str, end_at: float | None) -> bool:
        """True when a game of the baseline whose 7F arrived at ``end_at`` (monotonic) ended after
        the baseline read ``quantity``'s meter, so that meter did not contain its end (see the
        module docstring). False when it did, or when either stamp is unknown."""
        read_at = self.quantities[quantity].read_at
        return quantity in END_QUANTITIES and read_at is not None and end_at is not None and end_at > read_at

    def reattribute(self, source: str, target: str, amount: int) -> None:
        """``amount`` of the tracked games' contributions moves from quantity ``source`` to ``target``
        (newest game first), as the normalizer moved it between the wins meters. Without this a
        window's later games (:meth:`placed_after`) still held the moved win on its old meter: the
        machine-paid side then lacked it against the settled snapshot, and it became ``missed``
        although its event was counted — a jackpot paid twice, every snapshot (chaos, offline-hq)."""
        left = amount
        for game in reversed(self.games):
            have = game.contributed.get(source, 0)
            if have <= 0:
                continue
            take = min(have, left)
            game.contributed[source] = have - take
            game.contributed[target] = game.contributed.get(target, 0) + take
            left -= take
            if not left:
                return

    def placed_after(self, coin_in: int) -> dict[str, int]:
        """Contributions of counted games placed after ``coin_in``: not part of that window."""
        totals: dict[str, int] = {}
        for game in self.games:
            if game.pos is not None and game.pos > coin_in:
                for name, value in game.contributed.items():
                    totals[name] = totals.get(name, 0) + value
        return totals

    def declare(self, coin_in: int) -> None:
        """``missed`` has been judged for every game up to ``coin_in``: any such game seen from now
        on is late (its money is in a record); the games tracked up to there are no longer needed."""
        self.declared = coin_in if self.declared is None else max(self.declared, coin_in)
        limit = self.declared
        self.games = deque(g for g in self.games if g.pos is not None and g.pos > limit)

    def rebaseline(self, raw: dict[int, int], wall: float, denom: int = 1,
                   reads: dict[int, float] | None = None) -> None:
        """A new epoch from this snapshot. Games fed before it (no baseline yet, or a reset
        pending) whose coin in lies beyond its coin-in meter happened while it was being read:
        they belong to the new epoch, not to the baseline; and those whose wager is in it but
        whose 7F arrived after a meter was read contribute their end to the new epoch.
        ``reads``: when each meter's reply arrived (monotonic), by code."""
        self.active = True
        self.baseline_wall = wall
        for name, q in self.quantities.items():
            q.meters = q.reported = q.seen = q.excess = q.grace = q.missed = q.absorbed = 0
            q.code, q.last_raw = pick_meter(name, raw)
            q.read_at = None if reads is None or q.code is None else reads.get(q.code)
        self.history = deque([(wall, dict.fromkeys(QUANTITIES, 0))])
        self.games.clear()
        self.declared = None
        carried, self.unplaced = self.unplaced, []
        bets = self.quantities["bets"]
        if bets.code == COIN_IN and bets.last_raw is not None:
            span = sum(g.credits for g in carried)
            for game in carried:
                delta = _signed_delta(game.raw, bets.last_raw, COIN_IN)
                game.pos = delta * denom
                if 0 < delta <= span:
                    for name, value in game.contributed.items():
                        self.quantities[name].reported += value
                    self._track(game)
                else:
                    game.status = "before"
                    for name, value in game.contributed.items():
                        if self.ended_after_read(name, game.end_at):
                            self.quantities[name].reported += value
        recent, self.recent = self.recent, []
        for name, value, mono in recent:
            q = self.quantities[name]
            if mono is not None and q.read_at is not None and mono > q.read_at:
                q.reported += value   # arrived after the baseline read its meter: not in it
        self.commit_seen(wall)

    def commit_seen(self, wall: float) -> None:
        """This snapshot is fed: what is reported so far is in every later snapshot's meters.

        Once a snapshot fed after the grace has been judged, every event of the grace has been
        judged too: what is left of the allowance would only excuse later double counts."""
        expired = not self.in_grace(self.seen_wall)
        for q in self.quantities.values():
            q.seen = q.reported
            if expired:
                q.grace = 0
        self.seen_wall = wall

    def settled(self, wall: float, since: float | None = None) -> tuple[float | None, dict[str, int]]:
        """Cumulative meters of the latest snapshot at least ``settle`` seconds old (older ones are
        dropped): every event that happened before it has been reported by now, or is lost.

        ``since`` (the last link-up): the EGM's queue drains only while it is polled, so a snapshot
        taken before an outage settles ``settle`` seconds after the link came back."""
        due: int | None = None
        for index, (when, _) in enumerate(self.history):
            if wall - (when if since is None else max(when, since)) < self.settle:
                break
            due = index
        if due is None:
            return None, {}
        for _ in range(due):
            self.history.popleft()
        return self.history[0]

    def unjudged(self, wall: float, since: float | None = None) -> bool:
        """The newest snapshot moved the meters since the one last judged and has settled, so the
        next snapshot would judge it: without one (the machine went idle, nothing significant
        happens) whatever its window lost would never become ``missed``. The history's first entry
        is the snapshot judged last (or the baseline): :meth:`settled` drops the older ones."""
        if not self.active or len(self.history) < 2:
            return False
        newest_at, newest = self.history[-1]
        first = self.history[0][1]
        if all(value == first.get(name, 0) for name, value in newest.items()):
            return False
        return wall - (newest_at if since is None else max(newest_at, since)) >= self.settle

    def in_grace(self, wall: float) -> bool:
        """Right after a baseline, events may still arrive that happened before it."""
        return wall - self.baseline_wall < self.settle

    def shift_times(self, delta: float) -> None:
        """Move every remembered time by ``delta`` seconds (the wall clock was set back while the
        agent was down: the times of its checkpoint would otherwise lie in the future, and their
        snapshots settle, and the baseline's grace end, only once the clock caught up)."""
        self.baseline_wall += delta
        self.seen_wall += delta
        self.history = deque((when + delta, values) for when, values in self.history)

    def remember(self, wall: float, available: set[str]) -> None:
        self.history.append((wall, {name: self.quantities[name].meters for name in available}))

    def observe(self, raw: dict[int, int], denom: int, wall: float, *, force_reset: bool = False,
                reads: dict[int, float] | None = None) -> Observation:
        """Advance the cumulative meters to this snapshot (raw values by meter code; ``reads``:
        when each was read, see :meth:`rebaseline`)."""
        if not self.active or force_reset:
            self.rebaseline(raw, wall, denom, reads)
            return Observation(True, "baseline" if not force_reset else "reset", self._available(raw))
        self.unplaced.clear()   # fed since the last snapshot without a coin-in meter: counted as usual
        self.recent.clear()
        deltas: dict[str, int] = {}
        obs = Observation(available=set())
        for name, q in self.quantities.items():
            if q.code is not None and q.last_raw is not None:
                # One meter measures a quantity for the whole epoch. A snapshot that did not read it
                # (a 6F read garbled, so LP 1C answered: total drop instead of bills) leaves the
                # quantity unjudged until one does; switching meters anchored the new one at what
                # the events said, which silently absorbed whatever had been lost since the last
                # judged snapshot (chaos, offline-hq: a $5 bill).
                if q.code not in raw:
                    continue
                code: int | None = q.code
                value: int | None = raw[q.code]
            else:
                code, value = pick_meter(name, raw)
            if code is None or value is None:
                continue
            if q.code != code or q.last_raw is None:
                # A meter the baseline lacked: anchor it here; its movement counts from now on.
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
                    self.rebaseline(raw, wall, denom, reads)
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
        return {name for name in QUANTITIES if pick_meter(name, raw)[0] is not None}

    def _track(self, game: Game) -> None:
        if len(self.games) >= MAX_TRACKED_GAMES:
            self.games.popleft()
        self.games.append(game)


def _signed_delta(value: int, reference: int, code: int) -> int:
    """``value − reference`` on a meter that rolls over: the shorter way round, either sign."""
    modulus = meter_modulus(code)
    delta = (value - reference) % modulus
    return delta - modulus if delta > modulus // 2 else delta


def pick_meter(name: str, raw: dict[int, int]) -> tuple[int | None, int | None]:
    """The meter (code, raw value) of a snapshot that measures quantity ``name`` (METER_SOURCES)."""
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


__all__ = ["COIN_IN", "END_QUANTITIES", "GAME_QUANTITIES", "MONEY_KEY", "QUANTITIES", "Game", "Ledger",
           "Observation", "Quantity", "meter_modulus", "pick_meter"]
