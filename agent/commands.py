"""Central's commands on the agent side (design.md, delivery rule 5): verified, applied at most once, answered.

Flow for a message on ``hallsync/v1/halls/{hall}/commands`` (handed over by the replicator):

1. :func:`protocols.sync.decode_command` with central's key and this hall: a forged, malformed or
   other-hall command is refused (logged, counted), never applied and never answered (there is
   nothing trustworthy to answer to).
2. An id seen before is not applied again: its stored result is published again (nothing while it is
   still queued or being applied).
3. A command out of this agent's bounds (``issued_at`` more than ``max_skew`` in its future, or valid
   longer than ``max_lifetime``; :func:`protocols.sync.command_out_of_bounds`) is answered ``rejected``
   with the reason and not applied; an expired command is answered ``expired`` and not applied. Both
   are recorded first, so the same id sent again gets the same answer.
4. Otherwise the id is recorded durably (``queued``, :mod:`agent.command_store`) *before* anything
   touches a machine, and queued for its device. A per-device worker task applies commands in
   arrival order: the row becomes ``applying`` (committed) just before the coordinator call, so a
   crash there can never lead to a second application: the restart answers ``failed`` with
   "agent restarted while applying; state unknown, check the machine". Commands still ``queued``
   at a restart are applied then (after checking their expiry again).
5. The result (signed with the hall key) is stored, published with QoS 1 on ``command-results``
   (kept and published on the next connect if the link is down), and an ``integration`` event
   ``{kind: "command", id, action, device?, game?, status, detail}`` goes into the outbox.

Nothing here blocks the MQTT handler: the handler only verifies and records; machines are driven by
the workers, results are published by tasks; all are owned here and stopped by :meth:`stop`.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mqttlink import LinkDown, MqttLink
from protocols.logthrottle import WindowThrottle
from protocols.sync import (
    MAX_CLOCK_SKEW_SECONDS,
    MAX_COMMAND_LIFETIME_SECONDS,
    VERSION,
    Command,
    CommandResult,
    SyncError,
    command_expired,
    command_out_of_bounds,
    decode_command,
    encode_command_result,
    topic,
)

from .command_store import CommandRow, CommandStore
from .pipeline import EventDraft
from .tasks import stop_task

log = structlog.get_logger("agent.commands")

COMMANDS_FILE = "commands.db"
RESTART_DETAIL = "agent restarted while applying; state unknown, check the machine"
NOT_SUPPORTED = "not supported by this agent yet"
HALL_DEVICE = "agent"
"""The ``device`` of the outbox event for a command that names no device (e.g. ``set_config``)."""


def now_micros() -> int:
    return time.time_ns() // 1000


class CommandTarget(Protocol):
    """What the handler needs of a device family (:class:`agent.family.DeviceFamily` is one)."""

    @property
    def commands(self) -> frozenset[str]:
        """The actions its devices take."""

    @property
    def coordinators(self) -> Mapping[str, Any]: ...

    def command(self, device: str, action: str, game: str | None) -> Awaitable[Any] | str: ...


Families = Callable[[], Sequence[CommandTarget]]
AppendEvents = Callable[[list[EventDraft]], Awaitable[Any]]


class CommandHandler:
    """See the module docstring. ``families()`` returns the device families (each with its
    coordinators by device id and the actions they take); ``append`` appends drafts to the outbox;
    ``link`` is the replicator's MQTT link; ``max_skew`` and ``max_lifetime`` (seconds) are the
    bounds of step 3."""

    def __init__(self, hall: str, hall_key: Ed25519PrivateKey, central_key: Ed25519PublicKey,
                 store_path: str | Path, *, families: Families, append: AppendEvents,
                 link: MqttLink | None = None, clock: Callable[[], int] = now_micros,
                 link_wait: float = 5.0, max_skew: float = MAX_CLOCK_SKEW_SECONDS,
                 max_lifetime: float = MAX_COMMAND_LIFETIME_SECONDS) -> None:
        self.hall = hall
        self.hall_key = hall_key
        self.central_key = central_key
        self.store = CommandStore(store_path)
        self.families = families
        self.append = append
        self.link = link
        self.clock = clock
        self.link_wait = link_wait
        self.max_skew = int(max_skew * 1_000_000)
        self.max_lifetime = int(max_lifetime * 1_000_000)
        self.stats: collections.Counter[str] = collections.Counter()
        self._refusals = WindowThrottle()
        """Log lines of refused commands: 20 a minute per kind of refusal, the rest counted."""
        self._queues: dict[str, asyncio.Queue[Command]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started = False

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store and settle what a previous run left: ``applying`` → failed, ``queued`` → queue again."""
        self.store.open()
        self._started = True
        for row in self.store.with_status("applying"):
            log.error("command_interrupted", id=row.id, action=row.action, device=row.device, detail=RESTART_DETAIL)
            self.stats["interrupted"] += 1
            await self._finish_row(row, "failed", RESTART_DETAIL)
        for row in self.store.with_status("queued"):
            try:
                cmd = decode_command(row.command, self.central_key, expect_hall=self.hall)
            except SyncError as exc:  # cannot happen unless the central key changed; do not apply
                await self._finish_row(row, "failed", f"stored command no longer verifies: {exc}")
                continue
            if command_expired(cmd, self.clock()):
                await self._finish(cmd, "expired", "expired before it could be applied")
            else:
                self._enqueue(cmd)

    async def stop(self) -> None:
        """Stop the workers and publishing tasks (a command cut off while applying is settled at restart)."""
        for task in [*self._workers.values(), *self._tasks]:
            await stop_task(task)
        self._workers.clear()
        self._tasks.clear()
        self.store.close()
        self._started = False

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- receiving ------------------------------------------------------------------------------------

    async def on_message(self, payload: bytes) -> None:
        """A message from the commands topic (called by the replicator's MQTT handler; never blocks long)."""
        try:
            cmd = decode_command(payload, self.central_key, expect_hall=self.hall)
        except SyncError as exc:
            self.stats["refused"] += 1
            admitted, suppressed = self._refusals.admit(type(exc).__name__, self.clock())
            if admitted:  # forged commands many times a second: a bounded journal, every one counted
                log.error("command_refused", hall=self.hall, error=f"{type(exc).__name__}: {exc}", size=len(payload),
                          similar_suppressed=suppressed)
            return
        if not self._started:
            self.stats["not_started"] += 1
            log.error("command_before_start", id=cmd.id)
            return
        now = self.clock()
        row = self.store.get(cmd.id)
        if row is not None:
            self.stats["duplicates"] += 1
            log.warning("command_duplicate", id=cmd.id, action=cmd.action, status=row.status)
            if row.result is not None:
                self._publish_soon(row.id, row.result)
            return
        refusal = command_out_of_bounds(cmd, now, max_skew=self.max_skew, max_lifetime=self.max_lifetime)
        expired = command_expired(cmd, now)
        self.store.insert(cmd.id, cmd.action, cmd.device, cmd.game, "queued", now, payload)
        self.stats["received"] += 1
        log.info("command_received", id=cmd.id, action=cmd.action, device=cmd.device, game=cmd.game,
                 expired=expired)
        if refusal is not None:
            log.error("command_out_of_bounds", id=cmd.id, action=cmd.action, device=cmd.device,
                      issued_at=cmd.issued_at, expires_at=cmd.expires_at, agent_now=now, reason=refusal)
            await self._finish(cmd, "rejected", refusal)
        elif expired:
            await self._finish(cmd, "expired", "expired before it reached the agent")
        else:
            self._enqueue(cmd)

    def _enqueue(self, cmd: Command) -> None:
        key = cmd.device or HALL_DEVICE
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = asyncio.Queue()
        queue.put_nowait(cmd)
        worker = self._workers.get(key)
        if worker is None or worker.done():
            self._workers[key] = asyncio.create_task(self._work(queue), name=f"commands:{key}")

    async def _work(self, queue: asyncio.Queue[Command]) -> None:
        while True:
            cmd = await queue.get()
            await self._wait_for_device(cmd.device)
            if command_expired(cmd, self.clock()):
                await self._finish(cmd, "expired", "expired while waiting for earlier commands")
                continue
            self.store.set_status(cmd.id, "applying")
            try:
                status, detail = await self._apply(cmd)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a coordinator bug must not kill the worker; the outcome is unknown
                log.exception("command_apply_error", id=cmd.id, action=cmd.action, device=cmd.device)
                status, detail = "failed", f"error while applying ({type(exc).__name__}); check the machine"
            await self._finish(cmd, status, detail)

    # -- applying -------------------------------------------------------------------------------------

    async def _wait_for_device(self, device: str | None) -> None:
        """Give a machine whose link is not up yet (agent just started, line hiccup) up to ``link_wait``
        seconds, so a command queued at the broker while the agent was away does not fail needlessly."""
        if device is None:
            return
        family = self._family_of(device)
        if family is None:
            return
        coord = family.coordinators.get(device)
        if coord is None:
            return
        deadline = time.monotonic() + self.link_wait
        while not getattr(coord, "link_up", True) and time.monotonic() < deadline:  # noqa: ASYNC110 (no event to wait on)
            await asyncio.sleep(0.05)

    def _family_of(self, device: str) -> CommandTarget | None:
        return next((family for family in self.families() if device in family.coordinators), None)

    async def _apply(self, cmd: Command) -> tuple[str, str]:
        action, device = cmd.action, cmd.device
        if not any(action in family.commands for family in self.families()):
            return "failed", NOT_SUPPORTED
        assert device is not None  # decode_command guarantees a device for these actions
        family = self._family_of(device)
        if family is None:
            return "failed", f"unknown device {device!r}"
        call = family.command(device, action, cmd.game)
        if isinstance(call, str):   # the family says why its device cannot do this
            return "failed", call
        result = await call
        if result.acked:
            return "applied", ""
        return "failed", result.detail or "the machine did not acknowledge"

    async def _finish_row(self, row: CommandRow, status: str, detail: str) -> None:
        await self._settle(row.id, row.action, row.device, row.game, status, detail)

    async def _finish(self, cmd: Command, status: str, detail: str) -> None:
        await self._settle(cmd.id, cmd.action, cmd.device, cmd.game, status, detail)

    async def _settle(self, cid: str, action: str, device: str | None, game: str | None, status: str,
                      detail: str) -> None:
        now = self.clock()
        payload = encode_command_result(CommandResult(v=VERSION, id=cid, hall=self.hall, status=status,  # type: ignore[arg-type]
                                                      detail=detail[:2000], at=now), self.hall_key)
        self.store.finish(cid, status, detail, payload)
        self.stats[status] += 1
        logger = log.info if status == "applied" else log.warning
        logger("command_result", id=cid, action=action, device=device, game=game, status=status, detail=detail)
        data: dict[str, Any] = {"kind": "command", "id": cid, "action": action, "status": status, "detail": detail}
        if device is not None:
            data["device"] = device
        if game is not None:
            data["game"] = game
        draft = EventDraft(device=device or HALL_DEVICE, type="integration", device_time=None, agent_time=now,
                           data=data)
        self._spawn(self._record_event(draft, cid), f"command-event:{cid}")
        self._publish_soon(cid, payload)

    async def _record_event(self, draft: EventDraft, cid: str) -> None:
        try:
            await self.append([draft])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the result itself is durable in commands.db; the trail event is best effort
            self.stats["event_failures"] += 1
            log.error("command_event_not_recorded", id=cid, error=repr(exc))

    # -- publishing -----------------------------------------------------------------------------------

    def _publish_soon(self, cid: str, payload: bytes) -> None:
        self._spawn(self._publish(cid, payload), f"command-result:{cid}")

    async def _publish(self, cid: str, payload: bytes) -> None:
        if self.link is None or not self.link.connected:
            return  # kept (published = 0): on_connect sends it
        try:
            await self.link.publish(topic(self.hall, "command-results"), payload, qos=1)
        except LinkDown as exc:
            log.warning("command_result_not_published", id=cid, error=str(exc))
            return
        self.store.mark_published(cid)
        self.stats["results_published"] += 1

    async def on_connect(self) -> None:
        """After every (re)connect: publish every result the broker has not acknowledged yet."""
        if not self._started:
            return
        for row in self.store.unpublished():
            if row.result is not None:
                self._publish_soon(row.id, row.result)

    def status(self) -> dict[str, Any]:
        return {"queued": sum(q.qsize() for q in self._queues.values()), **dict(self.stats)}
