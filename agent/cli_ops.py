"""``hall-agent run|status|devices|outbox``: the daemon and what an operator asks of it.

``run`` options may come from ``--config FILE`` (TOML: top-level keys and a ``[run]`` table) or the
environment (``HALLSYNC_AGENT_HALL`` …); flags win (protocols.config: defaults < file < environment <
flags). ``status``/``devices``/``outbox`` ask the running agent on its socket (``DATA_DIR/agent.sock``,
answered from memory, so a full disk or a loaded machine cannot make a running agent look dead); when
nothing answers there, whether it runs is the agent's lock on ``DATA_DIR/agent.pid`` (held while the
process lives, starting included), and what it last said is the state file it rewrites every few
seconds; ``outbox`` reads the outbox database itself (read-only) when the agent is not running.
Exit codes: 0 ok; 1 the agent is not running; 2 usage or start-up error.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from protocols.config import ConfigError, options_from_parser, resolve, subparser
from protocols.sync import MAX_CLOCK_SKEW_SECONDS, MAX_COMMAND_LIFETIME_SECONDS

from .diag.errors import EXIT_USAGE, DiagError

if TYPE_CHECKING:
    from .replicator import ReplicatorConfig

DEFAULT_DATA_DIR = "/var/lib/hallsync"
ENV_PREFIX = "HALLSYNC_AGENT_"
"""Every option of every command may also come from ``HALLSYNC_AGENT_<OPTION>`` (``HALLSYNC_AGENT_DATA_DIR``)."""
RUN_DEFAULTS: dict[str, Any] = {
    "data_dir": DEFAULT_DATA_DIR, "currency": "EUR", "gaming_day_start": "06:00", "meter_settle": 30.0,
    "retention_days": 7.0, "retention_max_mb": 1024.0, "prune_interval": 3600.0,
    "command_max_skew": MAX_CLOCK_SKEW_SECONDS, "command_max_lifetime": MAX_COMMAND_LIFETIME_SECONDS,
    "log_level": "info"}
"""``hall-agent run``'s defaults (None for the rest); status, devices and outbox default only data_dir."""
RUN_KEYS = ("hall", "data_dir", "devices", "mqtt", "mqtt_password_file", "central_key", "currency", "log_level",
            "log_format", "gaming_day_start", "metrics", "meter_interval", "meter_settle", "retention_days",
            "retention_max_mb", "prune_interval", "command_max_skew", "command_max_lifetime")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run the agent: poll devices, record events, replicate to HQ",
                         description="Poll every device of the devices file, record events in the durable "
                                     "outbox and replicate them to HQ over MQTT. Stops cleanly on SIGTERM/Ctrl-C.")
    run.add_argument("--config", metavar="FILE", help="TOML file holding any of these options (flags win)")
    run.add_argument("--hall", help="this hall's ID (as registered at HQ)")
    run.add_argument("--data-dir", metavar="DIR", help=f"keys, outbox and state (default {DEFAULT_DATA_DIR})")
    run.add_argument("--devices", metavar="FILE", help="devices.toml ([[devices]] id, protocol, port, address…)")
    run.add_argument("--mqtt", metavar="URL", help="broker URL, mqtt://host:port or mqtts://HALL@host:port"
                                                   "?ca=CA.pem (TLS; `hall-central halls add` prints it)")
    run.add_argument("--mqtt-password-file", metavar="FILE",
                     help="file holding the broker password (one line; not readable by others, e.g. 0640 "
                          "root:hallsync); else $HALLSYNC_MQTT_PASSWORD; never put it in the URL, ps shows that")
    run.add_argument("--central-key", metavar="FILE", help="HQ's public key (central.pub), to verify acks")
    run.add_argument("--currency", help="the hall's ISO 4217 currency (default EUR)")
    run.add_argument("--gaming-day-start", metavar="HH:MM",
                     help="local time the gaming day ends (default 06:00; HQ's standing data, once received, wins)")
    run.add_argument("--meter-interval", type=float, metavar="SEC",
                     help="seconds between scheduled meter snapshots of every machine (default 900)")
    run.add_argument("--meter-settle", type=float, metavar="SEC",
                     help="how long after a snapshot late exceptions may still arrive before a meter difference "
                          "becomes a 'missed' record (default 30)")
    run.add_argument("--retention-days", type=float, metavar="DAYS",
                     help="keep events HQ acknowledged for this long, then prune them (default 7; events HQ has "
                          "not acknowledged are never pruned)")
    run.add_argument("--retention-max-mb", type=float, metavar="MB",
                     help="and keep acknowledged events only while the outbox holds at most this many MB, the "
                          "oldest going first, whichever keeps less (default 1024; 0 = no size cap)")
    run.add_argument("--linger", type=float, metavar="SEC",
                     help="seconds a batch waits for more events before it is sent to HQ (default 0.25, 0..5; "
                          "a backlog is sent in full batches at once)")
    run.add_argument("--congested-linger", type=float, metavar="SEC",
                     help="while earlier batches are unacked, how long a batch that is not full may wait for their "
                          "ack, so an HQ that is behind gets fewer, larger batches (default 2, 0..5; 0 = off; at "
                          "most half the ack timeout)")
    run.add_argument("--prune-interval", type=float, metavar="SEC",
                     help="seconds between outbox prunes; the first runs 30 s after start (default 3600)")
    run.add_argument("--command-max-skew", type=float, metavar="SEC",
                     help="refuse (answer 'rejected') a command of HQ issued more than this far in this machine's "
                          "future (default 300)")
    run.add_argument("--command-max-lifetime", type=float, metavar="SEC",
                     help="refuse (answer 'rejected') a command of HQ valid for longer than this (default 900, "
                          "HQ's longest ttl_seconds)")
    run.add_argument("--metrics", metavar="HOST:PORT",
                     help="serve Prometheus metrics at http://HOST:PORT/metrics, e.g. 127.0.0.1:9464 (default off; "
                          "no authentication: keep it on loopback or the management network)")
    run.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="default info")
    run.add_argument("--log-format", choices=("json", "console"), help="default: json unless stderr is a terminal")
    for name, text in (("status", "is the agent running, connected, caught up?"),
                       ("devices", "every device, its link and last activity"),
                       ("outbox", "events recorded, acknowledged by HQ, waiting")):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--config", metavar="FILE", help="TOML file (data_dir)")
        p.add_argument("--data-dir", metavar="DIR", help=f"the agent's data directory (default {DEFAULT_DATA_DIR})")
        p.add_argument("--json", action="store_true", help="machine-readable JSON output")


