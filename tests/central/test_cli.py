"""``hall-central`` as operators run it: subprocesses, real files, exit codes and messages.

The tests that take ``db_url`` run on a SQLite file and on PostgreSQL. The others stay on a SQLite file:
where ``--db`` comes from (config file, environment: the file made is the observable), a bad timezone
making no file, argument checks made before any database is opened, and — for CI time, each being
ten-odd CLI runs — the hall lifecycle and gaming-day flows, whose store side runs on both backends in
test_api.py, test_ingest.py and test_gaming_days.py."""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from protocols.sync import generate_private_key, public_key_to_pem

from .conftest import query

BIN = Path(sys.executable).with_name("hall-central")


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args], cwd=cwd, capture_output=True, text=True, timeout=30)


def pub(path: Path) -> Path:
    path.write_bytes(public_key_to_pem(generate_private_key().public_key()))
    return path


@pytest.mark.parametrize("command", [[], ["keys", "init"], ["halls", "add"], ["halls", "list"], ["halls", "set"],
                                     ["apikeys", "create"], ["serve"]])
def test_every_command_has_help(tmp_path: Path, command: list[str]) -> None:
    done = run(*command, "--help", cwd=tmp_path)
    assert done.returncode == 0 and "usage: hall-central" in done.stdout


def test_keys_init_writes_a_private_key_only_owner_can_read(tmp_path: Path) -> None:
    done = run("keys", "init", "--data-dir", "data", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    key, public = tmp_path / "data" / "central.key", tmp_path / "data" / "central.pub"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in key.read_bytes() and b"BEGIN PUBLIC KEY" in public.read_bytes()
    before = key.read_bytes()
    again = run("keys", "init", "--data-dir", "data", cwd=tmp_path)
    assert again.returncode == 1 and "--force" in again.stderr and key.read_bytes() == before
    forced = run("keys", "init", "--data-dir", "data", "--force", cwd=tmp_path)
    assert forced.returncode == 0 and key.read_bytes() != before
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_halls_add_list_and_replace(tmp_path: Path, db_url: str) -> None:
    db = db_url
    first, second = pub(tmp_path / "a.pub"), pub(tmp_path / "b.pub")
    added = run("halls", "add", "hall-01", "--public-key", str(first), "--db", db, cwd=tmp_path)
    assert added.returncode == 0 and "added hall hall-01" in added.stdout, added.stderr
    assert "hall-01:$7$" in added.stdout   # the broker's password-file line of a new account
    again = run("halls", "add", "hall-01", "--public-key", str(first), "--db", db, cwd=tmp_path)
    # issue 16: "unchanged" used to print a fresh broker password that matched nothing the hall had
    assert again.returncode == 0 and "unchanged" in again.stdout and "$7$" not in again.stdout
    assert "broker account unchanged" in again.stdout
    refused = run("halls", "add", "hall-01", "--public-key", str(second), "--db", db, cwd=tmp_path)
    assert refused.returncode == 1 and "--replace" in refused.stderr
    replaced = run("halls", "add", "hall-01", "--public-key", str(second), "--db", db, "--replace",
                   cwd=tmp_path)
    assert replaced.returncode == 0 and "replaced" in replaced.stdout
    assert query(db, "SELECT kind, hall FROM integration_log") == [("manual", "hall-01")]
    listed = run("halls", "list", "--db", db, "--json", cwd=tmp_path)
    rows = json.loads(listed.stdout)["rows"]
    assert [(r["id"], r["last_seq"]) for r in rows] == [("hall-01", 0)]
    assert "hall-01" in run("halls", "list", "--db", db, cwd=tmp_path).stdout


def test_a_halls_gaming_day_from_add_and_set(tmp_path: Path) -> None:
    key = pub(tmp_path / "a.pub")
    bad = run("halls", "add", "hall-01", "--public-key", str(key), "--db", "c.db", "--timezone", "Mars/Base",
              cwd=tmp_path)
    assert bad.returncode == 2 and "Mars/Base" in bad.stderr and not (tmp_path / "c.db").exists()
    added = run("halls", "add", "hall-01", "--public-key", str(key), "--db", "c.db", "--timezone", "Europe/Kyiv",
                cwd=tmp_path)
    assert added.returncode == 0 and "gaming day Europe/Kyiv from 00:00 (version 1)" in added.stdout, added.stderr
    moved = run("halls", "set", "hall-01", "--db", "c.db", "--gaming-day-start", "06:00", cwd=tmp_path)
    assert moved.returncode == 0 and "Europe/Kyiv from 06:00 (version 2)" in moved.stdout, moved.stderr
    same = run("halls", "set", "hall-01", "--db", "c.db", "--timezone", "Europe/Kyiv", cwd=tmp_path)
    assert same.returncode == 0 and "(unchanged)" in same.stdout
    assert run("halls", "set", "hall-01", "--db", "c.db", cwd=tmp_path).returncode == 2
    assert run("halls", "set", "hall-01", "--db", "c.db", "--gaming-day-start", "6am", cwd=tmp_path).returncode == 2
    assert run("halls", "set", "nowhere", "--db", "c.db", "--timezone", "UTC", cwd=tmp_path).returncode == 1
    rows = json.loads(run("halls", "list", "--db", "c.db", "--json", cwd=tmp_path).stdout)["rows"]
    assert [(r["timezone"], r["gaming_day_start"]) for r in rows] == [("Europe/Kyiv", "06:00")]
    with sqlite3.connect(tmp_path / "c.db") as con:
        audited = con.execute("SELECT action, before, after FROM audit WHERE action = 'hall.settings.update'"
                              " ORDER BY id").fetchall()
    assert [json.loads(after)["gaming_day_start"] for _, _, after in audited] == ["00:00", "06:00"]


def test_halls_set_forget_presence_unpins_a_hall_a_forged_status_held_offline(tmp_path: Path, db_url: str) -> None:
    """Before statuses were signed, {"online":false,"session":2**63-1} pinned a hall offline for good; with
    the session-jump bound the pin would outlive the fix, so an operator can clear it."""
    key, db = pub(tmp_path / "a.pub"), db_url
    assert run("halls", "add", "hall-01", "--public-key", str(key), "--db", db, cwd=tmp_path).returncode == 0
    query(db, f"UPDATE halls SET online = 0, session = {2**63 - 1}, status_at = 1 WHERE id = 'hall-01'")
    done = run("halls", "set", "hall-01", "--forget-presence", "--db", db, cwd=tmp_path)
    assert done.returncode == 0 and "presence forgotten" in done.stdout, done.stderr
    assert query(db, "SELECT online, session, status_at FROM halls") == [(None, None, None)]
    ((before,),) = query(db, "SELECT before FROM audit WHERE action = 'hall.presence.forget'")
    assert json.loads(before) == {"online": False, "session": 2**63 - 1}


def test_halls_disable_enable_and_remove_keep_the_data_and_are_audited(tmp_path: Path) -> None:
    key = pub(tmp_path / "a.pub")
    assert run("halls", "add", "hall-01", "--public-key", str(key), "--db", "c.db", cwd=tmp_path).returncode == 0

    def state() -> str:
        (row,) = json.loads(run("halls", "list", "--db", "c.db", "--json", cwd=tmp_path).stdout)["rows"]
        return row["state"]

    done = run("halls", "disable", "hall-01", "--db", "c.db", cwd=tmp_path)
    assert done.returncode == 0 and "active → disabled" in done.stdout and state() == "disabled"
    assert "already disabled" in run("halls", "disable", "hall-01", "--db", "c.db", cwd=tmp_path).stdout
    assert run("halls", "enable", "hall-01", "--db", "c.db", cwd=tmp_path).returncode == 0 and state() == "active"
    removed = run("halls", "remove", "hall-01", "--db", "c.db", cwd=tmp_path)
    assert removed.returncode == 0 and "mosquitto_passwd -D" in removed.stdout and state() == "removed"
    refused = run("halls", "enable", "hall-01", "--db", "c.db", cwd=tmp_path)
    assert refused.returncode == 1 and "--replace" in refused.stderr
    again = run("halls", "add", "hall-01", "--public-key", str(key), "--db", "c.db", cwd=tmp_path)
    assert again.returncode == 1 and "removed" in again.stderr
    back = run("halls", "add", "hall-01", "--public-key", str(key), "--db", "c.db", "--replace", cwd=tmp_path)
    assert back.returncode == 0 and state() == "active"
    assert run("halls", "remove", "nowhere", "--db", "c.db", cwd=tmp_path).returncode == 1
    with sqlite3.connect(tmp_path / "c.db") as con:
        actions = [a for (a,) in con.execute("SELECT action FROM audit ORDER BY id")]
    assert actions == ["hall.add", "hall.disable", "hall.enable", "hall.remove", "hall.key.replace"]


@pytest.mark.parametrize(("hall", "key_text", "message"), [
    ("hall/01", None, "outside"),
    ("hall+", None, "outside"),
    ("hall-01", "not a key", "PEM"),
])
def test_halls_add_refuses_bad_ids_and_keys(tmp_path: Path, hall: str, key_text: str | None, message: str) -> None:
    key = pub(tmp_path / "k.pub")
    if key_text is not None:
        key.write_text(key_text)
    done = run("halls", "add", hall, "--public-key", str(key), "--db", "c.db", cwd=tmp_path)
    assert done.returncode != 0 and message in done.stderr


def test_apikeys_create_prints_the_key_last_and_stores_only_a_hash(tmp_path: Path, db_url: str) -> None:
    db = db_url
    done = run("apikeys", "create", "--role", "operator", "--db", db, "--halls", "hall-01,hall-02",
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip().splitlines()[-1]
    assert key.startswith("hsk_")
    secret = key.split("_", 2)[2]   # hsk_<id>_<secret>; the secret itself may hold "_"
    for path in tmp_path.glob("central.db*"):       # SQLite: the file and its WAL
        assert secret.encode() not in path.read_bytes()
    for table in ("api_keys", "audit"):
        assert secret not in repr(query(db, f"SELECT * FROM {table}"))
    ((role, halls),) = query(db, "SELECT role, halls FROM api_keys")
    assert role == "operator" and json.loads(halls) == ["hall-01", "hall-02"]
    bad = run("apikeys", "create", "--role", "root", "--db", db, cwd=tmp_path)
    assert bad.returncode == 2


def test_apikeys_create_refuses_a_bad_name_or_lifetime_and_list_shows_the_keys(tmp_path: Path) -> None:
    for flags, message in ((["--expires", "2027-01-01"], "lifetime like 12h"), (["--expires", "0d"], "lifetime"),
                           (["--name", "x" * 101], "at most 100")):
        bad = run("apikeys", "create", "--role", "viewer", "--db", "c.db", *flags, cwd=tmp_path)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
    done = run("apikeys", "create", "--role", "viewer", "--db", "c.db", "--name", "  Anna,  floor ", "--expires",
               "12h", cwd=tmp_path)
    assert done.returncode == 0 and "name: Anna, floor" in done.stdout, done.stderr
    key_id = done.stdout.split("id: ", 1)[1].split()[0]
    listed = run("apikeys", "list", "--db", "c.db", cwd=tmp_path)
    assert listed.returncode == 0 and key_id in listed.stdout and "active" in listed.stdout
    assert "Anna, floor" in listed.stdout and "hsk_" not in listed.stdout
    missing = run("apikeys", "revoke", "0" * 16, "--db", "c.db", cwd=tmp_path)
    assert missing.returncode == 1 and "no API key" in missing.stderr


def test_a_technician_key_must_name_its_halls(tmp_path: Path) -> None:
    """design.md: a technician reads the devices and diagnostics of its halls, so no network-wide one."""
    refused = run("apikeys", "create", "--role", "technician", "--db", "c.db", cwd=tmp_path)
    assert refused.returncode == 2 and "technician key needs --halls" in refused.stderr
    assert "hsk_" not in refused.stdout
    done = run("apikeys", "create", "--role", "technician", "--halls", "hall-01", "--db", "c.db", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "halls: hall-01" in done.stdout
    with sqlite3.connect(tmp_path / "c.db") as con:
        assert con.execute("SELECT role, halls FROM api_keys").fetchall() == [("technician", '["hall-01"]')]


def test_config_file_holds_options_and_flags_win(tmp_path: Path) -> None:
    (tmp_path / "central.toml").write_text('db = "from-config.db"\n[apikeys.create]\nrole = "viewer"\n')
    done = run("apikeys", "create", "--config", "central.toml", cwd=tmp_path)
    assert done.returncode == 0 and "role: viewer" in done.stdout, done.stderr
    assert (tmp_path / "from-config.db").exists()
    flagged = run("apikeys", "create", "--config", "central.toml", "--role", "admin", "--db", "flag.db", cwd=tmp_path)
    assert flagged.returncode == 0 and "role: admin" in flagged.stdout and (tmp_path / "flag.db").exists()
    missing = run("apikeys", "create", "--role", "admin", cwd=tmp_path)
    assert missing.returncode == 2 and "--db" in missing.stderr


def test_the_environment_sits_between_the_config_file_and_the_flags(tmp_path: Path) -> None:
    import os

    def with_env(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN), *args], cwd=tmp_path, capture_output=True, text=True, timeout=30,
                              env={**os.environ, **env})

    (tmp_path / "central.toml").write_text('db = "from-config.db"\n[apikeys.create]\nrole = "viewer"\n')
    done = with_env("apikeys", "create", "--config", "central.toml", HALLSYNC_CENTRAL_DB="from-env.db",
                    HALLSYNC_CENTRAL_ROLE="operator")
    assert done.returncode == 0 and "role: operator" in done.stdout, done.stderr
    assert (tmp_path / "from-env.db").exists() and not (tmp_path / "from-config.db").exists()
    done = with_env("apikeys", "create", "--config", "central.toml", "--role", "admin",
                    HALLSYNC_CENTRAL_ROLE="operator")
    assert done.returncode == 0 and "role: admin" in done.stdout, done.stderr
    bad = with_env("serve", "--config", "central.toml", HALLSYNC_CENTRAL_LOGIN_FAILURES="lots")
    assert bad.returncode == 2
    assert "environment variable HALLSYNC_CENTRAL_LOGIN_FAILURES: bad value 'lots'" in bad.stderr
    # an acting flag never comes from the environment: a second key for hall-01 still needs --replace
    assert with_env("halls", "add", "hall-01", "--public-key", str(pub(tmp_path / "a.pub")),
                    "--db", "h.db").returncode == 0
    again = with_env("halls", "add", "hall-01", "--public-key", str(pub(tmp_path / "b.pub")), "--db", "h.db",
                     HALLSYNC_CENTRAL_REPLACE="1")
    assert again.returncode == 1 and "--replace" in again.stderr


def test_an_unreachable_postgresql_url_gives_a_clear_error(tmp_path: Path) -> None:
    key = pub(tmp_path / "k.pub")
    for args in (["halls", "add", "h1", "--public-key", str(key)], ["apikeys", "create", "--role", "admin"],
                 ["halls", "list"]):
        done = run(*args, "--db", "postgresql://central:pw@127.0.0.1:1/hallsync", cwd=tmp_path)
        assert done.returncode == 1 and "cannot connect to PostgreSQL" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and ":pw@" not in done.stderr


def test_serve_without_central_key_says_how_to_make_one(tmp_path: Path) -> None:
    done = run("serve", "--data-dir", "d", "--db", "c.db", "--mqtt", "mqtt://127.0.0.1:1883", cwd=tmp_path)
    assert done.returncode == 1 and "hall-central keys init" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_with_a_bad_http_address_is_a_usage_error(tmp_path: Path) -> None:
    done = run("serve", "--data-dir", "d", "--db", "c.db", "--mqtt", "mqtt://127.0.0.1:1883", "--http", "nope",
               cwd=tmp_path)
    assert done.returncode == 2 and "HOST:PORT" in done.stderr
