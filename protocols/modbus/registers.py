"""The hallsync terminal register map v1, the decoder, and counter deltas with rollover.

Holding registers (function 03), starting at address 0, 20 registers, all unsigned 16-bit words.
32-bit values take two consecutive registers, **high word first** (big-endian word order, the
Modbus convention "ABCD"): value = reg[n] << 16 | reg[n + 1].

======  ===========  =====  ======================================================================
addr    name         words  meaning
======  ===========  =====  ======================================================================
0       status       1      bit 0 enabled (the host may clear it), 1 in service, 2 door open,
                            3 error active, 4 printer paper low; other bits reserved (0)
1       error_code   1      vendor error code, 0 = none
2       firmware     1      major << 8 | minor
3       heartbeat    1      +1 every second, wraps at 65535 (a frozen terminal is seen as stale)
4-5     bets         2      total stakes accepted, minor units (cents)
6-7     wins         2      total payouts credited to winning bets, minor units
8-9     rounds       2      bets settled (count)
10-11   cash_in      2      notes and coins accepted, minor units
12-13   cash_out     2      cash paid out, minor units
14-15   tickets_in   2      tickets redeemed, minor units
16-17   tickets_out  2      tickets printed, minor units
18      control      1      write 1 to disable, 2 to enable (the terminal sets bit 0 of status)
19      map_version  1      1 for this map
======  ===========  =====  ======================================================================

Counters only grow; they wrap from 2**32 - 1 to 0. :func:`counter_delta` tells a wrap (a small
step past the top) from a reset (the terminal's memory cleared: the counter went back), and never
returns a negative amount.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

Kind = Literal["status", "code", "version", "heartbeat", "counter", "control", "map_version"]


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    address: int
    words: int
    kind: Kind
    unit: Literal["minor", "count", "none"] = "none"


@dataclass(frozen=True, slots=True)
class RegisterMap:
    """One vendor's layout. ``span`` registers from ``start`` are read in one request."""

    vendor: str
    name: str
    version: int
    fields: tuple[Field, ...]
    start: int = 0
    span: int = 20
    word_order: Literal["high_first", "low_first"] = "high_first"

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def counters(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.kind == "counter")


HALLSYNC_TERMINAL_V1: Final = RegisterMap(
    vendor="hallsync", name="terminal", version=1,
    fields=(
        Field("status", 0, 1, "status"),
        Field("error_code", 1, 1, "code"),
        Field("firmware", 2, 1, "version"),
        Field("heartbeat", 3, 1, "heartbeat"),
        Field("bets", 4, 2, "counter", "minor"),
        Field("wins", 6, 2, "counter", "minor"),
        Field("rounds", 8, 2, "counter", "count"),
        Field("cash_in", 10, 2, "counter", "minor"),
        Field("cash_out", 12, 2, "counter", "minor"),
        Field("tickets_in", 14, 2, "counter", "minor"),
        Field("tickets_out", 16, 2, "counter", "minor"),
        Field("control", 18, 1, "control"),
        Field("map_version", 19, 1, "map_version"),
    ),
)
MAPS: Final[dict[str, RegisterMap]] = {"hallsync-terminal-v1": HALLSYNC_TERMINAL_V1}
"""Maps by the name a devices.toml entry gives as ``map`` (default ``hallsync-terminal-v1``)."""

STATUS_BITS: Final[dict[str, int]] = {"enabled": 0, "in_service": 1, "door_open": 2, "error": 3, "paper_low": 4}
CONTROL_DISABLE: Final = 1
CONTROL_ENABLE: Final = 2


class RegisterError(ValueError):
    """The registers do not fit the map (too few, a value outside 0..65535, a wrong map version)."""


@dataclass(frozen=True, slots=True)
class TerminalReading:
    """One decoded read: every field's value, plus the status bits by name."""

    values: Mapping[str, int]
    flags: Mapping[str, bool]

    def __getitem__(self, name: str) -> int:
        return self.values[name]


def decode(regmap: RegisterMap, registers: Sequence[int]) -> TerminalReading:
    """Registers ``start .. start+span-1`` → values; raises :class:`RegisterError` on bad input."""
    if len(registers) < regmap.span:
        raise RegisterError(f"{regmap.vendor}/{regmap.name}: need {regmap.span} registers, got {len(registers)}")
    for i, word in enumerate(registers[:regmap.span]):
        if type(word) is not int or not 0 <= word <= 0xFFFF:
            raise RegisterError(f"register {regmap.start + i}: {word!r} is not a 16-bit word")
    values: dict[str, int] = {}
    for f in regmap.fields:
        at = f.address - regmap.start
        if f.words == 1:
            values[f.name] = registers[at]
        else:
            hi, lo = registers[at], registers[at + 1]
            if regmap.word_order == "low_first":
                hi, lo = lo, hi
            values[f.name] = hi << 16 | lo
    if "map_version" in values and values["map_version"] != regmap.version:
        raise RegisterError(f"terminal reports map version {values['map_version']}, expected {regmap.version}")
    status = values.get("status", 0)
    flags = {name: bool(status >> bit & 1) for name, bit in STATUS_BITS.items()}
    return TerminalReading(values, flags)


def encode(regmap: RegisterMap, values: Mapping[str, int]) -> list[int]:
    """The inverse of :func:`decode` (the simulator serves these words); missing fields are 0."""
    words = [0] * regmap.span
    for f in regmap.fields:
        value = int(values.get(f.name, regmap.version if f.kind == "map_version" else 0))
        limit = 1 << (16 * f.words)
        if not 0 <= value < limit:
            raise RegisterError(f"{f.name}: {value} does not fit {f.words} word(s)")
        at = f.address - regmap.start
        if f.words == 1:
            words[at] = value
        else:
            hi, lo = value >> 16, value & 0xFFFF
            if regmap.word_order == "low_first":
                hi, lo = lo, hi
            words[at], words[at + 1] = hi, lo
    return words


@dataclass(frozen=True, slots=True)
class CounterDelta:
    """How far a counter moved: ``amount`` ≥ 0 always; ``wrapped`` past 2**bits; ``reset`` when it
    went back (memory cleared): then ``amount`` is the new value, what was counted since the reset."""

    amount: int
    wrapped: bool = False
    reset: bool = False


WRAP_WINDOW: Final = 1 << 24
"""A step back larger than this near the top is taken as a wrap, otherwise as a reset: a terminal
does not move 16M minor units (160k in a two-decimal currency) between two polls a second apart."""


def counter_delta(previous: int, current: int, bits: int = 32) -> CounterDelta:
    """The movement of a monotonic counter between two reads (see :class:`CounterDelta`)."""
    top = 1 << bits
    if not (0 <= previous < top and 0 <= current < top):
        raise RegisterError(f"counter values {previous}, {current} outside 0..2**{bits}-1")
    if current >= previous:
        return CounterDelta(current - previous)
    wrapped = current + top - previous
    if previous >= top - WRAP_WINDOW and wrapped <= WRAP_WINDOW:
        return CounterDelta(wrapped, wrapped=True)
    return CounterDelta(current, reset=True)
