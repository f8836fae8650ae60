"""``hall-agent status|outbox`` tell the truth about a running agent whose disk is full (issue 12).

The agent used to be known only through ``agent-state.json``; a full disk stops that file from being
rewritten, and the CLI then called a running, fail-closed agent "not running". Now the agent answers
on ``DATA_DIR/agent.sock`` from memory and the CLI asks it first. The disk here is a real, tiny tmpfs
(``small_fs``) filled to the last byte, and the CLI runs as a subprocess, as a technician runs it.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.keys import init_keys
from agent.runtime import STATE_FILE, AgentConfig, HallAgent, StartupError
from agent.state_socket import SOCKET_FILE
from protocols.sync import generate_private_key, public_key_to_pem
from tests.conftest import fill

AGENT = str(Path(sys.executable).parent / "hall-agent")
HALL = "hall-disk"
STATE_INTERVAL = 0.2


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The real ``hall-agent`` command, in a thread so the in-process agent keeps answering."""
    return await asyncio.to_thread(subprocess.run, [AGENT, *args], capture_output=True, text=True, timeout=60,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})


def make_agent(data: Path, tmp_path: Path) -> HallAgent:
    init_keys(data)
    central = tmp_path / "central.pub"
    central.write_bytes(public_key_to_pem(generate_private_key().public_key()))
    devices = tmp_path / "devices.toml"   # a machine on an unplugged adapter: the agent runs, retrying it
    devices.write_text('[[devices]]\nid = "egm-001"\nprotocol = "sas"\nport = "/dev/ttyNOSUCH9"\naddress = 1\n')
    return HallAgent(AgentConfig(hall=HALL, data_dir=data, devices=devices, mqtt="mqtt://127.0.0.1:1",
                                 central_key=central, state_interval=STATE_INTERVAL))


def file_state(data: Path) -> dict[str, Any]:
    return json.loads((data / STATE_FILE).read_text())


async def test_status_and_outbox_say_running_while_the_disk_is_full(small_fs: Path, tmp_path: Path) -> None:
    data = small_fs
    agent = make_agent(data, tmp_path)
    stop = asyncio.Event()
    run = asyncio.create_task(agent.run(stop))
    filler = small_fs / "filler"
    try:
        await wait_until(lambda: (data / SOCKET_FILE).is_socket() and (data / STATE_FILE).exists(), 10,
                         "the agent's socket and state file")
        res = await cli("status", "--json", "--data-dir", str(data))
        assert res.returncode == 0 and json.loads(res.stdout)["running"] is True, res.stdout + res.stderr

        fill(filler)
        written = file_state(data)["updated_at"]
        # The state file cannot be rewritten any more; wait until it is older than the CLI's
        # freshness window (3 intervals + 2 s), which is when the old CLI said "not running".
        await wait_until(lambda: agent.state_file_error is not None
                         and time.time() - written > 3 * STATE_INTERVAL + 2.5, 15, "a stale state file")
        assert file_state(data)["updated_at"] == written, "the disk is full: the file must be stale"

        res = await cli("status", "--json", "--data-dir", str(data))
        seen = json.loads(res.stdout)
        assert res.returncode == 0 and seen["running"] is True, res.stdout + res.stderr
        assert seen["source"] == "agent socket"
        assert seen["state"]["pid"] == os.getpid() and seen["state"]["hall"] == HALL
        assert "No space left" in seen["state"]["state_file_error"]
        assert time.time() - seen["state"]["updated_at"] < 5, "the answer is live, not the file's"

        text = await cli("status", "--data-dir", str(data))
        assert text.returncode == 0 and "agent:     running" in text.stdout, text.stdout
        assert "state file: NOT WRITTEN" in text.stdout and "No space left" in text.stdout

        ob = await cli("outbox", "--json", "--data-dir", str(data))
        assert ob.returncode == 0 and json.loads(ob.stdout)["source"] == "running agent", ob.stdout + ob.stderr
        assert not (data / f".{STATE_FILE}.tmp").exists(), "a cut-short write leaves no tmp file holding space"

        filler.unlink()   # space comes back: the file is rewritten and the error goes away
        await wait_until(lambda: agent.state_file_error is None and file_state(data)["updated_at"] > written, 10,
                         "the state file written again")
    finally:
        stop.set()
        await asyncio.wait_for(run, 30)
    assert not (data / SOCKET_FILE).exists(), "a clean stop removes the socket"
    res = await cli("status", "--json", "--data-dir", str(data))
    assert res.returncode == 1 and json.loads(res.stdout)["running"] is False


