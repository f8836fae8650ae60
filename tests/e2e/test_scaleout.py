"""The scaled-out HQ on PostgreSQL (issue 14), every part its own process: three halls (``hall-sim floor``
→ ``hall-agent run``), one Mosquitto, two ``hall-central serve --role ingest`` workers sharing the
batches' subscription, one ``--role api`` process and one ``--role monitor`` process, all on one
PostgreSQL database.

While the halls play, one ingest worker is SIGKILLed (the other must carry every hall on its own:
batches keep being acked) and later started again; then the broker is SIGKILLed and started again on
its port. What the operator then checks: through the API process, each machine's bets, wins, rounds
and cash equal what the players did (``truth.json``) to the minor unit; in the database every hall's
events are one row per seq, as many as the agent recorded; and every agent holds an ack for its last
seq. Nothing lost, nothing counted twice, no hall stuck.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
    live_outbox,
)
from tests.procs import Proc
from tests.waits import eventually

HALLS = ("hall-north", "hall-east", "hall-south")
EGMS = 2
ROUNDS = 120
PACE = 0.1     # seconds between a player's games: ~12 s of play, faults land well inside it
LINGER = 0.1   # the agents' batch linger (default 0.25): more, smaller batches spread over both workers

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
def pg_database(postgres: Any) -> Iterator[str]:
    """A database of its own in the run's private cluster (tests/pgcluster.py), dropped after."""
    name = f"scaleout_{uuid.uuid4().hex[:8]}"
    postgres.psql(f"CREATE DATABASE {name}")
    try:
        yield f"{postgres.url.rsplit('/', 1)[0]}/{name}"
    finally:
        postgres.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def health(port: int) -> dict[str, Any]:
    return api(f"http://127.0.0.1:{port}/api/v1/health", "")["presence"]


