"""The audit trail as an auditor reads it: every change through the API or the CLI is one entry with who,
when, what, before and after; ``GET /audit`` by role and by hall scope; no secret ever lands in it."""

from __future__ import annotations

import getpass
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from central import audit
from central.api import PREFIX, build_app
from central.apikeys import create_api_key
from central.repos import Repositories
from central.repos.audit import AuditEntry
from central.repos.halls import ROLES
from protocols.sync import fingerprint, generate_private_key, public_key_to_pem
from tests.keys import key_scope

from .builders import T0, FakeHall
from .conftest import register

BIN = Path(sys.executable).with_name("hall-central")
SECOND = 1_000_000


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


class Publisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    async def __call__(self, topic_name: str, payload: bytes) -> None:
        self.sent.append((topic_name, payload))


class Client:
    def __init__(self, client: TestClient, store: Repositories, clock: Clock) -> None:
        self.client, self.store, self.clock = client, store, clock
        self.keys: dict[tuple[str, tuple[str, ...] | None], tuple[str, str]] = {}

    async def key(self, role: str = "admin", halls: tuple[str, ...] | None = None) -> tuple[str, str]:
        """(key id, key)"""
        if (role, halls) not in self.keys:
            scope = await key_scope(self.store, role, halls)
            self.keys[(role, halls)] = await create_api_key(self.store.halls, role, scope, now=T0)
        return self.keys[(role, halls)]

    async def request(self, method: str, route: str, *, role: str = "admin", halls: tuple[str, ...] | None = None,
                      json: Any = None, **query: Any) -> tuple[int, Any]:
        _, key = await self.key(role, halls)
        response = await self.client.request(method, PREFIX + route, json=json,
                                             headers={"Authorization": f"Bearer {key}"},
                                             params={k: str(v) for k, v in query.items()})
        assert response.content_type == "application/json"
        return response.status, await response.json()


@pytest.fixture
async def api(store: Repositories) -> AsyncIterator[Client]:
    clock = Clock()
    app = build_app(store, currency="EUR", clock=clock, command_publisher=Publisher(),
                    central_key=generate_private_key())
    async with TestClient(TestServer(app)) as client:
        yield Client(client, store, clock)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args], cwd=cwd, capture_output=True, text=True, timeout=30)