def _options(args: argparse.Namespace, section: str) -> dict[str, Any]:
    """defaults < config file (top level, then [section]) < environment < flags."""
    from .cli import build_parser

    defaults = RUN_DEFAULTS if section == "run" else {"data_dir": DEFAULT_DATA_DIR}
    options = options_from_parser(subparser(build_parser(), section), defaults=defaults)
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
    try:
        return resolve(options, file=args.config, tables=[(section,)], env=os.environ, env_prefix=ENV_PREFIX,
                       flags=flags)
    except ConfigError as exc:
        raise DiagError(str(exc), EXIT_USAGE) from None


# -- run ----------------------------------------------------------------------------------------------

def _pacing_seconds(opts: Mapping[str, Any], name: str) -> float | None:
    """A replicator wait option (0..5 s), or None when not given."""
    if opts.get(name) is None:
        return None
    flag = "--" + name.replace("_", "-")
    try:
        seconds = float(opts[name])
    except (TypeError, ValueError) as exc:
        raise DiagError(f"{flag}: {exc}", EXIT_USAGE) from exc
    if not 0 <= seconds <= 5:
        raise DiagError(f"{flag} must be 0..5 seconds, not {seconds}", EXIT_USAGE)
    return seconds


def replicator_config(opts: Mapping[str, Any]) -> ReplicatorConfig:
    """The replicator's pacing from ``hall-agent run``'s options (flags, environment or config file)."""
    from .replicator import ReplicatorConfig

    replicator = ReplicatorConfig()
    linger = _pacing_seconds(opts, "linger")
    if linger is not None:
        replicator = dataclasses.replace(replicator, linger=linger)
    congested = _pacing_seconds(opts, "congested_linger")
    if congested is not None:
        replicator = dataclasses.replace(replicator, congested_linger=congested)
    return replicator


