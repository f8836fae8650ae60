"""The systemd units as systemd itself reads them, and the agent's sd_notify as systemd receives it.

``systemd-analyze verify`` is systemd's own parser: it checks every directive, and that ExecStart
names an executable. The units name the install path /opt/hallsync/venv, so each test verifies a
copy pointing at this checkout's venv (the same binaries a hall would run). Unknown or misspelt
directives are only warnings for systemd (exit 0), so the tests also fail on any warning about the
unit: a misspelt ``NoNewPrivilege=`` would otherwise silently drop the hardening.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent import sdnotify

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "systemd"
BIN = Path(sys.executable).parent
INSTALL_BIN = "/opt/hallsync/venv/bin/"
CENTRAL_ROLE_UNITS = {"hall-central-ingest@.service": "ingest", "hall-central-api.service": "api",
                      "hall-central-monitor.service": "monitor"}
"""HQ split by role (issue 14): each unit runs ``hall-central serve --role ROLE``."""
CENTRAL_UNITS = ["hall-central.service", *CENTRAL_ROLE_UNITS]


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail("systemd-analyze is not installed: .ci/run installs Debian's 'systemd' package")
    return found


def directives(unit: Path) -> dict[str, list[str]]:
    """``Section.Key`` → every value it is given (keys like DeviceAllow= repeat)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return out


def installed_copy(name: str, tmp_path: Path) -> Path:
    """The unit with /opt/hallsync/venv/bin replaced by this venv's bin (where the binaries really are);
    a template (``x@.service``) as its instance ``x@8101.service``, as ``systemctl enable`` names it."""
    text = (UNITS / name).read_text()
    assert INSTALL_BIN in text, f"{name} should start the venv's binary at {INSTALL_BIN}"
    copy = tmp_path / name.replace("@.", "@8101.")
    copy.write_text(text.replace(INSTALL_BIN, f"{BIN}/"))
    return copy


