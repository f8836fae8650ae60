"""The one definition of a gaming day (and of a report hour), used by the agent and central alike.

A hall has an IANA time zone and a gaming-day start (a local time of day, ``06:00`` in most casinos:
the night's play belongs to the evening's date). The gaming day ``D`` is the instant range
``[local(D, start), local(D + 1, start))`` converted to UTC. Across a DST change that range is 23 or
25 hours long; every instant still belongs to exactly one gaming day, and :meth:`DayRule.day_of`
agrees with :meth:`DayRule.bounds` by construction (it is checked against them).

A local start time that does not exist on a spring-forward day (02:30 in a zone that jumps from 02:00
to 03:00) is read as zoneinfo reads it (``fold=0``: the offset before the change), so the day starts
at the instant the clock shows 03:30; one that occurs twice (fall-back) is the first of the two.

Report hours are local clock hours: the bucket of an instant is the UTC instant at which its local
hour began (so the two 01:00 hours of a fall-back night are two buckets, and a zone 5:30 ahead of
UTC has buckets at :30 UTC).

Times are integer microseconds since the epoch (UTC), as everywhere in the sync protocol. Pure: no
clock is read here.
"""

from __future__ import annotations

import bisect
import datetime as dt
import re
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final, NamedTuple

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US: Final = dt.timedelta(microseconds=1)
_MICROS_PER_HOUR: Final = 3_600_000_000
_START_RE: Final = re.compile(r"(?:[01][0-9]|2[0-3]):[0-5][0-9]")

DEFAULT_ZONE: Final = "UTC"
DEFAULT_START: Final = "00:00"
"""What a hall without settings uses (and what every hall used before per-hall settings existed)."""


class DayRuleError(ValueError):
    """A time zone or gaming-day start that is not valid."""


def parse_start(text: str) -> dt.time:
    """``HH:MM`` (24-hour) as a time; anything else raises :class:`DayRuleError`."""
    if not isinstance(text, str) or not _START_RE.fullmatch(text):
        raise DayRuleError(f"gaming-day start must be HH:MM (00:00..23:59), not {text!r}")
    return dt.time(int(text[:2]), int(text[3:]))


@lru_cache(maxsize=256)
def _zone(name: str) -> zoneinfo.ZoneInfo:
    if not isinstance(name, str) or not name or name.startswith(("/", ".")) or ".." in name:
        raise DayRuleError(f"unknown time zone {name!r}")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise DayRuleError(f"unknown time zone {name!r} (an IANA name such as Europe/Kyiv)") from exc


def _micros(moment: dt.datetime) -> int:
    return (moment - _EPOCH) // _US


@dataclass(frozen=True, slots=True)
class DayRule:
    """A hall's time zone and gaming-day start; validated on construction."""

    zone: str = DEFAULT_ZONE
    start: str = DEFAULT_START
    _tz: zoneinfo.ZoneInfo = field(init=False, repr=False, compare=False)
    _start: dt.time = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_tz", _zone(self.zone))
        object.__setattr__(self, "_start", parse_start(self.start))

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return self._tz

    def as_dict(self) -> dict[str, str]:
        return {"timezone": self.zone, "gaming_day_start": self.start}

    def bounds(self, day: dt.date) -> tuple[int, int]:
        """``[start, end)`` of gaming day ``day`` in microseconds since the epoch."""
        return _bounds(self.zone, self.start, day)

    def day_of(self, micros: int) -> dt.date:
        """The gaming day an instant belongs to."""
        local = (_EPOCH + micros * _US).astimezone(self._tz)
        shift = dt.timedelta(hours=self._start.hour, minutes=self._start.minute)
        day = (local.replace(tzinfo=None) - shift).date()
        start, end = self.bounds(day)   # wall-clock arithmetic can be an hour off around a DST change
        if micros < start:
            return day - dt.timedelta(days=1)
        if micros >= end:
            return day + dt.timedelta(days=1)
        return day

    def hour_of(self, micros: int) -> int:
        """The UTC instant (microseconds) at which the instant's local clock hour began."""
        local = (_EPOCH + micros * _US).astimezone(self._tz)
        return _micros(local.replace(minute=0, second=0, microsecond=0))

    def today(self, now_micros: int) -> dt.date:
        return self.day_of(now_micros)


@lru_cache(maxsize=65_536)
def _bounds(zone: str, start: str, day: dt.date) -> tuple[int, int]:
    tz = _zone(zone)
    at = parse_start(start)
    first = dt.datetime.combine(day, at, tzinfo=tz)
    after = dt.datetime.combine(day + dt.timedelta(days=1), at, tzinfo=tz)
    return _micros(first), _micros(after)


