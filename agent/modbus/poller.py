"""Many terminals: one :class:`ModbusAdapter` and one :class:`TerminalCoordinator` per device.

Devices come from ``devices.toml`` (``[[devices]]`` with ``id``, ``protocol = "modbus"``, and either
``host``/``port``/``unit`` for TCP or ``serial`` (+ optional ``baudrate``, ``unit``) for RTU (a string
``port`` without ``host`` is taken as the serial path too), and an
optional ``map``, default ``hallsync-terminal-v1``, see :data:`protocols.modbus.MAPS`).
"""

from __future__ import annotations

import asyncio
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocols.modbus import MAPS, RegisterMap

from .adapter import ModbusAdapter, ModbusEndpoint
from .coordinator import ModbusPollConfig, TerminalCoordinator

DEFAULT_MAP = "hallsync-terminal-v1"


@dataclass(frozen=True)
class ModbusDevice:
    id: str
    endpoint: ModbusEndpoint
    map: str = DEFAULT_MAP

    @property
    def regmap(self) -> RegisterMap:
        return MAPS[self.map]


def device_from_mapping(d: dict[str, Any]) -> ModbusDevice:
    """One ``[[devices]]`` table of protocol ``modbus``; raises ValueError/KeyError with what is wrong."""
    dev_id = str(d["id"])
    map_name = str(d.get("map", DEFAULT_MAP))
    if map_name not in MAPS:
        raise ValueError(f"device {dev_id}: unknown register map {map_name!r} (known: {', '.join(sorted(MAPS))})")
    unit = int(d.get("unit", 1))
    if "serial" not in d and "host" not in d and isinstance(d.get("port"), str):
        d = {**d, "serial": d["port"]}   # an RTU entry naming its pty/serial path as ``port``
    if "serial" in d:
        endpoint = ModbusEndpoint(unit=unit, serial=str(d["serial"]), baudrate=int(d.get("baudrate", 19200)))
    elif "host" in d:
        endpoint = ModbusEndpoint(unit=unit, host=str(d["host"]), port=int(d.get("port", 502)))
    else:
        raise ValueError(f"device {dev_id}: a modbus device needs host (+ port) or serial")
    return ModbusDevice(dev_id, endpoint, map_name)


def load_modbus_devices(path: str | Path) -> list[ModbusDevice]:
    """The Modbus devices of a devices.toml (other protocols are skipped)."""
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    return [device_from_mapping(d) for d in data.get("devices", []) if d.get("protocol", "sas") == "modbus"]


class ModbusPoller:
    """Owns the coordinators of a set of terminals; ``facts`` may be shared with the SAS poller."""

    def __init__(self, devices: list[ModbusDevice], config: ModbusPollConfig | None = None, *,
                 facts: asyncio.Queue[Any] | None = None, queue_size: int = 10_000) -> None:
        self.config = config or ModbusPollConfig()
        self.facts: asyncio.Queue[Any] = facts if facts is not None else asyncio.Queue(maxsize=queue_size)
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


__all__ = ["DEFAULT_MAP", "ModbusDevice", "ModbusPoller", "device_from_mapping", "load_modbus_devices"]
