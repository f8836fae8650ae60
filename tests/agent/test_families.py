"""Device families (agent.family, agent.families) and the one poll coordinator (agent.polling).

The poll loop's back-off and link state are checked on a scripted device whose waits are recorded
instead of slept; a third family, added the way a later issue will add card readers (its own
classes plus one registry entry), runs inside a real HallAgent with a real Mosquitto: its facts reach
its own normalizer and the outbox, its device is in the agent's state, and nothing of the runtime
changed for it."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent import families as registry
from agent.family import CommandAck, DeviceFamily, FamilySink
from agent.keys import init_keys
from agent.modbus.coordinator import ModbusPollConfig
from agent.pipeline.drafts import EventDraft, micros
from agent.polling import Backoff, FactSink, LinkState, PollCoordinator, PollOptions, Staleness
from agent.runtime import AgentConfig, HallAgent
from agent.sas.config import PollConfig
from protocols.devices import DeviceList
from protocols.sync import decode_event, generate_private_key, public_key_to_pem

from .modbus_helpers import wait_until

# ---- the primitives ---------------------------------------------------------------------------------


def test_backoff_doubles_up_to_its_cap_and_starts_over_after_an_answer() -> None:
    backoff = Backoff(0.5, 3.0)
    assert [backoff.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next() == 0.5


def test_link_goes_down_once_per_outage_also_before_the_first_answer() -> None:
    link = LinkState(down_after=3)
    assert [link.failed("silent") for _ in range(5)] == [False, False, True, False, False]
    assert not link.up and link.reported is False and link.last_error == "silent"
    assert link.up_reason() == "connect"
    link.answered(100.0)
    link.came_up()
    assert link.up and link.failures == 0 and link.last_seen_wall == 100.0
    assert [link.failed() for _ in range(4)] == [False, False, True, False]
    assert link.up_reason() == "recovered"


def test_a_value_that_stops_moving_is_stale_until_it_moves_again() -> None:
    beat = Staleness(after=2.0)
    assert not beat.observe(1, 0.0) and not beat.observe(1, 1.9) and not beat.stale
    assert not beat.observe(1, 2.0) and beat.stale
    assert beat.observe(2, 2.5) and not beat.stale        # moved again: reported once
    beat.forget()
    assert not beat.observe(2, 9.0) and not beat.stale    # a new baseline, not "unchanged since 2.5"
    assert not Staleness(after=0).observe(1, 0.0)


def test_both_families_configs_share_the_back_off_names_and_the_old_modbus_name_still_works() -> None:
    shared = {"poll_interval", "link_down_after", "probe_interval", "probe_max_interval", "command_timeout"}
    for config in (PollConfig(), ModbusPollConfig()):
        assert isinstance(config, PollOptions)
        assert shared <= set(vars(config))
    assert ModbusPollConfig(offline_after=7).link_down_after == 7
    assert ModbusPollConfig.from_mapping({"offline_after": 4, "unrelated": 1}).link_down_after == 4
    assert ModbusPollConfig.from_mapping({"link_down_after": 6}).link_down_after == 6


class Scripted(PollCoordinator):
    """A device that answers as scripted; the loop's waits are recorded, not slept."""

    def __init__(self, answers: list[bool], options: PollOptions) -> None:
        super().__init__("dev-1", options)
        self.answers = answers
        self.turns: list[tuple[str, bool, float]] = []
        self.events: list[str] = []
        self.finished = asyncio.Event()

    async def _poll(self) -> bool:
        return await self._turn("poll")

    async def _probe(self) -> bool:
        return await self._turn("probe")

    async def _turn(self, kind: str) -> bool:
        if not self.answers:
            self.finished.set()
            await asyncio.Event().wait()
        ok = self.answers.pop(0)
        if ok:
            self.link.answered(0.0)
            if not self.link.up:
                self.events.append(f"up:{self.link.up_reason()}")
                self.link.came_up()
        elif self.link.failed("no answer"):
            self.events.append("down")
        self.turns.append((kind, ok, -1.0))
        return ok

    def _pace(self, started: float) -> float:
        return self.options.poll_interval

    async def _sleep(self, seconds: float) -> None:
        kind, ok, _ = self.turns[-1]
        self.turns[-1] = (kind, ok, seconds)
        await asyncio.sleep(0)


async def test_the_poll_loop_probes_with_back_off_and_polls_at_the_interval_while_up() -> None:
    options = PollOptions(poll_interval=0.5, link_down_after=2, probe_interval=1.0, probe_max_interval=4.0)
    device = Scripted([False, False, False, False, True, True, False, False, False, True], options)
    await device.start()
    try:
        await asyncio.wait_for(device.finished.wait(), 5)
    finally:
        await device.stop()
    assert device.turns == [
        ("probe", False, 1.0), ("probe", False, 2.0), ("probe", False, 4.0), ("probe", False, 4.0),
        ("probe", True, 0.5), ("poll", True, 0.5),
        ("poll", False, 0.5),                       # one failure: still up, the next poll on time
        ("poll", False, 1.0),                       # the second takes it down: back-off from its start
        ("probe", False, 2.0), ("probe", True, 0.5)]
    assert device.events == ["down", "up:connect", "down", "up:recovered"]


# ---- a third family through the real runtime ----------------------------------------------------------


@dataclass(frozen=True)
class Tally:
    """The third family's fact: its device counted to ``n``."""

    device: str
    wall: float
    n: int


@dataclass(frozen=True)
class Ack:
    acked: bool
    detail: str = ""


