"""``hall-agent run``: pollers → normalizer → outbox → replicator, and the agent's own state file.

Crash safety: every append carries the normalizer's checkpoints of the devices it touched, committed
in the same transaction as the events; at start the normalizer is restored from them. Facts read
but not committed when the process died are therefore visible as meter differences (``missed``)
after the restart, never silently gone.

Ownership (every task has one owner, cancelled on stop, in this order):

1. the SAS poller (lines and coordinators) and the Modbus poller (terminal coordinators) stop
   first, so no new facts arrive;
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

Terminals (Modbus): a :class:`~agent.modbus.ModbusPoller` puts its facts on the SAS poller's queue;
the pipeline routes them to a :class:`~agent.modbus.TerminalNormalizer` (counter deltas), and both
normalizers' checkpoints go into the same append (device ids are unique across protocols). At start
each normalizer is restored from the checkpoints of its own devices.

State: the running agent answers ``hall-agent status|devices|outbox`` from memory on the Unix
socket ``DATA_DIR/agent.sock`` (:mod:`agent.state_socket`), so they stay truthful while the disk is
full or the machine is loaded. ``DATA_DIR/agent-state.json`` is still rewritten atomically every
``state_interval`` seconds, for an agent that could not bind its socket and as the last known state
once it stopped; the CLI reads it when the socket does not answer (and says when it is stale).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from mqttlink import BrokerUrl, parse_broker_url
from protocols.devices import load_devices
from protocols.sync import MAX_CLOCK_SKEW_SECONDS, MAX_COMMAND_LIFETIME_SECONDS, check_hall_id, public_key_from_pem
from protocols.sync.standing import StandingData

from . import sdnotify
from .commands import COMMANDS_FILE, CommandHandler
from .keys import KEY_FILE, load_private_key
from .locks import LOCKS_FILE, LockRecord
from .metrics import AgentMetrics
from .metrics_http import MetricsServer, parse_listen
from .modbus import (
    TERMINAL_FACTS,
    ModbusPollConfig,
    ModbusPoller,
    TerminalCommandResult,
    TerminalNormalizer,
)
from .modbus.poller import modbus_devices
from .outbox import Outbox, OutboxUnavailable
from .pipeline import EventDraft, Normalizer
from .pipeline.drafts import micros
from .replicator import Replicator, ReplicatorConfig
from .sas import facts as F
from .sas.config import PollConfig
from .sas.poller import SasPoller, sas_devices
from .standing import STANDING_FILE, StandingStore
from .state_socket import PID_FILE, SOCKET_FILE, STATE_FILE, AgentAlreadyRunning, InstanceLock, StateServer
from .tasks import stop_task
from .transport.errors import TransportError

log = structlog.get_logger("agent.runtime")

OUTBOX_FILE = "outbox.db"
UNLOCK_TRIES = 600
UNLOCK_RETRY_SECONDS = 1.0
"""A machine the agent locked is asked to enable every second, for ten minutes, until it ACKs."""
PRUNE_FIRST_DELAY = 30.0
"""The first prune runs this soon after start (an agent restarted more often than ``prune_interval``
would otherwise never prune), late enough not to compete with the start-up's first polls and sends."""
FACTS_PER_APPEND = 500


