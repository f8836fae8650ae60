"""An ingest worker SIGKILLed on the shared subscription: its halls move to the others at once (issue 14).

Two ``hall-central serve --role ingest`` processes on one ``$share`` group; one is killed (no
DISCONNECT, as a crash or a lost host leaves it). Every batch published afterwards must be stored and
acked by the survivor without a gap or a resend request. With persistent sessions this fails on
Mosquitto: the broker keeps handing the dead member its share of the batches (queued for it), the
survivor sees a gap at every other batch and asks for resends."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from mqttlink import MqttLink, Received
from mqttlink.broker import free_port
from protocols.sync import decode_ack, public_key_from_pem, topic
from tests import waits
from tests.procs import Proc

from .builders import FakeHall
from .test_serve import BIN, cli
from .test_serve_roles import call


async def test_a_killed_workers_share_goes_to_the_survivor_without_a_gap(tmp_path: Path, mosquitto: Any) -> None:
    data, db = tmp_path / "central", str(tmp_path / "central.db")
    cli("keys", "init", "--data-dir", str(data))
    hall = FakeHall("hall-09", seed=41)
    pem = tmp_path / "hall.pub"
    pem.write_text(hall.public_pem)
    cli("halls", "add", hall.hall, "--public-key", str(pem), "--db", db)
    ports = {name: free_port() for name in ("w1", "w2")}
    workers = {name: Proc(f"central-{name}", [str(BIN), "serve", "--role", "ingest", "--data-dir", str(data),
                                              "--db", db, "--mqtt", mosquitto.url_text, "--http",
                                              f"127.0.0.1:{port}", "--client-id", f"central-{name}"], tmp_path)
               for name, port in ports.items()}
    central_key = public_key_from_pem((data / "central.pub").read_bytes())
    acks: list[int] = []
    resends: list[bytes] = []

    async def agent_side(msg: Received) -> None:
        if msg.topic == topic(hall.hall, "acks"):
            acks.append(decode_ack(msg.payload, central_key, expect_hall=hall.hall).acked_through_seq)
        elif msg.topic == topic(hall.hall, "resend"):
            resends.append(msg.payload)

    agent = MqttLink(mosquitto.url, client_id="agent-hall-09", handler=agent_side,
                     subscriptions=[topic(hall.hall, "acks"), topic(hall.hall, "resend")])
    task = asyncio.create_task(agent.run())
    try:
        for proc in workers.values():
            proc.start()
        for name, port in ports.items():
            await waits.until(lambda port=port: call(f"http://127.0.0.1:{port}/api/v1/health")[1]["presence"]
                              ["ingest"]["connected"], f"{name} to subscribe", timeout=30, off_loop=True,
                              ignore=(OSError, KeyError, TypeError), procs=tuple(workers.values()))
        assert await agent.wait_connected(10)
        workers["w1"].kill()
        hall.play(600)
        for _, _, payload in hall.batches(30):
            await agent.publish(hall.topic, payload, qos=1)
        await waits.until(lambda: acks and max(acks) == len(hall.events), "the survivor to ack every batch",
                          timeout=60, procs=(workers["w2"],))
        assert resends == [], f"{len(resends)} resend requests: the dead worker was still handed batches"
        status = call(f"http://127.0.0.1:{ports['w2']}/api/v1/health")[1]["presence"]["ingest"]
        assert status.get("events_stored") == len(hall.events), status
    finally:
        task.cancel()
        code = workers["w2"].stop(20)
    assert code == 0, workers["w2"].tail()
