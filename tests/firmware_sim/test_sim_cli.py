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

pytestmark = pytest.mark.timeout(60)
CLI = [sys.executable, "-m", "firmware_sim.cli"]
ROOT = Path(__file__).resolve().parents[2]


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*CLI, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


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


def test_terminals_are_refused_with_one_clear_line(tmp_path: Path) -> None:
    proc = subprocess.run([*CLI, "floor", "--egms", "1", "--terminals", "2", "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "terminals" in proc.stderr
    assert not (tmp_path / "devices.toml").exists()


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
    for args in ([], ["floor"], ["egm"]):
        proc = subprocess.run([*CLI, *args, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=20)
        assert proc.returncode == 0 and "usage: hall-sim" in proc.stdout


def test_unknown_config_keys_are_rejected(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("egmz = 3\n")
    proc = subprocess.run([*CLI, "floor", "--config", str(config), "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode == 2 and "egmz" in proc.stderr
