"""``hall-agent diag`` as a technician runs it: subprocesses against ``hall-sim egm`` on a pty."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

BIN = Path(sys.executable).parent
AGENT = str(BIN / "hall-agent")
SIM = str(BIN / "hall-sim")
T = TypeVar("T")


@pytest.fixture(scope="module")
def sim_egm() -> Iterator[dict]:
    proc = subprocess.Popen([SIM, "egm", "--address", "7", "--pace", "0.3", "--seed", "3", "--log-level", "warning"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        yield json.loads(line)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([AGENT, *args], capture_output=True, text=True, timeout=timeout, env=env)


def wait_for(probe: Callable[[], T], timeout: float, what: str, proc: subprocess.Popen[str]) -> T:
    """``probe()`` once it is truthy; fails after ``timeout`` s or if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while not (got := probe()):
        assert proc.poll() is None, f"the agent exited ({proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return got


def test_link_test_table(sim_egm: dict) -> None:
    res = run("diag", "sas", "--port", sim_egm["port"], "--address", "7", "--seconds", "1.5")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "link                   UP" in out
    for label in ("timeouts", "CRC/garbled", "NACKs", "latency p50 / p99", "latency histogram", "identity:",
                  "meters (LP"):
        assert label in out, label
    assert "Traceback" not in res.stderr


