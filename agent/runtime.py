"""``hall-agent run``: pollers → normalizer → outbox → replicator, and the agent's own state file.

Crash safety: every append carries the normalizer's checkpoints of the devices it touched, committed
in the same transaction as the events; at start the normalizer is restored from them. Facts read
but not committed when the process died are therefore visible as meter differences (``missed``)
after the restart, never silently gone.

Ownership (every task has one owner, cancelled on stop, in this order):

1. the device families (:mod:`agent.families`: the SAS lines and machine coordinators, the Modbus
   terminal coordinators) stop first, so no new facts arrive;
2. the pipeline task drains the facts already read into the outbox, then stops;
3. the replicator says goodbye (retained offline status) and closes the link;
4. the outbox flushes and closes (``append`` returned ⇒ committed, so nothing accepted is lost).
5. the ``--metrics`` listener (:mod:`agent.metrics_http`) closes last, so scrapes see the shutdown.

Fail closed (design.md, delivery rule 1): when the outbox cannot commit (disk full, broken file),
every machine this agent polls is disabled (LP 01; a terminal gets control register 18 = 1) and a
critical alarm is logged; the machines are enabled again (LP 02; terminal control = 2) only when the
outbox recovers, and only those the agent disabled itself.
While the outbox is failed the pipeline holds its drafts in memory and retries: the facts queue
then fills, and the pollers slow down rather than drop anything (the EGM keeps its own buffer).

Device families (:mod:`agent.family`): the runtime holds one :class:`~agent.family.DeviceFamily` per
entry of :data:`agent.families.FAMILIES` (SAS machines, Modbus terminals), built from the one parse of
devices.toml, and treats them alike. Each family's coordinators put their facts into the family's
own sink, which tags them for the pipeline's one bounded queue; the pipeline hands each fact to its
family's normalizer, and every normalizer's checkpoints go into the same append (device ids are
unique across families). At start each normalizer is restored from the checkpoints of its own devices.

State: the running agent answers ``hall-agent status|devices|outbox`` from memory on the Unix
socket ``DATA_DIR/agent.sock`` (:mod:`agent.state_socket`), so they stay truthful while the disk is
full or the machine is loaded. ``DATA_DIR/agent-state.json`` is still rewritten atomically every
``state_interval`` seconds, for an agent that could not bind its socket and as the last known state
once it stopped; the CLI reads it when the socket does not answer (and says when it is stale).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Awaitable
from typing import Any

import structlog

from mqttlink import BrokerUrl, parse_broker_url
from protocols.devices import load_devices
from protocols.sync import check_hall_id, public_key_from_pem
from protocols.sync.standing import StandingData

from . import sdnotify
from .commands import COMMANDS_FILE, CommandHandler
from .families import family_types
from .family import CommandAck, DeviceCoordinator, DeviceFamily, FamilySink, FamilyStartError
from .keys import KEY_FILE, load_private_key
from .locks import LOCKS_FILE, LockRecord
from .metrics import AgentMetrics
from .metrics_http import MetricsServer, parse_listen
from .outbox import Outbox, OutboxUnavailable
from .pipeline import EventDraft
from .pipeline.drafts import micros
from .replicator import Replicator
from .settings import AgentConfig
from .standing import STANDING_FILE, StandingStore
from .state_socket import PID_FILE, SOCKET_FILE, STATE_FILE, AgentAlreadyRunning, InstanceLock, StateServer
from .tasks import stop_task

log = structlog.get_logger("agent.runtime")

OUTBOX_FILE = "outbox.db"
UNLOCK_TRIES = 600
UNLOCK_RETRY_SECONDS = 1.0
"""A machine the agent locked is asked to enable every second, for ten minutes, until it ACKs."""
PRUNE_FIRST_DELAY = 30.0
"""The first prune runs this soon after start (an agent restarted more often than ``prune_interval``
would otherwise never prune), late enough not to compete with the start-up's first polls and sends."""
FACTS_PER_APPEND = 500
FACTS_QUEUE_SIZE = 10_000
"""Facts read and not yet turned into events, all families together; when full, the pollers wait."""


class StartupError(Exception):
    """The agent cannot start (bad key, devices file, broker URL); the message says what to fix."""


