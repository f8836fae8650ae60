"""Commands to halls: the store's status rules, the HTTP API with a fake publisher, results through the
ingest service (in process and through a real Mosquitto with a fake agent)."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from central.api import PREFIX, build_app
from central.commands import MAX_TTL_SECONDS, CommandNotPublished
from central.ingest import Ingestor
from central.repos import Repositories
from central.repos.commands import CommandRecord
from central.repos.errors import DuplicateKey
from central.service import IngestService, ServiceConfig
from central.store import open_sqlite
from mqttlink import BrokerUrl, MqttLink, Received
from protocols.sync import (
    VERSION,
    CommandResult,
    decode_command,
    encode_command_result,
    generate_private_key,
    topic,
)
from tests import waits

from .builders import T0, FakeHall
from .conftest import register
from .test_api import Api, ManualClock, _serve

S = 1_000_000


@pytest.fixture
async def api(store: Repositories) -> AsyncIterator[Api]:
    async for a in _serve(store):
        yield a


def _record(command_id: str = "c1", status: str = "pending", expires_at: int = T0 + 300 * S) -> CommandRecord:
    return CommandRecord(id=command_id, hall="h1", device="egm-001", action="disable_game", game="g-poker",
                         params={"why": "test"}, issued_at=T0, expires_at=expires_at, status=status,
                         detail="issued", created_by="key1", created_at=T0, updated_at=T0)


# --- store -----------------------------------------------------------------------------------------
async def test_add_and_read_a_command_round_trips(store: Repositories) -> None:
    await store.commands.add_command(_record())
    assert await store.commands.command("c1") == _record()
    assert await store.commands.command("nope") is None
    log = await store.ingest.integration_log(kind="command")
    assert [(e.hall, e.device) for e in log] == [("h1", "egm-001")] and "c1" in log[0].detail
    # a second command with the same id is refused by the database's primary key, as the same
    # backend-neutral error on both backends (not the driver's)
    with pytest.raises(DuplicateKey, match=r"^commands: a row with the same key is already stored$"):
        await store.commands.add_command(_record())
    assert len(await store.commands.commands()) == 1


@pytest.mark.parametrize(("path", "final"), [
    (["sent", "applied"], "applied"),
    (["sent", "failed"], "failed"),
    (["sent", "expired"], "expired"),
    (["failed"], "failed"),       # could not be published
    (["expired"], "expired"),     # never sent, past its expiry
    (["applied"], "applied"),     # the result came before central recorded the PUBACK
])
async def test_allowed_transitions_end_in_a_final_status_that_never_changes(
        store: Repositories, path: list[str], final: str) -> None:
    await store.commands.add_command(_record())
    for i, status in enumerate(path, 1):
        assert await store.commands.update_command("c1", status, f"step {i}", T0 + i)
    record = await store.commands.command("c1")
    assert record is not None and (record.status, record.detail, record.updated_at) == (final, f"step {len(path)}",
                                                                                        T0 + len(path))
    for status in ("pending", "sent", "applied", "failed", "expired"):
        assert not await store.commands.update_command("c1", status, "late", T0 + 99)
    assert (await store.commands.command("c1")) == record
    rows = await store.ingest.integration_log(kind="command")
    assert len(rows) == 1 + len(path)  # one per status change, newest first
    assert final in rows[0].detail and f"step {len(path)}" in rows[0].detail


async def test_refused_transitions_and_unknown_ids(store: Repositories) -> None:
    assert not await store.commands.update_command("missing", "applied", "", T0)
    await store.commands.add_command(_record())
    assert await store.commands.update_command("c1", "sent", "", T0 + 1)
    assert not await store.commands.update_command("c1", "sent", "again", T0 + 2)     # sent → sent
    assert not await store.commands.update_command("c1", "pending", "back", T0 + 2)   # no way back
    assert (await store.commands.command("c1")).status == "sent"  # type: ignore[union-attr]
    await store.commands.add_command(_record("c2"))
    assert await store.commands.update_command("c2", "pending", "publish not confirmed", T0 + 3)  # detail only
    assert (await store.commands.command("c2")).detail == "publish not confirmed"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="status"):
        await store.commands.update_command("c2", "done", "", T0)


async def test_commands_list_filters(store: Repositories) -> None:
    for i, hall in enumerate(("h1", "h2", "h1")):
        await store.commands.add_command(dataclasses.replace(_record(f"c{i}"), hall=hall, created_at=T0 + i))
    await store.commands.update_command("c2", "sent", "", T0 + 9)
    assert [c.id for c in await store.commands.commands()] == ["c2", "c1", "c0"]
    assert [c.id for c in await store.commands.commands(hall="h1")] == ["c2", "c0"]
    assert [c.id for c in await store.commands.commands(status="pending")] == ["c1", "c0"]
    assert [c.id for c in await store.commands.commands(halls=["h2"])] == ["c1"]
    assert [c.id for c in await store.commands.commands(limit=1)] == ["c2"]


async def test_an_old_database_gains_the_commands_table(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    con.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                      "INSERT INTO meta VALUES ('schema_version', '2');")
    con.close()
    store = await open_sqlite(path)
    try:
        await store.commands.add_command(_record())
        assert (await store.commands.command("c1")) == _record()
    finally:
        await store.close()


# --- API -------------------------------------------------------------------------------------------
async def _hall(api: Api, name: str = "hall-a") -> FakeHall:
    hall = FakeHall(name)
    await register(api.store, hall)
    return hall


async def test_post_publishes_a_signed_command_and_get_follows_it(api: Api) -> None:
    await _hall(api)
    body = await api.post("/commands", {"hall": "hall-a", "device": "egm-002", "action": "disable_game",
                                        "game": "g-poker", "ttl_seconds": 60}, role="operator")
    assert body["status"] == "sent" and set(body) == {"id", "status"}
    assert api.publisher is not None and api.central_key is not None
    ((topic_name, payload),) = api.publisher.sent
    assert topic_name == "hallsync/v1/halls/hall-a/commands"
    command = decode_command(payload, api.central_key.public_key(), expect_hall="hall-a")
    assert (command.id, command.hall, command.device, command.action, command.game, command.params) == (
        body["id"], "hall-a", "egm-002", "disable_game", "g-poker", {})
    assert (command.issued_at, command.expires_at) == (T0, T0 + 60 * S)
    with pytest.raises(Exception, match=r"(?i)signature"):
        decode_command(payload, generate_private_key().public_key())

    got = await api.get(f"/commands/{body['id']}", role="viewer")
    assert {k: got[k] for k in ("id", "hall", "device", "action", "game", "status")} == {
        "id": body["id"], "hall": "hall-a", "device": "egm-002", "action": "disable_game", "game": "g-poker",
        "status": "sent"}
    assert got["issued_at"] == "2026-01-01T00:00:00.000000Z" and got["expires_at_us"] == T0 + 60 * S
    assert got["detail"] and got["updated_at_us"] == T0 and got["created_by"]
    log = await api.get("/integration-log", kind="command")
    assert [r["detail"].rsplit(":", 1)[0].split(": ")[-1] for r in log["rows"]] == ["sent", "pending"]


async def test_machine_commands_default_to_five_minutes(api: Api) -> None:
    await _hall(api)
    body = await api.post("/commands", {"hall": "hall-a", "device": "egm-001", "action": "enable_machine"})
    assert api.publisher is not None and api.central_key is not None
    command = decode_command(api.publisher.sent[0][1], api.central_key.public_key())
    assert command.id == body["id"] and command.game is None and command.expires_at == T0 + 300 * S


@pytest.mark.parametrize(("body", "word"), [
    ({"device": "egm-001", "action": "enable_machine"}, "hall"),
    ({"hall": "hall-a", "action": "enable_machine"}, "device"),
    ({"hall": "hall-a", "device": "egm/1", "action": "enable_machine"}, "device"),
    ({"hall": "hall-a", "device": "egm-001"}, "action"),
    ({"hall": "hall-a", "device": "egm-001", "action": "set_limit"}, "action"),
    ({"hall": "hall-a", "device": "egm-001", "action": "reboot"}, "action"),
    ({"hall": "hall-a", "device": "egm-001", "action": "disable_game"}, "game"),
    ({"hall": "hall-a", "device": "egm-001", "action": "enable_game", "game": ""}, "game"),
    ({"hall": "hall-a", "device": "egm-001", "action": "disable_machine", "game": "g-poker"}, "game"),
    ({"hall": "hall-a", "device": "egm-001", "action": "enable_machine", "ttl_seconds": 0}, "ttl_seconds"),
    ({"hall": "hall-a", "device": "egm-001", "action": "enable_machine", "ttl_seconds": MAX_TTL_SECONDS + 1},
     "ttl_seconds"),
    ({"hall": "hall-a", "device": "egm-001", "action": "enable_machine", "ttl_seconds": "60"}, "ttl_seconds"),
    ({"hall": "hall-a", "device": "egm-001", "action": "enable_machine", "ttl_seconds": True}, "ttl_seconds"),
    ({"hall": "hall-a", "device": "egm-001", "action": "enable_machine", "params": {}}, "params"),
    ({"hall": "hall-zz", "device": "egm-001", "action": "enable_machine"}, "registered"),
    ({"hall": "hall+#", "device": "egm-001", "action": "enable_machine"}, "hall"),
    ([1, 2], "object"),
])
async def test_bad_command_bodies_are_400(api: Api, body: Any, word: str) -> None:
    await _hall(api)
    got = await api.post("/commands", body, status=400)
    assert got["error"]["code"] == "bad_request" and word in got["error"]["message"]
    assert api.publisher is not None and api.publisher.sent == []
    assert await api.store.commands.commands() == []


async def test_a_body_that_is_not_json_is_400(api: Api) -> None:
    response = await api.client.post(PREFIX + "/commands", data=b"{nope",
                                     headers={"Authorization": f"Bearer {await api.key()}"})
    assert response.status == 400 and (await response.json())["error"]["code"] == "bad_request"


@pytest.mark.parametrize("role", ["viewer", "technician", "regulator"])
async def test_roles_that_may_not_send_commands_get_403(api: Api, role: str) -> None:
    await _hall(api)
    got = await api.post("/commands", {"hall": "hall-a", "device": "egm-001", "action": "enable_machine"},
                         role=role, status=403)
    assert got["error"]["code"] == "forbidden"
    assert api.publisher is not None and api.publisher.sent == []


async def test_a_hall_scoped_operator_commands_only_its_halls(api: Api) -> None:
    await _hall(api, "hall-a")
    await _hall(api, "hall-b")
    mine = ("hall-b",)
    got = await api.post("/commands", {"hall": "hall-a", "device": "egm-001", "action": "enable_machine"},
                         role="operator", halls=mine, status=403)
    assert "hall-a" in got["error"]["message"]
    # an unregistered hall outside the scope is 403 too: the scope is checked first, nothing leaks
    await api.post("/commands", {"hall": "hall-zz", "device": "egm-001", "action": "enable_machine"},
                   role="operator", halls=mine, status=403)
    ok = await api.post("/commands", {"hall": "hall-b", "device": "egm-001", "action": "enable_machine"},
                        role="operator", halls=mine)
    other = await api.post("/commands", {"hall": "hall-a", "device": "egm-001", "action": "enable_machine"})
    assert (await api.get(f"/commands/{ok['id']}", role="technician", halls=mine))["hall"] == "hall-b"
    hidden = await api.get(f"/commands/{other['id']}", role="operator", halls=mine, status=404)
    assert hidden["error"]["code"] == "not_found"


async def test_unknown_command_is_404_json(api: Api) -> None:
    got = await api.get("/commands/00000000-0000-4000-8000-000000000000", status=404)
    assert got["error"]["code"] == "not_found"


async def test_reading_a_command_past_its_expiry_expires_it(api: Api) -> None:
    await _hall(api)
    body = await api.post("/commands", {"hall": "hall-a", "device": "egm-001", "action": "disable_machine",
                                        "ttl_seconds": 10})
    api.clock.now = T0 + 10 * S - 1
    assert (await api.get(f"/commands/{body['id']}"))["status"] == "sent"
    api.clock.now = T0 + 10 * S
    got = await api.get(f"/commands/{body['id']}")
    assert got["status"] == "expired" and got["updated_at_us"] == T0 + 10 * S and "expires_at" in got["detail"]
    # a late result changes nothing
    assert not await api.store.commands.update_command(body["id"], "applied", "late", T0 + 11 * S)
    assert (await api.get(f"/commands/{body['id']}"))["status"] == "expired"


async def test_publish_failures(store: Repositories) -> None:
    hall = FakeHall("hall-a")
    await register(store, hall)
    async for api in _serve(store):
        assert api.publisher is not None
        api.publisher.fail = CommandNotPublished("central is not connected to the MQTT broker")
        body = await api.post("/commands", {"hall": "hall-a", "device": "egm-001", "action": "enable_machine"})
        got = await api.get(f"/commands/{body['id']}")
        assert body["status"] == got["status"] == "failed" and "not connected" in got["detail"]

        api.publisher.fail = TimeoutError("no PUBACK")  # the broker may have it: stays pending, says why
        body = await api.post("/commands", {"hall": "hall-a", "device": "egm-001", "action": "enable_machine"})
        got = await api.get(f"/commands/{body['id']}")
        assert body["status"] == got["status"] == "pending" and "no PUBACK" in got["detail"]
    async for api in _serve(store, command_publisher=None):  # central without MQTT: publishing is impossible
        body = await api.post("/commands", {"hall": "hall-a", "device": "egm-001", "action": "enable_machine"})
        assert body["status"] == "failed"


# --- results through the ingest service -------------------------------------------------------------
C1, CA, UNKNOWN = (f"00000000-0000-4000-8000-00000000000{i}" for i in (1, 2, 3))


def _result(hall: FakeHall, command_id: str, status: str = "applied", detail: str = "", key: Any = None) -> bytes:
    return encode_command_result(CommandResult(v=VERSION, id=command_id, hall=hall.hall, status=status,  # type: ignore[arg-type]
                                               detail=detail, at=T0), key or hall.key)


def _service(store: Repositories) -> IngestService:
    return IngestService(store, Ingestor(store, generate_private_key()), BrokerUrl("127.0.0.1", 1), ServiceConfig())


async def _sent(store: Repositories, command_id: str, hall: str = "hall-a") -> None:
    await store.commands.add_command(dataclasses.replace(_record(command_id), hall=hall))
    assert await store.commands.update_command(command_id, "sent", "", T0 + 1)


@pytest.mark.parametrize(("result", "status", "detail"), [
    ("applied", "applied", "done"), ("failed", "failed", "no such game"), ("expired", "expired", "too late"),
    ("rejected", "failed", "rejected by the hall: unknown device"),
])
async def test_a_result_moves_the_command(store: Repositories, result: str, status: str, detail: str) -> None:
    hall = FakeHall("hall-a")
    await register(store, hall)
    await _sent(store, C1)
    service = _service(store)
    sent_detail = detail.removeprefix("rejected by the hall: ")
    await service._on_message(Received(topic("hall-a", "command-results"), _result(hall, C1, result, sent_detail),
                                       False, 1))
    record = await store.commands.command(C1)
    assert record is not None and (record.status, record.detail) == (status, detail)
    # the same result again (QoS 1 redelivery) changes nothing and is logged as a duplicate
    await service._on_message(Received(topic("hall-a", "command-results"), _result(hall, C1, "applied"), False, 1))
    assert await store.commands.command(C1) == record
    assert (await store.ingest.integration_log(kind="duplicate"))[0].hall == "hall-a"


async def test_forged_unregistered_malformed_and_misrouted_results_change_nothing(store: Repositories) -> None:
    a, b, stranger = FakeHall("hall-a"), FakeHall("hall-b"), FakeHall("hall-x")
    await register(store, a, b)
    await _sent(store, CA, "hall-a")
    service = _service(store)
    cases = [
        (topic("hall-a", "command-results"), _result(a, CA, key=generate_private_key()), "rejected"),  # forged
        (topic("hall-x", "command-results"), _result(stranger, CA), "rejected"),  # unregistered hall
        (topic("hall-a", "command-results"), b"{not json", "format_error"),
        (topic("hall-a", "command-results"), _result(b, CA), "rejected"),  # names hall-b on hall-a's topic
        (topic("hall-b", "command-results"), _result(b, CA), "rejected"),  # hall-b answering hall-a's command
        (topic("hall-a", "command-results"), _result(a, UNKNOWN), "rejected"),
    ]
    for topic_name, payload, kind in cases:
        before = len(await store.ingest.integration_log(kind=kind, limit=1000))
        await service._on_message(Received(topic_name, payload, False, 1))
        assert len(await store.ingest.integration_log(kind=kind, limit=1000)) == before + 1, (topic_name, kind)
    record = await store.commands.command(CA)
    assert record is not None and record.status == "sent"
    assert service.stats["bad_command_results"] == len(cases)


async def test_the_service_publisher_refuses_while_offline(store: Repositories) -> None:
    with pytest.raises(CommandNotPublished, match="not connected"):
        await _service(store).publish_command(topic("hall-a", "commands"), b"{}")


# --- through a real broker ---------------------------------------------------------------------------
class FakeAgent:
    """Subscribes to its hall's commands and answers each with a result signed by ``key``."""

    def __init__(self, broker: Any, hall: FakeHall, central_public: Any, key: Any = None) -> None:
        self.hall = hall
        self.central_public = central_public
        self.key = key or hall.key
        self.commands: list[Any] = []
        self.link = MqttLink(broker.url, client_id=f"agent-{hall.hall}", handler=self._on_command,
                             subscriptions=[topic(hall.hall, "commands")])

    async def _on_command(self, msg: Received) -> None:
        command = decode_command(msg.payload, self.central_public, expect_hall=self.hall.hall)
        self.commands.append(command)
        await self.link.publish(topic(self.hall.hall, "command-results"),
                                _result(self.hall, command.id, "applied", f"{command.action} done", key=self.key))


