"""SAS over a pty (the simulator's ports): the wakeup bit travels as PARMRK-style marks.

A pty carries no parity (notes §0.1), so in ``marks`` framing we write ``wire.mark_encode`` bytes
(``FF 00 xx`` = xx with the wakeup bit, ``FF FF`` = literal FF) and decode the same marking on
receive. ``structural`` framing writes plain bytes; the peer frames by message structure.
"""

from __future__ import annotations

import os
import termios

from protocols.sas import wire

from .errors import describe_open_error, not_a_serial_port
from .fdio import FdTransport, set_raw


class PtyTransport(FdTransport):
    """One pty slave path, opened raw and non-blocking."""

    def _open_fd(self) -> int:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError as exc:
            raise describe_open_error(self.path, exc) from exc
        try:
            set_raw(fd)
        except termios.error as exc:  # a character device that is not a tty (/dev/null)
            os.close(fd)
            raise not_a_serial_port(self.path, "a device that is not a tty") from exc
        except Exception:
            os.close(fd)
            raise
        return fd

    async def send(self, chars: list[int]) -> None:
        if self.framing == "structural":
            data = bytes(ch & 0xFF for ch in chars)
        else:
            data = wire.mark_encode(chars)
        await self._write_all(data)