class HallAgent:
    """One hall's agent process; see the module docstring."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        try:
            check_hall_id(config.hall)
            self.url = config.mqtt if isinstance(config.mqtt, BrokerUrl) else parse_broker_url(config.mqtt)
        except Exception as exc:
            raise StartupError(str(exc)) from exc
        try:
            self.key = load_private_key(config.data_dir / KEY_FILE)
        except Exception as exc:
            raise StartupError(f"hall key: {exc}") from exc
        try:
            self.central_key = public_key_from_pem(config.central_key.read_bytes())
        except Exception as exc:
            raise StartupError(f"central key {config.central_key}: {exc}") from exc
        self.facts: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=FACTS_QUEUE_SIZE)
        try:
            hall_devices = load_devices(config.devices)   # one checked parse (protocols.devices)
            self.families: list[DeviceFamily] = [kind.create(config, hall_devices, FamilySink(self.facts, kind.name))
                                                 for kind in family_types()]
        except Exception as exc:
            raise StartupError(f"devices file {config.devices}: {exc}") from exc
        self._by_name = {family.name: family for family in self.families}
        try:
            self._metrics_at = parse_listen(config.metrics) if config.metrics else None
        except ValueError as exc:
            raise StartupError(str(exc)) from exc
        self.outbox = Outbox(config.data_dir / OUTBOX_FILE, config.hall,
                             retention_seconds=config.retention_days * 86400,
                             retention_max_bytes=int(config.retention_max_mb * 1e6) if config.retention_max_mb > 0
                             else None,
                             on_fail_closed=self._fail_closed, on_recovered=self._recovered)
        self.replicator = Replicator(self.outbox, config.hall, self.key, self.central_key, self.url,
                                     data_dir=config.data_dir, config=config.replicator)
        self.commands = CommandHandler(config.hall, self.key, self.central_key, config.data_dir / COMMANDS_FILE,
                                       families=lambda: self.families,
                                       append=self._append_command_events, link=self.replicator.link,
                                       max_skew=config.command_max_skew,
                                       max_lifetime=config.command_max_lifetime)
        self.replicator.commands = self.commands
        self.standing = StandingStore(config.hall, self.central_key, config.data_dir / STANDING_FILE,
                                      self._apply_standing)
        self.replicator.standing = self.standing.on_message
        self.started_at = time.time()
        self.events_appended = 0
        self.fail_closed: dict[str, Any] | None = None
        self._locked_by_us: set[str] = set()
        self.locks = LockRecord(config.data_dir / LOCKS_FILE)
        self._unlocking: set[str] = set()   # asked to enable after a recovery, not yet ACKed (kept in the record)
        self._tasks: list[asyncio.Task[Any]] = []
        self._side_tasks: set[asyncio.Task[Any]] = set()
        self._last_fact: dict[str, float] = {}
        self.metrics = AgentMetrics(self)
        self.metrics_server: MetricsServer | None = None
        self.state_server: StateServer | None = None
        self.instance = InstanceLock(config.data_dir / PID_FILE)   # held for all of run(): liveness for the CLI
        self.state_file_error: str | None = None   # why the last state-file write failed (disk full)
        self.stopped_at: float | None = None        # set by a clean shutdown: the last state says so
        self._pipeline_turns = 0  # grows once per pipeline loop: the watchdog's sign that facts are drained

    # -- the families ---------------------------------------------------------------------------------

    def family(self, name: str) -> DeviceFamily:
        """The family named ``name`` (:attr:`agent.family.DeviceFamily.name`); KeyError if not registered."""
        return self._by_name[name]

    @property
    def coordinators(self) -> dict[str, DeviceCoordinator]:
        """Every device's coordinator, all families together, by device id."""
        return {device: coord for family in self.families for device, coord in family.coordinators.items()}

    @property
    def poller(self) -> Any:
        """The SAS family's poller (lines, machine coordinators): for benchmarks and tests."""
        return getattr(self.family("sas"), "poller")  # noqa: B009 (the family type is not imported here)

    @property
    def devices(self) -> Any:
        """The SAS family's devices (benchmarks read them)."""
        return getattr(self.family("sas"), "devices")  # noqa: B009

    # -- lifecycle ------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then shut down in order (module docstring).

        The data dir's lock is taken first and dropped last, so ``hall-agent status`` knows this
        process runs from its first moment (before the socket is bound) to its last."""
        try:
            self.instance.acquire()
        except AgentAlreadyRunning as exc:
            raise StartupError(str(exc)) from exc
        except OSError as exc:
            raise StartupError(f"{self.instance.path}: {exc.strerror or exc}") from exc
        try:
            await self._run(stop)
        finally:
            self.instance.release()

    async def _run(self, stop: asyncio.Event) -> None:
        try:
            await self.outbox.start()
        except OutboxUnavailable as exc:
            raise StartupError(str(exc)) from exc
        inherited = set(self.locks.prepare())   # machines a previous run locked and did not unlock
        self._restore(await self.outbox.checkpoints())
        self.standing.load()   # HQ's last word on the gaming day, also while HQ is unreachable
        counts = {family.log_key: len(family.coordinators) for family in self.families}
        log.info("agent_starting", hall=self.config.hall, **counts,
                 broker=str(self.url), last_seq=self.outbox.last_seq, acked_through=self.outbox.acked_through)
        try:  # whatever fails from here on, what did start is stopped in order (the outbox last)
            for family in self.families:
                try:  # a missing adapter leaves its devices offline (retried), never the whole hall
                    await family.start(tolerate_missing_ports=True)
                except FamilyStartError as exc:
                    raise StartupError(str(exc)) from exc
            if inherited:
                log.warning("fail_closed_inherited", devices=sorted(inherited),
                            action="a previous run locked these machines; the outbox works now: enabling them")
                self._unlock(inherited)
            await self.commands.start()  # before the link: commands queued at the broker arrive on connect
            await self.replicator.start()
            self._tasks = [asyncio.create_task(self._pipeline(), name="pipeline"),
                           asyncio.create_task(self._ticker(), name="gaming-day"),
                           asyncio.create_task(self._state_writer(), name="state-file"),
                           asyncio.create_task(self._pruner(), name="prune")]
            self._tasks.append(asyncio.create_task(self._watchdog(), name="watchdog"))  # last: stopped with the rest
            await self._start_state_socket()
            await self._start_metrics()
            # Ready only once everything answers, the metrics listener included (a taken port is a failed start).
            polling = ", ".join(f"{len(family.coordinators)} {family.noun}" for family in self.families)
            sdnotify.notify(f"READY=1\nSTATUS=hall {self.config.hall}: polling {polling}")
            await stop.wait()
        finally:
            await self._shutdown()

    def _restore(self, checkpoints: dict[str, bytes]) -> None:
        """Each family's normalizer from the checkpoints of its own devices (each logs every unreadable
        one itself); a checkpoint of a device no longer configured is kept in the outbox, unused."""
        claimed: set[str] = set()
        for family in self.families:
            own = {d: cp for d, cp in checkpoints.items() if d in family.coordinators}
            family.normalizer.restore(own)
            claimed |= own.keys()
        unknown = sorted(checkpoints.keys() - claimed)
        if unknown:
            log.info("checkpoints_of_unconfigured_devices", devices=unknown, note="not in the devices file; unused")

    async def _start_metrics(self) -> None:
        """Listen for scrapes once everything they read exists; a taken address stops the agent (cleanly)."""
        if self._metrics_at is None:
            return
        server = MetricsServer(*self._metrics_at, self.metrics.render)
        try:
            await server.start()
        except OSError as exc:
            raise StartupError(f"--metrics {self.config.metrics}: cannot listen: {exc.strerror or exc}") from exc
        self.metrics_server = server

    async def _start_state_socket(self) -> None:
        """Serve the state on ``DATA_DIR/agent.sock``. A socket that cannot be bound (a data dir path
        over the 107 bytes AF_UNIX allows, a read-only dir) is logged: the CLI then reads the file."""
        server = StateServer(self.config.data_dir / SOCKET_FILE, self.state)
        try:
            await server.start()
        except OSError as exc:
            log.warning("state_socket_unavailable", path=str(server.path), error=str(exc),
                        fallback="hall-agent status reads the state file")
            return
        self.state_server = server

    async def _shutdown(self) -> None:
        log.info("agent_stopping", hall=self.config.hall)
        sdnotify.notify("STOPPING=1")
        await self.commands.stop()  # first: no command starts on a machine whose poller is going away
        for family in self.families:
            await family.stop()
        if self._tasks:
            pipeline, *others = self._tasks
            for task in others:
                await stop_task(task)
            for _ in range(200):  # up to 10 s for the pipeline to empty the facts queue into the outbox
                if self.facts.empty() or self.outbox.state != "ok":
                    break
                await asyncio.sleep(0.05)
            await stop_task(pipeline)
        for task in list(self._side_tasks):
            await stop_task(task)
        await self.replicator.stop()
        await self.outbox.stop()
        self.locks.close()
        if self.metrics_server is not None:
            await self.metrics_server.stop()
        self.stopped_at = time.time()
        try:
            self._write_state()
        except OSError as exc:  # a full disk at shutdown: the socket answered while we ran, the file is old
            log.warning("state_file_not_written", error=str(exc))
        if self.state_server is not None:
            await self.state_server.stop()
        log.info("agent_stopped", hall=self.config.hall, last_seq=self.outbox.last_seq,
                 acked_through=self.outbox.acked_through)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    # -- facts → events -------------------------------------------------------------------------------

    async def _pipeline(self) -> None:
        facts = self.facts
        while True:
            self._pipeline_turns += 1
            batch = [await facts.get()]
            while len(batch) < FACTS_PER_APPEND and not facts.empty():
                batch.append(facts.get_nowait())
            drafts: list[EventDraft] = []
            for family, fact in batch:
                self._last_fact[fact.device] = fact.wall
                drafts.extend(self._by_name[family].normalizer.feed(fact))
            checkpoints: dict[str, bytes] = {}
            for each in self.families:
                checkpoints.update(each.normalizer.take_checkpoints())
            if drafts or checkpoints:
                await self._append(drafts, checkpoints)

    async def _append(self, drafts: list[EventDraft], checkpoints: dict[str, bytes]) -> None:
        """Append with the normalizer's checkpoints (same transaction), retrying while the outbox is
        failed: drafts are never dropped, and a restart resumes from exactly what was committed."""
        while True:
            try:
                started = time.monotonic()
                await self.outbox.append(drafts, checkpoints=checkpoints)
                self.metrics.append_seconds.observe(time.monotonic() - started)
                self.events_appended += len(drafts)
                return
            except OutboxUnavailable as exc:
                log.error("outbox_unavailable", held_events=len(drafts), reason=str(exc))
                await asyncio.sleep(1.0)

    async def _append_command_events(self, drafts: list[EventDraft]) -> None:
        """The command trail (``integration`` kind ``command``): retried while the outbox is failed."""
        await self._append(drafts, {})

    async def _ticker(self) -> None:
        """Every second, the work the families' normalizers ask for (the SAS family's gaming-day close
        and settled windows of idle machines: meter snapshots), each as an owned task."""
        while True:
            now = time.time()
            for family in self.families:
                for name, job in family.tick(now):
                    self._spawn(job, name)
            await asyncio.sleep(1.0)

    async def _watchdog(self) -> None:
        """Ping systemd's watchdog (``WatchdogSec=``) only while the agent works, so a hung agent is
        restarted: a blocked event loop sends nothing; a dead task or a stuck pipeline stops the pings.

        A full or broken outbox is *not* a hang: fail-closed already locks the machines and recovers
        by itself, and a restart could not append either (it would only forget which machines the
        agent locked), so the pings go on while the pipeline deliberately holds its facts.
        """
        period = sdnotify.watchdog_period()
        if period is None:
            return
        turns, backlog = self._pipeline_turns, False
        while True:
            await asyncio.sleep(period)
            stalled = (backlog and turns == self._pipeline_turns and not self.facts.empty()
                       and self.outbox.state == "ok")
            dead = [t.get_name() for t in self._tasks if t.done() and t is not asyncio.current_task()]
            if dead or stalled:
                log.critical("watchdog_withheld", dead_tasks=dead, pipeline_stalled=stalled,
                             queued_facts=self.facts.qsize())
            else:
                sdnotify.notify("WATCHDOG=1")
            turns, backlog = self._pipeline_turns, not self.facts.empty()

    async def _pruner(self) -> None:
        """Prune the outbox on its retention (README, "Outbox retention"): soon after start, then every
        ``prune_interval``."""
        await asyncio.sleep(min(PRUNE_FIRST_DELAY, self.config.prune_interval))
        while True:
            try:
                await self.outbox.prune(micros(time.time()))
            except Exception as exc:  # pruning is housekeeping; try again next time
                log.warning("prune_failed", error=repr(exc))
            await asyncio.sleep(self.config.prune_interval)

    # -- fail closed ----------------------------------------------------------------------------------

    def _controllable(self) -> dict[str, DeviceCoordinator]:
        """Every device the agent can disable (SAS machines: LP 01/02; terminals: control 1/2)."""
        return self.coordinators

    def _apply_standing(self, doc: StandingData) -> None:
        """HQ's standing data (the gaming day its reports use), to every family."""
        for family in self.families:
            family.apply_standing(doc)

    def _fail_closed(self, reason: str, devices: frozenset[str]) -> None:
        self.fail_closed = {"reason": reason, "since": time.time(), "devices_with_pending": sorted(devices)}
        coordinators = self._controllable()
        log.critical("fail_closed", reason=reason, action="disabling every machine until the outbox recovers",
                     devices=sorted(coordinators))
        for device, coord in coordinators.items():
            if device not in self._locked_by_us:
                self._locked_by_us.add(device)
                self._spawn(self._command(coord.disable_machine(), device, "disable_machine"), f"lock:{device}")
        self.locks.write(self._locked_by_us | self._unlocking)   # before any disable goes out: a kill now still knows

    def _recovered(self) -> None:
        log.warning("fail_closed_recovered", enabling=sorted(self._locked_by_us))
        self.fail_closed = None
        self._unlock(self._locked_by_us)

    def _unlock(self, devices: set[str]) -> None:
        """Enable the machines the agent locked (each retried until its link is up and it ACKs: a
        machine off the line at recovery would otherwise stay disabled), then forget the record."""
        coordinators = self._controllable()
        for device in sorted(devices):
            coord = coordinators.get(device)
            if coord is not None:
                self._unlocking.add(device)   # stays in the record until the machine ACKs its enable
                self._spawn(self._unlock_machine(coord, device), f"unlock:{device}")
        self._locked_by_us.clear()
        self.locks.write(self._unlocking)

    async def _unlock_machine(self, coord: DeviceCoordinator, device: str) -> None:
        for _ in range(UNLOCK_TRIES):
            if self.fail_closed is not None:
                return                       # failed again meanwhile: locked again, unlocked at that recovery
            if coord.link_up:
                try:
                    result = await coord.enable_machine()
                except Exception as exc:
                    log.warning("machine_command_failed", device=device, action="enable_machine", error=repr(exc))
                else:
                    if getattr(result, "acked", False):
                        log.warning("machine_command", device=device, action="enable_machine", acked=True)
                        self._unlocking.discard(device)
                        self.locks.write(self._locked_by_us | self._unlocking)
                        return
            await asyncio.sleep(UNLOCK_RETRY_SECONDS)
        log.error("machine_not_unlocked", device=device, tries=UNLOCK_TRIES,
                  action="still disabled by the agent's fail-closed; enable it by hand (hall-agent diag) or via HQ")

    async def _command(self, call: Awaitable[CommandAck], device: str, action: str) -> None:
        try:
            result = await call
        except Exception as exc:
            log.error("machine_command_failed", device=device, action=action, error=repr(exc))
            return
        log.warning("machine_command", device=device, action=action, acked=getattr(result, "acked", None))

    # -- state for the CLI ----------------------------------------------------------------------------

    async def _state_writer(self) -> None:
        """Rewrite the state file; a failure (full disk) is logged once per streak and shown in the
        state the socket serves, because the agent keeps running (the outbox fails closed itself)."""
        while True:
            try:
                self._write_state()
            except OSError as exc:
                if self.state_file_error is None:
                    log.warning("state_file_not_written", error=str(exc),
                                note="hall-agent status still answers from the agent's socket")
                self.state_file_error = str(exc)
            else:
                if self.state_file_error is not None:
                    log.info("state_file_written_again")
                self.state_file_error = None
            await asyncio.sleep(self.config.state_interval)

    def state(self) -> dict[str, Any]:
        devices = [row for family in self.families
                   for row in family.device_states(self._locked_by_us, self._last_fact)]
        return {
            "hall": self.config.hall, "pid": os.getpid(), "started_at": self.started_at, "updated_at": time.time(),
            "state_interval": self.config.state_interval, "currency": self.config.currency,
            "fail_closed": self.fail_closed, "events_appended": self.events_appended,
            "outbox": self.outbox.status(), "replicator": self.replicator.status(), "devices": devices,
            "standing": None if self.standing.current is None else {
                "version": self.standing.current.version, "timezone": self.standing.current.timezone,
                "gaming_day_start": self.standing.current.gaming_day_start},
            "commands": self.commands.status(),
            "socket": str(self.state_server.path) if self.state_server is not None else None,
            "state_file_error": self.state_file_error, "stopped_at": self.stopped_at,
        }

    def _write_state(self) -> None:
        """Atomically (tmp + rename). A write cut short by a full disk removes its tmp file, so the
        agent never holds space the outbox needs to recover."""
        path = self.config.data_dir / STATE_FILE
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            with os.fdopen(os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o640), "w") as fh:
                fh.write(json.dumps(self.state(), indent=1, sort_keys=True, default=str))
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