async def _until(check: Any, timeout: float = 10.0) -> None:
    await waits.until(check, getattr(check, "__name__", "the condition"), timeout=timeout)


async def test_command_round_trip_through_mosquitto(store: Repositories, mosquitto: Any) -> None:
    honest, forger = FakeHall("hall-a"), FakeHall("hall-f")
    await register(store, honest, forger)
    central_key = generate_private_key()
    service = IngestService(store, Ingestor(store, central_key), mosquitto.url, ServiceConfig(client_id="central-t"))
    agents = [FakeAgent(mosquitto, honest, central_key.public_key()),
              FakeAgent(mosquitto, forger, central_key.public_key(), key=generate_private_key())]
    tasks = [asyncio.create_task(a.link.run()) for a in agents]
    await service.start()
    try:
        assert await service.link.wait_connected(10)
        for a in agents:
            assert await a.link.wait_connected(10)
        app = build_app(store, currency="EUR", command_publisher=service.publish_command,
                        central_key=central_key)  # the real clock: the agent's link and the expiry run on it
        async with TestClient(TestServer(app)) as client:
            api = Api(client, store, ManualClock())
            ok = await api.post("/commands", {"hall": "hall-a", "device": "egm-001", "action": "disable_game",
                                              "game": "g-poker"}, role="operator")
            forged = await api.post("/commands", {"hall": "hall-f", "device": "egm-001",
                                                  "action": "disable_machine"})
            assert ok["status"] in ("sent", "applied") and forged["status"] in ("sent", "applied")

            async def applied() -> bool:
                return (await api.get(f"/commands/{ok['id']}"))["status"] == "applied"

            await _until(applied)
            got = await api.get(f"/commands/{ok['id']}")
            assert got["detail"] == "disable_game done"
            assert [c.id for c in agents[0].commands] == [ok["id"]]

            async def rejected_logged() -> bool:
                return bool(await store.ingest.integration_log(hall="hall-f", kind="rejected"))

            await _until(rejected_logged)
            assert [c.id for c in agents[1].commands] == [forged["id"]]
            assert (await api.get(f"/commands/{forged['id']}"))["status"] == "sent"
    finally:
        await service.stop()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
