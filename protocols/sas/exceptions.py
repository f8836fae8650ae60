"""General-poll exception codes, priority exceptions and real-time event (RTE) data.

The table is notes/sas-protocol.md §4.1 (Monaco's enum and saspy's table agree code for code).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .bcd import decode_bcd, encode_bcd
from .errors import FrameError

NO_ACTIVITY = 0x00

EXCEPTION_NAMES: dict[int, str] = {
    0x00: "no activity",
    0x11: "slot door opened", 0x12: "slot door closed",
    0x13: "drop door opened", 0x14: "drop door closed",
    0x15: "card cage opened", 0x16: "card cage closed",
    0x17: "AC power applied", 0x18: "AC power lost",
    0x19: "cashbox door opened", 0x1A: "cashbox door closed",
    0x1B: "cashbox removed", 0x1C: "cashbox installed",
    0x1D: "belly door opened", 0x1E: "belly door closed",
    0x1F: "no activity, waiting for player input",
    0x20: "general tilt", 0x21: "coin in tilt", 0x22: "coin out tilt", 0x23: "hopper empty",
    0x24: "extra coin paid", 0x25: "diverter malfunction",
    0x27: "cashbox full", 0x28: "bill jam", 0x29: "bill acceptor hardware failure",
    0x2A: "reverse bill detected", 0x2B: "bill rejected", 0x2C: "counterfeit bill detected",
    0x2D: "reverse coin in detected", 0x2E: "cashbox near full", 0x2F: "bill acceptor version changed",
    0x31: "CMOS RAM error (data recovered from EEPROM)", 0x32: "CMOS RAM error (no data recovered)",
    0x33: "CMOS RAM error (bad device)", 0x34: "EEPROM error (data error)",
    0x35: "EEPROM error (bad device)", 0x36: "EPROM error (different checksum, version changed)",
    0x37: "EPROM error (bad checksum compare)", 0x38: "partitioned EPROM error (version changed)",
    0x39: "partitioned EPROM error (bad checksum compare)",
    0x3A: "memory error reset (RAM cleared)", 0x3B: "low backup battery",
    0x3C: "operator changed options", 0x3D: "cash-out ticket printed", 0x3E: "handpay validated",
    0x3F: "validation ID not configured",
    0x40: "reel tilt", 0x41: "reel 1 tilt", 0x42: "reel 2 tilt", 0x43: "reel 3 tilt",
    0x44: "reel 4 tilt", 0x45: "reel 5 tilt", 0x46: "reel mechanism disconnected",
    0x47: "$1 bill accepted", 0x48: "$5 bill accepted", 0x49: "$10 bill accepted",
    0x4A: "$20 bill accepted", 0x4B: "$50 bill accepted", 0x4C: "$100 bill accepted",
    0x4D: "$2 bill accepted", 0x4E: "$500 bill accepted", 0x4F: "bill accepted",
    0x50: "$200 bill accepted", 0x51: "handpay pending", 0x52: "handpay was reset",
    0x53: "no progressive information for 5 seconds", 0x54: "progressive win",
    0x55: "player cancelled handpay request", 0x56: "SAS progressive level hit",
    0x57: "system validation request",
    0x60: "printer communication error", 0x61: "printer paper out",
    0x66: "cash-out button pressed", 0x67: "ticket inserted", 0x68: "ticket transfer complete",
    0x69: "AFT transfer complete", 0x6A: "AFT request for host cash-out",
    0x6B: "AFT request for host to cash out win", 0x6C: "AFT request to register",
    0x6D: "AFT registration acknowledged", 0x6E: "AFT registration cancelled", 0x6F: "game locked",
    0x70: "exception buffer overflow", 0x71: "change lamp on", 0x72: "change lamp off",
    0x74: "printer paper low", 0x75: "printer power off", 0x76: "printer power on",
    0x77: "replace printer ribbon", 0x78: "printer carriage jammed",
    0x79: "coin in lockout malfunction", 0x7A: "soft meters reset to zero",
    0x7B: "bill validator period totals reset", 0x7C: "legacy bonus pay awarded",
    0x7E: "game has started", 0x7F: "game has ended",
    0x80: "hopper full", 0x81: "hopper level low",
    0x82: "display meters or attendant menu entered", 0x83: "display meters or attendant menu exited",
    0x84: "self test or operator menu entered", 0x85: "self test or operator menu exited",
    0x86: "gaming machine out of service by attendant", 0x87: "player has requested draw cards",
    0x88: "reel N has stopped", 0x89: "coin/credit wagered", 0x8A: "game recall entry displayed",
    0x8B: "card held/not held", 0x8C: "game selected", 0x8E: "component list changed",
    0x8F: "authentication complete",
    0x98: "power off card cage access", 0x99: "power off slot door access",
    0x9A: "power off cashbox door access", 0x9B: "power off drop door access",
    0x9E: "session start", 0x9F: "session end", 0xA0: "meter change pending",
    0xA1: "meter change cancelled", 0xA2: "enabled games and denominations changed",
}

# Not queued in the FIFO, sent before anything queued; highest priority first (Monaco's order).
PRIORITY_EXCEPTIONS: tuple[int, ...] = (
    0x57, 0x67, 0x68, 0x3F, 0x6A, 0x6B, 0x6F, 0x56, 0x3D, 0x3E, 0x69, 0x6C, 0x6D, 0x52, 0x51, 0x8F, 0x70,
)

# Codes that only exist in real-time event mode.
RTE_ONLY = frozenset({0x87, 0x88, 0x89, 0x8B})

# Bill denominations (US dollars) of the non-RTE specific-bill codes.
BILL_CODES: dict[int, int] = {0x47: 1, 0x48: 5, 0x49: 10, 0x4A: 20, 0x4B: 50, 0x4C: 100, 0x4D: 2, 0x4E: 500,
                              0x50: 200}

DOOR_CODES: dict[int, tuple[str, bool]] = {
    0x11: ("slot", True), 0x12: ("slot", False), 0x13: ("drop", True), 0x14: ("drop", False),
    0x15: ("card_cage", True), 0x16: ("card_cage", False), 0x19: ("cashbox", True),
    0x1A: ("cashbox", False), 0x1D: ("belly", True), 0x1E: ("belly", False),
}


def exception_name(code: int) -> str:
    return EXCEPTION_NAMES.get(code, f"unknown exception {code:02X}")


# ---- one classification of exception codes (issue 15): what a host does about each ---------------

class Significance(enum.Flag):
    """What an exception code means to a host; a code may carry several flags."""

    NONE = 0
    READ_METERS = enum.auto()
    """Read the meters at once (door, power, RAM clear, options or games changed, in/out of service,
    handpay, ticket): money may have moved or the meters may be about to be lost."""
    DOOR = enum.auto()
    POWER = enum.auto()
    SERVICE = enum.auto()
    """Operator or technician activity on the machine (menus, options, out of service, resets)."""
    FAULT = enum.auto()
    """A fault of the machine (tilt, bill acceptor, memory, reel, printer): see :data:`FAULT_CATEGORIES`."""
    METERS_RESET = enum.auto()
    """Meters are (or may be) zeroed: the next snapshot starts a new reconciliation epoch."""
    HANDPAY = enum.auto()
    TICKET = enum.auto()
    NOISE = enum.auto()
    """Nothing to record: "no activity", "waiting for input" and per-reel/per-card RTE chatter."""


POWER_OFF_DOORS: dict[int, str] = {0x98: "card_cage", 0x99: "slot", 0x9A: "cashbox", 0x9B: "drop"}
"""Doors opened while the machine was off, reported when it powers up again."""

SERVICE_KINDS: dict[int, dict[str, object]] = {
    0x17: {"kind": "power", "on": True},
    0x18: {"kind": "power", "on": False},
    0x3A: {"kind": "ram_clear"},
    0x7A: {"kind": "soft_meters_reset"},
    0x7B: {"kind": "bill_totals_reset"},
    0x3C: {"kind": "options_changed"},
    0xA2: {"kind": "games_changed"},
    0x82: {"kind": "attendant_menu", "entered": True},
    0x83: {"kind": "attendant_menu", "entered": False},
    0x84: {"kind": "operator_menu", "entered": True},
    0x85: {"kind": "operator_menu", "entered": False},
    0x86: {"kind": "out_of_service"},
}
"""Service codes and the record an agent keeps of each (``service`` events)."""

FAULT_CATEGORIES: dict[int, str] = {
    **dict.fromkeys((0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x2D, 0x79, 0x80, 0x81), "tilt"),
    **dict.fromkeys((0x28, 0x29, 0x2A, 0x2C), "bill_acceptor"),
    **dict.fromkeys((0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3B), "memory"),
    **dict.fromkeys((0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46), "reel"),
    **dict.fromkeys((0x60, 0x61, 0x75, 0x77, 0x78), "printer"),
}
"""Faults of the machine by category (``game.error`` events)."""


def _classify() -> dict[int, Significance]:
    table: dict[int, Significance] = {}

    def mark(codes: object, flag: Significance) -> None:
        for code in codes:  # type: ignore[attr-defined]
            table[code] = table.get(code, Significance.NONE) | flag

    mark(DOOR_CODES, Significance.DOOR | Significance.READ_METERS)
    mark(POWER_OFF_DOORS, Significance.DOOR)
    mark((0x17, 0x18), Significance.POWER | Significance.READ_METERS)
    mark(SERVICE_KINDS, Significance.SERVICE)
    mark((0x3A, 0x3C, 0x7A, 0x82, 0x83, 0x84, 0x85, 0x86, 0xA2), Significance.READ_METERS)
    mark(FAULT_CATEGORIES, Significance.FAULT)
    mark((0x31, 0x32, 0x33), Significance.READ_METERS)   # CMOS RAM errors: the meters may be next
    mark((0x3A, 0x7A), Significance.METERS_RESET)
    mark((0x51, 0x52), Significance.HANDPAY | Significance.READ_METERS)
    mark((0x3D,), Significance.TICKET | Significance.READ_METERS)
    mark((NO_ACTIVITY, 0x1F, 0x87, 0x88, 0x89, 0x8A, 0x8B), Significance.NOISE)
    return table


CLASSIFICATION: dict[int, Significance] = _classify()
"""Every classified code → its flags; a code not in it is :attr:`Significance.NONE`."""


def significance(code: int) -> Significance:
    return CLASSIFICATION.get(code, Significance.NONE)


def codes_with(flag: Significance) -> frozenset[int]:
    """The codes carrying ``flag`` (e.g. the ones after which a host reads the meters)."""
    return frozenset(code for code, flags in CLASSIFICATION.items() if flag in flags)


# ---- real-time event data ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class BillAcceptedData:
    """RTE data of 4F: country code, denomination code (SAS table), lifetime count of this bill."""
    country_code: int
    denomination_code: int
    bill_meter: int


@dataclass(frozen=True, slots=True)
class GameStartedData:
    """RTE data of 7E: credits wagered, coin-in meter after the wager, wager type, progressive group."""
    credits_wagered: int
    coin_in_meter: int
    wager_type: int
    progressive_group: int


@dataclass(frozen=True, slots=True)
class GameEndedData:
    """RTE data of 7F: the win, in credits."""
    win_amount: int


@dataclass(frozen=True, slots=True)
class GameSelectedData:
    """RTE data of 8C: the game number the player selected."""
    game_number: int


RteData = BillAcceptedData | GameStartedData | GameEndedData | GameSelectedData

RTE_DATA_LENGTH: dict[int, int] = {0x4F: 6, 0x7E: 8, 0x7F: 4, 0x8C: 2}


def decode_rte_data(code: int, data: bytes) -> RteData | None:
    """The decoded data of an RTE event, or None for codes that carry none."""
    expected = RTE_DATA_LENGTH.get(code, 0)
    if len(data) != expected:
        raise FrameError(f"RTE event {code:02X} carries {len(data)} data bytes, expected {expected}")
    if code == 0x4F:
        return BillAcceptedData(decode_bcd(data[0:1]), decode_bcd(data[1:2]), decode_bcd(data[2:6]))
    if code == 0x7E:
        return GameStartedData(decode_bcd(data[0:2]), decode_bcd(data[2:6]), data[6], data[7])
    if code == 0x7F:
        return GameEndedData(decode_bcd(data[0:4]))
    if code == 0x8C:
        return GameSelectedData(decode_bcd(data[0:2]))
    return None


def encode_rte_data(data: RteData | None) -> bytes:
    if data is None:
        return b""
    if isinstance(data, BillAcceptedData):
        return (encode_bcd(data.country_code, 1) + encode_bcd(data.denomination_code, 1)
                + encode_bcd(data.bill_meter, 4))
    if isinstance(data, GameStartedData):
        return (encode_bcd(data.credits_wagered, 2) + encode_bcd(data.coin_in_meter, 4)
                + bytes((data.wager_type & 0xFF, data.progressive_group & 0xFF)))
    if isinstance(data, GameEndedData):
        return encode_bcd(data.win_amount, 4)
    if isinstance(data, GameSelectedData):
        return encode_bcd(data.game_number, 2)
    raise TypeError(f"not RTE data: {data!r}")


# SAS bill denomination codes (LP 48, RTE 4F; the code is BCD, so decode it first): code → value in
# the country's major unit.
BILL_DENOMINATION_CODES: dict[int, int] = {
    0: 1, 1: 2, 2: 5, 3: 10, 4: 20, 5: 25, 6: 50, 7: 100, 8: 200, 9: 250, 10: 500, 11: 1000,
    12: 2000, 13: 2500, 14: 5000, 15: 10000, 16: 20000, 17: 25000, 18: 50000, 19: 100000,
}
DENOMINATION_CODE_OF_BILL: dict[int, int] = {v: k for k, v in BILL_DENOMINATION_CODES.items()}
