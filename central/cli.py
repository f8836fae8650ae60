"""``hall-central``: the HQ server's command line.

Every option can also come from ``--config FILE`` (TOML): top-level keys (e.g. ``db``, ``data_dir``)
apply to every command, a ``[halls.add]``-style table to that command only; then from the environment
(``HALLSYNC_CENTRAL_DB`` …, never the acting flags --force, --replace, --forget-presence,
--allow-unsigned); a flag on the command line wins over all (protocols.config).
Results go to stdout (the API key is the last line of ``apikeys create``); logs
and errors go to stderr. Exit codes: 0 done, 1 refused or failed (message says why), 2 usage error or
not available yet.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from protocols.config import ConfigError, Option, options_from_parser, subparser
from protocols.config import resolve as resolve_layers
from protocols.sync import SyncError, check_hall_id, fingerprint, public_key_from_pem
from protocols.sync.gamingday import DEFAULT_START, DEFAULT_ZONE, DayRule, DayRuleError

from . import audit
from .apikeys import (
    HALL_BOUND_ROLES,
    KeyNotFound,
    check_name,
    create_api_key,
    parse_expiry,
    revoke_api_key,
    rotate_api_key,
)
from .brokeraccount import PASSWORD_FILE, instructions, new_account
from .keyfiles import KeyFileError, init_keys
from .logging_setup import setup_logging
from .process_roles import PROCESS_ROLES
from .repos import Repositories
from .repos.errors import BackendUnavailable, StoreError
from .repos.halls import ROLES
from .store import is_postgres_url, open_store, sqlite_path
from .timeutil import now_micros

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# Per command: option defaults (None = no default) and which options must end up set.
DEFAULTS: dict[str, dict[str, Any]] = {
    "keys.init": {"data_dir": None, "force": False},
    "halls.add": {"public_key": None, "db": None, "replace": False, "broker": None, "timezone": None,
                  "gaming_day_start": None},
    "halls.list": {"db": None, "json": False},
    "halls.set": {"db": None, "timezone": None, "gaming_day_start": None, "forget_presence": False},
    "halls.disable": {"db": None},
    "halls.enable": {"db": None},
    "halls.remove": {"db": None},
    "apikeys.create": {"role": None, "db": None, "halls": None, "name": None, "expires": None},
    "apikeys.list": {"db": None, "json": False},
    "apikeys.revoke": {"db": None},
    "apikeys.rotate": {"db": None},
    "export.write": {"db": None, "data_dir": None, "from": None, "to": None, "out": None, "format": "jsonl",
                     "hall": None},
    "export.verify": {"file": None, "central_pub": None, "allow_unsigned": False},
    "db.migrate": {"from": None, "to": None},
    # serve is a daemon: info by default, like ``hall-agent run``, so its start and stop lines reach journald
    "serve": {"log_level": "info", "data_dir": None, "db": None, "mqtt": None, "mqtt_password_file": None,
              "http": "127.0.0.1:8080",
              "currency": "EUR", "share_group": "central", "client_id": "hallsync-central", "metrics_token": None,
              "monitor_interval": 15.0, "alert_door_open": None, "alert_device_silent": None,
              "alert_delay": None, "alert_missed_share": None, "alert_missed_records": None,
              "no_shared_subscription": False, "http_header_timeout": 10.0, "http_body_timeout": 30.0,
              "http_max_connections_per_ip": 64, "login_failures": 20, "login_window": 60.0, "gap_grace": 1.0,
              "role": "all"},
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "keys.init": ("data_dir",),
    "halls.add": ("public_key", "db"),
    "halls.list": ("db",),
    "halls.set": ("db",),
    "halls.disable": ("db",),
    "halls.enable": ("db",),
    "halls.remove": ("db",),
    "apikeys.create": ("role", "db"),
    "apikeys.list": ("db",),
    "apikeys.revoke": ("db",),
    "apikeys.rotate": ("db",),
    "export.write": ("db", "data_dir", "from", "to", "out"),
    "export.verify": ("file",),
    "db.migrate": ("from", "to"),
    "serve": ("data_dir", "db", "mqtt"),
}
S = argparse.SUPPRESS
ENV_PREFIX = "HALLSYNC_CENTRAL_"
"""An option may also come from ``HALLSYNC_CENTRAL_<OPTION>`` (``HALLSYNC_CENTRAL_DB``) …"""
NO_ENV = ("force", "replace", "forget_presence", "allow_unsigned")
"""… except these, which act: an inherited variable must not replace a key or skip a signature check."""


class UsageError(Exception):
    """Bad or missing options (exit 2)."""


class Failed(Exception):
    """The command was understood but refused or failed (exit 1)."""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", default=S, help="TOML file holding any of these options (flags win)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default=S,
                   help="level of central's own logs on stderr (default info for serve, else warning)")


def _db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=S, metavar="DB",
                   help="SQLite database file (created if missing), or a postgresql://user@host/db URL")


def _day_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timezone", default=S, metavar="ZONE",
                   help="the hall's IANA time zone, e.g. Europe/Kyiv (default UTC)")
    p.add_argument("--gaming-day-start", default=S, metavar="HH:MM",
                   help="local time at which the hall's gaming day starts, e.g. 06:00 (default 00:00)")


def _day_rule(opts: dict[str, Any], current: Any = None) -> DayRule | None:
    """The rule the flags ask for (None: neither flag given); unset parts keep ``current``'s."""
    if opts.get("timezone") is None and opts.get("gaming_day_start") is None:
        return None
    zone = opts.get("timezone") or (current.timezone if current is not None else DEFAULT_ZONE)
    start = opts.get("gaming_day_start") or (current.gaming_day_start if current is not None else DEFAULT_START)
    try:
        return DayRule(str(zone), str(start))
    except DayRuleError as exc:
        raise UsageError(str(exc)) from None


