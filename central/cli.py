"""``hall-central``: the HQ server's command line.

Every option can also come from ``--config FILE`` (TOML): top-level keys (e.g. ``db``, ``data_dir``)
apply to every command, a ``[halls.add]``-style table to that command only, and a flag on the command
line wins over both. Results go to stdout (the API key is the last line of ``apikeys create``); logs
and errors go to stderr. Exit codes: 0 done, 1 refused or failed (message says why), 2 usage error or
not available yet.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import tomllib
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from protocols.sync import SyncError, check_hall_id, fingerprint, public_key_from_pem

from .apikeys import create_api_key
from .keyfiles import KeyFileError, init_keys
from .logging_setup import setup_logging
from .store import ROLES, BackendUnavailable, StoreError, open_store, sqlite_path
from .timeutil import now_micros

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# Per command: option defaults (None = no default) and which options must end up set.
DEFAULTS: dict[str, dict[str, Any]] = {
    "keys.init": {"data_dir": None, "force": False},
    "halls.add": {"public_key": None, "db": None, "replace": False},
    "halls.list": {"db": None, "json": False},
    "apikeys.create": {"role": None, "db": None, "halls": None},
    "serve": {"data_dir": None, "db": None, "mqtt": None, "http": "127.0.0.1:8080", "currency": "EUR",
              "share_group": "central", "client_id": "hallsync-central"},
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "keys.init": ("data_dir",),
    "halls.add": ("public_key", "db"),
    "halls.list": ("db",),
    "apikeys.create": ("role", "db"),
    "serve": ("data_dir", "db", "mqtt"),
}
S = argparse.SUPPRESS


class UsageError(Exception):
    """Bad or missing options (exit 2)."""


class Failed(Exception):
    """The command was understood but refused or failed (exit 1)."""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", default=S, help="TOML file holding any of these options (flags win)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default=S,
                   help="level of central's own logs on stderr (default warning)")


def _db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=S, metavar="DB",
                   help="SQLite database file (created if missing); a postgresql:// URL is not supported yet")


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
    create.add_argument("--halls", default=S, metavar="H1,H2", help="limit the key to these halls (default: all)")

    serve = sub.add_parser("serve", help="ingest (MQTT) and the HTTP API",
                           description="Run ingest (a shared MQTT subscription to every hall's batches and status) "
                                       "and the HTTP API under /api/v1. Several processes may serve one database "
                                       "(give each its own --client-id). Stops cleanly on SIGTERM/Ctrl-C.")
    _common(serve)
    serve.add_argument("--data-dir", default=S, metavar="DIR", help="directory holding central.key")
    _db(serve)
    serve.add_argument("--mqtt", default=S, metavar="URL", help="broker URL, e.g. mqtt://127.0.0.1:1883")
    serve.add_argument("--http", default=S, metavar="HOST:PORT", help="HTTP listen address (default 127.0.0.1:8080)")
    serve.add_argument("--currency", default=S, help="the network's ISO 4217 currency for reports (default EUR)")
    serve.add_argument("--share-group", default=S, help="MQTT shared-subscription group (default central)")
    serve.add_argument("--client-id", default=S, help="MQTT client id, unique per process (default hallsync-central)")
    return parser


def _load_config(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise UsageError(f"cannot read config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config {path} is not valid TOML: {exc}") from None


def _normalise(table: dict[str, Any]) -> dict[str, Any]:
    return {key.replace("-", "_"): value for key, value in table.items() if not isinstance(value, dict)}


def resolve(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Defaults < config top level < config ``[command.action]`` table < flags; then check required."""
    options: dict[str, Any] = {"log_level": "warning", **DEFAULTS[name]}
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "action", "_help")}
    config_path = flags.get("config")
    if config_path is not None:
        config = _load_config(config_path)
        options.update({k: v for k, v in _normalise(config).items() if k in options})
        table: Any = config
        for part in name.split("."):
            table = table.get(part, {}) if isinstance(table, dict) else {}
        if isinstance(table, dict):
            options.update({k: v for k, v in _normalise(table).items() if k in options})
    options.update(flags)
    missing = [key for key in REQUIRED[name] if options.get(key) in (None, "")]
    if missing:
        names = ", ".join("--" + key.replace("_", "-") for key in missing)
        raise UsageError(f"{name.replace('.', ' ')}: missing {names} (as a flag or in --config)")
    return options


def _run(coro: Callable[[], Coroutine[Any, Any, int]]) -> int:
    return asyncio.run(coro())


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

    async def run() -> int:
        store = await open_store(str(opts["db"]))
        try:
            outcome = await store.add_hall(hall, pem.decode("ascii").strip() + "\n", now=now_micros(),
                                           replace=bool(opts["replace"]))
        finally:
            await store.close()
        print(f"{outcome} hall {hall} ({fingerprint(key)})")
        return EXIT_OK

    return _run(run)


def cmd_halls_list(opts: dict[str, Any]) -> int:
    if not Path(sqlite_path(str(opts["db"]))).exists():
        raise Failed(f"database {opts['db']} does not exist (halls add creates it)")

    async def run() -> int:
        store = await open_store(str(opts["db"]))
        try:
            halls = await store.halls()
        finally:
            await store.close()
        rows = [{"id": h.id, "key": fingerprint(public_key_from_pem(h.public_key_pem.encode())),
                 "added_at": _iso(h.added_at), "last_seq": h.last_seq, "last_hash": h.last_hash} for h in halls]
        if opts["json"]:
            print(json.dumps({"rows": rows}, indent=2))
        elif not rows:
            print("no halls registered")
        else:
            print(f"{'ID':24} {'KEY':26} {'LAST SEQ':>10}  ADDED")
            for r in rows:
                print(f"{r['id']:24} {r['key']:26} {r['last_seq']:>10}  {r['added_at']}")
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
    except SyncError as exc:
        raise UsageError(f"--halls: {exc}") from None

    async def run() -> int:
        store = await open_store(str(opts["db"]))
        try:
            key_id, key = await create_api_key(store, opts["role"], halls, now=now_micros())
        finally:
            await store.close()
        print(f"id: {key_id}")
        print(f"role: {opts['role']}")
        print(f"halls: {','.join(halls) if halls else 'all'}")
        print("the key is shown once; store it now:")
        print(key)
        return EXIT_OK

    return _run(run)


def cmd_serve(opts: dict[str, Any]) -> int:
    from .keyfiles import KeyFileError
    from .server import ServerConfig, parse_http, run_forever

    try:
        host, port = parse_http(str(opts["http"]))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    config = ServerConfig(data_dir=Path(opts["data_dir"]), db=str(opts["db"]), mqtt=str(opts["mqtt"]),
                          http_host=host, http_port=port, currency=str(opts["currency"]),
                          share_group=str(opts["share_group"]), client_id=str(opts["client_id"]))
    try:
        run_forever(config)
    except KeyFileError as exc:
        raise Failed(str(exc)) from None
    except ValueError as exc:  # a bad broker URL
        raise UsageError(str(exc)) from None
    except OSError as exc:  # the HTTP port is taken, the DB directory is missing…
        raise Failed(f"cannot serve: {exc}") from None
    return EXIT_OK


def _iso(micros: int) -> str:
    return dt.datetime.fromtimestamp(micros / 1_000_000, dt.UTC).isoformat(timespec="seconds")


COMMANDS: dict[str, Callable[[dict[str, Any]], int]] = {
    "keys.init": cmd_keys_init,
    "halls.add": cmd_halls_add,
    "halls.list": cmd_halls_list,
    "apikeys.create": cmd_apikeys_create,
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
