"""``hall-sim``: simulated EGMs on ptys and Modbus terminals for the agent, for tests and third-party hosts.

Commands: ``floor`` (N EGMs and M terminals, devices.toml, truth.json), ``egm`` (one machine, its port
printed as one JSON line) and ``terminal`` (one Modbus terminal, TCP or RTU, its endpoint printed as
one JSON line). Every option can also come from ``--config FILE`` (TOML, top-level keys or a
``[floor]`` / ``[egm]`` / ``[terminal]`` table; dashes or underscores; an unknown key is refused) or
from the environment (``HALLSYNC_SIM_PACE`` …); a flag on the command line wins (protocols.config:
defaults < file < environment < flags).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from protocols.config import ConfigError, options_from_parser, resolve, take_defaults
from protocols.logstream import STDERR

from .egm import Egm
from .faults import WireNoise
from .floor import MAX_TERMINALS, Floor
from .games import parse_games
from .modbus_server import ModbusTerminalServer
from .pty_egm import FRAMINGS, PtyEgmServer
from .responder import LinkConfig
from .terminal import COUNTER_MODULUS, DEFAULT_RTP, Terminal

log = structlog.get_logger("firmware_sim.cli")


def _non_negative(kind: type) -> Any:
    def parse(text: str) -> Any:
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"{text} is negative")
        return value
    return parse


def _shared(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML file holding any of these options")
    parser.add_argument("--seed", type=int, default=0, help="seed of players and outcomes (same seed, same truth)")
    parser.add_argument("--pace", type=_non_negative(float), default=3.0,
                        help="seconds between a player's games or a customer's bets (default 3; 0 = no players)")
    parser.add_argument("--rounds", type=_non_negative(int), default=None,
                        help="games (bets) per device after which players stop (polls are still answered)")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))


def _counter_start(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--counter-start", type=_non_negative(int), default=0,
                        help="terminals' counters start at this value (e.g. 4294967000 to exercise the 32-bit "
                             "rollover; default 0)")


def _common(parser: argparse.ArgumentParser) -> None:
    _shared(parser)
    parser.add_argument("--framing", choices=FRAMINGS, default="marks",
                        help="marks: wakeup bit as PARMRK marks (default); structural: for hosts that cannot mark")
    parser.add_argument("--games", type=parse_games, default=None,
                        help="games as number:denomination_cents:max_bet:rtp_percent,... (default 3 games)")
    parser.add_argument("--sync-rule", action=argparse.BooleanOptionalAction, default=True,
                        help="ignore own polls after power-up/loop break until another address is polled")
    parser.add_argument("--chirp-after", type=_non_negative(float), default=5.0,
                        help="seconds without polls before the EGM chirps (default 5)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hall-sim", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    floor = sub.add_parser("floor", help="N EGMs on N ptys, M Modbus TCP terminals, devices.toml and truth.json",
                           description="Start N EGMs (SAS addresses 1..N) on their own ptys and M Modbus TCP "
                                       "terminals (term-01.., unit 1, each on its own loopback port), write "
                                       "OUT/devices.toml, and OUT/truth.json once all rounds are played and again "
                                       "on SIGTERM/SIGINT.")
    floor.add_argument("--egms", type=int, default=None, help="number of EGMs (0..127; 0 needs --terminals)")
    floor.add_argument("--terminals", type=_non_negative(int), default=0,
                       help=f"number of Modbus TCP terminals on loopback (0..{MAX_TERMINALS}, default 0)")
    _counter_start(floor)
    floor.add_argument("--out", type=Path, default=None, help="directory for devices.toml and truth.json")
    floor.add_argument("--exit-when-done", action=argparse.BooleanOptionalAction, default=False,
                       help="exit after writing truth.json when all rounds are played, instead of serving on")
    floor.add_argument("--wait-for-host", action=argparse.BooleanOptionalAction, default=False,
                       help="EGMs hold play until a SAS host has first polled them and read their meters "
                            "(so no play predates the host's accounting)")
    floor.add_argument("--wire-faults", default="off", metavar="SPEC",
                       help="random faults on every EGM's SAS line, per reply: corrupt=P (one byte flipped), "
                            "drop=P (reply lost), truncate=P (last byte lost), seed=N (default: --seed); e.g. "
                            "corrupt=0.01,drop=0.005. Each line draws from its own seeded stream; the machines' "
                            "meters and truth.json are untouched; OUT/wire-faults.json counts what each line "
                            "suffered (default off)")
    _common(floor)
    egm = sub.add_parser("egm", help="one EGM on one pty",
                         description="Serve one EGM on a pty; print {\"port\", \"address\", \"framing\"} as one "
                                     "JSON line when ready; run until SIGTERM/SIGINT.")
    egm.add_argument("--address", type=int, default=None, help="SAS address (1..127)")
    _common(egm)
    terminal = sub.add_parser("terminal", help="one Modbus terminal (TCP on loopback, or RTU on a pty)",
                              description="Serve one cash/betting terminal (hallsync terminal map v1, holding "
                                          "registers 0..19); print {\"host\", \"port\", \"unit\"} (TCP) or "
                                          "{\"port\": PTY, \"unit\"} (--rtu) as one JSON line when ready; run "
                                          "until SIGTERM/SIGINT.")
    terminal.add_argument("--unit", type=int, default=1, help="Modbus unit id (1..247, default 1)")
    terminal.add_argument("--rtu", action=argparse.BooleanOptionalAction, default=False,
                          help="serve Modbus RTU on a pty instead of Modbus TCP")
    terminal.add_argument("--host", default="127.0.0.1", help="TCP address to listen on (default 127.0.0.1)")
    terminal.add_argument("--port", type=_non_negative(int), default=0, help="TCP port (default 0: a free port)")
    terminal.add_argument("--number", type=int, default=1, help="terminal number (seeds its customers; default 1)")
    terminal.add_argument("--rtp", type=float, default=DEFAULT_RTP * 100,
                          help=f"return to player in percent (default {DEFAULT_RTP * 100:g})")
    _counter_start(terminal)
    _shared(terminal)
    parser.set_defaults(_commands={"floor": floor, "egm": egm, "terminal": terminal})
    return parser


ENV_PREFIX = "HALLSYNC_SIM_"
"""Every option may also come from ``HALLSYNC_SIM_<OPTION>`` (``HALLSYNC_SIM_PACE=0``)."""


def parse_args(argv: Sequence[str] | None, env: dict[str, str] | None = None) -> argparse.Namespace:
    """The command's options: defaults < ``--config`` (top level, then [command]) < environment < flags."""
    parser = build_parser()
    commands: dict[str, argparse.ArgumentParser] = parser.get_default("_commands")
    defaults = {name: take_defaults(sub) for name, sub in commands.items()}   # the namespace: given flags only
    args = parser.parse_args(argv)
    sub = commands[args.command]
    options = options_from_parser(sub, defaults=defaults[args.command])
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "config", "_commands")}
    config = getattr(args, "config", None)
    try:
        merged = resolve(options, file=config, tables=[(args.command,)], env=os.environ if env is None else env,
                         env_prefix=ENV_PREFIX, flags=flags, unknown="error")
    except ConfigError as exc:
        sub.error(str(exc))
    return argparse.Namespace(command=args.command, config=config, **merged)


