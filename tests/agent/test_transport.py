"""Transports: the UART's termios flags, the pty's marking, clear errors for a technician."""

from __future__ import annotations

import os
import termios
import tty

import pytest

from agent.transport import PortNotFound, PtyTransport, default_kind, make_transport, uart_attrs
from agent.transport.errors import PortClosed, PortPermission, describe_open_error
from agent.transport.uart import CMSPAR, UartTransport
from protocols.sas import wire
from tests.waits import until


def _base() -> list:
    master, slave = os.openpty()
    try:
        return termios.tcgetattr(slave)
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.parametrize("mark", [True, False])
def test_uart_attrs_stick_parity_and_parmrk(mark: bool) -> None:
    iflag, oflag, cflag, lflag, ispeed, ospeed, cc = uart_attrs(_base(), mark=mark)
    assert cflag & termios.PARENB and cflag & CMSPAR, "stick parity"
    assert bool(cflag & termios.PARODD) is mark, "PARODD = mark (wakeup) parity"
    assert cflag & termios.CSIZE == termios.CS8 and not cflag & termios.CSTOPB
    assert cflag & termios.CREAD and cflag & termios.CLOCAL
    assert iflag & termios.INPCK and iflag & termios.PARMRK, "parity errors marked FF 00 xx"
    assert not iflag & (termios.IGNPAR | termios.ISTRIP | termios.IXON | termios.ICRNL)
    assert not lflag & (termios.ICANON | termios.ECHO | termios.ISIG) and not oflag & termios.OPOST
    assert ispeed == ospeed == termios.B19200
    assert cc[termios.VMIN] == 0 and cc[termios.VTIME] == 0


def test_uart_receive_flags_survive_tcsetattr() -> None:
    """INPCK|PARMRK as applied to a tty stay set (a pty drops PARENB, never the input flags)."""
    master, slave = os.openpty()
    try:
        termios.tcsetattr(slave, termios.TCSANOW, uart_attrs(termios.tcgetattr(slave), mark=False))
        iflag = termios.tcgetattr(slave)[0]
        assert iflag & termios.INPCK and iflag & termios.PARMRK and not iflag & termios.ISTRIP
    finally:
        os.close(master)
        os.close(slave)


def test_default_kind_by_path() -> None:
    assert default_kind("/dev/pts/7") == "pty"
    assert default_kind("/dev/ttyUSB0") == "uart"
    assert isinstance(make_transport("/dev/ttyS0"), UartTransport)
    assert isinstance(make_transport("/dev/ttyS0", "pty"), PtyTransport)


@pytest.fixture
def pty_pair():
    master, slave = os.openpty()
    tty.setraw(master)
    os.set_blocking(master, False)
    yield master, os.ttyname(slave)
    for fd in (master, slave):
        try:
            os.close(fd)
        except OSError:
            pass


async def test_pty_marks_the_wakeup_bit_both_ways(pty_pair) -> None:
    master, path = pty_pair
    t = PtyTransport(path, "marks")
    await t.open()
    try:
        await t.send(wire.chars(bytes((0x01, 0x1A))))
        assert os.read(master, 100) == b"\xff\x00\x01\x1a"
        os.write(master, b"\x01\xff\xff\xff\x00\x05")
        got: list[int] = []
        while len(got) < 3:
            got += await t.receive(1.0)
        assert got == [0x01, 0xFF, 0x05 | wire.WAKEUP]
        assert await t.receive(0.02) == []
    finally:
        await t.close()


async def test_pty_structural_writes_plain_bytes(pty_pair) -> None:
    master, path = pty_pair
    t = PtyTransport(path, "structural")
    await t.open()
    try:
        await t.send(wire.chars(bytes((0x81,))))
        assert os.read(master, 100) == b"\x81"
    finally:
        await t.close()


async def test_reset_input_drops_stale_bytes(pty_pair) -> None:
    master, path = pty_pair
    t = PtyTransport(path)
    await t.open()
    try:
        os.write(master, b"\x11\x12")
        await t.receive(0.2)
        os.write(master, b"\x13")
        dropped: list[int] = []
        await until(lambda: dropped.extend(t.reset_input()) or dropped, "the stale byte is read")
        assert dropped == [0x13]   # returned, so the line can read a late answer out of it
        assert t.reset_input() == [] and await t.receive(0.02) == []
    finally:
        await t.close()


async def test_missing_port_is_a_clear_error(tmp_path) -> None:
    t = PtyTransport(str(tmp_path / "nope"))
    with pytest.raises(PortNotFound, match="not found"):
        await t.open()


def test_permission_message_names_the_fix() -> None:
    err = describe_open_error("/dev/ttyS0", PermissionError(13, "Permission denied"))
    assert isinstance(err, PortPermission) and "dialout" in str(err)


async def test_pty_peer_gone_is_reported(pty_pair) -> None:
    master, path = pty_pair
    t = PtyTransport(path)
    await t.open()
    os.close(master)
    try:
        with pytest.raises(PortClosed):
            for _ in range(10):
                await t.receive(0.05)
    finally:
        await t.close()
