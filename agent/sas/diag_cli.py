"""The SAS family's ``hall-agent diag`` subcommands: ``sas`` (link test, identity, meters and live
exceptions of one machine) and ``scan`` (the addresses that answer on a port). Light to import: the
runners load :mod:`agent.sas.diag` / :mod:`agent.sas.scan` when they run."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from ..diag.errors import EXIT_USAGE, DiagError
from ..family import Diagnostic

SAS_DEFAULTS: dict[str, Any] = {
    "framing": "marks", "transport": None, "seconds": None, "json": False, "watch": False,
    "response_timeout_ms": None, "interval_ms": 200.0, "log_level": "warning", "progress": None,
    "port": None, "address": None, "action": None}
SCAN_DEFAULTS: dict[str, Any] = {
    "framing": "marks", "transport": None, "first": 1, "last": 127, "timeout_ms": None, "json": False,
    "log_level": "warning", "port": None, "address": None, "action": None}


def _address(text: str) -> int:
    value = int(text, 0)
    if not 1 <= value <= 127:
        raise argparse.ArgumentTypeError(f"SAS address {value} is outside 1..127")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML file holding any of these options (flags win)")
    p.add_argument("--port", help="serial port or pty path, e.g. /dev/ttyUSB0 or /dev/pts/5")
    p.add_argument("--framing", choices=("marks", "structural"), default=None,
                   help="how the wakeup bit travels: marks (parity/PARMRK, default) or structural")
    p.add_argument("--transport", choices=("uart", "pty"), default=None,
                   help="uart (stick parity) or pty (PARMRK marks); default: pty for /dev/pts/*, else uart")
    p.add_argument("--json", action="store_true", default=None, help="machine-readable JSON output")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default=None,
                   help="log level of the agent's own logs on stderr (default warning)")


def add_sas_parser(dsub: Any) -> argparse.ArgumentParser:
    sas: argparse.ArgumentParser = dsub.add_parser(
        "sas", help="link test, identity, meters and live exceptions of one SAS machine",
        description="Poll one SAS address like the agent does and report the link quality "
                    "(latency, CRC errors, NACKs, timeouts), the machine identity and meters.")
    _common(sas)
    sas.add_argument("--address", type=_address, help="SAS address of the machine (1..127)")
    sas.add_argument("--seconds", type=float, default=None, help="how long to poll (default 5; with --watch, "
                                                                 "0 = until Ctrl-C)")
    sas.add_argument("--watch", action="store_true", default=None, help="print exceptions live as they come")
    act = sas.add_mutually_exclusive_group()
    act.add_argument("--disable", dest="action", action="store_const", const="disable",
                     help="lock the machine out of play (LP 01) and report whether it ACKed")
    act.add_argument("--enable", dest="action", action="store_const", const="enable",
                     help="allow play again (LP 02) and report whether it ACKed")
    sas.add_argument("--response-timeout-ms", type=float, default=None,
                     help="how long to wait for a reply to start (default 20 on a UART, 50 on a pty)")
    sas.add_argument("--interval-ms", type=float, default=None, help="general-poll interval (default 200)")
    sas.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="one line per step on stderr as it happens (default: when stderr is a terminal)")
    return sas


def add_scan_parser(dsub: Any) -> argparse.ArgumentParser:
    scan: argparse.ArgumentParser = dsub.add_parser(
        "scan", help="list the SAS addresses that answer on a port",
        description="Send one LP 54 to every address and list those that answer.")
    _common(scan)
    scan.add_argument("--first", type=_address, default=None, help="first address (default 1)")
    scan.add_argument("--last", type=_address, default=None, help="last address (default 127)")
    scan.add_argument("--timeout-ms", type=float, default=None,
                      help="per-address reply timeout (default 20)")
    return scan


def _need_port(opts: dict[str, Any]) -> str:
    if not opts["port"]:
        raise DiagError("--port is required (the serial port or pty path), on the command line or in --config",
                        EXIT_USAGE)
    return str(opts["port"])


def _seconds(opts: dict[str, Any]) -> float:
    """--seconds, else 5 s for a link test and "until Ctrl-C" (0) for --watch."""
    if opts["seconds"] is not None:
        return float(opts["seconds"])
    return 0.0 if opts["watch"] else 5.0


def run_sas(opts: dict[str, Any]) -> int:
    port = _need_port(opts)
    from .diag import SasDiagOptions, run_sas_diag

    if opts["address"] is None:
        raise DiagError("--address is required (the machine's SAS address, 1..127)", EXIT_USAGE)
    resp = opts["response_timeout_ms"]
    diag_opts = SasDiagOptions(
        port=port, address=int(opts["address"]), framing=opts["framing"], transport=opts["transport"],
        seconds=_seconds(opts), json=bool(opts["json"]), watch=bool(opts["watch"]), action=opts["action"],
        response_timeout=resp / 1000 if resp is not None else None, poll_interval=float(opts["interval_ms"]) / 1000)
    # Like git: progress by default only for a person watching; a script capturing stderr gets just the error.
    show = opts["progress"] if opts["progress"] is not None else sys.stderr.isatty()
    return asyncio.run(run_sas_diag(diag_opts, progress=sys.stderr if show else None))


def run_scan(opts: dict[str, Any]) -> int:
    port = _need_port(opts)
    from .scan import run_scan as scan

    timeout = opts["timeout_ms"] / 1000 if opts["timeout_ms"] is not None else None
    return asyncio.run(scan(port, opts["framing"], opts["transport"], int(opts["first"]), int(opts["last"]),
                            timeout, bool(opts["json"])))


DIAGNOSTICS: tuple[Diagnostic, ...] = (
    Diagnostic("sas", add_sas_parser, SAS_DEFAULTS, run_sas),
    Diagnostic("scan", add_scan_parser, SCAN_DEFAULTS, run_scan),
)

__all__ = ["DIAGNOSTICS"]
