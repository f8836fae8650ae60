"""``hall-agent diag modbus``: read one terminal's registers, raw and decoded; watch them move.

It uses the agent's own :class:`~agent.modbus.adapter.ModbusAdapter` (TCP ``--host/--port`` or RTU
``--serial``), reads the whole register map in one request, and prints every field with its address,
raw words and decoded value, plus the status bits. ``--watch`` polls every ``--interval-ms`` and prints
what changed (counters with their delta); ``--json`` prints one JSON object (per reading with
``--watch``). ``--disable``/``--enable`` write the control register (1 / 2) first.

Errors are one line with an exit code (diag/errors.py): 3 cannot connect (host, port, serial port),
4 connected but no (usable) answer: timeout, exception response, or registers that do not fit the map.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

from protocols.modbus import MAPS, RegisterMap, TerminalReading, counter_delta, decode
from protocols.modbus.registers import CONTROL_DISABLE, CONTROL_ENABLE, RegisterError

from ..diag.errors import EXIT_NO_ANSWER, EXIT_PORT, EXIT_USAGE, DiagError
from ..diag.render import table
from ..transport.errors import TransportError, check_serial_path
from .adapter import ModbusAdapter, ModbusDeviceError, ModbusEndpoint, ModbusError, ModbusUnreachable


@dataclass
class ModbusDiagOptions:
    host: str | None = None
    port: int = 502
    serial: str | None = None
    baudrate: int = 19200
    unit: int = 1
    map: str = "hallsync-terminal-v1"
    timeout: float = 1.0
    interval: float = 1.0
    seconds: float = 0.0          # --watch only: 0 = until Ctrl-C
    watch: bool = False
    json: bool = False
    action: str | None = None     # "disable" | "enable"


def _endpoint(opts: ModbusDiagOptions) -> ModbusEndpoint:
    if (opts.host is None) == (opts.serial is None):
        raise DiagError("give either --host (Modbus TCP) or --serial (Modbus RTU), on the command line or in "
                        "--config", EXIT_USAGE)
    try:
        if opts.host is not None:
            return ModbusEndpoint(unit=opts.unit, host=opts.host, port=opts.port)
        return ModbusEndpoint(unit=opts.unit, serial=opts.serial, baudrate=opts.baudrate)
    except ValueError as exc:
        raise DiagError(str(exc), EXIT_USAGE) from exc


def _fail(exc: Exception, ep: ModbusEndpoint) -> DiagError:
    if isinstance(exc, ModbusUnreachable):
        hint = ("check the host and port, and that the terminal is on the network" if ep.transport == "tcp"
                else "check the serial port path and its permissions")
        return DiagError(f"cannot connect: {exc}; {hint}", EXIT_PORT)
    if isinstance(exc, ModbusDeviceError):
        return DiagError(f"{ep.describe()} answered with an {exc}: check the register map (--map) and the unit id",
                         EXIT_NO_ANSWER)
    if isinstance(exc, RegisterError):
        return DiagError(f"{ep.describe()}: the registers do not fit the map: {exc}", EXIT_NO_ANSWER)
    return DiagError(f"{exc}: check the unit id (--unit {ep.unit}) and, for RTU, the baud rate", EXIT_NO_ANSWER)


def fields_report(regmap: RegisterMap, words: list[int], reading: TerminalReading) -> list[dict[str, Any]]:
    rows = []
    for f in regmap.fields:
        at = f.address - regmap.start
        rows.append({"address": f.address, "name": f.name, "words": words[at:at + f.words],
                     "value": reading.values[f.name], "kind": f.kind, "unit": f.unit})
    return rows


def report(ep: ModbusEndpoint, regmap: RegisterMap, map_name: str, words: list[int], reading: TerminalReading,
           latency: float) -> dict[str, Any]:
    return {"endpoint": ep.describe(), "transport": ep.transport, "unit": ep.unit, "map": map_name,
            "time": time.time(), "latency_ms": round(latency * 1000, 2),
            "registers": {str(regmap.start + i): w for i, w in enumerate(words)},
            "values": dict(reading.values), "flags": dict(reading.flags),
            "fields": fields_report(regmap, words, reading)}


def render(rep: dict[str, Any]) -> str:
    parts = [f"Modbus terminal — {rep['endpoint']} (map {rep['map']}, {rep['latency_ms']} ms)", ""]
    rows: list[tuple[str, ...]] = [
        (str(r["address"]), str(r["name"]), " ".join(f"{w:04X}" for w in r["words"]), str(r["value"]),
         str(r["unit"]) if r["unit"] != "none" else "") for r in rep["fields"]]
    parts.append(table(rows, ("addr", "field", "raw (hex)", "value", "unit")))
    flags = ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in rep["flags"].items())
    parts += ["", f"status: {flags}"]
    return "\n".join(parts)


def _changes(regmap: RegisterMap, prev: TerminalReading, cur: TerminalReading) -> list[str]:
    out = []
    for f in regmap.fields:
        a, b = prev.values[f.name], cur.values[f.name]
        if a == b or f.kind == "heartbeat":
            continue
        if f.kind == "counter":
            d = counter_delta(a, b)
            note = " WRAP" if d.wrapped else (" RESET" if d.reset else "")
            out.append(f"{f.name} {a} → {b} (+{d.amount}{note})")
        else:
            out.append(f"{f.name} {a} → {b}")
    return out


async def _read(adapter: ModbusAdapter, regmap: RegisterMap) -> tuple[list[int], TerminalReading, float]:
    started = time.monotonic()
    words = await adapter.read_holding(regmap.start, regmap.span)
    return words, decode(regmap, words), time.monotonic() - started


async def run_modbus_diag(opts: ModbusDiagOptions, out: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout
    ep = _endpoint(opts)
    if opts.serial is not None:
        try:  # pymodbus only says "cannot connect", whatever the path is
            check_serial_path(opts.serial, "--serial / devices.toml")
        except TransportError as exc:
            raise DiagError(str(exc), EXIT_PORT) from exc
    if opts.map not in MAPS:
        raise DiagError(f"unknown register map {opts.map!r} (known: {', '.join(sorted(MAPS))})", EXIT_USAGE)
    regmap = MAPS[opts.map]
    adapter = ModbusAdapter(ep, timeout=opts.timeout)
    try:
        try:
            if opts.action:
                value = CONTROL_DISABLE if opts.action == "disable" else CONTROL_ENABLE
                await adapter.write_register(regmap.field("control").address, value)
            words, reading, latency = await _read(adapter, regmap)
        except (ModbusError, RegisterError) as exc:
            raise _fail(exc, ep) from exc
        rep = report(ep, regmap, opts.map, words, reading, latency)
        if opts.action:
            rep["command"] = {"action": opts.action, "acked": True}
        if opts.json:
            out.write(json.dumps(rep) + "\n")
        else:
            out.write(render(rep) + "\n")
            if opts.action:
                out.write(f"\ncommand {opts.action}: written (control = "
                          f"{CONTROL_DISABLE if opts.action == 'disable' else CONTROL_ENABLE})\n")
        out.flush()
        if opts.watch:
            await _watch(adapter, regmap, opts, ep, reading, out)
        return 0
    finally:
        await adapter.close()


async def _watch(adapter: ModbusAdapter, regmap: RegisterMap, opts: ModbusDiagOptions, ep: ModbusEndpoint,
                 prev: TerminalReading, out: TextIO) -> None:
    deadline = None if opts.seconds <= 0 else time.monotonic() + opts.seconds
    failing = False
    try:
        while deadline is None or time.monotonic() < deadline:
            await asyncio.sleep(opts.interval)
            stamp = time.strftime("%H:%M:%S")
            try:
                words, reading, latency = await _read(adapter, regmap)
            except (ModbusError, RegisterError) as exc:
                if not failing:
                    msg = str(_fail(exc, ep))
                    out.write(json.dumps({"time": time.time(), "error": msg}) + "\n" if opts.json
                              else f"{stamp}  ERROR {msg}\n")
                    out.flush()
                failing = True
                continue
            if failing:
                out.write(json.dumps({"time": time.time(), "recovered": True}) + "\n" if opts.json
                          else f"{stamp}  answers again\n")
                failing = False
            if opts.json:
                out.write(json.dumps(report(ep, regmap, opts.map, words, reading, latency)) + "\n")
            else:
                changes = _changes(regmap, prev, reading)
                if changes:
                    out.write(f"{stamp}  " + "; ".join(changes) + "\n")
            out.flush()
            prev = reading
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
