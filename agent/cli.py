"""``hall-agent``: the technician's command line.

Every option can also come from ``--config FILE`` (TOML): top-level keys apply to every command,
a ``[diag.sas]`` / ``[diag.scan]`` / ``[diag.modbus]`` table to that command only (each device
family brings its ``diag`` subcommands: :func:`agent.families.diagnostics`), or from the
environment (``HALLSYNC_AGENT_PORT`` …); a flag on the command line wins (protocols.config:
defaults < file < environment < flags).
Errors are one line on stderr with what to check, and a non-zero exit code (see diag/errors.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from protocols.config import ConfigError, options_from_parser, resolve, subparser

from .cli_ops import ENV_PREFIX, add_parsers
from .cli_ops import devices as _devices
from .cli_ops import outbox as _outbox
from .cli_ops import run as _run
from .cli_ops import status as _status
from .diag.errors import EXIT_USAGE, DiagError
from .families import diagnostics
from .logging_setup import setup_logging

OPS = {"run": _run, "status": _status, "devices": _devices, "outbox": _outbox}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hall-agent", description="hallsync hall agent")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    diag = sub.add_parser("diag", help="diagnostics for technicians", description="diagnostics for technicians")
    dsub = diag.add_subparsers(dest="diag", metavar="TARGET")
    for diagnostic in diagnostics().values():   # each device family's (agent.families)
        diagnostic.add_parser(dsub)

    keys = sub.add_parser("keys", help="the hall's signing key", description="the hall's Ed25519 signing key")
    ksub = keys.add_subparsers(dest="keys", metavar="ACTION")
    kinit = ksub.add_parser("init", help="create DIR/hall.key (mode 0600) and DIR/hall.pub",
                            description="Create the hall's Ed25519 key pair: DIR/hall.key (PKCS#8 PEM, mode 0600) "
                                        "and DIR/hall.pub (PEM, to register at HQ); print the fingerprint.")
    kinit.add_argument("--data-dir", required=True, metavar="DIR", help="the agent's data directory")
    kinit.add_argument("--force", action="store_true", help="replace an existing key (HQ must re-register it)")

    add_parsers(sub)
    return parser


def _merge(args: argparse.Namespace, section: str, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """defaults < config file (top level, then [diag.<section>]) < environment < flags."""
    # --disable/--enable act on the machine: never from an inherited environment variable
    options = options_from_parser(subparser(build_parser(), "diag", section), defaults=defaults, no_env=("action",))
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "diag", "config")}
    try:
        return resolve(options, file=args.config, tables=[("diag", section)], env=os.environ,
                       env_prefix=ENV_PREFIX, flags=flags)
    except ConfigError as exc:
        raise DiagError(str(exc), EXIT_USAGE) from None


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
    diagnostic = diagnostics()[args.diag]
    opts = _merge(args, args.diag, diagnostic.defaults)
    setup_logging(opts["log_level"])
    return diagnostic.run(opts)


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