async def test_a_socket_nobody_listens_on_means_not_running_whatever_the_file_says(tmp_path: Path) -> None:
    """A SIGKILLed agent leaves its socket file behind: connection refused is proof that it is gone,
    even while its last state file still looks fresh and names a live pid (here: ours)."""
    data = tmp_path
    (data / STATE_FILE).write_text(json.dumps({
        "hall": HALL, "pid": os.getpid(), "started_at": time.time() - 60, "updated_at": time.time(),
        "state_interval": 2.0, "devices": [], "fail_closed": None,
        "outbox": {"state": "ok", "last_seq": 0, "acked_through": 0, "unacked_count": 0},
        "replicator": {"broker": "-", "connected": False, "session": 0, "link": {}}}))
    res = await cli("status", "--json", "--data-dir", str(data))
    assert json.loads(res.stdout)["running"] is True, "no socket at all: the file rule (fresh, pid alive) applies"
    left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    left.bind(str(data / SOCKET_FILE))
    left.close()                                      # bound, never listened on: what a dead agent leaves
    res = await cli("status", "--json", "--data-dir", str(data))
    seen = json.loads(res.stdout)
    assert res.returncode == 1 and seen["running"] is False and seen["source"] == "state file"
    assert "nothing listens" in seen["socket_error"]


async def test_an_agent_that_holds_its_socket_but_is_busy_is_running_however_old_its_file(tmp_path: Path) -> None:
    """The race the old file-age rule lost: the agent's loop is busy (here: never accepts) and its
    file is older than the freshness window. The kernel accepting on its socket proves the process
    holds it; with its pid alive, the agent runs, and the note says it did not answer."""
    data = tmp_path
    (data / STATE_FILE).write_text(json.dumps({
        "hall": HALL, "pid": os.getpid(), "started_at": time.time() - 600, "updated_at": time.time() - 300,
        "state_interval": 2.0, "devices": [], "fail_closed": None,
        "outbox": {"state": "ok", "last_seq": 0, "acked_through": 0, "unacked_count": 0},
        "replicator": {"broker": "-", "connected": False, "session": 0, "link": {}}}))
    busy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    busy.bind(str(data / SOCKET_FILE))
    busy.listen(4)                                    # accepted by the kernel, never answered
    try:
        res = await cli("status", "--json", "--data-dir", str(data))
    finally:
        busy.close()
    seen = json.loads(res.stdout)
    assert res.returncode == 0 and seen["running"] is True, res.stdout
    assert "did not answer" in seen["socket_error"]


async def test_the_agents_lock_decides_when_the_socket_cannot(tmp_path: Path) -> None:
    """Liveness must not hang on a file's age (issue 16: `hall-agent devices` said "running": false
    beside a running agent on a loaded CI box). A process holding ``agent.pid``'s lock is an agent
    that runs, whatever the state file's age and even before it has written any state or bound its
    socket (starting); a free lock is an agent that is gone, even beside a fresh-looking file."""
    from agent.state_socket import PID_FILE, InstanceLock

    data = tmp_path
    holder = InstanceLock(data / PID_FILE)
    holder.acquire()                                   # a starting agent: lock taken, nothing else yet
    try:
        res = await cli("status", "--json", "--data-dir", str(data))
        seen = json.loads(res.stdout)
        assert res.returncode == 0 and seen["running"] is True and seen["state"] is None, res.stdout
        text = await cli("status", "--data-dir", str(data))
        assert text.returncode == 0 and "running, starting" in text.stdout, text.stdout
        (data / STATE_FILE).write_text(json.dumps({    # its state file, long stale, and no socket at all
            "hall": HALL, "pid": os.getpid(), "started_at": time.time() - 600, "updated_at": time.time() - 300,
            "state_interval": 0.2, "devices": [{"id": "egm-001", "protocol": "sas", "link_up": True}],
            "fail_closed": None, "outbox": {"state": "ok", "last_seq": 0, "acked_through": 0, "unacked_count": 0},
            "replicator": {"broker": "-", "connected": False, "session": 0, "link": {}}}))
        res = await cli("devices", "--json", "--data-dir", str(data))
        seen = json.loads(res.stdout)
        assert res.returncode == 0 and seen["running"] is True, res.stdout
        assert [d["id"] for d in seen["devices"]] == ["egm-001"] and seen["source"] == "state file"
        with pytest.raises(StartupError, match="another agent"):   # and a second agent keeps off its outbox
            await make_agent(data, tmp_path).run(asyncio.Event())
    finally:
        holder.release()
    (data / STATE_FILE).write_text(json.dumps({**file_state(data), "updated_at": time.time()}))
    res = await cli("status", "--json", "--data-dir", str(data))   # fresh file, live pid, but the lock is free
    assert res.returncode == 1 and json.loads(res.stdout)["running"] is False, res.stdout
