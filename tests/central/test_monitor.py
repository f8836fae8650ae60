"""The alert list: each kind raised when its condition holds, cleared when it stops, acknowledged once
(audited), read per role and hall scope — over a real SQLite store filled by ingesting signed events."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from central.api import PREFIX, build_app
from central.apikeys import create_api_key
from central.ingest import Ingestor
from central.monitor import Monitor, Thresholds, apply_event, evaluate
from central.repos import Repositories
from central.repos.commands import CommandRecord
from central.repos.devices import DeviceCondition
from central.repos.ingest import LogEntry
from central.repos.monitor import AlertRecord, DeviceMissed, MonitorInputs
from mqttlink import MqttLink, Received
from mqttlink.broker import free_port
from protocols.sync import VERSION, Status, encode_status, generate_private_key, public_key_to_pem, topic
from tests.keys import key_scope

from .builders import T0
from .floor_model import Chain
from .floor_model import Egm as Machine
from .test_serve import BIN, cli, get, wait_http

US = 1_000_000
MIN = 60 * US


class Clock:
    """Now in microseconds, moved by the test."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class Floor:
    """Halls whose events central ingests with central_time = the clock (so delays are the test's)."""

    def __init__(self, store: Repositories, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.ingestor = Ingestor(store, generate_private_key(), clock)
        self.chains: dict[str, Chain] = {}
        self.monitor = Monitor(store, clock=clock, thresholds=Thresholds())

    async def hall(self, name: str, online: bool | None = True) -> Chain:
        chain = self.chains[name] = Chain(name)
        await self.store.halls.add_hall(name, public_key_to_pem(chain.key.public_key()).decode(), now=T0)
        if online is not None:
            await self.store.halls.set_presence(name, online=online, session=1, at=T0)
        return chain

    def event(self, hall: str, device: str, kind: str, data: dict[str, Any], at: int | None = None) -> None:
        self.chains[hall].add(device, kind, data, self.clock.now if at is None else at)

    async def tick(self, *, advance: int = 0) -> list[AlertRecord]:
        """Ingest what was added, let time pass, run the monitor once; the alerts that hold (newest first)."""
        for chain in self.chains.values():
            await chain.flush(self.ingestor)
        self.clock.now += advance
        await self.monitor.tick()
        return await self.store.monitor.alerts(state="active")


def kinds(alerts: list[AlertRecord]) -> set[tuple[str, str | None, str, str]]:
    return {(a.hall, a.device, a.kind, a.subject) for a in alerts}


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def floor(store: Repositories, clock: Clock) -> Floor:
    return Floor(store, clock)


# ---- pure rules ----------------------------------------------------------------------------------------

def ev(device: str, kind: str, data: dict[str, Any], at: int = T0) -> dict[str, Any]:
    return {"device": device, "type": kind, "agent_time": at, "data": data}


def test_conditions_follow_the_event_stream() -> None:
    conditions: dict[tuple[str, str, str], DeviceCondition] = {}
    stream = [
        ev("egm-1", "device.door", {"door": "slot", "open": True, "code": "11"}, T0),
        ev("egm-1", "device.door", {"door": "slot", "open": True, "code": "11"}, T0 + MIN),   # repeated: keeps T0
        ev("egm-1", "game.error", {"code": "20", "name": "slot door tilt", "category": "tilt"}, T0 + 2 * MIN),
        ev("egm-2", "device.status", {"status": "handpay_pending", "code": "51"}, T0 + 3 * MIN),
        ev("term-1", "game.error", {"error_code": 7, "category": "terminal", "error": True}, T0 + 4 * MIN),
        ev("egm-3", "service", {"kind": "out_of_service", "code": "86", "name": "out of service"}, T0),
    ]
    for e in stream:
        apply_event(conditions, "A", e)
    assert {k[1:]: c.since for k, c in conditions.items()} == {
        ("egm-1", "door:slot"): T0, ("egm-1", "fault"): T0 + 2 * MIN, ("egm-2", "handpay_pending"): T0 + 3 * MIN,
        ("term-1", "fault"): T0 + 4 * MIN, ("egm-3", "out_of_service"): T0}
    for e in [ev("egm-1", "device.door", {"door": "slot", "open": False}), ev("egm-1", "game.bet", {"amount": 5}),
              ev("egm-2", "device.status", {"status": "handpay_reset", "amount": 100}),
              ev("term-1", "device.status", {"status": "status", "error": False, "door_open": False}),
              ev("egm-3", "game.ended", {})]:
        apply_event(conditions, "A", e)
    assert conditions == {}


def test_thresholds_decide_when_a_condition_becomes_an_alert() -> None:
    door = DeviceCondition("A", "egm-1", "door:cashbox", T0, "")
    inputs = MonitorInputs(halls=[], devices=[], delays={}, link_errors={}, failed_commands={}, switches={})
    th = Thresholds(door_open_s=300)
    assert evaluate(inputs, [door], T0 + 300 * US, th) == []
    (draft,) = evaluate(inputs, [door], T0 + 301 * US, th)
    assert (draft.kind, draft.subject, draft.device) == ("door_open", "cashbox", "egm-1")
    assert "301 s" in draft.detail


# ---- each kind through the store ----------------------------------------------------------------------

async def test_hall_offline_is_raised_once_cleared_and_a_return_is_a_new_alert(floor: Floor,
                                                                              store: Repositories) -> None:
    await floor.hall("A", online=False)
    await floor.hall("B", online=True)
    first = await floor.tick()
    assert kinds(first) == {("A", None, "hall_offline", "")}
    assert await floor.tick(advance=MIN) == first          # still offline: the same alert, not a new one
    await store.halls.set_presence("A", online=True, session=2, at=T0 + 2 * MIN)
    assert await floor.tick() == []
    (cleared,) = await store.monitor.alerts(state="cleared")
    assert cleared.id == first[0].id and cleared.cleared_at == floor.clock.now
    await store.halls.set_presence("A", online=False, session=2, at=T0 + 3 * MIN)
    (again,) = await floor.tick()
    assert again.kind == "hall_offline" and again.id != cleared.id


async def test_a_removed_hall_raises_no_alerts_and_its_open_ones_clear(floor: Floor, store: Repositories) -> None:
    await floor.hall("A", online=False)
    (offline,) = await floor.tick()
    await store.halls.set_hall_state("A", "removed", now=T0)
    assert await floor.tick(advance=MIN) == []
    (cleared,) = await store.monitor.alerts(state="cleared")
    assert cleared.id == offline.id


async def test_a_door_open_too_long_alerts_and_closing_it_clears(floor: Floor, clock: Clock) -> None:
    await floor.hall("A")
    floor.event("A", "egm-1", "device.door", {"door": "cashbox", "open": True, "code": "19"})
    floor.event("A", "egm-2", "device.door", {"door": "slot", "open": True, "code": "11"})
    floor.event("A", "egm-2", "device.door", {"door": "slot", "open": False, "code": "12"}, at=T0 + MIN)
    assert await floor.tick(advance=4 * MIN) == []       # four minutes: a routine visit
    alerts = await floor.tick(advance=2 * MIN)
    assert kinds(alerts) == {("A", "egm-1", "door_open", "cashbox")}
    floor.event("A", "egm-1", "device.door", {"door": "cashbox", "open": False, "code": "1A"})
    assert await floor.tick() == []


async def test_a_tilt_alerts_until_the_machine_plays_again(floor: Floor) -> None:
    await floor.hall("A")
    floor.event("A", "egm-1", "game.error", {"code": "20", "name": "general tilt", "category": "tilt"})
    (alert,) = await floor.tick()
    assert (alert.device, alert.kind) == ("egm-1", "device_fault") and "general tilt" in alert.detail
    floor.event("A", "egm-1", "game.bet", {"amount": 100, "currency": "EUR", "game": 1})
    assert await floor.tick() == []
    # in one read: it tilts, plays, tilts again (still faulty), while egm-2 tilts and recovers
    floor.event("A", "egm-1", "game.error", {"code": "21", "name": "reel tilt", "category": "tilt"})
    floor.event("A", "egm-2", "game.error", {"code": "21", "name": "reel tilt", "category": "tilt"})
    floor.event("A", "egm-1", "game.ended", {"game": 1})
    floor.event("A", "egm-2", "game.bet", {"amount": 100, "currency": "EUR", "game": 1})
    floor.event("A", "egm-1", "game.error", {"code": "20", "name": "general tilt", "category": "tilt"})
    floor.event("A", "egm-2", "game.ended", {"game": 1})
    assert kinds(await floor.tick()) == {("A", "egm-1", "device_fault", "")}


async def test_a_handpay_waiting_too_long_alerts_until_it_is_paid(floor: Floor) -> None:
    await floor.hall("A")
    floor.event("A", "egm-1", "device.status", {"status": "handpay_pending", "code": "51"})
    assert await floor.tick(advance=5 * MIN) == []
    (alert,) = await floor.tick(advance=6 * MIN)
    assert alert.kind == "handpay_pending"
    floor.event("A", "egm-1", "device.status", {"status": "handpay_reset", "amount": 50_000, "currency": "EUR"})
    assert await floor.tick() == []


async def test_a_machine_offline_or_silent_is_inaccessible(floor: Floor, store: Repositories) -> None:
    await floor.hall("A")
    await floor.hall("B", online=False)
    floor.event("A", "egm-1", "device.status", {"status": "offline", "online": False, "missed_polls": 5})
    floor.event("A", "egm-2", "meters.snapshot", {"meters": {"coin_in": 0}})
    floor.event("A", "agent", "integration", {"kind": "command", "id": "x", "action": "enable_machine",
                                              "status": "applied", "detail": ""})
    floor.event("B", "egm-1", "game.ended", {"game": 1})
    assert kinds(await floor.tick()) == {("A", "egm-1", "device_offline", ""), ("B", None, "hall_offline", "")}
    # 31 minutes without a word from egm-2 of an online hall; hall B's machines are covered by its hall alert
    assert kinds(await floor.tick(advance=31 * MIN)) == {
        ("A", "egm-1", "device_offline", ""), ("A", "egm-2", "device_silent", ""), ("B", None, "hall_offline", "")}
    floor.event("A", "egm-1", "device.status", {"status": "online", "online": True, "reason": "link"})
    floor.event("A", "egm-2", "meters.snapshot", {"meters": {"coin_in": 0}})
    assert kinds(await floor.tick()) == {("B", None, "hall_offline", "")}


async def test_processing_delay_is_central_time_minus_agent_time_of_recent_events(floor: Floor) -> None:
    await floor.hall("A")
    floor.event("A", "egm-1", "game.ended", {"game": 1}, at=T0 - 3 * MIN)    # arrives three minutes late
    (alert,) = await floor.tick()
    assert alert.kind == "processing_delay" and "180 s" in alert.detail
    assert await floor.tick(advance=6 * MIN) == []     # nothing stored recently: no current delay
    floor.event("A", "egm-1", "game.ended", {"game": 1}, at=floor.clock.now - 10 * US)
    assert await floor.tick() == []


async def test_link_errors_and_missed_records_alert_while_recent(floor: Floor, store: Repositories) -> None:
    await floor.hall("A")
    await store.ingest.log([LogEntry(kind="rejected", detail="bad signature", time=T0, hall="A"),
                     LogEntry(kind="resend", detail="gap 5..9", time=T0, hall="A"),
                     LogEntry(kind="duplicate", detail="replay", time=T0, hall="A")])
    floor.event("A", "egm-1", "integration", {"kind": "missed", "bets": 300, "rounds": 2, "reason": "overflow"})
    alerts = {a.kind: a for a in await floor.tick()}
    # all of egm-1's money so far came from that record: the machine's own alert (an hour's window) too
    assert set(alerts) == {"link_errors", "missed_events", "missed_money"}
    assert "rejected 1" in alerts["link_errors"].detail and "resend 1" in alerts["link_errors"].detail
    assert kinds(await floor.tick(advance=6 * MIN)) == {("A", "egm-1", "missed_money", "")}
    assert kinds(await floor.tick(advance=55 * MIN)) == {("A", "egm-1", "device_silent", "")}   # an hour on


def test_missed_money_thresholds_share_or_count() -> None:
    def drafts(th: Thresholds | None = None, **machines: DeviceMissed) -> dict[str, str]:
        inputs = MonitorInputs(halls=[], devices=[], delays={}, link_errors={}, failed_commands={}, switches={},
                               missed={("A", device): m for device, m in machines.items()})
        return {d.device or "": d.detail for d in evaluate(inputs, [], T0, th or Thresholds())
                if d.kind == "missed_money"}

    just_under = DeviceMissed(records=1, missed=499, turnover=10_000, since=T0)   # 4.99 %
    at_share = DeviceMissed(records=1, missed=500, turnover=10_000, since=T0)     # 5 %
    many_small = DeviceMissed(records=4, missed=10, turnover=10_000, since=T0)    # 0.1 %, four records
    cash_only = DeviceMissed(records=3, missed=0, turnover=0, since=T0)           # bills missed, no play
    found = drafts(a=just_under, b=at_share, c=many_small, d=cash_only, agent=at_share)
    assert set(found) == {"b", "c"}
    assert "5.0 % of bets and wins" in found["b"] and "(500 of 10000)" in found["b"] and "1 missed record" in found["b"]
    assert "4 missed record(s)" in found["c"]
    assert set(drafts(Thresholds(missed_share_bp=400, missed_records_min=10), a=just_under, c=many_small)) == {"a"}


async def test_a_machine_whose_money_comes_from_missed_records_alerts_until_an_hour_passes_without(
        floor: Floor, store: Repositories, clock: Clock, client: TestClient) -> None:
    """The agent under-polls egm-2 (its exception queue overflows): a quarter of its games reach
    central only as the meters' ``missed`` record. egm-1 lost one game of a hundred: the hall hears of
    the missed record, the machine is not flagged. Both go through the real ingest and store."""
    chain = await floor.hall("A")
    healthy, starved = Machine(chain, "egm-1"), Machine(chain, "egm-2")
    for m in (healthy, starved):
        m.snapshot(clock.now, "connect")
    at = clock.now
    for n in range(100):
        at += US
        healthy.play(100, 150 if n % 4 == 0 else 0, at, report=n != 50)
        starved.play(100, 150 if n % 4 == 0 else 0, at, report=n % 4 != 1)
    for m, lost in ((healthy, {"bets": 100, "rounds": 1}), (starved, {"bets": 2_500, "rounds": 25})):
        meters_at = at + US
        m.snapshot(meters_at)
        m.missed(meters_at + 30 * US, meters_at, **lost)
    clock.now = at + 32 * US
    alerts = await floor.tick(advance=MIN)        # ingested as they come, judged a minute later
    assert kinds(alerts) == {("A", None, "missed_events", ""), ("A", "egm-2", "missed_money", "")}
    (alert,) = [a for a in alerts if a.kind == "missed_money"]
    # bets 10,000 and wins 3,750 (no win was lost): 2,500 of 13,750 from the record
    assert "18.2 % of bets and wins" in alert.detail and "(2500 of 13750)" in alert.detail
    body, _ = await call(client, store, "GET", "/alerts", kind="missed_money")
    assert [(r["device"], r["state"]) for r in body["rows"]] == [("egm-2", "open")]

    # the line is fixed: every game reported from now on, snapshots every 15 minutes
    for _ in range(3):
        clock.now += 15 * MIN
        starved.play(100, 0, clock.now - 10 * US)
        starved.snapshot(clock.now)
        healthy.snapshot(clock.now)
        assert kinds(await floor.tick()) == {("A", "egm-2", "missed_money", "")}   # still within the hour
    # an hour after the short window, the window no longer holds it (nor egm-1's: the record carries
    # money from before the snapshot it follows, not after)
    clock.now = meters_at + 60 * MIN + US
    assert await floor.tick() == []
    (cleared,) = await store.monitor.alerts(state="cleared", kind="missed_money")
    assert (cleared.id, cleared.cleared_at) == (alert.id, clock.now)


async def test_many_small_missed_records_flag_a_machine_by_their_count(floor: Floor, clock: Clock) -> None:
    """One game in fifty lost per meter window: 2 % each time, under the share; the fourth record
    within the hour raises the alert."""
    chain = await floor.hall("A")
    egm = Machine(chain, "egm-7")
    egm.snapshot(clock.now, "connect")
    for window in range(4):
        for n in range(50):
            egm.play(100, 0, clock.now + (n + 1) * US, report=n != 7)
        clock.now += 10 * MIN
        egm.snapshot(clock.now)
        egm.missed(clock.now + 30 * US, clock.now, bets=100, rounds=1)
        clock.now += MIN
        alerts = kinds(await floor.tick())
        assert (("A", "egm-7", "missed_money", "") in alerts) is (window == 3), window


async def command(store: Repositories, hall: str, device: str, action: str, status: str, at: int,
                  game: str | None = None) -> None:
    cid = str(uuid.uuid4())
    await store.commands.add_command(CommandRecord(id=cid, hall=hall, device=device, action=action, game=game,
                                                   params={},
                                          issued_at=at, expires_at=at + 60 * US, status="pending", detail="",
                                          created_by="k", created_at=at, updated_at=at))
    assert await store.commands.update_command(cid, "sent", "published", at)
    assert await store.commands.update_command(cid, status, "by the hall", at)


async def test_disabled_games_and_machines_and_repeated_command_failures(floor: Floor, store: Repositories) -> None:
    await floor.hall("A")
    now = floor.clock.now
    await command(store, "A", "egm-1", "disable_game", "applied", now, game="7")
    await command(store, "A", "egm-1", "disable_game", "failed", now, game="8")     # never took effect
    await command(store, "A", "egm-2", "disable_machine", "applied", now)
    for _ in range(3):
        await command(store, "A", "egm-3", "enable_machine", "failed", now)
    assert kinds(await floor.tick()) == {("A", "egm-1", "game_disabled", "7"), ("A", "egm-2", "machine_disabled",
                                                                                "command"),
                                         ("A", "egm-3", "command_failures", "")}
    await command(store, "A", "egm-1", "enable_game", "applied", now + US, game="7")
    await command(store, "A", "egm-2", "enable_machine", "applied", now + US)
    assert kinds(await floor.tick(advance=61 * MIN)) == set()     # failures older than an hour no longer count


async def test_a_restarted_monitor_keeps_the_open_door_and_its_alert(floor: Floor, store: Repositories,
                                                                    clock: Clock) -> None:
    await floor.hall("A")
    floor.event("A", "egm-1", "device.door", {"door": "belly", "open": True, "code": "1D"})
    (alert,) = await floor.tick(advance=10 * MIN)
    assert await store.monitor.ack_alert(alert.id, by="someone", at=clock.now)
    restarted = Monitor(store, clock=clock)
    await restarted.tick()
    (still,) = await store.monitor.alerts(state="active")
    assert (still.id, still.acked_by) == (alert.id, "someone")   # not forgotten, not raised again
    assert (await restarted.tick()).events_read == 0              # and no event read twice


async def test_a_monitor_catching_up_neither_raises_from_half_read_history_nor_clears(
        floor: Floor, store: Repositories, clock: Clock) -> None:
    await floor.hall("A")
    floor.event("A", "egm-1", "device.door", {"door": "slot", "open": True, "code": "11"})
    floor.event("A", "egm-2", "device.door", {"door": "drop", "open": True, "code": "13"})
    opened = await floor.tick(advance=10 * MIN)
    assert {(a.device, a.kind) for a in opened} == {("egm-1", "door_open"), ("egm-2", "door_open")}
    for _ in range(10):
        floor.event("A", "egm-3", "game.ended", {"game": 1})
    floor.event("A", "egm-2", "device.door", {"door": "drop", "open": False, "code": "14"})
    floor.event("A", "egm-1", "device.door", {"door": "slot", "open": False, "code": "12"})
    for chain in floor.chains.values():
        await chain.flush(floor.ingestor)
    slow = Monitor(store, clock=clock, page=4, max_rows=4)      # a backlog larger than one tick reads
    first = await slow.tick()
    assert first.behind == 1 and first.events_read == 4
    assert await store.monitor.alerts(state="active") == opened     # egm-2's door was closed in the unread part
    for _ in range(3):
        await slow.tick()
    assert slow.last.behind == 0
    assert await store.monitor.alerts(state="active") == []
    assert {a.device for a in await store.monitor.alerts(state="cleared")} == {"egm-1", "egm-2"}


async def test_the_periodic_task_runs_and_stops_cleanly(store: Repositories, clock: Clock, floor: Floor) -> None:
    await floor.hall("A", online=False)
    monitor = Monitor(store, clock=clock, interval=0.05)
    monitor.start()
    try:
        for _ in range(500):   # up to 10 s
            if await store.monitor.alerts():
                break
            await asyncio.sleep(0.02)
    finally:
        await monitor.stop(timeout=5)
    assert monitor._task is None
    assert [a.kind for a in await store.monitor.alerts()] == ["hall_offline"]


# ---- the HTTP API ------------------------------------------------------------------------------------

@pytest.fixture
async def client(store: Repositories, clock: Clock) -> AsyncIterator[TestClient]:
    app = build_app(store, currency="EUR", clock=clock)
    async with TestClient(TestServer(app)) as c:
        yield c


async def call(client: TestClient, store: Repositories, method: str, path: str, role: str = "admin",
               halls: tuple[str, ...] | None = None, status: int = 200, **query: str) -> tuple[Any, str]:
    key_id, key = await create_api_key(store.halls, role, await key_scope(store, role, halls), now=T0)
    response = await client.request(method, PREFIX + path, params=query, headers={"Authorization": f"Bearer {key}"})
    assert response.content_type == "application/json"
    body = await response.json()
    assert response.status == status, body
    return body, key_id


async def test_the_alert_list_by_state_role_and_hall_scope(floor: Floor, store: Repositories,
                                                           client: TestClient) -> None:
    await floor.hall("A", online=False)
    await floor.hall("B", online=False)
    await floor.tick()
    for role in ("admin", "operator", "viewer", "technician"):
        body, _ = await call(client, store, "GET", "/alerts", role=role)
        assert {(r["hall"], r["kind"], r["state"]) for r in body["rows"]} == {("A", "hall_offline", "open"),
                                                                               ("B", "hall_offline", "open")}
    await call(client, store, "GET", "/alerts", role="regulator", status=403)
    scoped, _ = await call(client, store, "GET", "/alerts", role="technician", halls=("B",))
    assert [r["hall"] for r in scoped["rows"]] == ["B"]
    await call(client, store, "GET", "/alerts", role="technician", halls=("B",), status=403, hall="A")
    only_a, _ = await call(client, store, "GET", "/alerts", hall="A", kind="hall_offline")
    (row,) = only_a["rows"]
    assert row["raised_at_us"] == floor.clock.now and row["raised_at"].endswith("Z") and row["cleared_at"] is None
    for query in ({"state": "closed"}, {"kind": "meteor"}, {"limit": "0"}):
        body, _ = await call(client, store, "GET", "/alerts", status=400, **query)
        assert body["error"]["code"] == "bad_request"
    await store.halls.set_presence("A", online=True, session=2, at=T0 + MIN)
    await floor.tick()
    cleared, _ = await call(client, store, "GET", "/alerts", state="cleared")
    assert [(r["hall"], r["state"]) for r in cleared["rows"]] == [("A", "cleared")]
    everything, _ = await call(client, store, "GET", "/alerts", state="all")
    assert len(everything["rows"]) == 2


async def test_acknowledging_records_who_and_when_once_and_is_audited(floor: Floor, store: Repositories,
                                                                      client: TestClient, clock: Clock) -> None:
    await floor.hall("A", online=False)
    await floor.hall("B", online=False)
    await floor.tick()
    by_hall = {a.hall: a for a in await store.monitor.alerts()}
    clock.now += 5 * MIN
    await call(client, store, "POST", f"/alerts/{by_hall['A'].id}/ack", role="viewer", status=403)
    await call(client, store, "POST", f"/alerts/{by_hall['A'].id}/ack", role="regulator", status=403)
    # design.md: a technician reads devices and diagnostics of its halls, acting on the floor is not its role
    await call(client, store, "POST", f"/alerts/{by_hall['A'].id}/ack", role="technician", halls=("A",), status=403)
    body, _ = await call(client, store, "POST", f"/alerts/{by_hall['A'].id}/ack", role="operator", halls=("B",),
                         status=404)
    assert body["error"]["code"] == "not_found"
    acked, key_id = await call(client, store, "POST", f"/alerts/{by_hall['A'].id}/ack", role="operator",
                               halls=("A",))
    assert (acked["state"], acked["acked_by"], acked["acked_at_us"]) == ("acked", key_id, clock.now)
    again, _ = await call(client, store, "POST", f"/alerts/{by_hall['A'].id}/ack", role="operator", status=409)
    assert key_id in again["error"]["message"]
    (entry,) = await store.audit.audit(action="alert.ack")
    assert (entry.actor, entry.time, entry.target) == (key_id, clock.now, f"hall/A/alert/{by_hall['A'].id}")
    assert entry.before["acked_by"] is None and entry.after["acked_by"] == key_id
    open_now, _ = await call(client, store, "GET", "/alerts")
    assert [r["hall"] for r in open_now["rows"]] == ["B"]
    acked_list, _ = await call(client, store, "GET", "/alerts", state="acked")
    assert [r["hall"] for r in acked_list["rows"]] == ["A"]
    # the acknowledgement outlives the condition: cleared alerts keep who acknowledged them
    await store.halls.set_presence("A", online=True, session=2, at=T0 + MIN)
    await floor.tick()
    (cleared,) = await store.monitor.alerts(state="cleared")
    assert cleared.acked_by == key_id
    await call(client, store, "POST", "/alerts/999999/ack", status=404)
    await call(client, store, "POST", "/alerts/abc/ack", status=400)


# ---- inside hall-central serve ----------------------------------------------------------------------------

async def test_serve_runs_the_monitor_and_stops_cleanly(tmp_path: Path, mosquitto) -> None:
    data, db = tmp_path / "central", str(tmp_path / "central.db")
    cli("keys", "init", "--data-dir", str(data))
    pem = tmp_path / "h1.pub"
    hall_key = generate_private_key()
    pem.write_bytes(public_key_to_pem(hall_key.public_key()))
    cli("halls", "add", "h1", "--public-key", str(pem), "--db", db)
    key = cli("apikeys", "create", "--role", "operator", "--db", db)
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/v1"
    proc = subprocess.Popen([str(BIN), "serve", "--data-dir", str(data), "--db", db, "--mqtt", mosquitto.url_text,
                             "--http", f"127.0.0.1:{port}", "--monitor-interval", "0.2"],
                            stderr=subprocess.PIPE, text=True)
    try:
        await wait_http(f"{base}/health", proc)

        async def ignore(msg: Received) -> None:
            pass

        agent = MqttLink(mosquitto.url, client_id="fake-agent-h1", handler=ignore)
        task = asyncio.create_task(agent.run())
        assert await agent.wait_connected(10)
        await agent.publish(topic("h1", "status"), encode_status(Status(v=VERSION, hall="h1", online=False,
                                                                          session=1, at=1), hall_key), retain=True)
        rows: list[Any] = []
        for _ in range(100):
            rows = (await asyncio.to_thread(get, f"{base}/alerts", key))[1]["rows"]
            if rows:
                break
            await asyncio.sleep(0.1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert [(r["hall"], r["kind"]) for r in rows] == [("h1", "hall_offline")]
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
        err = proc.stderr.read() if proc.stderr else ""
    assert code == 0, err
    assert "Traceback" not in err


@pytest.mark.parametrize(("flag", "value"), [("--alert-door-open", "0"), ("--alert-delay", "-3"),
                                             ("--monitor-interval", "-1"), ("--alert-device-silent", "90000"),
                                             ("--alert-missed-share", "0"), ("--alert-missed-share", "101"),
                                             ("--alert-missed-records", "0")])
def test_serve_refuses_a_bad_threshold_before_starting(tmp_path: Path, flag: str, value: str) -> None:
    done = subprocess.run([str(BIN), "serve", "--data-dir", str(tmp_path), "--db", str(tmp_path / "c.db"),
                           "--mqtt", "mqtt://127.0.0.1:1", flag, value], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and flag in done.stderr
    assert not (tmp_path / "c.db").exists()


def test_the_missed_money_thresholds_come_from_serve_flags_or_the_config() -> None:
    from central.cli import _thresholds

    base = {"alert_door_open": None, "alert_device_silent": None, "alert_delay": None,
            "alert_missed_share": None, "alert_missed_records": None}
    assert _thresholds(base) == Thresholds()
    th = _thresholds({**base, "alert_missed_share": 12.5, "alert_missed_records": 10})
    assert (th.missed_share_bp, th.missed_records_min) == (1250, 10)
