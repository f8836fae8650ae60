"""SAS (Slot Accounting System) 6.0x, sans-IO: CRC, BCD, framing, long polls, exceptions.

Layers: ``wire`` (9-bit characters and PARMRK marking) → ``framing`` (frames, incremental framers)
→ ``longpolls`` (typed messages) → ``ackstate`` (implied ACK/NACK). Nothing here reads a clock or a
file descriptor.
"""

from . import ackstate, clock, exceptions, framing, longpolls, meters, wire
from .bcd import decode_bcd, encode_bcd
from .crc import append_crc, crc16_kermit, strip_crc
from .errors import BCDError, CRCError, FrameError, SASError

__all__ = [
    "BCDError", "CRCError", "FrameError", "SASError", "ackstate", "append_crc", "clock", "crc16_kermit",
    "decode_bcd", "encode_bcd", "exceptions", "framing", "longpolls", "meters", "strip_crc", "wire",
]