def _configure_logging(level: str) -> None:
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso"),
                    structlog.dev.ConsoleRenderer(colors=False)],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=STDERR),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    # pymodbus reports every request a vanished terminal drops; only a debugging user wants that.
    logging.getLogger("pymodbus").setLevel(logging.DEBUG if level == "debug" else logging.ERROR)


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _run_floor(args: argparse.Namespace) -> int:
    link = LinkConfig(sync_rule=args.sync_rule, chirp_after=args.chirp_after)
    floor = Floor(args.out, args.egms, terminals=args.terminals, seed=args.seed, pace=args.pace, rounds=args.rounds,
                  framing=args.framing, games=args.games, link=link, counter_start=args.counter_start,
                  wait_for_host=args.wait_for_host, wire=WireNoise.parse(str(args.wire_faults), args.seed))
    await floor.run(_stop_event(), exit_when_done=args.exit_when_done)
    return 0


async def _run_egm(args: argparse.Namespace) -> int:
    link = LinkConfig(sync_rule=args.sync_rule, chirp_after=args.chirp_after)
    egm = Egm(args.address, args.games, seed=args.seed, pace=args.pace, rounds=args.rounds)
    stop = _stop_event()
    server = PtyEgmServer(egm, args.framing, link=link)
    try:
        port = await server.start()
        print(json.dumps({"port": port, "address": args.address, "framing": args.framing}), flush=True)
        await stop.wait()
    finally:
        await server.stop()
    return 0


async def _run_terminal(args: argparse.Namespace) -> int:
    terminal = Terminal(args.number, seed=args.seed, pace=args.pace, rounds=args.rounds, rtp=args.rtp / 100,
                        preset=args.counter_start or None)
    stop = _stop_event()
    server = ModbusTerminalServer(terminal, unit=args.unit, transport="rtu" if args.rtu else "tcp",
                                  host=args.host, port=args.port)
    try:
        await server.start()
        print(json.dumps(server.endpoint), flush=True)
        await stop.wait()
    finally:
        await server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    parser = build_parser()
    if args.command == "floor":
        if args.egms is None and args.terminals:
            args.egms = 0
        if args.egms is None or args.out is None:
            parser.exit(2, "hall-sim: error: floor needs --egms and --out (flags or config)\n")
        if not 0 <= args.egms <= 127 or args.egms + args.terminals == 0:
            parser.exit(2, "hall-sim: error: --egms must be 1..127 (one SAS loop's addresses), or 0 with --terminals\n")
        if args.terminals > MAX_TERMINALS:
            parser.exit(2, f"hall-sim: error: --terminals must be 0..{MAX_TERMINALS}\n")
        try:
            WireNoise.parse(str(args.wire_faults), args.seed)
        except ValueError as exc:
            parser.exit(2, f"hall-sim: error: --wire-faults: {exc}\n")
    elif args.command == "terminal":
        if not 1 <= args.unit <= 247:
            parser.exit(2, "hall-sim: error: terminal needs --unit 1..247\n")
        if not 50 <= args.rtp < 100:
            parser.exit(2, "hall-sim: error: --rtp must be at least 50 and below 100 (percent)\n")
    elif args.address is None or not 1 <= args.address <= 127:
        parser.exit(2, "hall-sim: error: egm needs --address 1..127\n")
    if getattr(args, "counter_start", 0) >= COUNTER_MODULUS:
        parser.exit(2, "hall-sim: error: --counter-start must be below 2**32\n")
    _configure_logging(args.log_level)
    runner = {"floor": _run_floor, "egm": _run_egm, "terminal": _run_terminal}[args.command]
    try:
        return asyncio.run(runner(args))
    except ValueError as exc:
        print(f"hall-sim: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
