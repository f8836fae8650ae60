"""General-poll exception codes, priority exceptions and real-time event (RTE) data.

The table is notes/sas-protocol.md §4.1 (Monaco's enum and saspy's table agree code for code).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from .bcd import decode_bcd, encode_bcd
from .errors import FrameError


@enum.unique
class ExceptionCode(enum.IntEnum):
    """The SAS general-poll exception codes (notes/sas-protocol.md §4.1): what the EGM answers a general
    poll with, and the code of a real-time event. An IntEnum, so a code read off the wire (an int) is
    equal to its member and finds it in any table keyed by either."""

    NO_ACTIVITY = 0x00
    SLOT_DOOR_OPENED = 0x11
    SLOT_DOOR_CLOSED = 0x12
    DROP_DOOR_OPENED = 0x13
    DROP_DOOR_CLOSED = 0x14
    CARD_CAGE_OPENED = 0x15
    CARD_CAGE_CLOSED = 0x16
    AC_POWER_APPLIED = 0x17
    AC_POWER_LOST = 0x18
    CASHBOX_DOOR_OPENED = 0x19
    CASHBOX_DOOR_CLOSED = 0x1A
    CASHBOX_REMOVED = 0x1B
    CASHBOX_INSTALLED = 0x1C
    BELLY_DOOR_OPENED = 0x1D
    BELLY_DOOR_CLOSED = 0x1E
    WAITING_FOR_PLAYER_INPUT = 0x1F
    GENERAL_TILT = 0x20
    COIN_IN_TILT = 0x21
    COIN_OUT_TILT = 0x22
    HOPPER_EMPTY = 0x23
    EXTRA_COIN_PAID = 0x24
    DIVERTER_MALFUNCTION = 0x25
    CASHBOX_FULL = 0x27
    BILL_JAM = 0x28
    BILL_ACCEPTOR_HARDWARE_FAILURE = 0x29
    REVERSE_BILL_DETECTED = 0x2A
    BILL_REJECTED = 0x2B
    COUNTERFEIT_BILL_DETECTED = 0x2C
    REVERSE_COIN_IN_DETECTED = 0x2D
    CASHBOX_NEAR_FULL = 0x2E
    BILL_ACCEPTOR_VERSION_CHANGED = 0x2F
    CMOS_RAM_ERROR_DATA_RECOVERED = 0x31
    CMOS_RAM_ERROR_NO_DATA_RECOVERED = 0x32
    CMOS_RAM_ERROR_BAD_DEVICE = 0x33
    EEPROM_ERROR_DATA = 0x34
    EEPROM_ERROR_BAD_DEVICE = 0x35
    EPROM_ERROR_VERSION_CHANGED = 0x36
    EPROM_ERROR_BAD_CHECKSUM = 0x37
    PARTITIONED_EPROM_ERROR_VERSION_CHANGED = 0x38
    PARTITIONED_EPROM_ERROR_BAD_CHECKSUM = 0x39
    MEMORY_ERROR_RESET = 0x3A
    LOW_BACKUP_BATTERY = 0x3B
    OPERATOR_CHANGED_OPTIONS = 0x3C
    CASHOUT_TICKET_PRINTED = 0x3D
    HANDPAY_VALIDATED = 0x3E
    VALIDATION_ID_NOT_CONFIGURED = 0x3F
    REEL_TILT = 0x40
    REEL_1_TILT = 0x41
    REEL_2_TILT = 0x42
    REEL_3_TILT = 0x43
    REEL_4_TILT = 0x44
    REEL_5_TILT = 0x45
    REEL_MECHANISM_DISCONNECTED = 0x46
    BILL_ACCEPTED_1 = 0x47
    BILL_ACCEPTED_5 = 0x48
    BILL_ACCEPTED_10 = 0x49
    BILL_ACCEPTED_20 = 0x4A
    BILL_ACCEPTED_50 = 0x4B
    BILL_ACCEPTED_100 = 0x4C
    BILL_ACCEPTED_2 = 0x4D
    BILL_ACCEPTED_500 = 0x4E
    BILL_ACCEPTED = 0x4F
    BILL_ACCEPTED_200 = 0x50
    HANDPAY_PENDING = 0x51
    HANDPAY_RESET = 0x52
    NO_PROGRESSIVE_INFORMATION = 0x53
    PROGRESSIVE_WIN = 0x54
    PLAYER_CANCELLED_HANDPAY = 0x55
    SAS_PROGRESSIVE_LEVEL_HIT = 0x56
    SYSTEM_VALIDATION_REQUEST = 0x57
    PRINTER_COMMUNICATION_ERROR = 0x60
    PRINTER_PAPER_OUT = 0x61
    CASHOUT_BUTTON_PRESSED = 0x66
    TICKET_INSERTED = 0x67
    TICKET_TRANSFER_COMPLETE = 0x68
    AFT_TRANSFER_COMPLETE = 0x69
    AFT_REQUEST_HOST_CASHOUT = 0x6A
    AFT_REQUEST_HOST_CASHOUT_WIN = 0x6B
    AFT_REQUEST_TO_REGISTER = 0x6C
    AFT_REGISTRATION_ACKNOWLEDGED = 0x6D
    AFT_REGISTRATION_CANCELLED = 0x6E
    GAME_LOCKED = 0x6F
    EXCEPTION_BUFFER_OVERFLOW = 0x70
    CHANGE_LAMP_ON = 0x71
    CHANGE_LAMP_OFF = 0x72
    PRINTER_PAPER_LOW = 0x74
    PRINTER_POWER_OFF = 0x75
    PRINTER_POWER_ON = 0x76
    REPLACE_PRINTER_RIBBON = 0x77
    PRINTER_CARRIAGE_JAMMED = 0x78
    COIN_IN_LOCKOUT_MALFUNCTION = 0x79
    SOFT_METERS_RESET = 0x7A
    BILL_VALIDATOR_TOTALS_RESET = 0x7B
    LEGACY_BONUS_PAY_AWARDED = 0x7C
    GAME_STARTED = 0x7E
    GAME_ENDED = 0x7F
    HOPPER_FULL = 0x80
    HOPPER_LEVEL_LOW = 0x81
    ATTENDANT_MENU_ENTERED = 0x82
    ATTENDANT_MENU_EXITED = 0x83
    OPERATOR_MENU_ENTERED = 0x84
    OPERATOR_MENU_EXITED = 0x85
    OUT_OF_SERVICE_BY_ATTENDANT = 0x86
    PLAYER_REQUESTED_DRAW_CARDS = 0x87
    REEL_STOPPED = 0x88
    CREDIT_WAGERED = 0x89
    GAME_RECALL_ENTRY_DISPLAYED = 0x8A
    CARD_HELD = 0x8B
    GAME_SELECTED = 0x8C
    COMPONENT_LIST_CHANGED = 0x8E
    AUTHENTICATION_COMPLETE = 0x8F
    POWER_OFF_CARD_CAGE_ACCESS = 0x98
    POWER_OFF_SLOT_DOOR_ACCESS = 0x99
    POWER_OFF_CASHBOX_DOOR_ACCESS = 0x9A
    POWER_OFF_DROP_DOOR_ACCESS = 0x9B
    SESSION_START = 0x9E
    SESSION_END = 0x9F
    METER_CHANGE_PENDING = 0xA0
    METER_CHANGE_CANCELLED = 0xA1
    ENABLED_GAMES_CHANGED = 0xA2


NO_ACTIVITY = ExceptionCode.NO_ACTIVITY

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


def _classify() -> dict[ExceptionCode, Significance]:
    E = ExceptionCode
    table: dict[ExceptionCode, Significance] = {}

    def mark(codes: Iterable[int], flag: Significance) -> None:
        for code in codes:
            key = E(code)   # a classified code is a named one (ValueError at import otherwise)
            table[key] = table.get(key, Significance.NONE) | flag

    mark(DOOR_CODES, Significance.DOOR | Significance.READ_METERS)
    mark(POWER_OFF_DOORS, Significance.DOOR)
    mark((E.AC_POWER_APPLIED, E.AC_POWER_LOST), Significance.POWER | Significance.READ_METERS)
    mark(SERVICE_KINDS, Significance.SERVICE)
    mark((E.MEMORY_ERROR_RESET, E.OPERATOR_CHANGED_OPTIONS, E.SOFT_METERS_RESET, E.ATTENDANT_MENU_ENTERED,
          E.ATTENDANT_MENU_EXITED, E.OPERATOR_MENU_ENTERED, E.OPERATOR_MENU_EXITED, E.OUT_OF_SERVICE_BY_ATTENDANT,
          E.ENABLED_GAMES_CHANGED), Significance.READ_METERS)
    mark(FAULT_CATEGORIES, Significance.FAULT)
    mark((E.CMOS_RAM_ERROR_DATA_RECOVERED, E.CMOS_RAM_ERROR_NO_DATA_RECOVERED, E.CMOS_RAM_ERROR_BAD_DEVICE),
         Significance.READ_METERS)   # CMOS RAM errors: the meters may be next
    mark((E.MEMORY_ERROR_RESET, E.SOFT_METERS_RESET), Significance.METERS_RESET)
    mark((E.HANDPAY_PENDING, E.HANDPAY_RESET), Significance.HANDPAY | Significance.READ_METERS)
    mark((E.CASHOUT_TICKET_PRINTED,), Significance.TICKET | Significance.READ_METERS)
    mark((E.NO_ACTIVITY, E.WAITING_FOR_PLAYER_INPUT, E.PLAYER_REQUESTED_DRAW_CARDS, E.REEL_STOPPED,
          E.CREDIT_WAGERED, E.GAME_RECALL_ENTRY_DISPLAYED, E.CARD_HELD), Significance.NOISE)
    return table


CLASSIFICATION: dict[ExceptionCode, Significance] = _classify()
"""Every classified code → its flags; a code not in it is :attr:`Significance.NONE`. Keyed by
:class:`ExceptionCode`; an int read off the wire equals its member (:func:`significance` takes one)."""


_FLAGS_OF_CODE: dict[int, Significance] = {int(code): flags for code, flags in CLASSIFICATION.items()}


def significance(code: int) -> Significance:
    return _FLAGS_OF_CODE.get(code, Significance.NONE)


def codes_with(flag: Significance) -> frozenset[ExceptionCode]:
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
