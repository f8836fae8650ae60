"""``hall demo`` arguments; ``hall`` (hallsync_cli) hands the ``demo`` sub-command here."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from .brokers import NoBroker
from .demo import DemoFailed, DemoOptions, run_demo
from .provision import ProvisionFailed

DEFAULT_HTTP = "127.0.0.1:8080"
BROKER_ENV = "HALLSYNC_DEMO_BROKER"


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
    demo.add_argument("--http", type=parse_http, default=parse_http(DEFAULT_HTTP), metavar="HOST:PORT",
                      help=f"where central serves the API and the dashboard (default {DEFAULT_HTTP})")
    demo.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                      help="keys, databases and logs (default: a new folder hallsync-demo-* under the system's "
                           "temporary directory, kept after the demo stops); a reused DIR keeps its hall and data")
    demo.add_argument("--broker", choices=("auto", "mosquitto", "embedded"), default=None,
                      help="auto (default): the system's mosquitto if installed, else the embedded pure-Python "
                           f"broker (amqtt, from the [demo] extra); also ${BROKER_ENV}")
    demo.add_argument("--egms", type=_positive(int), default=12, help="simulated slot machines (default 12)")
    demo.add_argument("--terminals", type=int, default=2, choices=range(0, 11), metavar="N",
                      help="simulated Modbus terminals (default 2)")
    demo.add_argument("--pace", type=_positive(float), default=2.0,
                      help="seconds between two games of one device (default 2)")
    demo.add_argument("--seed", type=int, default=1, help="seed of the simulated players (default 1)")
    demo.add_argument("--startup-timeout", type=_positive(float), default=90.0, metavar="SEC",
                      help="give up if a part does not answer within this many seconds (default 90)")


def run(args: argparse.Namespace) -> int:
    broker = args.broker or os.environ.get(BROKER_ENV) or "auto"
    if broker not in ("auto", "mosquitto", "embedded"):
        print(f"hall demo: ${BROKER_ENV}={broker!r}: expected auto, mosquitto or embedded", file=sys.stderr)
        return 2
    data_dir = args.data_dir.resolve() if args.data_dir else Path(tempfile.mkdtemp(prefix="hallsync-demo-"))
    host, port = args.http
    opts = DemoOptions(data_dir=data_dir, http_host=host, http_port=port, broker=broker, egms=args.egms,
                       terminals=args.terminals, pace=args.pace, seed=args.seed,
                       startup_timeout=args.startup_timeout)
    try:
        return asyncio.run(run_demo(opts))
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
