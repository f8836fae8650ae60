"""What an operator checks of a whole hall, shared by the whole-hall tests and ``bench/chaos.py``.

Central's GGR and cash per device (``GET /reports/ggr?group_by=device``) must equal what the simulated
players really did (``truth.json``), to the minor unit. An EGM's money counts from zero (the floor holds
play until the agent first polls it); a terminal's counts from its enrollment, so its baseline — the
agent's first reading, recorded as a ``device.status`` event with those counters — is subtracted.
Every call here is bounded by a timeout; nothing waits by itself (callers poll with their own deadline).
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
FIELDS: tuple[str, ...] = ("bets", "wins", "rounds", "cash_in", "cash_out")
PAGE = 1000   # the API's largest page of events and integration-log rows

Figures = dict[str, int]


class CommandFailed(AssertionError):
    """A console script of ours exited non-zero (its stderr is the message)."""


def cli(*args: str, timeout: float = 60) -> str:
    """Run one of the project's console scripts (``hall-central …``); the last line of its stdout."""
    done = subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise CommandFailed(f"{' '.join(args)} exited {done.returncode}:\n{done.stderr}{done.stdout}")
    lines = done.stdout.strip().splitlines()
    return lines[-1] if lines else ""


def api(url: str, key: str, timeout: float = 5) -> dict[str, Any]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def post(url: str, key: str, body: Mapping[str, Any], timeout: float = 5) -> dict[str, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def outbox(agent_dir: Path, timeout: float = 30) -> dict[str, Any]:
    """``hall-agent outbox --json``: what the agent recorded, what HQ acknowledged, what waits."""
    done = subprocess.run([str(BIN / "hall-agent"), "outbox", "--data-dir", str(agent_dir), "--json"],
                          capture_output=True, text=True, timeout=timeout)
    return json.loads(done.stdout)


def live_outbox(agent_dir: Path, timeout: float = 3) -> dict[str, Any]:
    """The running agent's outbox (``last_seq``, ``acked_through``, ``unacked_count``) from its state
    socket, as ``hall-agent outbox`` asks it, without starting a process: cheap enough to poll three
    agents every 50 ms. An agent not answering yet (starting) raises ConnectionError."""
    from agent.state_socket import SOCKET_FILE, AgentNotAnswering, ask_agent

    try:
        return dict(ask_agent(agent_dir / SOCKET_FILE, timeout)["outbox"])
    except AgentNotAnswering as exc:
        raise ConnectionError(str(exc)) from exc


def floor_args(floor_dir: Path, *, egms: int, terminals: int, rounds: int, pace: float, seed: int) -> list[str]:
    """``hall-sim floor`` holding play until the agent has read each machine's meters (``--wait-for-host``)."""
    return [str(BIN / "hall-sim"), "floor", "--egms", str(egms), "--terminals", str(terminals), "--rounds",
            str(rounds), "--wait-for-host", "--pace", str(pace), "--seed", str(seed), "--out", str(floor_dir)]


def agent_args(hall: str, agent_dir: Path, floor_dir: Path, mqtt: str, central_pub: Path, *,
               meter_interval: float = 2, meter_settle: float = 1.5, extra: tuple[str, ...] = ()) -> list[str]:
    """``hall-agent run`` for the floor in ``floor_dir`` (its devices.toml), logging JSON at info."""
    return [str(BIN / "hall-agent"), "run", "--hall", hall, "--data-dir", str(agent_dir), "--devices",
            str(floor_dir / "devices.toml"), "--mqtt", mqtt, "--central-key", str(central_pub),
            "--meter-interval", str(meter_interval), "--meter-settle", str(meter_settle), *extra,
            "--log-level", "info", "--log-format", "json"]


def enroll_hall(hall: str, agent_dir: Path, db: str) -> None:
    """The hall's key pair (``hall-agent keys init``) and its registration at HQ (``halls add``)."""
    cli("hall-agent", "keys", "init", "--data-dir", str(agent_dir))
    cli("hall-central", "halls", "add", hall, "--public-key", str(agent_dir / "hall.pub"), "--db", db)


def central_by_device(base: str, key: str, hall: str) -> dict[str, Figures]:
    """Central's bets, wins, rounds, cash in and out per device of ``hall``."""
    rows = api(f"{base}/reports/ggr?group_by=device&hall={urllib.parse.quote(hall)}", key)["rows"]
    return {r["key"]: {k: int(r[k]) for k in FIELDS} for r in rows}


def terminal_baselines(base: str, key: str, hall: str, device: str) -> list[dict[str, int]]:
    """The counters of every ``baseline`` device.status event of ``device``, oldest first (``key``
    must read events: admin or regulator). A hall normally has one per terminal."""
    out: list[dict[str, int]] = []
    after: int | None = None
    while True:
        query = {"hall": hall, "device": device, "type": "device.status", "limit": str(PAGE)}
        if after is not None:
            query["after_seq"] = str(after)
        page = api(f"{base}/events?{urllib.parse.urlencode(query)}", key)
        out += [r["data"]["counters"] for r in page["rows"] if r["data"].get("status") == "baseline"]
        after = page.get("next_after_seq")
        if after is None:
            return out


def expected(truth: Mapping[str, Mapping[str, Any]], baselines: Mapping[str, Mapping[str, int]]) -> dict[str, Figures]:
    """What central must report per device: truth for an EGM; truth minus its baseline for a terminal
    (tickets are cash for the terminal's customers). A terminal without a baseline counts from zero."""
    want: dict[str, Figures] = {}
    for device, t in truth.items():
        b = baselines.get(device) if t["kind"] == "terminal" else None
        if b is None:
            want[device] = {k: int(t[k]) for k in FIELDS}
            continue
        want[device] = {"bets": t["bets"] - b["bets"], "wins": t["wins"] - b["wins"],
                        "rounds": t["rounds"] - b["rounds"],
                        "cash_in": t["cash_in"] - b["cash_in"] - b["tickets_in"],
                        "cash_out": t["cash_out"] - b["cash_out"] - b["tickets_out"]}
    return want


def expected_from_central(base: str, key: str, hall: str, truth: Mapping[str, Mapping[str, Any]]) -> dict[str, Figures]:
    """:func:`expected`, with each terminal's first baseline read from central's events."""
    baselines: dict[str, dict[str, int]] = {}
    for device, t in truth.items():
        if t["kind"] == "terminal":
            found = terminal_baselines(base, key, hall, device)
            if found:
                baselines[device] = found[0]
    return expected(truth, baselines)


@dataclass(frozen=True)
class Difference:
    """One figure of one device where central and the truth disagree."""

    device: str
    field: str
    central: int | None   # None: central has no row for the device
    truth: int

    @property
    def delta(self) -> int:
        return (self.central or 0) - self.truth

    def __str__(self) -> str:
        shown = "no row" if self.central is None else str(self.central)
        return f"{self.device} {self.field} {self.delta:+d} (central {shown}, truth {self.truth})"


def differences(got: Mapping[str, Mapping[str, int]], want: Mapping[str, Mapping[str, int]]) -> list[Difference]:
    """Every figure that differs, device by device (a device central knows but truth does not is
    listed against a truth of 0; a device central has no row for counts as all zeros there)."""
    out: list[Difference] = []
    for device in sorted(set(got) | set(want)):
        have, should = got.get(device), want.get(device, dict.fromkeys(FIELDS, 0))
        for field in FIELDS:
            value = None if have is None else have[field]
            if (value or 0) != should[field]:
                out.append(Difference(device, field, value, should[field]))
    return out
