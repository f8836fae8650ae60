"""``devices.toml``, the hall's device list (design.md), as typed and checked records.

One ``[[devices]]`` table per machine: ``id`` (unique in the hall), ``protocol`` (``"sas"``, the
default, or ``"modbus"``), and

* SAS: ``port`` (serial port or pty path), ``address`` (1..127, unique on its port), ``framing``
  (``"marks"``, default, or ``"structural"``), optional ``transport`` (``"uart"`` or ``"pty"``;
  default from the path);
* Modbus: ``host`` with ``port`` (TCP, default 502) or ``serial`` with ``baudrate`` (RTU, default
  19200; a string ``port`` without ``host`` is taken as the serial path), ``unit`` (0..247, default
  1), ``map`` (a register map of :data:`protocols.modbus.MAPS`, default ``hallsync-terminal-v1``).

:func:`parse_devices` / :func:`load_devices` give a :class:`DeviceList` or raise
:class:`DevicesError` naming the file, the entry and the key; :func:`render_devices` writes the same
format (``hall-sim floor`` uses it). The agent, the simulator and the demo share this one reading.
Keys this module does not know are left alone (a later version may add some).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .modbus import MAPS

PROTOCOLS = ("sas", "modbus")
FRAMINGS = ("marks", "structural")
TRANSPORTS = ("uart", "pty")
DEFAULT_MAP = "hallsync-terminal-v1"
DEFAULT_MODBUS_TCP_PORT = 502
DEFAULT_BAUDRATE = 19200


class DevicesError(ValueError):
    """The device list cannot be used; the message names the file, the entry and what is wrong."""


@dataclass(frozen=True)
class SasDeviceSpec:
    id: str
    port: str
    address: int
    framing: Literal["marks", "structural"] = "marks"
    transport: str | None = None   # None: from the path (/dev/pts/* → pty, else uart)
    protocol: Literal["sas"] = "sas"


@dataclass(frozen=True)
class ModbusDeviceSpec:
    id: str
    unit: int = 1
    host: str | None = None        # Modbus TCP …
    port: int | None = None
    serial: str | None = None      # … or RTU
    baudrate: int = DEFAULT_BAUDRATE
    map: str = DEFAULT_MAP
    protocol: Literal["modbus"] = "modbus"


DeviceSpec = SasDeviceSpec | ModbusDeviceSpec


@dataclass(frozen=True)
class DeviceList:
    devices: tuple[DeviceSpec, ...]

    @property
    def sas(self) -> list[SasDeviceSpec]:
        return [d for d in self.devices if isinstance(d, SasDeviceSpec)]

    @property
    def modbus(self) -> list[ModbusDeviceSpec]:
        return [d for d in self.devices if isinstance(d, ModbusDeviceSpec)]


class _Entry:
    """One ``[[devices]]`` table and how to name it in an error."""

    def __init__(self, table: Mapping[str, Any], where: str) -> None:
        self.table, self.where = table, where

    def fail(self, key: str, why: str) -> DevicesError:
        return DevicesError(f"{self.where}: {key}: {why}")

    def text(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.table.get(key, default)
        if value is None:
            if required:
                raise self.fail(key, "missing")
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"expected a non-empty string, not {value!r}")
        return value

    def number(self, key: str, low: int, high: int, default: int | None = None) -> int:
        value = self.table.get(key, default)
        if value is None:
            raise self.fail(key, "missing")
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected a whole number {low}..{high}, not {value!r}")
        if not low <= value <= high:
            raise self.fail(key, f"{value} is outside {low}..{high}")
        return value

    def choice(self, key: str, choices: Iterable[str], default: str | None) -> str | None:
        value = self.table.get(key, default)
        allowed = tuple(choices)
        if value is not None and value not in allowed:
            raise self.fail(key, f"{value!r} is not one of {', '.join(allowed)}")
        return None if value is None else str(value)


def _sas(entry: _Entry, dev_id: str) -> SasDeviceSpec:
    port = entry.text("port", required=True)
    assert port is not None
    return SasDeviceSpec(id=dev_id, port=port, address=entry.number("address", 1, 127),
                         framing=entry.choice("framing", FRAMINGS, "marks"),  # type: ignore[arg-type]
                         transport=entry.choice("transport", TRANSPORTS, None))


def _modbus(entry: _Entry, dev_id: str) -> ModbusDeviceSpec:
    table = entry.table
    map_name = entry.choice("map", sorted(MAPS), DEFAULT_MAP) or DEFAULT_MAP
    unit = entry.number("unit", 0, 247, 1)
    serial = entry.text("serial")
    if serial is None and "host" not in table and isinstance(table.get("port"), str):
        serial = entry.text("port")   # an RTU entry naming its serial path as ``port``
    if serial is not None:
        return ModbusDeviceSpec(id=dev_id, unit=unit, serial=serial,
                                baudrate=entry.number("baudrate", 1, 4_000_000, DEFAULT_BAUDRATE), map=map_name)
    if "host" not in table:
        raise entry.fail("host", "a modbus device needs host (+ port) for TCP or serial for RTU")
    return ModbusDeviceSpec(id=dev_id, unit=unit, host=entry.text("host", required=True),
                            port=entry.number("port", 1, 65535, DEFAULT_MODBUS_TCP_PORT), map=map_name)


def parse_devices(data: Mapping[str, Any], source: str = "devices file") -> DeviceList:
    """The checked device list of a parsed devices.toml; ``source`` names it in errors."""
    tables = data.get("devices", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise DevicesError(f"{source}: devices must be [[devices]] tables")
    out: list[DeviceSpec] = []
    seen: dict[str, int] = {}
    lines: dict[tuple[str, int], str] = {}
    for number, table in enumerate(tables, 1):
        entry = _Entry(table, f"{source}: device #{number}")
        dev_id = entry.text("id", required=True)
        assert dev_id is not None
        entry.where = f"{source}: device {dev_id!r} (#{number})"
        if dev_id in seen:
            raise DevicesError(f"{source}: device id {dev_id!r} is used twice (#{seen[dev_id]} and #{number}); "
                               "ids must be unique in the hall")
        seen[dev_id] = number
        protocol = entry.choice("protocol", PROTOCOLS, "sas")
        if protocol == "sas":
            sas = _sas(entry, dev_id)
            other = lines.setdefault((sas.port, sas.address), dev_id)
            if other != dev_id:
                raise entry.fail("address", f"{sas.address} on {sas.port} is also {other!r}'s; two machines on one "
                                            "line need different SAS addresses")
            spec: DeviceSpec = sas
        else:
            spec = _modbus(entry, dev_id)
        out.append(spec)
    return DeviceList(tuple(out))


def load_devices(path: str | Path) -> DeviceList:
    """Read and check ``path`` (devices.toml); DevicesError names the file and what is wrong."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise DevicesError(f"devices file {path} not found") from None
    except OSError as exc:
        raise DevicesError(f"cannot read devices file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise DevicesError(f"devices file {path} is not valid TOML: {exc}") from None
    return parse_devices(data, f"devices file {path}")


def render_devices(devices: Iterable[DeviceSpec]) -> str:
    """devices.toml text for ``devices``, one ``[[devices]]`` table each (what :func:`parse_devices` reads)."""
    out = []
    for dev in devices:
        lines = ["[[devices]]", f"id = {json.dumps(dev.id)}", f"protocol = {json.dumps(dev.protocol)}"]
        if isinstance(dev, SasDeviceSpec):
            lines += [f"port = {json.dumps(dev.port)}", f"address = {dev.address}",
                      f"framing = {json.dumps(dev.framing)}"]
            if dev.transport is not None:
                lines.append(f"transport = {json.dumps(dev.transport)}")
        elif dev.serial is not None:
            lines += [f"serial = {json.dumps(dev.serial)}", f"baudrate = {dev.baudrate}", f"unit = {dev.unit}",
                      f"map = {json.dumps(dev.map)}"]
        else:
            lines += [f"host = {json.dumps(dev.host)}", f"port = {dev.port}", f"unit = {dev.unit}",
                      f"map = {json.dumps(dev.map)}"]
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


__all__ = ["DEFAULT_MAP", "DeviceList", "DeviceSpec", "DevicesError", "ModbusDeviceSpec", "SasDeviceSpec",
           "load_devices", "parse_devices", "render_devices"]
