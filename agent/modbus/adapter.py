"""The one module of the agent that imports pymodbus (pinned 3.16.1): TCP and RTU behind one small API.

pymodbus changes its API in minor releases (``slave=`` became ``device_id=``, the datastore was
rewritten), so everything else in the agent talks to :class:`ModbusAdapter`:

* :meth:`ModbusAdapter.read_holding` ``(start, count) -> list[int]`` (function 03);
* :meth:`ModbusAdapter.write_register` ``(address, value)`` (function 06);
* every call is bounded by ``timeout`` seconds (our own ``asyncio.wait_for`` on top of pymodbus'),
  pymodbus' own retries and automatic reconnects are switched off (the coordinator owns retries
  and back-off), and every failure is one of our exceptions:

  - :class:`ModbusUnreachable` — cannot connect, or the connection broke;
  - :class:`ModbusTimeout` — connected, but no answer in time;
  - :class:`ModbusDeviceError` — the terminal answered with a Modbus exception (``code``);
  - :class:`ModbusError` — the base class (also: an answer that does not fit the request).

After a timeout or a broken connection the client is closed, so the next call connects afresh and a
late answer to an old request can never be taken for the answer to a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from pymodbus import FramerType, ModbusException
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException

EXCEPTION_NAMES = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
                   4: "device failure", 5: "acknowledge", 6: "device busy", 8: "memory parity error",
                   10: "gateway path unavailable", 11: "gateway target failed to respond"}

# pymodbus logs every failed request at ERROR on its own logger; our coordinator reports them instead.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


class ModbusError(Exception):
    """Any failure of a Modbus call (base class)."""


class ModbusUnreachable(ModbusError):
    """The terminal cannot be reached: connection refused or broken, serial port missing."""


class ModbusTimeout(ModbusError):
    """The request went out but no answer came within the timeout."""


class ModbusDeviceError(ModbusError):
    """The terminal answered with a Modbus exception response (``code``: 1 illegal function, 2 illegal
    data address, 3 illegal data value, 4 device failure, ...)."""

    def __init__(self, function: int, code: int) -> None:
        self.function = function
        self.code = code
        super().__init__(f"exception response {code} ({EXCEPTION_NAMES.get(code, 'unknown')}) "
                         f"to function {function & 0x7F:02d}")


@dataclass(frozen=True)
class ModbusEndpoint:
    """Where a terminal answers: TCP (``host``, ``port``) or RTU (``serial`` port/pty, ``baudrate``);
    ``unit`` is the Modbus unit (device) id."""

    unit: int = 1
    host: str | None = None
    port: int = 502
    serial: str | None = None
    baudrate: int = 19200

    def __post_init__(self) -> None:
        if (self.host is None) == (self.serial is None):
            raise ValueError("a Modbus endpoint needs either host (TCP) or serial (RTU), not both")
        if not 0 <= self.unit <= 247:
            raise ValueError(f"Modbus unit {self.unit} is outside 0..247")
        if self.host is not None and not 0 < self.port < 65536:
            raise ValueError(f"TCP port {self.port} is outside 1..65535")

    @property
    def transport(self) -> str:
        return "tcp" if self.host is not None else "rtu"

    def describe(self) -> str:
        where = f"{self.host}:{self.port}" if self.host is not None else f"{self.serial}@{self.baudrate}"
        return f"{self.transport} {where} unit {self.unit}"


class ModbusAdapter:
    """One terminal's client. Calls are serialized (one request on the wire at a time)."""

    def __init__(self, endpoint: ModbusEndpoint, *, timeout: float = 1.0) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        self.endpoint = endpoint
        self.timeout = timeout
        self._client: Any = None
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self._client is not None and bool(self._client.connected)

    def _make_client(self) -> Any:
        ep = self.endpoint
        if ep.host is not None:
            return AsyncModbusTcpClient(ep.host, port=ep.port, timeout=self.timeout, retries=0, reconnect_delay=0,
                                        name=f"term-{ep.host}:{ep.port}")
        return AsyncModbusSerialClient(ep.serial, framer=FramerType.RTU, baudrate=ep.baudrate,  # type: ignore[arg-type]
                                       timeout=self.timeout, retries=0, reconnect_delay=0, name=f"term-{ep.serial}")

    async def connect(self) -> None:
        """Connect now (calls connect on their own when needed); raises :class:`ModbusUnreachable`."""
        async with self._lock:
            await self._connect()

    async def _connect(self) -> None:
        if self.connected:
            return
        self._drop()
        client = self._make_client()
        try:
            ok = await asyncio.wait_for(client.connect(), self.timeout)
        except TimeoutError as exc:
            with contextlib.suppress(Exception):
                client.close()
            raise ModbusUnreachable(f"{self.endpoint.describe()}: connect timed out after {self.timeout:g} s") \
                from exc
        except Exception as exc:  # pyserial / OS errors
            with contextlib.suppress(Exception):
                client.close()
            raise ModbusUnreachable(f"{self.endpoint.describe()}: {exc}") from exc
        if not ok:
            with contextlib.suppress(Exception):
                client.close()
            raise ModbusUnreachable(f"{self.endpoint.describe()}: cannot connect")
        self._client = client

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    async def close(self) -> None:
        async with self._lock:
            self._drop()

    async def _call(self, what: str, fn: str, *args: Any, **kwargs: Any) -> Any:
        async with self._lock:
            await self._connect()
            try:
                reply = await asyncio.wait_for(getattr(self._client, fn)(*args, device_id=self.endpoint.unit,
                                                                         **kwargs), self.timeout)
            except TimeoutError as exc:
                self._drop()
                raise ModbusTimeout(f"{self.endpoint.describe()}: no answer to {what} in {self.timeout:g} s") \
                    from exc
            except ConnectionException as exc:
                self._drop()
                raise ModbusUnreachable(f"{self.endpoint.describe()}: connection lost during {what}") from exc
            except ModbusException as exc:  # ModbusIOException: pymodbus gave up waiting (its own timeout)
                self._drop()
                raise ModbusTimeout(f"{self.endpoint.describe()}: no answer to {what} ({exc})") from exc
            except OSError as exc:
                self._drop()
                raise ModbusUnreachable(f"{self.endpoint.describe()}: {exc}") from exc
            if reply is None:
                self._drop()
                raise ModbusTimeout(f"{self.endpoint.describe()}: no answer to {what}")
            if reply.isError():
                raise ModbusDeviceError(int(getattr(reply, "function_code", 0)),
                                        int(getattr(reply, "exception_code", 0)))
            return reply

    async def read_holding(self, start: int, count: int) -> list[int]:
        """Function 03: ``count`` holding registers from ``start`` (16-bit unsigned words)."""
        if not (0 <= start <= 0xFFFF and 1 <= count <= 125):
            raise ValueError(f"read of {count} registers at {start} is outside the protocol's limits")
        reply = await self._call(f"read {count} registers at {start}", "read_holding_registers", start, count=count)
        words = list(reply.registers)
        if len(words) != count:
            raise ModbusError(f"{self.endpoint.describe()}: asked {count} registers, got {len(words)}")
        return words

    async def write_register(self, address: int, value: int) -> None:
        """Function 06: write one holding register."""
        if not (0 <= address <= 0xFFFF and 0 <= value <= 0xFFFF):
            raise ValueError(f"write of {value} at {address} is outside 16 bits")
        await self._call(f"write {value} at {address}", "write_register", address, value)


__all__ = ["ModbusAdapter", "ModbusDeviceError", "ModbusEndpoint", "ModbusError", "ModbusTimeout",
           "ModbusUnreachable"]
