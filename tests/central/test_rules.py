"""Network-wide rules: disable/enable a catalog game everywhere it is, and max-bet limits checked against
what machines report — commands signed and published (a fake publisher, and a real Mosquitto with a
fake agent answering), statuses aggregated, scopes, validation and the audit trail."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from central.api import build_app
from central.ingest import Ingestor
from central.repos import Repositories
from central.service import IngestService, ServiceConfig
from protocols.sync import decode_command, generate_private_key

from .builders import FakeHall
from .conftest import register
from .test_api import Api, ManualClock, _serve
from .test_catalog import identity, push, put, seed_catalog
from .test_commands import FakeAgent, _until


@pytest.fixture
async def api(store: Repositories) -> AsyncIterator[Api]:
    async for a in _serve(store):
        yield a


async def _floor(api: Api, store: Repositories, ingestor: Ingestor) -> None:
    """hall-a: egm-001 reports fruits (1) and poker (2); egm-002 reports fruits at 3 with a 500 max bet.
    hall-b: egm-001 has fruits placed at 4 (no identity yet); egm-002 poker placed at 1."""
    await seed_catalog(api)
    a, b = FakeHall("hall-a", seed=1), FakeHall("hall-b", seed=2)
    await register(store, a, b)
    a._append("egm-001", "device.status", identity([(1, "FF", "P00196", 1, 100), (2, "PK", "P00298", 1, 100)],
                                                   [1, 2]))
    a._append("egm-002", "device.status", identity([(3, "FF", "P00196", 50, 10)], [3]))
    await push(store, ingestor, a)
    await put(api, "/catalog/placements/hall-b/egm-001", {"games": [{"number": 4, "game": "fruits"}]})
    await put(api, "/catalog/placements/hall-b/egm-002", {"games": [{"number": 1, "game": "poker"}]})


def _sent(api: Api) -> list[tuple[str, str, str, str | None]]:
    assert api.publisher is not None and api.central_key is not None
    out = []
    for _, payload in api.publisher.sent:
        c = decode_command(payload, api.central_key.public_key())
        out.append((c.hall, c.device or "", c.action, c.game))
    return sorted(out)


async def test_disable_a_game_everywhere_then_enable_it_again(api: Api, store: Repositories,
                                                              ingestor: Ingestor) -> None:
    await _floor(api, store, ingestor)
    rule = await api.post("/rules", {"kind": "disable_game", "game": "fruits"}, role="operator")
    assert _sent(api) == [("hall-a", "egm-001", "disable_game", "1"), ("hall-a", "egm-002", "disable_game", "3"),
                          ("hall-b", "egm-001", "disable_game", "4")]
    assert rule["status"] == "in_progress" and rule["counts"] == {"sent": 3} and rule["state"] == "active"
    assert {(c["hall"], c["device"], c["game"]) for c in rule["commands"]} == {
        ("hall-a", "egm-001", "1"), ("hall-a", "egm-002", "3"), ("hall-b", "egm-001", "4")}
    # the desired configuration now says disabled, so a device that keeps the game enabled shows up
    placed = (await api.get("/catalog/devices", hall="hall-b", device="egm-001"))["rows"][0]["desired"]
    assert placed == [{"number": 4, "game": "fruits", "enabled": False}]

    ids = {(c["hall"], c["device"]): c["id"] for c in rule["commands"]}
    assert await store.commands.update_command(ids[("hall-a", "egm-001")], "applied", "ok", api.clock())
    assert await store.commands.update_command(ids[("hall-a", "egm-002")], "applied", "ok", api.clock())
    assert (await api.get(f"/rules/{rule['id']}", role="viewer"))["status"] == "in_progress"
    assert await store.commands.update_command(ids[("hall-b", "egm-001")], "failed", "no such game", api.clock())
    got = await api.get(f"/rules/{rule['id']}")
    assert got["status"] == "partially_applied" and got["counts"] == {"applied": 2, "failed": 1}

    undo = await api.post("/rules", {"kind": "enable_game", "game": "fruits", "halls": ["hall-b"]})
    assert [(c["hall"], c["device"], c["action"], c["game"]) for c in undo["commands"]] == [
        ("hall-b", "egm-001", "enable_game", "4")]
    placed = (await api.get("/catalog/devices", hall="hall-b", device="egm-001"))["rows"][0]["desired"]
    assert placed == [{"number": 4, "game": "fruits", "enabled": True}]

    created = await store.audit.audit(action="rule.create")
    assert [(e.target, e.after["kind"], len(e.after["targets"])) for e in created] == [
        (f"rule/{rule['id']}", "disable_game", 3), (f"rule/{undo['id']}", "enable_game", 1)]
    assert [e.target for e in await store.audit.audit(action="catalog.placements.update")][-2:] == [
        "hall/hall-b/device/egm-001", "hall/hall-b/device/egm-001"]
    listed = (await api.get("/rules", kind="disable_game"))["rows"]
    assert [r["id"] for r in listed] == [rule["id"]]


async def test_commands_past_expiry_expire_the_rule(api: Api, store: Repositories, ingestor: Ingestor) -> None:
    await _floor(api, store, ingestor)
    rule = await api.post("/rules", {"kind": "disable_game", "game": "poker", "ttl_seconds": 5})
    assert len(rule["commands"]) == 2
    api.clock.now += 6_000_000
    got = await api.get(f"/rules/{rule['id']}")
    assert got["status"] == "failed" and got["counts"] == {"expired": 2}


async def test_hall_scoped_operators_rule_only_their_halls(api: Api, store: Repositories, ingestor: Ingestor) -> None:
    await _floor(api, store, ingestor)
    rule = await api.post("/rules", {"kind": "disable_game", "game": "poker"}, role="operator", halls=("hall-b",))
    assert rule["halls"] == ["hall-b"] and _sent(api) == [("hall-b", "egm-002", "disable_game", "1")]
    got = await api.post("/rules", {"kind": "disable_game", "game": "poker", "halls": ["hall-a"]}, role="operator",
                         halls=("hall-b",), status=403)
    assert "hall-a" in got["error"]["message"]
    network = await api.post("/rules", {"kind": "disable_game", "game": "fruits"})
    seen = await api.get(f"/rules/{network['id']}", role="viewer", halls=("hall-b",))
    assert {c["hall"] for c in seen["commands"]} == {"hall-b"}  # other halls' commands are not shown
    only_a = await api.post("/rules", {"kind": "disable_game", "game": "fruits", "halls": ["hall-a"]})
    await api.get(f"/rules/{only_a['id']}", role="viewer", halls=("hall-b",), status=404)
    await api.post(f"/rules/{network['id']}/revoke", {}, role="operator", halls=("hall-b",), status=403)


async def test_a_max_bet_limit_is_checked_reported_enforced_and_revoked(
        api: Api, store: Repositories, ingestor: Ingestor) -> None:
    await _floor(api, store, ingestor)
    rule = await api.post("/rules", {"kind": "max_bet", "max_bet": 400, "provider": "novo"}, role="operator")
    assert rule["status"] == "no_commands" and rule["commands"] == [] and api.publisher.sent == []  # type: ignore[union-attr]
    assert rule["noncompliant"] == [{"hall": "hall-a", "device": "egm-002", "number": 3, "max_bet_minor": 500,
                                     "game": "fruits"}]
    rows = {(r["hall"], r["device"]): r for r in (await api.get("/catalog/devices"))["rows"]}
    over = [d for d in rows[("hall-a", "egm-002")]["differences"] if d["kind"] == "max_bet_over_limit"]
    assert [(d["number"], d["rule"]) for d in over] == [(3, rule["id"])]
    assert not any(d["kind"] == "max_bet_over_limit" for d in rows[("hall-a", "egm-001")]["differences"])

    revoked = await api.post(f"/rules/{rule['id']}/revoke", {}, role="operator", status=200)
    assert revoked["state"] == "revoked"
    rows = {(r["hall"], r["device"]): r for r in (await api.get("/catalog/devices"))["rows"]}
    assert not any(d["kind"] == "max_bet_over_limit" for d in rows[("hall-a", "egm-002")]["differences"])
    assert [e.after for e in await store.audit.audit(action="rule.revoke")] == [{"state": "revoked"}]

    enforced = await api.post("/rules", {"kind": "max_bet", "max_bet": 100, "enforce": True})
    assert _sent(api) == [("hall-a", "egm-002", "disable_game", "3")]  # 100 ≤ 100 on egm-001 passes
    assert enforced["params"] == {"max_bet": 100, "enforce": True} and enforced["status"] == "in_progress"


@pytest.mark.parametrize(("body", "word"), [
    ({"kind": "nuke"}, "kind"), ({"kind": "disable_game"}, "game"),
    ({"kind": "disable_game", "game": "ghost"}, "not in the catalog"),
    ({"kind": "disable_game", "game": "poker", "max_bet": 1}, "max_bet"),
    ({"kind": "disable_game", "game": "poker", "halls": []}, "halls"),
    ({"kind": "disable_game", "game": "poker", "halls": ["a b"]}, "hall ID"),
    ({"kind": "disable_game", "game": "poker", "ttl_seconds": 0}, "ttl_seconds"),
    ({"kind": "max_bet"}, "max_bet"), ({"kind": "max_bet", "max_bet": -5}, "max_bet"),
    ({"kind": "max_bet", "max_bet": 1.5}, "max_bet"), ({"kind": "max_bet", "max_bet": 5, "enforce": "yes"}, "enforce"),
    ({"kind": "max_bet", "max_bet": 5, "provider": "ghost"}, "provider"),
])
async def test_bad_rules_are_400_and_change_nothing(api: Api, body: Any, word: str) -> None:
    await seed_catalog(api)
    got = await api.post("/rules", body, status=400)
    assert got["error"]["code"] == "bad_request" and word in got["error"]["message"]
    assert (await api.get("/rules"))["rows"] == [] and await api.store.audit.audit(action="rule.create") == []


async def test_rule_roles(api: Api) -> None:
    await seed_catalog(api)
    for role in ("viewer", "technician", "regulator"):
        await api.post("/rules", {"kind": "max_bet", "max_bet": 1}, role=role, status=403)
    for role in ("technician", "regulator"):
        await api.get("/rules", role=role, status=403)
    await api.get("/rules/nope", status=404)


async def test_disable_everywhere_through_mosquitto_until_applied(store: Repositories, ingestor: Ingestor,
                                                                  mosquitto: Any) -> None:
    central_key = generate_private_key()
    service = IngestService(store, Ingestor(store, central_key), mosquitto.url, ServiceConfig(client_id="central-r"))
    a = FakeHall("hall-a", seed=1)
    await register(store, a)
    agent = FakeAgent(mosquitto, a, central_key.public_key())
    task = asyncio.create_task(agent.link.run())
    await service.start()
    try:
        assert await service.link.wait_connected(10) and await agent.link.wait_connected(10)
        app = build_app(store, currency="EUR", command_publisher=service.publish_command, central_key=central_key)
        async with TestClient(TestServer(app)) as client:
            api = Api(client, store, ManualClock())
            await seed_catalog(api)
            a._append("egm-001", "device.status", identity([(1, "FF", "P00196", 1, 100)], [1]))
            a._append("egm-002", "device.status", identity([(7, "FF", "P00196", 1, 100)], [7]))
            await push(store, ingestor, a)
            rule = await api.post("/rules", {"kind": "disable_game", "game": "fruits"}, role="operator")

            async def applied() -> bool:
                return (await api.get(f"/rules/{rule['id']}"))["status"] == "applied"

            await _until(applied)
            assert sorted((c.device, c.action, c.game) for c in agent.commands) == [
                ("egm-001", "disable_game", "1"), ("egm-002", "disable_game", "7")]
    finally:
        await service.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
