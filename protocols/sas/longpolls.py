"""Long polls, request and response, in both directions.

Each long poll is a pair of frozen dataclasses whose fields declare the wire layout (see
``fields.py``). The registries :data:`REQUESTS` and :data:`RESPONSES` map a command byte to its
classes; the framers use them to know how long a message is before it has fully arrived.

Kinds (notes/sas-protocol.md §3.1): ``R`` read (host sends ``addr cmd``, no CRC), ``S`` send
(``addr cmd [len] data CRC``; S without data still carries a CRC, vectors ``01 01 51 08``), ``M``
like S with a BCD game number, ``G`` a broadcast to address 0 that is never answered.
A request whose response class is None is answered by an ACK (the address alone).

Field sources: Monaco's parser doc comments and [S602] as collected in the notes. Where the notes
leave a layout open the choice is written next to the class.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import ClassVar, TypeVar, cast, dataclass_transform

from .errors import FrameError
from .fields import (
    BCD,
    Ascii,
    AsciiRest,
    BcdList,
    Binary,
    CodeList,
    MeterValues,
    RawRest,
    decode_fields,
    encode_fields,
    f,
    fixed_size,
)


class Message:
    """Base of every long-poll request and response."""

    COMMAND: ClassVar[int]
    KIND: ClassVar[str] = "R"          # R, S, M (requests); responses ignore it
    VARIABLE: ClassVar[bool] = False   # a length byte follows the command byte

    def payload(self) -> bytes:
        return encode_fields(self)

    @classmethod
    def from_payload(cls, payload: bytes) -> Message:
        return decode_fields(cls, payload)


M = TypeVar("M", bound=Message)

REQUESTS: dict[int, type[Message]] = {}
RESPONSES: dict[int, type[Message] | None] = {}


def _unregistered(registry: Mapping[int, object], cmd: int) -> int:
    if cmd in registry:
        raise RuntimeError(f"command {cmd:02X} registered twice")
    return cmd


def request(cmd: int, kind: str, variable: bool = False, response: type[Message] | None = None,
            acked: bool = False) -> Callable[[type[M]], type[M]]:
    """Class decorator: a host → EGM long poll, answered by ``response`` (or an ACK if ``acked``)."""

    def wrap(cls: type[M]) -> type[M]:
        cls.COMMAND, cls.KIND, cls.VARIABLE = cmd, kind, variable
        REQUESTS[_unregistered(REQUESTS, cls.COMMAND)] = cls
        if acked:
            RESPONSES[cmd] = None
        return cls

    return wrap


def response(cmd: int, variable: bool = False) -> Callable[[type[M]], type[M]]:
    """Class decorator: an EGM → host long-poll reply (``addr cmd [len] data CRC``)."""

    def wrap(cls: type[M]) -> type[M]:
        cls.COMMAND, cls.VARIABLE = cmd, variable
        RESPONSES[_unregistered(RESPONSES, cls.COMMAND)] = cls
        return cls

    return wrap


@dataclass_transform(frozen_default=True, field_specifiers=(f,))
def _dataclass(cls: type[M]) -> type[M]:
    """A frozen, slotted dataclass whose fields are declared with :func:`fields.f`."""
    return dataclasses.dataclass(frozen=True, slots=True)(cls)


def _subclass(name: str, base: type[M], doc: str) -> type[M]:
    """A message class made at import time (``type()`` returns a plain ``type`` to a type checker)."""
    return cast("type[M]", type(name, (base,), {"__doc__": doc, "__module__": __name__}))


def _simple_request(cmd: int, name: str, kind: str, doc: str, acked: bool) -> type[Message]:
    cls = _dataclass(_subclass(name, Message, doc))
    return request(cmd, kind, acked=acked)(cls)


# ---- machine control (S, answered by ACK) ----------------------------------------------------------
Shutdown = _simple_request(0x01, "Shutdown", "S", "LP 01: lock out play (after the current game).", True)
Startup = _simple_request(0x02, "Startup", "S", "LP 02: enable play again.", True)
SoundOff = _simple_request(0x03, "SoundOff", "S", "LP 03: all sounds off.", True)
SoundOn = _simple_request(0x04, "SoundOn", "S", "LP 04: all sounds on.", True)
GameSoundsOff = _simple_request(0x05, "GameSoundsOff", "S", "LP 05: game-play sounds off.", True)
EnableBillAcceptor = _simple_request(0x06, "EnableBillAcceptor", "S", "LP 06: enable the bill acceptor.", True)
DisableBillAcceptor = _simple_request(0x07, "DisableBillAcceptor", "S", "LP 07: disable the bill acceptor.",
                                      True)
EnterMaintenance = _simple_request(0x0A, "EnterMaintenance", "S", "LP 0A: enter maintenance mode.", True)
ExitMaintenance = _simple_request(0x0B, "ExitMaintenance", "S", "LP 0B: exit maintenance mode.", True)


@request(0x08, "S", acked=True)
@_dataclass
class ConfigureBillDenominations(Message):
    """LP 08: bitmask of accepted bills, LSB first (bit 0 = $1, bit 1 = $2, bit 2 = $5 …), and an
    action flag (00 = disable the acceptor after each accepted bill, 01 = keep it enabled)."""

    denominations: int = f(Binary(4))
    action: int = f(Binary(1))


@request(0x09, "M", acked=True)
@_dataclass
class EnableDisableGame(Message):
    """LP 09: enable (01) or disable (00) game N; game 0000 means the whole machine."""

    game: int = f(BCD(2))
    enable: int = f(Binary(1))


@request(0x0E, "S", acked=True)
@_dataclass
class RealTimeEventReporting(Message):
    """LP 0E: 01 enables real-time event reporting, 00 disables it."""

    enable: int = f(Binary(1))


# ---- meters (R) --------------------------------------------------------------------------------------
def _read(cmd: int, name: str, doc: str) -> type[Message]:
    return _simple_request(cmd, name, "R", doc, False)


SendMeters0F = _read(0x0F, "SendMeters0F", "LP 0F: cancelled credits, coin in, coin out, drop, jackpot, games.")


@response(0x0F)
@_dataclass
class Meters0F(Message):
    """LP 0F reply: six 4-byte BCD meters (credits, except games played)."""

    cancelled_credits: int = f(BCD(4))
    coin_in: int = f(BCD(4))
    coin_out: int = f(BCD(4))
    total_drop: int = f(BCD(4))
    jackpot: int = f(BCD(4))
    games_played: int = f(BCD(4))


@_dataclass
class SingleMeter(Message):
    """Reply of LP 10–17 and 1A: one 4-byte BCD meter."""

    value: int = f(BCD(4))


SINGLE_METER_POLLS: dict[int, tuple[str, int]] = {
    # LP → (name, Table C-7 meter code it reports)
    0x10: ("total_cancelled_credits", 0x04),
    0x11: ("total_coin_in", 0x00),
    0x12: ("total_coin_out", 0x01),
    0x13: ("total_drop", 0x24),
    0x14: ("total_jackpot", 0x02),
    0x15: ("games_played", 0x05),
    0x16: ("games_won", 0x06),
    0x17: ("games_lost", 0x07),
    0x1A: ("current_credits", 0x0C),
}
SINGLE_METER_REQUESTS: dict[int, type[Message]] = {}
SINGLE_METER_RESPONSES: dict[int, type[SingleMeter]] = {}
for _cmd, (_name, _code) in SINGLE_METER_POLLS.items():
    _camel = "".join(part.capitalize() for part in _name.split("_"))
    SINGLE_METER_REQUESTS[_cmd] = _read(_cmd, f"Send{_camel}", f"LP {_cmd:02X}: send {_name.replace('_', ' ')}.")
    SINGLE_METER_RESPONSES[_cmd] = response(_cmd)(
        _dataclass(_subclass(_camel, SingleMeter, f"LP {_cmd:02X} reply: {_name}.")))
SendCurrentCredits = SINGLE_METER_REQUESTS[0x1A]
CurrentCredits = SINGLE_METER_RESPONSES[0x1A]

SendGamesSincePowerUp = _read(0x18, "SendGamesSincePowerUp", "LP 18: games since power-up and since door closure.")


@response(0x18)
@_dataclass
class GamesSincePowerUp(Message):
    """LP 18 reply: two 2-byte BCD counters."""

    since_power_up: int = f(BCD(2))
    since_door_closure: int = f(BCD(2))


SendMeters19 = _read(0x19, "SendMeters19", "LP 19: coin in, coin out, drop, jackpot, games played.")


@response(0x19)
@_dataclass
class Meters19(Message):
    """LP 19 reply: meters 11–15 in one message."""

    coin_in: int = f(BCD(4))
    coin_out: int = f(BCD(4))
    total_drop: int = f(BCD(4))
    jackpot: int = f(BCD(4))
    games_played: int = f(BCD(4))


SendHandpayInfo = _read(0x1B, "SendHandpayInfo", "LP 1B: the pending handpay (after exception 51).")


@response(0x1B)
@_dataclass
class HandpayInfo(Message):
    """LP 1B reply: progressive group, level (0 = non-progressive), amount (cents, 5 BCD), partial
    pay (cents, 2 BCD), reset ID (00 = standard handpay, 01 = reset to credit meter)."""

    progressive_group: int = f(Binary(1))
    level: int = f(Binary(1))
    amount: int = f(BCD(5))
    partial_pay: int = f(BCD(2))
    reset_id: int = f(Binary(1))


SendMeters1C = _read(0x1C, "SendMeters1C", "LP 1C: the eight most used meters.")


@response(0x1C)
@_dataclass
class Meters1C(Message):
    """LP 1C reply: eight 4-byte BCD meters."""

    coin_in: int = f(BCD(4))
    coin_out: int = f(BCD(4))
    total_drop: int = f(BCD(4))
    jackpot: int = f(BCD(4))
    games_played: int = f(BCD(4))
    games_won: int = f(BCD(4))
    slot_door_opened: int = f(BCD(4))
    power_reset: int = f(BCD(4))


SendBillMeters = _read(0x1E, "SendBillMeters", "LP 1E: counts of accepted $1, $5, $10, $20, $50, $100 bills.")


@response(0x1E)
@_dataclass
class BillMeters(Message):
    """LP 1E reply: six 4-byte BCD bill counts."""

    ones: int = f(BCD(4))
    fives: int = f(BCD(4))
    tens: int = f(BCD(4))
    twenties: int = f(BCD(4))
    fifties: int = f(BCD(4))
    hundreds: int = f(BCD(4))


SendMachineInfo = _read(0x1F, "SendMachineInfo", "LP 1F: gaming machine ID and information.")


@_dataclass
class GameConfigFields(Message):
    """The machine/game description shared by LP 1F and LP 53 replies.

    ``denomination`` is the SAS denomination code (Table C-4: 01 = $0.01, 02 = $0.05 …);
    ``base_percent`` the theoretical payback as 4 ASCII digits with an implied decimal point
    (``"9500"`` = 95.00 %).
    """

    game_id: str = f(Ascii(2))
    additional_id: str = f(Ascii(3))
    denomination: int = f(Binary(1))
    max_bet: int = f(Binary(1))
    progressive_group: int = f(Binary(1))
    game_options: int = f(Binary(2))
    paytable_id: str = f(Ascii(6))
    base_percent: str = f(Ascii(4))


@response(0x1F)
@_dataclass
class MachineInfo(GameConfigFields):
    """LP 1F reply."""


@request(0x2F, "M", variable=True)
@_dataclass
class SendSelectedMeters(Message):
    """LP 2F: up to 10 one-byte meter codes for game N (0000 = whole machine)."""

    game: int = f(BCD(2))
    codes: tuple[int, ...] = f(CodeList(1, 10))


@response(0x2F, variable=True)
@_dataclass
class SelectedMeters(Message):
    """LP 2F reply: game number then (code, value) pairs; value sizes per Table C-7."""

    game: int = f(BCD(2))
    meters: tuple[tuple[int, int], ...] = f(MeterValues(1))


SendTicketInfo = _read(0x3D, "SendTicketInfo", "LP 3D: the last cash-out ticket (standard validation).")


@response(0x3D)
@_dataclass
class TicketInfo(Message):
    """LP 3D reply: validation number (4 BCD) and amount in cents (5 BCD)."""

    validation_number: int = f(BCD(4))
    amount: int = f(BCD(5))


SendLastBillInfo = _read(0x48, "SendLastBillInfo", "LP 48: the last accepted bill.")


@response(0x48)
@_dataclass
class LastBillInfo(Message):
    """LP 48 reply: country code (BCD), denomination code (BCD, see BILL_DENOMINATION_CODES) and the
    lifetime count of this bill."""

    country_code: int = f(BCD(1))
    denomination_code: int = f(BCD(1))
    bill_meter: int = f(BCD(4))


@request(0x4D, "S")
@_dataclass
class SendEnhancedValidation(Message):
    """LP 4D: function code 00 = next unread record, 01–1F = record index, FF = look ahead."""

    function: int = f(Binary(1))


@response(0x4D)
@_dataclass
class EnhancedValidation(Message):
    """LP 4D reply: one enhanced validation record (ticket or handpay)."""

    validation_type: int = f(Binary(1))
    index: int = f(Binary(1))
    date: int = f(BCD(4))          # MMDDYYYY
    time: int = f(BCD(3))          # HHMMSS
    validation_number: int = f(BCD(8))
    amount: int = f(BCD(5))        # cents
    ticket_number: int = f(BCD(2))
    validation_system_id: int = f(BCD(1))
    expiration: int = f(BCD(4))
    pool_id: int = f(Binary(2))


SendNumberOfGames = _read(0x51, "SendNumberOfGames", "LP 51: number of games implemented.")


@response(0x51)
@_dataclass
class NumberOfGames(Message):
    """LP 51 reply: 2-byte BCD count (0 on a single-game machine)."""

    count: int = f(BCD(2))


@request(0x53, "M")
@_dataclass
class SendGameConfiguration(Message):
    """LP 53: configuration of game N (0000 = the machine, as LP 1F)."""

    game: int = f(BCD(2))


@response(0x53)
@_dataclass
class GameConfiguration(Message):
    """LP 53 reply: game number then the LP 1F fields for that game."""

    game: int = f(BCD(2))
    game_id: str = f(Ascii(2))
    additional_id: str = f(Ascii(3))
    denomination: int = f(Binary(1))
    max_bet: int = f(Binary(1))
    progressive_group: int = f(Binary(1))
    game_options: int = f(Binary(2))
    paytable_id: str = f(Ascii(6))
    base_percent: str = f(Ascii(4))


SendSasVersion = _read(0x54, "SendSasVersion", "LP 54: SAS version and serial number.")


@response(0x54, variable=True)
@_dataclass
class SasVersion(Message):
    """LP 54 reply: version (3 ASCII, ``"602"``) and serial number (0–40 ASCII)."""

    version: str = f(Ascii(3))
    serial: str = f(AsciiRest(40))


SendSelectedGame = _read(0x55, "SendSelectedGame", "LP 55: the game number currently selected.")


@response(0x55)
@_dataclass
class SelectedGame(Message):
    """LP 55 reply."""

    game: int = f(BCD(2))


SendEnabledGames = _read(0x56, "SendEnabledGames", "LP 56: the enabled game numbers.")


@response(0x56, variable=True)
@_dataclass
class EnabledGames(Message):
    """LP 56 reply: count then that many 2-byte BCD game numbers."""

    games: tuple[int, ...] = f(BcdList(2))


@request(0x6F, "M", variable=True)
@_dataclass
class SendExtendedMeters(Message):
    """LP 6F: up to 12 two-byte meter codes (LSB first) for game N."""

    game: int = f(BCD(2))
    codes: tuple[int, ...] = f(CodeList(2, 12))


@response(0x6F, variable=True)
@_dataclass
class ExtendedMeters(Message):
    """LP 6F reply: game number then (code, size, value) triples."""

    game: int = f(BCD(2))
    meters: tuple[tuple[int, int], ...] = f(MeterValues(2))


@request(0xAF, "M", variable=True)
@_dataclass
class SendExtendedMetersAlt(SendExtendedMeters):
    """LP AF: as LP 6F (the EGM answers with the same layout under AF)."""


@response(0xAF, variable=True)
@_dataclass
class ExtendedMetersAlt(ExtendedMeters):
    """LP AF reply."""


SendDateTime = _read(0x7E, "SendDateTime", "LP 7E: the EGM's current date and time.")


@_dataclass
class DateTimeFields(Message):
    """Date as MMDDYYYY (4 BCD) and time as HHMMSS (3 BCD): 2025-06-15 13:45:30 is
    ``date=6152025, time=134530``. Use :func:`protocols.sas.clock` helpers to convert."""

    date: int = f(BCD(4))
    time: int = f(BCD(3))


@response(0x7E)
@_dataclass
class DateTime(DateTimeFields):
    """LP 7E reply."""


@request(0x7F, "S", acked=True)
@_dataclass
class SetDateTime(DateTimeFields):
    """LP 7F: set the EGM's clock; usually sent as a global broadcast (address 0, never answered)."""