class TallyCoordinator(PollCoordinator):
    task_name = "tally-coordinator"

    def __init__(self, device: str, facts: FactSink) -> None:
        super().__init__(device, PollOptions(poll_interval=0.02, link_down_after=1, probe_interval=0.02), facts)
        self.count = 0
        self.enabled = True

    async def _probe(self) -> bool:
        self.link.came_up()
        return True

    async def _poll(self) -> bool:
        if self.count < 3:
            self.count += 1
            await self.facts.put(Tally(self.device, 1_700_000_000.0 + self.count, self.count))
        return True

    async def disable_machine(self) -> CommandAck:
        self.enabled = False
        return Ack(True)

    async def enable_machine(self) -> CommandAck:
        self.enabled = True
        return Ack(True)


class TallyNormalizer:
    def __init__(self) -> None:
        self.fed: list[Any] = []
        self.restored: dict[str, bytes] = {}

    def feed(self, fact: Tally) -> list[EventDraft]:
        assert isinstance(fact, Tally), fact   # only this family's facts ever come here
        self.fed.append(fact)
        return [EventDraft(fact.device, "integration", None, micros(fact.wall), {"kind": "tally", "n": fact.n})]

    def take_checkpoints(self) -> dict[str, bytes]:
        return {}

    def restore(self, checkpoints: Mapping[str, bytes]) -> list[str]:
        self.restored = dict(checkpoints)
        return []


class TallyFamily(DeviceFamily):
    name = "tally"
    noun = "tallies"
    log_key = "tallies"
    commands = frozenset({"disable_machine", "enable_machine"})

    def __init__(self, coordinator: TallyCoordinator) -> None:
        self.coordinator = coordinator
        self.coordinators = {coordinator.device: coordinator}
        self.normalizer = TallyNormalizer()

    @classmethod
    def create(cls, config: AgentConfig, devices: DeviceList, facts: FactSink) -> TallyFamily:
        return cls(TallyCoordinator("tally-01", facts))

    async def start(self, *, tolerate_missing_ports: bool = False) -> None:
        await self.coordinator.start()

    async def stop(self) -> None:
        await self.coordinator.stop()

    def command(self, device: str, action: str, game: str | None) -> Awaitable[CommandAck] | str:
        coord = self.coordinator
        return coord.disable_machine() if action == "disable_machine" else coord.enable_machine()

    def device_states(self, locked: set[str], last_fact: Mapping[str, float]) -> list[dict[str, Any]]:
        coord = self.coordinator
        return [{"id": coord.device, "protocol": self.name, "link_up": coord.link_up, "polls": coord.count,
                 "locked_by_agent": coord.device in locked, "last_fact": last_fact.get(coord.device)}]


def test_the_registry_names_each_family_once_with_its_diag_subcommands() -> None:
    assert registry.FAMILIES == ("sas", "modbus")
    assert [kind.name for kind in registry.family_types()] == ["sas", "modbus"]
    assert list(registry.diagnostics()) == ["sas", "scan", "modbus"]


async def test_a_family_facts_go_to_its_own_sink_tagged_for_the_pipeline() -> None:
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=1)
    sink = FamilySink(queue, "tally")
    await sink.put("a")
    with pytest.raises(asyncio.QueueFull):
        sink.put_nowait("b")
    assert queue.get_nowait() == ("tally", "a")


async def test_a_third_family_runs_in_the_agent_with_nothing_but_a_registry_entry(
        tmp_path: Path, mosquitto: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agent.runtime.family_types", lambda: [*registry.family_types(), TallyFamily])
    data = tmp_path / "agent"
    init_keys(data)
    central = tmp_path / "central.pub"
    central.write_bytes(public_key_to_pem(generate_private_key().public_key()))
    devices = tmp_path / "devices.toml"
    devices.write_text('[[devices]]\nid = "term-01"\nprotocol = "modbus"\nhost = "127.0.0.1"\nport = 1\n')
    agent = HallAgent(AgentConfig(hall="hall-3", data_dir=data, devices=devices, mqtt=mosquitto.url_text,
                                  central_key=central, state_interval=0.2,
                                  modbus=ModbusPollConfig(poll_interval=0.05, timeout=0.2, link_down_after=1)))
    stop = asyncio.Event()
    run = asyncio.create_task(agent.run(stop))
    db = data / "outbox.db"

    def tallies() -> list[int]:
        if not db.exists():
            return []
        con = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
        try:
            bodies = [row[0] for row in con.execute("SELECT body FROM events ORDER BY seq")]
        finally:
            con.close()
        return [e.data["n"] for e in map(decode_event, bodies) if e.device == "tally-01"]

    try:
        family = agent.family("tally")
        await wait_until(lambda: tallies() == [1, 2, 3], 10, "the tally family's events in the outbox")
        assert [f.n for f in family.normalizer.fed] == [1, 2, 3]   # type: ignore[attr-defined]
        assert set(agent.coordinators) == {"term-01", "tally-01"}
        rows = {d["id"]: d for d in agent.state()["devices"]}
        assert rows["tally-01"]["protocol"] == "tally" and rows["tally-01"]["link_up"] is True
        assert rows["term-01"]["protocol"] == "modbus"
        agent._fail_closed("test", frozenset())     # fail-closed disables the new family's device too
        coord = family.coordinators["tally-01"]
        await wait_until(lambda: not coord.enabled, 5, "tally device disabled")  # type: ignore[attr-defined]
    finally:
        stop.set()
        await asyncio.wait_for(run, 15)
