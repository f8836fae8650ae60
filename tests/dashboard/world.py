"""A hall for the dashboard's tests: machines in every floor state, written as signed events the way
the agent writes them and ingested by central's real ingestor into a real SQLite store, with times
relative to now (the floor's "playing" is "a game in the last minute"), a real central HTTP app on a
free port, and — for commands — a real Mosquitto, central's MQTT service, and a hall side that
applies a command the way the agent does (a signed result and an ``integration`` event).

The truth (today's GGR, GGR per day, each machine's state) is computed here from what was sent, not
read back from central.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from central.api import build_app
from central.apikeys import create_api_key
from central.catalog import CatalogGame, Placement, Provider
from central.ingest import Ingestor
from central.repos import Repositories
from central.repos.commands import CommandRecord
from central.service import IngestService, ServiceConfig
from central.store import open_sqlite
from mqttlink import MqttLink, Received
from mqttlink.broker import free_port
from protocols.sync import (
    GENESIS_HASH,
    VERSION,
    CommandResult,
    Event,
    UnsealedEvent,
    decode_command,
    encode_batch,
    encode_command_result,
    generate_private_key,
    public_key_to_pem,
    seal,
    topic,
)
from protocols.sync.keys import Ed25519PrivateKey
from tests.keys import key_scope

HALL = "hall1"
TILT_NAME = 'General tilt <img src="/x" onerror="window.pwned=1">'
"""A fault name is text from the machine: it must show as text, never become markup."""
US = 1_000_000
ROLES = ("admin", "operator", "viewer", "technician", "regulator")


def now_us() -> int:
    return time.time_ns() // 1000


def utc_day(micros: int) -> str:
    return dt.datetime.fromtimestamp(micros / US, dt.UTC).date().isoformat()


@dataclass
class Chain:
    """The hall's event chain as its agent keeps it; ``flush`` ingests what was added since the last one."""

    hall: str
    key: Ed25519PrivateKey
    events: list[Event] = field(default_factory=list)
    sent: int = 0

    def add(self, device: str, kind: str, data: dict[str, Any], at: int) -> Event:
        seq = len(self.events) + 1
        prev = self.events[-1].hash if self.events else GENESIS_HASH
        event = seal(UnsealedEvent(seq=seq, id=str(uuid.UUID(int=seq, version=4)), hall=self.hall, device=device,
                                   type=kind, device_time=None, agent_time=at, data=data), prev)
        self.events.append(event)
        return event

    async def flush(self, ingestor: Ingestor) -> None:
        while self.sent < len(self.events):
            last = min(self.sent + 100, len(self.events))
            payload = encode_batch(self.events[self.sent:last], self.hall, self.key, created_at=now_us())
            outcome = await ingestor.handle(topic(self.hall, "batches"), payload)
            assert outcome.status == "stored", outcome
            self.sent = last


@dataclass
class World:
    store: Repositories
    chain: Chain
    ingestor: Ingestor
    central_key: Ed25519PrivateKey
    keys: dict[str, str] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)
    """What each machine is doing, as the test made it happen."""
    ggr_by_day: dict[str, int] = field(default_factory=dict)
    days_played: dict[str, set[str]] = field(default_factory=dict)
    """Per machine, the UTC days it played on (which depends on the time of day the test runs at)."""
    base_url: str = ""

    def play(self, device: str, bet: int, win: int, at: int) -> None:
        self.chain.add(device, "game.bet", {"amount": bet, "currency": "EUR", "game": "1", "denom": 1}, at)
        if win:
            self.chain.add(device, "game.win", {"amount": win, "currency": "EUR", "game": "1", "paid_by": "machine"},
                           at + 1000)
        self.chain.add(device, "game.ended", {"game": "1", "bet": bet, "win": win}, at + 2000)
        day = utc_day(at)
        self.ggr_by_day[day] = self.ggr_by_day.get(day, 0) + bet - win
        self.days_played.setdefault(device, set()).add(day)

    async def flush(self) -> None:
        await self.chain.flush(self.ingestor)

    @property
    def today_ggr(self) -> int:
        return self.ggr_by_day.get(utc_day(now_us()), 0)