@request(0xA0, "M")
@_dataclass
class SendEnabledFeatures(Message):
    """LP A0: enabled features of game N."""

    game: int = f(BCD(2))


FEATURES3_MAX_POLLING_40MS = 0x04
"""Bit of ``features3`` by which an EGM announces that it may be polled every 40 ms.

[S602] puts this flag in the A0 reply; its bit position is not in the public notes, so this value is
our choice, used by both our simulator and our poller."""


@response(0xA0)
@_dataclass
class EnabledFeatures(Message):
    """LP A0 reply: game number and four feature bytes (Table 7.14c)."""

    game: int = f(BCD(2))
    features1: int = f(Binary(1))
    features2: int = f(Binary(1))
    features3: int = f(Binary(1))
    features4: int = f(Binary(1))


@request(0xB0, "S", variable=True)
@_dataclass
class MultiDenomPreamble(Message):
    """LP B0: run the wrapped long poll for one denomination.

    ``message`` is the wrapped long poll without its address and CRC: command byte, then its own
    length byte if it has one, then its data (vectors: ``01 B0 02 01 11`` wraps LP 11, denom 01)."""

    denomination: int = f(Binary(1))
    message: bytes = f(RawRest())


@response(0xB0, variable=True)
@_dataclass
class MultiDenomReply(Message):
    """LP B0 reply: denomination code and the wrapped reply without address and CRC."""

    denomination: int = f(Binary(1))
    message: bytes = f(RawRest())


# ---- helpers ------------------------------------------------------------------------------------------

def wrapped_command(message: bytes) -> int:
    if not message:
        raise FrameError("B0 preamble wraps no command")
    return message[0]


def request_class(cmd: int) -> type[Message] | None:
    return REQUESTS.get(cmd)


def response_class(cmd: int) -> type[Message] | None:
    return RESPONSES.get(cmd)


def is_acked(cmd: int) -> bool:
    """True when the EGM answers this long poll with an ACK (its address) rather than data."""
    return cmd in RESPONSES and RESPONSES[cmd] is None


def payload_size(cls: type[Message]) -> int | None:
    """Fixed payload size of a non-variable message (None for variable ones)."""
    return None if cls.VARIABLE else fixed_size(cls)
