"""``hall-agent``: the technician's command line.

Every option can also come from ``--config FILE`` (TOML): top-level keys apply to every command,
a ``[diag.sas]`` / ``[diag.scan]`` / ``[diag.modbus]`` table to that command only, or from the
environment (``HALLSYNC_AGENT_PORT`` …); a flag on the command line wins (protocols.config:
defaults < file < environment < flags).
Errors are one line on stderr with what to check, and a non-zero exit code (see diag/errors.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import Any

from protocols.config import ConfigError, options_from_parser, resolve, subparser

from .cli_ops import ENV_PREFIX, add_parsers
from .cli_ops import devices as _devices
from .cli_ops import outbox as _outbox
from .cli_ops import run as _run
from .cli_ops import status as _status
from .diag.errors import EXIT_USAGE, DiagError
from .logging_setup import setup_logging

OPS = {"run": _run, "status": _status, "devices": _devices, "outbox": _outbox}

DEFAULTS: dict[str, dict[str, Any]] = {
    "sas": {"framing": "marks", "transport": None, "seconds": None, "json": False, "watch": False,
            "response_timeout_ms": None, "interval_ms": 200.0, "log_level": "warning", "progress": None},
    "modbus": {"host": None, "port": 502, "serial": None, "baudrate": 19200, "unit": 1,
               "map": "hallsync-terminal-v1", "timeout_ms": 1000.0, "interval_ms": 1000.0, "seconds": None,
               "json": False, "watch": False, "log_level": "warning"},
    "scan": {"framing": "marks", "transport": None, "first": 1, "last": 127, "timeout_ms": None, "json": False,
             "log_level": "warning"},
}


def _address(text: str) -> int:
    value = int(text, 0)
    if not 1 <= value <= 127:
        raise argparse.ArgumentTypeError(f"SAS address {value} is outside 1..127")
    return value


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


def _modbus_parser(dsub: Any) -> None:
    mb = dsub.add_parser("modbus", help="read a Modbus terminal's registers, raw and decoded; watch them move",
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hall-agent", description="hallsync hall agent")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    diag = sub.add_parser("diag", help="diagnostics for technicians", description="diagnostics for technicians")
    dsub = diag.add_subparsers(dest="diag", metavar="TARGET")

    sas = dsub.add_parser("sas", help="link test, identity, meters and live exceptions of one SAS machine",
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

    scan = dsub.add_parser("scan", help="list the SAS addresses that answer on a port",
                           description="Send one LP 54 to every address and list those that answer.")
    _common(scan)
    scan.add_argument("--first", type=_address, default=None, help="first address (default 1)")
    scan.add_argument("--last", type=_address, default=None, help="last address (default 127)")
    scan.add_argument("--timeout-ms", type=float, default=None,
                      help="per-address reply timeout (default 20)")

    _modbus_parser(dsub)

    keys = sub.add_parser("keys", help="the hall's signing key", description="the hall's Ed25519 signing key")
    ksub = keys.add_subparsers(dest="keys", metavar="ACTION")
    kinit = ksub.add_parser("init", help="create DIR/hall.key (mode 0600) and DIR/hall.pub",
                            description="Create the hall's Ed25519 key pair: DIR/hall.key (PKCS#8 PEM, mode 0600) "
                                        "and DIR/hall.pub (PEM, to register at HQ); print the fingerprint.")
    kinit.add_argument("--data-dir", required=True, metavar="DIR", help="the agent's data directory")
    kinit.add_argument("--force", action="store_true", help="replace an existing key (HQ must re-register it)")

    add_parsers(sub)
    return parser


def _merge(args: argparse.Namespace, section: str) -> dict[str, Any]:
    """defaults < config file (top level, then [diag.<section>]) < environment < flags."""
    defaults = {**DEFAULTS[section], "port": None, "address": None, "action": None}
    # --disable/--enable act on the machine: never from an inherited environment variable
    options = options_from_parser(subparser(build_parser(), "diag", section), defaults=defaults, no_env=("action",))
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "diag", "config")}
    try:
        return resolve(options, file=args.config, tables=[("diag", section)], env=os.environ,
                       env_prefix=ENV_PREFIX, flags=flags)
    except ConfigError as exc:
        raise DiagError(str(exc), EXIT_USAGE) from None


def _seconds(opts: dict[str, Any]) -> float:
    """--seconds, else 5 s for a link test and "until Ctrl-C" (0) for --watch."""
    if opts["seconds"] is not None:
        return float(opts["seconds"])
    return 0.0 if opts["watch"] else 5.0


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in OPS:
        return OPS[args.command](args)
    if args.command == "keys":
        return _keys(args)
    if args.command != "diag" or args.diag is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    opts = _merge(args, args.diag)
    setup_logging(opts["log_level"])
    if args.diag == "modbus":
        return _diag_modbus(opts)
    if not opts["port"]:
        raise DiagError("--port is required (the serial port or pty path), on the command line or in --config",
                        EXIT_USAGE)
    if args.diag == "scan":
        from .diag.scan import run_scan

        timeout = opts["timeout_ms"] / 1000 if opts["timeout_ms"] is not None else None
        return asyncio.run(run_scan(opts["port"], opts["framing"], opts["transport"], int(opts["first"]),
                                    int(opts["last"]), timeout, bool(opts["json"])))
    from .diag.sas import SasDiagOptions, run_sas_diag

    if opts["address"] is None:
        raise DiagError("--address is required (the machine's SAS address, 1..127)", EXIT_USAGE)
    resp = opts["response_timeout_ms"]
    diag_opts = SasDiagOptions(
        port=opts["port"], address=int(opts["address"]), framing=opts["framing"], transport=opts["transport"],
        seconds=_seconds(opts), json=bool(opts["json"]), watch=bool(opts["watch"]), action=opts["action"],
        response_timeout=resp / 1000 if resp is not None else None, poll_interval=float(opts["interval_ms"]) / 1000)
    # Like git: progress by default only for a person watching; a script capturing stderr gets just the error.
    show = opts["progress"] if opts["progress"] is not None else sys.stderr.isatty()
    return asyncio.run(run_sas_diag(diag_opts, progress=sys.stderr if show else None))


def _diag_modbus(opts: dict[str, Any]) -> int:
    from .diag.modbus import ModbusDiagOptions, run_modbus_diag

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


def _keys(args: argparse.Namespace) -> int:
    from .keys import KeyFileError, init_keys

    if args.keys != "init":
        raise DiagError("'hall-agent keys' needs an action: init (see 'hall-agent keys --help')", EXIT_USAGE)
    try:
        files = init_keys(args.data_dir, force=args.force)
    except KeyFileError as exc:
        raise DiagError(str(exc), EXIT_USAGE) from exc
    except OSError as exc:
        raise DiagError(f"cannot write keys in {args.data_dir}: {exc.strerror}", EXIT_USAGE) from exc
    print(f"private key: {files.private} (mode 0600, keep it on this machine)")
    print(f"public key:  {files.public} (register it: hall-central halls add ID --public-key FILE)")
    print(files.fingerprint)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; never shows a traceback for expected failures."""
    try:
        return _main(argv)
    except DiagError as exc:
        print(f"hall-agent: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `hall-agent diag sas --watch | head`: the reader left. Point stdout at /dev/null so the
        # interpreter's final flush does not raise again, and end as a pipe's writer does (SIGPIPE).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + 13


if __name__ == "__main__":
    sys.exit(main())