async def build_world(tmp_path: Path) -> World:
    """Seven machines, one per floor state and one idle that played on earlier days."""
    store = await open_sqlite(tmp_path / "central.db")
    central_key = generate_private_key()
    hall_key = generate_private_key()
    chain = Chain(HALL, key=hall_key)
    assert await store.halls.add_hall(HALL, public_key_to_pem(hall_key.public_key()).decode(), now=now_us()) == "added"
    world = World(store, chain, Ingestor(store, central_key), central_key)
    now = now_us()
    hour, day = 3600 * US, 86400 * US
    # idle: played two and one day(s) ago and two hours ago, nothing since
    world.play("egm-006", 500, 100, now - 2 * day)
    world.play("egm-006", 300, 0, now - day)
    world.play("egm-006", 200, 50, now - 2 * hour)
    world.states["egm-006"] = "idle"
    # door open: played an hour ago, then the main door opened (and the belly door opened and closed)
    world.play("egm-002", 100, 0, now - hour)
    chain.add("egm-002", "device.door", {"door": "belly", "open": True, "code": "1B"}, now - hour + 10 * US)
    chain.add("egm-002", "device.door", {"door": "belly", "open": False, "code": "1C"}, now - hour + 20 * US)
    chain.add("egm-002", "device.door", {"door": "main", "open": True, "code": "19"}, now - 30 * US)
    world.states["egm-002"] = "door_open"
    # tilt: a reel tilt after a game
    world.play("egm-003", 250, 0, now - hour)
    chain.add("egm-003", "game.error", {"code": "20", "name": TILT_NAME, "category": "tilt"}, now - 20 * US)
    world.states["egm-003"] = "tilt"
    # disabled: an operator's disable_machine, applied by the agent (its integration event and its result)
    world.play("egm-004", 100, 200, now - hour)
    await store.commands.add_command(CommandRecord(
        id="c-1", hall=HALL, device="egm-004", action="disable_machine", game=None, params={}, issued_at=now - 12 * US,
        expires_at=now + hour, status="sent", detail="", created_by=None, created_at=now - 12 * US,
        updated_at=now - 12 * US))
    assert await store.commands.update_command("c-1", "applied", "LP 01 acked", now - 9 * US)
    chain.add("egm-004", "integration", {"kind": "command", "id": "c-1", "action": "disable_machine",
                                         "status": "applied", "detail": "LP 01 acked", "device": "egm-004"},
              now - 10 * US)
    world.states["egm-004"] = "disabled"
    # offline: the agent lost the link to the machine
    world.play("egm-005", 100, 0, now - hour)
    chain.add("egm-005", "device.status", {"status": "offline", "online": False, "missed_polls": 5}, now - 15 * US)
    world.states["egm-005"] = "offline"
    # playing: games in the last seconds (the door of an earlier visit closed again)
    chain.add("egm-001", "device.door", {"door": "main", "open": True, "code": "19"}, now - hour)
    chain.add("egm-001", "device.door", {"door": "main", "open": False, "code": "1A"}, now - hour + 60 * US)
    world.play("egm-001", 1000, 0, now - 8 * US)
    world.play("egm-001", 500, 2500, now - 4 * US)
    world.states["egm-001"] = "playing"
    # a terminal that reports itself disabled in its status word
    chain.add("term-01", "device.status", {"status": "baseline", "online": True, "enabled": False, "in_service": True,
                                           "error": False, "paper_low": False, "door_open": False, "error_code": 0,
                                           "device_kind": "terminal", "counters": {}}, now - 5 * US)
    world.states["term-01"] = "disabled"
    await world.flush()
    # the catalog: one provider's game at number 1 of two machines (the others stay unassigned)
    await store.catalog.put_provider(Provider(id="prov-a", name="Acme Games"))
    await store.catalog.put_game(CatalogGame(id="g-fruits", provider="prov-a", name="Fruits", category="slot",
                                             rtp_bp=9612,
                                     status="active", min_bet=10, max_bet=1000))
    for device in ("egm-001", "egm-006"):
        await store.catalog.replace_placements(HALL, device, [Placement(HALL, device, 1, "g-fruits")])
    assert await store.halls.set_presence(HALL, online=True, session=1, at=now_us())
    for role in ROLES:
        world.keys[role] = (await create_api_key(store.halls, role, await key_scope(store, role, None),
                                                 now=now_us()))[1]
    return world


class HallSide:
    """The hall's end of the command path, as the agent behaves: verify the signed command, apply it,
    record the ``integration`` event of kind ``command`` and answer with a result signed by the hall."""

    def __init__(self, world: World, broker_url: Any) -> None:
        self.world = world
        self.received: list[Any] = []
        self.hold_trail = False
        """True: the result goes out at once and the trail event waits in the chain for the next flush (an
        agent's outbox lags behind its results, as in a hall)."""
        self.link = MqttLink(broker_url, client_id=f"agent-{HALL}", handler=self._on_command,
                             subscriptions=[topic(HALL, "commands")])

    async def _on_command(self, msg: Received) -> None:
        command = decode_command(msg.payload, self.world.central_key.public_key(), expect_hall=HALL)
        self.received.append(command)
        detail = f"{command.action} done (LP 01 acked)"
        self.world.chain.add(command.device or "agent", "integration", {
            "kind": "command", "id": command.id, "action": command.action, "status": "applied", "detail": detail,
            "device": command.device}, now_us())
        if not self.hold_trail:
            await self.world.flush()
        result = CommandResult(v=VERSION, id=command.id, hall=HALL, status="applied", detail=detail, at=now_us())
        await self.link.publish(topic(HALL, "command-results"), encode_command_result(result, self.world.chain.key))


@asynccontextmanager
async def serving(world: World, broker: Any | None = None) -> AsyncIterator[HallSide | None]:
    """Central's HTTP app (dashboard and API) on a free loopback port; with ``broker``, central's MQTT
    service publishes commands and a :class:`HallSide` answers them."""
    service = hall = None
    tasks: list[asyncio.Task[None]] = []
    publisher = None
    if broker is not None:
        service = IngestService(world.store, world.ingestor, broker.url, ServiceConfig(client_id="central-dash"))
        hall = HallSide(world, broker.url)
        tasks.append(asyncio.create_task(hall.link.run()))
        await service.start()
        assert await service.link.wait_connected(10)
        assert await hall.link.wait_connected(10)
        publisher = service.publish_command
    app = build_app(world.store, currency="EUR", command_publisher=publisher, central_key=world.central_key)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    world.base_url = f"http://127.0.0.1:{port}"
    try:
        yield hall
    finally:
        await runner.cleanup()
        if service is not None:
            await service.stop()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
