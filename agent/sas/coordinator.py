"""One poll coordinator per machine: schedule, back-off, staleness, and the facts it learns.

Like Home Assistant's DataUpdateCoordinator, the coordinator owns *when* to ask (general polls at
the configured cadence, meters on a schedule and after significant events, clock sync every 24 h,
probes with back-off while the link is down) and turns answers into :mod:`agent.sas.facts`. The
:class:`~agent.sas.line.SasLine` owns *how*: one port, one transaction at a time, implied ACKs and
immediate repeats. Several coordinators may share one line (multidrop).

Facts go to ``self.facts``, a bounded ``asyncio.Queue`` (pass one queue to many coordinators to
merge them). When it is full the coordinator stops polling until there is room: the EGM keeps its
exceptions in NVRAM meanwhile, so back-pressure loses nothing, whereas dropping would.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import structlog

from protocols.sas import framing
from protocols.sas import longpolls as lp
from protocols.sas.clock import from_sas, to_sas
from protocols.sas.denominations import DENOMINATION_CENTS
from protocols.sas.errors import SASError
from protocols.sas.exceptions import ExceptionCode, Significance, codes_with, exception_name
from protocols.sas.meters import meter_name, meter_unit

from ..tasks import stop_task
from ..transport.errors import TransportError
from . import facts as F
from .config import PollConfig
from .line import SasLine
from .stats import LinkStats
from .transaction import Outcome, TransactionResult

log = structlog.get_logger("agent.sas")

SIGNIFICANT_EXCEPTIONS: frozenset[int] = codes_with(Significance.READ_METERS)
"""Exceptions after which the meters are read at once (design.md: door, power, RAM clear, options or
game change, in/out of service, handpay, ticket); the one table is :mod:`protocols.sas.exceptions`."""
RTE_ENABLE_ROUNDS = 8
"""How many times LP 0E is asked again while queued RTE events answer it (24 each: a FIFO of 20 and
the priority exceptions drain long before; a machine still playing fast cannot hold RTE off)."""
RTE_REQUEUE_LIMIT = 24
"""How often a long poll is asked again when RTE events answer it instead (each event is consumed,
and the EGM's FIFO holds at least 20, so a busy machine cannot starve a read forever)."""
IDENTITY_TRIES = 5
"""How often per link-up the identity is read again when its LP 1F or LP A0 went unanswered. A
machine playing faster than its cadence drains has more than :data:`RTE_REQUEUE_LIMIT` events queued
at connect, so its first read can lose against its own events; without another try it stayed at the
200 ms cadence (A0 grants 40 ms) until the next link-up — the busiest machines polled slowest
(bench/sas_lines.py, scenario ``agent``). Each try drains that many events at line speed."""
READ_TRIES = 5
"""How often LP 3D (ticket) and LP 1B (handpay) are asked again when the EGM's queued events kept
answering them instead (see ``_again``)."""
METERS_1C: tuple[tuple[str, int | None], ...] = (
    ("coin_in", 0x00), ("coin_out", 0x01), ("total_drop", 0x24), ("jackpot", 0x02),
    ("games_played", 0x05), ("games_won", 0x06), ("slot_door_opened", None), ("power_reset", None),
)


class LinkLost(Exception):
    """Raised inside a job when the link went down; the run loop goes back to probing."""


class Resync(Exception):
    """Raised inside a job when the EGM chirped: it lost the link and must be resynchronized."""


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class MachineCoordinator:
    """Polls one EGM address on a :class:`SasLine` and yields :data:`~agent.sas.facts.Fact` s.

    ``start()`` spawns the coordinator's task; ``stop()`` cancels it and waits. Control methods
    (:meth:`disable_machine`, :meth:`enable_game`, …) are async and return a
    :class:`~agent.sas.facts.CommandResult` whose ``acked`` says whether the EGM ACKed.
    """

    def __init__(self, line: SasLine, address: int, *, device: str | None = None,
                 config: PollConfig | None = None, facts: asyncio.Queue[F.Fact] | None = None) -> None:
        if not 1 <= address <= 127:
            raise ValueError(f"SAS address {address} is outside 1..127")
        self.line = line
        self.address = address
        self.device = device or f"sas-{address:03d}"
        self.config = config or PollConfig()
        self.facts: asyncio.Queue[F.Fact] = facts if facts is not None else asyncio.Queue(maxsize=1000)
        self.stats = LinkStats()
        self.link_up = False
        self.rte_active = False
        self.fast_polling = False
        self.identity: F.Identity | None = None
        self.last_seen_wall: float | None = None
        self.last_error: str | None = None
        self._log = log.bind(device=self.device, address=address, port=line.name)
        self._task: asyncio.Task[None] | None = None
        self._running = False
        self._pending: deque[F.Fact] = deque()
        self._jobs: deque[tuple[str, Callable[[], Awaitable[None]]]] = deque()
        self._commands: deque[tuple[Callable[[], Awaitable[Any]], asyncio.Future[Any]]] = deque()
        self._waker: asyncio.Future[None] | None = None
        self._missed = 0
        self._need_sync = True
        self._ever_up = False
        self._failed_probes = 0           # before the first contact: reported once as offline
        self._meter_source: str | None = None
        self._next_general = 0.0
        self._next_meters = float("inf")
        self._next_clock = float("inf")
        self._last_answer = 0.0
        self._reply_mono = 0.0           # when the last long poll's own reply (not an event) arrived
        self._just_polled = False
        self._rte_events = 0             # RTE events that answered a long poll (LP 0E asks again while they come)
        self._cadence_pending = False    # the next poll through the line is a general poll's: time it
        self._identity_tries = 0         # identity reads asked again since the link came up
        self._last_general: tuple[float, float] | None = None   # the last general poll's wire time and how
        # long it had to last at least (its quiet timeout); None: none since the link came up

    # ---- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is None:
            self._running = True
            self._task = asyncio.create_task(self._run(), name=f"sas-coordinator:{self.device}")

    async def stop(self) -> None:
        """Cancel the poll task and hand over whatever facts are still pending (space permitting)."""
        self._running = False
        task, self._task = self._task, None
        await stop_task(task)
        for _, fut in self._commands:
            if not fut.done():
                fut.cancel()
        self._commands.clear()
        self._flush_nowait()

    async def __aiter__(self) -> AsyncIterator[F.Fact]:
        while True:
            yield await self.facts.get()

    @property
    def poll_interval(self) -> float:
        fast = self.config.fast_poll_interval
        if self.fast_polling and fast is not None:
            return max(fast, 0.04)
        return self.config.poll_interval

    # ---- commands --------------------------------------------------------------------------------
    async def disable_machine(self) -> F.CommandResult:
        """LP 01: lock out play (the EGM finishes the current game first)."""
        return await self._control("disable_machine", lp.Shutdown())

    async def enable_machine(self) -> F.CommandResult:
        """LP 02: allow play again."""
        return await self._control("enable_machine", lp.Startup())

    async def disable_game(self, game: int) -> F.CommandResult:
        """LP 09 with 00 for game N."""
        return await self._control("disable_game", lp.EnableDisableGame(game=game, enable=0), game)

    async def enable_game(self, game: int) -> F.CommandResult:
        """LP 09 with 01 for game N."""
        return await self._control("enable_game", lp.EnableDisableGame(game=game, enable=1), game)

    async def disable_bill_acceptor(self) -> F.CommandResult:
        """LP 07."""
        return await self._control("disable_bill_acceptor", lp.DisableBillAcceptor())

    async def enable_bill_acceptor(self) -> F.CommandResult:
        """LP 06."""
        return await self._control("enable_bill_acceptor", lp.EnableBillAcceptor())

    async def read_meters(self, reason: str = "request") -> F.MetersSnapshot | None:
        """A meter snapshot now (also emitted as a fact with that reason)."""
        return await self._submit(lambda: self._read_meters(reason))

    async def _control(self, action: str, msg: lp.Message, game: int | None = None) -> F.CommandResult:
        async def run() -> F.CommandResult:
            reply = await self._long(msg)
            acked = isinstance(reply, framing.Ack)
            detail = "" if acked else "no ACK from the EGM"
            result = self._fact(F.CommandResult, action=action, game=game, acked=acked, detail=detail)
            self._emit(result)
            self._log.info("command", action=action, game=game, acked=acked)
            if acked:
                self._queue_meters(f"command:{action}")
            return result

        try:
            return await self._submit(run)
        except (TimeoutError, LinkLost, Resync, TransportError) as exc:
            detail = str(exc) or ("link down" if not self.link_up else type(exc).__name__)
            result = self._fact(F.CommandResult, action=action, game=game, acked=False, detail=detail)
            self._emit(result)
            return result

    async def _submit(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        if self._task is None:
            raise TransportError(f"{self.device}: coordinator not started")
        if not self.link_up:
            raise LinkLost("link down")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._commands.append((fn, fut))
        self._wake()
        return await asyncio.wait_for(fut, self.config.command_timeout)

    # ---- facts -----------------------------------------------------------------------------------
    def _fact(self, cls: type[Any], *, mono: float | None = None, wall: float | None = None, **kw: Any) -> Any:
        return cls(device=self.device, address=self.address, mono=time.monotonic() if mono is None else mono,
                   wall=time.time() if wall is None else wall, **kw)

    def _emit(self, fact: F.Fact) -> None:
        self._pending.append(fact)
        if not self._running:
            self._flush_nowait()

    def _flush_nowait(self) -> None:
        while self._pending:
            try:
                self.facts.put_nowait(self._pending[0])
            except asyncio.QueueFull:
                self._log.error("fact queue full at shutdown; facts not handed over", left=len(self._pending))
                return
            self._pending.popleft()

    async def _flush(self) -> None:
        while self._pending:
            await self.facts.put(self._pending.popleft())

    def _confirmed(self, result: TransactionResult) -> None:
        """The line confirms a reply (the next different poll went out): now the exception counts."""
        reply = result.reply
        if isinstance(reply, framing.ExceptionReply) and reply.code != 0:
            self.stats.exception(reply.code)
            self._emit(self._fact(F.ExceptionFact, mono=result.mono, wall=result.wall, code=reply.code,
                                  name=exception_name(reply.code), rte=False))
        elif isinstance(reply, framing.RteEvent):
            self.stats.exception(reply.code)
            self._emit(self._fact(F.ExceptionFact, mono=result.mono, wall=result.wall, code=reply.code,
                                  name=exception_name(reply.code), rte=True, data=reply.data))

    # ---- the run loop ----------------------------------------------------------------------------
    def _wake(self) -> None:
        if self._waker is not None and not self._waker.done():
            self._waker.set_result(None)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when a command arrives."""
        if seconds <= 0 or self._commands:
            return
        loop = asyncio.get_running_loop()
        fut = self._waker = loop.create_future()
        handle = loop.call_later(seconds, _expire, fut)
        try:
            await fut
        finally:
            handle.cancel()
            self._waker = None

    async def _run(self) -> None:
        backoff = self.config.probe_interval
        while True:
            await self._flush()
            try:
                if not self.link_up:
                    if await self._probe():
                        backoff = self.config.probe_interval
                    else:
                        self._never_answered()
                        self._fail_commands("link down")
                        await self._sleep(backoff)
                        backoff = min(backoff * 2, self.config.probe_max_interval)
                    continue
                await self._step()
            except LinkLost:
                continue
            except Resync:
                self._log.info("chirp: the EGM lost the link; resynchronizing")
                self._link_established("chirp")

    async def _step(self) -> None:
        if self._commands:
            fn, fut = self._commands.popleft()
            if fut.done():
                return
            try:
                result = await fn()
            except (LinkLost, Resync) as exc:
                if not fut.done():
                    fut.set_exception(exc)
                raise
            except Exception as exc:  # report to the caller, keep polling
                if not fut.done():
                    fut.set_exception(exc)
                return
            if not fut.done():
                fut.set_result(result)
            return
        now = time.monotonic()
        # The schedules only queue jobs, so they are checked first: on a busy line a general poll is
        # always due, and checking them only when none was starved every scheduled snapshot (the
        # last meter window before a machine went idle was then never judged).
        if now >= self._next_meters:
            self._next_meters = now + self.config.meter_interval
            self._queue_meters("schedule")
        if now >= self._next_clock:
            self._next_clock = now + self.config.clock_interval
            self._queue("clock", self._sync_clock)
        if now >= self._next_general and not (self._jobs and self._just_polled):
            # Jobs and due general polls alternate, so neither starves the other.
            self._next_general = max(now, self._next_general + self.poll_interval)
            self._just_polled = True
            await self._general_poll()
            return
        if self._jobs:
            self._just_polled = False
            _, job = self._jobs.popleft()
            await job()
            return
        await self._sleep(self._next_general - now)

    def _fail_commands(self, why: str) -> None:
        while self._commands:
            _, fut = self._commands.popleft()
            if not fut.done():
                fut.set_exception(LinkLost(why))

    def _queue(self, name: str, job: Callable[[], Awaitable[None]]) -> None:
        if all(n != name for n, _ in self._jobs):
            self._jobs.append((name, job))

    async def _run_job(self, name: str) -> None:
        """Run a queued job now, out of turn. A ticket whose 3D answered a poll of a meter read is
        read before that snapshot goes out, so its ticket.printed is written before the snapshot
        whose meters may already contain it: the log then orders every event a snapshot's meters
        contain before that snapshot (what it lacks, it lists as ``unmetered``)."""
        for index, (queued, job) in enumerate(self._jobs):
            if queued == name:
                del self._jobs[index]
                await job()
                return

    def _queue_meters(self, reason: str) -> None:
        self._queue("meters", lambda: self._meters_job(reason))

    # ---- link state ------------------------------------------------------------------------------
    async def _probe(self) -> bool:
        """While down: sync poll, then a long poll every EGM answers (LP 1A current credits)."""
        self._need_sync = True
        msg = lp.SendCurrentCredits()
        res = await self._xact(framing.encode_long_poll(self.address, msg), msg.COMMAND, probing=True)
        if res.outcome in (Outcome.TIMEOUT,):
            return False
        self._link_established("recovered" if self._ever_up else "connect")
        if isinstance(res.reply, framing.RteEvent):
            self._on_exception(res.reply.code)
        return True

    def _never_answered(self) -> None:
        """A machine that has not answered since the agent started (powered off, cable or adapter
        missing) is reported offline once, so HQ sees it rather than nothing at all."""
        if self._ever_up:
            return
        self._failed_probes += 1
        if self._failed_probes == self.config.link_down_after:
            self._log.warning("no answer since start", probes=self._failed_probes, error=self.last_error)
            self._emit(self._fact(F.LinkDown, missed=self._failed_probes, last_seen_wall=None))

    def _link_established(self, reason: str) -> None:
        self._ever_up = True
        self.link_up = True
        self._missed = 0
        self._need_sync = True
        self.rte_active = False  # unknown until LP 0E is ACKed; legacy replies until then
        self._jobs.clear()
        self._emit(self._fact(F.LinkUp, reason=reason))
        self._log.info("link up", reason=reason)
        self._last_general = None  # the outage before this is link trouble, not a cadence miss
        self._identity_tries = 0
        self._queue("rte", self._set_rte)
        if self.config.identity:
            self._queue("identity", self._read_identity)
        if self.config.clock_interval > 0:
            self._queue("clock", self._sync_clock)
        self._queue_meters("connect")
        now = time.monotonic()
        self._next_meters = now + self.config.meter_interval
        self._next_clock = now + self.config.clock_interval if self.config.clock_interval > 0 else float("inf")
        self._next_general = now

    def _link_lost(self) -> None:
        self.link_up = False
        self.rte_active = False
        self._jobs.clear()
        self._emit(self._fact(F.LinkDown, missed=self._missed, last_seen_wall=self.last_seen_wall))
        self._log.warning("link down", missed=self._missed, error=self.last_error)
        self._fail_commands("link down")

    # ---- transactions ----------------------------------------------------------------------------
    async def _xact(self, frame: bytes, command: int | None, *, quiet_ok: bool = False,
                    probing: bool = False, retries: int | None = None) -> TransactionResult:
        """One poll through the line, with sync, statistics and link-state bookkeeping."""
        cfg = self.config
        rte = self.rte_active or probing
        timed, self._cadence_pending = self._cadence_pending and not probing, False
        try:
            if self._need_sync:
                await self.line.sync()
                self._need_sync = False
            result = await self.line.poll(self.address, frame, command, rte=rte,
                                          retries=cfg.retries if retries is None else retries,
                                          quiet_ok=quiet_ok, on_confirmed=self._confirmed)
        except TransportError as exc:
            self.last_error = str(exc)
            final = TransactionResult(Outcome.TIMEOUT, error=str(exc), mono=time.monotonic(), wall=time.time())
            attempts = [final]
            if probing:
                return final
        else:
            final, attempts = result.final, result.attempts
            self.stats.record(attempts, quiet_ok)
            if timed:
                quiet = final.outcome is Outcome.TIMEOUT and quiet_ok
                self._general_sent(result.sent, self.line.timing.response_timeout if quiet else 0.0)
        if final.outcome is Outcome.TIMEOUT and not quiet_ok:
            self._need_sync = True  # a power-cycled EGM ignores us until it sees another address
            if probing:
                return final
            self._missed += 1
            self.stats.missed_polls += 1
            if self._missed >= cfg.link_down_after:
                self._link_lost()
                raise LinkLost(f"{self._missed} polls unanswered")
            return final
        if final.outcome is not Outcome.TIMEOUT:
            self._missed = 0
            self.last_seen_wall = final.wall
            self._last_answer = final.mono
        if final.outcome is Outcome.CHIRP and not probing:
            self._need_sync = True
            raise Resync()
        if final.outcome is Outcome.GARBLED:
            self.last_error = final.error
        return final

    async def _long(self, msg: lp.Message, retries: int | None = None) -> framing.EgmReply | None:
        """A long poll; an RTE event answering it is handled and the poll asked again."""
        frame = framing.encode_long_poll(self.address, msg)
        for _ in range(RTE_REQUEUE_LIMIT):
            res = await self._xact(frame, msg.COMMAND, retries=retries)
            reply = res.reply
            if isinstance(reply, framing.RteEvent):
                self._rte_events += 1
                self._on_exception(reply.code)
                continue  # the line ACKs the event (poll to address 0) before asking again
            if res.outcome is Outcome.REPLY:
                self._reply_mono = res.mono
                return reply
            return None
        return None

    async def _read(self, msg: lp.Message, cls: type[lp.Message], retries: int | None = None) -> Any:
        reply = await self._long(msg, retries)
        if isinstance(reply, framing.Reply) and isinstance(reply.message, cls):
            return reply.message
        return None

    # ---- general poll and exceptions -------------------------------------------------------------
    def _general_sent(self, sent: float, lasted: float) -> None:
        """Cadence bookkeeping for one general poll (or the liveness long poll standing in for one).

        It was due one interval after the previous one went out, but not before that one could be
        over: a quiet RTE poll lasts its whole response timeout (``lasted``; 100 ms on a pty, more
        than a 40 ms cadence). Its lateness is how much later it went on the wire: waits behind other
        machines on a shared line, repeats of a garbled reply, long jobs and a busy event loop (whose
        delay a measured end time would hide) included."""
        previous, self._last_general = self._last_general, (sent, lasted)
        if previous is not None:
            interval = self.poll_interval
            self.stats.cadence(sent - previous[0] - max(interval, previous[1]), interval)

    async def _general_poll(self) -> None:
        self._cadence_pending = True
        if self.rte_active and time.monotonic() - self._last_answer > self.config.liveness_interval:
            # In RTE mode silence means "nothing happened"; prove the EGM is there now and then.
            await self._long(lp.SendCurrentCredits())
            return
        res = await self._xact(framing.encode_general_poll(self.address), None, quiet_ok=self.rte_active)
        reply = res.reply
        if isinstance(reply, framing.ExceptionReply):
            if self.rte_active:
                # A lone legacy code in RTE mode: the EGM left RTE mode (a power cycle does that).
                self._log.info("EGM left RTE mode; enabling it again", code=reply.code)
                self.rte_active = False
                self._queue("rte", self._set_rte)
            if reply.code != 0:
                self._on_exception(reply.code)
        elif isinstance(reply, framing.RteEvent):
            self._on_exception(reply.code)

    def _on_exception(self, code: int) -> None:
        """Immediate reactions; the ExceptionFact itself is emitted when the line confirms it."""
        if code == ExceptionCode.HANDPAY_PENDING:
            self._queue("handpay", self._read_handpay)
        elif code == ExceptionCode.CASHOUT_TICKET_PRINTED:
            self._queue("ticket", self._read_ticket)
        elif code == ExceptionCode.OPERATOR_CHANGED_OPTIONS and self.config.identity:
            self._queue("identity", self._read_identity)
        elif code == ExceptionCode.AC_POWER_APPLIED:
            self._queue("rte", self._set_rte)
        if code in SIGNIFICANT_EXCEPTIONS:
            self._queue_meters(f"event:{code:02X}")

    # ---- jobs ------------------------------------------------------------------------------------
    async def _set_rte(self) -> None:
        """LP 0E: RTE on if configured (and the EGM ACKs), else explicitly off.

        An EGM still in RTE mode (the link came back, the agent restarted) answers LP 0E with its
        queued events first, up to a full FIFO of them after an outage: asked again while it does,
        so the queue's length never decides that RTE is off (the agent would then poll in legacy
        mode, take the EGM's RTE silence for missed polls, and drop the link)."""
        want = 1 if self.config.rte else 0
        msg = lp.RealTimeEventReporting(enable=want)
        reply: framing.EgmReply | None = None
        for _ in range(RTE_ENABLE_ROUNDS):
            events = self._rte_events
            reply = await self._long(msg, retries=1)
            if reply is not None or self._rte_events == events:
                break
        self.rte_active = bool(want) and isinstance(reply, framing.Ack)
        self._log.info("real-time event reporting", active=self.rte_active)

    def _identity_again(self) -> None:
        """Read the identity once more later (see :data:`IDENTITY_TRIES`)."""
        if self.config.identity and self._identity_tries < IDENTITY_TRIES:
            self._identity_tries += 1
            self._log.info("identity read again", attempt=self._identity_tries + 1)
            self._queue("identity", self._read_identity)

    async def _read_identity(self) -> None:
        info = await self._read(lp.SendMachineInfo(), lp.MachineInfo)
        if info is None:
            self._log.warning("no LP 1F answer; identity unknown")
            self._identity_again()
            return
        version = await self._read(lp.SendSasVersion(), lp.SasVersion, retries=1)
        count = await self._read(lp.SendNumberOfGames(), lp.NumberOfGames, retries=1)
        enabled = await self._read(lp.SendEnabledGames(), lp.EnabledGames, retries=1)
        numbers: tuple[int, ...] = enabled.games if enabled is not None else tuple(
            range(1, (count.count if count is not None else 0) + 1))
        games: list[F.GameIdentity] = []
        for number in numbers:
            cfg = await self._read(lp.SendGameConfiguration(game=number), lp.GameConfiguration, retries=1)
            if cfg is not None:
                games.append(F.GameIdentity(number, cfg.game_id, cfg.paytable_id,
                                            DENOMINATION_CENTS.get(cfg.denomination), cfg.max_bet, cfg.base_percent))
        features = await self._read(lp.SendEnabledFeatures(game=0), lp.EnabledFeatures, retries=1)
        self.fast_polling = bool(features is not None and features.features3 & lp.FEATURES3_MAX_POLLING_40MS)
        if features is None:
            self._identity_again()  # the 40 ms cadence depends on it
        # Last, so that no 8C can be confirmed between this reply and the Identity fact (events are
        # confirmed by the next poll): the selected game it carries is the newest the agent knows.
        selected = await self._read(lp.SendSelectedGame(), lp.SelectedGame, retries=1)
        ident = self._fact(
            F.Identity, game_id=info.game_id, additional_id=info.additional_id, paytable_id=info.paytable_id,
            base_percent=info.base_percent, accounting_denomination_cents=DENOMINATION_CENTS.get(info.denomination),
            max_bet=info.max_bet, sas_version=version.version if version else "",
            serial=version.serial if version else "", game_count=count.count if count else 0,
            enabled_games=numbers, games=tuple(games), fast_polling=self.fast_polling, rte=self.rte_active,
            selected_game=selected.game if selected is not None else None)
        self.identity = ident
        self._emit(ident)
        self._log.info("identity", game_id=info.game_id, serial=ident.serial, games=len(games),
                       fast_polling=self.fast_polling)

    async def _meters_job(self, reason: str) -> None:
        await self._read_meters(reason)

    async def _read_meters(self, reason: str) -> F.MetersSnapshot | None:
        order = ["6F", "2F", "1C"] if self.config.meter_poll == "auto" else [self.config.meter_poll]
        # Start from the best source this EGM ever answered (skip what it does not support), but a
        # read that fell back once (a garbled 6F) does not make the fallback the rule: LP 1C lacks
        # the bill and ticket meters, so every later snapshot would leave cash unjudged.
        sources = order[order.index(self._meter_source):] if self._meter_source in order else order
        for source in sources:
            read = await self._meters_via(source)
            if read is not None:
                values, stamps = read
                if self._meter_source not in order or order.index(source) < order.index(self._meter_source):
                    self._meter_source = source
                denom = self.identity.accounting_denomination_cents if self.identity else None
                snap = self._fact(F.MetersSnapshot, reason=reason, source=source, game=0,
                                  accounting_denomination_cents=denom,
                                  meters=tuple(F.Meter(code, meter_name(code), value, meter_unit(code),
                                                       stamps.get(code))
                                               for code, value in sorted(values.items())))
                await self._run_job("ticket")
                self._emit(snap)
                return snap
        self._log.warning("meters unreadable", reason=reason)
        return None

    async def _meters_via(self, source: str) -> tuple[dict[int, int], dict[int, float]] | None:
        """Meter values by code, and when the reply carrying each arrived (see :class:`F.Meter`;
        only in RTE mode, where a meter reply proves the EGM's event queue was empty)."""
        codes = self.config.meter_codes
        values: dict[int, int] = {}
        stamps: dict[int, float] = {}
        if source == "1C":
            m = await self._read(lp.SendMeters1C(), lp.Meters1C, retries=1)
            if m is None:
                return None
            for name, code in METERS_1C:
                if code is not None:
                    values[code] = getattr(m, name)
                    if self.rte_active:
                        stamps[code] = self._reply_mono
            return values, stamps
        size = 12 if source == "6F" else 10
        for i in range(0, len(codes), size):
            chunk = tuple(codes[i:i + size])
            if source == "6F":
                m = await self._read(lp.SendExtendedMeters(game=0, codes=chunk), lp.ExtendedMeters, retries=1)
            else:
                m = await self._read(lp.SendSelectedMeters(game=0, codes=chunk), lp.SelectedMeters, retries=1)
            if m is None:
                return None
            values.update(dict(m.meters))
            if self.rte_active:
                stamps.update(dict.fromkeys(dict(m.meters), self._reply_mono))
        return values, stamps

    async def _read_handpay(self, attempt: int = 1) -> None:
        info = await self._read(lp.SendHandpayInfo(), lp.HandpayInfo)
        if info is None:
            if self._again("handpay", attempt, self._read_handpay):
                return
            self._log.warning("handpay pending but LP 1B unanswered")
            return
        self._emit(self._fact(F.HandpayInfo, progressive_group=info.progressive_group, level=info.level,
                              amount_cents=info.amount, partial_pay_cents=info.partial_pay,
                              reset_id=info.reset_id))

    async def _read_ticket(self, attempt: int = 1) -> None:
        info = await self._read(lp.SendTicketInfo(), lp.TicketInfo)
        if info is None:
            if self._again("ticket", attempt, self._read_ticket):
                return
            self._log.warning("ticket printed but LP 3D unanswered")
            return
        self._emit(self._fact(F.TicketInfo, validation_number=info.validation_number, amount_cents=info.amount))

    def _again(self, name: str, attempt: int, read: Callable[[int], Awaitable[None]]) -> bool:
        """A read the EGM's queued events kept answering (a busy machine at a fast pace) is asked
        again later, up to :data:`READ_TRIES` times: its detail (the ticket's validation number, the
        handpay's kind) would otherwise be lost, and its money carried by a ``missed`` record alone."""
        if attempt >= READ_TRIES or not self.link_up:
            return False
        self._log.info("read lost to queued events; asked again", read=name, attempt=attempt)
        self._queue(name, lambda: read(attempt + 1))
        return True

    async def _sync_clock(self) -> None:
        """Read the EGM clock (LP 7E), then set it to ours (LP 7F, addressed so it is ACKed)."""
        read = await self._read(lp.SendDateTime(), lp.DateTime, retries=1)
        egm_time = None
        if read is not None:
            try:
                egm_time = from_sas(read.date, read.time)
            except SASError:
                egm_time = None
        now = dt.datetime.now().replace(microsecond=0)
        date, tod = to_sas(now)
        reply = await self._long(lp.SetDateTime(date=date, time=tod), retries=1)
        drift = (egm_time - now).total_seconds() if egm_time is not None else None
        self._emit(self._fact(F.ClockRead, egm_time=egm_time, agent_time=now, drift_seconds=drift,
                              set=isinstance(reply, framing.Ack)))
