"""``hall demo`` as a newcomer runs it: one command, the dashboard URL as the last line, Ctrl-C stops all.

What the user checks: the URL is the last thing printed and stays so while the demo runs; the printed
admin key opens central's API (a wrong key does not); the simulated hall is online and its games show
up in the GGR report and keep coming; Ctrl-C ends the demo with exit code 0 and leaves no process
behind (every pid the demo recorded is gone) and the simulated floor was stopped politely (it writes
``truth.json`` only on SIGTERM). Once with the system's Mosquitto, once with the embedded broker
(amqtt, no ``$share``: central then runs with ``--no-shared-subscription``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mqttlink.broker import find_mosquitto, free_port

HALL = "demo-hall"
STARTUP = 60.0

pytestmark = pytest.mark.slow


def api(url: str, key: str) -> dict:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def hall_bets(base: str, key: str) -> int:
    rows = api(f"{base}/reports/ggr?group_by=hall&hall={HALL}", key)["rows"]
    return sum(r["bets"] for r in rows if r["key"] == HALL)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by init) is no process left running
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def logs(data_dir: Path) -> str:
    return "\n".join(f"--- {p.name} ---\n" + "\n".join(p.read_text(errors="replace").splitlines()[-15:])
                     for p in sorted(data_dir.glob("*.log")))


async def read_until_url(proc: asyncio.subprocess.Process, timeout: float, data_dir: Path) -> list[str]:
    """stdout lines up to and including the first ``http://`` one."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            raw = await asyncio.wait_for(proc.stdout.readline(), max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            raise AssertionError(f"no URL within {timeout:.0f} s; printed so far: {lines}\n{logs(data_dir)}") from None
        if not raw:
            _, err = await proc.communicate()
            raise AssertionError(f"hall demo ended before printing a URL (exit {proc.returncode}):\n"
                                 + "\n".join(lines) + "\n" + err.decode(errors="replace"))
        line = raw.decode().rstrip("\n")
        lines.append(line)
        if line.startswith("http://"):
            return lines


@pytest.mark.parametrize("broker", ["mosquitto", "embedded"])
async def test_demo_prints_the_url_last_serves_the_hall_and_stops_on_ctrl_c(tmp_path: Path, broker: str) -> None:
    if broker == "mosquitto" and find_mosquitto() is None:
        pytest.fail("mosquitto is not installed: .ci/run installs it with apt-get (apt-get install mosquitto)")
    if broker == "embedded" and importlib.util.find_spec("amqtt") is None:
        pytest.fail("amqtt is not installed: scripts/bootstrap installs the [demo] extra")
    data_dir = tmp_path / "demo"
    port = free_port()
    # the flag for one path, the environment variable (what scripts/demo users set) for the other
    choose = ["--broker", "mosquitto"] if broker == "mosquitto" else []
    env = {k: v for k, v in os.environ.items() if k != "HALLSYNC_DEMO_BROKER"}
    if broker == "embedded":
        env["HALLSYNC_DEMO_BROKER"] = "embedded"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hallsync_cli", "demo", "--http", f"127.0.0.1:{port}", "--data-dir", str(data_dir),
        *choose, "--pace", "1", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        start_new_session=True)
    pids: dict[str, int] = {}
    try:
        lines = await read_until_url(proc, STARTUP, data_dir)
        url = lines[-1]
        assert url == f"http://127.0.0.1:{port}/"
        (key_line,) = [line for line in lines if line.startswith("API key (admin): ")]
        key = key_line.split(": ", 1)[1]
        kind = "Mosquitto" if broker == "mosquitto" else "embedded amqtt"
        assert any(line.startswith(f"broker: {kind}") for line in lines), lines

        base = url + "api/v1"
        halls = api(f"{base}/halls", key)["rows"]
        assert [(h["id"], h["online"]) for h in halls] == [(HALL, True)]
        with pytest.raises(urllib.error.HTTPError) as denied:
            api(f"{base}/halls", key[:-4] + "AAAA")
        assert denied.value.code == 401
        devices = {r["id"] for r in api(f"{base}/devices", key)["rows"]}
        assert devices == {f"egm-{i:03d}" for i in range(1, 13)} | {"term-01", "term-02"}
        first = hall_bets(base, key)
        assert first > 0  # the demo printed its URL only once games had reached central
        # the demo's catalog names the simulated games, so the EGMs' money is under their provider
        providers = {r["key"]: r["bets"] for r in api(f"{base}/reports/ggr?group_by=provider", key)["rows"]}
        assert providers.get("hallsync-sim", 0) > 0, providers
        games = {g["id"] for g in api(f"{base}/catalog/games", key)["rows"]}
        assert games == {"sim-1", "sim-2", "sim-3"}
        deadline = time.monotonic() + 20
        while hall_bets(base, key) == first:  # and the hall keeps playing: the numbers move
            assert time.monotonic() < deadline, "GGR did not move within 20 s"
            await asyncio.sleep(0.5)

        assert proc.stdout is not None
        with pytest.raises(TimeoutError):  # nothing printed after the URL: it stays the last line
            await asyncio.wait_for(proc.stdout.readline(), 1.0)

        pids = json.loads((data_dir / "pids.json").read_text())
        assert set(pids) == {"demo", "broker", "central", "floor", "agent"}
        assert pids["demo"] == proc.pid
        assert all(alive(pid) for pid in pids.values())

        proc.send_signal(signal.SIGINT)  # Ctrl-C
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode(errors="replace")
        assert "stopped" in err.decode()
        left = {name: pid for name, pid in pids.items() if alive(pid)}
        assert not left, f"processes left after Ctrl-C: {left}"
        truth = json.loads((data_dir / "floor" / "truth.json").read_text())  # the floor got SIGTERM, not SIGKILL
        assert len(truth["devices"]) == 14
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for pid in pids.values():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