class DayIndex:
    """Fast :meth:`DayRule.day_of` / :meth:`DayRule.hour_of` for runs of nearby instants (ingest's
    hot path): it remembers the last day's bounds and its hour boundaries."""

    __slots__ = ("_day", "_end", "_hours", "_start", "rule")

    def __init__(self, rule: DayRule) -> None:
        self.rule = rule
        self._start = 1
        self._end = 0
        self._day = dt.date(1970, 1, 1)
        self._hours: tuple[int, ...] = ()

    def _load(self, micros: int) -> None:
        day = self.rule.day_of(micros)
        self._day = day
        self._start, self._end, self._hours = _day_table(self.rule, day)

    def day(self, micros: int) -> str:
        """``YYYY-MM-DD`` of the gaming day of ``micros``."""
        if not self._start <= micros < self._end:
            self._load(micros)
        return self._day.isoformat()

    def day_hour(self, micros: int) -> tuple[str, int]:
        """The gaming day (ISO) and the local hour's start (UTC microseconds) of ``micros``."""
        if not self._start <= micros < self._end:
            self._load(micros)
        hours = self._hours
        lo, hi = 0, len(hours)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if hours[mid] <= micros:
                lo = mid
            else:
                hi = mid
        hour = hours[lo] if hours and hours[lo] <= micros else self.rule.hour_of(micros)
        return self._day.isoformat(), hour

    def span(self, micros: int) -> Span:
        """:meth:`day_hour` of ``micros`` and the instants ``[lo, hi)`` around it that share both (its
        local hour, cut at the gaming day's bounds): a caller keying a run of nearby instants reuses the
        keys while ``lo <= t < hi`` (one comparison instead of a search and a date formatting)."""
        day, hour = self.day_hour(micros)
        hours = self._hours
        at = bisect.bisect_right(hours, micros) - 1
        if at < 0 or hours[at] != hour:   # not in the day's table (day_hour's fallback): this instant only
            return Span(micros, micros + 1, day, hour)
        end = hours[at + 1] if at + 1 < len(hours) else self._end
        return Span(max(hour, self._start), min(end, self._end), day, hour)


class Span(NamedTuple):
    """Instants ``[lo, hi)`` of one gaming day (ISO) and one local hour (its start in UTC microseconds)."""

    lo: int
    hi: int
    day: str
    hour: int


@lru_cache(maxsize=4096)
def _day_table(rule: DayRule, day: dt.date) -> tuple[int, int, tuple[int, ...]]:
    """A gaming day's bounds and the starts of its local clock hours (UTC microseconds).

    Cached: ingest makes a :class:`DayIndex` per batch, and a live batch of a few events would
    otherwise pay the two dozen time-zone conversions of its day's hours each time."""
    start, end = rule.bounds(day)
    hours: list[int] = []
    t = rule.hour_of(start)
    while t < end:
        hours.append(t)
        # the next local hour starts at most 1 h (+ a DST jump) later; step in UTC hours and re-floor
        nxt = rule.hour_of(t + _MICROS_PER_HOUR)
        t = nxt if nxt > t else rule.hour_of(t + 2 * _MICROS_PER_HOUR)
    return start, end, tuple(hours)


@lru_cache(maxsize=1024)
def day_rule(zone: str | None, start: str | None) -> DayRule:
    """The (cached) rule for stored settings; None stands for the defaults."""
    return DayRule(zone or DEFAULT_ZONE, start or DEFAULT_START)


UTC_MIDNIGHT: Final = DayRule()
"""The rule of a hall with no settings: UTC calendar days (what every report used before)."""

TODAY: Final = "today"
_DAY_TEXT_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}\Z")


def is_day_text(text: str) -> bool:
    """A period bound naming a gaming day (``YYYY-MM-DD`` or ``today``) rather than an instant."""
    return text == TODAY or _DAY_TEXT_RE.match(text) is not None


def day_bound(text: str, rules: Iterable[DayRule], now: int, *, end: bool) -> int:
    """The instant a day bound stands for in the one date grammar of reports, API and CLI: a ``from``
    day is that gaming day's start, a ``to`` day its end (the day is included, as in the reports).

    Halls keeping different gaming days have no common instant for a date: :class:`DayRuleError` names
    them, and the caller asks for one hall or an instant. No halls: UTC days.
    """
    distinct = set(rules) or {UTC_MIDNIGHT}
    if len(distinct) > 1:
        kept = ", ".join(sorted(f"{r.zone} {r.start}" for r in distinct))
        raise DayRuleError(f"{text} names a gaming day, and the halls keep different ones ({kept})")
    (rule,) = distinct
    if text == TODAY:
        day = rule.today(now)
    else:
        try:
            day = dt.date.fromisoformat(text)
        except ValueError:
            raise DayRuleError(f"{text!r} is not a date YYYY-MM-DD") from None
    start, stop = rule.bounds(day)
    return stop if end else start
