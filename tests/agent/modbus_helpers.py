"""A tiny in-test Modbus TCP terminal (pymodbus server serving protocols.modbus's map) and helpers."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from agent.modbus.coordinator import ModbusPollConfig
from protocols.modbus import HALLSYNC_TERMINAL_V1, STATUS_BITS, encode
from protocols.modbus.registers import CONTROL_DISABLE, CONTROL_ENABLE

ENABLED_IN_SERVICE = 1 << STATUS_BITS["enabled"] | 1 << STATUS_BITS["in_service"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TestTerminal:
    """``values`` (field name → int) are what the terminal serves; tests move them at will.
    ``stop()`` makes the terminal vanish; ``start()`` brings it back on the same port."""

    __test__ = False

    def __init__(self, port: int | None = None, unit: int = 1, **values: int) -> None:
        self.port = port or free_port()
        self.unit = unit
        self.values: dict[str, Any] = {"status": ENABLED_IN_SERVICE, "firmware": 0x0102, **values}
        self.writes: list[tuple[int, int]] = []
        self.heartbeat_moves = True
        self.server: ModbusTcpServer | None = None

    def add(self, **deltas: int) -> None:
        for name, amount in deltas.items():
            self.values[name] = (self.values.get(name, 0) + amount) % (1 << 32)

    async def _action(self, fc: int, start: int, address: int, count: int, registers: list[int],
                      set_values: Any) -> None:
        if set_values is None:
            if self.heartbeat_moves:
                self.values["heartbeat"] = (self.values.get("heartbeat", 0) + 1) % 65536
            registers[:] = encode(HALLSYNC_TERMINAL_V1, self.values)
            return None
        self.writes.append((address, int(set_values[0])))
        if address == HALLSYNC_TERMINAL_V1.field("control").address:
            if set_values[0] == CONTROL_DISABLE:
                self.values["status"] &= ~(1 << STATUS_BITS["enabled"])
            elif set_values[0] == CONTROL_ENABLE:
                self.values["status"] |= 1 << STATUS_BITS["enabled"]
        return None

    async def start(self) -> None:
        dev = SimDevice(id=self.unit, simdata=SimData(0, count=HALLSYNC_TERMINAL_V1.span, values=0,
                                                      datatype=DataType.REGISTERS), action=self._action)
        self.server = ModbusTcpServer(dev, address=("127.0.0.1", self.port))
        await self.server.serve_forever(background=True)

    async def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            await server.shutdown()
            await asyncio.sleep(0.05)

    async def __aenter__(self) -> TestTerminal:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class SilentServer:
    """Accepts TCP connections and never answers (a hung terminal)."""

    def __init__(self) -> None:
        self.port = 0
        self.server: asyncio.base_events.Server | None = None

    async def __aenter__(self) -> SilentServer:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await reader.read()
            finally:
                writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


POLL = ModbusPollConfig(poll_interval=0.05, timeout=0.3, offline_after=2, probe_interval=0.05,
                        probe_max_interval=0.2, stale_after=0, command_timeout=1.0)
"""Fast polling for in-process agent tests with a terminal."""


async def wait_until(predicate, timeout: float, what: str) -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out: {what}")
