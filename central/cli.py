"""``hall-central``: the HQ server's command line.

The delivery spine (ingest, keys, halls, API keys, serve) lands with issue 02; until then every
subcommand says so plainly instead of pretending to work.
"""

from __future__ import annotations

import argparse
import sys

PLANNED = {
    "keys": "central signing keys (keys init --data-dir DIR)",
    "halls": "register halls and their public keys (halls add ID --public-key FILE --db DB)",
    "apikeys": "API keys by role (apikeys create --role ROLE --db DB)",
    "serve": "ingest, HTTP API and dashboard (serve --data-dir DIR --db DB --mqtt URL --http HOST:PORT)",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hall-central", description="hallsync HQ server.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in PLANNED.items():
        sub.add_parser(name, help=f"{text} [not available yet]", add_help=True)
    args, _ = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    print(f"hall-central {args.command}: not available yet; it lands with the delivery spine (issue 02)",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
