"""How a period of gaming days is read from the rollups: whole months from ``rollups_monthly``, a
partial month either day by day or as its month minus the days outside, whichever reads fewer days.
(That the sums are right on real data is shown against the events in test_gaming_days.py.)"""

from __future__ import annotations

import datetime as dt

from central.store.sqlhelpers import period_terms

D = dt.date.fromisoformat


def test_ninety_days_ending_on_the_29th_read_three_months_minus_one_day() -> None:
    terms = period_terms(D("2026-09-01"), D("2026-11-29"))
    assert terms.months == [("2026-09", "2026-11")]
    assert terms.minus == [(D("2026-11-30"), D("2026-11-30"))]
    assert terms.days == []


def test_a_few_days_are_read_day_by_day() -> None:
    terms = period_terms(D("2026-11-10"), D("2026-11-12"))
    assert (terms.days, terms.months, terms.minus) == ([(D("2026-11-10"), D("2026-11-12"))], [], [])
    one = period_terms(D("2026-11-29"), D("2026-11-29"))
    assert (one.days, one.months, one.minus) == ([(D("2026-11-29"), D("2026-11-29"))], [], [])


def test_both_ends_choose_on_their_own() -> None:
    terms = period_terms(D("2026-09-28"), D("2026-12-20"))   # 3 days of September, 20 of December
    assert terms.days == [(D("2026-09-28"), D("2026-09-30"))]
    assert terms.months == [("2026-10", "2026-12")]
    assert terms.minus == [(D("2026-12-21"), D("2026-12-31"))]


def test_inside_one_month_both_sides_are_subtracted() -> None:
    terms = period_terms(D("2026-10-03"), D("2026-10-29"))
    assert terms.months == [("2026-10", "2026-10")]
    assert terms.minus == [(D("2026-10-01"), D("2026-10-02")), (D("2026-10-30"), D("2026-10-31"))]
    assert terms.days == []


def test_open_bounds_and_year_ends() -> None:
    assert period_terms(None, None).months == [(None, None)]
    tail = period_terms(D("2026-12-02"), None)   # December minus the 1st, then every month after
    assert (tail.months, tail.minus, tail.days) == ([("2026-12", None)], [(D("2026-12-01"), D("2026-12-01"))], [])
    head = period_terms(None, D("2027-01-30"))
    assert (head.months, head.minus) == ([(None, "2027-01")], [(D("2027-01-31"), D("2027-01-31"))])


def test_every_day_of_the_period_is_counted_once() -> None:
    """Counting days: the terms add each day of the period exactly once and nothing outside."""
    start = D("2026-01-01")
    for offset in range(0, 400, 7):
        for length in (1, 2, 14, 16, 29, 31, 45, 70, 120):
            a = start + dt.timedelta(days=offset)
            b = a + dt.timedelta(days=length - 1)
            terms = period_terms(a, b)
            count: dict[dt.date, int] = {}
            day = D("2025-12-01")
            while day <= D("2027-06-30"):
                month = day.isoformat()[:7]
                n = sum(lo <= day <= hi for lo, hi in terms.days) - sum(lo <= day <= hi for lo, hi in terms.minus)
                n += sum((lo is None or lo <= month) and (hi is None or month <= hi) for lo, hi in terms.months)
                if n:
                    count[day] = n
                day += dt.timedelta(days=1)
            want = {a + dt.timedelta(days=i): 1 for i in range(length)}
            assert count == want, (a, b, terms)
