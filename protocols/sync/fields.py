"""Constrained scalar types shared by every message, and the protocol constants.

The constraints are msgspec ``Meta`` annotations so they are enforced in C while decoding, which is
both stricter and much faster than checking them in Python per event. Patterns end in ``\\Z`` rather
than ``$`` because Python's ``$`` also matches before a trailing newline.
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

from msgspec import Meta

VERSION: Final = 1
"""The only protocol version this build speaks; every message carries it as ``v``."""

GENESIS_HASH: Final = "0" * 64
"""``prev_hash`` of an agent's first event (seq 1)."""

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

HALL_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}\Z"
"""Hall IDs go into MQTT topics and broker ACLs, so they exclude ``/``, ``+``, ``#``, ``$`` and spaces."""

ID_PATTERN: Final = r"^[A-Za-z0-9_.:-]{1,64}\Z"
"""Device IDs, game IDs and data keys: printable ASCII only, so key order is the same in every language."""

HALL_RE: Final = re.compile(HALL_PATTERN)
ID_RE: Final = re.compile(ID_PATTERN)

Version = Literal[1]
HallId = Annotated[str, Meta(pattern=HALL_PATTERN)]
Ident = Annotated[str, Meta(pattern=ID_PATTERN)]
Seq = Annotated[int, Meta(ge=1, le=INT64_MAX)]
SeqOrZero = Annotated[int, Meta(ge=0, le=INT64_MAX)]
Count = Annotated[int, Meta(ge=1, le=INT64_MAX)]
Micros = Annotated[int, Meta(ge=0, le=INT64_MAX)]
"""A point in time: integer microseconds since 1970-01-01T00:00:00Z (no floats, no time zones)."""
Sha256Hex = Annotated[str, Meta(pattern=r"^[0-9a-f]{64}\Z")]
SignatureHex = Annotated[str, Meta(pattern=r"^[0-9a-f]{128}\Z")]
UuidStr = Annotated[str, Meta(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")]
Text = Annotated[str, Meta(max_length=2000)]

# Cheap-to-decode variants for the per-event hot path: msgspec checks only the length (in C) and
# ``events.check_fields`` applies the patterns in Python, caching repeated values and matching unique
# ones (ids, hashes) in bulk; msgspec's per-string pattern check alone would cost ~2.5 µs per event.
UuidLen = Annotated[str, Meta(min_length=36, max_length=36)]
HashLen = Annotated[str, Meta(min_length=64, max_length=64)]
HallLen = Annotated[str, Meta(min_length=1, max_length=64)]
IdentLen = Annotated[str, Meta(min_length=1, max_length=64)]

UUID_ITEM: Final = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
HASH_ITEM: Final = r"[0-9a-f]{64}"
UUID_RE: Final = re.compile(UUID_ITEM + r"\Z")
HASH_RE: Final = re.compile(HASH_ITEM + r"\Z")


class CachedMatcher:
    """A pattern check that remembers values already accepted (device IDs, data keys repeat a lot).

    The memory is bounded: once ``limit`` values are remembered it starts over.
    """

    def __init__(self, pattern: re.Pattern[str], limit: int = 65_536) -> None:
        self._pattern = pattern
        self._limit = limit
        self.seen: set[str] = set()
        """Values accepted so far; hot loops may test membership here before calling."""

    def __call__(self, value: object) -> bool:
        """True if ``value`` is a str matching the pattern."""
        if type(value) is not str:
            return False
        if value in self.seen:
            return True
        if self._pattern.match(value) is None:
            return False
        if len(self.seen) >= self._limit:
            self.seen.clear()
        self.seen.add(value)
        return True


is_hall: Final = CachedMatcher(HALL_RE)
is_ident: Final = CachedMatcher(ID_RE)


def bulk_match(item: str, values: list[str]) -> int | None:
    """Index of the first value not fully matching ``item`` (a newline-free pattern), else None.

    One regex pass over the newline-joined values costs far less than one call per value.
    """
    joined = "\n".join(values)
    if joined.count("\n") == len(values) - 1 and _bulk_pattern(item).fullmatch(joined) is not None:
        return None
    single = re.compile(item + r"\Z")
    for index, value in enumerate(values):
        if single.match(value) is None:
            return index
    return None


_BULK: dict[str, re.Pattern[str]] = {}


def _bulk_pattern(item: str) -> re.Pattern[str]:
    pattern = _BULK.get(item)
    if pattern is None:
        pattern = _BULK[item] = re.compile(rf"(?:{item}\n)*{item}")
    return pattern