@pytest.mark.parametrize("name", ["hall-agent.service", *CENTRAL_UNITS])
def test_systemd_analyze_verify_accepts_the_unit_without_warnings(name: str, tmp_path: Path) -> None:
    unit = installed_copy(name, tmp_path)
    done = subprocess.run([systemd_analyze(), "verify", str(unit)], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    about_unit = [line for line in (done.stdout + done.stderr).splitlines()
                  if name in line or unit.name in line or str(unit) in line]
    assert done.returncode == 0 and not about_unit, done.stdout + done.stderr
    binary = directives(unit)["Service.ExecStart"][0].split()[0]
    assert os.access(binary, os.X_OK)


def test_verify_catches_a_misspelt_hardening_directive(tmp_path: Path) -> None:
    """The check above can fail: systemd-analyze names a misspelt directive (which systemd would ignore)."""
    unit = installed_copy("hall-agent.service", tmp_path)
    unit.write_text(unit.read_text().replace("NoNewPrivileges=yes", "NoNewPrivilege=yes"))
    done = subprocess.run([systemd_analyze(), "verify", str(unit)], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert "Unknown key 'NoNewPrivilege'" in done.stderr


def test_agent_unit_is_a_hardened_notify_service_with_a_watchdog() -> None:
    d = directives(UNITS / "hall-agent.service")
    one = {key: values[-1] for key, values in d.items()}
    assert one["Service.Type"] == "notify" and int(one["Service.WatchdogSec"]) > 0
    assert one["Service.Restart"] in ("on-failure", "always")  # a watchdog timeout counts as a failure
    assert one["Service.User"] == "hallsync" and "dialout" in one["Service.SupplementaryGroups"].split()
    assert one["Service.StateDirectory"] == "hallsync"  # /var/lib/hallsync
    assert "/var/lib/hallsync" in one["Service.ExecStart"]
    assert one["Service.ProtectSystem"] == "strict"
    assert one["Service.NoNewPrivileges"] == "yes" and one["Service.PrivateTmp"] == "yes"
    assert one["Service.DevicePolicy"] in ("closed", "strict")
    allowed = {v.split()[0] for v in d["Service.DeviceAllow"]}
    assert {"char-ttyS", "char-ttyUSB"} <= allowed
    assert "PrivateDevices" not in one or one["Service.PrivateDevices"] == "no"  # it would hide the ports
    assert one["Service.CapabilityBoundingSet"] == ""


@pytest.mark.parametrize("name", CENTRAL_UNITS)
def test_central_unit_is_hardened_and_restarts(name: str) -> None:
    one = {key: values[-1] for key, values in directives(UNITS / name).items()}
    assert one["Service.Restart"] == "on-failure"
    assert one["Service.User"] == "hallsync-central" and one["Service.StateDirectory"] == "hallsync-central"
    assert one["Service.ProtectSystem"] == "strict" and one["Service.NoNewPrivileges"] == "yes"
    assert one["Service.PrivateTmp"] == "yes" and one["Service.PrivateDevices"] == "yes"
    assert "serve" in one["Service.ExecStart"].split()


def _run_as(unit: Path) -> dict[str, list[str]]:
    """What a unit's process may do and where it runs: every directive but the unit's own description,
    dependencies and command line."""
    mine = ("Unit.Description", "Unit.After", "Service.ExecStart")
    return {k: v for k, v in directives(unit).items() if k not in mine}


@pytest.mark.parametrize("name", CENTRAL_ROLE_UNITS)
def test_role_units_run_serve_with_their_role_under_exactly_the_central_units_hardening(name: str) -> None:
    """A role unit is hall-central.service with another command line: the same user, state directory,
    sandbox and restart policy (a hardening line dropped from one copy would go unnoticed otherwise)."""
    assert _run_as(UNITS / name) == _run_as(UNITS / "hall-central.service")
    args = directives(UNITS / name)["Service.ExecStart"][-1].split()
    assert args[1:2] == ["serve"] and args[args.index("--role") + 1] == CENTRAL_ROLE_UNITS[name]
    assert args[args.index("--config") + 1] == "/etc/hallsync/central.toml"
    ids = [(a := directives(UNITS / n)["Service.ExecStart"][-1].split())[a.index("--client-id") + 1]
           for n in CENTRAL_ROLE_UNITS]
    assert len(set(ids)) == len(ids)   # one MQTT client id per process: the broker drops a duplicate


def test_each_ingest_instance_has_its_own_client_id_and_port() -> None:
    """hall-central-ingest@8101 and @8102 side by side: systemd puts the instance name (%i) into the
    client id and the health port, so two workers never take each other's MQTT session or HTTP port."""
    args = directives(UNITS / "hall-central-ingest@.service")["Service.ExecStart"][-1].split()
    assert args[args.index("--client-id") + 1] == "hallsync-ingest-%i"
    assert args[args.index("--http") + 1] == "127.0.0.1:%i"


@pytest.mark.parametrize(("name", "password_file"), [("hall-agent.service", "/etc/hallsync/mqtt-password"),
                                                     *((n, "/etc/hallsync/central-mqtt-password")
                                                       for n in CENTRAL_UNITS)])
def test_units_give_the_broker_password_as_a_file_never_on_the_command_line(name: str, password_file: str) -> None:
    """Issue 16: ``ps`` shows ExecStart's arguments to every user; the password is read from a file."""
    args = directives(UNITS / name)["Service.ExecStart"][-1].split()
    assert args[args.index("--mqtt-password-file") + 1] == password_file
    assert not any(a.startswith("--mqtt=") or a == "--mqtt" or "://" in a for a in args)


# -- sd_notify ----------------------------------------------------------------------------------------

def bind_notify_socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    return sock


def receive(sock: socket.socket, seconds: float) -> list[tuple[float, str]]:
    """Every datagram that arrives within ``seconds``, with its arrival time."""
    return receive_until(sock, lambda _message: False, seconds)


def receive_until(sock: socket.socket, done: Callable[[str], bool], seconds: float) -> list[tuple[float, str]]:
    """Datagrams until one satisfies ``done`` (included), or ``seconds`` pass."""
    got: list[tuple[float, str]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            got.append((time.monotonic(), sock.recv(4096).decode()))
        except TimeoutError:
            continue
        if done(got[-1][1]):
            break
    return got


def test_notify_sends_one_datagram_to_the_socket_systemd_names(tmp_path: Path) -> None:
    with bind_notify_socket(tmp_path / "notify") as sock:
        env = {"NOTIFY_SOCKET": str(tmp_path / "notify")}
        assert sdnotify.notify("READY=1", env) and sdnotify.notify("WATCHDOG=1", env)
        assert [m for _, m in receive(sock, 0.5)] == ["READY=1", "WATCHDOG=1"]


def test_notify_reaches_an_abstract_socket(tmp_path: Path) -> None:
    name = f"hallsync-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        assert sdnotify.notify("READY=1", {"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(100) == b"READY=1"


def test_notify_outside_systemd_is_a_no_op(tmp_path: Path) -> None:
    assert sdnotify.notify("READY=1", {}) is False
    assert sdnotify.notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")}) is False


def test_watchdog_period_is_half_of_watchdog_usec_and_only_for_our_pid() -> None:
    assert sdnotify.watchdog_period({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert sdnotify.watchdog_period({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    assert sdnotify.watchdog_period({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}) is None
    assert sdnotify.watchdog_period({}) is None
    assert sdnotify.watchdog_period({"WATCHDOG_USEC": "junk"}) is None


def agent_files(tmp_path: Path) -> list[str]:
    """A hall with no machines yet: key pair, HQ's public key, an empty devices file."""
    from protocols.sync import generate_private_key, public_key_to_pem

    data = tmp_path / "data"
    done = subprocess.run([str(BIN / "hall-agent"), "keys", "init", "--data-dir", str(data)], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    central = tmp_path / "central.pub"
    central.write_bytes(public_key_to_pem(generate_private_key().public_key()))
    devices = tmp_path / "devices.toml"
    devices.write_text("devices = []\n")
    with socket.socket() as s:  # a port nobody listens on: the broker is down
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return ["run", "--hall", "hall-01", "--data-dir", str(data), "--devices", str(devices),
            "--mqtt", f"mqtt://127.0.0.1:{port}", "--central-key", str(central)]


def test_agent_says_ready_then_pings_the_watchdog_and_says_stopping(tmp_path: Path) -> None:
    """As under systemd with WatchdogSec=2: READY=1 (even with HQ's broker down: a hall works
    offline), then WATCHDOG=1 about every second, and STOPPING=1 on SIGTERM. The start is waited for
    (bounded), not timed: on a busy machine the agent took longer than a fixed 6 s window to be ready."""
    path = tmp_path / "notify"
    with bind_notify_socket(path) as sock:
        env = {**os.environ, "NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000"}
        proc = subprocess.Popen([str(BIN / "hall-agent"), *agent_files(tmp_path)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            first = receive_until(sock, lambda m: m.startswith("READY=1"), 60.0)
            got = receive(sock, 8.0)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        tail = [m for _, m in receive(sock, 1.0)]
    assert first and first[0][1].startswith("READY=1"), (first, err.decode()[-2000:])
    messages = [m for _, m in got]
    pings = [t for t, m in got if m == "WATCHDOG=1"]
    assert len(pings) >= 4, messages  # 8 s at one per second
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert max(gaps) < 2.0, gaps  # always inside WatchdogSec, or systemd would kill a healthy agent
    assert "STOPPING=1" in tail and proc.returncode == 0, err.decode()[-2000:]


async def test_agent_withholds_the_watchdog_when_a_task_died(tmp_path: Path, monkeypatch) -> None:
    """A hung or broken agent must stop pinging, so systemd restarts it: kill one of its tasks
    (the state-file writer) and the pings stop while the process itself keeps running."""
    import asyncio

    from agent.runtime import AgentConfig, HallAgent

    args = agent_files(tmp_path)
    opt = dict(zip(args[1::2], args[2::2], strict=False))
    path = tmp_path / "notify"
    with bind_notify_socket(path) as sock:
        sock.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        monkeypatch.setenv("WATCHDOG_USEC", "400000")
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
        agent = HallAgent(AgentConfig(hall=opt["--hall"], data_dir=Path(opt["--data-dir"]),
                                      devices=Path(opt["--devices"]), mqtt=opt["--mqtt"],
                                      central_key=Path(opt["--central-key"])))
        stop = asyncio.Event()
        run = asyncio.create_task(agent.run(stop))
        loop = asyncio.get_running_loop()

        async def messages(seconds: float) -> list[str]:
            out: list[str] = []
            deadline = loop.time() + seconds
            while (left := deadline - loop.time()) > 0:
                try:
                    out.append((await asyncio.wait_for(loop.sock_recv(sock, 4096), left)).decode())
                except TimeoutError:
                    break
            return out

        try:
            before = await messages(1.5)
            assert before[0].startswith("READY=1") and before.count("WATCHDOG=1") >= 2, before
            state_writer = next(t for t in agent._tasks if t.get_name() == "state-file")
            state_writer.cancel()
            await asyncio.sleep(0.3)  # a ping may already be on its way
            await messages(0.1)
            after = await messages(1.5)
            assert "WATCHDOG=1" not in after, after
            assert not run.done()  # the process lives on: only systemd's restart ends it
        finally:
            stop.set()
            await asyncio.wait_for(run, 30)
