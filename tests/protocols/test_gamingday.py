"""The one gaming day: bounds and day_of agree everywhere, DST days are 23 and 25 hours, hours are local."""

from __future__ import annotations

import datetime as dt
import random
import zoneinfo

import pytest

from protocols.sync.gamingday import UTC_MIDNIGHT, DayIndex, DayRule, DayRuleError, parse_start

HOUR = 3_600_000_000
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def us(text: str) -> int:
    """Microseconds of an RFC 3339 instant with offset."""
    return (dt.datetime.fromisoformat(text) - EPOCH) // dt.timedelta(microseconds=1)


KYIV = DayRule("Europe/Kyiv", "06:00")


def test_a_kyiv_night_belongs_to_the_evening_before() -> None:
    # 05:59 local on 2 Dec is still the gaming day of 1 Dec; 06:00 starts 2 Dec (Kyiv is UTC+2 in winter)
    assert KYIV.day_of(us("2026-12-02T05:59:59+02:00")) == dt.date(2026, 12, 1)
    assert KYIV.day_of(us("2026-12-02T06:00:00+02:00")) == dt.date(2026, 12, 2)
    assert KYIV.bounds(dt.date(2026, 12, 2)) == (us("2026-12-02T04:00:00+00:00"), us("2026-12-03T04:00:00+00:00"))


def test_dst_days_are_23_and_25_hours_and_tile() -> None:
    spring, autumn = dt.date(2026, 3, 29), dt.date(2026, 10, 25)   # EU changes: last Sundays of March/October
    for day, hours in ((spring - dt.timedelta(days=1), 23), (autumn - dt.timedelta(days=1), 25)):
        # a 06:00 start: the night of Saturday to Sunday holds the change
        start, end = KYIV.bounds(day)
        assert (end - start) // HOUR == hours
        assert KYIV.bounds(day + dt.timedelta(days=1))[0] == end
    midnight = DayRule("Europe/Kyiv", "00:00")
    start, end = midnight.bounds(spring)
    assert (end - start) // HOUR == 23


def test_day_of_agrees_with_bounds_for_random_instants_in_many_zones() -> None:
    rnd = random.Random(7)
    zones = ["UTC", "Europe/Kyiv", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe",
             "America/Sao_Paulo", "Pacific/Chatham", "Asia/Beirut"]
    for _ in range(3000):
        rule = DayRule(rnd.choice(zones), f"{rnd.randrange(24):02d}:{rnd.choice((0, 15, 30, 45)):02d}")
        t = us("2020-01-01T00:00:00+00:00") + rnd.randrange(7 * 365 * 24) * HOUR + rnd.randrange(HOUR)
        day = rule.day_of(t)
        start, end = rule.bounds(day)
        assert start <= t < end, (rule, t, day)


def test_the_two_one_oclock_hours_of_a_fall_back_night_are_two_buckets() -> None:
    rule = DayRule("America/New_York", "06:00")
    first, second = us("2026-11-01T01:30:00-04:00"), us("2026-11-01T01:30:00-05:00")
    assert second - first == HOUR
    assert rule.hour_of(first) == us("2026-11-01T01:00:00-04:00")
    assert rule.hour_of(second) == us("2026-11-01T01:00:00-05:00")
    index = DayIndex(rule)
    day, hour = index.day_hour(second)
    assert (day, hour) == ("2026-10-31", rule.hour_of(second))
    # the index agrees with the rule over the whole 25-hour day, minute by minute
    start, end = rule.bounds(dt.date(2026, 10, 31))
    assert (end - start) // HOUR == 25
    buckets = set()
    for t in range(start, end, 60_000_000):
        assert index.day_hour(t) == (rule.day_of(t).isoformat(), rule.hour_of(t))
        buckets.add(rule.hour_of(t))
    assert len(buckets) == 25


def test_half_hour_zones_have_buckets_at_half_past_utc() -> None:
    rule = DayRule("Asia/Kolkata", "06:00")
    t = us("2026-12-02T10:47:00+05:30")
    assert rule.hour_of(t) == us("2026-12-02T10:00:00+05:30") == us("2026-12-02T04:30:00+00:00")


def test_a_start_that_does_not_exist_on_the_spring_forward_day() -> None:
    # Kyiv jumps from 03:00 to 04:00 on 29 March 2026: a 03:30 start is read as zoneinfo does (fold=0)
    rule = DayRule("Europe/Kyiv", "03:30")
    start, end = rule.bounds(dt.date(2026, 3, 29))
    expected = dt.datetime(2026, 3, 29, 3, 30, tzinfo=zoneinfo.ZoneInfo("Europe/Kyiv"))
    assert start == (expected - EPOCH) // dt.timedelta(microseconds=1)
    assert rule.day_of(start) == dt.date(2026, 3, 29) and rule.day_of(start - 1) == dt.date(2026, 3, 28)
    assert end == rule.bounds(dt.date(2026, 3, 30))[0]


def test_the_default_is_utc_midnight() -> None:
    assert UTC_MIDNIGHT.day_of(us("2026-12-02T00:00:00+00:00")) == dt.date(2026, 12, 2)
    assert UTC_MIDNIGHT.day_of(us("2026-12-01T23:59:59+00:00")) == dt.date(2026, 12, 1)


@pytest.mark.parametrize("zone", ["", "Mars/Olympus", "../etc/passwd", "/etc/localtime", "Europe/"])
def test_bad_zones_are_refused(zone: str) -> None:
    with pytest.raises(DayRuleError):
        DayRule(zone, "06:00")


@pytest.mark.parametrize("start", ["6:00", "24:00", "06:60", "06:00:00", "", "0600", " 06:00"])
def test_bad_starts_are_refused(start: str) -> None:
    with pytest.raises(DayRuleError):
        parse_start(start)


@pytest.mark.parametrize("rule", [KYIV, DayRule("America/New_York", "01:30"), DayRule("Asia/Kolkata", "06:30"),
                                  DayRule("Australia/Lord_Howe", "02:00")])
def test_an_index_span_holds_exactly_the_instants_of_its_day_and_hour(rule: DayRule) -> None:
    # across both DST nights of 2026 (Lord Howe moves by 30 minutes; 01:30 and 06:30 starts cut an hour in two)
    index = DayIndex(rule)
    for night in (us("2026-03-08T00:00:00+00:00"), us("2026-03-29T00:00:00+00:00"), us("2026-04-04T12:00:00+00:00"),
                  us("2026-10-04T12:00:00+00:00"), us("2026-10-25T00:00:00+00:00"), us("2026-11-01T00:00:00+00:00")):
        t = night - 30 * HOUR
        while t < night + 30 * HOUR:
            lo, hi, day, hour = index.span(t)
            assert lo <= t < hi
            assert (day, hour) == (rule.day_of(t).isoformat(), rule.hour_of(t))
            for inside in (lo, hi - 1):
                assert (rule.day_of(inside).isoformat(), rule.hour_of(inside)) == (day, hour)
            assert (rule.day_of(hi).isoformat(), rule.hour_of(hi)) != (day, hour)   # the span is maximal
            assert (rule.day_of(lo - 1).isoformat(), rule.hour_of(lo - 1)) != (day, hour)
            t += 7 * 60_000_000
