"""A whole hall, as separate processes: ``hall-sim floor`` → ``hall-agent run`` → Mosquitto → ``hall-central serve``.

What the operator checks: the GGR central reports per machine and terminal (bets, wins, rounds, cash)
equals what the simulated players really did (``truth.json``), to the minor unit, even though during
play the agent is SIGKILLed and restarted, the broker is SIGKILLed and restarted, and central is
stopped for a while and started again. Nothing is lost, nothing is counted twice. Then HQ switches a
machine and a terminal off and on through the API and sees each command applied.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from mqttlink.broker import free_port
from tests.hallcheck import (
    BIN,
    agent_args,
    api,
    central_by_device,
    cli,
    enroll_hall,
    expected,
    floor_args,
    outbox,
    post,
    terminal_baselines,
)
from tests.procs import Proc
from tests.waits import eventually

HALL = "hall-e2e"
EGMS = 3
TERMINALS = 2
ROUNDS = 45
PACE = 0.25

pytestmark = pytest.mark.slow


async def test_ggr_equals_truth_through_kills_and_restarts(tmp_path: Path, mosquitto) -> None:
    floor_dir, agent_dir, central_dir = tmp_path / "floor", tmp_path / "agent", tmp_path / "central"
    db = str(tmp_path / "central.db")
    cli("hall-central", "keys", "init", "--data-dir", str(central_dir))
    enroll_hall(HALL, agent_dir, db)
    key = cli("hall-central", "apikeys", "create", "--role", "viewer", "--db", db)
    admin = cli("hall-central", "apikeys", "create", "--role", "admin", "--db", db)
    operator = cli("hall-central", "apikeys", "create", "--role", "operator", "--db", db)
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/v1"

    floor = Proc("floor", floor_args(floor_dir, egms=EGMS, terminals=TERMINALS, rounds=ROUNDS, pace=PACE, seed=11),
                 tmp_path)
    central = Proc("central", [str(BIN / "hall-central"), "serve", "--data-dir", str(central_dir), "--db", db,
                               "--mqtt", mosquitto.url_text, "--http", f"127.0.0.1:{port}", "--log-level", "info"],
                   tmp_path)
    agent = Proc("agent", agent_args(HALL, agent_dir, floor_dir, mosquitto.url_text, central_dir / "central.pub"),
                 tmp_path)
    procs = (floor, agent, central)
    try:
        floor.start()
        await eventually(lambda: (floor_dir / "devices.toml").exists(), 20, "devices.toml", floor)
        central.start()
        await eventually(lambda: api(f"{base}/halls", key), 20, "central HTTP", central)
        agent.start()
        await eventually(lambda: any(r["bets"] for r in api(f"{base}/reports/ggr?group_by=device", key)["rows"]),
                         30, "first bets at central", *procs)

        agent.kill()  # SIGKILL mid-play: facts in memory are gone, the meters still know
        await asyncio.sleep(0.5)
        agent.start()
        await asyncio.sleep(2.5)

        mosquitto.kill()  # the broker dies with batches and acks in flight
        await asyncio.sleep(1.0)
        mosquitto.start()
        await asyncio.sleep(2.0)

        assert central.stop(20) == 0, central.tail()  # HQ down for a while; the hall keeps playing
        await asyncio.sleep(3.0)
        central.start()
        await eventually(lambda: api(f"{base}/halls", key), 30, "central HTTP after its restart", central)

        truth_file = floor_dir / "truth.json"
        await eventually(truth_file.exists, ROUNDS * PACE * 4 + 60, "the floor to finish its rounds", *procs)
        truth = json.loads(truth_file.read_text())["devices"]
        assert sorted(t["kind"] for t in truth.values()) == ["egm"] * EGMS + ["terminal"] * TERMINALS
        # A terminal's money counts from its enrollment: the agent's first reading is the baseline (its
        # counters may hold years of history), recorded as a device.status event with those counters.
        baselines = {}
        for device, t in truth.items():
            if t["kind"] == "terminal":
                (baselines[device],) = terminal_baselines(base, admin, HALL, device)
        want = expected(truth, baselines)

        def central_matches() -> dict | None:
            got = central_by_device(base, key, HALL)
            return got if got == want else None

        try:
            await eventually(central_matches, 90, "central GGR == truth", *procs)
        except AssertionError:
            got = central_by_device(base, key, HALL)
            raise AssertionError(f"central {got}\ntruth   {want}\n" +
                                 "\n".join(f"--- {p.name} ---\n{p.tail(60)}" for p in procs)) from None
        ggr = api(f"{base}/reports/ggr?group_by=hall", key)
        assert ggr["rows"][0]["ggr"] == sum(w["bets"] - w["wins"] for w in want.values())
        # every event the agent recorded is acked: the outbox holds nothing unconfirmed
        await eventually(lambda: outbox(agent_dir)["unacked_count"] == 0, 30, "outbox drained", *procs)

        # HQ switches a machine and a terminal off and on again: signed command → agent → LP 01/02 or the
        # terminal's control register → signed result → applied, visible through the API
        for device, action in (("egm-002", "disable_machine"), ("egm-002", "enable_machine"),
                               ("term-01", "disable_machine"), ("term-01", "enable_machine")):
            sent = post(f"{base}/commands", operator, {"hall": HALL, "device": device, "action": action})
            assert sent["status"] in ("pending", "sent", "applied"), sent
            await eventually(lambda cid=sent["id"]: api(f"{base}/commands/{cid}", operator)["status"] == "applied",
                             20, f"{action} {device} applied", *procs)
        # each result is also an event of the hall's chain: it reaches HQ with the next batch (after the
        # replicator's linger), so it may arrive after the result message that marked the command applied
        def applied_in_trail() -> int:
            trail = api(f"{base}/events?hall={HALL}&type=integration&limit=1000", admin)["rows"]
            return sum(1 for r in trail if r["data"].get("kind") == "command" and r["data"]["status"] == "applied")

        await eventually(lambda: applied_in_trail() >= 4, 20, "4 applied commands in the hall's trail", *procs)
        assert applied_in_trail() == 4
    finally:
        for p in (agent, central, floor):
            p.stop()
