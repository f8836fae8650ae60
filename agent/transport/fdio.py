"""A non-blocking file descriptor driven by the event loop (``add_reader``), shared by pty and UART.

Incoming bytes are decoded to 9-bit characters as they arrive (PARMRK marks via
``wire.MarkDecoder``, or plain bytes in structural framing) and buffered until :meth:`receive`
takes them. No threads: the loop wakes us when the fd is readable.
"""

from __future__ import annotations

import asyncio
import errno
import os
import termios

from protocols.sas import wire

from .base import Framing, SasTransport
from .errors import PortClosed, TransportError, check_serial_path

WRITE_TIMEOUT = 1.0
"""A write that cannot finish within this time means nobody drains the line (dead pty peer)."""


class FdTransport(SasTransport):
    """Common machinery; subclasses open ``self._fd`` and define how the wakeup bit is written."""

    def __init__(self, path: str, framing: Framing = "marks") -> None:
        if framing not in ("marks", "structural"):
            raise ValueError(f"framing must be 'marks' or 'structural', not {framing!r}")
        self.path = path
        self.name = path
        self.framing: Framing = framing
        self._fd: int | None = None
        self._decoder = wire.MarkDecoder()
        self._rx: list[int] = []
        self._waiter: asyncio.Future[None] | None = None
        self._error: TransportError | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- subclasses ------------------------------------------------------------------------------
    def _open_fd(self) -> int:
        raise NotImplementedError

    def _close_fd(self, fd: int) -> None:
        os.close(fd)

    # ---- lifecycle -------------------------------------------------------------------------------
    async def open(self) -> None:
        if self._fd is not None:
            return
        self._loop = asyncio.get_running_loop()
        check_serial_path(self.path)
        self._fd = self._open_fd()
        self._error = None
        self._loop.add_reader(self._fd, self._on_readable)

    async def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(fd)
        try:
            self._close_fd(fd)
        except OSError:
            pass
        self._wake(PortClosed(f"{self.path} closed"))

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    # ---- receive ---------------------------------------------------------------------------------
    def _decode(self, data: bytes) -> list[int]:
        if self.framing == "structural":
            return list(data)
        return self._decoder.feed(data)

    def _on_readable(self) -> None:
        fd = self._fd
        if fd is None:
            return
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            self._hangup(os.strerror(exc.errno or errno.EIO))
            return
        if not data:
            self._hangup("end of file")  # a hung-up tty reads as EOF, forever: stop listening
            return
        chars = self._decode(data)
        if chars:
            self._rx.extend(chars)
            self._wake(None)

    def _hangup(self, why: str) -> None:
        """The peer went away (pty master closed, USB adapter unplugged): stop listening, report once."""
        if self._loop is not None and self._fd is not None:
            self._loop.remove_reader(self._fd)
        self._error = PortClosed(f"{self.path}: read failed ({why}); is the device or simulator still there?")
        self._wake(self._error)

    def _wake(self, exc: BaseException | None) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)

    async def receive(self, timeout: float) -> list[int]:
        if self._rx:
            out, self._rx = self._rx, []
            return out
        if self._error is not None:
            raise self._error
        if self._fd is None or self._loop is None:
            raise PortClosed(f"{self.path} is not open")
        if timeout <= 0:
            return []
        waiter = self._loop.create_future()
        self._waiter = waiter
        handle = self._loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            handle.cancel()
            if self._waiter is waiter:
                self._waiter = None
        out, self._rx = self._rx, []
        return out

    def reset_input(self) -> list[int]:
        # Read what the kernel already holds, then forget it and any half-decoded mark.
        fd = self._fd
        raw = bytearray()
        if fd is not None:
            try:
                while chunk := os.read(fd, 4096):
                    raw += chunk
            except OSError:
                pass
        out = self._rx + (self._decode(bytes(raw)) if raw else [])
        self._rx = []
        self._decoder.reset()
        return out

    # ---- send ------------------------------------------------------------------------------------
    async def _write_all(self, data: bytes) -> None:
        """Write without blocking the loop; waits for room (add_writer) when the buffer is full."""
        fd = self._fd
        if fd is None or self._loop is None:
            raise PortClosed(f"{self.path} is not open")
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
                view = view[n:]
                continue
            except BlockingIOError:
                pass
            except OSError as exc:
                raise TransportError(f"{self.path}: write failed ({exc.strerror})") from exc
            ready = self._loop.create_future()
            self._loop.add_writer(fd, _set_done, ready)
            try:
                await asyncio.wait_for(ready, WRITE_TIMEOUT)
            except TimeoutError as exc:
                raise TransportError(f"{self.path}: output stalled for {WRITE_TIMEOUT:.0f} s; "
                                     f"nobody reads the line") from exc
            finally:
                self._loop.remove_writer(fd)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def set_raw(fd: int) -> None:
    """cfmakeraw on ``fd``: no echo, no line discipline, 8-bit clean, VMIN=VTIME=0."""
    attrs = termios.tcgetattr(fd)
    attrs[0] &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP | termios.INLCR
                  | termios.IGNCR | termios.ICRNL | termios.IXON)
    attrs[1] &= ~termios.OPOST
    attrs[3] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
    attrs[2] &= ~(termios.CSIZE | termios.PARENB)
    attrs[2] |= termios.CS8
    attrs[6][termios.VMIN] = 0
    attrs[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