async def _apply_day_rule(store: Any, hall: str, rule: DayRule, now: int) -> str:
    """Set the rule, audit a change; returns what to print."""
    before = await store.halls.get_hall(hall)
    after = await store.halls.set_day_rule(hall, rule, now=now)
    if after is None:
        raise Failed(f"hall {hall} is not registered")
    if before is not None and after.settings_version != before.settings_version:
        await audit.record(store.audit, time=now, actor=audit.cli_actor(), action="hall.settings.update",
                           target=audit.hall_target(hall), before=_settings(before), after=_settings(after))
        state = f"version {after.settings_version}"
    else:
        state = "unchanged"
    return f"hall {hall}: gaming day {after.timezone} from {after.gaming_day_start} ({state})"


def _settings(record: Any) -> dict[str, Any]:
    return {"timezone": record.timezone, "gaming_day_start": record.gaming_day_start,
            "settings_version": record.settings_version}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hall-central", description="hallsync HQ server: ingest, storage, API.")
    _common(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    keys = sub.add_parser("keys", help="central's signing key pair", description="central's signing key pair")
    keys.set_defaults(_help=keys.print_help)
    ksub = keys.add_subparsers(dest="action", metavar="ACTION")
    init = ksub.add_parser("init", help="create central.key (0600) and central.pub in a data directory",
                           description="Create central's Ed25519 key pair: DIR/central.key (PKCS#8 PEM, mode "
                                       "0600) and DIR/central.pub (give it to every hall agent).")
    _common(init)
    init.add_argument("--data-dir", default=S, metavar="DIR", help="directory for the key files")
    init.add_argument("--force", action="store_true", default=S, help="replace existing key files")

    halls = sub.add_parser("halls", help="registered halls and their public keys",
                           description="registered halls and their public keys")
    halls.set_defaults(_help=halls.print_help)
    hsub = halls.add_subparsers(dest="action", metavar="ACTION")
    add = hsub.add_parser("add", help="register a hall and its public key",
                          description="Register a hall ID with the Ed25519 public key (PEM) its agent signs with. "
                                      "Takes effect at once, also while central runs.")
    _common(add)
    add.add_argument("hall", metavar="ID", help="hall ID, [A-Za-z0-9_-]{1,64}")
    add.add_argument("--public-key", default=S, metavar="FILE", help="the hall's hall.pub (PEM)")
    _db(add)
    add.add_argument("--replace", action="store_true", default=S,
                     help="replace the key of an already registered hall (logged as a manual intervention)")
    add.add_argument("--broker", default=S, metavar="HOST:PORT",
                     help="HQ broker's address as halls reach it, for the printed agent URL (default a placeholder)")
    _day_flags(add)
    hset = hsub.add_parser("set", help="change a hall's time zone and gaming-day start",
                           description="Set a registered hall's IANA time zone and gaming-day start. Every report "
                                       "uses the hall's gaming day; a change re-buckets its stored rollups from its "
                                       "events (one transaction) and is audited.")
    _common(hset)
    hset.add_argument("hall", metavar="ID", help="hall ID")
    _db(hset)
    _day_flags(hset)
    hset.add_argument("--forget-presence", action="store_true", default=S,
                      help="clear the stored online status and session, so the agent's next signed status is "
                           "taken (a hall pinned offline by a forged unsigned status from before statuses were signed)")
    for verb, text in (("disable", "refuse a hall's messages for now (its agent keeps them until enable)"),
                       ("enable", "take a disabled hall's messages again"),
                       ("remove", "retire a hall: its key stops working, its stored data stays in every report")):
        state_cmd = hsub.add_parser(verb, help=text, description=text[0].upper() + text[1:] + ". Takes effect at "
                                    "once, also in a running central; audited.")
        _common(state_cmd)
        state_cmd.add_argument("hall", metavar="ID", help="hall ID")
        _db(state_cmd)
    lst = hsub.add_parser("list", help="list registered halls", description="List registered halls with their key "
                                                                             "fingerprint and stored chain end.")
    _common(lst)
    _db(lst)
    lst.add_argument("--json", action="store_true", default=S, help="machine-readable JSON output")

    apikeys = sub.add_parser("apikeys", help="API keys for the HTTP API", description="API keys for the HTTP API")
    apikeys.set_defaults(_help=apikeys.print_help)
    asub = apikeys.add_subparsers(dest="action", metavar="ACTION")
    create = asub.add_parser("create", help="create an API key (printed once, as the last line)",
                             description="Create an API key for a role. The key is printed once as the last line; "
                                         "central stores only a hash of it.")
    _common(create)
    create.add_argument("--role", choices=ROLES, default=S, help="what the key may do")
    _db(create)
    create.add_argument("--halls", default=S, metavar="H1,H2",
                        help="limit the key to these halls (default: all; required for technician)")
    create.add_argument("--name", default=S, metavar="TEXT",
                        help='whose key it is, shown in the audit log and the dashboard ("Anna, cashier lead")')
    create.add_argument("--expires", default=S, metavar="LIFETIME",
                        help="the key stops working after this long: 12h, 90d, 4w (default: never)")
    klist = asub.add_parser("list", help="list API keys (never the keys themselves)",
                            description="Every API key with its owner name, role, halls, expiry and state "
                                        "(active, expired, revoked).")
    _common(klist)
    _db(klist)
    klist.add_argument("--json", action="store_true", default=S, help="machine-readable JSON output")
    revoke = asub.add_parser("revoke", help="revoke an API key at once",
                             description="Revoke a key: refused from the next request on, also by a running "
                                         "central. Its record stays for the audit log.")
    _common(revoke)
    revoke.add_argument("id", metavar="ID", help="the key's id (the hex after hsk_, as `apikeys list` shows)")
    _db(revoke)
    rotate = asub.add_parser("rotate", help="a new secret for an API key (printed once, as the last line)",
                             description="Give a key a new secret, keeping its id, name, role, halls and expiry "
                                         "(the audit trail stays one person's); the old secret is refused at once.")
    _common(rotate)
    rotate.add_argument("id", metavar="ID", help="the key's id")
    _db(rotate)

    export = sub.add_parser(
        "export", help="regulatory export of a period's events, and its offline check",
        description="Write the events of [--from, --to) to one file signed by central (the same format as GET "
                    "/api/v1/export; see central/export.py), or `export verify FILE` to check such a file offline.")
    _common(export)
    _db(export)
    export.add_argument("--data-dir", default=S, metavar="DIR", help="directory holding central.key (signs the file)")
    export.add_argument("--from", default=S, metavar="TIME",
                        help="period start: a gaming day YYYY-MM-DD or today (its start, as in the reports), or an "
                             "instant: RFC 3339 with offset, or microseconds")
    export.add_argument("--to", default=S, metavar="TIME",
                        help="period end: a gaming day (included: its end) or an instant (excluded)")
    export.add_argument("--out", default=S, metavar="FILE", help="the export file to write")
    export.add_argument("--format", choices=("jsonl", "csv"), default=S, help="jsonl (default) or csv")
    export.add_argument("--hall", default=S, metavar="ID", help="only this hall")
    esub = export.add_subparsers(dest="action", metavar="ACTION")
    verify = esub.add_parser("verify", help="check an export file offline",
                             description="Check an export file offline: every event's hash, the chain links, each "
                                         "hall's signature and central's signed manifest. Prints what it checked; "
                                         "exits 1 naming every problem found.")
    _common(verify)
    verify.add_argument("file", metavar="FILE", help="the export file (jsonl or csv)")
    verify.add_argument("--central-pub", default=S, metavar="FILE",
                        help="central.pub to check the manifest against (default: the key inside the file)")
    verify.add_argument("--allow-unsigned", action="store_true", default=S,
                        help="accept halls whose events carry no hall signature (stored before central kept them)")
    export.set_defaults(action="write")

    database = sub.add_parser("db", help="the store itself: move it to PostgreSQL",
                              description="the store itself: move it to PostgreSQL")
    database.set_defaults(_help=database.print_help)
    dsub = database.add_subparsers(dest="action", metavar="ACTION")
    move = dsub.add_parser(
        "migrate", help="copy an HQ's SQLite store into an empty PostgreSQL database and compare both",
        description="Copy every table of the SQLite store into an EMPTY PostgreSQL database (its schema is "
                    "created first) in one transaction, then compare both sides: rows and content of every "
                    "table, each hall's chain end, GGR per hall and per device. Commits only if all are equal "
                    "(exit 0); otherwise rolls back, names what differs and exits 1. The SQLite file is brought "
                    "to this build's schema first and read in one snapshot: stop every `serve` first, events "
                    "stored after the snapshot are not moved.")
    _common(move)
    move.add_argument("--from", default=S, metavar="sqlite:PATH", help="the SQLite file (sqlite:PATH or a path)")
    move.add_argument("--to", default=S, metavar="postgresql://URL", help="the empty PostgreSQL database")

    serve = sub.add_parser("serve", help="ingest (MQTT) and the HTTP API",
                           description="Run ingest (a shared MQTT subscription to every hall's batches and status) "
                                       "and the HTTP API under /api/v1. Several processes may serve one database "
                                       "(give each its own --client-id). Stops cleanly on SIGTERM/Ctrl-C.")
    _common(serve)
    serve.add_argument("--data-dir", default=S, metavar="DIR", help="directory holding central.key")
    _db(serve)
    serve.add_argument("--mqtt", default=S, metavar="URL", help="broker URL, e.g. mqtt://127.0.0.1:1883 or "
                       "mqtts://hq.central@127.0.0.1:8884?ca=CA.pem (TLS)")
    serve.add_argument("--mqtt-password-file", default=S, metavar="FILE",
                       help="file holding the broker password (one line; not readable by others, e.g. "
                            "0640 root:hallsync-central); else $HALLSYNC_MQTT_PASSWORD; never put it in the URL, "
                            "ps shows that")
    serve.add_argument("--http", default=S, metavar="HOST:PORT", help="HTTP listen address (default 127.0.0.1:8080)")
    serve.add_argument("--currency", default=S, help="the network's ISO 4217 currency for reports (default EUR)")
    serve.add_argument("--share-group", default=S, help="MQTT shared-subscription group (default central)")
    serve.add_argument("--client-id", default=S, help="MQTT client id, unique per process (default hallsync-central)")
    serve.add_argument("--no-shared-subscription", action="store_true", default=S,
                       help="subscribe without $share, for a broker that lacks shared subscriptions (hall demo's "
                            "embedded broker); then only ONE central process may serve that broker")
    serve.add_argument("--metrics-token", default=S, metavar="TOKEN",
                       help="bearer token Prometheus must send to GET /metrics (put it in --config to keep it out "
                            "of ps); without it only loopback clients may scrape")
    serve.add_argument("--role", choices=PROCESS_ROLES, default=S,
                       help="what this process runs: ingest (the shared subscription), api (the HTTP API; "
                            "its MQTT link only publishes commands), monitor (the alert monitor: run exactly one), "
                            "or all (default); several ingest and api processes may serve one database")
    serve.add_argument("--gap-grace", type=float, default=S, metavar="SEC",
                       help="seconds a batch that arrived ahead of its predecessor waits for another ingest "
                            "process to store that predecessor before central asks the hall to resend it "
                            "(default 1; 0: ask at once)")
    serve.add_argument("--monitor-interval", type=float, default=S, metavar="SEC",
                       help="seconds between evaluations of the alert list (default 15; 0: no monitor in this "
                            "process); of several processes on one database only the one holding the monitor "
                            "lease evaluates, another takes over when it stops or dies")
    serve.add_argument("--alert-door-open", type=int, default=S, metavar="SEC",
                       help="alert when a machine door stays open longer (default 300)")
    serve.add_argument("--alert-device-silent", type=int, default=S, metavar="SEC",
                       help="alert when a machine of an online hall sends nothing for longer (default 1800)")
    serve.add_argument("--alert-delay", type=int, default=S, metavar="SEC",
                       help="alert when events reach central later than this after the agent wrote them (default 60)")
    serve.add_argument("--alert-missed-share", type=float, default=S, metavar="PCT",
                       help="alert when missed records carry at least this %% of a machine's bets and wins over "
                            "the last hour (default 5)")
    serve.add_argument("--alert-missed-records", type=int, default=S, metavar="N",
                       help="alert when a machine has at least N missed records within the last hour (default 4)")
    serve.add_argument("--http-header-timeout", type=float, default=S, metavar="SEC",
                       help="close a connection whose request line and headers are not complete this long after "
                            "it opened or sent its first byte (default 10; 0: no deadline)")
    serve.add_argument("--http-body-timeout", type=float, default=S, metavar="SEC",
                       help="close a connection whose request body is not complete this long after its headers "
                            "(default 30; 0: no deadline)")
    serve.add_argument("--http-max-connections-per-ip", type=int, default=S, metavar="N",
                       help="concurrent HTTP connections one client address may hold; more get 503 and are "
                            "closed (default 64; 0: no cap)")
    serve.add_argument("--login-failures", type=int, default=S, metavar="N",
                       help="bad API keys one client address may present per --login-window before it is "
                            "answered 429 until the window ends (default 20; 0: no limit)")
    serve.add_argument("--login-window", type=float, default=S, metavar="SEC",
                       help="the window of --login-failures, from the first failure (default 60)")
    return parser


def resolve(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Defaults < config top level < config ``[command.action]`` table < environment < flags; then check required."""
    defaults: dict[str, Any] = {"log_level": "warning", **DEFAULTS[name]}
    path = ("export",) if name == "export.write" else name.split(".")   # `export` without an action writes
    options = options_from_parser(subparser(build_parser(), *path), defaults=defaults, no_env=NO_ENV)
    for key, value in defaults.items():   # positional arguments a config table may also name (export verify's file)
        options.setdefault(key, Option(key, default=value, env=False))
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "action", "_help", "config")}
    config_path = getattr(args, "config", None)
    try:
        options_set = resolve_layers(options, file=config_path, tables=[tuple(name.split("."))], env=os.environ,
                                     env_prefix=ENV_PREFIX, flags=flags)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if config_path is not None:
        options_set["config"] = config_path
    missing = [key for key in REQUIRED[name] if options_set.get(key) in (None, "")]
    if missing:
        names = ", ".join("--" + key.replace("_", "-") for key in missing)
        raise UsageError(f"{name.replace('.', ' ')}: missing {names} (as a flag or in --config)")
    return options_set


def _run(coro: Callable[[], Coroutine[Any, Any, int]]) -> int:
    return asyncio.run(coro())


def _on_store(db: str, body: Callable[[Repositories], Coroutine[Any, Any, int]]) -> int:
    """Open the store, run ``body`` on it, close it whatever happens; body's exit code."""
    async def run() -> int:
        store = await open_store(db)
        try:
            return await body(store)
        finally:
            await store.close()

    return _run(run)


def cmd_keys_init(opts: dict[str, Any]) -> int:
    try:
        private_path, public_path = init_keys(Path(opts["data_dir"]), force=bool(opts["force"]))
    except KeyFileError as exc:
        raise Failed(str(exc)) from None
    except OSError as exc:
        raise Failed(f"cannot write keys in {opts['data_dir']}: {exc.strerror}") from None
    print(f"wrote {private_path} (mode 0600) and {public_path}")
    return EXIT_OK


def cmd_halls_add(opts: dict[str, Any]) -> int:
    hall = opts["hall"]
    try:
        check_hall_id(hall)
    except SyncError as exc:
        raise UsageError(str(exc)) from None
    try:
        pem = Path(opts["public_key"]).read_bytes()
    except OSError as exc:
        raise Failed(f"cannot read public key {opts['public_key']}: {exc.strerror}") from None
    try:
        key = public_key_from_pem(pem)
    except SyncError as exc:
        raise Failed(f"{opts['public_key']}: {exc}") from None
    _day_rule(opts)   # a bad zone or start is a usage error before anything is written

    async def run() -> int:
        store = await open_store(str(opts["db"]))
        day_line = None
        try:
            old, now = await store.halls.get_hall(hall), now_micros()
            outcome = await store.halls.add_hall(hall, pem.decode("ascii").strip() + "\n", now=now,
                                           replace=bool(opts["replace"]))
            await audit.hall_added(store.audit, actor=audit.cli_actor(), time=now, hall=hall, outcome=outcome,
                                   old_fingerprint=None if old is None else _key_fingerprint(old.public_key_pem),
                                   new_fingerprint=fingerprint(key))
            rule = _day_rule(opts, await store.halls.get_hall(hall))
            if rule is not None:
                day_line = await _apply_day_rule(store, hall, rule, now)
        finally:
            await store.close()
        print(f"{outcome} hall {hall} ({fingerprint(key)})")
        if day_line is not None:
            print(day_line)
        if outcome == "unchanged":   # a new password here would not match the one the hall already uses
            print(f"broker account unchanged: the hall keeps the password issued when it was added (to issue "
                  f"another: mosquitto_passwd {PASSWORD_FILE} {hall} on the broker host)")
            return EXIT_OK
        for line in instructions(new_account(hall, opts["broker"])):  # the hall's broker account
            print(line)
        return EXIT_OK

    return _run(run)


def cmd_halls_set(opts: dict[str, Any]) -> int:
    hall = opts["hall"]
    if _day_rule(opts) is None and not opts["forget_presence"]:
        raise UsageError("halls set: give --timezone, --gaming-day-start and/or --forget-presence")
    if not _db_exists(str(opts["db"])):
        raise Failed(f"database {opts['db']} does not exist (halls add creates it)")

    async def run() -> int:
        store = await open_store(str(opts["db"]))
        try:
            current = await store.halls.get_hall(hall)
            if current is None:
                raise Failed(f"hall {hall} is not registered")
            rule = _day_rule(opts, current)
            if rule is not None:
                print(await _apply_day_rule(store, hall, rule, now_micros()))
            if opts["forget_presence"]:
                now = now_micros()
                await store.halls.forget_presence(hall, now=now)
                await audit.record(store.audit, time=now, actor=audit.cli_actor(), action="hall.presence.forget",
                                   target=audit.hall_target(hall),
                                   before={"online": current.online, "session": current.session}, after=None)
                print(f"hall {hall}: presence forgotten; the agent's next signed status sets it")
        finally:
            await store.close()
        return EXIT_OK

    return _run(run)


_STATE_OF = {"disable": "disabled", "enable": "active", "remove": "removed"}


def cmd_halls_state(verb: str) -> Callable[[dict[str, Any]], int]:
    """``halls disable|enable|remove ID``."""
    def command(opts: dict[str, Any]) -> int:
        hall, state = str(opts["hall"]), _STATE_OF[verb]

        async def run(store: Repositories) -> int:
            current = await store.halls.get_hall(hall)
            if current is None:
                raise Failed(f"hall {hall} is not registered")
            if current.state == "removed" and verb != "remove":
                raise Failed(f"hall {hall} was removed: register it again with halls add {hall} --replace")
            if current.state == state:
                print(f"hall {hall} is already {state}")
                return EXIT_OK
            now = now_micros()
            await store.halls.set_hall_state(hall, state, now=now)
            await audit.record(store.audit, time=now, actor=audit.cli_actor(), action=f"hall.{verb}",
                               target=audit.hall_target(hall), before={"hall": hall, "state": current.state},
                               after={"hall": hall, "state": state})
            print(f"hall {hall}: {current.state} → {state}")
            if verb == "remove":
                print(f"its stored events stay in every report; on the broker host also remove its account: "
                      f"mosquitto_passwd -D {PASSWORD_FILE} {hall} && systemctl reload mosquitto")
            elif verb == "disable":
                print("its batches, statuses and command results are refused until `halls enable`; its agent "
                      "keeps every event meanwhile")
            return EXIT_OK

        return _on_store(_existing_db(opts), run)

    return command


def cmd_halls_list(opts: dict[str, Any]) -> int:
    if not _db_exists(str(opts["db"])):
        raise Failed(f"database {opts['db']} does not exist (halls add creates it)")

    async def run() -> int:
        store = await open_store(str(opts["db"]))
        try:
            halls = await store.halls.halls()
        finally:
            await store.close()
        rows = [{"id": h.id, "key": fingerprint(public_key_from_pem(h.public_key_pem.encode())),
                 "added_at": _iso(h.added_at), "last_seq": h.last_seq, "last_hash": h.last_hash,
                 "timezone": h.timezone, "gaming_day_start": h.gaming_day_start, "state": h.state} for h in halls]
        if opts["json"]:
            print(json.dumps({"rows": rows}, indent=2))
        elif not rows:
            print("no halls registered")
        else:
            print(f"{'ID':24} {'STATE':9} {'KEY':26} {'LAST SEQ':>10}  {'GAMING DAY':28} ADDED")
            for r in rows:
                day = f"{r['timezone']} {r['gaming_day_start']}"
                print(f"{r['id']:24} {r['state']:9} {r['key']:26} {r['last_seq']:>10}  {day:28} {r['added_at']}")
        return EXIT_OK

    return _run(run)


def cmd_apikeys_create(opts: dict[str, Any]) -> int:
    raw = opts["halls"]
    halls: list[str] | None
    if raw is None or raw == "":
        halls = None
    elif isinstance(raw, list):
        halls = [str(h) for h in raw]
    else:
        halls = [h.strip() for h in str(raw).split(",") if h.strip()]
    try:
        for h in halls or ():
            check_hall_id(h)
        if opts["role"] not in ROLES:
            raise UsageError(f"--role must be one of {', '.join(ROLES)}")
        if opts["role"] in HALL_BOUND_ROLES and not halls:
            raise UsageError(f"a {opts['role']} key needs --halls H1,H2: a {opts['role']} reads the devices and "
                             "diagnostics of its halls only")
    except SyncError as exc:
        raise UsageError(f"--halls: {exc}") from None
    now = now_micros()
    try:
        name = check_name(None if opts["name"] is None else str(opts["name"]))
        expires_at = parse_expiry(None if opts["expires"] is None else str(opts["expires"]), now=now)
    except ValueError as exc:
        raise UsageError(str(exc)) from None

    async def run() -> int:
        store = await open_store(str(opts["db"]))
        try:
            key_id, key = await create_api_key(store.halls, opts["role"], halls, now=now, name=name,
                                               expires_at=expires_at)
            await audit.apikey_created(store.audit, actor=audit.cli_actor(), time=now, key_id=key_id, role=opts["role"],
                                       halls=halls, name=name, expires_at=expires_at)
        finally:
            await store.close()
        print(f"id: {key_id}")
        if name is not None:
            print(f"name: {name}")
        print(f"role: {opts['role']}")
        print(f"halls: {','.join(halls) if halls else 'all'}")
        print(f"expires: {_iso(expires_at) if expires_at is not None else 'never'}")
        print("the key is shown once; store it now:")
        print(key)
        return EXIT_OK

    return _run(run)


def cmd_serve(opts: dict[str, Any]) -> int:
    from mqttlink import PASSWORD_ENV, broker_url

    from .keyfiles import KeyFileError
    from .server import ServerConfig, parse_http, run_forever

    try:
        host, port = parse_http(str(opts["http"]))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:  # the variable leaves the environment: the verify pool's processes need not inherit the password
        url = broker_url(str(opts["mqtt"]), password_file=opts["mqtt_password_file"],
                         env_password=os.environ.pop(PASSWORD_ENV, None))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    config = ServerConfig(data_dir=Path(opts["data_dir"]), db=str(opts["db"]), mqtt=url,
                          http_host=host, http_port=port, currency=str(opts["currency"]),
                          share_group=None if opts["no_shared_subscription"] else str(opts["share_group"]),
                          client_id=str(opts["client_id"]),
                          metrics_token=str(opts["metrics_token"]) if opts["metrics_token"] else None,
                          monitor_interval=_positive(opts["monitor_interval"], "--monitor-interval", zero=True),
                          gap_grace=_positive(opts["gap_grace"], "--gap-grace", zero=True),
                          role=_role(opts["role"]),
                          alert_thresholds=_thresholds(opts), http_limits=_http_limits(opts),
                          login_failures=_count(opts["login_failures"], "--login-failures"),
                          login_window=_positive(opts["login_window"], "--login-window"))
    try:
        run_forever(config)
    except KeyFileError as exc:
        raise Failed(str(exc)) from None
    except ValueError as exc:  # a bad broker URL
        raise UsageError(str(exc)) from None
    except OSError as exc:  # the HTTP port is taken, the DB directory is missing…
        raise Failed(f"cannot serve: {exc}") from None
    return EXIT_OK


def _role(value: Any) -> str:
    if value not in PROCESS_ROLES:   # a config file's value (the flag's choices check only the command line)
        raise UsageError(f"--role: {value!r} is not one of {', '.join(PROCESS_ROLES)}")
    return str(value)


def _positive(value: Any, flag: str, *, zero: bool = False) -> float:
    if (isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 86_400
            or (value == 0 and not zero)):
        low = "0" if zero else "more than 0"
        raise UsageError(f"{flag} must be a number of seconds from {low} to 86400, not {value!r}")
    return float(value)


def _count(value: Any, flag: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1_000_000:
        raise UsageError(f"{flag} must be a whole number from 0 to 1000000, not {value!r}")
    return value


def _http_limits(opts: dict[str, Any]) -> Any:
    """The HTTP listener's deadlines and per-address cap (issue 16; see mqttlink.httpguard)."""
    from protocols.httpguard import Limits

    return Limits(header_timeout=_positive(opts["http_header_timeout"], "--http-header-timeout", zero=True),
                  body_timeout=_positive(opts["http_body_timeout"], "--http-body-timeout", zero=True),
                  max_per_ip=_count(opts["http_max_connections_per_ip"], "--http-max-connections-per-ip"))


def _thresholds(opts: dict[str, Any]) -> Any:
    """The alert thresholds with the serve flags (or config keys) that override the defaults."""
    import dataclasses

    from .monitor import DEFAULTS as ALERT_DEFAULTS

    changes = {}
    for option, field_name in (("alert_door_open", "door_open_s"), ("alert_device_silent", "device_silent_s"),
                               ("alert_delay", "processing_delay_s")):
        if opts[option] is not None:
            changes[field_name] = max(1, round(_positive(opts[option], "--" + option.replace("_", "-"))))
    share = opts.get("alert_missed_share")
    if share is not None:
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 100:
            raise UsageError(f"--alert-missed-share must be a percentage more than 0 and at most 100, not {share!r}")
        changes["missed_share_bp"] = max(1, round(share * 100))
    records = opts.get("alert_missed_records")
    if records is not None:
        if isinstance(records, bool) or not isinstance(records, int) or records < 1:
            raise UsageError(f"--alert-missed-records must be a whole number of at least 1, not {records!r}")
        changes["missed_records_min"] = records
    return dataclasses.replace(ALERT_DEFAULTS, **changes)


def cmd_export_write(opts: dict[str, Any]) -> int:
    from protocols.sync.gamingday import DayRuleError, day_bound, is_day_text

    from .export import ExportError, parse_instant, write_export
    from .keyfiles import load_private_key

    raw_from, raw_to = str(opts["from"]), str(opts["to"])
    try:   # instants now; a gaming day (the reports' grammar) once the halls' day rules are read
        time_from = None if is_day_text(raw_from) else parse_instant(raw_from)
        time_to = None if is_day_text(raw_to) else parse_instant(raw_to)
    except ValueError as exc:
        raise UsageError(f"--from/--to: {exc}") from None
    if time_from is not None and time_to is not None and time_from >= time_to:
        raise UsageError("--from must be before --to")
    if time_from is None and time_to is None and "today" not in (raw_from, raw_to) and raw_from > raw_to:
        raise UsageError("--from must be before --to (or the same day)")
    if opts["format"] not in ("jsonl", "csv"):
        raise UsageError("--format must be jsonl or csv")
    if not _db_exists(str(opts["db"])):
        raise Failed(f"database {opts['db']} does not exist")
    try:
        key = load_private_key(Path(opts["data_dir"]))
    except (KeyFileError, SyncError) as exc:
        raise Failed(str(exc)) from None
    out = Path(opts["out"])
    partial = out.with_name(f".{out.name}.partial")  # renamed to --out only once the manifest is written

    async def run(handle: BinaryIO) -> dict[str, Any]:
        async def sink(chunk: bytes) -> None:
            handle.write(chunk)

        store = await open_store(str(opts["db"]))
        try:
            if opts["hall"] and await store.halls.get_hall(str(opts["hall"])) is None:
                raise Failed(f"hall {opts['hall']} is not registered")
            rules = [h.day_rule for h in await store.halls.halls() if not opts["hall"] or h.id == opts["hall"]]
            try:
                start = time_from if time_from is not None else day_bound(raw_from, rules, now_micros(), end=False)
                stop = time_to if time_to is not None else day_bound(raw_to, rules, now_micros(), end=True)
            except DayRuleError as exc:
                raise UsageError(f"--from/--to: {exc}: give --hall or RFC 3339 instants") from None
            if start >= stop:
                raise UsageError("--from must be before --to")
            return await write_export(store, sink, fmt=str(opts["format"]), time_from=start, time_to=stop,
                                      key=key, generated_at=now_micros(), generated_by=audit.cli_actor(),
                                      hall=opts["hall"] or None)
        finally:
            await store.close()

    try:
        with open(partial, "wb") as handle:
            manifest = asyncio.run(run(handle))
        partial.replace(out)
    except OSError as exc:
        raise Failed(f"cannot write {out}: {exc.strerror}") from None
    except ExportError as exc:
        raise Failed(f"export failed: {exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    data = manifest["data"]
    print(f"wrote {out}: {data['events']} events of {len(manifest['halls'])} halls, {manifest['period']['from']} "
          f".. {manifest['period']['to']}")
    print(f"data sha256 {data['sha256']}; manifest signed by central {manifest['central']['fingerprint']}")
    return EXIT_OK


def cmd_export_verify(opts: dict[str, Any]) -> int:
    from .export_verify import verify_export

    trusted = None
    if opts["central_pub"]:
        try:
            trusted = public_key_from_pem(Path(opts["central_pub"]).read_bytes())
        except OSError as exc:
            raise Failed(f"cannot read {opts['central_pub']}: {exc.strerror}") from None
        except SyncError as exc:
            raise Failed(f"{opts['central_pub']}: {exc}") from None
    try:
        with open(opts["file"], "rb") as handle:
            report = verify_export(handle, central_public_key=trusted, allow_unsigned=bool(opts["allow_unsigned"]))
    except OSError as exc:
        raise Failed(f"cannot read {opts['file']}: {exc.strerror}") from None
    for line in report.checked:
        print(f"ok: {line}")
    for line in report.notes:
        print(f"note: {line}")
    for line in report.problems:
        print(f"FAILED: {line}", file=sys.stderr)
    if not report.ok:
        raise Failed(f"{opts['file']} is NOT a verified export: {len(report.problems)} problem(s) above")
    print(f"verified: {opts['file']} is intact and holds the halls' own events")
    return EXIT_OK


def cmd_db_migrate(opts: dict[str, Any]) -> int:
    from .store.migrate import MigrationMismatch, migrate_sqlite_to_postgres, sqlite_source

    target = str(opts["to"])
    if not is_postgres_url(target):
        raise UsageError("db migrate: --to must be a postgresql://user@host/db URL")
    source = sqlite_source(str(opts["from"]))
    try:
        report = asyncio.run(migrate_sqlite_to_postgres(source, target))
    except MigrationMismatch as exc:
        for line in exc.report.lines():
            print(line)
        raise
    for line in report.lines():
        print(line)
    print(f"migrated {source} to PostgreSQL: {sum(report.rows.values())} rows in {len(report.rows)} tables, "
          f"{report.rows.get('events', 0)} events, all equal ({report.seconds:.1f} s); serve with that URL as --db now")
    return EXIT_OK


def _db_exists(db: str) -> bool:
    """Whether a SQLite file is there (a PostgreSQL database is checked by connecting to it)."""
    return is_postgres_url(db) or Path(sqlite_path(db)).exists()


def _existing_db(opts: dict[str, Any]) -> str:
    db = str(opts["db"])
    if not _db_exists(db):
        raise Failed(f"database {db} does not exist (halls add creates it)")
    return db


def cmd_apikeys_list(opts: dict[str, Any]) -> int:
    async def run(store: Repositories) -> int:
        keys = await store.halls.api_keys()
        now = now_micros()
        rows = [{"id": k.id, "name": k.name, "role": k.role, "halls": None if k.halls is None else list(k.halls),
                 "created_at": _iso(k.created_at), "expires_at": None if k.expires_at is None else _iso(k.expires_at),
                 "revoked_at": None if k.revoked_at is None else _iso(k.revoked_at), "state": k.state(now)}
                for k in keys]
        if opts["json"]:
            print(json.dumps(rows, indent=2))
            return EXIT_OK
        if not rows:
            print("no API keys")
        for r in rows:
            halls = ",".join(r["halls"]) if r["halls"] else "all halls"
            until = f"expires {r['expires_at']}" if r["expires_at"] else "no expiry"
            print(f"{r['id']}  {r['state']:<7}  {r['role']:<10}  {halls}  {until}  {r['name'] or '(no name)'}")
        return EXIT_OK

    return _on_store(_existing_db(opts), run)


def cmd_apikeys_revoke(opts: dict[str, Any]) -> int:
    async def run(store: Repositories) -> int:
        now = now_micros()
        try:
            before = await revoke_api_key(store.halls, str(opts["id"]), now=now)
        except KeyNotFound as exc:
            raise Failed(str(exc)) from None
        if before.revoked_at is not None:
            print(f"API key {before.id} was already revoked at {_iso(before.revoked_at)}")
            return EXIT_OK
        await audit.apikey_revoked(store.audit, actor=audit.cli_actor(), time=now, before=before)
        print(f"revoked API key {before.id} ({before.name or 'no name'}, {before.role}): refused from now on")
        return EXIT_OK

    return _on_store(_existing_db(opts), run)


def cmd_apikeys_rotate(opts: dict[str, Any]) -> int:
    async def run(store: Repositories) -> int:
        now = now_micros()
        try:
            before, key = await rotate_api_key(store.halls, str(opts["id"]), now=now)
        except KeyNotFound as exc:
            raise Failed(str(exc)) from None
        await audit.apikey_rotated(store.audit, actor=audit.cli_actor(), time=now, before=before)
        print(f"id: {before.id}")
        print(f"rotated: the old secret is refused from now on ({before.name or 'no name'}, {before.role})")
        print("the key is shown once; store it now:")
        print(key)
        return EXIT_OK

    return _on_store(_existing_db(opts), run)


def _key_fingerprint(pem: str) -> str | None:
    try:
        return fingerprint(public_key_from_pem(pem.encode()))
    except SyncError:  # a stored key that no longer parses: the audit says "unknown" rather than fail
        return None


def _iso(micros: int) -> str:
    return dt.datetime.fromtimestamp(micros / 1_000_000, dt.UTC).isoformat(timespec="seconds")


COMMANDS: dict[str, Callable[[dict[str, Any]], int]] = {
    "keys.init": cmd_keys_init,
    "halls.add": cmd_halls_add,
    "halls.list": cmd_halls_list,
    "halls.set": cmd_halls_set,
    "halls.disable": cmd_halls_state("disable"),
    "halls.enable": cmd_halls_state("enable"),
    "halls.remove": cmd_halls_state("remove"),
    "apikeys.create": cmd_apikeys_create,
    "apikeys.list": cmd_apikeys_list,
    "apikeys.revoke": cmd_apikeys_revoke,
    "apikeys.rotate": cmd_apikeys_rotate,
    "export.write": cmd_export_write,
    "export.verify": cmd_export_verify,
    "db.migrate": cmd_db_migrate,
    "serve": cmd_serve,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = getattr(args, "command", None)
    if command is None:
        parser.print_help()
        return EXIT_OK
    action = getattr(args, "action", None)
    name = command if command == "serve" else f"{command}.{action}"
    if name not in COMMANDS:
        getattr(args, "_help", parser.print_help)(sys.stderr)
        return EXIT_USAGE
    try:
        opts = resolve(name, args)
        setup_logging(str(opts.get("log_level", "warning")))
        return COMMANDS[name](opts)
    except UsageError as exc:
        print(f"hall-central: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (Failed, StoreError) as exc:
        if isinstance(exc, BackendUnavailable):
            print(f"hall-central: {exc}", file=sys.stderr)
            return EXIT_USAGE
        print(f"hall-central: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
