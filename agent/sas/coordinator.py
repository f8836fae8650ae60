"""One poll coordinator per machine: its schedule, its link, its commands.

A :class:`agent.polling.PollCoordinator` (the loop, back-off and link state every device family
shares) in three layers, each a module:

* :mod:`agent.sas.exchange` — one poll through the line: sync, retries, statistics, cadence, what an
  answer or a silence does to the link, the exceptions the line confirms;
* :mod:`agent.sas.reads` — the general poll and every read (identity, meters, handpay, ticket,
  clock, LP 0E) and the queue of reads still to do (*jobs*);
* this module — :class:`MachineCoordinator`: *when* to ask (general polls at the configured cadence,
  meters on a schedule and after significant events, clock sync every 24 h, probes with back-off
  while the link is down, link up and down) and the commands (LP 01/02/06/07/09, on-demand meters),
  which run inside the poll loop between two turns.

The :class:`~agent.sas.line.SasLine` owns *how*: one port, one transaction at a time, implied ACKs
and immediate repeats. Several coordinators may share one line (multidrop).

Facts go to ``self.facts``, a bounded ``asyncio.Queue`` or another :class:`~agent.polling.FactSink`
(pass one to many coordinators to merge them). When it is full the coordinator stops polling until
there is room: the EGM keeps its exceptions in NVRAM meanwhile, so back-pressure loses nothing,
whereas dropping would.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from protocols.sas import framing
from protocols.sas import longpolls as lp

from ..polling import FactSink, LinkLost
from ..transport.errors import TransportError
from . import facts as F
from .config import PollConfig
from .exchange import RTE_REQUEUE_LIMIT, Resync
from .line import SasLine
from .reads import METERS_1C, READ_TRIES, RTE_ENABLE_ROUNDS, SIGNIFICANT_EXCEPTIONS, SasReads
from .transaction import Outcome

IDENTITY_TRIES = 5
"""How often per link-up the identity is read again when its LP 1F or LP A0 went unanswered. A
machine playing faster than its cadence drains has more than :data:`RTE_REQUEUE_LIMIT` events queued
at connect, so its first read can lose against its own events; without another try it stayed at the
200 ms cadence (A0 grants 40 ms) until the next link-up — the busiest machines polled slowest
(bench/sas_lines.py, scenario ``agent``). Each try drains that many events at line speed."""


class MachineCoordinator(SasReads):
    """Polls one EGM address on a :class:`SasLine` and yields :data:`~agent.sas.facts.Fact` s.

    ``start()`` spawns the coordinator's task; ``stop()`` cancels it and waits. Control methods
    (:meth:`disable_machine`, :meth:`enable_game`, …) are async and return a
    :class:`~agent.sas.facts.CommandResult` whose ``acked`` says whether the EGM ACKed.
    """

    def __init__(self, line: SasLine, address: int, *, device: str | None = None,
                 config: PollConfig | None = None, facts: FactSink | None = None) -> None:
        super().__init__(line, address, device=device, config=config, facts=facts)
        self._commands: deque[tuple[Callable[[], Awaitable[Any]], asyncio.Future[Any]]] = deque()
        self._next_general = 0.0
        self._next_meters = float("inf")
        self._next_clock = float("inf")
        self._just_polled = False
        self._identity_tries = 0         # identity reads asked again since the link came up

    # ---- lifecycle -------------------------------------------------------------------------------
    async def _stopped(self) -> None:
        """The task is gone: fail what waits for it, hand over the pending facts (space permitting)."""
        for _, fut in self._commands:
            if not fut.done():
                fut.cancel()
        self._commands.clear()
        self._flush_nowait()

    async def __aiter__(self) -> AsyncIterator[F.Fact]:
        while True:
            yield await self.facts.get()

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

    # ---- the run loop (agent.polling) ------------------------------------------------------------
    def _has_work(self) -> bool:
        return bool(self._commands)

    async def _before_turn(self) -> None:
        await self._flush()

    def _pace(self, started: float) -> float:
        return 0.0  # a turn waits for the next general poll itself (and a command ends that wait)

    async def _poll(self) -> bool:
        try:
            await self._step()
        except Resync:
            self._log.info("chirp: the EGM lost the link; resynchronizing")
            self._link_established("chirp")
        return True

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

    # ---- link state ------------------------------------------------------------------------------
    async def _probe(self) -> bool:
        """While down: sync poll, then a long poll every EGM answers (LP 1A current credits)."""
        self._need_sync = True
        msg = lp.SendCurrentCredits()
        res = await self._xact(framing.encode_long_poll(self.address, msg), msg.COMMAND, probing=True)
        if res.outcome in (Outcome.TIMEOUT,):
            self._never_answered()
            self._fail_commands("link down")
            return False
        self._link_established(self.link.up_reason())
        if isinstance(res.reply, framing.RteEvent):
            self._on_exception(res.reply.code)
        return True

    def _never_answered(self) -> None:
        """A machine that has not answered since the agent started (powered off, cable or adapter
        missing) is reported offline once, so HQ sees it rather than nothing at all (after an outage
        the link is down already: :meth:`LinkState.failed` reports nothing more)."""
        if self.link.failed():
            self._log.warning("no answer since start", probes=self.link.failures, error=self.last_error)
            self._emit(self._fact(F.LinkDown, missed=self.link.failures, last_seen_wall=None))

    def _link_established(self, reason: str) -> None:
        self.link.came_up()
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
        self.rte_active = False
        self._jobs.clear()
        self._emit(self._fact(F.LinkDown, missed=self.link.failures, last_seen_wall=self.last_seen_wall))
        self._log.warning("link down", missed=self.link.failures, error=self.last_error)
        self._fail_commands("link down")

    def _identity_again(self) -> None:
        """Read the identity once more later (see :data:`IDENTITY_TRIES`)."""
        if self.config.identity and self._identity_tries < IDENTITY_TRIES:
            self._identity_tries += 1
            self._log.info("identity read again", attempt=self._identity_tries + 1)
            self._queue("identity", self._read_identity)


__all__ = ["IDENTITY_TRIES", "METERS_1C", "READ_TRIES", "RTE_ENABLE_ROUNDS", "RTE_REQUEUE_LIMIT",
           "SIGNIFICANT_EXCEPTIONS", "LinkLost", "MachineCoordinator", "Resync"]
