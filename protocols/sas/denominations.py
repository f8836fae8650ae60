"""SAS denomination codes (Table C-4) → value in cents, as LP 1F, LP 53 and the B0 preamble carry them.

Both ends need the same table to turn a game's denomination code into money: the simulator to
describe its games, the host to convert per-game and per-denomination meters to minor units.
"""

from __future__ import annotations

DENOMINATION_CENTS: dict[int, int] = {
    0x01: 1, 0x02: 5, 0x03: 10, 0x04: 25, 0x05: 50, 0x06: 100, 0x07: 500, 0x08: 1000, 0x09: 2000,
    0x0A: 10000, 0x0B: 20, 0x0C: 200, 0x0D: 250, 0x0E: 2500, 0x0F: 5000, 0x10: 20000, 0x11: 25000,
    0x12: 50000, 0x13: 100000, 0x14: 200000, 0x15: 250000, 0x16: 500000, 0x17: 2, 0x18: 3, 0x19: 15,
    0x1A: 40,
}
CODE_OF_CENTS: dict[int, int] = {cents: code for code, cents in DENOMINATION_CENTS.items()}


def denomination_cents(code: int) -> int:
    """Cents of a SAS denomination code; KeyError for a code the table does not define."""
    return DENOMINATION_CENTS[code]


def denomination_code(cents: int) -> int:
    """The SAS code of a denomination in cents; KeyError when SAS has no code for it."""
    return CODE_OF_CENTS[cents]