def run(args: argparse.Namespace) -> int:
    from mqttlink import PASSWORD_ENV, broker_url

    from .logging_setup import setup_logging
    from .runtime import AgentConfig, HallAgent, StartupError
    from .sas.config import PollConfig

    opts = _options(args, "run")
    missing = [k for k in ("hall", "devices", "mqtt", "central_key") if not opts.get(k)]
    if missing:
        raise DiagError("missing " + ", ".join("--" + m.replace("_", "-") for m in missing)
                        + " (on the command line or in --config)", EXIT_USAGE)
    try:  # the variable leaves the environment: child processes need not inherit the password
        url = broker_url(str(opts["mqtt"]), password_file=opts.get("mqtt_password_file"),
                         env_password=os.environ.pop(PASSWORD_ENV, None))
    except ValueError as exc:
        raise DiagError(str(exc), EXIT_USAGE) from None
    log_format = opts.get("log_format")
    setup_logging(opts["log_level"], None if log_format is None else log_format == "json")
    try:
        day_start = dt.time.fromisoformat(str(opts["gaming_day_start"]))
    except ValueError as exc:
        raise DiagError(f"--gaming-day-start: {exc}", EXIT_USAGE) from exc
    poll = PollConfig()
    if opts.get("meter_interval") is not None:
        poll = dataclasses.replace(poll, meter_interval=float(opts["meter_interval"]))
    try:
        retention = {"retention_days": float(opts["retention_days"]),
                     "retention_max_mb": float(opts["retention_max_mb"]),
                     "prune_interval": float(opts["prune_interval"])}
    except (TypeError, ValueError) as exc:
        raise DiagError(f"retention option: {exc}", EXIT_USAGE) from exc
    if retention["retention_days"] <= 0 or retention["prune_interval"] <= 0:
        raise DiagError("--retention-days and --prune-interval must be > 0", EXIT_USAGE)
    try:
        bounds = {"command_max_skew": float(opts["command_max_skew"]),
                  "command_max_lifetime": float(opts["command_max_lifetime"])}
    except (TypeError, ValueError) as exc:
        raise DiagError(f"command bound option: {exc}", EXIT_USAGE) from exc
    if not all(0 < v < float("inf") for v in bounds.values()):
        raise DiagError("--command-max-skew and --command-max-lifetime must be > 0 seconds", EXIT_USAGE)
    replicator = replicator_config(opts)
    config = AgentConfig(hall=str(opts["hall"]), data_dir=Path(opts["data_dir"]), devices=Path(opts["devices"]),
                         mqtt=url, central_key=Path(opts["central_key"]),
                         currency=str(opts["currency"]), gaming_day_start=day_start, poll=poll,
                         meter_settle_seconds=float(opts["meter_settle"]),
                         metrics=str(opts["metrics"]) if opts.get("metrics") else None, replicator=replicator,
                         retention_days=retention["retention_days"], retention_max_mb=retention["retention_max_mb"],
                         prune_interval=retention["prune_interval"], command_max_skew=bounds["command_max_skew"],
                         command_max_lifetime=bounds["command_max_lifetime"])

    async def main() -> None:
        agent = HallAgent(config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await agent.run(stop)

    try:
        asyncio.run(main())
    except StartupError as exc:
        raise DiagError(f"cannot start: {exc}", EXIT_USAGE) from exc
    return 0


# -- status / devices / outbox ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Observed:
    """What the CLI found out about the agent: its state, whether it runs, and from where."""

    state: dict[str, Any] | None
    running: bool
    source: str | None          # "agent socket", "state file" or None (nothing found)
    note: str | None = None     # why the socket did not answer, when it did not


def _observe(data_dir: Path) -> Observed:
    """Ask the live agent first; then its lock; fall back to the state file's age last.

    The socket decides liveness when it can, and the agent's lock (``DATA_DIR/agent.pid``, held by
    the running process from start to stop, dropped by the kernel when it dies) when the socket does
    not answer, because a file's age cannot decide it (a full disk or a loaded machine stops the file
    from being rewritten while the agent runs):

    * an answer: running (unless it comes from a shutdown in progress);
    * no answer, lock held: running (starting, busy, hung or stopped; the note says why no answer),
      with the state file as the last known state (None while a first start has written none yet);
    * no answer, lock free: not running, whatever the file says;
    * no lock file (an agent from before the lock): refused (a socket file nobody listens on) is
      not running; accepted but unanswered is running if the state file's pid exists; no socket is
      the file rule, fresh and its process exists.

    A state file written by a clean stop says so (``stopped_at``): not running, unless a new run holds the lock.
    """
    from .state_socket import PID_FILE, SOCKET_FILE, STATE_FILE, AgentNotAnswering, ask_agent, lock_holder

    try:
        live = ask_agent(data_dir / SOCKET_FILE)
        return Observed(live, live.get("stopped_at") is None, "agent socket")
    except AgentNotAnswering as exc:
        why: AgentNotAnswering = exc
    locked = lock_holder(data_dir / PID_FILE)
    try:
        state = json.loads((data_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        state = None
    if not isinstance(state, dict):
        state = None
    if locked is not None:
        return Observed(state, locked, "state file" if state is not None else None, str(why))
    if state is None:
        return Observed(None, False, None, str(why))
    if why.refused or state.get("stopped_at") is not None:
        return Observed(state, False, "state file", str(why))
    alive = _pid_alive(int(state.get("pid", 0)))
    if why.connected:
        return Observed(state, alive, "state file", str(why))
    fresh = time.time() - float(state.get("updated_at", 0)) < 3 * float(state.get("state_interval", 2.0)) + 2
    return Observed(state, fresh and alive, "state file", str(why))


def _read_state(data_dir: Path) -> tuple[dict[str, Any] | None, bool]:
    """(state, running), see :func:`_observe`."""
    seen = _observe(data_dir)
    return seen.state, seen.running


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def status(args: argparse.Namespace) -> int:
    opts = _options(args, "status")
    data_dir = Path(opts["data_dir"])
    seen = _observe(data_dir)
    state, running = seen.state, seen.running
    if args.json:
        print(json.dumps({"running": running, "state": state, "source": seen.source,
                          "socket_error": seen.note}, indent=1, sort_keys=True))
        return 0 if running else 1
    if state is None:
        print(f"agent: running, starting (no state yet; {seen.note})" if running
              else f"agent: not running (no state in {data_dir})")
        return 0 if running else 1
    now = time.time()
    ob, rep = state["outbox"], state["replicator"]
    up = sum(1 for d in state["devices"] if d.get("link_up"))
    oldest = ob.get("oldest_unacked_agent_time")
    where = "live, from its socket" if seen.source == "agent socket" else \
        f"state file {_age(now - state['updated_at'])} old"
    if seen.running and seen.source != "agent socket" and seen.note:
        where += f"; {seen.note}"
    print(f"hall:      {state['hall']}")
    print(f"agent:     {'running' if running else 'NOT RUNNING'} (pid {state['pid']}, up "
          f"{_age(state['updated_at'] - state['started_at'])}, {where})")
    if state.get("state_file_error"):
        print(f"state file: NOT WRITTEN — {state['state_file_error']}")
    print(f"broker:    {rep['broker']} {'connected' if rep['connected'] else 'DISCONNECTED'} "
          f"(session {rep['session']}, last error: {rep['link'].get('last_error') or '-'})")
    print(f"outbox:    {ob['state']}; last seq {ob['last_seq']}, acked through {ob['acked_through']}, "
          f"{ob['unacked_count']} waiting (oldest {_age(state['updated_at'] - oldest / 1e6) if oldest else '-'} "
          f"when the state was written)")
    fail = state.get("fail_closed")
    print(f"fail-closed: {'NO' if not fail else 'YES — ' + str(fail.get('reason')) + ' (machines locked)'}")
    print(f"devices:   {len(state['devices'])} ({up} answering)")
    return 0 if running else 1


def devices(args: argparse.Namespace) -> int:
    opts = _options(args, "devices")
    seen = _observe(Path(opts["data_dir"]))
    state, running = seen.state, seen.running
    if args.json:
        print(json.dumps({"running": running, "devices": (state or {}).get("devices", []), "source": seen.source,
                          "socket_error": seen.note}, indent=1, sort_keys=True))
        return 0 if running else 1
    if state is None:
        print("agent: running, starting (no state yet)" if running
              else f"agent: not running (no state in {opts['data_dir']})")
        return 0 if running else 1
    if not running:
        print("agent: NOT RUNNING — last known state:")
    now = time.time()
    header = f"{'device':<12} {'proto':<6} {'where':<18} {'link':<5} {'game':<8} {'last seen':>10} {'polls':>8} " \
             f"{'missed':>7}  note"
    print(header)
    for d in state["devices"]:
        if d.get("protocol") == "sas":
            where = f"{d.get('port', '')}#{d.get('address', '')}"
        elif d.get("host"):
            where = f"{d['host']}:{d.get('port', '')}/{d.get('unit', '')}"
        else:
            where = f"{d.get('serial') or d.get('port') or '-'}/{d.get('unit', '')}"
        link = {True: "up", False: "DOWN", None: "-"}[d.get("link_up")]
        last = _age(now - d["last_seen"]) if d.get("last_seen") else "-"
        note = "LOCKED (fail-closed)" if d.get("locked_by_agent") else (d.get("last_error") or d.get("note") or "")
        print(f"{d['id']:<12} {d.get('protocol', ''):<6} {where[-18:]:<18} {link:<5} {d.get('game_id') or '-'!s:<8} "
              f"{last:>10} {d.get('polls', 0):>8} {d.get('missed_polls', 0):>7}  {note}")
    return 0 if running else 1


def outbox(args: argparse.Namespace) -> int:
    opts = _options(args, "outbox")
    data_dir = Path(opts["data_dir"])
    state, running = _read_state(data_dir)
    if running and state is not None:
        info = dict(state["outbox"])
        info["source"] = "running agent"
    else:
        from .outbox import inspect_outbox
        from .runtime import OUTBOX_FILE

        try:
            info = inspect_outbox(data_dir / OUTBOX_FILE)
        except FileNotFoundError as exc:
            raise DiagError(str(exc), EXIT_USAGE) from exc
        except Exception as exc:
            if running:   # the lock is held but nothing answers yet: the agent is creating its outbox
                raise DiagError(f"the agent is starting; its outbox is not ready yet ({exc})", EXIT_USAGE) from exc
            raise DiagError(f"cannot read {data_dir / OUTBOX_FILE}: {exc}", EXIT_USAGE) from exc
        info["source"] = "outbox file (agent not running)"
    if args.json:
        print(json.dumps(info, indent=1, sort_keys=True))
        return 0
    oldest = info.get("oldest_unacked_agent_time")
    print(f"source:        {info['source']}")
    print(f"last seq:      {info['last_seq']}")
    print(f"acked through: {info['acked_through']}")
    print(f"waiting:       {info['unacked_count']} events"
          + (f" (oldest {_age(time.time() - oldest / 1e6)})" if oldest else ""))
    if info.get("unacked_by_type"):
        print("  by type:     " + ", ".join(f"{k} {v}" for k, v in sorted(info["unacked_by_type"].items())))
    if "state" in info:
        print(f"state:         {info['state']}" + (f" ({info['reason']})" if info.get("reason") else ""))
    print(f"pruned through: {info['pruned_through']}")
    free = info.get("free_bytes")
    if free is None and info.get("last_prune"):
        free = info["last_prune"].get("free_bytes")
    print(f"file size:     {info['db_bytes'] / 1e6:.1f} MB"
          + (f" ({free / 1e6:.1f} MB of it free, reused before the file grows)" if free is not None else ""))
    retention = info.get("retention")
    if retention:
        cap = retention.get("max_mb")
        print(f"retention:     acked events {retention['days']:g} days"
              + (f", at most {cap:g} MB in use" if cap else "") + " (unacked: never pruned)")
    return 0