@dataclass(frozen=True)
class AgentConfig:
    hall: str
    data_dir: Path
    devices: Path
    mqtt: str | BrokerUrl
    """The broker: a URL, or one already parsed with its password added (mqttlink.broker_url, the CLI)."""
    central_key: Path
    currency: str = "EUR"
    gaming_day_start: dt.time = dt.time(6, 0)
    state_interval: float = 2.0
    prune_interval: float = 3600.0
    """Seconds between outbox prunes; the first runs :data:`PRUNE_FIRST_DELAY` after start."""
    retention_days: float = 7.0
    """Acked events older than this are pruned (unacked ones never are)."""
    retention_max_mb: float = 1024.0
    """And while the outbox's pages in use exceed this many MB (10^6 bytes), the oldest acked events
    go even if younger: whichever keeps less. 0 or less: no size cap."""
    meter_settle_seconds: float = 30.0
    poll: PollConfig = field(default_factory=PollConfig)
    modbus: ModbusPollConfig = field(default_factory=ModbusPollConfig)
    replicator: ReplicatorConfig = field(default_factory=ReplicatorConfig)
    command_max_skew: float = MAX_CLOCK_SKEW_SECONDS
    """Seconds a command's ``issued_at`` may lie in this agent's future; beyond: ``rejected``."""
    command_max_lifetime: float = MAX_COMMAND_LIFETIME_SECONDS
    """Longest ``expires_at - issued_at`` (seconds) of a command this agent applies; longer: ``rejected``."""
    metrics: str | None = None
    """``HOST:PORT`` to serve Prometheus ``/metrics`` on (port 0: any free port); None: no listener."""


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
        try:
            hall_devices = load_devices(config.devices)   # one checked parse (protocols.devices)
            self.devices = sas_devices(hall_devices)
            self.terminals = modbus_devices(hall_devices)
        except Exception as exc:
            raise StartupError(f"devices file {config.devices}: {exc}") from exc
        try:
            self._metrics_at = parse_listen(config.metrics) if config.metrics else None
        except ValueError as exc:
            raise StartupError(str(exc)) from exc
        self.outbox = Outbox(config.data_dir / OUTBOX_FILE, config.hall,
                             retention_seconds=config.retention_days * 86400,
                             retention_max_bytes=int(config.retention_max_mb * 1e6) if config.retention_max_mb > 0
                             else None,
                             on_fail_closed=self._fail_closed, on_recovered=self._recovered)
        self.normalizer = Normalizer(config.currency, gaming_day_start=config.gaming_day_start,
                                     settle_seconds=config.meter_settle_seconds)
        self.terminal_normalizer = TerminalNormalizer(config.currency)
        self.poller = SasPoller(self.devices, config.poll)
        self.modbus = ModbusPoller(self.terminals, config.modbus, facts=self.poller.facts)
        self.replicator = Replicator(self.outbox, config.hall, self.key, self.central_key, self.url,
                                     data_dir=config.data_dir, config=config.replicator)
        self.commands = CommandHandler(config.hall, self.key, self.central_key, config.data_dir / COMMANDS_FILE,
                                       sas=lambda: self.poller.coordinators, terminals=lambda: self.modbus.coordinators,
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
        checkpoints = await self.outbox.checkpoints()
        terminal_ids = set(self.modbus.coordinators)
        # each normalizer logs every unreadable checkpoint itself
        self.normalizer.restore({d: cp for d, cp in checkpoints.items() if d not in terminal_ids})
        self.terminal_normalizer.restore({d: cp for d, cp in checkpoints.items() if d in terminal_ids})
        self.standing.load()   # HQ's last word on the gaming day, also while HQ is unreachable
        log.info("agent_starting", hall=self.config.hall, devices=len(self.devices), terminals=len(self.terminals),
                 broker=str(self.url), last_seq=self.outbox.last_seq, acked_through=self.outbox.acked_through)
        try:  # whatever fails from here on, what did start is stopped in order (the outbox last)
            try:  # a missing adapter leaves its machines offline (retried), never the whole hall
                await self.poller.start(tolerate_missing_ports=True)
            except TransportError as exc:
                raise StartupError(f"serial line: {exc}") from exc
            await self.modbus.start()
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
            sdnotify.notify(f"READY=1\nSTATUS=hall {self.config.hall}: polling {len(self.devices)} machines, "
                            f"{len(self.terminals)} terminals")
            await stop.wait()
        finally:
            await self._shutdown()

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
        await self.poller.stop()
        await self.modbus.stop()
        if self._tasks:
            pipeline, *others = self._tasks
            for task in others:
                await stop_task(task)
            for _ in range(200):  # up to 10 s for the pipeline to empty the facts queue into the outbox
                if self.poller.facts.empty() or self.outbox.state != "ok":
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
        facts = self.poller.facts
        while True:
            self._pipeline_turns += 1
            batch = [await facts.get()]
            while len(batch) < FACTS_PER_APPEND and not facts.empty():
                batch.append(facts.get_nowait())
            drafts: list[EventDraft] = []
            for fact in batch:
                self._last_fact[fact.device] = fact.wall
                if isinstance(fact, TERMINAL_FACTS):
                    drafts.extend(self.terminal_normalizer.feed(fact))
                else:
                    drafts.extend(self.normalizer.feed(fact))
            checkpoints = {**self.normalizer.take_checkpoints(), **self.terminal_normalizer.take_checkpoints()}
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
        """Gaming-day close and settled windows of idle machines: the normalizer asks for meter
        snapshots, the coordinators read them."""
        while True:
            for request in self.normalizer.tick(time.time()):
                coord = self.poller.coordinators.get(request.device)
                if coord is not None:
                    self._spawn(self._snapshot(coord, request.reason), f"{request.reason}:{request.device}")
            await asyncio.sleep(1.0)

    async def _snapshot(self, coord: Any, reason: str) -> None:
        """One asked-for snapshot; a machine that cannot be read now is asked again later."""
        try:
            await coord.read_meters(reason)
        except Exception as exc:
            log.info("snapshot_not_read", device=coord.device, reason=reason, error=str(exc) or type(exc).__name__)

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
            stalled = (backlog and turns == self._pipeline_turns and not self.poller.facts.empty()
                       and self.outbox.state == "ok")
            dead = [t.get_name() for t in self._tasks if t.done() and t is not asyncio.current_task()]
            if dead or stalled:
                log.critical("watchdog_withheld", dead_tasks=dead, pipeline_stalled=stalled,
                             queued_facts=self.poller.facts.qsize())
            else:
                sdnotify.notify("WATCHDOG=1")
            turns, backlog = self._pipeline_turns, not self.poller.facts.empty()

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

    def _controllable(self) -> dict[str, Any]:
        """Every device the agent can disable: SAS machines (LP 01/02) and terminals (control 1/2)."""
        return {**self.poller.coordinators, **self.modbus.coordinators}

    def _apply_standing(self, doc: StandingData) -> None:
        """HQ's standing data: the gaming day its reports use becomes the day this agent closes."""
        self.normalizer.day_rule = doc.day_rule

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

    async def _unlock_machine(self, coord: Any, device: str) -> None:
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

    async def _command(self, call: Any, device: str, action: str) -> None:
        try:
            result: F.CommandResult | TerminalCommandResult = await call
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
        devices = []
        for dev in self.devices:
            coord = self.poller.coordinators[dev.id]
            ident = coord.identity
            stats = coord.stats
            devices.append({
                "id": dev.id, "protocol": "sas", "port": dev.port, "address": dev.address,
                "link_up": coord.link_up, "rte": coord.rte_active, "fast_polling": coord.fast_polling,
                "locked_by_agent": dev.id in self._locked_by_us,
                "game_id": ident.game_id if ident else None, "serial": ident.serial if ident else None,
                "last_seen": coord.last_seen_wall, "last_fact": self._last_fact.get(dev.id),
                "last_error": coord.last_error, "polls": stats.transmissions, "answered": stats.answered,
                "missed_polls": stats.missed_polls, "retries": stats.retries,
            })
        for term in self.terminals:
            tc = self.modbus.coordinators[term.id]
            ep = term.endpoint
            devices.append({
                "id": term.id, "protocol": "modbus", "transport": ep.transport, "host": ep.host,
                "port": ep.port if ep.host is not None else None, "serial": ep.serial, "unit": ep.unit,
                "map": term.map, "link_up": tc.link_up, "stale": tc.stale,
                "locked_by_agent": term.id in self._locked_by_us,
                "last_seen": tc.last_seen_wall, "last_fact": self._last_fact.get(term.id),
                "last_error": tc.last_error, "polls": tc.polls, "errors": tc.errors, "missed_polls": tc.errors,
            })
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