def test_link_test_json_fields(sim_egm: dict) -> None:
    res = run("diag", "sas", "--port", sim_egm["port"], "--address", "7", "--seconds", "1", "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["link"]["up"] is True and report["link"]["answered"] > 0
    assert {"timeouts", "garbled", "nacks", "latency_ms"} <= set(report["link"])
    assert report["identity"]["serial"] and report["identity"]["sas_version"] == "602"
    assert report["meters"]["values"]["games_played"]["unit"] == "count"


def run_with_stderr_on_a_terminal(*args: str, timeout: float = 30) -> tuple[int, str, str]:
    """Run with stdout piped (as into jq) and stderr on a pty, as a technician's terminal: returns
    (exit code, stdout, what the terminal showed)."""
    import pty

    master, slave = pty.openpty()
    try:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.run([AGENT, *args], stdout=subprocess.PIPE, stderr=slave, text=True, timeout=timeout,
                              env=env)
        os.close(slave)
        slave = -1
        shown = b""
        while True:  # the few progress lines fit the pty's buffer; EIO once it is drained and the child gone
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
        return proc.returncode, proc.stdout, shown.decode().replace("\r\n", "\n")
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


def test_progress_on_a_terminal_while_the_json_stays_clean(sim_egm: dict) -> None:
    """A technician sees each step on the terminal as it happens; stdout is the same one JSON document."""
    args = ("diag", "sas", "--port", sim_egm["port"], "--address", "7", "--seconds", "1", "--json")
    code, stdout, shown = run_with_stderr_on_a_terminal(*args)
    assert code == 0, shown
    steps = shown.splitlines()
    assert steps[0] == f"hall-agent: polling address 7 on {sim_egm['port']} (pty, marks)...", shown
    assert any(s.startswith("hall-agent: link up after ") for s in steps), shown
    assert any(s.startswith("hall-agent: identity: game ") and "serial " in s for s in steps), shown
    assert any(s.startswith("hall-agent: meters: ") and " read (LP " in s for s in steps), shown
    piped = run(*args)  # a script capturing stderr: no progress, the same report
    assert piped.returncode == 0 and piped.stderr == ""
    assert stdout.count("\n") == 1 and piped.stdout.count("\n") == 1
    report, plain = json.loads(stdout), json.loads(piped.stdout)
    assert set(report) == set(plain) and set(report["link"]) == set(plain["link"])
    who = ("serial", "sas_version", "game_id", "paytable_id")
    assert [report["identity"][k] for k in who] == [plain["identity"][k] for k in who]
    assert report["meters"]["values"].keys() == plain["meters"]["values"].keys()
    forced = run(*args, "--progress")
    assert forced.returncode == 0 and "hall-agent: meters: " in forced.stderr and json.loads(forced.stdout)


def test_watch_into_a_reader_that_leaves_ends_quietly(sim_egm: dict) -> None:
    """``hall-agent diag sas --watch | head -1``: when the reader leaves, the agent ends as a pipe's
    writer does (SIGPIPE's status), with no BrokenPipeError traceback on the technician's terminal."""
    proc = subprocess.Popen([AGENT, "diag", "sas", "--port", sim_egm["port"], "--address", "7", "--watch"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None and proc.stdout.readline()   # the first line it watched
        proc.stdout.close()                                          # the reader leaves, as head does
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert proc.returncode == 141, (proc.returncode, err)


def test_disable_then_enable(sim_egm: dict) -> None:
    res = run("diag", "sas", "--port", sim_egm["port"], "--address", "7", "--seconds", "0.5", "--disable", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["command"]["acked"] is True
    res = run("diag", "sas", "--port", sim_egm["port"], "--address", "7", "--seconds", "0.5", "--enable", "--json")
    assert json.loads(res.stdout)["command"]["action"] == "enable_machine"


def test_scan_finds_the_address(sim_egm: dict) -> None:
    res = run("diag", "scan", "--port", sim_egm["port"], "--json")
    assert res.returncode == 0, res.stderr
    found = json.loads(res.stdout)["found"]
    assert [f["address"] for f in found] == [7]


def test_config_file_and_flag_override(sim_egm: dict, tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'port = "{sim_egm["port"]}"\n[diag.sas]\naddress = 99\nseconds = 0.5\njson = true\n')
    res = run("diag", "sas", "--config", str(cfg), "--address", "7")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["address"] == 7


def test_wrong_address_is_a_clear_error(sim_egm: dict) -> None:
    res = run("diag", "sas", "--port", sim_egm["port"], "--address", "8", "--seconds", "1")
    assert res.returncode == 4
    assert res.stderr.count("\n") == 1 and "no answer from SAS address 8" in res.stderr
    assert "Traceback" not in res.stderr


def test_missing_port_is_a_clear_error() -> None:
    res = run("diag", "sas", "--port", "/dev/pts/999", "--address", "1")
    assert res.returncode == 3
    assert res.stderr.startswith("hall-agent: error: port /dev/pts/999 not found")
    assert res.stderr.count("\n") == 1


@pytest.mark.parametrize(("kind", "said"), [("missing", "not found: check the cable/USB adapter and the serial port"),
                                            ("file", "is not a serial port (it is a regular file; "),
                                            ("directory", "is not a serial port (it is a directory; ")])
@pytest.mark.parametrize(("command", "flag"), [("sas", "--port"), ("scan", "--port"), ("modbus", "--serial")])
def test_a_port_that_is_no_serial_port_is_one_line_saying_what_to_check(
        tmp_path: Path, kind: str, said: str, command: str, flag: str) -> None:
    """A typo in --port (or a path to the wrong thing) gets a sentence, not pyserial's ioctl error."""
    path = tmp_path / "ttyUSB0"
    if kind == "file":
        path.write_text("not a port\n")
    elif kind == "directory":
        path.mkdir()
    extra = ("--address", "1") if command == "sas" else ("--timeout-ms", "300")
    res = run("diag", command, flag, str(path), *extra)
    assert res.returncode == 3, res.stderr
    assert res.stderr.count("\n") == 1 and res.stderr.startswith(f"hall-agent: error: {'port ' * (kind == 'missing')}"
                                                                 f"{path} "), res.stderr
    assert said in res.stderr
    if kind == "missing":
        assert f"path in {flag} / devices.toml" in res.stderr
    else:
        assert res.stderr.rstrip().endswith(f"such as /dev/ttyUSB0 or /dev/ttyS0): check {flag} / devices.toml")


def test_every_command_has_help() -> None:
    for args in (["--help"], ["diag", "--help"], ["diag", "sas", "--help"], ["diag", "scan", "--help"]):
        res = run(*args)
        assert res.returncode == 0 and "usage:" in res.stdout


def test_ops_commands_have_help() -> None:
    for cmd in ("run", "status", "devices", "outbox"):
        res = run(cmd, "--help")
        assert res.returncode == 0 and "usage:" in res.stdout


def test_run_without_required_options_names_them() -> None:
    res = run("run")
    assert res.returncode == 2
    assert "--hall" in res.stderr and "--mqtt" in res.stderr and "--central-key" in res.stderr


def test_run_refuses_a_command_bound_of_zero(tmp_path: Path) -> None:
    res = run("run", "--hall", "h1", "--data-dir", str(tmp_path), "--devices", "d.toml", "--mqtt",
              "mqtt://127.0.0.1:1", "--central-key", "c.pub", "--command-max-lifetime", "0")
    assert res.returncode == 2 and "--command-max-lifetime must be > 0 seconds" in res.stderr


def test_run_refuses_a_linger_out_of_range(tmp_path: Path) -> None:
    res = run("run", "--hall", "h1", "--data-dir", str(tmp_path), "--devices", "d.toml", "--mqtt",
              "mqtt://127.0.0.1:1", "--central-key", "c.pub", "--linger", "9")
    assert res.returncode == 2 and "--linger must be 0..5 seconds" in res.stderr


def test_run_refuses_a_congested_linger_out_of_range(tmp_path: Path) -> None:
    res = run("run", "--hall", "h1", "--data-dir", str(tmp_path), "--devices", "d.toml", "--mqtt",
              "mqtt://127.0.0.1:1", "--central-key", "c.pub", "--congested-linger", "-1")
    assert res.returncode == 2 and "--congested-linger must be 0..5 seconds" in res.stderr


def test_status_of_a_data_dir_without_agent(tmp_path) -> None:
    res = run("status", "--data-dir", str(tmp_path))
    assert res.returncode == 1 and "not running" in res.stdout
    res = run("outbox", "--data-dir", str(tmp_path))
    assert res.returncode == 2 and "does not exist" in res.stderr


def test_run_with_a_serial_port_that_does_not_exist_keeps_the_hall_running(tmp_path: Path) -> None:
    """An unplugged USB adapter must not stop the whole hall: the agent runs, says which port is
    missing, reports its machine offline (an event for HQ) and retries the port."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    assert run("keys", "init", "--data-dir", str(tmp_path)).returncode == 0
    central_pub = tmp_path / "central.pub"
    central_pub.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    devices = tmp_path / "devices.toml"
    devices.write_text('[[devices]]\nid = "egm-001"\nprotocol = "sas"\nport = "/dev/ttyNOSUCH0"\naddress = 1\n')
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([AGENT, "run", "--hall", "h1", "--data-dir", str(tmp_path), "--devices", str(devices),
                             "--mqtt", "mqtt://127.0.0.1:1", "--central-key", str(central_pub), "--log-format", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        def offline_event() -> list[tuple[str, str, bytes]]:
            try:  # the agent may still be importing or creating its outbox (a loaded CI box takes seconds)
                with contextlib.closing(sqlite3.connect(f"file:{tmp_path / 'outbox.db'}?mode=ro", uri=True)) as con:
                    return con.execute("SELECT device, type, body FROM events").fetchall()
            except sqlite3.DatabaseError:
                return []

        def serving() -> list[dict] | None:
            """The agent's devices once it has written its state (the socket is bound a moment after
            the first event is committed: the event alone does not mean the agent is up)."""
            res = run("devices", "--data-dir", str(tmp_path), "--json")
            listed = json.loads(res.stdout)["devices"] if res.returncode == 0 else []
            return listed if listed and (tmp_path / "agent-state.json").exists() else None

        recorded = wait_for(offline_event, 30, "an offline event for the machine", proc)
        ((device_id, kind, body),) = recorded
        assert (device_id, kind) == ("egm-001", "device.status")
        assert json.loads(body)["data"]["status"] == "offline"
        (device,) = wait_for(serving, 30, "the agent serving its state", proc)
        assert device["id"] == "egm-001" and not device["link_up"]
        assert "/dev/ttyNOSUCH0" in (device.get("last_error") or ""), device
        # the hall's record and the agent's state: the agent writes, its group reads, nobody else
        for name in ("outbox.db", "outbox.db-wal", "outbox.db-shm", "agent-state.json", "agent.pid", "commands.db"):
            if name != "commands.db" or (tmp_path / name).exists():
                mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
                assert mode & 0o600 == 0o600 and mode & 0o137 == 0, f"{name}: {mode:o}"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "port unavailable; retrying" in out and "Traceback" not in out


def test_the_environment_sits_between_the_config_file_and_the_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "from-file"}"\n')
    env = {**os.environ, "HALLSYNC_AGENT_DATA_DIR": str(tmp_path / "from-env")}
    res = subprocess.run([AGENT, "status", "--config", str(cfg)], capture_output=True, text=True, timeout=30, env=env)
    assert res.returncode == 1 and f"no state in {tmp_path / 'from-env'}" in res.stdout
    res = subprocess.run([AGENT, "status", "--config", str(cfg), "--data-dir", str(tmp_path / "from-flag")],
                         capture_output=True, text=True, timeout=30, env=env)
    assert res.returncode == 1 and f"no state in {tmp_path / 'from-flag'}" in res.stdout


def test_a_bad_config_value_names_the_file_and_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text('[run]\nlinger = "soon"\n')
    res = run("run", "--config", str(cfg))
    assert res.returncode == 2 and f"config file {cfg}: [run] linger: bad value 'soon'" in res.stderr


def test_run_refuses_a_devices_file_with_an_id_used_twice(tmp_path: Path) -> None:
    assert run("keys", "init", "--data-dir", str(tmp_path)).returncode == 0
    devices = tmp_path / "devices.toml"
    devices.write_text('[[devices]]\nid = "egm-001"\nport = "/dev/ttyS0"\naddress = 1\n\n'
                       '[[devices]]\nid = "egm-001"\nprotocol = "modbus"\nhost = "10.0.0.21"\n')
    res = run("run", "--hall", "h1", "--data-dir", str(tmp_path), "--devices", str(devices), "--mqtt",
              "mqtt://127.0.0.1:1", "--central-key", str(tmp_path / "hall.pub"))
    assert res.returncode == 2
    assert f"devices file {devices}: device id 'egm-001' is used twice (#1 and #2)" in res.stderr


def test_the_replicators_pacing_comes_from_the_run_options() -> None:
    from agent.cli_ops import replicator_config
    from agent.replicator import ReplicatorConfig

    default = ReplicatorConfig()
    assert replicator_config({}) == default
    got = replicator_config({"linger": "1", "congested_linger": 0})   # a flag's text, a TOML number
    assert (got.linger, got.congested_linger) == (1.0, 0.0)
    assert got.ack_timeout == default.ack_timeout
