"""``hall-central serve`` as a process (on SQLite; the key revocation test on PostgreSQL too): HTTP
answers, keys and halls added while it runs work at once, presence arrives over the real broker, SIGTERM
stops it cleanly."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mqttlink import LinkDown, MqttLink, Received
from mqttlink.broker import free_port
from protocols.sync import (
    MAX_MESSAGE_BYTES,
    MAX_PACKET_BYTES,
    VERSION,
    Status,
    decode_ack,
    encode_status,
    generate_private_key,
    public_key_from_pem,
    public_key_to_pem,
    topic,
)
from tests import waits

from .builders import FakeHall
from .conftest import SQLITE_ONLY

BIN = Path(sys.executable).with_name("hall-central")


def cli(*args: str) -> str:
    done = subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def get(url: str, key: str | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def wait_http(url: str, proc: subprocess.Popen, timeout: float = 20) -> None:
    def answers() -> bool:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "exited"
        return get(url)[0] == 200

    await waits.until(answers, f"central to answer {url}", timeout=timeout, interval=0.1, off_loop=True,
                      ignore=(OSError,))


def start_serve(tmp_path: Path, mosquitto, db: str) -> tuple[str, str, subprocess.Popen[str]]:  # type: ignore[no-untyped-def]
    """Central's keys, then ``hall-central serve`` on a free port over ``db``: (db, API base URL, process)."""
    data = tmp_path / "central"
    cli("keys", "init", "--data-dir", str(data))
    port = free_port()
    proc = subprocess.Popen([str(BIN), "serve", "--data-dir", str(data), "--db", db, "--mqtt", mosquitto.url_text,
                             "--http", f"127.0.0.1:{port}"], stderr=subprocess.PIPE, text=True)
    return db, f"http://127.0.0.1:{port}/api/v1", proc


# One test of a ``serve`` process runs on PostgreSQL too (the key revocation below: two processes, keys,
# audit and catalog); a copy of each on PostgreSQL would add several seconds of CI time apiece.
@SQLITE_ONLY
async def test_serve_end_to_end(tmp_path: Path, mosquitto, db_url: str) -> None:
    db, base, proc = start_serve(tmp_path, mosquitto, db_url)
    try:
        await wait_http(f"{base}/health", proc)
        # created while central runs: both take effect without a restart
        key = cli("apikeys", "create", "--role", "viewer", "--db", db)
        assert (await asyncio.to_thread(get, f"{base}/halls", key))[0] == 200
        pem = tmp_path / "h1.pub"
        hall_key = generate_private_key()
        pem.write_bytes(public_key_to_pem(hall_key.public_key()))
        cli("halls", "add", "h1", "--public-key", str(pem), "--db", db)
        # an agent's retained presence reaches /halls through the broker
        async def ignore(msg: Received) -> None:
            pass
        agent = MqttLink(mosquitto.url, client_id="fake-agent", handler=ignore)
        task = asyncio.create_task(agent.run())
        assert await agent.wait_connected(10)
        await agent.publish(topic("h1", "status"), encode_status(Status(v=VERSION, hall="h1", online=True,
                                                                          session=3, at=1), hall_key), retain=True)
        rows: list = []
        for _ in range(100):
            _, body = await asyncio.to_thread(get, f"{base}/halls", key)
            rows = body["rows"]
            if rows and rows[0].get("online"):
                break
            await asyncio.sleep(0.1)
        task.cancel()
        assert rows[0]["id"] == "h1" and rows[0]["online"] is True and rows[0]["session"] == 3
        assert (await asyncio.to_thread(get, f"{base}/halls"))[0] == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
        err = proc.stderr.read() if proc.stderr else ""
    assert code == 0, err
    assert "Traceback" not in err


