"""One simulated terminal served with pymodbus 3.16.1: Modbus TCP on loopback, or Modbus RTU on a pty.

The register block is a pymodbus ``SimDevice`` holding registers 0..19 (the hallsync terminal map
v1); every address outside it is invalid, so pymodbus answers *illegal data address*. Its ``action``
hook runs before each access: it copies the terminal's live words into the block (so every read sees
the terminal as it is now) and hands a write of register 18 to :meth:`Terminal.write_control`.
Registers 0..17 and 19 are read-only (a write → illegal data address); only function codes 3, 6 and
16 are served (others → illegal function). Requests for another unit id are dropped before pymodbus
handles them (``trace_pdu`` returning None), so a host gets no answer, as from a real bus.

RTU: pymodbus's serial server opens the slave of a private pty; the server relays bytes between
that pty's master and the master of a second pty whose slave path is what a host opens (the same
contract as ``pty_egm``). A fd on each slave stays open in the server, so a host closing its port
does not break the relay.

Faults: :meth:`ModbusTerminalServer.vanish` — TCP closes the listener and every connection (the
terminal is off the network: connections are refused); ``vanish(close=False)`` or RTU keeps the
line up but answers nothing. :meth:`restore` serves again on the same port or pty.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import termios
import tty
from collections.abc import Sequence
from typing import Literal, cast

import structlog
from pymodbus.constants import ExcCodes
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from protocols.modbus import HALLSYNC_TERMINAL_V1

from .customers import Customer
from .pacing import act_until_done
from .tasks import DeviceTasks
from .terminal import Terminal, TerminalRefused

Transport = Literal["tcp", "rtu"]
CONTROL_ADDRESS = HALLSYNC_TERMINAL_V1.field("control").address
SPAN = HALLSYNC_TERMINAL_V1.span
_SERVED_FUNCTIONS = frozenset({3, 6, 16})

log = structlog.get_logger("firmware_sim.modbus")


class ModbusTerminalServer:
    """Serves ``terminal`` as unit ``unit``; ``await start()`` returns the TCP port or the pty path."""

    def __init__(self, terminal: Terminal, *, unit: int = 1, transport: Transport = "tcp",
                 host: str = "127.0.0.1", port: int = 0, customer: Customer | None = None) -> None:
        if not 1 <= unit <= 247:
            raise ValueError(f"Modbus unit id {unit} is outside 1..247")
        if transport not in ("tcp", "rtu"):
            raise ValueError(f"transport must be tcp or rtu, not {transport!r}")
        self.terminal = terminal
        self.unit = unit
        self.transport: Transport = transport
        self.host = host
        self.port: int | None = None        # TCP port once started
        self._want_port = port
        self.path: str | None = None        # RTU: the pty slave a host opens
        self.customer = customer or (Customer(terminal) if terminal.pace > 0 else None)
        self.finished = asyncio.Event()    # the customers are done with their rounds
        self.vanished = False
        self.requests = 0                   # requests answered (or refused with an exception)
        self._silent = False
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fds: list[int] = []           # RTU: inner master, inner slave, outer master, outer slave
        self._tasks = DeviceTasks(f"term{terminal.number}", number=terminal.number)
        self._started = False

    # ---- the register block --------------------------------------------------------------------------

    def _device(self) -> SimDevice:
        words = self.terminal.registers()
        blocks = [SimData(0, values=words[:CONTROL_ADDRESS], datatype=DataType.REGISTERS, readonly=True),
                  SimData(CONTROL_ADDRESS, values=words[CONTROL_ADDRESS], datatype=DataType.REGISTERS)]
        if SPAN > CONTROL_ADDRESS + 1:
            blocks.append(SimData(CONTROL_ADDRESS + 1, values=words[CONTROL_ADDRESS + 1:],
                                  datatype=DataType.REGISTERS, readonly=True))
        return SimDevice(id=self.unit, simdata=blocks, action=self._action)

    async def _action(self, function_code: int, start: int, address: int, count: int, registers: list[int],
                      set_values: Sequence[int] | Sequence[bool] | None) -> ExcCodes | None:
        """pymodbus calls this before it reads or writes the block (addresses already checked)."""
        if function_code not in _SERVED_FUNCTIONS:
            return ExcCodes.ILLEGAL_FUNCTION
        if set_values is not None:
            for offset, value in enumerate(set_values):
                if address + offset == CONTROL_ADDRESS:
                    try:
                        self.terminal.write_control(int(value))
                    except ValueError:
                        return ExcCodes.ILLEGAL_VALUE
                    log.info("terminal.control", unit=self.unit, value=int(value), enabled=self.terminal.enabled)
        registers[:SPAN] = self.terminal.registers()
        return None

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU | None:
        """Incoming requests for another unit (or any while silent) vanish here: no answer at all."""
        if sending:
            return pdu
        if self._silent or pdu.dev_id != self.unit:
            return None
        self.requests += 1
        return pdu

    # ---- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> int | str:
        """Start serving (and the customers); the TCP port, or the pty path for RTU."""
        if self._started:
            raise RuntimeError("server already started")
        self._loop = asyncio.get_running_loop()
        self._started = True
        if self.transport == "rtu":
            self._open_ptys()
        try:
            await self._serve()
        except BaseException:
            await self.stop()
            raise
        if self.customer is not None:
            self._tasks.spawn(self._serve_customers(), "customers")
        elif self.terminal.rounds is not None:
            self.finished.set()
        log.info("terminal.started", number=self.terminal.number, **self.endpoint)
        return self.port if self.transport == "tcp" else self.path  # type: ignore[return-value]

    @property
    def endpoint(self) -> dict[str, object]:
        """What ``hall-sim terminal`` prints: ``{"host", "port", "unit"}`` (TCP) or ``{"port": path, "unit"}``."""
        if self.transport == "tcp":
            return {"host": self.host, "port": self.port, "unit": self.unit}
        return {"port": self.path, "unit": self.unit}

    async def _serve(self) -> None:
        if self.transport == "tcp":
            port = self.port if self.port is not None else self._want_port
            server: ModbusTcpServer | ModbusSerialServer = ModbusTcpServer(
                self._device(), address=(self.host, port), trace_pdu=self._trace_pdu)  # type: ignore[arg-type]
            await server.serve_forever(background=True)
            # pymodbus keeps the listening asyncio.Server in ``transport`` (typed as a BaseTransport)
            sockets = cast("asyncio.Server", server.transport).sockets
            self.port = sockets[0].getsockname()[1]
        else:
            inner = os.ttyname(self._fds[1])
            server = ModbusSerialServer(self._device(), port=inner, baudrate=19200, reconnect_delay=0,
                                        trace_pdu=self._trace_pdu)  # type: ignore[arg-type]
            await server.serve_forever(background=True)
        self._server = server

    async def _shutdown_server(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()
            await asyncio.sleep(0)     # let the transports run their close callbacks

    async def vanish(self, close: bool = True) -> None:
        """The terminal drops off: TCP with ``close`` shuts the listener and its connections;
        otherwise (and always on RTU) requests go unanswered. Its model keeps running."""
        self.vanished = True
        self._silent = True
        if close and self.transport == "tcp":
            await self._shutdown_server()
        log.info("terminal.vanished", unit=self.unit, close=close)

    async def restore(self) -> None:
        """Answer again, on the same port (TCP) or pty (RTU)."""
        if self._started and self._server is None:
            await self._serve()
        self._silent = False
        self.vanished = False
        log.info("terminal.restored", unit=self.unit)

    async def stop(self) -> None:
        """Stop the customers, the server and the relay; close the ptys. Safe to call twice."""
        await self._tasks.cancel_all()
        await self._shutdown_server()
        self._close_ptys()

    async def __aenter__(self) -> ModbusTerminalServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- RTU: the pty relay --------------------------------------------------------------------------

    def _open_ptys(self) -> None:
        inner_master, inner_slave = os.openpty()
        outer_master, outer_slave = os.openpty()
        self._fds = [inner_master, inner_slave, outer_master, outer_slave]
        for fd in (inner_slave, outer_slave):
            tty.setraw(fd, termios.TCSANOW)
        for fd in (inner_master, outer_master):
            os.set_blocking(fd, False)
        self.path = os.ttyname(outer_slave)
        assert self._loop is not None
        self._loop.add_reader(outer_master, self._relay, outer_master, inner_master)
        self._loop.add_reader(inner_master, self._relay, inner_master, outer_master)

    def _relay(self, source: int, target: int) -> None:
        try:
            data = os.read(source, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return   # cannot happen while we hold both slaves
        if not data or self._silent:
            return
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(target, data)   # nobody drains the line: the bytes are lost like on a wire

    def _close_ptys(self) -> None:
        if not self._fds:
            return
        if self._loop is not None:
            for fd in (self._fds[0], self._fds[2]):
                self._loop.remove_reader(fd)
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []

    # ---- customers -----------------------------------------------------------------------------------

    async def _serve_customers(self) -> None:
        assert self.customer is not None
        await act_until_done(self.customer.act, TerminalRefused, self.terminal.pace, self.finished,
                             terminal=self.terminal.number)


__all__ = ["ModbusTerminalServer", "Transport"]