def audit_rows(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT time, actor, action, target, before, after FROM audit ORDER BY id").fetchall()


# --- every change path writes one entry -----------------------------------------------------------
async def test_each_command_sent_is_one_entry_naming_the_key_the_time_and_the_command(
        api: Client, store: Repositories) -> None:
    hall = FakeHall("hall-a", seed=1)
    await register(store, hall)
    key_id, _ = await api.key("operator")
    ids = []
    for n, (device, action) in enumerate((("egm-001", "disable_machine"), ("egm-002", "enable_machine"),
                                          ("egm-001", "enable_machine"))):
        api.clock.now = T0 + n * SECOND
        status, body = await api.request("POST", "/commands", role="operator",
                                         json={"hall": "hall-a", "device": device, "action": action})
        assert status == 202, body
        ids.append(body["id"])

    entries = await store.audit.audit(action="command.create")
    assert [e.after["id"] for e in entries] == ids  # exactly one entry per command, in order
    assert len(await store.audit.audit()) == 3  # and nothing else was written for them
    first = entries[0]
    assert first.actor == key_id and first.time == T0
    assert first.target == "hall/hall-a/device/egm-001" and first.before is None
    assert first.after["action"] == "disable_machine" and first.after["hall"] == "hall-a"
    assert first.after["expires_at"] == T0 + 300 * SECOND and first.after["created_by"] == key_id
    assert entries[1].time == T0 + SECOND and entries[1].target == "hall/hall-a/device/egm-002"


async def test_a_refused_command_writes_no_entry(api: Client, store: Repositories) -> None:
    status, _ = await api.request("POST", "/commands", json={"hall": "nowhere", "device": "egm-001",
                                                             "action": "disable_machine"})
    assert status == 400
    assert await store.audit.audit() == []


def test_cli_hall_add_replace_and_api_key_are_audited_without_secrets(tmp_path: Path) -> None:
    first, second = generate_private_key().public_key(), generate_private_key().public_key()
    (tmp_path / "a.pub").write_bytes(public_key_to_pem(first))
    (tmp_path / "b.pub").write_bytes(public_key_to_pem(second))
    actor = f"cli:{getpass.getuser()}"
    db = tmp_path / "c.db"

    assert cli("halls", "add", "hall-01", "--public-key", "a.pub", "--db", "c.db", cwd=tmp_path).returncode == 0
    assert cli("halls", "add", "hall-01", "--public-key", "a.pub", "--db", "c.db", cwd=tmp_path).returncode == 0
    refused = cli("halls", "add", "hall-01", "--public-key", "b.pub", "--db", "c.db", cwd=tmp_path)
    assert refused.returncode == 1
    replaced = cli("halls", "add", "hall-01", "--public-key", "b.pub", "--db", "c.db", "--replace", cwd=tmp_path)
    assert replaced.returncode == 0, replaced.stderr
    created = cli("apikeys", "create", "--role", "regulator", "--halls", "hall-01", "--db", "c.db", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    key_id = key.split("_")[1]

    rows = audit_rows(db)
    # unchanged re-add and the refused replacement changed nothing, so they wrote nothing
    assert [(r[1], r[2], r[3]) for r in rows] == [
        (actor, "hall.add", "hall/hall-01"), (actor, "hall.key.replace", "hall/hall-01"),
        (actor, "apikey.create", f"apikey/{key_id}")]
    added, swapped, apikey = ({"time": r[0], "before": r[4], "after": r[5]} for r in rows)
    assert added["before"] is None and fingerprint(first) in added["after"]
    assert fingerprint(first) in swapped["before"] and fingerprint(second) in swapped["after"]
    assert apikey["before"] is None
    assert '"role":"regulator"' in apikey["after"] and '"halls":["hall-01"]' in apikey["after"]
    with sqlite3.connect(db) as con:
        secret_hash = con.execute("SELECT secret_hash FROM api_keys").fetchone()[0]
        everything = " ".join(str(v) for row in con.execute("SELECT * FROM audit") for v in row)
    assert key.split("_", 2)[2] not in everything and secret_hash not in everything
    assert all(r[0] > T0 for r in rows)  # real wall-clock times


# --- GET /audit -----------------------------------------------------------------------------------
@pytest.mark.parametrize("role", ROLES)
async def test_only_admin_and_regulator_read_the_audit(api: Client, role: str) -> None:
    status, body = await api.request("GET", "/audit", role=role)
    if role in ("admin", "regulator"):
        assert status == 200 and body == {"rows": [], "next_after_id": None}
    else:
        assert status == 403 and body["error"]["code"] == "forbidden"


async def test_no_key_is_401(api: Client) -> None:
    response = await api.client.get(PREFIX + "/audit")
    assert response.status == 401


async def _entry(store: Repositories, time: int, actor: str, action: str, target: str, after: Any = None) -> int:
    return await store.audit.add_audit(AuditEntry(time=time, actor=actor, action=action, target=target, after=after))


async def test_filters_and_pages_oldest_first(api: Client, store: Repositories) -> None:
    for n in range(7):
        await _entry(store, T0 + n * SECOND, "cli:ops" if n % 2 else "k1", "hall.add" if n < 3 else "command.create",
                     f"hall/h{n}", after={"n": n})
    status, body = await api.request("GET", "/audit", role="regulator", limit=3)
    assert status == 200
    assert [r["after"]["n"] for r in body["rows"]] == [0, 1, 2]
    row = body["rows"][0]
    assert row["time"] == "2026-01-01T00:00:00.000000Z" and row["time_us"] == T0 and row["hall"] == "h0"
    assert row["actor"] == "k1" and row["action"] == "hall.add" and row["before"] is None
    _, page2 = await api.request("GET", "/audit", role="regulator", limit=3, after_id=body["next_after_id"])
    _, page3 = await api.request("GET", "/audit", role="regulator", limit=3, after_id=page2["next_after_id"])
    assert [r["after"]["n"] for r in page2["rows"] + page3["rows"]] == [3, 4, 5, 6]
    assert page3["next_after_id"] is None

    _, by_actor = await api.request("GET", "/audit", actor="cli:ops")
    assert [r["after"]["n"] for r in by_actor["rows"]] == [1, 3, 5]
    _, by_action = await api.request("GET", "/audit", action="hall.add", **{"from": T0 + SECOND})
    assert [r["after"]["n"] for r in by_action["rows"]] == [1, 2]
    _, window = await api.request("GET", "/audit", **{"from": "2026-01-01T00:00:02Z", "to": "2026-01-01T00:00:04Z"})
    assert [r["after"]["n"] for r in window["rows"]] == [2, 3]


@pytest.mark.parametrize("query", [{"limit": "0"}, {"limit": "1001"}, {"after_id": "-1"}, {"from": "yesterday"},
                                   {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}])
async def test_bad_parameters_are_400(api: Client, query: dict[str, str]) -> None:
    status, body = await api.request("GET", "/audit", **query)
    assert status == 400 and body["error"]["code"] == "bad_request"


async def test_a_hall_scoped_key_sees_only_entries_of_its_halls(api: Client, store: Repositories) -> None:
    await _entry(store, T0, "k", "hall.add", "hall/a", after={"n": "a"})
    await _entry(store, T0, "k", "command.create", "hall/a/device/egm-1", after={"n": "a/egm"})
    await _entry(store, T0, "k", "hall.add", "hall/ab", after={"n": "ab"})  # a prefix of "ab" is not hall a
    await _entry(store, T0, "k", "command.create", "hall/ab/device/egm-1", after={"n": "ab/egm"})
    await _entry(store, T0, "k", "apikey.create", "apikey/0123", after={"n": "key"})
    await _entry(store, T0, "k", "catalog.game.update", "catalog/game/g1", after={"n": "game"})
    await _entry(store, T0, "k", "alert.ack", "hall/b/alert/7", after={"n": "b"})

    async def seen(halls: tuple[str, ...] | None, **query: Any) -> list[str]:
        status, body = await api.request("GET", "/audit", role="regulator", halls=halls, **query)
        assert status == 200, body
        return [r["after"]["n"] for r in body["rows"]]

    assert await seen(("a",)) == ["a", "a/egm"]
    assert await seen(("a", "b")) == ["a", "a/egm", "b"]
    assert await seen(None) == ["a", "a/egm", "ab", "ab/egm", "key", "game", "b"]
    assert await seen(None, hall="ab") == ["ab", "ab/egm"]
    assert await seen(("a", "b"), hall="b") == ["b"]
    status, body = await api.request("GET", "/audit", role="regulator", halls=("a",), hall="b")
    assert status == 403 and "outside" in body["error"]["message"]
    # the pure rule agrees with the store's query
    assert [audit.target_hall(t) for t in ("hall/a", "hall/a/device/x", "apikey/1", "hall/")] == ["a", "a", None, None]


def test_cli_actor_names_the_os_user() -> None:
    assert audit.cli_actor() == f"cli:{getpass.getuser()}"
