"""CRC-16/KERMIT as SAS uses it: poly 0x1021 reflected (0x8408), init 0, no xorout, low byte first.

The CRC covers the address byte through the last data byte (notes/sas-protocol.md §3.2).
"""

from __future__ import annotations

from .errors import CRCError, FrameError


def _make_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _make_table()


def crc16_kermit(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """Return the CRC as an integer; on the wire it goes low byte first (see :func:`append_crc`)."""
    for byte in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ byte) & 0xFF]
    return crc


def append_crc(message: bytes) -> bytes:
    """``message`` followed by its CRC, low byte first, as it goes on the wire."""
    crc = crc16_kermit(message)
    return bytes(message) + bytes((crc & 0xFF, crc >> 8))


def strip_crc(frame: bytes) -> bytes:
    """Check the trailing CRC of ``frame`` and return the message without it."""
    if len(frame) < 3:
        raise FrameError(f"frame of {len(frame)} bytes is too short to carry a CRC")
    body, lo, hi = frame[:-2], frame[-2], frame[-1]
    expected = crc16_kermit(body)
    if (lo | hi << 8) != expected:
        raise CRCError(f"CRC {lo:02X} {hi:02X} does not match {expected & 0xFF:02X} {expected >> 8:02X}")
    return bytes(body)
