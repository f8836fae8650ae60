"""A short, seeded fault campaign: ``bench/chaos.py``'s own code, run as part of the test suite.

Three EGMs and a terminal through the real agent, Mosquitto and central, each its own process; while
the floor plays, the agent is SIGKILLed and restarted, the broker SIGKILLed and restarted on its port,
central SIGKILLed and restarted, and the SAS lines corrupt and drop replies at random. What a user then
checks: every device's bets, wins, rounds, cash in and cash out at central equal what the players did.
The fault times come from the seed; the verdict waits on conditions (outbox acked, the agent's deadline
for its last ``missed`` records passed, central's figures settled), never on a sleep being long enough.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from bench.chaos import ChaosConfig, run_campaign

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def test_a_short_seeded_campaign_leaves_every_device_exact(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    lines: list[str] = []
    result = run_campaign(ChaosConfig(
        seed=3, egms=3, terminals=1, pace=0.25, rounds=40, faults=3,
        kinds=("agent_kill", "broker_kill", "central_kill"), wire="corrupt=0.02,drop=0.01",
        meter_interval=2.0, meter_settle=1.5, drain_timeout=60, work=tmp_path, log=lines.append))
    report = "\n".join([*lines, result.report()])
    with capsys.disabled():
        print("\n" + result.report())
    assert result.faults == Counter(agent_kill=1, broker_kill=1, central_kill=1), report
    wire = Counter[str]()
    for counts in result.wire.values():
        wire.update(counts)
    assert wire["corrupt"] + wire["drop"] > 0, report          # the lines did misbehave
    assert sorted(result.want) == ["egm-001", "egm-002", "egm-003", "term-01"], report
    assert all(result.want[d]["rounds"] > 0 for d in result.want), report
    assert not result.diffs and result.exact == sorted(result.want), report
