"""Many terminals: one :class:`ModbusAdapter` and one :class:`TerminalCoordinator` per device.

Devices come from ``devices.toml`` (``[[devices]]`` with ``id``, ``protocol = "modbus"``, and either
``host``/``port``/``unit`` for TCP or ``serial`` (+ optional ``baudrate``, ``unit``) for RTU (a string
``port`` without ``host`` is taken as the serial path too), and an
optional ``map``, default ``hallsync-terminal-v1``, see :data:`protocols.modbus.MAPS`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocols.devices import DEFAULT_MAP, DeviceList, ModbusDeviceSpec, parse_devices
from protocols.devices import load_devices as read_devices
from protocols.modbus import MAPS, RegisterMap

from ..polling import FactSink
from .adapter import ModbusAdapter, ModbusEndpoint
from .coordinator import ModbusPollConfig, TerminalCoordinator


@dataclass(frozen=True)
class ModbusDevice:
    id: str
    endpoint: ModbusEndpoint
    map: str = DEFAULT_MAP

    @property
    def regmap(self) -> RegisterMap:
        return MAPS[self.map]


def from_spec(spec: ModbusDeviceSpec) -> ModbusDevice:
    if spec.serial is not None:
        endpoint = ModbusEndpoint(unit=spec.unit, serial=spec.serial, baudrate=spec.baudrate)
    else:
        assert spec.host is not None and spec.port is not None
        endpoint = ModbusEndpoint(unit=spec.unit, host=spec.host, port=spec.port)
    return ModbusDevice(spec.id, endpoint, spec.map)


def device_from_mapping(d: dict[str, Any]) -> ModbusDevice:
    """One ``[[devices]]`` table of protocol ``modbus``; DevicesError (a ValueError) says what is wrong."""
    [spec] = parse_devices({"devices": [{**d, "protocol": "modbus"}]}, "modbus device").modbus
    return from_spec(spec)


def modbus_devices(devices: DeviceList) -> list[ModbusDevice]:
    """The Modbus terminals of a checked device list (protocols.devices; other protocols are skipped)."""
    return [from_spec(spec) for spec in devices.modbus]


def load_modbus_devices(path: str | Path) -> list[ModbusDevice]:
    """The Modbus devices of a devices.toml (other protocols are skipped); DevicesError says what is wrong."""
    return modbus_devices(read_devices(path))


class ModbusPoller:
    """Owns the coordinators of a set of terminals, and the sink their facts go to: ``facts`` (the
    runtime gives the Modbus family's), else a queue of its own."""

    def __init__(self, devices: list[ModbusDevice], config: ModbusPollConfig | None = None, *,
                 facts: FactSink | None = None, queue_size: int = 10_000) -> None:
        self.config = config or ModbusPollConfig()
        self.facts: Any = facts if facts is not None else asyncio.Queue[Any](maxsize=queue_size)
        self.devices = {dev.id: dev for dev in devices}
        self.coordinators: dict[str, TerminalCoordinator] = {}
        for dev in devices:
            adapter = ModbusAdapter(dev.endpoint, timeout=self.config.timeout)
            self.coordinators[dev.id] = TerminalCoordinator(adapter, device=dev.id, regmap=dev.regmap,
                                                            config=self.config, facts=self.facts)

    async def start(self) -> None:
        for coord in self.coordinators.values():
            await coord.start()

    async def stop(self) -> None:
        for coord in self.coordinators.values():
            await coord.stop()


__all__ = ["DEFAULT_MAP", "ModbusDevice", "ModbusPoller", "device_from_mapping", "load_modbus_devices",
           "modbus_devices"]