async def test_demo_refuses_a_busy_http_address_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hallsync_cli", "demo", "--http", f"127.0.0.1:{port}", "--data-dir",
            str(tmp_path / "demo"), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert f"127.0.0.1:{port}" in err.decode() and "--http" in err.decode()
    assert out == b""
    assert not (tmp_path / "demo" / "pids.json").exists()


async def test_a_part_that_dies_ends_the_demo_with_an_error_and_stops_the_rest(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hallsync_cli", "demo", "--http", f"127.0.0.1:{free_port()}", "--data-dir",
        str(data_dir), "--egms", "2", "--terminals", "0", "--pace", "1", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, start_new_session=True)
    pids: dict[str, int] = {}
    try:
        await read_until_url(proc, STARTUP, data_dir)
        pids = json.loads((data_dir / "pids.json").read_text())
        os.kill(pids["agent"], signal.SIGKILL)  # the hall's agent crashes
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 1
        assert "agent exited with code -9" in err.decode()
        assert "agent.log" in err.decode()  # where to look
        left = {name: pid for name, pid in pids.items() if alive(pid)}
        assert not left, f"processes left: {left}"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for pid in pids.values():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_demo_options_come_from_defaults_config_environment_and_flags(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from hallsync_demo.cli import add_arguments, resolve_options, run

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = tmp_path / "demo.toml"
    config.write_text('egms = 3\nhttp = "127.0.0.1:9001"\n[demo]\nbroker = "mosquitto"\n')
    opts = resolve_options(parser.parse_args([]), env={})
    assert (opts["broker"], opts["egms"], opts["http"], opts["data_dir"]) == ("auto", 12, ("127.0.0.1", 8080), None)
    opts = resolve_options(parser.parse_args(["--config", str(config)]), env={})
    assert (opts["broker"], opts["egms"], opts["http"]) == ("mosquitto", 3, ("127.0.0.1", 9001))
    env = {"HALLSYNC_DEMO_BROKER": "embedded", "HALLSYNC_DEMO_EGMS": "5"}
    opts = resolve_options(parser.parse_args(["--config", str(config)]), env=env)
    assert (opts["broker"], opts["egms"]) == ("embedded", 5)
    opts = resolve_options(parser.parse_args(["--config", str(config), "--broker", "auto", "--egms", "2"]), env=env)
    assert (opts["broker"], opts["egms"]) == ("auto", 2)
    monkeypatch.setenv("HALLSYNC_DEMO_BROKER", "rabbit")   # refused before anything starts, naming the variable
    assert run(parser.parse_args(["--data-dir", str(tmp_path / "d")])) == 2
    err = capsys.readouterr().err
    assert "environment variable HALLSYNC_DEMO_BROKER: 'rabbit' is not one of auto, mosquitto, embedded" in err
    assert not (tmp_path / "d").exists()
