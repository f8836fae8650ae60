"""SAS date and time fields (LP 7E/7F): date MMDDYYYY and time HHMMSS, as packed-BCD integers."""

from __future__ import annotations

import datetime as dt

from .errors import FrameError


def to_sas(moment: dt.datetime) -> tuple[int, int]:
    """(date, time) integers for LP 7F, e.g. 2025-06-15 13:45:30 → (6152025, 134530)."""
    return (moment.month * 1_000_000 + moment.day * 10_000 + moment.year,
            moment.hour * 10_000 + moment.minute * 100 + moment.second)


def from_sas(date: int, time: int) -> dt.datetime:
    """The naive local datetime an EGM reports; raises FrameError for impossible dates."""
    month, rest = divmod(date, 1_000_000)
    day, year = divmod(rest, 10_000)
    hour, rest = divmod(time, 10_000)
    minute, second = divmod(rest, 100)
    try:
        return dt.datetime(year, month, day, hour, minute, second)
    except ValueError as exc:
        raise FrameError(f"EGM clock {date:08d} {time:06d} is not a date: {exc}") from exc
