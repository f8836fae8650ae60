"""Meters versus events, per machine and gaming day: the variance in money and in %, and its reason.

Meters are a machine's ground truth (design.md). The agent takes absolute ``meters.snapshot`` events
(on a schedule, at doors, power, RAM clear, day close…); between two snapshots of one device, the
meters' movement must equal what that device's events in between (by ``seq``) contribute under the
shared money rule (:func:`protocols.sync.money.contribution`, the same rule the rollups use). When the
agent saw the meters move more than its events, it wrote an ``integration`` event of kind ``missed``
carrying the difference; so after those records the variance must be zero, and anything left is
reported as ``unexplained``, never hidden.

Windows. A day's window runs from its **opening** snapshot — the device's last snapshot before the
day starts (the previous day's closing meters), or else its first snapshot inside the day — to its
**closing** snapshot, the last one inside the day. Consecutive days therefore tile without gaps or
overlaps: each pair of consecutive snapshots belongs to exactly one day (the day of its later one).
Events are attributed by ``seq`` (the chain order the agent wrote), not by their clocks.

Gaming day: the hall's own (:class:`protocols.sync.gamingday.DayRule`: its time zone and day start,
UTC midnight for a hall without settings), the same day its rollups and the agent's day-close
snapshots use. Across a DST change a day is 23 or 25 hours long; the windows still tile.

Resets. A meter that goes back (RAM clear, soft meter reset) — or a snapshot the agent marked with an
``integration`` ``meters_reset`` right after it — makes the pair of snapshots around it meaningless:
that interval is **excluded** (its events' money is shown as ``unreconciled``) and the row's reason
says ``meter_reset``. A decrease within 1/10 of a meter's BCD range from its top is a rollover and is
counted through, as the agent does.

Boundaries. A snapshot is not an instant (the agent reads the meters with several polls while the
machine's queued events keep arriving), so a game at the day's closing snapshot can be in its meters
while its events come after it by seq, or the reverse; the difference then shows on this day and
reverses on the next. A residual that disappears once the window is widened by one snapshot
interval or a few (:data:`BOUNDARY_STEPS`) on each side (:func:`widen`) is reported as
``boundary_timing`` — the variance still shows, the reason says where it goes — and only a residual
that remains is ``unexplained``.

Unmetered. An event the agent wrote before a snapshot may still be missing from that snapshot's
meters (its exception arrived after the reply that read its meter: a bill during the baseline read,
a game started between two polls of one read). The agent lists that money in the snapshot's
``data.unmetered``; a window's events are then its events by seq, plus its opening snapshot's
unmetered money, minus its closing snapshot's (:func:`window_events`). Without it, a bill just before
a device's first snapshot was ``unexplained`` on a day whose GGR was exact (no earlier snapshot to
widen to).

``missed`` records are attributed by ``data.meters_time`` — the time of the snapshot whose meters
showed the gap (a record is written one settle time *after* that snapshot, so its seq may lie in the
next window) — and by seq when a record has no ``meters_time``.

Everything here is pure (no I/O): the store reads the snapshots and sums the events, this module
plans the windows and judges them. Amounts are integer minor units; percentages are integer basis
points (1/100 %), rounded half away from zero.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from protocols.sas.bcd import bcd_max
from protocols.sas.fields import meter_size_2f
from protocols.sas.meters import METER_CODES, meter_unit
from protocols.sync.gamingday import UTC_MIDNIGHT, DayRule
from protocols.sync.money import ZERO, Contribution

from .eventmoney import MissedRecord as MissedRecord  # re-exported: the rules of the events side
from .eventmoney import event_money as event_money
from .eventmoney import missed_from_event as missed_from_event

MAX_DAYS: Final = 62
"""Longest period one report request may cover (each day × device is a few indexed queries)."""

QUANTITY_NAMES: Final = ("bets", "wins", "rounds", "cash_in", "cash_out")

METER_GROUPS: Final[dict[str, tuple[tuple[str, ...], ...]]] = {
    "bets": (("coin_in",),),
    "wins": (("coin_out",), ("jackpot",)),   # machine-paid + hand-paid wins: what a game.win counts
    "rounds": (("games_played",),),
    "cash_in": (("bills_accepted_credits", "total_drop"), ("ticket_in_cents", "ticket_in_credits")),
    "cash_out": (("ticket_out_cents", "ticket_out_credits"), ("handpaid_cancelled_credits",)),
}
"""Each quantity is the sum of its groups; a group is the first of its meters the snapshot carries
(the agent's ledger measures the same quantities with the same meters). A quantity is unknown (None)
when any of its groups is missing."""

ROLLOVER_WINDOW_DIVISOR: Final = 10

BOUNDARY_STEPS: Final = 4
"""How many snapshot intervals on each side a residual may be explained by (event snapshots — doors,
power, handpays — can follow one another within seconds, less than the agent's settle time)."""

REASONS: Final = ("exact", "missed_recorded", "boundary_timing", "meter_reset", "unexplained",
                  "events_exceed_meters", "single_snapshot", "no_snapshot")
"""Row reasons, mildest first: the row's ``reason`` is the most severe of its ``reasons``
(``events_exceed_meters`` names the residual the agent itself flagged: money counted that the
meters never saw, the worst case for a report of GGR)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A ``meters.snapshot`` event: absolute meters in minor units (counts for ``games_played``)."""

    seq: int
    agent_time: int
    meters: Mapping[str, int]
    denomination_cents: int | None = None
    unmetered: Contribution = ZERO
    """Money of events written before this snapshot that its meters do not contain yet."""


@dataclass(frozen=True, slots=True)
class Segment:
    """Two consecutive snapshots; ``delta`` None means the interval is excluded (``why``)."""

    start: Snapshot
    end: Snapshot
    delta: Mapping[str, int | None] | None
    why: str = ""


@dataclass(frozen=True, slots=True)
class DayPlan:
    """The snapshots framing one device's gaming day and the intervals between them."""

    hall: str
    device: str
    day: dt.date
    opening: Snapshot | None
    closing: Snapshot | None
    segments: tuple[Segment, ...]
    snapshots_in_day: int

    @property
    def counted(self) -> list[tuple[int, int]]:
        """Seq ranges ``(after, through]`` whose events are compared with the meters (merged)."""
        return _merge((s.start.seq, s.end.seq) for s in self.segments if s.delta is not None)

    @property
    def excluded(self) -> list[tuple[int, int]]:
        return _merge((s.start.seq, s.end.seq) for s in self.segments if s.delta is None)


@dataclass(frozen=True, slots=True)
class QuantityLine:
    meters: int | None
    events: int
    missed: int

    @property
    def variance(self) -> int | None:
        """Meters minus events (before ``missed`` records): the difference the events alone leave."""
        return None if self.meters is None else self.meters - self.events

    @property
    def residual(self) -> int | None:
        """Meters minus events minus ``missed`` records: must be 0 (else ``unexplained``)."""
        return None if self.meters is None else self.meters - self.events - self.missed

    def as_dict(self) -> dict[str, Any]:
        variance = self.variance
        return {"meters": self.meters, "events": self.events, "missed": self.missed, "variance": variance,
                "variance_bp": None if variance is None or self.meters is None else basis_points(variance,
                                                                                                 self.meters),
                "residual": self.residual}


@dataclass(frozen=True, slots=True)
class ReconRow:
    """One (hall, device, gaming day) of the report."""

    plan: DayPlan
    lines: dict[str, QuantityLine]
    ggr: QuantityLine | None
    unreconciled: Contribution
    reasons: tuple[str, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def reason(self) -> str:
        return max(self.reasons, key=REASONS.index)

    def as_dict(self) -> dict[str, Any]:
        plan = self.plan
        return {
            "hall": plan.hall, "device": plan.device, "day": plan.day.isoformat(), "reason": self.reason,
            "reasons": list(self.reasons), "notes": list(self.notes),
            "opening": _snap(plan.opening), "closing": _snap(plan.closing),
            "snapshots_in_day": plan.snapshots_in_day,
            "ggr": None if self.ggr is None else self.ggr.as_dict(),
            "quantities": {name: line.as_dict() for name, line in self.lines.items()},
            "excluded": [{"after_seq": a, "through_seq": b} for a, b in plan.excluded],
            "unreconciled": _contribution_dict(self.unreconciled),
        }


# ---- days and meters -------------------------------------------------------------------------------



def day_bounds(day: dt.date, rule: DayRule = UTC_MIDNIGHT) -> tuple[int, int]:
    """``[start, end)`` of a gaming day in microseconds since the epoch."""
    return rule.bounds(day)


def gaming_day(micros: int, rule: DayRule = UTC_MIDNIGHT) -> dt.date:
    """The gaming day an instant (microseconds since the epoch) belongs to."""
    return rule.day_of(micros)


def days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def basis_points(part: int, whole: int) -> int | None:
    """``part / |whole|`` in basis points, rounded half away from zero; None when ``whole`` is 0."""
    if whole == 0:
        return None
    num, den = abs(part) * 10_000, abs(whole)
    value = (2 * num + den) // (2 * den)
    return value if part >= 0 else -value


def _modulus(name: str, denomination: int | None) -> int | None:
    """A meter's range in minor units (it rolls over to 0 past it), or None if not a SAS meter."""
    code = METER_CODES.get(name)
    if code is None:
        return None
    factor = (denomination or 1) if meter_unit(code) == "credits" else 1
    return (bcd_max(meter_size_2f(code)) + 1) * factor


def meter_delta(start: Snapshot, end: Snapshot) -> tuple[dict[str, int | None] | None, str]:
    """Per quantity, how far the meters moved from ``start`` to ``end``; (None, why) on a reset."""
    moved: dict[str, int] = {}
    for groups in METER_GROUPS.values():
        for names in groups:
            for name in names:
                if name in moved or name not in start.meters or name not in end.meters:
                    continue
                before, after = start.meters[name], end.meters[name]
                delta = after - before
                if delta < 0:
                    modulus = _modulus(name, end.denomination_cents)
                    if modulus is None or delta + modulus >= modulus // ROLLOVER_WINDOW_DIVISOR:
                        return None, f"meter {name} went back from {before} to {after}"
                    delta += modulus
                moved[name] = delta
    out: dict[str, int | None] = {}
    for quantity, groups in METER_GROUPS.items():
        total: int | None = 0
        for names in groups:
            # the same meter must measure the group at both ends, else the group is unknown here
            measured = next((n for n in names if n in start.meters or n in end.meters), None)
            if measured is None or measured not in moved or total is None:
                total = None
                continue
            total += moved[measured]
        out[quantity] = total
    return out, ""


def snapshot_from_event(seq: int, agent_time: int, data: Mapping[str, Any]) -> Snapshot | None:
    """A :class:`Snapshot` from a ``meters.snapshot`` event's data; None if its meters are unusable."""
    meters = data.get("meters")
    if not isinstance(meters, dict):
        return None
    clean = {str(k): v for k, v in meters.items() if type(v) is int and v >= 0}
    denom = data.get("denomination_cents")
    unmetered = data.get("unmetered")
    outside = ZERO
    if isinstance(unmetered, dict):
        outside = Contribution(**{k: v for k, v in unmetered.items()
                                  if k in QUANTITY_NAMES and type(v) is int and v >= 0})
    return Snapshot(seq, agent_time, clean, denom if type(denom) is int and denom > 0 else None, outside)


def window_events(plan: DayPlan, by_seq: Contribution) -> Contribution:
    """The events' money of a plan's counted intervals: ``by_seq`` (the events between their snapshots
    by seq) with each interval's opening snapshot's ``unmetered`` money added and its closing
    snapshot's taken out (see the module docstring)."""
    total = by_seq
    for segment in plan.segments:
        if segment.delta is not None:
            total = total + segment.start.unmetered + _negated(segment.end.unmetered)
    return total


def _negated(c: Contribution) -> Contribution:
    return Contribution(-c.bets, -c.wins, -c.rounds, -c.cash_in, -c.cash_out)


# ---- planning and judging --------------------------------------------------------------------------

def plan_day(hall: str, device: str, day: dt.date, snapshots: Sequence[Snapshot], *,
             resets: Iterable[int] = (), rule: DayRule = UTC_MIDNIGHT) -> DayPlan:
    """Frame one gaming day from the device's snapshots (any order); ``resets`` are seqs of snapshots
    the agent re-baselined at (an ``integration``/``meters_reset`` follows them)."""
    start, end = day_bounds(day, rule)
    ordered = sorted(snapshots, key=lambda s: s.seq)
    before = [s for s in ordered if s.agent_time < start]
    inside = [s for s in ordered if start <= s.agent_time < end]
    if not inside:
        return DayPlan(hall, device, day, before[-1] if before else None, None, (), 0)
    chain = ([before[-1]] if before else []) + inside
    reset_seqs = set(resets)
    segments = []
    for first, second in itertools.pairwise(chain):
        if second.seq in reset_seqs:
            segments.append(Segment(first, second, None, "the agent reported a meter reset"))
            continue
        delta, why = meter_delta(first, second)
        segments.append(Segment(first, second, delta, why))
    return DayPlan(hall, device, day, chain[0], chain[-1], tuple(segments), len(inside))


def snapshot_before(snapshots: Sequence[Snapshot], seq: int) -> int | None:
    """The seq of the last snapshot before ``seq``: the agent writes its judgement of a snapshot (a
    ``meters_reset``, an ``anomaly``) right after that snapshot."""
    before = [s.seq for s in snapshots if s.seq < seq]
    return max(before) if before else None


def reset_snapshots(snapshots: Sequence[Snapshot], reset_event_seqs: Iterable[int]) -> set[int]:
    """Seqs of the snapshots the agent re-baselined at: each ``meters_reset`` record follows its snapshot."""
    found = (snapshot_before(snapshots, reset) for reset in reset_event_seqs)
    return {seq for seq in found if seq is not None}


def judged_in(plan: DayPlan, snapshots: Sequence[Snapshot], record_seqs: Iterable[int]) -> int:
    """How many of the agent's records about a snapshot (``anomaly``) are about one that closes a counted
    interval of ``plan``."""
    ends = {s.end.seq for s in plan.segments if s.delta is not None}
    return sum(1 for seq in record_seqs if snapshot_before(snapshots, seq) in ends)


def widen(plan: DayPlan, snapshots: Sequence[Snapshot], *, steps: int = 1,
          resets: Iterable[int] = ()) -> DayPlan | None:
    """The plan with up to ``steps`` more snapshot intervals on each side (where there are any), or
    None if there are none."""
    if plan.opening is None or plan.closing is None:
        return None
    ordered = sorted(snapshots, key=lambda s: s.seq)
    before = [s for s in ordered if s.seq < plan.opening.seq]
    after = [s for s in ordered if s.seq > plan.closing.seq]
    if not before and not after:
        return None
    reset_seqs = set(resets)

    def segment(first: Snapshot, second: Snapshot) -> Segment:
        if second.seq in reset_seqs:
            return Segment(first, second, None, "the agent reported a meter reset")
        delta, why = meter_delta(first, second)
        return Segment(first, second, delta, why)

    head = [*before[-steps:], plan.opening]
    tail = [plan.closing, *after[:steps]]
    segments = [*itertools.starmap(segment, itertools.pairwise(head)), *plan.segments,
                *itertools.starmap(segment, itertools.pairwise(tail))]
    return DayPlan(plan.hall, plan.device, plan.day, segments[0].start, segments[-1].end, tuple(segments),
                   plan.snapshots_in_day)


def as_boundary_timing(row: ReconRow) -> ReconRow:
    """``row`` whose residual a wider window explains (see the module docstring, "Boundaries")."""
    reasons = tuple(r if r != "unexplained" else "boundary_timing" for r in row.reasons)
    note = ("the residual is events written on the other side of a boundary snapshot than the meters "
            "counted them; it reverses on the neighbouring day")
    return ReconRow(row.plan, row.lines, row.ggr, row.unreconciled, reasons, (*row.notes, note))


def attribute_missed(plan: DayPlan, records: Iterable[MissedRecord]) -> Contribution:
    """The ``missed`` records that belong to the plan's counted intervals (see the module docstring)."""
    total = ZERO
    counted = [s for s in plan.segments if s.delta is not None]
    for record in records:
        for segment in counted:
            if record.meters_time is not None:
                inside = segment.start.agent_time < record.meters_time <= segment.end.agent_time
            else:
                inside = segment.start.seq < record.seq <= segment.end.seq
            if inside:
                total = total + record.amounts
                break
    return total


def judge(plan: DayPlan, events: Contribution, missed: Contribution, *, unreconciled: Contribution = ZERO,
          anomalies: int = 0) -> ReconRow:
    """Compare the plan's meter movement with the events' money (and the ``missed`` records)."""
    if plan.closing is None:
        return ReconRow(plan, {}, None, unreconciled, ("no_snapshot",),
                        ("no meters.snapshot of this device inside the day",))
    if not plan.segments:
        return ReconRow(plan, {}, None, unreconciled, ("single_snapshot",),
                        ("one snapshot and none before the day: no meter movement to compare",))
    meters: dict[str, int | None] = dict.fromkeys(QUANTITY_NAMES, 0)
    notes: list[str] = []
    any_counted = False
    for segment in plan.segments:
        if segment.delta is None:
            notes.append(f"seq {segment.start.seq}..{segment.end.seq} excluded: {segment.why}")
            continue
        any_counted = True
        for name in QUANTITY_NAMES:
            value, moved = meters[name], segment.delta.get(name)
            meters[name] = None if value is None or moved is None else value + moved
    if not any_counted:
        meters = dict.fromkeys(QUANTITY_NAMES, None)
    lines = {name: QuantityLine(meters[name], getattr(events, name), getattr(missed, name))
             for name in QUANTITY_NAMES}
    bets, wins = meters["bets"], meters["wins"]
    ggr = QuantityLine(None if bets is None or wins is None else bets - wins, events.ggr, missed.ggr)
    reasons: list[str] = []
    known = [line for line in lines.values() if line.meters is not None]
    if any(line.residual for line in known):
        reasons.append("unexplained")
    elif any(line.variance for line in known):
        reasons.append("missed_recorded")
    elif known:
        reasons.append("exact")
    if plan.excluded:
        reasons.append("meter_reset")
    if anomalies:
        reasons.append("events_exceed_meters")
        notes.append(f"the agent flagged {anomalies} time(s) that events exceeded the meters")
    if not reasons:
        reasons.append("unexplained")
        notes.append("the snapshots carry none of the reconciled meters")
    return ReconRow(plan, lines, ggr, unreconciled, tuple(sorted(set(reasons), key=REASONS.index)), tuple(notes))


# ---- helpers ---------------------------------------------------------------------------------------

def _merge(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for after, through in sorted(ranges):
        if out and out[-1][1] == after:
            out[-1] = (out[-1][0], through)
        else:
            out.append((after, through))
    return out


def _snap(snapshot: Snapshot | None) -> dict[str, Any] | None:
    if snapshot is None:
        return None
    return {"seq": snapshot.seq, "agent_time_us": snapshot.agent_time}


def _contribution_dict(c: Contribution) -> dict[str, int]:
    return {"bets": c.bets, "wins": c.wins, "rounds": c.rounds, "cash_in": c.cash_in, "cash_out": c.cash_out}
