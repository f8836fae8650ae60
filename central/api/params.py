"""Query-parameter parsing and time formatting for the HTTP API; every refusal names its parameter.

Empty values (``?hall=``) count as absent, repeated parameters use the first value, unknown ones are
ignored. A bad value raises :class:`ApiError` (400 ``bad_request``), which the middleware turns into
the JSON error body.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, overload

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_US: Final = dt.timedelta(microseconds=1)
_DATE_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
_RFC3339_RE: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))\Z")
_INT_RE: Final = re.compile(r"\d{1,19}\Z")
_MAX_I64: Final = 2**63 - 1


class ApiError(Exception):
    """A refusal with an HTTP status, a machine code and a human message."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def bad_request(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


def rfc3339(micros: int | None) -> str | None:
    """``2026-01-01T00:00:00.000000Z`` for integer microseconds since the epoch (exact, no floats)."""
    if micros is None:
        return None
    return (_EPOCH + dt.timedelta(microseconds=micros)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def text(query: Mapping[str, str], name: str) -> str | None:
    value = query.get(name)
    return value if value else None


@overload
def choice(query: Mapping[str, str], name: str, allowed: Sequence[str], default: str) -> str: ...
@overload
def choice(query: Mapping[str, str], name: str, allowed: Sequence[str], default: None = None) -> str | None: ...
def choice(query: Mapping[str, str], name: str, allowed: Sequence[str], default: str | None = None) -> str | None:
    value = text(query, name)
    if value is None:
        return default
    if value not in allowed:
        raise bad_request(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def integer(query: Mapping[str, str], name: str, *, low: int = 0, high: int = _MAX_I64,
            default: int | None = None) -> int | None:
    value = text(query, name)
    if value is None:
        return default
    if _INT_RE.match(value) is None or not low <= int(value) <= high:
        raise bad_request(f"{name} must be an integer from {low} to {high}, not {value!r}")
    return int(value)


def date(query: Mapping[str, str], name: str) -> dt.date | None:
    """A calendar day ``YYYY-MM-DD``."""
    value = text(query, name)
    if value is None:
        return None
    try:
        if _DATE_RE.match(value) is None:
            raise ValueError
        return dt.date.fromisoformat(value)
    except ValueError:
        raise bad_request(f"{name} must be a date YYYY-MM-DD, not {value!r}") from None


def instant(query: Mapping[str, str], name: str) -> int | None:
    """A point in time as integer microseconds: RFC 3339 with an offset, or an integer of microseconds."""
    value = text(query, name)
    if value is None:
        return None
    if _INT_RE.match(value) is not None and int(value) <= _MAX_I64:
        return int(value)
    found = _RFC3339_RE.match(value)
    try:
        if found is None:
            raise ValueError
        year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = found.groups()
        offset = dt.timedelta(0) if zulu else (1 if sign == "+" else -1) * dt.timedelta(hours=int(off_h),
                                                                                       minutes=int(off_m))
        when = dt.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                           int((fraction or "0").ljust(6, "0")[:6]), tzinfo=dt.timezone(offset))
        return (when - _EPOCH) // _ONE_US
    except ValueError:
        raise bad_request(f"{name} must be RFC 3339 with an offset (e.g. 2026-01-01T00:00:00Z) or integer "
                          f"microseconds since the epoch, not {value!r}") from None


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}
