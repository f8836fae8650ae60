"""``hall-sim`` as a user runs it: a subprocess, files on disk, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from pymodbus.client import ModbusSerialClient, ModbusTcpClient

from protocols.modbus import HALLSYNC_TERMINAL_V1, decode
from tests import waits

pytestmark = pytest.mark.timeout(60)
CLI = [sys.executable, "-m", "firmware_sim.cli"]
ROOT = Path(__file__).resolve().parents[2]


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*CLI, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, timeout: float = 30.0) -> None:
    """A condition with a generous bound: starting a Python process with its imports takes seconds on
    a loaded machine (10 s was exceeded with three simulated halls and six CPU hogs running)."""
    waits.until_sync(path.exists, f"{path} to appear", timeout=timeout, interval=0.02)


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    return proc.returncode, err


def check_consistent(truth: dict) -> None:
    for dev in truth["devices"].values():
        meters = dev["meters"]
        assert dev["kind"] == "egm"
        assert dev["bets"] == meters["coin_in"]
        assert dev["wins"] == meters["coin_out"] + meters["jackpot"]
        assert dev["rounds"] == meters["games_played"]
        assert dev["cash_in"] == meters["bills_accepted_credits"] + meters["ticket_in_cents"]
        assert dev["cash_out"] == meters["cancelled_credits"]
        assert meters["current_credits"] == dev["cash_in"] - dev["bets"] + meters["coin_out"] - dev["cash_out"]


def run_floor(out: Path, seed: int) -> dict:
    proc = start("floor", "--egms", "3", "--pace", "0.02", "--rounds", "12", "--seed", str(seed), "--out", str(out))
    try:
        wait_for(out / "devices.toml")
        devices = tomllib.loads((out / "devices.toml").read_text())["devices"]
        assert [d["id"] for d in devices] == ["egm-001", "egm-002", "egm-003"]
        assert [d["address"] for d in devices] == [1, 2, 3]
        assert all(d["protocol"] == "sas" and d["framing"] == "marks" for d in devices)
        assert all(os.path.exists(d["port"]) for d in devices)
        wait_for(out / "truth.json")                       # written once all rounds are played
        assert proc.poll() is None                          # ... and the floor keeps serving
        first = json.loads((out / "truth.json").read_text())
    finally:
        code, err = stop(proc)
    assert code == 0, err
    final = json.loads((out / "truth.json").read_text())
    assert final == first
    return final


def test_floor_writes_devices_then_truth_and_a_seed_reproduces_it(tmp_path: Path) -> None:
    truth = run_floor(tmp_path / "a", seed=9)
    assert all(dev["rounds"] == 12 for dev in truth["devices"].values())
    check_consistent(truth)
    assert run_floor(tmp_path / "b", seed=9) == truth
    assert run_floor(tmp_path / "c", seed=10) != truth


def test_floor_writes_truth_on_sigterm_before_the_rounds_end(tmp_path: Path) -> None:
    proc = start("floor", "--egms", "2", "--pace", "0.02", "--out", str(tmp_path), "--framing", "structural")
    try:
        wait_for(tmp_path / "devices.toml")
        assert 'framing = "structural"' in (tmp_path / "devices.toml").read_text()
        time.sleep(0.5)
        assert not (tmp_path / "truth.json").exists()
    finally:
        code, err = stop(proc)
    assert code == 0, err
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert set(truth["devices"]) == {"egm-001", "egm-002"}
    assert sum(dev["rounds"] for dev in truth["devices"].values()) > 0
    check_consistent(truth)


def check_terminal_consistent(dev: dict) -> None:
    meters = dev["meters"]
    assert dev["kind"] == "terminal"
    assert set(meters) == {"bets", "wins", "rounds", "cash_in", "cash_out", "tickets_in", "tickets_out"}
    assert dev["bets"] == meters["bets"] and dev["wins"] == meters["wins"] and dev["rounds"] == meters["rounds"]
    assert dev["cash_in"] == meters["cash_in"] + meters["tickets_in"]
    assert dev["cash_out"] == meters["cash_out"] + meters["tickets_out"]
    assert dev["cash_in"] - dev["bets"] + dev["wins"] - dev["cash_out"] == 0     # every customer cashed out


def test_floor_with_terminals_writes_modbus_devices_and_their_truth(tmp_path: Path) -> None:
    proc = start("floor", "--egms", "1", "--terminals", "2", "--pace", "0.02", "--rounds", "10", "--seed", "4",
                 "--out", str(tmp_path))
    try:
        wait_for(tmp_path / "devices.toml")
        devices = tomllib.loads((tmp_path / "devices.toml").read_text())["devices"]
        assert [d["id"] for d in devices] == ["egm-001", "term-01", "term-02"]
        terminals = devices[1:]
        for dev in terminals:
            assert dev["protocol"] == "modbus" and dev["host"] == "127.0.0.1" and dev["unit"] == 1
            assert dev["map"] == "hallsync-terminal-v1" and isinstance(dev["port"], int)
        assert terminals[0]["port"] != terminals[1]["port"]
        client = ModbusTcpClient(terminals[0]["host"], port=terminals[0]["port"], timeout=2, retries=0)
        assert client.connect()
        try:
            rr = client.read_holding_registers(0, count=20, device_id=terminals[0]["unit"])
            assert decode(HALLSYNC_TERMINAL_V1, rr.registers)["map_version"] == 1
        finally:
            client.close()
        wait_for(tmp_path / "truth.json")
        assert proc.poll() is None
    finally:
        code, err = stop(proc)
    assert code == 0, err
    truth = json.loads((tmp_path / "truth.json").read_text())["devices"]
    assert set(truth) == {"egm-001", "term-01", "term-02"}
    assert truth["egm-001"]["kind"] == "egm"
    for name in ("term-01", "term-02"):
        assert truth[name]["rounds"] == 10
        check_terminal_consistent(truth[name])
    assert truth["term-01"] != truth["term-02"]


def test_floor_of_terminals_only_with_counters_near_the_top(tmp_path: Path) -> None:
    proc = subprocess.run([*CLI, "floor", "--terminals", "1", "--pace", "0.01", "--rounds", "5",
                           "--counter-start", str(2**32 - 10), "--exit-when-done", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=20)
    assert proc.returncode == 0, proc.stderr
    dev = json.loads((tmp_path / "truth.json").read_text())["devices"]["term-01"]
    assert dev["rounds"] == 5 and dev["meters"]["rounds"] == (2**32 - 10 + 5) % 2**32
    assert dev["meters"]["bets"] == (2**32 - 10 + dev["bets"]) % 2**32


def test_terminal_prints_its_tcp_endpoint_and_answers_its_unit() -> None:
    proc = start("terminal", "--unit", "3", "--pace", "0")
    try:
        assert proc.stdout is not None
        line = json.loads(proc.stdout.readline())
        assert line["host"] == "127.0.0.1" and line["unit"] == 3 and line["port"] > 0
        client = ModbusTcpClient(line["host"], port=line["port"], timeout=2, retries=0)
        assert client.connect()
        try:
            rr = client.read_holding_registers(0, count=20, device_id=3)
            assert decode(HALLSYNC_TERMINAL_V1, rr.registers).flags["enabled"]
            assert not client.write_register(18, 1, device_id=3).isError()
            rr = client.read_holding_registers(0, count=20, device_id=3)
            assert not decode(HALLSYNC_TERMINAL_V1, rr.registers).flags["enabled"]
        finally:
            client.close()
    finally:
        code, err = stop(proc)
    assert code == 0, err


def test_terminal_rtu_prints_its_pty(tmp_path: Path) -> None:
    config = tmp_path / "term.toml"
    config.write_text("[terminal]\nrtu = true\nunit = 9\npace = 0\n")
    proc = start("terminal", "--config", str(config))
    try:
        assert proc.stdout is not None
        line = json.loads(proc.stdout.readline())
        assert set(line) == {"port", "unit"} and line["unit"] == 9 and os.path.exists(line["port"])
        client = ModbusSerialClient(line["port"], baudrate=19200, timeout=2, retries=0)
        assert client.connect()
        try:
            rr = client.read_holding_registers(0, count=20, device_id=9)
            assert decode(HALLSYNC_TERMINAL_V1, rr.registers)["map_version"] == 1
        finally:
            client.close()
    finally:
        code, err = stop(proc)
    assert code == 0, err


def test_egm_prints_its_port_and_a_config_file_is_overridden_by_flags(tmp_path: Path) -> None:
    config = tmp_path / "sim.toml"
    config.write_text('framing = "structural"\npace = 0\n[egm]\naddress = 9\n')
    proc = start("egm", "--config", str(config), "--address", "12")
    try:
        assert proc.stdout is not None
        line = json.loads(proc.stdout.readline())
        assert line["address"] == 12 and line["framing"] == "structural"
        assert os.path.exists(line["port"])
    finally:
        code, err = stop(proc)
    assert code == 0, err


def test_every_command_has_help() -> None:
    for args in ([], ["floor"], ["egm"], ["terminal"]):
        proc = subprocess.run([*CLI, *args, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=20)
        assert proc.returncode == 0 and "usage: hall-sim" in proc.stdout


def test_unknown_config_keys_are_rejected(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("egmz = 3\n")
    proc = subprocess.run([*CLI, "floor", "--config", str(config), "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode == 2 and "egmz" in proc.stderr


def test_options_resolve_defaults_then_config_then_environment_then_flags(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from firmware_sim.cli import parse_args

    config = tmp_path / "sim.toml"
    config.write_text('pace = 2\n[floor]\negms = 3\nout = "from-file"\nwait-for-host = true\n')
    base = ["floor", "--config", str(config)]
    args = parse_args(["floor", "--egms", "1", "--out", str(tmp_path)], env={})
    assert (args.pace, args.seed, args.framing, args.wait_for_host) == (3.0, 0, "marks", False)   # defaults
    args = parse_args(base, env={})
    assert (args.pace, args.egms, args.out, args.wait_for_host) == (2.0, 3, Path("from-file"), True)
    env = {"HALLSYNC_SIM_PACE": "0.5", "HALLSYNC_SIM_OUT": str(tmp_path), "HALLSYNC_SIM_WAIT_FOR_HOST": "false"}
    args = parse_args(base, env=env)
    assert (args.pace, args.egms, args.out, args.wait_for_host) == (0.5, 3, tmp_path, False)
    args = parse_args([*base, "--pace", "1", "--egms", "4", "--wait-for-host"], env=env)
    assert (args.pace, args.egms, args.wait_for_host) == (1.0, 4, True)
    with pytest.raises(SystemExit) as exited:
        parse_args(base, env={"HALLSYNC_SIM_PACE": "-1"})
    assert exited.value.code == 2
    assert "environment variable HALLSYNC_SIM_PACE: bad value '-1'" in capsys.readouterr().err
