"""The terminal on the wire: pymodbus clients over TCP and over RTU on the pty, and mbpoll as an outside master."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator

import pytest
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from firmware_sim.modbus_server import ModbusTerminalServer
from firmware_sim.terminal import COUNTER_MODULUS, Terminal
from protocols.modbus import HALLSYNC_TERMINAL_V1, decode

pytestmark = pytest.mark.timeout(15)
ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, ILLEGAL_VALUE = 1, 2, 3
TIMEOUT = 0.3


def still_terminal(**kwargs: object) -> Terminal:
    """No customers and a stopped clock: the words do not move between two reads."""
    return Terminal(pace=0, clock=lambda: 500.0, **kwargs)  # type: ignore[arg-type]


def client_for(server: ModbusTerminalServer) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
    if server.transport == "tcp":
        return AsyncModbusTcpClient(server.host, port=server.port, timeout=TIMEOUT, retries=0)
    return AsyncModbusSerialClient(server.path, baudrate=19200, timeout=TIMEOUT, retries=0)


@pytest.fixture(params=["tcp", "rtu"])
async def served(request: pytest.FixtureRequest) -> AsyncIterator[tuple[ModbusTerminalServer, object]]:
    term = still_terminal(preset=COUNTER_MODULUS - 5)
    term.insert_cash(2000)
    term.bet(100, win=250)
    server = ModbusTerminalServer(term, unit=1, transport=request.param)
    await server.start()
    client = client_for(server)
    assert await client.connect()
    try:
        yield server, client
    finally:
        client.close()
        await server.stop()


async def test_read_all_twenty_registers_and_decode_them(served: tuple[ModbusTerminalServer, object]) -> None:
    server, client = served
    rr = await client.read_holding_registers(0, count=20, device_id=1)  # type: ignore[attr-defined]
    assert not rr.isError()
    assert rr.registers == server.terminal.registers()
    reading = decode(HALLSYNC_TERMINAL_V1, rr.registers)
    assert reading["cash_in"] == 1995 and reading["bets"] == 95 and reading["wins"] == 245
    assert reading.flags["enabled"] and reading.flags["in_service"]
    part = await client.read_holding_registers(4, count=4, device_id=1)  # type: ignore[attr-defined]
    assert part.registers == rr.registers[4:8]


async def test_control_write_reaches_the_terminal(served: tuple[ModbusTerminalServer, object]) -> None:
    server, client = served
    wr = await client.write_register(18, 1, device_id=1)  # type: ignore[attr-defined]
    assert not wr.isError() and wr.registers == [1]
    assert not server.terminal.enabled
    reading = decode(HALLSYNC_TERMINAL_V1, (await client.read_holding_registers(0, count=20, device_id=1)).registers)  # type: ignore[attr-defined]
    assert not reading.flags["enabled"] and reading["control"] == 1
    wr = await client.write_registers(18, [2], device_id=1)  # type: ignore[attr-defined]
    assert not wr.isError() and server.terminal.enabled


async def test_illegal_requests_get_exception_responses(served: tuple[ModbusTerminalServer, object]) -> None:
    server, client = served
    cases = [
        (client.read_holding_registers(0, count=21, device_id=1), ILLEGAL_ADDRESS),  # type: ignore[attr-defined]
        (client.read_holding_registers(20, count=1, device_id=1), ILLEGAL_ADDRESS),  # type: ignore[attr-defined]
        (client.read_holding_registers(1000, count=2, device_id=1), ILLEGAL_ADDRESS),  # type: ignore[attr-defined]
        (client.write_register(4, 0, device_id=1), ILLEGAL_ADDRESS),                 # type: ignore[attr-defined]
        (client.write_register(18, 7, device_id=1), ILLEGAL_VALUE),                  # type: ignore[attr-defined]
        (client.read_input_registers(0, count=2, device_id=1), ILLEGAL_FUNCTION),    # type: ignore[attr-defined]
    ]
    for request, code in cases:
        response = await request
        assert response.isError() and response.exception_code == code, response
    assert server.terminal.enabled and server.terminal.counters["bets"] == 95


async def test_another_unit_gets_no_answer(served: tuple[ModbusTerminalServer, object]) -> None:
    _server, client = served
    with pytest.raises(ModbusIOException):
        await client.read_holding_registers(0, count=2, device_id=2)  # type: ignore[attr-defined]
    rr = await client.read_holding_registers(0, count=2, device_id=1)  # type: ignore[attr-defined]
    assert not rr.isError()                                                # the line is still good


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
async def test_the_unit_id_is_configurable(transport: str) -> None:
    async with ModbusTerminalServer(still_terminal(), unit=17, transport=transport) as server:  # type: ignore[arg-type]
        client = client_for(server)
        assert await client.connect()
        try:
            assert not (await client.read_holding_registers(0, count=20, device_id=17)).isError()
            with pytest.raises(ModbusIOException):
                await client.read_holding_registers(0, count=20, device_id=1)
        finally:
            client.close()


async def test_registers_move_while_customers_play() -> None:
    term = Terminal(pace=0.01)
    async with ModbusTerminalServer(term) as server:
        client = client_for(server)
        assert await client.connect()
        try:
            first = decode(HALLSYNC_TERMINAL_V1, (await client.read_holding_registers(0, count=20)).registers)
            await asyncio.sleep(0.3)
            second = decode(HALLSYNC_TERMINAL_V1, (await client.read_holding_registers(0, count=20)).registers)
        finally:
            client.close()
    assert second["rounds"] > first["rounds"] and second["bets"] > first["bets"]


async def test_tcp_vanish_refuses_connections_and_restore_serves_on_the_same_port() -> None:
    async with ModbusTerminalServer(still_terminal()) as server:
        port = server.port
        client = client_for(server)
        assert await client.connect()
        await server.vanish()
        with pytest.raises(ModbusIOException):
            await client.read_holding_registers(0, count=20)
        client.close()
        fresh = client_for(server)
        assert not await fresh.connect()                       # connection refused
        fresh.close()
        await server.restore()
        assert server.port == port
        again = client_for(server)
        assert await again.connect()
        try:
            assert (await again.read_holding_registers(0, count=20)).registers == server.terminal.registers()
        finally:
            again.close()


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
async def test_silent_vanish_keeps_the_line_but_answers_nothing(transport: str) -> None:
    async with ModbusTerminalServer(still_terminal(), transport=transport) as server:  # type: ignore[arg-type]
        client = client_for(server)
        assert await client.connect()
        try:
            await server.vanish(close=False)
            with pytest.raises(ModbusIOException):
                await client.read_holding_registers(0, count=20)
            await server.restore()
            if not client.connected:
                assert await client.connect()
            assert not (await client.read_holding_registers(0, count=20)).isError()
        finally:
            client.close()


# ---- an independent master ---------------------------------------------------------------------------

MBPOLL = shutil.which("mbpoll")

_LINE = re.compile(r"^\[(\d+)\]:\s+(\d+)", re.MULTILINE)


async def mbpoll(*args: str) -> tuple[int, str]:
    if MBPOLL is None:  # a missing outside master must not pass silently: .ci/run installs it
        pytest.fail("mbpoll is not installed (Debian: apt-get install mbpoll; .ci/run does it)")
    proc = await asyncio.create_subprocess_exec(MBPOLL, *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=10)
    return proc.returncode or 0, out.decode(errors="replace")


async def test_mbpoll_reads_the_words_the_model_holds() -> None:
    term = still_terminal(preset=COUNTER_MODULUS - 1000)
    term.insert_cash(5000)
    term.bet(200, win=400)
    term.cash_out(ticket=True)
    async with ModbusTerminalServer(term) as server:
        port = str(server.port)
        code, out = await mbpoll("-m", "tcp", "-a", "1", "-r", "1", "-c", "20", "-t", "4", "-1", "127.0.0.1",
                                 "-p", port)
        assert code == 0, out
        refs = {int(ref): int(value) for ref, value in _LINE.findall(out)}
        assert refs == {i + 1: word for i, word in enumerate(term.registers())}     # 1-based references
        code, out = await mbpoll("-m", "tcp", "-a", "1", "-0", "-r", "0", "-c", "20", "-t", "4", "-1",
                                 "127.0.0.1", "-p", port)
        assert code == 0, out
        assert [int(v) for _, v in _LINE.findall(out)] == term.registers()          # -0: 0-based references
        code, out = await mbpoll("-m", "tcp", "-a", "1", "-r", "19", "-t", "4", "127.0.0.1", "-p", port, "1")
        assert code == 0 and "Written 1 references" in out, out
        assert not term.enabled
        code, out = await mbpoll("-m", "tcp", "-a", "1", "-r", "1", "-c", "21", "-t", "4", "-1", "127.0.0.1",
                                 "-p", port)
        assert code != 0 and "Illegal data address" in out, out
