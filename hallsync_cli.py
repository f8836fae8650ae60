"""``hall``: one command for the whole system.

``hall demo`` (hallsync_demo/) runs a broker, central, a simulated hall and its agent on this machine and
prints the dashboard URL; more sub-commands may join it.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from hallsync_demo.cli import add_arguments, run

    parser = argparse.ArgumentParser(prog="hall", description="hallsync: the whole system in one command.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo = sub.add_parser("demo", help="broker, central, a simulated hall and its agent; prints the dashboard URL",
                          description="Broker (the system's mosquitto if found, else an embedded one), central, a "
                                      "simulated hall of EGMs and terminals and its agent, in one process tree. "
                                      "Prints the dashboard URL as its last line once everything answers; "
                                      "Ctrl-C stops everything.")
    add_arguments(demo)
    args = parser.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
