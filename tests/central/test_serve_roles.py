"""``hall-central serve --role``: an ingest process and an API process on one database (issue 14). The
ingest process stores and acks a hall's batches and answers only health and metrics over HTTP; the API
process serves the reports from the same database, publishes commands, and ingests nothing. On a SQLite
file and on PostgreSQL (the deployment the roles are for)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from mqttlink import MqttLink, Received
from mqttlink.broker import free_port
from protocols.sync import decode_ack, decode_command, public_key_from_pem, topic
from tests import waits
from tests.procs import Proc

from .builders import FakeHall
from .test_serve import BIN, cli


def call(url: str, key: str | None = None, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    data = None
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


async def test_an_ingest_process_and_an_api_process_share_one_database(tmp_path: Path, mosquitto: Any,
                                                                       db_url: str) -> None:
    data, db = tmp_path / "central", db_url
    cli("keys", "init", "--data-dir", str(data))
    hall = FakeHall("hall-07", seed=31)
    pem = tmp_path / "hall.pub"
    pem.write_text(hall.public_pem)
    cli("halls", "add", hall.hall, "--public-key", str(pem), "--db", db)
    admin = cli("apikeys", "create", "--role", "admin", "--db", db)
    central_pub = (data / "central.pub").read_bytes()
    ports = {role: free_port() for role in ("ingest", "api")}
    procs = {role: Proc(f"central-{role}", [str(BIN), "serve", "--role", role, "--data-dir", str(data), "--db", db,
                                            "--mqtt", mosquitto.url_text, "--http", f"127.0.0.1:{port}",
                                            "--client-id", f"central-{role}"], tmp_path)
             for role, port in ports.items()}
    base = {role: f"http://127.0.0.1:{port}/api/v1" for role, port in ports.items()}
    acks: list[int] = []
    commands: list[Any] = []
    central_key = public_key_from_pem(central_pub)

    async def agent_side(msg: Received) -> None:
        if msg.topic == topic(hall.hall, "acks"):
            acks.append(decode_ack(msg.payload, central_key, expect_hall=hall.hall).acked_through_seq)
        elif msg.topic == topic(hall.hall, "commands"):
            commands.append(decode_command(msg.payload, central_key, expect_hall=hall.hall))

    agent = MqttLink(mosquitto.url, client_id="agent-hall-07", handler=agent_side,
                     subscriptions=[topic(hall.hall, "acks"), topic(hall.hall, "commands")])
    task = asyncio.create_task(agent.run())
    try:
        for proc in procs.values():
            proc.start()
        for role in procs:
            await waits.until(lambda role=role: call(f"{base[role]}/health")[0] == 200, f"{role} to answer",
                              timeout=30, off_loop=True, ignore=(OSError,), procs=tuple(procs.values()))
        assert await agent.wait_connected(10)
        health = {role: call(f"{base[role]}/health")[1]["presence"] for role in procs}
        assert health["ingest"]["role"] == "ingest" and health["api"]["role"] == "api"
        # the ingest process answers only health (and metrics): the API is the api process's
        status, body = call(f"{base['ingest']}/halls", admin)
        assert status == 404 and "--role api" in body["error"]["message"], body
        await waits.until(lambda: call(f"{base['ingest']}/health")[1]["presence"]["ingest"]["connected"],
                          "the ingest process's broker link (subscribed)", timeout=30, off_loop=True)
        hall.play(400)
        for _, _, payload in hall.batches(50):
            await agent.publish(hall.topic, payload, qos=1)
        await waits.until(lambda: acks and max(acks) == len(hall.events), "every batch acked by the ingest process",
                          timeout=60, procs=tuple(procs.values()))

        def ggr() -> Any:
            status, body = call(f"{base['api']}/reports/ggr?group_by=hall", admin)
            return body["rows"] if status == 200 and body["rows"] else None

        (row,) = await waits.until(ggr, "the API process to report the hall", off_loop=True, timeout=30)
        assert (row["bets"], row["wins"], row["rounds"]) == (hall.total.bets, hall.total.wins, hall.total.rounds)
        assert call(f"{base['api']}/health")[1]["presence"]["ingest"].get("events_stored", 0) == 0
        status, sent = call(f"{base['api']}/commands", admin,
                            {"hall": hall.hall, "device": "egm-001", "action": "disable_machine"})
        assert status in (200, 201, 202) and sent["status"] == "sent", sent
        await waits.until(lambda: commands, "the command to reach the hall", timeout=20)
        assert (commands[0].id, commands[0].action) == (sent["id"], "disable_machine")
    finally:
        task.cancel()
        codes = {role: proc.stop(20) for role, proc in procs.items()}
    for role, proc in procs.items():
        assert codes[role] == 0, proc.tail()
        assert "Traceback" not in proc.tail(200), proc.tail()