async def test_keys_revoked_or_rotated_by_the_cli_stop_working_in_a_running_central_at_once(
        tmp_path: Path, mosquitto, db_url: str) -> None:
    """Issue 16: keys have an owner name, an expiry, and `apikeys list|revoke|rotate`; a revocation by the
    CLI (another process) is refused by the running central at the next request, not after a cache."""
    db, base, proc = start_serve(tmp_path, mosquitto, db_url)
    try:
        await wait_http(f"{base}/health", proc)
        anna = cli("apikeys", "create", "--role", "admin", "--name", "Anna, cashier lead", "--expires", "90d",
                   "--db", db)
        bob = cli("apikeys", "create", "--role", "viewer", "--name", "Bob", "--db", db)
        anna_id, bob_id = anna.split("_")[1], bob.split("_")[1]
        status, me = await asyncio.to_thread(get, f"{base}/whoami", anna)
        assert (status, me["name"], me["role"]) == (200, "Anna, cashier lead", "admin")
        expires = dt.datetime.fromisoformat(me["expires_at"].replace("Z", "+00:00"))
        assert abs(expires - (dt.datetime.now(dt.UTC) + dt.timedelta(days=90))) < dt.timedelta(minutes=5)
        assert (await asyncio.to_thread(get, f"{base}/halls", bob))[0] == 200   # and now it is in a cache, if any
        done = subprocess.run([str(BIN), "apikeys", "revoke", bob_id, "--db", db], capture_output=True, text=True,
                              timeout=30)
        assert done.returncode == 0 and "revoked" in done.stdout, done.stderr
        assert (await asyncio.to_thread(get, f"{base}/halls", bob))[0] == 401
        new_anna = cli("apikeys", "rotate", anna_id, "--db", db)
        assert new_anna != anna and new_anna.split("_")[1] == anna_id
        assert (await asyncio.to_thread(get, f"{base}/halls", anna))[0] == 401
        assert (await asyncio.to_thread(get, f"{base}/halls", new_anna))[0] == 200
        listed = json.loads(subprocess.run([str(BIN), "apikeys", "list", "--json", "--db", db], capture_output=True,
                                           text=True, timeout=30, check=True).stdout)
        assert {(k["id"], k["name"], k["state"]) for k in listed} == {(anna_id, "Anna, cashier lead", "active"),
                                                                      (bob_id, "Bob", "revoked")}
        status, trail = await asyncio.to_thread(get, f"{base}/audit?action=apikey.revoke", new_anna)
        (entry,) = trail["rows"]
        assert (status, entry["target"], entry["before"]["name"], entry["after"]["revoked_at"] is not None) == (
            200, f"apikey/{bob_id}", "Bob", True)
        assert "secret" not in json.dumps(trail) and bob.split("_", 2)[2] not in json.dumps(trail)
        # actions through the API show who by name: the audit entry of Anna's own change names her
        await asyncio.to_thread(put, f"{base}/catalog/providers/p1", new_anna, {"name": "Provider One"})
        status, trail = await asyncio.to_thread(get, f"{base}/audit?actor={anna_id}", new_anna)
        assert status == 200 and trail["rows"] and {r["actor_name"] for r in trail["rows"]} == {"Anna, cashier lead"}
        gone = subprocess.run([str(BIN), "apikeys", "rotate", bob_id, "--db", db], capture_output=True, text=True,
                              timeout=30)
        assert gone.returncode == 1 and "revoked" in gone.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
        err = proc.stderr.read() if proc.stderr else ""
    assert code == 0, err


