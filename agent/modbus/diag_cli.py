"""The Modbus family's ``hall-agent diag`` subcommand: ``modbus`` (a terminal's registers, raw and
decoded; watch them move). Light to import: the runner loads :mod:`agent.modbus.diag` (and pymodbus)
when it runs."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from ..diag.errors import EXIT_USAGE, DiagError
from ..family import Diagnostic

MODBUS_DEFAULTS: dict[str, Any] = {
    "host": None, "port": None, "serial": None, "baudrate": 19200, "unit": 1, "map": "hallsync-terminal-v1",
    "timeout_ms": 1000.0, "interval_ms": 1000.0, "seconds": None, "json": False, "watch": False,
    "log_level": "warning", "address": None, "action": None}
"""The port's default is None here: the runner takes 502 when none is given (file, environment or flag)."""


def _unit(text: str) -> int:
    value = int(text, 0)
    if not 0 <= value <= 247:
        raise argparse.ArgumentTypeError(f"Modbus unit {value} is outside 0..247")
    return value


def _tcp_port(text: str) -> int:
    value = int(text, 0)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"TCP port {value} is outside 1..65535")
    return value


def add_modbus_parser(dsub: Any) -> argparse.ArgumentParser:
    mb: argparse.ArgumentParser = dsub.add_parser(
        "modbus", help="read a Modbus terminal's registers, raw and decoded; watch them move",
        description="Read the whole register map of one terminal (Modbus TCP with --host/--port, "
                    "or RTU with --serial) and print every field: address, raw words, decoded "
                    "value, and the status bits. --watch prints what changes.")
    mb.add_argument("--config", metavar="FILE", help="TOML file holding any of these options (flags win)")
    mb.add_argument("--host", help="the terminal's IP address or host name (Modbus TCP)")
    mb.add_argument("--port", type=_tcp_port, default=None, help="TCP port (default 502)")
    mb.add_argument("--serial", metavar="PORT", help="serial port or pty path (Modbus RTU), instead of --host")
    mb.add_argument("--baudrate", type=int, default=None, help="RTU baud rate (default 19200)")
    mb.add_argument("--unit", type=_unit, default=None, help="Modbus unit (device) id (default 1)")
    mb.add_argument("--map", default=None, help="register map (default hallsync-terminal-v1)")
    mb.add_argument("--timeout-ms", type=float, default=None, help="per-request timeout (default 1000)")
    mb.add_argument("--interval-ms", type=float, default=None, help="--watch poll interval (default 1000)")
    mb.add_argument("--seconds", type=float, default=None, help="--watch duration (default 0 = until Ctrl-C)")
    mb.add_argument("--watch", action="store_true", default=None, help="keep polling and print what changes")
    mb.add_argument("--json", action="store_true", default=None, help="machine-readable JSON output")
    mb.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default=None,
                    help="log level of the agent's own logs on stderr (default warning)")
    act = mb.add_mutually_exclusive_group()
    act.add_argument("--disable", dest="action", action="store_const", const="disable",
                     help="write 1 to the control register (the terminal stops taking bets) before reading")
    act.add_argument("--enable", dest="action", action="store_const", const="enable",
                     help="write 2 to the control register (the terminal takes bets again) before reading")
    return mb


def run_modbus(opts: dict[str, Any]) -> int:
    from .diag import ModbusDiagOptions, run_modbus_diag

    try:
        diag_opts = ModbusDiagOptions(
            host=opts["host"], port=int(opts["port"] or 502), serial=opts["serial"], baudrate=int(opts["baudrate"]),
            unit=int(opts["unit"]), map=str(opts["map"]), timeout=float(opts["timeout_ms"]) / 1000,
            interval=float(opts["interval_ms"]) / 1000, seconds=float(opts["seconds"] or 0),
            watch=bool(opts["watch"]), json=bool(opts["json"]), action=opts["action"])
    except (TypeError, ValueError) as exc:
        raise DiagError(f"bad option value: {exc}", EXIT_USAGE) from exc
    if diag_opts.timeout <= 0 or diag_opts.interval <= 0:
        raise DiagError("--timeout-ms and --interval-ms must be > 0", EXIT_USAGE)
    return asyncio.run(run_modbus_diag(diag_opts))


DIAGNOSTICS: tuple[Diagnostic, ...] = (Diagnostic("modbus", add_modbus_parser, MODBUS_DEFAULTS, run_modbus),)

__all__ = ["DIAGNOSTICS"]
