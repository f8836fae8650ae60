"""``hall-agent diag sas``: link test, identity, meters, live exceptions, enable/disable.

It runs the very coordinator the agent runs, on one address, for a few seconds, and reports what
a technician checks at the machine: does it answer, how fast, how clean is the line, who is it,
what do its meters say, what is it doing right now.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass
from typing import TextIO

from ..diag.errors import EXIT_NO_ANSWER, EXIT_PORT, DiagError
from ..diag.render import table, to_jsonable
from ..transport import default_kind, make_transport
from ..transport.errors import TransportError
from . import facts as F
from .config import PollConfig
from .coordinator import MachineCoordinator
from .line import SasLine
from .poller import timing_for


@dataclass
class SasDiagOptions:
    port: str
    address: int
    framing: str = "marks"
    transport: str | None = None
    seconds: float = 5.0
    json: bool = False
    watch: bool = False
    action: str | None = None            # "disable" | "enable"
    response_timeout: float | None = None  # seconds
    poll_interval: float = 0.2


class Progress:
    """One line per step on ``stream`` (stderr) as it happens, flushed: a technician at the machine sees
    that the tool is polling and what it has got so far, while stdout stays the report (and ``--json``
    stays one clean document). ``stream`` None says nothing."""

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream

    def __call__(self, text: str) -> None:
        if self.stream is not None:
            self.stream.write(f"hall-agent: {text}\n")
            self.stream.flush()


async def run_sas_diag(opts: SasDiagOptions, out: TextIO = sys.stdout, progress: TextIO | None = None) -> int:
    say = Progress(progress)
    kind = opts.transport or default_kind(opts.port)
    transport = make_transport(opts.port, kind, opts.framing)  # type: ignore[arg-type]
    line = SasLine(transport, timing_for(kind, opts.response_timeout))
    try:
        await line.start()
    except TransportError as exc:
        raise DiagError(str(exc), EXIT_PORT) from exc
    config = PollConfig(poll_interval=opts.poll_interval, link_down_after=5, meter_interval=3600.0,
                        clock_interval=0, probe_interval=0.2, probe_max_interval=0.5)
    coord = MachineCoordinator(line, opts.address, device=f"addr-{opts.address}", config=config)
    await coord.start()
    started = time.monotonic()
    say(f"polling address {opts.address} on {opts.port} ({kind}, {opts.framing})...")
    identity: F.Identity | None = None
    meters: F.MetersSnapshot | None = None
    exceptions: list[F.ExceptionFact] = []
    other: list[F.Fact] = []
    command: F.CommandResult | None = None
    link_seen = False
    collecting_said = False
    deadline = None if (opts.watch and opts.seconds <= 0) else started + opts.seconds
    try:
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            try:
                fact = await asyncio.wait_for(coord.facts.get(), timeout=min(remaining or 0.5, 0.5))
            except TimeoutError:
                if not link_seen and time.monotonic() - started > max(2.0, min(opts.seconds, 5.0)):
                    break
                continue
            if isinstance(fact, F.LinkUp):
                link_seen = True
                say(f"link up after {time.monotonic() - started:.1f} s; reading identity and meters...")
                if opts.action and command is None:
                    say(f"sending {opts.action}...")
                    command = await (coord.disable_machine() if opts.action == "disable" else coord.enable_machine())
                    say(f"{opts.action}: {'ACKed' if command.acked else 'NOT ACKed'}")
            elif isinstance(fact, F.Identity):
                identity = fact
                say(f"identity: game {fact.game_id}, serial {fact.serial}, SAS {fact.sas_version}")
            elif isinstance(fact, F.MetersSnapshot):
                if meters is None:  # later snapshots (after events) are the same step again
                    say(f"meters: {len(fact.meters)} read (LP {fact.source})")
                meters = fact
            elif isinstance(fact, F.ExceptionFact):
                exceptions.append(fact)
                if opts.watch:
                    _print_exception(fact, opts.json, out)
            elif isinstance(fact, F.CommandResult):
                command = fact
            else:
                other.append(fact)
                if isinstance(fact, F.LinkDown):
                    say(f"link down: {fact.missed} polls unanswered")
            if not collecting_said and link_seen and identity and meters and (not opts.action or command):
                collecting_said = True
                if opts.watch:
                    say("watching exceptions " + (f"for {opts.seconds:g} s..." if deadline else "(Ctrl-C stops)..."))
                elif (left := opts.seconds - (time.monotonic() - started)) > 0.05:
                    say(f"collecting link statistics for {left:.1f} s more...")
            if not opts.watch and link_seen and identity and meters and (not opts.action or command) \
                    and time.monotonic() - started >= opts.seconds:
                break
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    finally:
        await coord.stop()
        await line.stop()
    elapsed = time.monotonic() - started
    if not link_seen:
        raise DiagError(
            f"no answer from SAS address {opts.address} on {opts.port} in {elapsed:.1f} s: check the "
            f"address set on the machine, the cable, and the framing ({opts.framing}); "
            f"'hall-agent diag scan --port {opts.port}' lists the addresses that answer", EXIT_NO_ANSWER)
    report = {
        "port": opts.port, "address": opts.address, "transport": kind, "framing": opts.framing,
        "seconds": round(elapsed, 2),
        "link": {"up": coord.link_up, "rte": coord.rte_active, "poll_interval_ms": round(coord.poll_interval * 1000),
                 **coord.stats.as_dict()},
        "identity": to_jsonable(identity) if identity else None,
        "meters": ({"source": meters.source, "accounting_denomination_cents": meters.accounting_denomination_cents,
                    "values": {m.name: {"code": f"{m.code:02X}", "value": m.value, "unit": m.unit}
                               for m in meters.meters}} if meters else None),
        "exceptions": [{"code": f"{e.code:02X}", "name": e.name, "wall": e.wall} for e in exceptions],
        "link_events": [type(f).__name__ for f in other if isinstance(f, F.LinkUp | F.LinkDown)],
        "command": to_jsonable(command) if command else None,
    }
    if opts.json:
        out.write(json.dumps(report) + "\n")
    else:
        out.write(render_report(report, identity, meters) + "\n")
    if command is not None and not command.acked:
        return EXIT_NO_ANSWER
    return 0


def _print_exception(fact: F.ExceptionFact, as_json: bool, out: TextIO) -> None:
    stamp = time.strftime("%H:%M:%S", time.localtime(fact.wall)) + f".{int(fact.wall * 1000) % 1000:03d}"
    if as_json:
        out.write(json.dumps({"exception": f"{fact.code:02X}", "name": fact.name, "wall": fact.wall,
                              "data": to_jsonable(fact.data)}) + "\n")
    else:
        data = f"  {to_jsonable(fact.data)}" if fact.data is not None else ""
        out.write(f"{stamp}  {fact.code:02X}  {fact.name}{data}\n")
    out.flush()


def render_report(report: dict, identity: F.Identity | None, meters: F.MetersSnapshot | None) -> str:
    link = report["link"]
    lat = link["latency_ms"]
    parts = [f"SAS link test — {report['port']} address {report['address']} "
             f"({report['transport']}, {report['framing']}, {report['seconds']} s)", ""]
    parts.append(table([
        ("link", "UP" if link["up"] else "DOWN"),
        ("RTE", "on" if link["rte"] else "off"),
        ("poll interval", f"{link['poll_interval_ms']} ms"),
        ("transmissions", str(link["transmissions"])),
        ("answered", str(link["answered"])),
        ("quiet (RTE, no event)", str(link["quiet"])),
        ("timeouts", str(link["timeouts"])),
        ("CRC/garbled", str(link["garbled"])),
        ("NACKs", str(link["nacks"])),
        ("busy", str(link["busy"])),
        ("chirps", str(link["chirps"])),
        ("retries", str(link["retries"])),
        ("latency p50 / p99", f"{lat['p50']} / {lat['p99']} ms"),
    ]))
    parts += ["", "latency histogram:"]
    total = max(1, sum(lat["histogram"].values()))
    for label, count in lat["histogram"].items():
        parts.append(f"  {label:>9}  {count:6d}  {'#' * round(40 * count / total)}")
    if identity:
        parts += ["", "identity:", table([
            ("game ID", identity.game_id), ("paytable", identity.paytable_id),
            ("SAS version", identity.sas_version), ("serial", identity.serial),
            ("accounting denom", f"{identity.accounting_denomination_cents} ¢"),
            ("games", ", ".join(f"{g.number} ({g.paytable_id}, {g.denomination_cents}¢)" for g in identity.games)
             or str(identity.game_count)),
            ("40 ms polling", "allowed" if identity.fast_polling else "no"),
        ])]
    if meters:
        parts += ["", f"meters (LP {meters.source}):",
                  table([(f"{m.code:02X}", m.name, str(m.value), m.unit) for m in meters.meters],
                        ("code", "meter", "value", "unit"))]
    if report["exceptions"]:
        parts += ["", "exceptions:", table([(e["code"], e["name"]) for e in report["exceptions"]])]
    if report["command"]:
        c = report["command"]
        parts += ["", f"command {c['action']}: {'ACKed' if c['acked'] else 'NOT ACKed'} {c['detail']}".rstrip()]
    return "\n".join(parts)
