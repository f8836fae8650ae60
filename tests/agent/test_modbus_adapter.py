"""ModbusAdapter against a real pymodbus server on loopback."""

from __future__ import annotations

import asyncio
import time

import pytest

from agent.modbus.adapter import (
    ModbusAdapter,
    ModbusDeviceError,
    ModbusEndpoint,
    ModbusTimeout,
    ModbusUnreachable,
)
from protocols.modbus import HALLSYNC_TERMINAL_V1, decode

from .modbus_helpers import SilentServer, TestTerminal, free_port


def test_read_holding_decodes_the_map() -> None:
    async def go() -> None:
        async with TestTerminal(bets=70_000, wins=123_456_789, rounds=5) as term:
            adapter = ModbusAdapter(ModbusEndpoint(host="127.0.0.1", port=term.port, unit=1), timeout=1.0)
            words = await adapter.read_holding(0, 20)
            reading = decode(HALLSYNC_TERMINAL_V1, words)
            assert reading["bets"] == 70_000 and reading["wins"] == 123_456_789 and reading["rounds"] == 5
            assert reading.flags["enabled"] and reading["map_version"] == 1
            await adapter.close()

    asyncio.run(go())


def test_write_register_reaches_the_terminal() -> None:
    async def go() -> None:
        async with TestTerminal() as term:
            adapter = ModbusAdapter(ModbusEndpoint(host="127.0.0.1", port=term.port), timeout=1.0)
            await adapter.write_register(18, 1)
            assert term.writes == [(18, 1)]
            assert not decode(HALLSYNC_TERMINAL_V1, await adapter.read_holding(0, 20)).flags["enabled"]
            await adapter.close()

    asyncio.run(go())


def test_exception_response_becomes_our_error() -> None:
    async def go() -> None:
        async with TestTerminal() as term:
            adapter = ModbusAdapter(ModbusEndpoint(host="127.0.0.1", port=term.port), timeout=1.0)
            with pytest.raises(ModbusDeviceError) as info:
                await adapter.read_holding(0, 25)   # past the 20 registers: illegal data address
            assert info.value.code == 2
            assert len(await adapter.read_holding(0, 20)) == 20   # the link is still fine
            await adapter.close()

    asyncio.run(go())


def test_unreachable_when_nothing_listens_and_when_the_server_goes() -> None:
    async def go() -> None:
        adapter = ModbusAdapter(ModbusEndpoint(host="127.0.0.1", port=free_port()), timeout=0.5)
        with pytest.raises(ModbusUnreachable):
            await adapter.read_holding(0, 20)
        term = TestTerminal()
        await term.start()
        adapter = ModbusAdapter(ModbusEndpoint(host="127.0.0.1", port=term.port), timeout=0.5)
        await adapter.read_holding(0, 20)
        await term.stop()
        started = time.monotonic()
        with pytest.raises((ModbusUnreachable, ModbusTimeout)):
            await adapter.read_holding(0, 20)
        assert time.monotonic() - started < 1.5
        await term.start()   # back on the same port: the adapter reconnects by itself
        assert len(await adapter.read_holding(0, 20)) == 20
        await adapter.close()
        await term.stop()

    asyncio.run(go())


def test_timeout_when_the_terminal_hangs() -> None:
    async def go() -> None:
        async with SilentServer() as silent:
            adapter = ModbusAdapter(ModbusEndpoint(host="127.0.0.1", port=silent.port), timeout=0.3)
            started = time.monotonic()
            with pytest.raises(ModbusTimeout):
                await adapter.read_holding(0, 20)
            assert 0.25 < time.monotonic() - started < 1.0
            assert not adapter.connected   # dropped: a late answer can never match a new request
            await adapter.close()

    asyncio.run(go())


def test_endpoint_validation() -> None:
    with pytest.raises(ValueError):
        ModbusEndpoint(unit=1)
    with pytest.raises(ValueError):
        ModbusEndpoint(host="h", serial="/dev/ttyS0")
    with pytest.raises(ValueError):
        ModbusEndpoint(host="h", unit=300)
    assert ModbusEndpoint(serial="/dev/pts/3", baudrate=9600).describe() == "rtu /dev/pts/3@9600 unit 1"


def test_rtu_over_a_pty_with_the_simulated_terminal() -> None:
    sim = pytest.importorskip("firmware_sim.modbus_server")
    terminal = pytest.importorskip("firmware_sim.terminal")

    async def go() -> None:
        async with sim.ModbusTerminalServer(terminal.Terminal(1, seed=1, pace=0), transport="rtu", unit=2) as srv:
            path = srv.endpoint["port"]
            adapter = ModbusAdapter(ModbusEndpoint(unit=2, serial=path), timeout=1.0)
            reading = decode(HALLSYNC_TERMINAL_V1, await adapter.read_holding(0, 20))
            assert reading["map_version"] == 1 and reading.flags["enabled"]
            await adapter.write_register(18, 1)
            assert not decode(HALLSYNC_TERMINAL_V1, await adapter.read_holding(0, 20)).flags["enabled"]
            await adapter.close()
            other = ModbusAdapter(ModbusEndpoint(unit=9, serial=path), timeout=0.3)   # nobody answers unit 9
            with pytest.raises(ModbusTimeout):
                await other.read_holding(0, 20)
            await other.close()

    asyncio.run(go())


def test_garbage_answers_are_a_clear_error_and_the_next_terminal_answer_works() -> None:
    """A device (or a man in the middle) answering bytes that are no Modbus frame: our error, no crash;
    after it the adapter reconnects and a real answer is read again."""
    from agent.modbus.adapter import ModbusError

    async def go() -> None:
        replies = [b"\x00\x01\x00\x00\x00\x03\x01\x83", b"\xff" * 64, b"not modbus at all\r\n"]

        async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(260)
            writer.write(replies.pop(0) if replies else b"\x00")
            await writer.drain()
            await asyncio.sleep(0.5)
            writer.close()

        server = await asyncio.start_server(garbage, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        adapter = ModbusAdapter(ModbusEndpoint(host="127.0.0.1", port=port), timeout=0.3)
        failures = 0
        for _ in range(3):
            with pytest.raises(ModbusError):
                await adapter.read_holding(0, 20)
            failures += 1
        await adapter.close()
        server.close()
        await server.wait_closed()
        assert failures == 3
        async with TestTerminal(bets=5) as term:
            adapter = ModbusAdapter(ModbusEndpoint(host="127.0.0.1", port=term.port), timeout=1.0)
            assert decode(HALLSYNC_TERMINAL_V1, await adapter.read_holding(0, 20))["bets"] == 5
            await adapter.close()

    asyncio.run(go())
