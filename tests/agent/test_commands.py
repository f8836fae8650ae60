"""Central's commands reach the machines at most once and are answered (design.md, delivery rule 5).

Real parts: a HallAgent in-process with a simulated EGM on a real pty, a Modbus terminal, and
Mosquitto. A test "central" is an MqttLink that publishes commands signed with a test central key and
collects the hall's signed results.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import uuid
from pathlib import Path

from agent.commands import RESTART_DETAIL
from agent.keys import init_keys, load_private_key
from agent.runtime import AgentConfig, HallAgent
from central.commands import MAX_TTL_SECONDS
from firmware_sim.egm import Egm
from firmware_sim.pty_egm import PtyEgmServer
from mqttlink import MqttLink, Received, parse_broker_url
from protocols.sync import (
    VERSION,
    Command,
    CommandResult,
    decode_command_result,
    decode_event,
    encode_command,
    generate_private_key,
    public_key_to_pem,
    topic,
)

from .modbus_helpers import POLL, TestTerminal, wait_until

HALL = "hall-cmd"


def now() -> int:
    return time.time_ns() // 1000


def command(action: str, device: str | None = "egm-001", game: str | None = None, *, ttl: float = 30.0,
            cid: str | None = None, issued_at: int | None = None) -> Command:
    issued = now() if issued_at is None else issued_at
    return Command(v=VERSION, id=cid or str(uuid.uuid4()), hall=HALL, device=device, action=action, game=game,
                   params={}, issued_at=issued, expires_at=issued + int(ttl * 1e6))


class Central:
    """Publishes signed commands, collects verified results (by id, in arrival order)."""

    def __init__(self, url: str, hall_pub) -> None:
        self.key = generate_private_key()
        self.hall_pub = hall_pub
        self.results: list[CommandResult] = []
        self.link = MqttLink(parse_broker_url(url), client_id="test-central", handler=self._on,
                             subscriptions=[topic(HALL, "command-results")], clean_session=True)
        self.task: asyncio.Task | None = None

    async def _on(self, msg: Received) -> None:
        self.results.append(decode_command_result(msg.payload, self.hall_pub, expect_hall=HALL))

    async def start(self) -> None:
        self.task = asyncio.create_task(self.link.run())
        assert await self.link.wait_connected(5)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def send(self, cmd: Command, key=None) -> None:
        await self.link.publish(topic(HALL, "commands"), encode_command(cmd, key or self.key), qos=1)

    def of(self, cid: str) -> list[CommandResult]:
        return [r for r in self.results if r.id == cid]

    async def result(self, cid: str, timeout: float = 15.0) -> CommandResult:
        """The first result for ``cid``. The bound is generous (broker, pty line and SQLite commits
        on a loaded 2-core CI box); a healthy run answers in well under a second."""
        await wait_until(lambda: self.of(cid), timeout, f"result of {cid}")
        return self.of(cid)[0]


class Hall:
    def __init__(self, tmp_path: Path, mqtt: str, *, terminal: TestTerminal | None = None) -> None:
        self.tmp = tmp_path
        self.mqtt = mqtt
        self.data = tmp_path / "agent"
        init_keys(self.data)
        self.hall_pub = load_private_key(self.data / "hall.key").public_key()
        self.egm = Egm(1, seed=1, pace=0)
        self.server = PtyEgmServer(self.egm)
        self.terminal = terminal
        self.agent: HallAgent | None = None
        self.stop_event: asyncio.Event | None = None
        self.run: asyncio.Task | None = None

    async def setup(self, central: Central) -> None:
        port = await self.server.start()
        (self.tmp / "central.pub").write_bytes(public_key_to_pem(central.key.public_key()))
        text = f'[[devices]]\nid = "egm-001"\nprotocol = "sas"\nport = "{port}"\naddress = 1\nframing = "marks"\n\n'
        if self.terminal is not None:
            text += (f'[[devices]]\nid = "term-01"\nprotocol = "modbus"\nhost = "127.0.0.1"\n'
                     f'port = {self.terminal.port}\nunit = {self.terminal.unit}\n')
        (self.tmp / "devices.toml").write_text(text)

    async def start(self, **config) -> HallAgent:
        self.agent = agent = HallAgent(AgentConfig(hall=HALL, data_dir=self.data, devices=self.tmp / "devices.toml",
                                                   mqtt=self.mqtt, central_key=self.tmp / "central.pub",
                                                   state_interval=0.5, modbus=POLL, **config))
        self.stop_event = asyncio.Event()
        self.run = asyncio.create_task(agent.run(self.stop_event))
        coord = agent.poller.coordinators["egm-001"]
        await wait_until(lambda: coord.link_up and coord.identity is not None and agent.replicator.link.connected,
                         8, "agent online")
        return agent

    async def stop(self) -> None:
        if self.run is not None and self.stop_event is not None:
            self.stop_event.set()
            await asyncio.wait_for(self.run, 15)
            self.run = None

    async def close(self) -> None:
        await self.stop()
        await self.server.stop()

    def command_events(self) -> list[dict]:
        con = sqlite3.connect(f"{(self.data / 'outbox.db').as_uri()}?mode=ro", uri=True)
        try:
            bodies = [row[0] for row in con.execute("SELECT body FROM events ORDER BY seq")]
        finally:
            con.close()
        events = [decode_event(b) for b in bodies]
        return [e.data for e in events if e.type == "integration" and e.data.get("kind") == "command"]

    def rows(self) -> dict[str, tuple]:
        con = sqlite3.connect(self.data / "commands.db")
        try:
            return {r[0]: r[1:] for r in con.execute("SELECT id, status, detail, published FROM commands")}
        finally:
            con.close()


@contextlib.asynccontextmanager
async def hall_and_central(tmp_path: Path, mosquitto, *, terminal: TestTerminal | None = None, start: bool = True):
    hall = Hall(tmp_path, mosquitto.url_text, terminal=terminal)
    central = Central(mosquitto.url_text, hall.hall_pub)
    await hall.setup(central)
    await central.start()
    try:
        if start:
            await hall.start()
        yield hall, central
    finally:
        await central.stop()
        await hall.close()


async def test_disable_and_enable_machine_reach_the_egm_with_signed_results(tmp_path: Path, mosquitto) -> None:
    async with hall_and_central(tmp_path, mosquitto) as (hall, central):
        off = command("disable_machine")
        await central.send(off)
        result = await central.result(off.id)  # decode_command_result verified the hall's signature
        assert result.status == "applied" and result.hall == HALL
        assert hall.egm.enabled is False
        on = command("enable_machine")
        await central.send(on)
        assert (await central.result(on.id)).status == "applied"
        assert hall.egm.enabled is True
        await wait_until(lambda: len(hall.command_events()) == 2, 10, "command trail in the outbox")
        first, second = hall.command_events()
        assert first == {"kind": "command", "id": off.id, "action": "disable_machine", "device": "egm-001",
                         "status": "applied", "detail": ""}
        assert second["id"] == on.id and second["action"] == "enable_machine"
        rows = hall.rows()
        assert rows[off.id] == ("applied", "", 1) and rows[on.id] == ("applied", "", 1)


async def test_disable_game_and_unknown_game(tmp_path: Path, mosquitto) -> None:
    async with hall_and_central(tmp_path, mosquitto) as (hall, central):
        cmd = command("disable_game", game="2")
        await central.send(cmd)
        assert (await central.result(cmd.id)).status == "applied"
        assert hall.egm.game_enabled[2] is False and hall.egm.game_enabled[1] is True
        back = command("enable_game", game="2")
        await central.send(back)
        assert (await central.result(back.id)).status == "applied"
        assert hall.egm.game_enabled[2] is True
        bad = command("disable_game", game="x7")
        await central.send(bad)
        res = await central.result(bad.id)
        assert res.status == "failed" and "unknown game" in res.detail
        await wait_until(lambda: any(e["id"] == bad.id for e in hall.command_events()), 10, "trail")
        [ev] = [e for e in hall.command_events() if e["id"] == bad.id]
        assert ev["game"] == "x7" and ev["status"] == "failed"


async def test_same_id_twice_is_applied_once_and_answered_again(tmp_path: Path, mosquitto) -> None:
    async with hall_and_central(tmp_path, mosquitto) as (hall, central):
        cmd = command("disable_machine")
        await central.send(cmd)
        assert (await central.result(cmd.id)).status == "applied"
        assert hall.egm.enabled is False
        hall.egm.host_enable()  # the attendant enables it at the machine: a second LP 01 would show
        await central.send(cmd)
        await wait_until(lambda: len(central.of(cmd.id)) == 2, 4, "result sent again")
        assert [r.status for r in central.of(cmd.id)] == ["applied", "applied"]
        await asyncio.sleep(0.3)
        assert hall.egm.enabled is True
        assert hall.agent is not None and hall.agent.commands.stats["duplicates"] == 1
        assert len([e for e in hall.command_events() if e["id"] == cmd.id]) == 1


async def test_expired_command_is_answered_expired_and_not_applied(tmp_path: Path, mosquitto) -> None:
    async with hall_and_central(tmp_path, mosquitto) as (hall, central):
        cmd = command("disable_machine", ttl=1.0, issued_at=now() - 5_000_000)
        await central.send(cmd)
        result = await central.result(cmd.id)
        assert result.status == "expired"
        await asyncio.sleep(0.2)
        assert hall.egm.enabled is True


async def test_post_dated_or_long_lived_commands_are_rejected_and_not_applied(tmp_path: Path, mosquitto) -> None:
    async with hall_and_central(tmp_path, mosquitto) as (hall, central):
        future = command("disable_machine", issued_at=now() + 3600 * 1_000_000)
        year = command("disable_machine", ttl=365 * 86400.0)
        for cmd in (future, year):
            await central.send(cmd)
        res_future, res_year = await central.result(future.id), await central.result(year.id)
        assert res_future.status == "rejected" and "in this agent's future" in res_future.detail
        assert "clock skew of 300 s" in res_future.detail
        assert res_year.status == "rejected" and "longer than this agent accepts (900 s)" in res_year.detail
        await central.send(year)  # the same id again: the same answer, still not applied
        await wait_until(lambda: len(central.of(year.id)) == 2, 4, "result sent again")
        assert [r.status for r in central.of(year.id)] == ["rejected", "rejected"]
        assert hall.egm.enabled is True
        await wait_until(lambda: len(hall.command_events()) == 2, 3, "trail")
        assert {e["id"]: e["status"] for e in hall.command_events()} == {future.id: "rejected", year.id: "rejected"}
        assert hall.rows()[year.id][0] == "rejected"
        # what central issues on its longest ttl_seconds, from a clock a little ahead, is applied
        ok = command("disable_machine", ttl=float(MAX_TTL_SECONDS), issued_at=now() + 2_000_000)
        await central.send(ok)
        assert (await central.result(ok.id)).status == "applied"
        assert hall.egm.enabled is False


async def test_command_bounds_come_from_the_agent_config(tmp_path: Path, mosquitto) -> None:
    async with hall_and_central(tmp_path, mosquitto, start=False) as (hall, central):
        await hall.start(command_max_skew=7200.0, command_max_lifetime=60.0)
        future = command("disable_game", game="1", issued_at=now() + 3600 * 1_000_000)
        await central.send(future)
        assert (await central.result(future.id)).status == "applied"  # within a 2 h skew
        long = command("disable_game", game="2", ttl=120.0)
        await central.send(long)
        res = await central.result(long.id)
        assert res.status == "rejected" and "(60 s)" in res.detail
        assert hall.egm.game_enabled[1] is False and hall.egm.game_enabled[2] is True


async def test_forged_and_other_hall_commands_are_refused_silently(tmp_path: Path, mosquitto) -> None:
    async with hall_and_central(tmp_path, mosquitto) as (hall, central):
        forged = command("disable_machine")
        await central.send(forged, key=generate_private_key())
        other = Command(**{**{f: getattr(command("disable_machine"), f) for f in Command.__struct_fields__},
                           "hall": "hall-other"})
        await central.send(other)
        await central.link.publish(topic(HALL, "commands"), b"not a command", qos=1)
        assert hall.agent is not None
        await wait_until(lambda: hall.agent.commands.stats["refused"] == 3, 3, "three refusals")
        await asyncio.sleep(0.3)
        assert hall.egm.enabled is True and central.results == [] and hall.rows() == {}
        ok = command("enable_game", game="1")  # the link goes on
        await central.send(ok)
        assert (await central.result(ok.id)).status == "applied"


async def test_command_sent_while_the_agent_is_stopped_is_applied_after_start(tmp_path: Path, mosquitto) -> None:
    async with hall_and_central(tmp_path, mosquitto) as (hall, central):
        await hall.stop()  # the agent's persistent session stays at the broker
        cmd = command("disable_machine")
        await central.send(cmd)
        await asyncio.sleep(0.2)
        assert hall.egm.enabled is True and not central.of(cmd.id)
        await hall.start()
        assert (await central.result(cmd.id)).status == "applied"
        assert hall.egm.enabled is False


async def test_result_kept_while_offline_and_interrupted_apply_fails_on_restart(tmp_path: Path, mosquitto) -> None:
    async with hall_and_central(tmp_path, mosquitto) as (hall, central):
        await hall.stop()
        # a previous run died while applying one command and before applying another
        from agent.command_store import CommandStore

        store = CommandStore(hall.data / "commands.db")
        store.open()
        applying = command("disable_machine")
        queued = command("disable_game", game="3")
        store.insert(applying.id, applying.action, applying.device, None, "applying", now(),
                     encode_command(applying, central.key))
        store.insert(queued.id, queued.action, queued.device, "3", "queued", now(),
                     encode_command(queued, central.key))
        store.close()
        await hall.start()
        res = await central.result(applying.id)
        assert res.status == "failed" and res.detail == RESTART_DETAIL
        assert (await central.result(queued.id)).status == "applied"
        assert hall.egm.enabled is True  # the interrupted one is never applied again
        assert hall.egm.game_enabled[3] is False


async def test_unknown_device_and_unsupported_action_fail(tmp_path: Path, mosquitto) -> None:
    async with hall_and_central(tmp_path, mosquitto) as (hall, central):
        ghost = command("disable_machine", device="egm-999")
        await central.send(ghost)
        res = await central.result(ghost.id)
        assert res.status == "failed" and "unknown device" in res.detail
        cfg = command("set_config", device=None)
        await central.send(cfg)
        res = await central.result(cfg.id)
        assert res.status == "failed" and res.detail == "not supported by this agent yet"
        await wait_until(lambda: any(e["id"] == cfg.id for e in hall.command_events()), 10, "trail")
        [ev] = [e for e in hall.command_events() if e["id"] == cfg.id]
        assert "device" not in ev and "game" not in ev


async def test_terminal_disable_writes_control_1(tmp_path: Path, mosquitto) -> None:
    async with TestTerminal() as term, hall_and_central(tmp_path, mosquitto, terminal=term) as (hall, central):
        assert hall.agent is not None
        coord = hall.agent.coordinators["term-01"]
        await wait_until(lambda: coord.link_up, 5, "terminal online")
        cmd = command("disable_machine", device="term-01")
        await central.send(cmd)
        assert (await central.result(cmd.id)).status == "applied"
        assert (18, 1) in term.writes
        on = command("enable_machine", device="term-01")
        await central.send(on)
        assert (await central.result(on.id)).status == "applied"
        assert term.writes[-1] == (18, 2)


def test_a_commands_db_from_before_rejected_is_migrated_with_its_rows(tmp_path: Path) -> None:
    from agent.command_store import CommandStore

    path = tmp_path / "commands.db"
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE commands (
            id TEXT PRIMARY KEY, action TEXT NOT NULL, device TEXT, game TEXT,
            status TEXT NOT NULL CHECK (status IN ('queued', 'applying', 'applied', 'failed', 'expired')),
            detail TEXT NOT NULL DEFAULT '', received_at INTEGER NOT NULL, command BLOB NOT NULL, result BLOB,
            published INTEGER NOT NULL DEFAULT 0);
        INSERT INTO commands VALUES ('old', 'disable_machine', 'egm-001', NULL, 'applied', '', 1, x'00', x'01', 1);
        INSERT INTO commands VALUES ('new', 'disable_machine', 'egm-001', NULL, 'queued', '', 2, x'00', NULL, 0);
    """)
    con.close()
    store = CommandStore(path)
    store.open()
    try:
        store.finish("new", "rejected", "valid for too long", b"\x02")
        old, new = store.get("old"), store.get("new")
        assert old is not None and (old.status, old.result, old.published) == ("applied", b"\x01", True)
        assert new is not None and (new.status, new.detail, new.result) == ("rejected", "valid for too long", b"\x02")
    finally:
        store.close()
    store.open()  # a second open finds the new table and leaves it
    try:
        assert store.get("new") is not None and store.get("new").status == "rejected"
    finally:
        store.close()
