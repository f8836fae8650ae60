"""The 9th (wakeup) bit on byte streams that carry only 8 bits.

A SAS character is 9 bits: 8 data bits plus the wakeup bit that the host sets on the first byte of
every message. In this codec a character is an ``int``: the byte value, plus :data:`WAKEUP` (0x100)
when the wakeup bit is set.

On a real UART with ``INPCK|PARMRK`` and on our ptys the wakeup bit travels as Linux's own PARMRK
marking (design.md, vectors ``pty_wakeup_encoding``): ``FF 00 xx`` is ``xx`` with the wakeup bit,
``FF FF`` is a literal ``FF``, any other byte is itself without the wakeup bit. The same marking is
used in both directions on a pty, so an EGM's chirp can carry its wakeup bit too.
"""

from __future__ import annotations

from collections.abc import Iterable

WAKEUP = 0x100
MARK = 0xFF


def chars(message: bytes, wakeup_first: bool = True) -> list[int]:
    """A message as 9-bit characters, the first one with the wakeup bit (host messages, chirps)."""
    out = list(message)
    if wakeup_first and out:
        out[0] |= WAKEUP
    return out


def mark_encode(characters: Iterable[int]) -> bytes:
    """9-bit characters → PARMRK-marked bytes."""
    out = bytearray()
    for ch in characters:
        value = ch & 0xFF
        if ch & WAKEUP:
            out += bytes((MARK, 0x00, value))
        elif value == MARK:
            out += b"\xff\xff"
        else:
            out.append(value)
    return bytes(out)


def mark_message(message: bytes, wakeup_first: bool = True) -> bytes:
    """Shortcut: a message with the wakeup bit on its first byte, PARMRK-marked."""
    return mark_encode(chars(message, wakeup_first))


class MarkDecoder:
    """PARMRK-marked bytes → 9-bit characters, across arbitrary chunk boundaries.

    ``FF`` followed by a byte other than ``00`` or ``FF`` cannot come from PARMRK; it is kept as a
    literal ``FF`` followed by that byte so that garbage reaches the framer (which rejects it)
    instead of vanishing here.
    """

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = b""

    def reset(self) -> None:
        self._pending = b""

    @property
    def pending(self) -> bool:
        """True while a mark sequence is incomplete (more bytes needed)."""
        return bool(self._pending)

    def feed(self, data: bytes) -> list[int]:
        buf = self._pending + bytes(data)
        out: list[int] = []
        i, n = 0, len(buf)
        while i < n:
            b = buf[i]
            if b != MARK:
                out.append(b)
                i += 1
                continue
            if i + 1 >= n:
                break
            nxt = buf[i + 1]
            if nxt == MARK:
                out.append(MARK)
                i += 2
            elif nxt == 0x00:
                if i + 2 >= n:
                    break
                out.append(buf[i + 2] | WAKEUP)
                i += 3
            else:
                out.append(MARK)
                i += 1
        self._pending = buf[i:]
        return out
