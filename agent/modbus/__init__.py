"""Modbus terminals on the agent side.

* :mod:`.adapter` — the one module importing pymodbus: TCP and RTU, timeouts, our own exceptions;
* :mod:`.facts` — what a terminal's coordinator reports (readings, link up/down, command results);
* :mod:`.coordinator` — one :class:`TerminalCoordinator` per terminal: schedule, back-off, staleness;
* :mod:`.terminal` — :class:`TerminalNormalizer`: readings → event drafts by counter delta;
* :mod:`.poller` — :class:`ModbusPoller` and the devices.toml loader.
"""

from .adapter import ModbusAdapter, ModbusDeviceError, ModbusEndpoint, ModbusError, ModbusTimeout, ModbusUnreachable
from .coordinator import ModbusPollConfig, TerminalCoordinator
from .facts import TERMINAL_FACTS, TerminalCommandResult, TerminalLinkDown, TerminalLinkUp, TerminalRead
from .poller import ModbusDevice, ModbusPoller, load_modbus_devices
from .terminal import TerminalNormalizer

__all__ = ["TERMINAL_FACTS", "ModbusAdapter", "ModbusDevice", "ModbusDeviceError", "ModbusEndpoint", "ModbusError",
           "ModbusPollConfig", "ModbusPoller", "ModbusTimeout", "ModbusUnreachable", "TerminalCommandResult",
           "TerminalCoordinator", "TerminalLinkDown", "TerminalLinkUp", "TerminalNormalizer", "TerminalRead",
           "load_modbus_devices"]
