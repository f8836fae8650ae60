"""Packed BCD, most significant byte first, as SAS meters, dates and game numbers use it."""

from __future__ import annotations

from .errors import BCDError


def encode_bcd(value: int, width: int) -> bytes:
    """``value`` as ``width`` bytes of packed BCD; raises :class:`BCDError` if it does not fit."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise BCDError(f"BCD value must be an int, not {type(value).__name__}")
    if value < 0:
        raise BCDError(f"BCD cannot hold a negative value ({value})")
    digits = f"{value:0{width * 2}d}"
    if len(digits) > width * 2:
        raise BCDError(f"{value} does not fit in {width} BCD bytes")
    return bytes.fromhex(digits)


def decode_bcd(data: bytes | bytearray | memoryview) -> int:
    """The integer a packed-BCD field holds; a nibble above 9 raises :class:`BCDError`."""
    value = 0
    for byte in data:
        hi, lo = byte >> 4, byte & 0x0F
        if hi > 9 or lo > 9:
            raise BCDError(f"byte {byte:02X} is not packed BCD")
        value = value * 100 + hi * 10 + lo
    return value


def bcd_max(width: int) -> int:
    """The largest value ``width`` BCD bytes hold; meters roll over to 0 past it."""
    power: int = 10 ** (width * 2)   # int ** int is Any to a type checker (a negative exponent gives a float)
    return power - 1
