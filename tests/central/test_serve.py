"""``hall-central serve`` as a process: HTTP answers, keys and halls added while it runs work at once,
presence arrives over the real broker, SIGTERM stops it cleanly."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from mqttlink import MqttLink, Received
from mqttlink.broker import free_port
from protocols.sync import VERSION, Status, encode_status, generate_private_key, public_key_to_pem, topic

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
    for _ in range(int(timeout / 0.1)):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "exited"
        try:
            if (await asyncio.to_thread(get, url))[0] == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("central did not answer")


async def test_serve_end_to_end(tmp_path: Path, mosquitto) -> None:
    data, db = tmp_path / "central", str(tmp_path / "central.db")
    cli("keys", "init", "--data-dir", str(data))
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/v1"
    proc = subprocess.Popen([str(BIN), "serve", "--data-dir", str(data), "--db", db, "--mqtt", mosquitto.url_text,
                             "--http", f"127.0.0.1:{port}"], stderr=subprocess.PIPE, text=True)
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
