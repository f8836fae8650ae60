"""SAS over a real UART: the wakeup bit is stick parity (CMSPAR), received via INPCK|PARMRK.

Writing a host message: the first byte goes out with mark parity (parity bit = 1 = wakeup), the line
is drained (``tcdrain``) **before** switching back to space parity, then the rest goes out with
space parity (notes §1: settings apply with TCSANOW, bytes still in the FIFO would otherwise take the
new parity). Receiving with space parity, ``INPCK|PARMRK`` make the kernel mark a byte whose parity
bit is 1 (a chirp) as ``FF 00 xx`` and a literal FF as ``FF FF`` — the same marking the pty transport
uses, decoded by ``wire.MarkDecoder``.

pyserial (3.5) opens the port (exclusive lock, clear errors) but clears INPCK/ISTRIP/PARMRK in every
``_reconfigure_port``; so the attributes are computed by :func:`uart_attrs` and applied with raw
termios right after pyserial's only configuration (the open), and we never touch pyserial settings
again: parity switches go straight through ``tcsetattr`` with attrs built by the same function.
"""

from __future__ import annotations

import asyncio
import termios
from typing import Any

from protocols.sas import wire

from .base import Framing
from .errors import TransportError, describe_open_error, not_a_serial_port
from .fdio import FdTransport

CMSPAR = getattr(termios, "CMSPAR", 0o10000000000)
"""Stick ("mark/space") parity; Python's termios module lacks it on some builds (0x40000000)."""

BAUD = 19200
BITS_PER_CHAR = 11  # start + 8 data + parity (wakeup) + stop


def uart_attrs(attrs: list, mark: bool, baud: int = BAUD) -> list:
    """The termios attribute list for SAS on a UART: raw 8 data bits, stick parity, PARMRK receive.

    ``mark`` True gives mark parity (the wakeup bit on every byte written), False space parity.
    Pure: returns a new list, so it is unit-tested without hardware.
    """
    speed = getattr(termios, f"B{baud}")
    iflag, oflag, cflag, lflag, _ispeed, _ospeed, cc = attrs
    iflag = (iflag | termios.INPCK | termios.PARMRK) & ~(
        termios.IGNPAR | termios.ISTRIP | termios.IGNBRK | termios.BRKINT | termios.INLCR | termios.IGNCR
        | termios.ICRNL | termios.IXON | termios.IXOFF | termios.IXANY)
    oflag &= ~termios.OPOST
    cflag &= ~(termios.CSIZE | termios.CSTOPB | termios.PARODD | getattr(termios, "CRTSCTS", 0))
    cflag |= termios.CS8 | termios.CREAD | termios.CLOCAL | termios.PARENB | CMSPAR
    if mark:
        cflag |= termios.PARODD
    lflag &= ~(termios.ICANON | termios.ECHO | termios.ECHOE | termios.ECHOK | termios.ECHONL
               | termios.ISIG | termios.IEXTEN)
    cc = list(cc)
    cc[termios.VMIN] = 0
    cc[termios.VTIME] = 0
    return [iflag, oflag, cflag, lflag, speed, speed, cc]


class UartTransport(FdTransport):
    """A real serial port (``/dev/ttyS*``, ``/dev/ttyUSB*``) driven by stick parity."""

    def __init__(self, path: str, framing: Framing = "marks", baud: int = BAUD) -> None:
        super().__init__(path, framing)
        self.baud = baud
        self._serial = None
        self._mark_attrs: list[Any] | None = None
        self._space_attrs: list[Any] | None = None

    def _open_fd(self) -> int:
        import serial  # pyserial; imported here so pty-only installs and tests never need it

        try:
            port = serial.Serial(self.path, self.baud, bytesize=serial.EIGHTBITS,
                                 parity=serial.PARITY_SPACE, stopbits=serial.STOPBITS_ONE, timeout=0,
                                 exclusive=True)
        except serial.SerialException as exc:
            err = exc.__context__ if isinstance(exc.__context__, OSError) else None
            if isinstance(err, OSError) or getattr(exc, "errno", None):
                raise describe_open_error(self.path, err or exc) from exc
            if isinstance(exc.__context__, termios.error):  # opened, but no tty to configure (/dev/null)
                raise not_a_serial_port(self.path, "a device that is not a tty") from exc
            raise TransportError(f"cannot open {self.path}: {exc}") from exc
        self._serial = port
        fd = port.fileno()
        base = termios.tcgetattr(fd)
        self._mark_attrs = uart_attrs(base, mark=True, baud=self.baud)
        self._space_attrs = uart_attrs(base, mark=False, baud=self.baud)
        # pyserial just cleared INPCK/PARMRK in _reconfigure_port: put them back.
        termios.tcsetattr(fd, termios.TCSANOW, self._space_attrs)
        return fd

    def _close_fd(self, fd: int) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            port.close()

    async def _drain(self, nbytes: int) -> None:
        """Wait until ``nbytes`` have left the UART without blocking the loop for their duration."""
        await asyncio.sleep(nbytes * BITS_PER_CHAR / self.baud)
        assert self._fd is not None
        termios.tcdrain(self._fd)  # normally immediate by now

    async def send(self, chars: list[int]) -> None:
        fd = self._fd
        if fd is None:
            raise TransportError(f"{self.path} is not open")
        if self.framing == "structural":
            await self._write_all(bytes(ch & 0xFF for ch in chars))
            return
        i = 0
        while i < len(chars):
            j = i + 1
            woken = bool(chars[i] & wire.WAKEUP)
            while j < len(chars) and bool(chars[j] & wire.WAKEUP) == woken:
                j += 1
            mark, space = self._mark_attrs, self._space_attrs
            assert mark is not None and space is not None  # set with the fd, in _open_fd
            termios.tcsetattr(fd, termios.TCSANOW, mark if woken else space)
            await self._write_all(bytes(ch & 0xFF for ch in chars[i:j]))
            if woken:
                await self._drain(j - i)  # before the switch back to space parity
                termios.tcsetattr(fd, termios.TCSANOW, space)
            i = j
