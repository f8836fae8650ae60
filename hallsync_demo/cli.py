"""``hall demo`` arguments; ``hall`` (hallsync_cli) hands the ``demo`` sub-command here.

Options resolve like every other command's (protocols.config): defaults < ``--config FILE`` (TOML,
top-level keys or a ``[demo]`` table) < environment (``HALLSYNC_DEMO_BROKER``, ``HALLSYNC_DEMO_HTTP`` …)
< flags.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from protocols.config import ConfigError, options_from_parser, resolve

from .brokers import NoBroker
from .demo import DemoFailed, DemoOptions, run_demo
from .provision import ProvisionFailed

DEFAULT_HTTP = "127.0.0.1:8080"
ENV_PREFIX = "HALLSYNC_DEMO_"
BROKER_ENV = ENV_PREFIX + "BROKER"


def parse_http(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT, e.g. {DEFAULT_HTTP}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
        return value

    return parse


def add_arguments(demo: argparse.ArgumentParser) -> None:
    """The demo's flags; their defaults are :data:`DEFAULTS` (applied by :func:`run`, below the config and env)."""
    S = argparse.SUPPRESS
    demo.add_argument("--config", type=Path, default=S, metavar="FILE",
                      help="TOML file holding any of these options (top level or a [demo] table; flags win)")
    demo.add_argument("--http", type=parse_http, default=S, metavar="HOST:PORT",
                      help=f"where central serves the API and the dashboard (default {DEFAULT_HTTP})")
    demo.add_argument("--data-dir", type=Path, default=S, metavar="DIR",
                      help="keys, databases and logs (default: a new folder hallsync-demo-* under the system's "
                           "temporary directory, kept after the demo stops); a reused DIR keeps its hall and data")
    demo.add_argument("--broker", choices=("auto", "mosquitto", "embedded"), default=S,
                      help="auto (default): the system's mosquitto if installed, else the embedded pure-Python "
                           f"broker (amqtt, from the [demo] extra); also ${BROKER_ENV}")
    demo.add_argument("--egms", type=_positive(int), default=S, help="simulated slot machines (default 12)")
    demo.add_argument("--terminals", type=int, default=S, choices=range(0, 11), metavar="N",
                      help="simulated Modbus terminals (default 2)")
    demo.add_argument("--pace", type=_positive(float), default=S,
                      help="seconds between two games of one device (default 2)")
    demo.add_argument("--seed", type=int, default=S, help="seed of the simulated players (default 1)")
    demo.add_argument("--startup-timeout", type=_positive(float), default=S, metavar="SEC",
                      help="give up if a part does not answer within this many seconds (default 90)")


DEFAULTS = {"http": parse_http(DEFAULT_HTTP), "data_dir": None, "broker": "auto", "egms": 12, "terminals": 2,
            "pace": 2.0, "seed": 1, "startup_timeout": 90.0}


def resolve_options(args: argparse.Namespace, env: dict[str, str] | None = None) -> dict[str, Any]:
    """defaults < ``--config`` (top level, then [demo]) < environment (HALLSYNC_DEMO_*) < flags."""
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    options = options_from_parser(parser, defaults=DEFAULTS)
    flags = {k: v for k, v in vars(args).items() if k in options}
    return resolve(options, file=getattr(args, "config", None), tables=[("demo",)],
                   env=os.environ if env is None else env, env_prefix=ENV_PREFIX, flags=flags)


def run(args: argparse.Namespace) -> int:
    try:
        opts = resolve_options(args)
    except ConfigError as exc:
        print(f"hall demo: {exc}", file=sys.stderr)
        return 2
    data_dir = Path(opts["data_dir"]).resolve() if opts["data_dir"] else Path(tempfile.mkdtemp(prefix="hallsync-demo-"))
    host, port = opts["http"]
    demo = DemoOptions(data_dir=data_dir, http_host=host, http_port=port, broker=opts["broker"], egms=opts["egms"],
                       terminals=opts["terminals"], pace=opts["pace"], seed=opts["seed"],
                       startup_timeout=opts["startup_timeout"])
    try:
        return asyncio.run(run_demo(demo))
    except (DemoFailed, ProvisionFailed, NoBroker, OSError) as exc:
        print(f"hall demo: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hall demo",
        description="Broker, central, a simulated hall and its agent in one process tree; prints the dashboard "
                    "URL as its last line once everything answers; Ctrl-C stops everything.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
