"""Hall-local gaming days in the API: which day "today" is for each hall, and what zone a report used.

Every stored day (rollups, hourly rollups, device days, reconciliation rows) is already the hall's own
gaming day (:mod:`protocols.sync.gamingday`), so ``from=2026-12-01&to=2026-12-02`` means those gaming
days of each hall, whatever its zone. Only "today" differs between halls (a hall in Kyiv is in
tomorrow's gaming day while one in Lisbon is not yet): the token ``today`` in ``from``/``to`` asks each
hall for its own current gaming day, and a network report then runs once per distinct date and sums.
Every report answer carries ``days``: each hall's time zone and day start, so a reader knows which
day it was given.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from central.repos.halls import HallRecord, HallRepository
from central.repos.reports import GgrRow
from protocols.sync.gamingday import UTC_MIDNIGHT, DayRule, DayRuleError, day_bound, is_day_text

from . import params as p

TODAY: Final = "today"


@dataclass(frozen=True, slots=True)
class Slice:
    """One query of a report: a day range over a set of halls (None: the caller's whole scope)."""

    day_from: dt.date | None
    day_to: dt.date | None
    halls: tuple[str, ...] | None


def rules_in_scope(records: Sequence[HallRecord], hall: str | None,
                   halls: Sequence[str] | None) -> dict[str, DayRule]:
    """Each hall's day rule, for the halls a request may see."""
    return {r.id: r.day_rule for r in records
            if (hall is None or r.id == hall) and (halls is None or r.id in halls)}


def days_body(rules: Mapping[str, DayRule]) -> dict[str, dict[str, str]]:
    """The ``days`` member of a report: hall → its time zone and gaming-day start."""
    return {h: rule.as_dict() for h, rule in sorted(rules.items())}


def today(rules: Mapping[str, DayRule], now: int) -> dt.date:
    """The latest current gaming day among the halls (UTC's when there are none): a default period
    that includes every hall's today."""
    return max((rule.day_of(now) for rule in rules.values()), default=UTC_MIDNIGHT.day_of(now))


def period(query: Mapping[str, str], rules: Mapping[str, DayRule], now: int) -> list[Slice]:
    """The queries a report's ``from``/``to`` stand for: one when both are dates (or absent), one per
    distinct "today" when either is the token ``today``."""
    raw_from, raw_to = query.get("from"), query.get("to")
    if TODAY not in (raw_from, raw_to):
        day_from, day_to = p.date(query, "from"), p.date(query, "to")
        if day_from is not None and day_to is not None and day_from > day_to:
            raise p.bad_request(f"from ({day_from}) is after to ({day_to})")
        return [Slice(day_from, day_to, None)]
    fixed_from = None if raw_from == TODAY else p.date(query, "from")
    fixed_to = None if raw_to == TODAY else p.date(query, "to")
    by_day: dict[dt.date, list[str]] = {}
    for hall, rule in rules.items():
        by_day.setdefault(rule.day_of(now), []).append(hall)
    slices = []
    for day, members in sorted(by_day.items()):
        day_from = day if raw_from == TODAY else fixed_from
        day_to = day if raw_to == TODAY else fixed_to
        if day_from is not None and day_to is not None and day_from > day_to:
            continue   # e.g. to=today before a fixed from: nothing for these halls
        slices.append(Slice(day_from, day_to, tuple(sorted(members))))
    return slices


def is_day(value: str) -> bool:
    """A ``from``/``to`` value naming a gaming day (``YYYY-MM-DD`` or ``today``) rather than an instant."""
    return is_day_text(value)


def window(query: Mapping[str, str], rules: Mapping[str, DayRule], now: int) -> tuple[int | None, int | None]:
    """``from``/``to`` of an event-level route (events, integration log, audit, export) as [from, to) µs.

    One date grammar with the reports (:func:`protocols.sync.gamingday.day_bound`): an instant (RFC 3339
    or µs) is taken as it is; a date ``YYYY-MM-DD`` or ``today`` means that whole gaming day of the halls
    in scope, so ``from=2026-12-01&to=2026-12-02`` covers both days, exactly as in ``/reports/ggr``. Halls
    keeping different gaming days have no common instant for a date: a 400 asking for ``hall=``.
    """
    def bound(name: str, end: bool) -> int | None:
        raw = query.get(name)
        if raw is None or not is_day(raw):
            return p.instant(query, name)
        try:
            return day_bound(raw, rules.values(), now, end=end)
        except DayRuleError as exc:
            raise p.bad_request(f"{name}={exc}: give hall= or RFC 3339 instants") from None

    return bound("from", False), bound("to", True)


async def window_in_scope(query: Mapping[str, str], registry: HallRepository, hall: str | None,
                          halls: Sequence[str] | None, now: int) -> tuple[int | None, int | None]:
    """:func:`window` for a request's scope; the halls' day rules are read only when a bound is a day."""
    if not any(v is not None and is_day(v) for v in (query.get("from"), query.get("to"))):
        return p.instant(query, "from"), p.instant(query, "to")
    return window(query, rules_in_scope(await registry.halls(), hall, halls), now)


def merge(parts: Sequence[Sequence[GgrRow]]) -> list[GgrRow]:
    """Sum the rows of several slices by (hall, key), in the order of their keys."""
    if len(parts) == 1:
        return list(parts[0])
    total: dict[tuple[str | None, str], list[int]] = {}
    for rows in parts:
        for row in rows:
            acc = total.setdefault((row.hall, row.key), [0, 0, 0, 0, 0])
            for index, value in enumerate((row.bets, row.wins, row.rounds, row.cash_in, row.cash_out)):
                acc[index] += value
    return [GgrRow(key, money[0], money[1], money[2], money[3], money[4], hall=hall)
            for (hall, key), money in sorted(total.items(), key=lambda item: (item[0][0] or "", item[0][1]))]


def slice_scope(piece: Slice, halls: Sequence[str] | None) -> Sequence[str] | None:
    """The hall scope of one slice within the request's own scope."""
    if piece.halls is None:
        return halls
    return [h for h in piece.halls if halls is None or h in halls]


def describe(rules: Mapping[str, DayRule]) -> dict[str, Any]:
    return {"days": days_body(rules)}