async def test_two_ingest_workers_one_killed_and_the_broker_restarted_leave_every_hall_exact(
        tmp_path: Path, mosquitto: Any, postgres: Any, pg_database: str) -> None:
    db, central_dir = pg_database, tmp_path / "central"
    cli("hall-central", "keys", "init", "--data-dir", str(central_dir))
    for hall in HALLS:
        enroll_hall(hall, tmp_path / hall / "agent", db)
    viewer = cli("hall-central", "apikeys", "create", "--role", "viewer", "--db", db)

    def sql(query: str) -> list[list[str]]:
        out = postgres.psql(query, database=db.rsplit("/", 1)[1])
        return [line.split("|") for line in out.splitlines() if line]

    ports = {role: free_port() for role in ("ingest-1", "ingest-2", "api", "monitor")}

    def central(role: str, *extra: str) -> Proc:
        return Proc(f"central-{role}", [str(BIN / "hall-central"), "serve", "--role", role.split("-")[0],
                                        "--data-dir", str(central_dir), "--db", db, "--mqtt", mosquitto.url_text,
                                        "--http", f"127.0.0.1:{ports[role]}", "--client-id", f"central-{role}",
                                        "--log-level", "info", *extra], tmp_path)

    workers = {role: central(role) for role in ("ingest-1", "ingest-2")}
    serving = central("api")
    monitor = central("monitor", "--monitor-interval", "1")
    floors = {h: Proc(f"floor-{h}", floor_args(tmp_path / h / "floor", egms=EGMS, terminals=0, rounds=ROUNDS,
                                               pace=PACE, seed=40 + i), tmp_path) for i, h in enumerate(HALLS)}
    agents = {h: Proc(f"agent-{h}", agent_args(h, tmp_path / h / "agent", tmp_path / h / "floor", mosquitto.url_text,
                                               central_dir / "central.pub", meter_interval=3,
                                               extra=("--linger", str(LINGER))), tmp_path) for h in HALLS}
    procs = (*floors.values(), *agents.values(), *workers.values(), serving, monitor)
    base = f"http://127.0.0.1:{ports['api']}/api/v1"

    def acked() -> dict[str, int]:
        return {h: int(live_outbox(tmp_path / h / "agent")["acked_through"]) for h in HALLS}

    def all_past(mark: dict[str, int]) -> dict[str, int] | None:
        now = acked()
        return now if all(now[h] > mark[h] for h in HALLS) else None

    def connected(role: str) -> bool:
        return bool(health(ports[role])["ingest"]["connected"])

    def truth_written() -> list[str]:
        return [h for h in HALLS if (tmp_path / h / "floor" / "truth.json").exists()]

    try:
        for proc in (*floors.values(), *workers.values(), serving, monitor):
            proc.start()
        for hall in HALLS:
            await eventually((tmp_path / hall / "floor" / "devices.toml").exists, 30, f"{hall}'s devices.toml",
                             floors[hall])
        for role in ("ingest-1", "ingest-2", "api"):
            await eventually(lambda role=role: connected(role), 30, f"central-{role} on the broker", *procs)
        await eventually(lambda: health(ports["monitor"]), 30, "the monitor process answering", monitor)
        for agent in agents.values():
            agent.start()

        # both workers carry batches, every hall has acks: then the first worker dies mid-play
        await eventually(lambda: health(ports["ingest-1"])["ingest"].get("events_stored", 0) > 0
                         and health(ports["ingest-2"])["ingest"].get("events_stored", 0) > 0
                         and all(acked().values()), 60, "both workers storing and every hall acked", *procs)
        assert truth_written() == [], "the floors finished before the faults: raise ROUNDS"
        at_kill = acked()
        workers["ingest-1"].kill()
        # the survivor carries every hall alone (the dead worker's queued share is asked again or resent)
        during_kill = await eventually(lambda: all_past(at_kill), 30, "every hall acked further while "
                                       "central-ingest-1 is dead", *procs)
        workers["ingest-1"].start()
        await eventually(lambda: connected("ingest-1"), 30, "central-ingest-1 back on the broker", *procs)

        at_broker_kill = acked()
        mosquitto.kill()   # the broker dies with batches and acks in flight
        mosquitto.start()  # same port, its persistence kept
        for role in ("ingest-1", "ingest-2", "api"):
            await eventually(lambda role=role: connected(role), 30, f"central-{role} back after the broker", *procs)
        await eventually(lambda: all_past(at_broker_kill), 30, "every hall acked after the broker restart", *procs)

        await eventually(lambda: truth_written() == list(HALLS), ROUNDS * PACE * 4 + 60,
                         "every floor to play its rounds", *procs)
        want = {h: expected(json.loads((tmp_path / h / "floor" / "truth.json").read_text())["devices"], {})
                for h in HALLS}
        assert all(len(want[h]) == EGMS and all(d["rounds"] == ROUNDS for d in want[h].values()) for h in HALLS)

        def got() -> dict[str, dict[str, dict[str, int]]]:
            return {h: central_by_device(base, viewer, h) for h in HALLS}

        try:
            await eventually(lambda: got() == want, 60, "the API process's GGR per device == truth", *procs)
        except AssertionError:
            raise AssertionError(f"central {got()}\ntruth   {want}\n" +
                                 "\n".join(f"--- {p.name} ---\n{p.tail(30)}" for p in procs)) from None
        networth = api(f"{base}/reports/ggr?group_by=hall", viewer)["rows"]
        assert {r["key"]: r["ggr"] for r in networth} == {
            h: sum(d["bets"] - d["wins"] for d in want[h].values()) for h in HALLS}

        # the database holds each hall's chain once, contiguous, as far as its agent recorded, and the
        # agent holds central's ack for its last seq (the agents keep recording meter snapshots: the
        # figures are read until one reading agrees, everything acked between two snapshots)
        def chains() -> dict[str, tuple[int, ...]]:
            rows = sql("SELECT e.hall, count(*), count(DISTINCT e.seq), count(DISTINCT e.id), min(e.seq), "
                       "max(e.seq), max(h.last_seq) FROM events e JOIN halls h ON h.id = e.hall GROUP BY e.hall")
            return {r[0]: tuple(int(x) for x in r[1:]) for r in rows}

        def settled() -> dict[str, Any] | None:
            db_side = chains()
            agent_side = {h: live_outbox(tmp_path / h / "agent") for h in HALLS}
            for h in HALLS:
                count, seqs, ids, first, last, hall_end = db_side.get(h, (0,) * 6)
                ob = agent_side[h]
                if not (count == seqs == ids == last == hall_end == ob["last_seq"] == ob["acked_through"]
                        and first == 1 and ob["unacked_count"] == 0):
                    return None
            return {"db": db_side, "agents": agent_side}

        try:
            await eventually(settled, 30, "every hall stored once to its agent's last seq and acked", *procs)
        except AssertionError:
            raise AssertionError(f"database {chains()}\nagents "
                                 f"{ {h: live_outbox(tmp_path / h / 'agent') for h in HALLS} }") from None

        # the API process served the reports and ingested nothing; nothing was refused or forked on the
        # way; exactly one monitor held the lease and evaluated
        assert health(ports["api"])["ingest"].get("events_stored", 0) == 0
        refused = sql("SELECT kind, hall, detail FROM integration_log WHERE kind IN ('rejected', 'format_error')")
        assert refused == [], refused
        assert [r[0].split("@")[0] for r in sql("SELECT owner FROM leases WHERE name = 'monitor'")] == \
            ["central-monitor"]
        resends = sql("SELECT hall, count(*) FROM integration_log WHERE kind = 'resend' GROUP BY hall ORDER BY hall")
        print(f"\nacked at the kill {at_kill}, during it {during_kill}; resend requests {resends}")
    finally:
        for proc in (*agents.values(), *workers.values(), serving, monitor, *floors.values()):
            proc.stop()
    for proc in (*workers.values(), serving, monitor):
        assert "Traceback" not in own_errors(proc.log.read_text(errors="replace")), proc.tail(60)


_AIOMQTT_RACE = re.compile(r"Exception in callback BaseSelectorEventLoop\.add_writer\(.*?"
                           r"OSError: \[Errno 9\] Bad file descriptor\n", re.S)


def own_errors(log: str) -> str:
    """A process's log without the one traceback a broker killed under it may leave, not ours: aiomqtt
    (2.5) schedules ``add_writer`` for paho's socket from paho's callback, and when the connection has
    died meanwhile the loop reports EBADF for a socket already closed; the link reconnects as usual."""
    return _AIOMQTT_RACE.sub("", log)

