"""Modbus terminals on the agent side.

* :mod:`.adapter` — the one module importing pymodbus: TCP and RTU, timeouts, our own exceptions;
* :mod:`.facts` — what a terminal's coordinator reports (readings, link up/down, command results);
* :mod:`.coordinator` — one :class:`TerminalCoordinator` per terminal: schedule, back-off, staleness;
* :mod:`.terminal` — :class:`TerminalNormalizer`: readings → event drafts by counter delta;
* :mod:`.poller` — :class:`ModbusPoller` and the devices.toml loader;
* :mod:`.family` — :class:`~agent.modbus.family.ModbusFamily`, what the runtime holds (agent.family);
* :mod:`.diag_cli` — ``hall-agent diag modbus``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .adapter import (
        ModbusAdapter,
        ModbusDeviceError,
        ModbusEndpoint,
        ModbusError,
        ModbusTimeout,
        ModbusUnreachable,
    )
    from .coordinator import ModbusPollConfig, TerminalCoordinator
    from .facts import TERMINAL_FACTS, TerminalCommandResult, TerminalLinkDown, TerminalLinkUp, TerminalRead
    from .poller import ModbusDevice, ModbusPoller, load_modbus_devices
    from .terminal import TerminalNormalizer

_HOMES = {
    "ModbusAdapter": "adapter", "ModbusDeviceError": "adapter", "ModbusEndpoint": "adapter", "ModbusError": "adapter",
    "ModbusTimeout": "adapter", "ModbusUnreachable": "adapter", "ModbusPollConfig": "coordinator",
    "TerminalCoordinator": "coordinator", "TERMINAL_FACTS": "facts", "TerminalCommandResult": "facts",
    "TerminalLinkDown": "facts", "TerminalLinkUp": "facts", "TerminalRead": "facts", "ModbusDevice": "poller",
    "ModbusPoller": "poller", "load_modbus_devices": "poller", "TerminalNormalizer": "terminal",
}


def __getattr__(name: str) -> Any:
    """Imported on first use, so ``hall-agent diag sas`` (which lists this family's diag subcommand,
    :mod:`.diag_cli`) never loads pymodbus."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


__all__ = ["TERMINAL_FACTS", "ModbusAdapter", "ModbusDevice", "ModbusDeviceError", "ModbusEndpoint", "ModbusError",
           "ModbusPollConfig", "ModbusPoller", "ModbusTimeout", "ModbusUnreachable", "TerminalCommandResult",
           "TerminalCoordinator", "TerminalLinkDown", "TerminalLinkUp", "TerminalNormalizer", "TerminalRead",
           "load_modbus_devices"]