def put(url: str, key: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="PUT",
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@SQLITE_ONLY  # ingest through a serve process on PostgreSQL: test_serve_roles
async def test_serve_refuses_an_oversize_batch_and_the_broker_disconnects_a_bigger_one(tmp_path: Path, mosquitto,
                                                                                      db_url: str) -> None:
    """Issue 16: a payload just over MAX_MESSAGE_BYTES (it fits the broker's packet limit) reaches central,
    which logs it as a format_error and acks nothing; the hall's next batch is stored and acked; a
    packet over MAX_PACKET_BYTES never gets past the broker (it disconnects the sender)."""
    data, db = tmp_path / "central", db_url
    cli("keys", "init", "--data-dir", str(data))
    central_pub = public_key_from_pem((data / "central.pub").read_bytes())
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/v1"
    proc = subprocess.Popen([str(BIN), "serve", "--data-dir", str(data), "--db", db, "--mqtt", mosquitto.url_text,
                             "--http", f"127.0.0.1:{port}"], stderr=subprocess.PIPE, text=True)
    tasks: list[asyncio.Task[None]] = []
    try:
        await wait_http(f"{base}/health", proc)
        key = cli("apikeys", "create", "--role", "admin", "--db", db)
        hall = FakeHall("h1", seed=16)
        (tmp_path / "h1.pub").write_text(hall.public_pem)
        cli("halls", "add", "h1", "--public-key", str(tmp_path / "h1.pub"), "--db", db)
        hall.play(100)
        good = hall.batch(1, len(hall.events))
        acks: asyncio.Queue[int] = asyncio.Queue()

        async def on_ack(msg: Received) -> None:
            acks.put_nowait(decode_ack(msg.payload, central_pub, expect_hall="h1").acked_through_seq)

        agent = MqttLink(mosquitto.url, client_id="fake-agent", handler=on_ack, subscriptions=[topic("h1", "acks")])
        tasks.append(asyncio.create_task(agent.run()))
        assert await agent.wait_connected(10)
        await agent.publish(hall.topic, good + b" " * (MAX_MESSAGE_BYTES + 1 - len(good)), timeout=30)
        rows: list = []
        for _ in range(300):
            _, body = await asyncio.to_thread(get, f"{base}/integration-log?hall=h1&kind=format_error", key)
            rows = body["rows"]
            if rows:
                break
            await asyncio.sleep(0.1)
        assert [r["detail"] for r in rows] == [
            f"batches: payload of {MAX_MESSAGE_BYTES + 1} bytes exceeds the limit of {MAX_MESSAGE_BYTES} "
            f"(topic {hall.topic!r})"]
        assert acks.empty()
        await agent.publish(hall.topic, good)  # the hall goes on: its real batch is stored and acked
        assert await asyncio.wait_for(acks.get(), 20) == len(hall.events)
        _, body = await asyncio.to_thread(get, f"{base}/halls", key)
        assert body["rows"][0]["last_seq"] == len(hall.events)

        async def ignore(msg: Received) -> None:
            pass

        flooder = MqttLink(mosquitto.url, client_id="flooder", handler=ignore)
        tasks.append(asyncio.create_task(flooder.run()))
        assert await flooder.wait_connected(10)
        with pytest.raises(LinkDown):
            await flooder.publish(hall.topic, b" " * (MAX_PACKET_BYTES + 1), timeout=30)
        for _ in range(100):  # what the broker's operator reads
            if "Client flooder disconnected due to oversize packet" in mosquitto.log_path.read_text():
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"no oversize disconnect in {mosquitto.log_path}")
    finally:
        for task in tasks:
            task.cancel()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
        err = proc.stderr.read() if proc.stderr else ""
    assert code == 0, err
    assert "Traceback" not in err


@SQLITE_ONLY  # about logging, not the store
async def test_serve_says_it_started_and_stopped_at_info_by_default(tmp_path: Path, mosquitto, db_url: str) -> None:
    """What journalctl shows an operator with no --log-level: one "serving" line once central is up,
    one "stopped" line after SIGTERM, both at level info (a normal start is no warning)."""
    data, db = tmp_path / "central", db_url
    cli("keys", "init", "--data-dir", str(data))
    port = free_port()
    proc = subprocess.Popen([str(BIN), "serve", "--data-dir", str(data), "--db", db, "--mqtt", mosquitto.url_text,
                             "--http", f"127.0.0.1:{port}"], stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    try:
        lines: list[dict] = []
        # stopped once subscribed: SIGTERM during the subscribe makes aiomqtt log a KeyError traceback
        # (a separate race, not what this test is about)
        while not {"central_serving", "mqtt_connected"} <= {e.get("event") for e in lines}:
            raw = await asyncio.wait_for(asyncio.to_thread(proc.stderr.readline), timeout=30)
            assert raw, f"central exited before it said it was serving: {lines}"
            lines.append(json.loads(raw))  # not a terminal: JSON lines, one per event
        assert (await asyncio.to_thread(get, f"http://127.0.0.1:{port}/api/v1/health"))[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
    rest = proc.stderr.read()
    assert code == 0, rest
    lines += [json.loads(raw) for raw in rest.splitlines()]
    serving = [e for e in lines if e.get("event") == "central_serving"]
    stopped = [e for e in lines if e.get("event") == "central_stopped"]
    assert len(serving) == 1 and len(stopped) == 1, lines
    assert serving[0]["level"] == "info" and stopped[0]["level"] == "info"
    assert serving[0]["http"] == f"http://127.0.0.1:{port}/api/v1"
    assert lines.index(stopped[0]) == len(lines) - 1
